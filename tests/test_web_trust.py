"""The trust list page: managers import HC1: signing certificates from a file
(PEM or JSON), see what each file held and why an entry was skipped, list
and remove keys; every change is audited and reaches the gate's verifier."""

from __future__ import annotations

import base64
import io
import json
import socket
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from admin_web.trust import MAX_UPLOAD_BYTES
from kiosk.clock import FakeClock
from kiosk.codes import Credential, Registry, Rejection
from kiosk.codes.hcert import HcertFormat, HcertRules
from kiosk.compose import trust_list_for
from kiosk.store import Store
from kiosk.trust import certificate_from_der, kid_of
from tests.test_hcert import issue, vaccination
from tests.web import csrf_token

START = datetime.fromisoformat("2026-01-01T00:00:00+00:00")  # 07:00 in Ho Chi Minh City
END = datetime.fromisoformat("2027-01-01T00:00:00+00:00")
VACCINATION_OID = "1.3.6.1.4.1.1847.2021.1.2"


class Signer:
    """A document signer certificate (DSC) and its private key."""

    def __init__(
        self,
        *,
        country: str = "VN",
        common_name: str = "Test DSC",
        not_before: datetime = START,
        not_after: datetime = END,
    ) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, country),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(
                x509.ExtendedKeyUsage([x509.ObjectIdentifier(VACCINATION_OID)]), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.der = cert.public_bytes(serialization.Encoding.DER)
        self.pem = cert.public_bytes(serialization.Encoding.PEM)
        self.kid_b64 = base64.b64encode(kid_of(self.der)).decode("ascii")

    @property
    def b64(self) -> str:
        return base64.b64encode(self.der).decode("ascii")


def upload(client: FlaskClient, data: bytes, name: str = "dsc.pem") -> TestResponse:
    return client.post(
        "/trust/import",
        data={"file": (io.BytesIO(data), name), "csrf_token": csrf_token(client, "/")},
        content_type="multipart/form-data",
    )


def remove(client: FlaskClient, kid: str) -> TestResponse:
    return client.post("/trust/remove", data={"kid": kid, "csrf_token": csrf_token(client, "/")})


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def section(html: str, element_id: str) -> str:
    start = html.index(f'id="{element_id}"')
    return html[start : html.index("</section>", start)]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the trust list page touched the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --------------------------------------------------------------- importing


def test_manager_imports_a_pem_bundle_and_sees_what_it_held(
    manager: FlaskClient, web_store: Store, offline: None
) -> None:
    first, second = Signer(), Signer(country="DE", common_name="Zweiter DSC")
    response = upload(manager, first.pem + b"\n" + second.pem, "vn-dsc.pem")
    assert response.status_code == 200
    html = text(response)
    assert "Imported 2 new of 2 certificates." in html
    result = section(html, "import-result")
    assert "vn-dsc.pem" in result
    assert first.kid_b64 in result
    assert second.kid_b64 in result
    assert result.count("<td>new</td>") == 2
    assert {row.der for row in web_store.trusted_certificates()} == {first.der, second.der}
    audit = web_store.audit_entries(limit=1)[0]
    assert (audit.actor, audit.action, audit.row_count) == ("manager1", "trust-import", 2)
    assert audit.detail == {"file": "vn-dsc.pem", "found": 2, "added": 2, "skipped": 0}


def test_json_list_imports_the_readable_entries_and_says_why_others_were_skipped(
    manager: FlaskClient, web_store: Store, offline: None
) -> None:
    plain, tagged = Signer(), Signer(country="FR")
    document = [
        plain.b64,
        "not base64 at all!",
        {"rawData": tagged.b64, "kid": tagged.kid_b64, "country": "DE"},
        {"name": "no certificate"},
    ]
    response = upload(manager, json.dumps(document).encode(), "list.json")
    assert response.status_code == 200
    html = text(response)
    assert "Imported 2 new of 2 certificates." in html
    problems = html[html.index('id="import-problems"') :]
    assert "entry 2: not base64" in problems
    assert "entry 4: no base64 certificate" in problems
    countries = {row.country for row in web_store.trusted_certificates()}
    assert countries == {"VN", "DE"}  # the file's country wins over the subject's
    audit = web_store.audit_entries(limit=1)[0]
    assert audit.detail == {"file": "list.json", "found": 2, "added": 2, "skipped": 2}


def test_importing_again_adds_nothing_and_says_already_trusted(
    manager: FlaskClient, web_store: Store
) -> None:
    signer = Signer()
    upload(manager, signer.pem)
    version = web_store.settings_version()
    response = upload(manager, signer.pem)
    assert response.status_code == 200
    html = text(response)
    assert "Imported 0 new of 1 certificates." in html
    assert "already trusted" in section(html, "import-result")
    assert len(web_store.trusted_certificates()) == 1
    assert web_store.settings_version() == version  # nothing for the gate to reload
    assert web_store.audit_entries(limit=1)[0].detail["added"] == 0


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"hello, I am not a trust list", "notes.txt"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "photo.png"),
        (b'{"certificates": []}', "empty.json"),
        # Python's JSON parser recurses per level: RecursionError, once a 500 (issue 14).
        (b"[" * 200_000, "deep.json"),
        (b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, "deep-objects.json"),
    ],
)
def test_a_file_that_is_not_a_trust_list_is_refused_and_nothing_imported(
    manager: FlaskClient, web_store: Store, data: bytes, name: str
) -> None:
    version = web_store.settings_version()
    response = upload(manager, data, name)
    assert response.status_code == 400
    assert "Nothing was imported: this is not a trust list" in text(response)
    assert web_store.trusted_certificates() == []
    assert web_store.settings_version() == version
    assert all(entry.action != "trust-import" for entry in web_store.audit_entries())


def test_a_file_of_unreadable_entries_only_imports_nothing_and_lists_them(
    manager: FlaskClient, web_store: Store
) -> None:
    response = upload(manager, json.dumps(["bm90IGEgY2VydA=="]).encode(), "bad.json")
    assert response.status_code == 400
    html = text(response)
    assert "no certificate in the file could be read" in html
    assert "entry 1:" in section(html, "import-result")
    assert web_store.trusted_certificates() == []
    assert all(entry.action != "trust-import" for entry in web_store.audit_entries())


def test_objects_nested_deeper_than_a_trust_list_are_not_followed(
    manager: FlaskClient, web_store: Store
) -> None:
    """Deep enough to parse, too deep to walk: the walk stops, one problem is listed."""
    nested = b'{"certificates": ' * 600 + b"{}" + b"}" * 600
    response = upload(manager, nested, "nested.json")
    assert response.status_code == 400
    assert "no certificate in the file could be read" in text(response)
    assert "nested more than 8 levels deep" in section(text(response), "import-result")
    assert web_store.trusted_certificates() == []


def test_upload_without_a_file_or_too_big_is_refused(
    manager: FlaskClient, web_store: Store
) -> None:
    token = csrf_token(manager, "/")
    response = manager.post("/trust/import", data={"csrf_token": token})
    assert response.status_code == 400
    assert "Choose a trust list file" in text(response)
    # The body built by hand: the test client would spool it to a temporary
    # file it never closes.
    boundary = "gatekiosk-test-boundary"
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="csrf_token"\r\n\r\n'
            f"{token}\r\n"
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="big.pem"\r\n'
            "Content-Type: application/x-pem-file\r\n\r\n"
        ).encode()
        + Signer().pem
        + b"\n" * MAX_UPLOAD_BYTES
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = manager.post(
        "/trust/import", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert response.status_code == 400
    assert "larger than 1 MB" in text(response)
    assert web_store.trusted_certificates() == []


# --------------------------------------------------------------- the list


def test_list_shows_kid_country_subject_and_validity_in_the_site_time_zone(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    current = Signer(country="VN", common_name="Bo Y te DSC")
    expired = Signer(
        country="DE",
        not_before=START - timedelta(days=400),
        not_after=START - timedelta(days=30),
    )
    upload(manager, current.pem + expired.pem)
    trusted = section(text(manager.get("/trust")), "trusted")
    assert current.kid_b64 in trusted
    assert expired.kid_b64 in trusted
    assert "<td>VN</td>" in trusted
    assert "<td>DE</td>" in trusted
    assert "CN=Bo Y te DSC,C=VN" in trusted
    assert "01/01/2026 07:00" in trusted  # valid from, local time
    assert "01/01/2027 07:00" in trusted  # valid until
    assert "expired" in trusted
    assert "manager1" in trusted


def test_hostile_subject_strings_are_shown_as_text(manager: FlaskClient, web_store: Store) -> None:
    hostile = Signer(common_name='<script>alert(1)</script>"><img src=x onerror=alert(2)>')
    html = text(upload(manager, hostile.pem, '<b>x</b>".pem'))
    listed = text(manager.get("/trust"))
    for page in (html, listed):
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert "&lt;script" in page
    assert "<b>x</b>" not in html
    assert web_store.trusted_certificates()[0].subject.startswith("CN=")


def test_empty_list_says_the_gate_refuses_every_certificate(manager: FlaskClient) -> None:
    assert "No signing certificate is trusted yet" in text(manager.get("/trust"))


# --------------------------------------------------------------- removing


def test_manager_removes_a_key_and_the_removal_is_audited(
    manager: FlaskClient, web_store: Store
) -> None:
    keep, drop = Signer(), Signer()
    upload(manager, keep.pem + drop.pem)
    version = web_store.settings_version()
    response = remove(manager, drop.kid_b64)
    assert response.status_code == 302
    assert response.headers["Location"] == "/trust"
    assert [row.der for row in web_store.trusted_certificates()] == [keep.der]
    assert web_store.settings_version() > version  # the gate reloads
    audit = web_store.audit_entries(limit=1)[0]
    assert (audit.actor, audit.action, audit.row_count) == ("manager1", "trust-remove", 1)
    assert audit.detail == {"kid": drop.kid_b64}
    assert "Removed 1 certificate(s)" in text(manager.get("/trust"))


@pytest.mark.parametrize(("kid", "status"), [("AAAAAAAAAAA=", 404), ("not a kid", 400), ("", 400)])
def test_removing_an_unknown_or_malformed_key_changes_nothing(
    manager: FlaskClient, web_store: Store, kid: str, status: int
) -> None:
    signer = Signer()
    upload(manager, signer.pem)
    assert remove(manager, kid).status_code == status
    assert len(web_store.trusted_certificates()) == 1
    assert all(entry.action != "trust-remove" for entry in web_store.audit_entries())


# --------------------------------------------------------------- reaching the gate


def test_imported_key_lets_the_gate_verify_and_removal_stops_it(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    signer = Signer()
    dsc = certificate_from_der(signer.der)
    passport = issue(
        vaccination(dt="2025-10-01"),
        signer.key,
        dsc,
        iat=clock.now() - timedelta(days=1),
        exp=clock.now() + timedelta(days=100),
    )

    def identify() -> Credential | Rejection:
        fmt = HcertFormat(trust_list_for(web_store), HcertRules(), skew_s=300)
        return Registry([fmt]).identify(passport, at=clock.now())

    assert isinstance(identify(), Rejection)
    upload(manager, signer.pem)
    verified = identify()
    assert isinstance(verified, Credential)
    assert verified.kind == "hcert"
    remove(manager, signer.kid_b64)
    refused = identify()
    assert isinstance(refused, Rejection)
    assert refused.reason == "hcert-unknown-key"


# --------------------------------------------------------------- who may


def test_guards_may_not_see_or_change_the_trust_list(guard: FlaskClient, web_store: Store) -> None:
    assert guard.get("/trust").status_code == 403
    assert upload(guard, Signer().pem).status_code == 403
    assert remove(guard, "AAAAAAAAAAA=").status_code == 403
    assert web_store.trusted_certificates() == []
    assert "/trust" not in text(guard.get("/"))


def test_the_nav_links_the_trust_list_for_managers(manager: FlaskClient) -> None:
    assert 'href="/trust"' in text(manager.get("/"))


def test_the_trust_list_needs_a_login(client: FlaskClient) -> None:
    response = client.get("/trust")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]
    response = client.post("/trust/remove", data={"kid": "AAAAAAAAAAA="})
    assert response.status_code in (400, 401)


def test_posts_without_csrf_token_are_refused(manager: FlaskClient, web_store: Store) -> None:
    signer = Signer()
    response = manager.post(
        "/trust/import",
        data={"file": (io.BytesIO(signer.pem), "dsc.pem")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert web_store.trusted_certificates() == []
    upload(manager, signer.pem)
    assert manager.post("/trust/remove", data={"kid": signer.kid_b64}).status_code == 400
    assert len(web_store.trusted_certificates()) == 1
