"""The site's own signed codes: health declarations and staff passes (``GK1:``).

A visitor fills in the declaration form on the site's web page and gets a QR
code; a manager issues long-lived staff passes. The gate verifies both
offline, in about a millisecond, holding only the site's public keys.

Container (the same as EU ``HC1:`` certificates, see :mod:`kiosk.codes.cose`)::

    "GK1:" + base45( zlib( COSE_Sign1[ES256]( CWT claims ) ) )

Protected header ``{1: -7 (ES256), 4: kid}``, nothing unprotected. Claims
(RFC 8392 keys)::

    1  iss   site id (text)                      must equal the gate's site id
    4  exp   expiry, seconds since the epoch     refused from exp (+ skew)
    5  nbf   not before (optional)               refused before nbf (- skew)
    6  iat   issued at                           also "not before" when nbf is absent
    7  cti   code id, 8 random bytes             revocation and the log refer to it
    -70001   gatekiosk claim (private use, < -65536), a map:
             0: kind  (0 declaration, 1 staff pass)
             1: name  (NFC text)
             2: refused answer (declarations; the key of the answer that
                refuses entry, e.g. "fever"; absent when every answer is fine)
             3: organisation (staff passes, optional)
             4: staff id (staff passes, required)

Decisions:

- **No phone number in the code**, not even hashed: the gate does not need
  it, a photographed QR would leak it, and a hash of a 10-digit number is
  easily reversed. The web keeps it with the declaration, under the code id.
- **Subject id**: a declaration is one visit, so its subject is the code id
  (hex). A staff pass's subject is ``staff:<staff id>``, so entries and exits
  pair up, and anti-passback holds, across re-issued passes. Revocation is by
  code id, so cancelling a lost pass does not cancel its replacement.
- **Revocation is the gate's view, not the parser's**: a verified code's
  credential carries its code id, the scanner asks the store whether it was
  revoked (with presence and the denylist), and the policy refuses it with
  ``sitecode-revoked``. Parsing touches no database, so a database fault is
  a store fault, never a bad code.
- **Retired, not rotated**: after ``keys rotate`` older keys still verify
  until their codes expire; only a key explicitly retired (withdrawn) makes
  its codes fail, with ``sitecode-retired-key``.

Parsing goes decode -> COSE structure -> key lookup -> signature, and only
then reads claims from the bytes the signature covers.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec

from kiosk.codes.base import (
    KIND_DECLARATION,
    KIND_STAFF_PASS,
    Credential,
    Identified,
    Rejection,
    normalise_name,
    payload_bytes,
)
from kiosk.codes.cose import (
    ALG_ES256,
    CoseError,
    decode_base45_zlib,
    decode_cbor,
    encode_base45_zlib,
    parse_cose_sign1,
    sign1,
    verified_payload,
)
from kiosk.keys import KeyRing

PREFIX = "GK1:"
_PREFIX_BYTES = PREFIX.encode("ascii")

# CWT claim keys (RFC 8392 section 4).
CLAIM_ISS = 1
CLAIM_EXP = 4
CLAIM_NBF = 5
CLAIM_IAT = 6
CLAIM_CTI = 7
# Private use (RFC 8392 section 9.1: keys below -65536). One map for all of
# gatekiosk's own fields, so they cost one 5-byte key, not one each.
CLAIM_GATEKIOSK = -70001

# Keys of the gatekiosk claim map.
_KIND = 0
_NAME = 1
_REFUSED = 2
_ORGANISATION = 3
_STAFF_ID = 4

_KIND_CODES = {KIND_DECLARATION: 0, KIND_STAFF_PASS: 1}
_KINDS_BY_CODE = {code: kind for kind, code in _KIND_CODES.items()}

CODE_ID_BYTES = 8
_MIN_CODE_ID_BYTES = 4
_MAX_CODE_ID_BYTES = 16
# Seconds since the epoch that datetime can represent (up to 9999-12-31).
_MAX_TIMESTAMP = 253_402_300_799
MAX_ORGANISATION_CHARS = 60

_SITE_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,32}")
_STAFF_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,32}")
_ANSWER_KEY_RE = re.compile(r"[a-z0-9-]{1,24}")

# Reason codes, one per way a site code is refused (messages in kiosk.messages).
REASON_BAD_ENCODING = "sitecode-bad-encoding"
REASON_UNKNOWN_KEY = "sitecode-unknown-key"
REASON_RETIRED_KEY = "sitecode-retired-key"
REASON_BAD_SIGNATURE = "sitecode-bad-signature"
REASON_BAD_CLAIMS = "sitecode-bad-claims"
REASON_WRONG_SITE = "sitecode-wrong-site"
REASON_NOT_YET_VALID = "sitecode-not-yet-valid"
REASON_EXPIRED = "sitecode-expired"
# (sitecode-revoked, kiosk.codes.base.REASON_REVOKED, is the policy's: see above.)
REASON_REFUSED_ANSWERS = "sitecode-refused-answers"
# Shared with policy: the gate does not accept this kind of code.
REASON_KIND_NOT_ALLOWED = "kind-not-allowed"

DEFAULT_SKEW_S = 300.0


def new_code_id() -> bytes:
    """A fresh random code id (the CWT ``cti``) for a declaration or a pass."""
    return secrets.token_bytes(CODE_ID_BYTES)


@dataclass(frozen=True)
class SiteCodeClaims:
    """What a site code says, as the web or the CLI issues it.

    Times are aware datetimes, stored to the second. ``refused_answer`` is
    for declarations only: the key of the answer that refuses entry (None
    when every answer is fine). ``staff_id`` is required for staff passes,
    ``organisation`` optional. Invalid values raise ValueError on creation,
    so a form can show the problem before anything is signed.
    """

    kind: str
    site_id: str
    code_id: bytes
    name: str
    issued_at: datetime
    expires_at: datetime
    not_before: datetime | None = None
    refused_answer: str | None = None
    staff_id: str | None = None
    organisation: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KIND_CODES:
            raise ValueError(f"kind must be {KIND_DECLARATION!r} or {KIND_STAFF_PASS!r}")
        if not _SITE_ID_RE.fullmatch(self.site_id):
            raise ValueError("site id must be 1-32 letters, digits, '.', '_' or '-'")
        if not _MIN_CODE_ID_BYTES <= len(self.code_id) <= _MAX_CODE_ID_BYTES:
            raise ValueError(f"code id must be {_MIN_CODE_ID_BYTES}-{_MAX_CODE_ID_BYTES} bytes")
        if normalise_name(self.name) != self.name:
            raise ValueError("name must be a normalised name (see kiosk.codes.base)")
        times = [self.issued_at, self.expires_at]
        if self.not_before is not None:
            times.append(self.not_before)
        if any(t.tzinfo is None for t in times):
            raise ValueError("times must be timezone-aware")
        if not all(0 <= _seconds(t) <= _MAX_TIMESTAMP for t in times):
            raise ValueError("times must be between 1970 and 9999")
        if self.not_before is not None and self.not_before >= self.expires_at:
            raise ValueError("a code must expire after it becomes valid")
        if self.expires_at <= self.issued_at:
            raise ValueError("a code must expire after it is issued")
        if self.kind == KIND_STAFF_PASS:
            if self.staff_id is None or not _STAFF_ID_RE.fullmatch(self.staff_id):
                raise ValueError("a staff pass needs a staff id: 1-32 letters, digits, '._-'")
            if self.refused_answer is not None:
                raise ValueError("staff passes carry no declaration answers")
            if self.organisation is not None and (
                _clean_organisation(self.organisation) != self.organisation
            ):
                raise ValueError(
                    f"organisation must be 1-{MAX_ORGANISATION_CHARS} printable characters"
                )
        else:
            if self.staff_id is not None or self.organisation is not None:
                raise ValueError("declarations carry no staff id or organisation")
            if self.refused_answer is not None and not _ANSWER_KEY_RE.fullmatch(
                self.refused_answer
            ):
                raise ValueError("refused answer must be a question key like 'fever'")

    @property
    def code_id_hex(self) -> str:
        return self.code_id.hex()


def issue_code(claims: SiteCodeClaims, private_key: ec.EllipticCurvePrivateKey, kid: bytes) -> str:
    """Sign ``claims`` with the site key ``kid``; returns the ``GK1:`` text
    to put in a QR code (all QR-alphanumeric characters)."""
    private: dict[int, Any] = {_KIND: _KIND_CODES[claims.kind], _NAME: claims.name}
    if claims.refused_answer is not None:
        private[_REFUSED] = claims.refused_answer
    if claims.organisation is not None:
        private[_ORGANISATION] = claims.organisation
    if claims.staff_id is not None:
        private[_STAFF_ID] = claims.staff_id
    cwt: dict[int, Any] = {
        CLAIM_ISS: claims.site_id,
        CLAIM_EXP: _seconds(claims.expires_at),
        CLAIM_IAT: _seconds(claims.issued_at),
        CLAIM_CTI: claims.code_id,
        CLAIM_GATEKIOSK: private,
    }
    if claims.not_before is not None:
        cwt[CLAIM_NBF] = _seconds(claims.not_before)
    return encode_base45_zlib(sign1(cbor2.dumps(cwt), private_key, kid=kid), PREFIX)


def render_png(text: str, out: str | Path | IO[bytes], *, scale: int = 8) -> None:
    """Write ``text`` as a QR code PNG (error correction M or better, 4-module
    quiet zone) to a path or a binary file object."""
    import segno  # only where codes are drawn, not where they are read

    target = str(out) if isinstance(out, Path) else out
    segno.make(text, error="m", micro=False).save(target, kind="png", scale=scale, border=4)


def qr_version(text: str) -> int:
    """The QR version ``text`` needs at error correction M (for forms that
    want to warn about a code too dense to scan from a phone)."""
    import segno

    version = segno.make(text, error="m", micro=False).version
    assert isinstance(version, int)
    return version


@dataclass(frozen=True)
class _Claims:
    kind: str
    site_id: str
    code_id: bytes
    name: str
    issued_s: int
    expires_s: int
    not_before_s: int | None
    refused_answer: str | None
    staff_id: str | None
    organisation: str | None


class _BadClaims(Exception):
    """Internal: signed claims that do not have the expected shape."""


class SiteCodeFormat:
    """Parses and verifies ``GK1:`` codes against the site's key ring.

    Returns None for anything that does not start with ``GK1:`` (upper case,
    as QR alphanumeric mode carries it), else a verified Credential or a
    Rejection with a ``sitecode-*`` reason; a verified code's credential
    carries its ``code_id`` (hex) for the gate's view to check revocation
    (see the module docstring). ``skew_s`` is the clock
    tolerance applied to both ends of the validity window, because a Pi
    without a real-time clock may be a little off. ``kinds`` limits which
    kinds this gate accepts (others get ``kind-not-allowed``).
    """

    kind = KIND_DECLARATION

    def __init__(
        self,
        keyring: KeyRing,
        site_id: str,
        *,
        skew_s: float = DEFAULT_SKEW_S,
        kinds: Collection[str] = (KIND_DECLARATION, KIND_STAFF_PASS),
    ) -> None:
        unknown = set(kinds) - set(_KIND_CODES)
        if unknown:
            raise ValueError(f"not site code kinds: {sorted(unknown)}")
        if skew_s < 0:
            raise ValueError("skew_s must not be negative")
        self.keyring = keyring
        self.site_id = site_id
        self.skew_s = skew_s
        self.kinds = frozenset(kinds)

    def parse(self, raw: bytes, *, at: datetime) -> Identified | None:
        """See the class docstring; never raises."""
        raw = payload_bytes(raw)
        if not raw.startswith(_PREFIX_BYTES):
            return None
        try:
            text = raw.decode("ascii")
            msg = parse_cose_sign1(decode_base45_zlib(text, PREFIX))
        except UnicodeDecodeError:
            return self._reject(REASON_BAD_ENCODING, "not ASCII text")
        except CoseError as exc:
            return self._reject(REASON_BAD_ENCODING, exc.detail)

        if msg.kid is None:
            return self._reject(REASON_UNKNOWN_KEY, "no key id in the code")
        key = self.keyring.get(msg.kid)
        if key is None:
            return self._reject(REASON_UNKNOWN_KEY, f"key {msg.kid.hex()[:16]} is not a site key")
        if key.retired:
            return self._reject(REASON_RETIRED_KEY, f"key {key.kid_hex} was retired")
        if msg.alg != ALG_ES256:
            return self._reject(REASON_BAD_SIGNATURE, f"algorithm {msg.alg_name}, not ES256")
        try:
            payload = verified_payload(msg, key.public_key)
        except CoseError as exc:
            return self._reject(REASON_BAD_SIGNATURE, exc.detail)

        # From here on the claims are the site's own words.
        try:
            claims = _read_claims(payload)
        except (CoseError, _BadClaims) as exc:
            return self._reject(REASON_BAD_CLAIMS, str(exc))
        return self._check(claims, at=at)

    def _check(self, claims: _Claims, *, at: datetime) -> Identified:
        kind = claims.kind

        def refused(reason: str, detail: str) -> Rejection:
            # The signature verified: the name is the site's own word, and the
            # guard is told whose code was refused.
            return Rejection(kind, reason, detail, display_name=claims.name)

        if claims.site_id != self.site_id:
            return refused(REASON_WRONG_SITE, "issued by another site")
        if kind not in self.kinds:
            return refused(REASON_KIND_NOT_ALLOWED, f"this gate does not accept {kind}")
        now_s = at.timestamp()
        start_s = claims.not_before_s if claims.not_before_s is not None else claims.issued_s
        if now_s < start_s - self.skew_s:
            return refused(REASON_NOT_YET_VALID, f"valid from {_iso(start_s)}")
        if now_s >= claims.expires_s + self.skew_s:
            return refused(REASON_EXPIRED, f"expired at {_iso(claims.expires_s)}")
        code_id_hex = claims.code_id.hex()
        if claims.refused_answer is not None:
            detail = f"declared answer refuses entry: {claims.refused_answer}"
            return refused(REASON_REFUSED_ANSWERS, detail)

        attributes: list[tuple[str, str]] = [("code_id", code_id_hex)]
        if claims.staff_id is not None:
            attributes.append(("staff_id", claims.staff_id))
            subject_id = f"staff:{claims.staff_id}"
        else:
            subject_id = code_id_hex
        if claims.organisation is not None:
            attributes.append(("organisation", claims.organisation))
        return Credential(
            kind=kind,
            subject_id=subject_id,
            display_name=claims.name,
            verified=True,
            valid_until=datetime.fromtimestamp(claims.expires_s, UTC),
            attributes=tuple(attributes),
            code_id=code_id_hex,
        )

    def _reject(self, reason: str, detail: str) -> Rejection:
        return Rejection(self.kind, reason, detail)


def _read_claims(payload: bytes) -> _Claims:
    """The claims of a verified payload; raises _BadClaims or CoseError."""
    cwt = decode_cbor(payload)
    if not isinstance(cwt, Mapping):
        raise _BadClaims("the claims are not a map")
    site_id = cwt.get(CLAIM_ISS)
    if not isinstance(site_id, str):
        raise _BadClaims("no issuer")
    code_id = cwt.get(CLAIM_CTI)
    if not (
        isinstance(code_id, bytes) and _MIN_CODE_ID_BYTES <= len(code_id) <= _MAX_CODE_ID_BYTES
    ):
        raise _BadClaims("no valid code id")
    issued_s = _timestamp(cwt, CLAIM_IAT, "iat")
    expires_s = _timestamp(cwt, CLAIM_EXP, "exp")
    not_before_s = _timestamp(cwt, CLAIM_NBF, "nbf") if CLAIM_NBF in cwt else None
    if expires_s <= issued_s:
        raise _BadClaims("expires before it was issued")

    private = cwt.get(CLAIM_GATEKIOSK)
    if not isinstance(private, Mapping):
        raise _BadClaims("no gatekiosk claim")
    kind_code = private.get(_KIND)
    kind = _KINDS_BY_CODE.get(kind_code) if type(kind_code) is int else None
    if kind is None:
        raise _BadClaims("unknown kind")
    raw_name = private.get(_NAME)
    name = normalise_name(raw_name) if isinstance(raw_name, str) else None
    if name is None:
        raise _BadClaims("no valid name")

    refused = private.get(_REFUSED)
    organisation = private.get(_ORGANISATION)
    staff_id = private.get(_STAFF_ID)
    if kind == KIND_STAFF_PASS:
        if not (isinstance(staff_id, str) and _STAFF_ID_RE.fullmatch(staff_id)):
            raise _BadClaims("a staff pass without a valid staff id")
        if refused is not None:
            raise _BadClaims("a staff pass with declaration answers")
        if organisation is not None and (
            not isinstance(organisation, str) or _clean_organisation(organisation) is None
        ):
            raise _BadClaims("invalid organisation")
        if organisation is not None:
            organisation = _clean_organisation(organisation)
    else:
        if staff_id is not None or organisation is not None:
            raise _BadClaims("a declaration with staff fields")
        if refused is not None and not (
            isinstance(refused, str) and _ANSWER_KEY_RE.fullmatch(refused)
        ):
            raise _BadClaims("invalid refused answer")
    return _Claims(
        kind=kind,
        site_id=site_id,
        code_id=code_id,
        name=name,
        issued_s=issued_s,
        expires_s=expires_s,
        not_before_s=not_before_s,
        refused_answer=refused,
        staff_id=staff_id,
        organisation=organisation,
    )


def _timestamp(cwt: Mapping[Any, Any], key: int, label: str) -> int:
    value = cwt.get(key)
    if type(value) is not int or not 0 <= value <= _MAX_TIMESTAMP:
        raise _BadClaims(f"no valid {label}")
    return value


def _clean_organisation(value: str) -> str | None:
    """NFC, inner whitespace collapsed, no control or format characters,
    1-MAX_ORGANISATION_CHARS characters; None when that is impossible."""
    text = unicodedata.normalize("NFC", value)
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        return None
    text = " ".join(text.split())
    return text if 0 < len(text) <= MAX_ORGANISATION_CHARS else None


def _seconds(at: datetime) -> int:
    return int(at.timestamp())


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()
