"""The site CA, its certificates and revocation list, and the broker's files."""

from __future__ import annotations

import ipaddress
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store
from hypothesis import given
from hypothesis import strategies as st

from kiosk.site import SiteError
from kiosk.site.broker import BrokerConfig, render_acl, render_config, write_broker_files
from kiosk.site.enrolment import (
    PkiPaths,
    blocked_gate_ids,
    enrol_gate,
    init_site_pki,
    load_ca,
    revoke_gate,
)
from kiosk.site.pki import (
    CLOCK_MARGIN,
    create_ca,
    identity_of,
    is_revoked,
    issue_gate_certificate,
    load_certificate,
    load_crl,
    load_private_key,
    new_private_key,
)
from kiosk.site.topics import Topics, check_gate_id, is_valid_id

NOW = datetime(2026, 12, 7, 9, 0, 30, 123456, tzinfo=UTC)
SITE = "factory-1"


@pytest.fixture
def paths(tmp_path: Path) -> PkiPaths:
    paths = PkiPaths(tmp_path / "pki")
    init_site_pki(paths, SITE, ["hub.local", "192.168.1.10", "::1"], now=NOW)
    return paths


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_keys_are_readable_by_their_owner_only(paths: PkiPaths) -> None:
    assert mode(paths.private) == 0o700
    assert [mode(p) for p in (paths.ca_key, paths.server_key, paths.hub_key)] == [0o600] * 3
    assert mode(paths.ca_certificate) == 0o644
    assert not list(paths.folder.rglob("*.tmp"))


def test_a_gate_certificate_verifies_as_a_tls_client_of_the_site(paths: PkiPaths) -> None:
    certificate = enrol_gate(paths, "main-gate", new_private_key().public_key(), now=NOW)
    ca = load_certificate(paths.ca_certificate)

    verifier = (
        PolicyBuilder().store(Store([ca])).time(NOW + timedelta(days=1)).build_client_verifier()
    )
    verified = verifier.verify(certificate, [])

    assert identity_of(certificate) == "main-gate"
    alt_names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt_names.get_values_for_type(x509.UniformResourceIdentifier) == [
        "urn:gatekiosk:factory-1:main-gate"
    ]
    assert verified.chain[-1] == ca
    assert certificate.not_valid_before_utc == NOW.replace(microsecond=0) - CLOCK_MARGIN


def test_the_server_certificate_names_every_host_of_the_hub(paths: PkiPaths) -> None:
    server = load_certificate(paths.server_certificate)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value

    assert names.get_values_for_type(x509.DNSName) == ["hub.local"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("192.168.1.10"),
        ipaddress.ip_address("::1"),
    ]
    verifier = (
        PolicyBuilder()
        .store(Store([load_certificate(paths.ca_certificate)]))
        .time(NOW)
        .build_server_verifier(x509.DNSName("hub.local"))
    )
    verifier.verify(server, [])


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "Gate-1",
        "gate 1",
        "gate/1",
        "gate+",
        "gate#",
        "%u",
        "-gate",
        "gate-",
        "g" * 33,
        "gate\n",
        "cổng",
        "hub",
    ],
)
def test_a_gate_id_outside_the_safe_charset_is_never_signed(bad: str) -> None:
    ca = create_ca(SITE, now=NOW)

    with pytest.raises(SiteError):
        issue_gate_certificate(ca, bad, new_private_key().public_key(), now=NOW)


@given(st.text(max_size=40))
def test_a_valid_id_is_safe_in_topics_acls_and_file_names(value: str) -> None:
    if is_valid_id(value):
        assert not set(value) & set("+#/% \t\r\n.")
        assert 1 <= len(value) <= 32


def test_a_second_init_is_refused(paths: PkiPaths) -> None:
    with pytest.raises(SiteError, match="already exists"):
        init_site_pki(paths, SITE, ["hub.local"], now=NOW)


def test_a_gate_with_a_valid_certificate_cannot_enrol_again(paths: PkiPaths) -> None:
    enrol_gate(paths, "gate-1", new_private_key().public_key(), now=NOW)

    with pytest.raises(SiteError, match="revoke it"):
        enrol_gate(paths, "gate-1", new_private_key().public_key(), now=NOW)


def test_revoking_a_gate_lists_it_in_a_newer_crl(paths: PkiPaths) -> None:
    gate_1 = enrol_gate(paths, "gate-1", new_private_key().public_key(), now=NOW)
    gate_2 = enrol_gate(paths, "gate-2", new_private_key().public_key(), now=NOW)
    before = load_crl(paths.crl)

    after = revoke_gate(paths, "gate-1", now=NOW)

    assert is_revoked(after, gate_1)
    assert not is_revoked(after, gate_2)
    assert after.is_signature_valid(load_ca(paths).private_key.public_key())
    assert after.last_update_utc > before.last_update_utc  # OpenSSL prefers the newest
    number = after.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number == 2
    assert load_crl(paths.crl) == after
    assert blocked_gate_ids(paths) == ("gate-1",)


def test_a_revoked_gate_may_enrol_again_with_a_new_key(paths: PkiPaths) -> None:
    enrol_gate(paths, "gate-1", new_private_key().public_key(), now=NOW)
    revoke_gate(paths, "gate-1", now=NOW)

    enrol_gate(paths, "gate-1", new_private_key().public_key(), now=NOW + timedelta(hours=1))

    assert blocked_gate_ids(paths) == ()
    assert len(list(load_crl(paths.crl))) == 1


def test_a_private_key_others_can_read_is_refused(paths: PkiPaths) -> None:
    paths.ca_key.chmod(0o644)

    with pytest.raises(SiteError, match="chmod 600"):
        load_private_key(paths.ca_key)


def test_times_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        create_ca(SITE, now=datetime(2026, 1, 1))


def config(tmp_path: Path, paths: PkiPaths, **options: object) -> BrokerConfig:
    return BrokerConfig.for_site(tmp_path / "broker", paths, SITE, **options)


def test_the_broker_config_requires_site_certificates_and_the_crl(
    tmp_path: Path, paths: PkiPaths
) -> None:
    text = render_config(config(tmp_path, paths, port=8883))
    lines = text.splitlines()

    for line in [
        "allow_anonymous false",
        "persistence false",
        "listener 8883",
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
        f"crlfile {paths.crl}",
        f"cafile {paths.ca_certificate}",
        f"acl_file {tmp_path / 'broker' / 'acl'}",
    ]:
        assert line in lines


def test_the_broker_config_refuses_a_path_mosquitto_would_cut(
    tmp_path: Path, paths: PkiPaths
) -> None:
    with pytest.raises(SiteError, match="spaces"):
        render_config(config(tmp_path / "my files", paths))


def test_the_acl_denies_revoked_gates_everything_and_confines_gates() -> None:
    acl = render_acl(Topics(SITE), blocked_gates=["gate-3"]).splitlines()

    assert acl.index("user gate-3") + 1 == acl.index("topic deny #")
    assert "pattern write gk/factory-1/gate/%u/#" in acl
    assert "pattern read gk/factory-1/gate/+/presence" in acl
    assert not [line for line in acl if line.startswith("pattern") and "events" in line]
    with pytest.raises(SiteError):
        render_acl(Topics(SITE), blocked_gates=["gate 3\ntopic readwrite #"])


def test_the_broker_files_are_written_together(tmp_path: Path, paths: PkiPaths) -> None:
    broker = config(tmp_path, paths)

    write_broker_files(broker, blocked_gates=blocked_gate_ids(paths))

    assert broker.config_path.read_text() == render_config(broker)
    assert broker.acl_path.read_text() == render_acl(Topics(SITE))


def test_check_gate_id_returns_the_id() -> None:
    assert check_gate_id("main-gate") == "main-gate"
