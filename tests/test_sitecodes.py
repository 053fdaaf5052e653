"""The site's own codes (GK1:): issue, render, read with the real decoder,
verify, and refuse every way a code can be wrong."""

from __future__ import annotations

import io
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import base45
import cbor2
import cv2
import numpy as np
import pytest
import segno
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.camera import to_grey
from kiosk.codes import Registry, default_formats
from kiosk.codes.base import (
    KIND_DECLARATION,
    KIND_STAFF_PASS,
    REASON_REVOKED,
    Credential,
    Identified,
    Rejection,
)
from kiosk.codes.cose import ALG_ES256, HEADER_ALG, HEADER_KID, encode_base45_zlib, sign1
from kiosk.codes.sitecodes import (
    CLAIM_EXP,
    CLAIM_GATEKIOSK,
    CLAIM_IAT,
    CLAIM_ISS,
    CLAIM_NBF,
    PREFIX,
    REASON_BAD_CLAIMS,
    REASON_BAD_ENCODING,
    REASON_BAD_SIGNATURE,
    REASON_EXPIRED,
    REASON_KIND_NOT_ALLOWED,
    REASON_NOT_YET_VALID,
    REASON_REFUSED_ANSWERS,
    REASON_RETIRED_KEY,
    REASON_UNKNOWN_KEY,
    REASON_WRONG_SITE,
    SiteCodeClaims,
    SiteCodeFormat,
    issue_code,
    new_code_id,
    qr_version,
    render_png,
)
from kiosk.decoder import ZxingDecoder
from kiosk.keys import KeyRing, SiteKey, kid_for
from kiosk.messages import message_for
from kiosk.policy import GateView, Mode, PolicyRules, decide

SITE = "nhamay-01"
ISSUED = datetime(2024, 6, 1, 7, 0, tzinfo=UTC)
AT = ISSUED + timedelta(hours=2)
CODE_ID = bytes.fromhex("0123456789abcdef")

HOSTILE = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

TYPICAL_NAMES = [
    "Trần Văn Đức",
    "Nguyễn Thị Minh Khai",
    "Lê Hoàng Phương Anh",
    "Tôn Nữ Thị Phương Thảo",
    "Công Tằng Tôn Nữ Thị Phương Thảo Hạnh Dung",  # 42 characters
]


class Site:
    """The site's key material and a gate configured for it."""

    def __init__(self) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.kid = kid_for(self.private_key.public_key())
        self.ring = KeyRing((SiteKey(self.kid, self.private_key.public_key(), ISSUED),))

    def gate(self, **options: Any) -> SiteCodeFormat:
        return SiteCodeFormat(self.ring, SITE, **options)

    def issue(self, claims: SiteCodeClaims) -> str:
        return issue_code(claims, self.private_key, self.kid)


@pytest.fixture(scope="module")
def site() -> Site:
    return Site()


def declaration(**changes: Any) -> SiteCodeClaims:
    fields: dict[str, Any] = {
        "kind": KIND_DECLARATION,
        "site_id": SITE,
        "code_id": CODE_ID,
        "name": "Nguyễn Thị Minh Khai",
        "issued_at": ISSUED,
        "expires_at": ISSUED + timedelta(hours=12),
    }
    fields.update(changes)
    return SiteCodeClaims(**fields)


def staff_pass(**changes: Any) -> SiteCodeClaims:
    fields: dict[str, Any] = {
        "kind": KIND_STAFF_PASS,
        "site_id": SITE,
        "code_id": CODE_ID,
        "name": "Trần Văn Đức",
        "issued_at": ISSUED,
        "expires_at": ISSUED + timedelta(days=365),
        "staff_id": "NV-00123",
        "organisation": "Phòng Kỹ thuật",
    }
    fields.update(changes)
    return SiteCodeClaims(**fields)


def parse(gate: SiteCodeFormat, text: str | bytes, *, at: datetime = AT) -> Identified | None:
    raw = text.encode("ascii") if isinstance(text, str) else text
    return gate.parse(raw, at=at)


def rejected(gate: SiteCodeFormat, text: str | bytes, *, at: datetime = AT) -> Rejection:
    result = parse(gate, text, at=at)
    assert isinstance(result, Rejection), result
    assert message_for(result.reason).en != "Invalid QR code", f"no message for {result.reason}"
    return result


def signed_cwt(site: Site, cwt: dict, *, key: Any = None, kid: bytes | None = None) -> str:
    """A GK1 code over arbitrary claims (for claims issue_code refuses to make)."""
    payload = cbor2.dumps(cwt)
    message = sign1(payload, key or site.private_key, kid=site.kid if kid is None else kid)
    return encode_base45_zlib(message, PREFIX)


# --- the round trip ------------------------------------------------------------


def test_declaration_round_trip_through_a_png_and_the_real_decoder(
    site: Site, tmp_path: Path
) -> None:
    text = site.issue(declaration())
    assert text.startswith("GK1:")
    path = tmp_path / "declaration.png"
    render_png(text, path, scale=6)

    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image is not None
    codes = ZxingDecoder().decode(to_grey(image))
    assert len(codes) == 1
    assert codes[0].raw == text.encode("ascii")

    result = site.gate().parse(codes[0].raw, at=AT)
    assert result == Credential(
        kind=KIND_DECLARATION,
        subject_id=CODE_ID.hex(),
        display_name="Nguyễn Thị Minh Khai",
        verified=True,
        valid_until=ISSUED + timedelta(hours=12),
        attributes=(("code_id", CODE_ID.hex()),),
        code_id=CODE_ID.hex(),
    )


def test_staff_pass_round_trip_into_a_file_object(site: Site) -> None:
    text = site.issue(staff_pass())
    buffer = io.BytesIO()
    render_png(text, buffer, scale=5)
    image = cv2.imdecode(np.frombuffer(buffer.getvalue(), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image is not None
    (code,) = ZxingDecoder().decode(to_grey(image))

    result = site.gate().parse(code.raw, at=AT)
    assert isinstance(result, Credential)
    assert result.kind == KIND_STAFF_PASS
    assert result.subject_id == "staff:NV-00123"
    assert result.display_name == "Trần Văn Đức"
    assert result.verified
    assert dict(result.attributes) == {
        "code_id": CODE_ID.hex(),
        "staff_id": "NV-00123",
        "organisation": "Phòng Kỹ thuật",
    }


def test_a_reissued_staff_pass_keeps_the_subject_but_not_the_code_id(site: Site) -> None:
    first = parse(site.gate(), site.issue(staff_pass(code_id=new_code_id())))
    second = parse(site.gate(), site.issue(staff_pass(code_id=new_code_id())))
    assert isinstance(first, Credential)
    assert isinstance(second, Credential)
    assert first.subject_id == second.subject_id
    assert dict(first.attributes)["code_id"] != dict(second.attributes)["code_id"]


def test_registry_identifies_site_codes_before_the_identity_formats(site: Site) -> None:
    registry = Registry([site.gate(), *default_formats()])
    result = registry.identify(site.issue(declaration()).encode(), at=AT)
    assert isinstance(result, Credential)
    assert result.kind == KIND_DECLARATION


def test_name_is_nfc_even_when_typed_on_a_phone_that_sends_nfd(site: Site) -> None:
    import unicodedata

    nfd = unicodedata.normalize("NFD", "Nguyễn Thị Minh Khai")
    with pytest.raises(ValueError, match="normalised name"):
        declaration(name=nfd)
    # The web normalises first (kiosk.codes.base.normalise_name); the code carries NFC.
    result = parse(site.gate(), site.issue(declaration(name=unicodedata.normalize("NFC", nfd))))
    assert isinstance(result, Credential)
    assert result.display_name == unicodedata.normalize("NFC", nfd)


@pytest.mark.parametrize("name", TYPICAL_NAMES)
def test_declarations_for_typical_names_fit_qr_version_10_at_level_m(site: Site, name: str) -> None:
    text = site.issue(declaration(name=name, code_id=new_code_id()))
    version = qr_version(text)
    print(f"declaration {name!r} ({len(name)} chars): {len(text)} chars, version {version}-M")
    assert segno.make(text, error="m").version == version
    assert segno.make(text, error="m").mode == "alphanumeric"
    assert version <= 10


@pytest.mark.parametrize("name", TYPICAL_NAMES[:4])
def test_staff_passes_with_a_short_organisation_fit_qr_version_10_at_level_m(
    site: Site, name: str
) -> None:
    text = site.issue(staff_pass(name=name, code_id=new_code_id()))
    version = qr_version(text)
    print(f"staff pass {name!r} ({len(name)} chars): {len(text)} chars, version {version}-M")
    assert version <= 10


# --- tampering -----------------------------------------------------------------


def _alternatives(char: str) -> list[str]:
    """Two other base45 characters: the neighbour and one far away."""
    alphabet = base45.BASE45_CHARSET
    index = alphabet.index(char)
    return [alphabet[(index + 1) % 45], alphabet[(index + 23) % 45]]


@pytest.mark.parametrize("claims", [declaration(), staff_pass()], ids=["declaration", "staff"])
def test_changing_any_character_never_yields_a_credential(
    site: Site, claims: SiteCodeClaims
) -> None:
    text = site.issue(claims)
    gate = site.gate()
    assert isinstance(parse(gate, text), Credential)
    tried = 0
    for position in range(len(PREFIX), len(text)):
        for replacement in _alternatives(text[position]):
            tampered = text[:position] + replacement + text[position + 1 :]
            result = parse(gate, tampered)
            assert isinstance(result, Rejection), (position, replacement)
            tried += 1
    assert tried > 400


def test_flipping_any_bit_of_the_cose_message_never_yields_a_credential(site: Site) -> None:
    message = sign1(cbor2.dumps(_cwt(site)), site.private_key, kid=site.kid)
    gate = site.gate()
    assert isinstance(parse(gate, encode_base45_zlib(message, PREFIX)), Credential)
    for index in range(len(message)):
        for bit in (0x01, 0x80):
            changed = bytearray(message)
            changed[index] ^= bit
            result = parse(gate, encode_base45_zlib(bytes(changed), PREFIX))
            assert isinstance(result, Rejection), (index, bit)


@pytest.mark.parametrize("kind", ["declaration", "staff"])
def test_every_truncation_is_refused_or_not_claimed(site: Site, kind: str) -> None:
    text = site.issue(declaration() if kind == "declaration" else staff_pass())
    gate = site.gate()
    for length in range(len(text)):
        result = parse(gate, text[:length])
        if length < len(PREFIX):
            assert result is None
        else:
            assert isinstance(result, Rejection), length
            assert result.reason == REASON_BAD_ENCODING


# --- keys and signatures -------------------------------------------------------


def test_signature_by_another_key_under_a_known_kid_is_a_bad_signature(site: Site) -> None:
    impostor = ec.generate_private_key(ec.SECP256R1())
    text = issue_code(declaration(), impostor, site.kid)
    refused = rejected(site.gate(), text)
    assert refused.reason == REASON_BAD_SIGNATURE
    assert refused.display_name is None  # a forgery names nobody


def test_another_algorithm_under_a_known_kid_is_a_bad_signature(site: Site) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    text = signed_cwt(site, _cwt(site), key=rsa_key)
    result = rejected(site.gate(), text)
    assert result.reason == REASON_BAD_SIGNATURE
    assert "PS256" in result.detail


def test_unknown_kid_is_refused(site: Site) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    text = issue_code(declaration(), stranger, kid_for(stranger.public_key()))
    assert rejected(site.gate(), text).reason == REASON_UNKNOWN_KEY


def test_code_without_kid_is_an_unknown_key(site: Site) -> None:
    message = sign1(cbor2.dumps(_cwt(site)), site.private_key, kid=None)
    assert rejected(site.gate(), encode_base45_zlib(message, PREFIX)).reason == REASON_UNKNOWN_KEY


def test_code_from_a_retired_key_is_refused_even_if_genuine(site: Site) -> None:
    text = site.issue(declaration())
    key = site.ring.keys[0]
    retired = SiteKey(key.kid, key.public_key, key.created, retired_at=ISSUED)
    gate = SiteCodeFormat(KeyRing((retired,)), SITE)
    assert rejected(gate, text).reason == REASON_RETIRED_KEY


def test_code_from_an_older_key_still_verifies_after_rotation(site: Site) -> None:
    text = site.issue(declaration())
    newer = ec.generate_private_key(ec.SECP256R1())
    ring = KeyRing((*site.ring.keys, SiteKey(kid_for(newer.public_key()), newer.public_key(), AT)))
    gate = SiteCodeFormat(ring, SITE)
    assert isinstance(parse(gate, text), Credential)


def test_kid_in_the_unprotected_header_still_selects_the_key(site: Site) -> None:
    payload = cbor2.dumps(_cwt(site))
    protected = cbor2.dumps({HEADER_ALG: ALG_ES256})
    to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(site.private_key.sign(to_sign, ec.ECDSA(hashes.SHA256())))
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    message = cbor2.dumps(
        cbor2.CBORTag(18, [protected, {HEADER_KID: site.kid}, payload, signature])
    )
    assert isinstance(parse(site.gate(), encode_base45_zlib(message, PREFIX)), Credential)


# --- claims --------------------------------------------------------------------


def _cwt(site: Site, **changes: Any) -> dict:
    cwt: dict[int, Any] = {
        CLAIM_ISS: SITE,
        CLAIM_EXP: int((ISSUED + timedelta(hours=12)).timestamp()),
        CLAIM_IAT: int(ISSUED.timestamp()),
        7: CODE_ID,
        CLAIM_GATEKIOSK: {0: 0, 1: "Trần Văn Đức"},
    }
    for key, value in changes.items():
        label = {"iss": CLAIM_ISS, "exp": CLAIM_EXP, "iat": CLAIM_IAT, "nbf": CLAIM_NBF}.get(key)
        label = label if label is not None else {"cti": 7, "private": CLAIM_GATEKIOSK}[key]
        if value is _DROP:
            cwt.pop(label)
        else:
            cwt[label] = value
    return cwt


_DROP = object()


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": _DROP},
        {"iss": 7},
        {"exp": _DROP},
        {"exp": "tomorrow"},
        {"exp": 1.5e9},
        {"exp": True},
        {"exp": -1},
        {"exp": 2**70},
        {"exp": cbor2.CBORTag(1, 1717300000)},
        {"iat": _DROP},
        {"iat": int((ISSUED + timedelta(days=1)).timestamp())},  # expires before issued
        {"nbf": "soon"},
        {"cti": _DROP},
        {"cti": b"ab"},
        {"cti": "0123456789abcdef"},
        {"private": _DROP},
        {"private": [0, "Trần Văn Đức"]},
        {"private": {0: 2, 1: "Trần Văn Đức"}},
        {"private": {0: True, 1: "Trần Văn Đức"}},
        {"private": {0: 0}},
        {"private": {0: 0, 1: "Trần\tVăn Đức"}},
        {"private": {0: 0, 1: "12345"}},
        {"private": {0: 0, 1: b"name"}},
        {"private": {0: 0, 1: "Trần Văn Đức", 2: "Fever!"}},
        {"private": {0: 0, 1: "Trần Văn Đức", 4: "NV-1"}},
        {"private": {0: 1, 1: "Trần Văn Đức"}},  # staff pass without staff id
        {"private": {0: 1, 1: "Trần Văn Đức", 4: "NV 1"}},
        {"private": {0: 1, 1: "Trần Văn Đức", 4: "NV-1", 2: "fever"}},
        {"private": {0: 1, 1: "Trần Văn Đức", 4: "NV-1", 3: "\u200b"}},
        {"private": {0: 1, 1: "Trần Văn Đức", 4: "NV-1", 3: 12}},
    ],
)
def test_signed_but_malformed_claims_are_bad_claims(site: Site, changes: dict) -> None:
    text = signed_cwt(site, _cwt(site, **changes))
    assert rejected(site.gate(), text).reason == REASON_BAD_CLAIMS


def test_claims_that_are_not_a_map_are_bad_claims(site: Site) -> None:
    message = sign1(cbor2.dumps([1, 2, 3]), site.private_key, kid=site.kid)
    result = rejected(site.gate(), encode_base45_zlib(message, PREFIX))
    assert result.reason == REASON_BAD_CLAIMS


def test_unknown_extra_claims_are_ignored(site: Site) -> None:
    cwt = _cwt(site)
    cwt[2] = "subject"
    cwt[-70002] = {"future": True}
    assert isinstance(parse(site.gate(), signed_cwt(site, cwt)), Credential)


def test_code_of_another_site_is_refused(site: Site) -> None:
    text = site.issue(declaration(site_id="cho-ben-thanh"))
    result = rejected(site.gate(), text)
    assert result.reason == REASON_WRONG_SITE
    assert result.kind == KIND_DECLARATION


def test_kind_the_gate_does_not_accept_is_refused(site: Site) -> None:
    gate = site.gate(kinds=[KIND_DECLARATION])
    result = rejected(gate, site.issue(staff_pass()))
    assert result.reason == REASON_KIND_NOT_ALLOWED
    assert result.kind == KIND_STAFF_PASS


@pytest.mark.parametrize(
    ("at", "reason"),
    [
        (ISSUED + timedelta(hours=12), REASON_EXPIRED),
        (ISSUED + timedelta(days=3), REASON_EXPIRED),
        (ISSUED - timedelta(hours=1), REASON_NOT_YET_VALID),
    ],
)
def test_validity_window_without_skew(site: Site, at: datetime, reason: str) -> None:
    gate = site.gate(skew_s=0)
    assert rejected(gate, site.issue(declaration()), at=at).reason == reason


def test_a_genuine_code_refused_for_what_it_says_names_its_holder(site: Site) -> None:
    issued = site.issue(declaration())
    held = parse(site.gate(skew_s=0), issued, at=ISSUED)
    assert isinstance(held, Credential)
    expired = rejected(site.gate(skew_s=0), issued, at=ISSUED + timedelta(days=3))
    assert expired.display_name == held.display_name
    other_kind = rejected(site.gate(kinds=[KIND_DECLARATION]), site.issue(staff_pass()))
    assert other_kind.display_name


def test_the_last_second_before_expiry_is_still_valid(site: Site) -> None:
    gate = site.gate(skew_s=0)
    at = ISSUED + timedelta(hours=12) - timedelta(seconds=1)
    assert isinstance(parse(gate, site.issue(declaration()), at=at), Credential)
    assert isinstance(parse(gate, site.issue(declaration()), at=ISSUED), Credential)


EXPIRY = ISSUED + timedelta(hours=12)


@pytest.mark.parametrize(
    ("at", "accepted"),
    [
        (ISSUED - timedelta(seconds=301), False),  # gate clock more than skew early
        (ISSUED - timedelta(seconds=300), True),  # ... up to skew early is tolerated
        (EXPIRY + timedelta(seconds=299), True),  # ... and up to skew late
        (EXPIRY + timedelta(seconds=300), False),
    ],
    ids=["early-301s", "early-300s", "late-299s", "late-300s"],
)
def test_clock_skew_is_tolerated_at_both_ends(site: Site, at: datetime, accepted: bool) -> None:
    result = parse(site.gate(skew_s=300), site.issue(declaration()), at=at)
    assert isinstance(result, Credential) is accepted, result


def test_not_before_overrides_issued_at(site: Site) -> None:
    visit = ISSUED + timedelta(days=1)
    text = site.issue(
        declaration(not_before=visit, expires_at=visit + timedelta(hours=8)),
    )
    gate = site.gate(skew_s=60)
    result = rejected(gate, text, at=ISSUED + timedelta(hours=1))
    assert result.reason == REASON_NOT_YET_VALID
    assert "2024-06-02T07:00:00+00:00" in result.detail
    assert isinstance(parse(gate, text, at=visit + timedelta(minutes=5)), Credential)


def test_a_verified_code_carries_its_code_id_for_revocation(site: Site) -> None:
    credential = parse(site.gate(), site.issue(staff_pass()))
    assert isinstance(credential, Credential)
    assert credential.code_id == CODE_ID.hex()
    replacement = parse(site.gate(), site.issue(staff_pass(code_id=new_code_id())))
    assert isinstance(replacement, Credential)
    assert replacement.code_id != CODE_ID.hex()  # revoking a lost pass spares its replacement
    assert replacement.subject_id == credential.subject_id


def test_revoked_code_is_refused_by_the_policy_with_the_revocation_reason(site: Site) -> None:
    credential = parse(site.gate(), site.issue(staff_pass()))
    assert isinstance(credential, Credential)
    modes: list[tuple[Mode, str]] = [("both", "in"), ("entry", "in"), ("exit", "out")]
    for mode, direction in modes:
        decision = decide(credential, rules=PolicyRules(mode=mode), view=GateView(revoked=True))
        assert (decision.verdict, decision.direction) == ("deny", direction)
        assert decision.reason == REASON_REVOKED == "sitecode-revoked"
        assert decision.message == message_for(REASON_REVOKED)
        assert decision.warning is None
    inside = GateView(revoked=True, present_since=AT)  # not even let out
    assert decide(credential, rules=PolicyRules(), view=inside).reason == REASON_REVOKED
    assert decide(credential, rules=PolicyRules(), view=GateView()).allowed


def test_codes_that_fail_earlier_keep_their_own_reason_even_if_revoked(site: Site) -> None:
    gate = site.gate()
    impostor = ec.generate_private_key(ec.SECP256R1())
    forged = rejected(gate, issue_code(declaration(), impostor, site.kid))
    expired = rejected(gate, site.issue(declaration()), at=ISSUED + timedelta(days=1))
    revoked = GateView(revoked=True)
    assert decide(forged, rules=PolicyRules(), view=revoked).reason == REASON_BAD_SIGNATURE
    assert decide(expired, rules=PolicyRules(), view=revoked).reason == REASON_EXPIRED


def test_declaration_with_a_refusing_answer_sends_the_visitor_to_the_guard(site: Site) -> None:
    result = rejected(site.gate(), site.issue(declaration(refused_answer="fever")))
    assert result.reason == REASON_REFUSED_ANSWERS
    assert "fever" in result.detail
    message = message_for(REASON_REFUSED_ANSWERS)
    assert "bảo vệ" in message.vi
    assert "guard" in message.en


def test_every_reason_has_a_vietnamese_and_english_message() -> None:
    import kiosk.codes.sitecodes as sitecodes

    reasons = [v for k, v in vars(sitecodes).items() if k.startswith("REASON_")]
    reasons.append(REASON_REVOKED)  # the policy's, from the gate's view
    assert len(set(reasons)) == 11
    for reason in reasons:
        message = message_for(reason)
        assert message.vi
        assert message.en
        assert message.en != "Invalid QR code", reason


# --- what is not a site code, and hostile input ---------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"HC1:6BFOXN%TS3DH0YOJ58S S-W5HDC *M0II5XHC9B5G2+$N",
        b"gk1:ABC",
        b"GK2:ABC",
        b"001090000123||NGUYEN VAN A|01011990|Nam|Ha Noi|15042021",
    ],
)
def test_other_payloads_are_not_claimed(site: Site, payload: bytes) -> None:
    assert site.gate().parse(payload, at=AT) is None


def test_surrounding_whitespace_and_bom_are_tolerated(site: Site) -> None:
    text = site.issue(declaration()).encode()
    assert isinstance(parse(site.gate(), b"\xef\xbb\xbf" + text + b"\r\n"), Credential)


def test_non_ascii_after_the_prefix_is_bad_encoding(site: Site) -> None:
    assert rejected(site.gate(), "GK1:Đ".encode()).reason == REASON_BAD_ENCODING


def test_zlib_bomb_is_refused_quickly(site: Site) -> None:
    bomb = PREFIX + base45.b45encode(zlib.compress(bytes(10_000_000), 9)).decode()
    started = time.perf_counter()
    result = rejected(site.gate(), bomb)
    assert result.reason == REASON_BAD_ENCODING
    assert time.perf_counter() - started < 0.1


def test_small_zlib_bomb_that_fits_a_qr_code_is_refused_quickly(site: Site) -> None:
    # 2.5 MB of zeros compress to about 2.4 KB: within what a QR code holds.
    bomb = PREFIX + base45.b45encode(zlib.compress(bytes(2_500_000), 9)).decode()
    assert len(bomb) <= 4296 + len(PREFIX)
    started = time.perf_counter()
    result = rejected(site.gate(), bomb)
    assert result.reason == REASON_BAD_ENCODING
    assert "decompresses to more than" in result.detail
    assert time.perf_counter() - started < 0.1


@HOSTILE
@given(st.binary(max_size=400))
def test_garbage_after_the_prefix_is_refused_never_raised(site: Site, data: bytes) -> None:
    result = site.gate().parse(b"GK1:" + data, at=AT)
    assert isinstance(result, Rejection)


@HOSTILE
@given(st.text(alphabet=base45.BASE45_CHARSET, max_size=400))
def test_base45_garbage_is_refused_never_raised(site: Site, body: str) -> None:
    result = site.gate().parse(f"GK1:{body}".encode(), at=AT)
    assert isinstance(result, Rejection)


@HOSTILE
@given(st.binary(max_size=300))
def test_any_compressed_payload_is_refused_never_raised(site: Site, data: bytes) -> None:
    text = encode_base45_zlib(data, PREFIX)
    result = site.gate().parse(text.encode(), at=AT)
    assert isinstance(result, Rejection)


@HOSTILE
@given(st.binary(max_size=200))
def test_any_signed_payload_that_is_not_claims_is_bad_claims(site: Site, data: bytes) -> None:
    text = encode_base45_zlib(sign1(data, site.private_key, kid=site.kid), PREFIX)
    result = site.gate().parse(text.encode(), at=AT)
    assert isinstance(result, Rejection)
    assert result.reason == REASON_BAD_CLAIMS


# --- issuing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: declaration(kind="visitor"), "kind"),
        (lambda: declaration(site_id="nhà máy"), "site id"),
        (lambda: declaration(code_id=b"abc"), "code id"),
        (lambda: declaration(name=""), "name"),
        (lambda: declaration(name="  Trần  Văn Đức "), "name"),
        (lambda: declaration(issued_at=datetime(2024, 6, 1)), "timezone"),
        (lambda: declaration(expires_at=ISSUED), "expire"),
        (lambda: declaration(not_before=ISSUED + timedelta(days=1)), "expire"),
        (lambda: declaration(refused_answer="Sốt"), "question key"),
        (lambda: declaration(staff_id="NV-1"), "staff id"),
        (lambda: staff_pass(staff_id=None), "staff id"),
        (lambda: staff_pass(staff_id="NV 1"), "staff id"),
        (lambda: staff_pass(refused_answer="fever"), "answers"),
        (lambda: staff_pass(organisation="x" * 61), "organisation"),
        (lambda: staff_pass(organisation="Phòng\nKỹ thuật"), "organisation"),
    ],
)
def test_invalid_claims_are_refused_before_signing(make: Callable[[], Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        make()


def test_issued_code_is_all_qr_alphanumeric(site: Site) -> None:
    text = site.issue(staff_pass())
    assert set(text) <= set(base45.BASE45_CHARSET)


def test_verification_takes_about_a_millisecond(site: Site) -> None:
    import timeit

    raw = site.issue(declaration()).encode()
    gate = site.gate()
    runs = 200
    seconds = timeit.timeit(lambda: gate.parse(raw, at=AT), number=runs) / runs
    print(f"parse + verify: {seconds * 1000:.3f} ms per code")
    assert seconds < 0.02
