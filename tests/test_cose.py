"""The COSE_Sign1 verifier core: known-answer vectors, algorithms, strictness.

Vectors come from the COSE working group's examples (cose-wg/Examples):
``sign1-tests/sign-pass-03`` and ``sign-fail-02`` (the RFC 9052 appendix
C.2.1 message, untagged and with a changed payload) and ``CWT/A_3`` (the
signed CWT of RFC 8392 appendix A.3).
"""

from __future__ import annotations

import base64
import contextlib
import time
import zlib

import base45
import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.codes.cose import (
    ALG_EDDSA,
    ALG_ES256,
    ALG_PS256,
    HEADER_ALG,
    HEADER_KID,
    REASON_ALGORITHM,
    REASON_CBOR,
    REASON_ENCODING,
    REASON_SIGNATURE,
    REASON_STRUCTURE,
    CoseError,
    CoseSign1,
    PublicKey,
    base45_decode,
    decode_base45_zlib,
    decode_cbor,
    encode_base45_zlib,
    inflate,
    parse_cose_sign1,
    sig_structure,
    sign1,
    unprefix,
    verified_payload,
    verify_sign1,
)

HOSTILE = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def _b64url(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


# Key "11" of the COSE examples (RFC 9052 appendix C.7.1).
KEY_11 = ec.EllipticCurvePublicNumbers(
    _b64url("usWxHK2PmfnHKwXPS54m0kTcGJ90UiglWiGahtagnv8"),
    _b64url("IBOL-C3BttVivg-lSreASjpkttcsz-1rb7btKLv8EX4"),
    ec.SECP256R1(),
).public_key()

# sign1-tests/sign-pass-03: untagged COSE_Sign1, alg protected, kid unprotected.
SIGN1_UNTAGGED = bytes.fromhex(
    "8443A10126A10442313154546869732069732074686520636F6E74656E742E5840"
    "EAE868ECC176883766C5DC5BA5B8DCA25DAB3C2E56A551CE5705B793914348E1"
    "9F43D6C6BA654472DA301B645B293C9BA939295B97C4BDB847782BFF384C5794"
)
SIGN1_TO_BE_SIGNED = bytes.fromhex(
    "846A5369676E61747572653143A101264054546869732069732074686520636F6E74656E742E"
)
# sign1-tests/sign-fail-02: the same message, tagged, payload changed ('.' -> '/').
SIGN1_CHANGED_PAYLOAD = bytes.fromhex(
    "D28443A10126A10442313154546869732069732074686520636F6E74656E742F5840"
    "EAE868ECC176883766C5DC5BA5B8DCA25DAB3C2E56A551CE5705B793914348E1"
    "9F43D6C6BA654472DA301B645B293C9BA939295B97C4BDB847782BFF384C5794"
)

# CWT/A_3: RFC 8392's signed CWT. Its protected header {3: 65000, 1: -7}
# is not in canonical order: re-encoding it would change the signed bytes.
CWT_KEY = ec.EllipticCurvePublicNumbers(
    int("c4f9160fc22682991c59c4d96e8accc2da3cc7b7a9bc197c7c1e1bc6d0c1dc61", 16),
    int("feb11ca73b028a10cf77d58a2dfdf2a11eab8ffeeeaaeeb03097ffee9f3ef2fc", 16),
    ec.SECP256R1(),
).public_key()
CWT_SIGNED = bytes.fromhex(
    "D28447A20319FDE80126A05853A70175636F61703A2F2F61732E6578616D706C652E636F6D"
    "02656572696B77037818636F61703A2F2F6C696768742E6578616D706C652E636F6D04C11A"
    "5612AEB005C11A5610D9F006C11A5610D9F007420B7158408CAAD9EBD60E5F41CD683771E8"
    "A02CADE07D894DD1CFAF3A23C6481546E78FEBC0C13E8F649096F347480DB3E8C16CDDC041"
    "16A3874CF0A4DA2F4CB2D67C8EB0"
)
CWT_TO_BE_SIGNED = bytes.fromhex(
    "846A5369676E61747572653147A20319FDE80126405853A70175636F61703A2F2F61732E65"
    "78616D706C652E636F6D02656572696B77037818636F61703A2F2F6C696768742E6578616D"
    "706C652E636F6D04C11A5612AEB005C11A5610D9F006C11A5610D9F007420B71"
)


@pytest.fixture(scope="module")
def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def tagged(*parts: object) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(18, list(parts)))


def es256_raw(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """A raw r||s ES256 signature over ``data`` (independent of sign1)."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def signed_with_headers(
    key: ec.EllipticCurvePrivateKey, protected: bytes, unprotected: dict, payload: bytes
) -> bytes:
    to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
    return tagged(protected, unprotected, payload, es256_raw(key, to_sign))


def with_signature(msg: CoseSign1, signature: bytes) -> CoseSign1:
    return CoseSign1(
        protected=msg.protected,
        protected_header=msg.protected_header,
        unprotected_header=msg.unprotected_header,
        alg=msg.alg,
        kid=msg.kid,
        unverified_payload=msg.unverified_payload,
        signature=signature,
    )


# --- known-answer vectors ------------------------------------------------------


def test_rfc9052_example_untagged_verifies_with_key_from_unprotected_kid() -> None:
    msg = parse_cose_sign1(SIGN1_UNTAGGED)
    assert msg.alg == ALG_ES256
    assert msg.kid == b"11"
    assert msg.unverified_payload == b"This is the content."
    assert sig_structure(msg) == SIGN1_TO_BE_SIGNED
    assert verify_sign1(msg, KEY_11)
    assert verified_payload(msg, KEY_11) == b"This is the content."


def test_rfc9052_example_tagged_verifies() -> None:
    msg = parse_cose_sign1(b"\xd2" + SIGN1_UNTAGGED)
    assert verify_sign1(msg, KEY_11)


def test_rfc9052_example_with_changed_payload_fails() -> None:
    msg = parse_cose_sign1(SIGN1_CHANGED_PAYLOAD)
    assert not verify_sign1(msg, KEY_11)
    with pytest.raises(CoseError) as caught:
        verified_payload(msg, KEY_11)
    assert caught.value.reason == REASON_SIGNATURE


def test_rfc8392_cwt_verifies_over_the_protected_bytes_as_received() -> None:
    msg = parse_cose_sign1(CWT_SIGNED)
    assert msg.protected == bytes.fromhex("A20319FDE80126")
    assert msg.kid is None
    assert sig_structure(msg) == CWT_TO_BE_SIGNED
    assert verify_sign1(msg, CWT_KEY)
    claims = decode_cbor(verified_payload(msg, CWT_KEY))
    # RFC 8392 claim keys: iss 1, sub 2, aud 3, exp 4, nbf 5, iat 6, cti 7.
    assert claims[1] == "coap://as.example.com"
    assert claims[2] == "erikw"
    assert claims[4] == cbor2.CBORTag(1, 1444064944)  # tags stay uninterpreted
    assert claims[7] == bytes.fromhex("0b71")


def test_a_canonical_re_encoding_of_the_protected_header_does_not_verify() -> None:
    msg = parse_cose_sign1(CWT_SIGNED)
    reencoded = cbor2.dumps(dict(sorted(msg.protected_header.items())))
    assert reencoded != msg.protected  # same map, different bytes
    forged = CoseSign1(
        protected=reencoded,
        protected_header=msg.protected_header,
        unprotected_header=msg.unprotected_header,
        alg=msg.alg,
        kid=msg.kid,
        unverified_payload=msg.unverified_payload,
        signature=msg.signature,
    )
    assert not verify_sign1(forged, CWT_KEY)


# --- tags ----------------------------------------------------------------------


def test_cwt_tag_61_around_tag_18_is_accepted(p256: ec.EllipticCurvePrivateKey) -> None:
    inner = cbor2.loads(sign1(b"payload", p256, kid=b"k"))
    wrapped = cbor2.dumps(cbor2.CBORTag(61, inner))
    msg = parse_cose_sign1(wrapped)
    assert verified_payload(msg, p256.public_key()) == b"payload"


def test_untagged_sign1_is_accepted(p256: ec.EllipticCurvePrivateKey) -> None:
    msg = parse_cose_sign1(sign1(b"payload", p256, kid=b"k", tagged=False))
    assert verify_sign1(msg, p256.public_key())


@pytest.mark.parametrize(
    "wrap",
    [
        lambda parts: cbor2.CBORTag(61, parts),  # CWT tag straight around the array
        lambda parts: cbor2.CBORTag(17, parts),  # COSE_Mac0
        lambda parts: cbor2.CBORTag(98, parts),  # COSE_Sign
        lambda parts: cbor2.CBORTag(61, cbor2.CBORTag(61, cbor2.CBORTag(18, parts))),
    ],
    ids=["61-untagged", "mac0", "sign", "61-61-18"],
)
def test_other_tags_are_refused(p256: ec.EllipticCurvePrivateKey, wrap) -> None:
    parts = cbor2.loads(sign1(b"payload", p256, kid=b"k", tagged=False))
    with pytest.raises(CoseError) as caught:
        parse_cose_sign1(cbor2.dumps(wrap(parts)))
    assert caught.value.reason == REASON_STRUCTURE


# --- headers -------------------------------------------------------------------


def test_protected_kid_wins_over_unprotected(p256: ec.EllipticCurvePrivateKey) -> None:
    protected = cbor2.dumps({HEADER_ALG: ALG_ES256, HEADER_KID: b"protected"})
    data = signed_with_headers(p256, protected, {HEADER_KID: b"unprotected"}, b"x")
    assert parse_cose_sign1(data).kid == b"protected"


def test_kid_from_unprotected_when_protected_has_none(p256: ec.EllipticCurvePrivateKey) -> None:
    protected = cbor2.dumps({HEADER_ALG: ALG_ES256})
    data = signed_with_headers(p256, protected, {HEADER_KID: b"unprotected"}, b"x")
    msg = parse_cose_sign1(data)
    assert msg.kid == b"unprotected"
    assert verify_sign1(msg, p256.public_key())


def test_algorithm_only_in_unprotected_header_is_refused(p256: ec.EllipticCurvePrivateKey) -> None:
    data = signed_with_headers(p256, b"", {HEADER_ALG: ALG_ES256, HEADER_KID: b"k"}, b"x")
    with pytest.raises(CoseError) as caught:
        parse_cose_sign1(data)
    assert caught.value.reason == REASON_STRUCTURE
    assert "protected" in str(caught.value)


def test_hc1_leniency_takes_the_algorithm_from_an_empty_protected_headers_neighbour(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    data = signed_with_headers(p256, b"", {HEADER_ALG: ALG_ES256, HEADER_KID: b"k"}, b"x")
    msg = parse_cose_sign1(data, unprotected_alg=True)
    assert (msg.alg, msg.kid, msg.protected) == (ALG_ES256, b"k", b"")
    assert verified_payload(msg, p256.public_key()) == b"x"
    # The algorithm only picks the branch: a key of another type is refused.
    swapped = parse_cose_sign1(
        signed_with_headers(p256, b"", {HEADER_ALG: ALG_PS256}, b"x"), unprotected_alg=True
    )
    with pytest.raises(CoseError) as caught:
        verified_payload(swapped, p256.public_key())
    assert caught.value.reason == REASON_ALGORITHM


@pytest.mark.parametrize(
    "protected", [cbor2.dumps({}), cbor2.dumps({HEADER_KID: b"k"})], ids=["empty-map", "kid-only"]
)
def test_hc1_leniency_needs_a_protected_header_of_zero_bytes(
    p256: ec.EllipticCurvePrivateKey, protected: bytes
) -> None:
    data = signed_with_headers(p256, protected, {HEADER_ALG: ALG_ES256}, b"x")
    with pytest.raises(CoseError, match="no algorithm in the protected header"):
        parse_cose_sign1(data, unprotected_alg=True)


def test_unprotected_algorithm_never_overrides_protected(p256: ec.EllipticCurvePrivateKey) -> None:
    protected = cbor2.dumps({HEADER_ALG: ALG_ES256})
    data = signed_with_headers(p256, protected, {HEADER_ALG: ALG_PS256}, b"x")
    msg = parse_cose_sign1(data)
    assert msg.alg == ALG_ES256
    assert verify_sign1(msg, p256.public_key())


@pytest.mark.parametrize(
    ("parts", "words"),
    [
        ([b"", {}, b"x"], "four-element"),
        ([b"", {}, b"x", b"s", b"extra"], "four-element"),
        ([{1: -7}, {}, b"x", b"s"], "protected header is not a byte string"),
        ([cbor2.dumps([1, -7]), {}, b"x", b"s"], "not a CBOR map"),
        ([cbor2.dumps({1: -7}), [], b"x", b"s"], "unprotected header is not a map"),
        ([cbor2.dumps({1: -7}), {}, None, b"s"], "detached"),
        ([cbor2.dumps({1: -7}), {}, "x", b"s"], "payload is not a byte string"),
        ([cbor2.dumps({1: -7}), {}, b"x", "s"], "signature is not a byte string"),
        ([cbor2.dumps({1: -7, 2: [1]}), {}, b"x", b"s"], "critical"),
        ([cbor2.dumps({1: -7, 4: "text"}), {}, b"x", b"s"], "key id"),
        ([cbor2.dumps({1: -7}), {4: 11}, b"x", b"s"], "key id"),
        ([b"\xa0", {1: -7}, b"x", b"s"], "no algorithm"),
    ],
)
def test_malformed_structures_are_refused(parts: list, words: str) -> None:
    with pytest.raises(CoseError) as caught:
        parse_cose_sign1(cbor2.dumps(cbor2.CBORTag(18, parts)))
    assert words in str(caught.value)


@pytest.mark.parametrize("alg", ["ES256", True, -7.0, None])
def test_algorithm_must_be_an_integer(alg: object) -> None:
    parts = [cbor2.dumps({1: alg}), {}, b"x", b"s" * 64]
    with pytest.raises(CoseError) as caught:
        parse_cose_sign1(cbor2.dumps(cbor2.CBORTag(18, parts)))
    assert caught.value.reason == REASON_ALGORITHM


def test_protected_header_with_trailing_bytes_is_refused() -> None:
    parts = [cbor2.dumps({1: -7}) + b"\x00", {}, b"x", b"s" * 64]
    with pytest.raises(CoseError) as caught:
        parse_cose_sign1(cbor2.dumps(cbor2.CBORTag(18, parts)))
    assert caught.value.reason == REASON_CBOR


# --- algorithms ----------------------------------------------------------------


def test_es256_round_trip_and_tampering(p256: ec.EllipticCurvePrivateKey) -> None:
    data = sign1(b"the payload", p256, kid=b"kid")
    msg = parse_cose_sign1(data)
    public = p256.public_key()
    assert msg.alg == ALG_ES256
    assert len(msg.signature) == 64
    assert verify_sign1(msg, public)

    sig = bytearray(msg.signature)
    sig[10] ^= 1
    assert not verify_sign1(with_signature(msg, bytes(sig)), public)
    changed_payload = CoseSign1(
        msg.protected, msg.protected_header, {}, msg.alg, msg.kid, b"the paylOad", msg.signature
    )
    assert not verify_sign1(changed_payload, public)
    other_protected = cbor2.dumps({HEADER_ALG: ALG_ES256, HEADER_KID: b"kie"})
    changed_header = CoseSign1(
        other_protected, msg.protected_header, {}, msg.alg, msg.kid, msg.unverified_payload,
        msg.signature,
    )  # fmt: skip
    assert not verify_sign1(changed_header, public)


def test_es256_with_another_key_fails(p256: ec.EllipticCurvePrivateKey) -> None:
    msg = parse_cose_sign1(sign1(b"x", p256, kid=None))
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert not verify_sign1(msg, other)


@pytest.mark.parametrize("length", [0, 63, 65, 70, 72])
def test_es256_signatures_of_another_length_are_invalid(
    p256: ec.EllipticCurvePrivateKey, length: int
) -> None:
    msg = parse_cose_sign1(sign1(b"x", p256, kid=None))
    signature = (msg.signature * 2)[:length]
    assert not verify_sign1(with_signature(msg, signature), p256.public_key())


def test_es256_der_encoded_signature_is_invalid(p256: ec.EllipticCurvePrivateKey) -> None:
    msg = parse_cose_sign1(sign1(b"x", p256, kid=None))
    der = p256.sign(sig_structure(msg), ec.ECDSA(hashes.SHA256()))
    assert not verify_sign1(with_signature(msg, der), p256.public_key())


def test_es256_zero_signature_is_invalid(p256: ec.EllipticCurvePrivateKey) -> None:
    msg = parse_cose_sign1(sign1(b"x", p256, kid=None))
    assert not verify_sign1(with_signature(msg, bytes(64)), p256.public_key())
    assert not verify_sign1(with_signature(msg, b"\xff" * 64), p256.public_key())


def test_ps256_round_trip_and_tampering(rsa_key: rsa.RSAPrivateKey) -> None:
    msg = parse_cose_sign1(sign1(b"certificate", rsa_key, kid=b"dsc"))
    assert msg.alg == ALG_PS256
    assert verify_sign1(msg, rsa_key.public_key())
    sig = bytearray(msg.signature)
    sig[-1] ^= 0x80
    assert not verify_sign1(with_signature(msg, bytes(sig)), rsa_key.public_key())
    assert not verify_sign1(with_signature(msg, msg.signature[:-1]), rsa_key.public_key())


def test_ps256_salt_length_is_32_unless_auto_is_asked_for(rsa_key: rsa.RSAPrivateKey) -> None:
    protected = cbor2.dumps({HEADER_ALG: ALG_PS256})
    to_sign = cbor2.dumps(["Signature1", protected, b"", b"x"])
    pss_max = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)
    signature = rsa_key.sign(to_sign, pss_max, hashes.SHA256())
    msg = parse_cose_sign1(tagged(protected, {}, b"x", signature))
    assert not verify_sign1(msg, rsa_key.public_key())
    assert verify_sign1(msg, rsa_key.public_key(), pss_salt_auto=True)


def test_ps256_refuses_short_rsa_keys() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    msg = parse_cose_sign1(sign1(b"x", small, kid=None))
    with pytest.raises(CoseError) as caught:
        verify_sign1(msg, small.public_key())
    assert caught.value.reason == REASON_ALGORITHM


def test_eddsa_round_trip() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    msg = parse_cose_sign1(sign1(b"x", key, kid=None))
    assert msg.alg == ALG_EDDSA
    assert verify_sign1(msg, key.public_key())
    assert not verify_sign1(with_signature(msg, bytes(64)), key.public_key())


def test_key_that_does_not_fit_the_algorithm_is_an_algorithm_error(
    p256: ec.EllipticCurvePrivateKey, rsa_key: rsa.RSAPrivateKey
) -> None:
    es256 = parse_cose_sign1(sign1(b"x", p256, kid=None))
    ps256 = parse_cose_sign1(sign1(b"x", rsa_key, kid=None))
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    cases: list[tuple[CoseSign1, PublicKey]] = [
        (es256, rsa_key.public_key()),
        (es256, p384),
        (ps256, p256.public_key()),
    ]
    for msg, key in cases:
        with pytest.raises(CoseError) as caught:
            verify_sign1(msg, key)
        assert caught.value.reason == REASON_ALGORITHM


@pytest.mark.parametrize("alg", [-35, -36, -257, 5, 0])  # ES384, ES512, RS256, HMAC, reserved
def test_unsupported_algorithms_are_refused(p256: ec.EllipticCurvePrivateKey, alg: int) -> None:
    protected = cbor2.dumps({HEADER_ALG: alg})
    msg = parse_cose_sign1(tagged(protected, {}, b"x", b"s" * 64))
    with pytest.raises(CoseError) as caught:
        verified_payload(msg, p256.public_key())
    assert caught.value.reason == REASON_ALGORITHM


# --- transport -----------------------------------------------------------------


def test_base45_zlib_round_trip() -> None:
    text = encode_base45_zlib(b"\x00hello\xff" * 10, "HC1:")
    assert text.startswith("HC1:")
    assert set(text[4:]) <= set(base45.BASE45_CHARSET)
    assert decode_base45_zlib(text, "HC1:") == b"\x00hello\xff" * 10


@pytest.mark.parametrize(
    "text",
    [
        "HC2:" + base45.b45encode(zlib.compress(b"x")).decode(),  # wrong prefix
        "hc1:" + base45.b45encode(zlib.compress(b"x")).decode(),  # prefix is case-sensitive
        "HC1:",  # nothing
        "HC1:abc",  # lower case is not base45
        "HC1:" + base45.b45encode(zlib.compress(b"x")).decode() + "\n",  # not stripped here
        "HC1:A",  # one character: impossible length
        "HC1:GGW",  # 16 + 16*45 + 32*2025 = 65536 > 0xFFFF
        "HC1:" + base45.b45encode(b"not zlib").decode(),
        "HC1:" + base45.b45encode(zlib.compress(b"x" * 100)[:-3]).decode(),  # truncated
        "HC1:" + base45.b45encode(zlib.compress(b"x") + b"\x00").decode(),  # trailing bytes
        "HC1:" + base45.b45encode(zlib.compress(b"x", wbits=-15)).decode(),  # raw deflate
    ],
)
def test_bad_transport_encodings_are_refused(text: str) -> None:
    with pytest.raises(CoseError) as caught:
        decode_base45_zlib(text, "HC1:")
    assert caught.value.reason == REASON_ENCODING


def test_each_transport_step_stands_alone() -> None:
    compressed = zlib.compress(b"payload")
    body = base45.b45encode(compressed).decode()
    assert unprefix("HC1:" + body, "HC1:") == body
    assert base45_decode(body) == compressed
    assert inflate(compressed) == b"payload"
    with pytest.raises(CoseError) as caught:
        base45_decode("abc")
    assert caught.value.reason == REASON_ENCODING
    with pytest.raises(CoseError) as caught:
        inflate(b"not zlib")
    assert caught.value.reason == REASON_ENCODING
    with pytest.raises(CoseError, match="does not start with"):
        unprefix("GK1:" + body, "HC1:")


def test_zlib_bomb_is_refused_quickly_without_inflating_it() -> None:
    bomb = base45.b45encode(zlib.compress(bytes(10_000_000), 9)).decode()
    started = time.perf_counter()
    with pytest.raises(CoseError) as caught:
        decode_base45_zlib("HC1:" + bomb, "HC1:", max_text_chars=len(bomb))
    elapsed = time.perf_counter() - started
    assert caught.value.reason == REASON_ENCODING
    assert "more than 65536 bytes" in str(caught.value)
    assert elapsed < 0.5
    # Without the raised limit it is refused before decompressing: too long for a QR code.
    with pytest.raises(CoseError, match="more than a QR code holds"):
        decode_base45_zlib("HC1:" + bomb, "HC1:")


def test_decompressed_limit_is_inclusive() -> None:
    text = encode_base45_zlib(bytes(1000), "X:")
    assert len(decode_base45_zlib(text, "X:", max_decompressed_bytes=1000)) == 1000
    with pytest.raises(CoseError):
        decode_base45_zlib(text, "X:", max_decompressed_bytes=999)


# --- CBOR ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01\x02",  # trailing bytes
        b"\xa2\x01\x01\x01\x02",  # duplicate map key
        b"\x81" * 40 + b"\x00",  # too deep
        b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",  # absurd length, no data
        b"\x7f\x61",  # unterminated indefinite text
        b"\x62\xff\xfe",  # invalid UTF-8 text
        b"\xa1\x80\x01\xff",  # trailing break
        b"\x1c",  # reserved additional information
    ],
)
def test_malformed_cbor_is_a_cbor_error(data: bytes) -> None:
    with pytest.raises(CoseError) as caught:
        decode_cbor(data)
    assert caught.value.reason == REASON_CBOR


@pytest.mark.parametrize(
    "data",
    [
        "d81c81d81d00",  # a shared list containing itself
        "c06178",  # date/time string tag with garbage
        "c11bffffffffffffffff",  # epoch far beyond datetime
        "d8236161",  # regular expression
        "c24101",  # bignum
    ],
)
def test_semantic_tags_stay_uninterpreted(data: str) -> None:
    item = decode_cbor(bytes.fromhex(data))
    assert isinstance(item, cbor2.CBORTag)


@HOSTILE
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_a_message_or_a_cose_error(data: bytes) -> None:
    with contextlib.suppress(CoseError):
        parse_cose_sign1(data)


@HOSTILE
@given(st.binary(max_size=120))
def test_arbitrary_bytes_after_a_tag_18_give_a_message_or_a_cose_error(data: bytes) -> None:
    with contextlib.suppress(CoseError):
        parse_cose_sign1(b"\xd2\x84" + data)
