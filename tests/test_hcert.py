"""HC1: certificates at the gate: verification against the trust list, the
site's rules, and one reason code per way a certificate is refused."""

from __future__ import annotations

import base64
import json
import math
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
from kiosk.codes.dcc_schema import schema_problem, schema_version_for, validator_for
from kiosk.codes.dcc_valuesets import TEST_TYPE_RAT as RAT
from kiosk.codes.hcert import PREFIX, HcertFormat, HcertRules
from kiosk.messages import message_for
from kiosk.samples import sample_dcc, sample_hc1_claims
from kiosk.trust import (
    TrustedCertificate,
    TrustList,
    certificate_from_der,
    kid_of,
    parse_trust_file,
)

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


# The certificates of these tests: kiosk.samples' visitor, born on DOB.
DOB = "1985-07-01"


def vaccination(**entry: Any) -> dict[str, Any]:
    return sample_dcc("v", at=NOW, dob=DOB, **entry)


def test_certificate(**entry: Any) -> dict[str, Any]:
    return sample_dcc("t", at=NOW, dob=DOB, **entry)


test_certificate.__test__ = False  # type: ignore[attr-defined]


def recovery(**entry: Any) -> dict[str, Any]:
    return sample_dcc("r", at=NOW, dob=DOB, **entry)


def issue(
    dcc: dict[str, Any],
    key: Any,
    signer: TrustedCertificate,
    *,
    iat: datetime | None = NOW - timedelta(days=1),
    exp: datetime = NOW + timedelta(days=100),
    kid: bytes | None = None,
    claims: dict[int, Any] | None = None,
) -> bytes:
    """``dcc`` signed as ``signer``; ``claims`` replaces CWT claims (a
    float ``iat``, say)."""
    cwt = {**sample_hc1_claims(dcc, issued=iat, expires=exp), **(claims or {})}
    signed = sign1(cbor2.dumps(cwt), key, kid=signer.kid if kid is None else kid)
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


# --- claims as the specification has them -----------------------------------------


@pytest.mark.parametrize(
    "claims",
    [
        {6: int(NOW.timestamp()) - 3600.0},  # a float, whole
        {6: NOW.timestamp() - 3600.75},  # a float with a fraction
        {6: cbor2.CBORTag(1, int(NOW.timestamp()) - 3600)},  # an epoch time, tagged
        {4: (NOW + timedelta(days=30)).timestamp() + 0.5},  # exp as a float too
    ],
    ids=["float-iat", "fractional-iat", "tagged-iat", "float-exp"],
)
def test_real_issuers_encodings_of_the_times_are_read(signer, claims):
    key, cert = signer
    assert isinstance(decide(issue(vaccination(), key, cert, claims=claims), cert), Credential)


def test_a_certificate_without_iat_rests_on_its_expiry_and_signer(signer):
    key, cert = signer
    result = decide(issue(vaccination(), key, cert, iat=None), cert)
    assert isinstance(result, Credential)
    expired = decide(issue(vaccination(), key, cert, iat=None, exp=NOW - timedelta(hours=1)), cert)
    assert isinstance(expired, Rejection)
    assert expired.reason == "hcert-expired"
    # Expired before its signing certificate was valid: not signed in time.
    early = issue(vaccination(), key, cert, iat=None, exp=NOW - timedelta(days=40))
    fmt = HcertFormat(TrustList([cert]), HcertRules(), skew_s=300)
    late = fmt.parse(early, at=NOW - timedelta(days=41))
    assert isinstance(late, Rejection)
    assert late.reason == "hcert-signer-expired"


@pytest.mark.parametrize("iat", ["2026-03-01", math.nan, math.inf, -1, 2**64], ids=repr)
def test_an_iat_that_is_no_time_is_a_bad_claim(signer, iat):
    key, cert = signer
    result = decide(issue(vaccination(), key, cert, claims={6: iat}), cert)
    assert isinstance(result, Rejection)
    assert result.reason == "hcert-bad-claims"


# --- the official schema ------------------------------------------------------------


@pytest.mark.parametrize(
    ("ver", "release"),
    [
        ("1.3.0", "1.3.0"),
        ("1.3.3", "1.3.3"),
        ("1.3.5", "1.3.3"),  # a later patch: the newest of its minor
        ("1.2.2", "1.2.1"),
        ("1.0.4", "1.0.1"),
        ("1.1.9", "1.1.0"),
        ("2.0.0", "1.3.3"),  # a release this gate does not know: the newest
        ("0.9.0", "1.0.0"),
        ("1.3", "1.3.3"),  # not a version: the newest, whose pattern refuses it
        (None, "1.3.3"),
    ],
)
def test_each_certificate_is_checked_against_the_release_it_declares(ver, release):
    assert schema_version_for(ver) == release


def test_validators_are_compiled_once_per_release():
    assert validator_for("1.3.0") is validator_for("1.3.0")
    assert validator_for("1.3.0") is not validator_for("1.0.0")


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"nam": {"fn": "Nguyễn", "fnt": "nguyen"}}, "nam.fnt does not match its pattern"),
        ({"nam": {"fn": "Nguyễn"}}, "fnt is missing"),
        ({"dob": "01/07/1985"}, "dob does not match its pattern"),
        ({"v": []}, "v is empty"),
        ({"v": [{**vaccination()["v"][0], "dn": 0}]}, "v[0].dn is below the minimum"),
        ({"v": [{**vaccination()["v"][0], "dt": "2026-02-30"}]}, "v[0].dt is not a valid date"),
        ({"v": [{**vaccination()["v"][0], "co": "XY"}]}, "v[0].co is not in the EU value set"),
        ({"v": [{**vaccination()["v"][0], "is": "Ắ" * 81}]}, "v[0].is is too long"),
    ],
)
def test_a_schema_failure_says_where_without_quoting_the_certificate(signer, change, where):
    key, cert = signer
    result = decide(issue({**vaccination(), **change}, key, cert), cert)
    assert isinstance(result, Rejection)
    assert result.reason == "hcert-bad-schema"
    assert where in result.detail
    assert "schema 1.3.0" in result.detail
    for quoted in ("nguyen", "01/07/1985", "XY", "Ắ", "2026-02-30"):
        assert quoted not in result.detail


def test_older_releases_hold_texts_to_80_characters_as_verifier_apps_do():
    dcc = {**vaccination(**{"is": "I" * 80}), "ver": "1.0.0"}  # 1.0.0 wrote 50
    assert schema_problem(dcc) is None
    dcc["v"][0]["is"] = "I" * 81
    assert schema_problem(dcc) == "v[0].is is too long (schema 1.0.0)"


def test_the_country_binds_in_every_release_the_vaccine_product_in_none():
    old = {**vaccination(co="XY"), "ver": "1.0.0"}
    assert schema_problem(old) == "v[0].co is not in the EU value set (schema 1.0.0)"
    assert schema_problem(old, value_sets=False) is None
    national = vaccination(mp="COVID-19 Vaccine Moderna", vp="J07BX03")
    assert schema_problem(national) is None


def test_a_rapid_tests_device_must_be_on_the_eu_list_a_pcr_names_none():
    assert schema_problem(test_certificate(tt=RAT, ma="1232")) is None
    assert schema_problem(test_certificate(tt=RAT, ma="9999")) is not None
    assert schema_problem(test_certificate(tt=RAT, ma="9999"), value_sets=False) is None
    assert schema_problem(test_certificate(ma="N/A")) is None  # PCR: no device


def test_a_vaccination_against_another_disease_is_refused(signer):
    key, cert = signer
    dcc = vaccination(tg="729999")
    assert schema_problem(dcc) is None  # the schema leaves the code to the issuer
    result = decide(issue(dcc, key, cert), cert)
    assert isinstance(result, Rejection)
    assert result.reason == "hcert-bad-schema"


def test_value_set_checks_can_be_turned_off(signer):
    key, cert = signer
    raw = issue(vaccination(co="QQ"), key, cert)
    assert decide(raw, cert).reason == "hcert-bad-schema"
    assert isinstance(decide(raw, cert, rules=HcertRules(check_value_sets=False)), Credential)


def test_a_vaccine_maker_outside_the_value_set_is_not_refused(signer):
    # Countries' own typos and makers added after the packaged snapshot: the
    # signature proves the country wrote it, and the decision never uses it.
    key, cert = signer
    assert isinstance(decide(issue(vaccination(ma="ORG-1000030215"), key, cert), cert), Credential)


# --- Vietnam's vaccine passport, from the trust list a health authority publishes ----


def vietnamese_signer() -> tuple[Any, bytes]:
    """A document signer in the Vietnamese profile (C=VN), with the
    vaccination key usage, as the Ministry of Health's would be."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bộ Y tế"),
            x509.NameAttribute(NameOID.COMMON_NAME, "DSC VN test"),
        ]
    )
    usage = x509.ExtendedKeyUsage([x509.ObjectIdentifier(VACCINATION_OID)])
    der = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=300))
        .not_valid_after(NOW + timedelta(days=700))
        .add_extension(usage, critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    return key, der


def _pem(der: bytes) -> bytes:
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n".encode()


def _trust_files(der: bytes, other: bytes) -> dict[str, bytes]:
    b64, kid = base64.b64encode(der).decode(), base64.b64encode(kid_of(der)).decode()
    entry = {"kid": kid, "country": "VN", "certificateType": "DSC", "rawData": b64}
    return {
        "pem-bundle": _pem(other) + _pem(der),
        "json-gateway-list": json.dumps([entry]).encode(),
        "json-certificates": json.dumps({"certificates": [entry]}).encode(),
        "json-kid-map": json.dumps({kid: [{"x5c": [b64]}]}).encode(),
        "json-base64-list": json.dumps([base64.b64encode(other).decode(), b64]).encode(),
    }


@pytest.mark.parametrize(
    "shape",
    ["pem-bundle", "json-gateway-list", "json-certificates", "json-kid-map", "json-base64-list"],
)
def test_a_vietnamese_certificate_verifies_against_an_imported_vietnamese_trust_list(shape):
    key, der = vietnamese_signer()
    _, other = vietnamese_signer()
    parsed = parse_trust_file(_trust_files(der, other)[shape])
    assert not parsed.problems
    trust = TrustList(parsed.certificates)
    (signer,) = trust.matching(kid_of(der))
    assert signer.country == "VN"
    dcc = sample_dcc(
        "v",
        at=NOW,
        nam={"fn": "Trần Thị", "gn": "Hồng Nhung", "fnt": "TRAN<THI", "gnt": "HONG<NHUNG"},
        dob="1979-11-02",
    )
    raw = issue(dcc, key, signer)
    result = HcertFormat(trust, HcertRules()).parse(raw, at=NOW)
    assert isinstance(result, Credential), result
    assert result.display_name == "Trần Thị Hồng Nhung"  # family name first
    assert result.subject_id == "hcert:TRAN<THI<<HONG<NHUNG:1979-11-02"
    attributes = dict(result.attributes)
    assert (attributes["country"], attributes["transliterated_name"]) == (
        "VN",
        "TRAN THI HONG NHUNG",
    )
    assert attributes["signer_kid"] == base64.b64encode(kid_of(der)).decode()
    # The certificate next to it in the file vouches for nothing it did not sign.
    forged = HcertFormat(trust, HcertRules()).parse(
        issue(dcc, vietnamese_signer()[0], signer), at=NOW
    )
    assert isinstance(forged, Rejection)
    assert forged.reason == "hcert-bad-signature"
