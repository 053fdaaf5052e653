"""HC1: certificates at the gate: verification against the trust list, the
site's rules, and one reason code per way a certificate is refused."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kiosk.codes import Credential, Registry, Rejection
from kiosk.codes.cose import encode_base45_zlib, sign1
from kiosk.codes.hcert import PREFIX, HcertFormat, HcertRules
from kiosk.messages import message_for
from kiosk.trust import TrustedCertificate, TrustList, certificate_from_der, kid_of

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
VACCINATION_OID = "1.3.6.1.4.1.1847.2021.1.2"
TEST_OID = "1.3.6.1.4.1.0.1847.2021.1.1"


def make_signer(
    *, usages: tuple[str, ...] | None = (VACCINATION_OID,), rsa_key: bool = False, days: int = 365
) -> tuple[Any, TrustedCertificate]:
    key: Any = (
        rsa.generate_private_key(65537, 2048)
        if rsa_key
        else ec.generate_private_key(ec.SECP256R1())
    )
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=30))
        .not_valid_after(NOW + timedelta(days=days))
    )
    if usages is not None:
        oids = [x509.ObjectIdentifier(u) for u in usages]
        builder = builder.add_extension(x509.ExtendedKeyUsage(oids), critical=False)
    der = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    return key, certificate_from_der(der)


def vaccination(**entry: Any) -> dict[str, Any]:
    return {
        "ver": "1.3.0",
        "nam": {"fn": "Nguyễn", "gn": "Văn An", "fnt": "NGUYEN", "gnt": "VAN<AN"},
        "dob": "1985-07-01",
        "v": [
            {
                "tg": "840539006",
                "vp": "1119349007",
                "mp": "EU/1/20/1528",
                "ma": "ORG-100030215",
                "dn": 2,
                "sd": 2,
                "dt": "2026-01-10",
                "co": "VN",
                "is": "Bộ Y tế",
                "ci": "URN:UVCI:01:VN:TEST1",
                **entry,
            }
        ],
    }


def test_certificate(**entry: Any) -> dict[str, Any]:
    dcc = vaccination()
    del dcc["v"]
    dcc["t"] = [
        {
            "tg": "840539006",
            "tt": "LP6464-4",
            "sc": "2026-03-01T08:00:00Z",
            "tr": "260415000",
            "co": "VN",
            "is": "Bộ Y tế",
            "ci": "URN:UVCI:01:VN:TEST2",
            **entry,
        }
    ]
    return dcc


test_certificate.__test__ = False  # type: ignore[attr-defined]


def recovery(**entry: Any) -> dict[str, Any]:
    dcc = vaccination()
    del dcc["v"]
    dcc["r"] = [
        {
            "tg": "840539006",
            "fr": "2026-01-01",
            "co": "VN",
            "is": "Bộ Y tế",
            "df": "2026-01-12",
            "du": "2026-06-30",
            "ci": "URN:UVCI:01:VN:TEST3",
            **entry,
        }
    ]
    return dcc


def issue(
    dcc: dict[str, Any],
    key: Any,
    signer: TrustedCertificate,
    *,
    iat: datetime = NOW - timedelta(days=1),
    exp: datetime = NOW + timedelta(days=100),
    kid: bytes | None = None,
) -> bytes:
    claims = {1: "VN", 6: int(iat.timestamp()), 4: int(exp.timestamp()), -260: {1: dcc}}
    signed = sign1(cbor2.dumps(claims), key, kid=signer.kid if kid is None else kid)
    return encode_base45_zlib(signed, PREFIX).encode("ascii")


def decide(raw: bytes, *certs: TrustedCertificate, rules: HcertRules | None = None) -> Any:
    fmt = HcertFormat(TrustList(certs), rules or HcertRules(), skew_s=300)
    return Registry([fmt]).identify(raw, at=NOW)


@pytest.fixture(scope="module")
def signer() -> tuple[Any, TrustedCertificate]:
    return make_signer()


def test_valid_vaccination_gives_a_verified_credential_with_name_and_birth_date(signer):
    key, cert = signer
    result = decide(issue(vaccination(), key, cert), cert)
    assert isinstance(result, Credential)
    assert result.kind == "hcert"
    assert result.verified
    assert result.display_name == "Nguyễn Văn An"  # Vietnamese order: family name first
    assert result.subject_id == "hcert:NGUYEN<<VAN<AN:1985-07-01"
    assert result.birth_date is not None
    assert result.birth_date.isoformat() == "1985-07-01"
    attributes = dict(result.attributes)
    assert attributes["transliterated_name"] == "NGUYEN VAN AN"
    assert attributes["certificate_type"] == "vaccination"
    assert attributes["country"] == "VN"


def test_european_names_are_given_name_first(signer):
    key, cert = signer
    dcc = vaccination(co="AT")
    dcc["nam"] = {"fn": "Musterfrau-Gößinger", "gn": "Gabriele", "fnt": "MUSTERFRAU<GOESSINGER"}
    result = decide(issue(dcc, key, cert), cert)
    assert isinstance(result, Credential)
    assert result.display_name == "Gabriele Musterfrau-Gößinger"


def test_ps256_signers_verify():
    key, cert = make_signer(rsa_key=True)
    assert isinstance(decide(issue(vaccination(), key, cert), cert), Credential)


def test_every_certificate_with_the_kid_is_tried(signer):
    key, cert = signer
    _, other = make_signer()
    impostor = replace(other, kid=cert.kid)  # same 8-byte kid, another key
    assert isinstance(decide(issue(vaccination(), key, cert), impostor, cert), Credential)


def test_kid_in_the_unprotected_header_is_used_when_the_protected_has_none(signer):
    key, cert = signer
    claims = {
        6: int(NOW.timestamp()) - 60,
        4: int(NOW.timestamp()) + 3600,
        -260: {1: vaccination()},
    }
    message = cbor2.loads(sign1(cbor2.dumps(claims), key, kid=None))
    protected, _, payload, signature = message.value
    unprotected_kid = cbor2.CBORTag(18, [protected, {4: cert.kid}, payload, signature])
    raw = encode_base45_zlib(cbor2.dumps(unprotected_kid), PREFIX).encode()
    assert isinstance(decide(raw, cert), Credential)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda k, c: b"HC1:NOT*BASE45", "hcert-bad-encoding"),
        (lambda k, c: issue(vaccination(), k, c, kid=b"12345678"), "hcert-unknown-key"),
        (lambda k, c: issue(vaccination(), k, c, exp=NOW - timedelta(hours=1)), "hcert-expired"),
        (
            lambda k, c: issue(vaccination(), k, c, iat=NOW + timedelta(hours=1)),
            "hcert-not-yet-valid",
        ),
        (
            lambda k, c: issue(vaccination(), k, c, iat=NOW - timedelta(days=40)),
            "hcert-signer-expired",
        ),
        (lambda k, c: issue(vaccination(co="XY"), k, c), "hcert-bad-schema"),
        (lambda k, c: issue({**vaccination(), **recovery()}, k, c), "hcert-bad-schema"),
        (lambda k, c: issue(test_certificate(), k, c), "hcert-wrong-key-usage"),
        (lambda k, c: issue(vaccination(dn=1), k, c), "hcert-vaccination-incomplete"),
        (lambda k, c: issue(vaccination(dt="2026-02-25"), k, c), "hcert-vaccination-too-recent"),
    ],
)
def test_each_failure_has_its_own_reason(signer, make, reason):
    key, cert = signer
    result = decide(make(key, cert), cert)
    assert isinstance(result, Rejection)
    assert (result.kind, result.reason) == ("hcert", reason)
    assert message_for(reason).vi != message_for("no-such-reason").vi


def test_a_tampered_certificate_fails_its_signature(signer):
    key, cert = signer
    text = issue(vaccination(), key, cert).decode()
    from kiosk.demo_codes import tamper_name

    forged = tamper_name(text, "Văn An", "Văn Am", prefix=PREFIX)
    result = decide(forged.encode(), cert)
    assert isinstance(result, Rejection)
    assert result.reason == "hcert-bad-signature"


@pytest.mark.parametrize(
    ("dcc", "reason"),
    [
        (test_certificate(), None),
        (test_certificate(tr="260373001"), "hcert-test-positive"),
        (test_certificate(sc="2026-02-27T08:00:00Z"), "hcert-test-too-old"),
        (recovery(), None),
        (recovery(du="2026-02-28"), "hcert-recovery-not-valid"),
    ],
)
def test_test_and_recovery_rules(dcc, reason):
    key, cert = make_signer(usages=None)  # no key usage: may sign every type
    result = decide(issue(dcc, key, cert), cert)
    if reason is None:
        assert isinstance(result, Credential)
    else:
        assert isinstance(result, Rejection)
        assert result.reason == reason


def test_rules_come_from_settings():
    key, cert = make_signer(usages=(TEST_OID,))
    raw = issue(test_certificate(sc="2026-02-27T08:00:00Z"), key, cert)
    assert isinstance(decide(raw, cert, rules=HcertRules(test_max_hours=72)), Credential)


def test_other_payloads_are_not_claimed():
    fmt = HcertFormat(TrustList(), HcertRules())
    assert fmt.parse(b"GK1:ABC", at=NOW) is None


def test_kid_is_the_first_eight_bytes_of_the_certificates_sha256(signer):
    _, cert = signer
    assert cert.kid == kid_of(cert.der)
    assert len(cert.kid) == 8
