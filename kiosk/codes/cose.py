"""The verifier core for signed codes: base45 + zlib + COSE_Sign1 (RFC 9052).

Two code families share this container: the site's own codes (``GK1:``,
:mod:`kiosk.codes.sitecodes`) and EU Digital COVID Certificates (``HC1:``).
Both are ``prefix + base45(zlib(COSE_Sign1(payload)))``; the payload is a CBOR
Web Token (RFC 8392). This module knows nothing about claims: it turns text
into a parsed :class:`CoseSign1` and checks its signature, strictly, and every
failure is a :class:`CoseError` with a coarse ``reason`` the formats map to
their own reason codes.

The order matters and is enforced by the API: :func:`parse_cose_sign1` gives
headers and an *unverified* payload; the only way to obtain payload bytes
that are safe to read is :func:`verified_payload`, which returns exactly the
bytes the signature was checked over. The Sig_structure is always built from
the protected header bytes as received, never from a re-encoding.

Example (the round trip the site's codes make)::

    text = encode_base45_zlib(sign1(payload, private_key, kid=kid), "GK1:")
    msg = parse_cose_sign1(decode_base45_zlib(text, "GK1:"))
    claims = cbor2.loads(verified_payload(msg, public_key))
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import base45
import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from kiosk.errors import GateError

# COSE algorithm identifiers (IANA "COSE Algorithms", RFC 9053 / RFC 8230).
ALG_ES256 = -7  # ECDSA P-256 with SHA-256; signature is raw r || s, 64 bytes
ALG_EDDSA = -8  # Ed25519; signature 64 bytes
ALG_PS256 = -37  # RSASSA-PSS, SHA-256, MGF1-SHA-256, salt length 32 (RFC 8230)

ALGORITHM_NAMES = {ALG_ES256: "ES256", ALG_EDDSA: "EdDSA", ALG_PS256: "PS256"}

# Common header parameter labels (RFC 9052 section 3.1).
HEADER_ALG = 1
HEADER_CRIT = 2
HEADER_KID = 4

# CBOR tags: COSE_Sign1 (RFC 9052) and CWT (RFC 8392), which HC1 issuers
# sometimes wrap around the tagged COSE_Sign1.
TAG_COSE_SIGN1 = 18
TAG_CWT = 61

# The base45 text of a QR code can never be longer than this: version 40,
# error correction L, alphanumeric mode.
MAX_TEXT_CHARS = 4296
# Real payloads decompress to a few hundred bytes (an HC1 certificate to at
# most a few kilobytes). Anything bigger is a zlib bomb.
MAX_DECOMPRESSED_BYTES = 64 * 1024
# Until its signature is checked, every CBOR item of a message is the
# sender's choice, and some items cost far more than their byte: 64 KB of
# one-byte tags or of nested arrays decodes into 30,000+ Python objects in
# about 20 ms (x86; several times that on a Pi), from a QR code of 150
# characters. A QR code holds at most 2,864 bytes of zlib, and real messages
# are under a kilobyte (about 3 with a signer certificate in the unprotected
# header), so :func:`parse_cose_sign1` refuses anything larger than this.
MAX_COSE_BYTES = 8 * 1024
# COSE_Sign1 -> CWT claims -> a private claim map -> a list -> a map is five
# levels; HC1's hcert claim is about as deep. Leave room, refuse absurdity.
MAX_CBOR_DEPTH = 16
# The smallest RSA modulus accepted for PS256 (the HC1 specification's size).
MIN_RSA_BITS = 2048

ES256_SIGNATURE_BYTES = 64
_P256_COORDINATE_BYTES = 32
_PSS_SALT_BYTES = 32  # = SHA-256 digest length, RFC 8230 section 2

_BASE45_ALPHABET = frozenset(base45.BASE45_CHARSET)

# Coarse failure classes; a code format maps each to its own reason code.
REASON_ENCODING = "encoding"  # prefix, base45, zlib, sizes
REASON_CBOR = "cbor"  # not well-formed CBOR (or trailing bytes, duplicate keys, too deep)
REASON_STRUCTURE = "structure"  # well-formed CBOR but not a usable COSE_Sign1
REASON_ALGORITHM = "algorithm"  # unsupported algorithm, or key does not fit it
REASON_SIGNATURE = "signature"  # the signature does not verify

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class CoseError(GateError):
    """A signed code that cannot be decoded, parsed or verified.

    ``reason`` is one of the ``REASON_*`` constants; the message is a short
    English explanation for the log that never quotes the payload.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class CoseSign1:
    """A parsed, not yet verified, COSE_Sign1 message.

    ``protected`` is the protected header exactly as received (the bytes
    inside the bstr); the signature covers these bytes, so they are kept
    rather than re-encoded. ``alg`` comes from the protected header only;
    ``kid`` from the protected header, else the unprotected one (it only
    selects a key, the signature decides). ``unverified_payload`` must not
    be read as claims: use :func:`verified_payload`.
    """

    protected: bytes
    protected_header: Mapping[Any, Any]
    unprotected_header: Mapping[Any, Any]
    alg: int
    kid: bytes | None
    unverified_payload: bytes
    signature: bytes

    @property
    def alg_name(self) -> str:
        return ALGORITHM_NAMES.get(self.alg, str(self.alg))


# --- transport: prefix + base45 + zlib ---------------------------------------


def encode_base45_zlib(data: bytes, prefix: str) -> str:
    """``prefix + base45(zlib(data))``, the text a QR code carries."""
    return prefix + base45.b45encode(zlib.compress(data, 9)).decode("ascii")


def decode_base45_zlib(
    text: str,
    prefix: str,
    *,
    max_text_chars: int = MAX_TEXT_CHARS,
    max_decompressed_bytes: int = MAX_DECOMPRESSED_BYTES,
) -> bytes:
    """The bytes inside ``prefix + base45(zlib(...))`` text: :func:`unprefix`,
    :func:`base45_decode` and :func:`inflate` in turn (each strict, see
    there; the public HCERT test suite checks each step on its own).
    Raises :class:`CoseError` (``REASON_ENCODING``).
    """
    body = unprefix(text, prefix)
    return inflate(base45_decode(body, max_text_chars=max_text_chars), max_decompressed_bytes)


def unprefix(text: str, prefix: str) -> str:
    """The text after ``prefix``, which must match exactly."""
    if not text.startswith(prefix):
        raise CoseError(REASON_ENCODING, f"text does not start with {prefix!r}")
    return text[len(prefix) :]


def base45_decode(body: str, *, max_text_chars: int = MAX_TEXT_CHARS) -> bytes:
    """Strict base45: not empty, at most a QR code's worth of characters,
    every one of them in the base45 alphabet."""
    if len(body) > max_text_chars:
        raise CoseError(
            REASON_ENCODING, f"{len(body)} characters, more than a QR code holds ({max_text_chars})"
        )
    if not body:
        raise CoseError(REASON_ENCODING, "nothing after the prefix")
    if not _BASE45_ALPHABET.issuperset(body):
        raise CoseError(REASON_ENCODING, "a character outside the base45 alphabet")
    try:
        return bytes(base45.b45decode(body))
    except ValueError:
        raise CoseError(REASON_ENCODING, "not valid base45") from None


def inflate(compressed: bytes, max_bytes: int = MAX_DECOMPRESSED_BYTES) -> bytes:
    """zlib, complete with nothing after the stream, and bounded:
    decompression stops at ``max_bytes`` (a zlib bomb costs at most that
    much memory and time)."""
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(compressed, max_bytes + 1)
    except zlib.error:
        raise CoseError(REASON_ENCODING, "not a valid zlib stream") from None
    if len(data) > max_bytes or inflater.unconsumed_tail:
        raise CoseError(REASON_ENCODING, f"decompresses to more than {max_bytes} bytes")
    if not inflater.eof:
        raise CoseError(REASON_ENCODING, "the zlib stream is truncated")
    if inflater.unused_data:
        raise CoseError(REASON_ENCODING, "bytes after the end of the zlib stream")
    return data


# --- CBOR --------------------------------------------------------------------

# cbor2 gives meaning to many tags (dates, bignums, regular expressions,
# shared references that can build cyclic structures, ...). Nothing in a
# COSE_Sign1 or a CWT needs any of that, so every such tag is left as a plain
# CBORTag that the structure checks then refuse.
_RAW_TAGS = (
    *range(0, 6),  # date/time strings and epochs, bignums, decimal fractions
    *range(21, 37 + 1),  # encodings hints, stringrefs, shared values, regexp, MIME, UUID
    52,  # IPv4
    54,  # IPv6
    100,  # epoch date
    256,  # stringref namespace
    258,  # set
    260,  # network address
    261,  # network prefix
    1004,  # RFC 3339 full-date
    1040,  # multi-dimensional array
    55799,  # self-described CBOR
)


def _raw_tag(tag: int) -> Any:
    def decode(value: Any, immutable: bool) -> cbor2.CBORTag:
        return cbor2.CBORTag(tag, value)

    return decode


_SEMANTIC_DECODERS = {tag: _raw_tag(tag) for tag in _RAW_TAGS}


def decode_cbor(data: bytes, *, max_depth: int = MAX_CBOR_DEPTH) -> Any:
    """Exactly one well-formed CBOR item, strictly.

    Refuses trailing bytes, duplicate map keys and nesting deeper than
    ``max_depth``; tags stay uninterpreted :class:`cbor2.CBORTag` values.
    Raises :class:`CoseError` (``REASON_CBOR``) and nothing else.
    """
    stream = io.BytesIO(data)
    try:
        decoder = cbor2.CBORDecoder(
            stream,
            semantic_decoders=_SEMANTIC_DECODERS,
            max_depth=max_depth,
            allow_duplicate_keys=False,
        )
        item = decoder.decode()
    except cbor2.CBORDecodeError as exc:
        raise CoseError(REASON_CBOR, f"malformed CBOR: {_first_words(exc)}") from None
    except Exception as exc:
        # cbor2 documents CBORDecodeError, but its C decoder also lets
        # ValueError, OverflowError, TypeError (unhashable keys), MemoryError
        # and RecursionError through on hostile input. The name is enough.
        raise CoseError(REASON_CBOR, f"malformed CBOR ({type(exc).__name__})") from None
    if stream.tell() != len(data):
        raise CoseError(REASON_CBOR, f"{len(data) - stream.tell()} bytes after the CBOR item")
    return item


def _first_words(exc: Exception) -> str:
    """cbor2's message, cut short: it names the problem, never the payload."""
    return str(exc)[:80]


# --- COSE_Sign1 --------------------------------------------------------------


def parse_cose_sign1(
    data: bytes, *, max_bytes: int = MAX_COSE_BYTES, unprotected_alg: bool = False
) -> CoseSign1:
    """Parse a COSE_Sign1 message: tagged (18), untagged, or a CWT tag 61
    wrapping tag 18, as HC1 issuers produce.

    Checks the structure only; the signature is checked by
    :func:`verify_sign1`. A message longer than ``max_bytes`` is refused
    (``REASON_ENCODING``) before any of it is decoded. Raises :class:`CoseError`.

    ``unprotected_alg`` is one leniency HC1 needs: issuers exist that send an
    empty protected header (zero bytes) with the algorithm and key id
    unprotected (the public test suite's CO20 is valid). The algorithm then
    only picks the verification branch, and :func:`verify_sign1` accepts
    each algorithm only with its own key type (ES256 with P-256, PS256 with
    RSA), so a swapped algorithm cannot make a trusted key accept a forgery.
    The site's own codes never get it.
    """
    if len(data) > max_bytes:
        raise CoseError(
            REASON_ENCODING, f"a COSE_Sign1 of {len(data)} bytes, more than {max_bytes}"
        )
    item = decode_cbor(data)
    if isinstance(item, cbor2.CBORTag) and item.tag == TAG_CWT:
        item = item.value
        if not (isinstance(item, cbor2.CBORTag) and item.tag == TAG_COSE_SIGN1):
            raise CoseError(REASON_STRUCTURE, "CWT tag 61 does not wrap a COSE_Sign1 tag 18")
    if isinstance(item, cbor2.CBORTag):
        if item.tag != TAG_COSE_SIGN1:
            raise CoseError(REASON_STRUCTURE, f"CBOR tag {item.tag} is not COSE_Sign1")
        item = item.value
    # Inside a tag cbor2 gives tuples and frozendicts; untagged, lists and dicts.
    if not isinstance(item, list | tuple) or len(item) != 4:
        raise CoseError(REASON_STRUCTURE, "not a four-element COSE_Sign1 array")
    protected, unprotected, payload, signature = item
    if not isinstance(protected, bytes):
        raise CoseError(REASON_STRUCTURE, "the protected header is not a byte string")
    protected_header = decode_cbor(protected) if protected else {}
    if not isinstance(protected_header, Mapping):
        raise CoseError(REASON_STRUCTURE, "the protected header is not a CBOR map")
    if not isinstance(unprotected, Mapping):
        raise CoseError(REASON_STRUCTURE, "the unprotected header is not a map")
    if payload is None:
        raise CoseError(REASON_STRUCTURE, "detached payloads are not supported")
    if not isinstance(payload, bytes):
        raise CoseError(REASON_STRUCTURE, "the payload is not a byte string")
    if not isinstance(signature, bytes):
        raise CoseError(REASON_STRUCTURE, "the signature is not a byte string")
    if HEADER_CRIT in protected_header or HEADER_CRIT in unprotected:
        # No extension this gate would have to understand exists for its codes.
        raise CoseError(REASON_STRUCTURE, "critical header parameters are not supported")

    if HEADER_ALG in protected_header:
        alg = protected_header[HEADER_ALG]
    elif unprotected_alg and protected == b"" and HEADER_ALG in unprotected:
        alg = unprotected[HEADER_ALG]
    else:
        # An algorithm in the unprotected header could be swapped by anyone.
        raise CoseError(REASON_STRUCTURE, "no algorithm in the protected header")
    if type(alg) is not int:
        raise CoseError(REASON_ALGORITHM, "the algorithm is not an integer identifier")

    # Protected wins (RFC 9052 section 3): only when the protected header has
    # no key id is the unprotected one used, as HC1 allows.
    kid = protected_header.get(HEADER_KID, unprotected.get(HEADER_KID))
    if kid is not None and not isinstance(kid, bytes):
        raise CoseError(REASON_STRUCTURE, "the key id is not a byte string")

    return CoseSign1(
        protected=protected,
        protected_header=protected_header,
        unprotected_header=unprotected,
        alg=alg,
        kid=kid,
        unverified_payload=payload,
        signature=signature,
    )


def sig_structure(msg: CoseSign1, *, external_aad: bytes = b"") -> bytes:
    """The bytes a COSE_Sign1 signature covers (RFC 9052 section 4.4):
    ``["Signature1", protected, external_aad, payload]`` with ``protected``
    exactly as received."""
    return cbor2.dumps(["Signature1", msg.protected, external_aad, msg.unverified_payload])


def verify_sign1(msg: CoseSign1, public_key: PublicKey, *, pss_salt_auto: bool = False) -> bool:
    """Whether ``msg``'s signature is valid for ``public_key``.

    ES256 signatures must be the raw 64-byte ``r || s`` of COSE (converted to
    DER for cryptography); other lengths are invalid. PS256 uses the salt
    length RFC 8230 fixes (32 bytes); ``pss_salt_auto`` accepts any salt
    length the signature encodes, for issuers that signed with OpenSSL's
    maximum. EdDSA means Ed25519.

    Raises :class:`CoseError` (``REASON_ALGORITHM``) when the algorithm is
    not supported or the key does not belong to it: that is a configuration
    or a forgery attempt, not a bad signature.
    """
    data = sig_structure(msg)
    signature = msg.signature
    try:
        if msg.alg == ALG_ES256:
            if not (
                isinstance(public_key, ec.EllipticCurvePublicKey)
                and isinstance(public_key.curve, ec.SECP256R1)
            ):
                raise CoseError(REASON_ALGORITHM, "ES256 needs a P-256 public key")
            if len(signature) != ES256_SIGNATURE_BYTES:
                return False
            r = int.from_bytes(signature[:_P256_COORDINATE_BYTES], "big")
            s = int.from_bytes(signature[_P256_COORDINATE_BYTES:], "big")
            public_key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
            return True
        if msg.alg == ALG_PS256:
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise CoseError(REASON_ALGORITHM, "PS256 needs an RSA public key")
            if public_key.key_size < MIN_RSA_BITS:
                raise CoseError(
                    REASON_ALGORITHM, f"RSA key of {public_key.key_size} bits, under {MIN_RSA_BITS}"
                )
            if len(signature) != (public_key.key_size + 7) // 8:
                return False
            salt = padding.PSS.AUTO if pss_salt_auto else _PSS_SALT_BYTES
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt)
            public_key.verify(signature, data, pss, hashes.SHA256())
            return True
        if msg.alg == ALG_EDDSA:
            if not isinstance(public_key, ed25519.Ed25519PublicKey):
                raise CoseError(REASON_ALGORITHM, "EdDSA needs an Ed25519 public key")
            if len(signature) != ES256_SIGNATURE_BYTES:
                return False
            public_key.verify(signature, data)
            return True
    except (InvalidSignature, ValueError):
        return False
    raise CoseError(REASON_ALGORITHM, f"algorithm {msg.alg_name} is not supported")


def verified_payload(
    msg: CoseSign1, public_key: PublicKey, *, pss_salt_auto: bool = False
) -> bytes:
    """The payload of ``msg``, only if its signature verifies with ``public_key``.

    The returned bytes are the very bytes the signature was checked over.
    Raises :class:`CoseError` (``REASON_SIGNATURE`` or ``REASON_ALGORITHM``).
    """
    if not verify_sign1(msg, public_key, pss_salt_auto=pss_salt_auto):
        raise CoseError(REASON_SIGNATURE, f"the {msg.alg_name} signature does not verify")
    return msg.unverified_payload


# --- signing (issuers and tests) ---------------------------------------------


def algorithm_for(private_key: PrivateKey) -> int:
    """The COSE algorithm this project signs with for a key type."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        if isinstance(private_key.curve, ec.SECP256R1):
            return ALG_ES256
        raise ValueError(f"EC keys must be P-256, not {private_key.curve.name}")
    if isinstance(private_key, rsa.RSAPrivateKey):
        return ALG_PS256
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return ALG_EDDSA
    raise TypeError(f"unsupported key type {type(private_key).__name__}")


def sign1(
    payload: bytes,
    private_key: PrivateKey,
    *,
    kid: bytes | None,
    tagged: bool = True,
) -> bytes:
    """A COSE_Sign1 message over ``payload``: alg and kid in the protected
    header, nothing unprotected, tag 18 unless ``tagged`` is False."""
    alg = algorithm_for(private_key)
    header: dict[int, Any] = {HEADER_ALG: alg}
    if kid is not None:
        header[HEADER_KID] = kid
    protected = cbor2.dumps(header)
    to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(private_key.sign(to_sign, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(_P256_COORDINATE_BYTES, "big") + s.to_bytes(
            _P256_COORDINATE_BYTES, "big"
        )
    elif isinstance(private_key, rsa.RSAPrivateKey):
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=_PSS_SALT_BYTES)
        signature = private_key.sign(to_sign, pss, hashes.SHA256())
    else:
        signature = private_key.sign(to_sign)
    message = [protected, {}, payload, signature]
    return cbor2.dumps(cbor2.CBORTag(TAG_COSE_SIGN1, message) if tagged else message)
