"""EU Digital COVID Certificates and Vietnam's vaccine passport (``HC1:``).

Container (HCERT specification 1.0; see :mod:`kiosk.codes.cose`)::

    "HC1:" + base45( zlib( COSE_Sign1[ES256 | PS256]( CWT claims ) ) )

The COSE_Sign1 may be tagged (18), untagged, or wrapped in a CWT tag (61).
The key id (header 4) is in the protected header, else in the unprotected
one; the protected one wins. It is the first 8 bytes of the SHA-256 of the
signing certificate (the DSC), so several certificates can share it: each
trusted certificate with that kid is tried. CWT claims::

    1    iss  issuing country (text, optional)
    4    exp  expiry, seconds since the epoch
    6    iat  issued at (optional)
    -260 hcert: {1: the EU DCC (JSON schema as CBOR)}

Parsing goes decode -> COSE structure -> kid lookup -> signature with each
matching certificate, and only then reads the claims, from the bytes the
signature covers: validity (issued-at and expiry against the clock, within
the signing certificate's own validity), the schema, the signer's extended
key usage against the certificate type, and finally the site's rules.

The schema is the official JSON schema of the version the certificate
declares, with the EU value sets (:mod:`kiosk.codes.dcc_schema`). ``iat``
is optional, as the specification has it: validity rests on ``exp`` and the
signing certificate (see :func:`validity_problem`).

Identity: the subject id is ``hcert:<fnt><<<gnt>:<dob>`` (the transliterated
names the schema requires and the date of birth as written), so the keyed
subject hash matches one person across certificates (a new test certificate
is the same visitor). The display name is the native name in the order of
the issuing country (family name first for Vietnam and a few others), the
transliterated one when there is no usable native name; the transliterated
name and the date of birth travel in the credential's ``birth_date`` and
attributes, so a guard can compare them with an ID card.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import cbor2

from kiosk.codes import dcc_valuesets as vs
from kiosk.codes.base import (
    KIND_HCERT,
    Credential,
    Identified,
    Rejection,
    normalise_name,
    payload_bytes,
)
from kiosk.codes.cose import (
    CoseError,
    CoseSign1,
    decode_base45_zlib,
    decode_cbor,
    parse_cose_sign1,
    verified_payload,
)
from kiosk.codes.dcc_schema import CERTIFICATE_TYPES, parse_date, parse_datetime, schema_problem
from kiosk.trust import TrustedCertificate, TrustList

PREFIX = "HC1:"
_PREFIX_BYTES = PREFIX.encode("ascii")

CLAIM_ISS = 1
CLAIM_EXP = 4
CLAIM_IAT = 6
CLAIM_HCERT = -260
HCERT_EU_DCC = 1
_MAX_TIMESTAMP = 253_402_300_799
_T = TypeVar("_T")

TYPE_VACCINATION, TYPE_TEST, TYPE_RECOVERY = CERTIFICATE_TYPES
TYPE_NAMES = {TYPE_VACCINATION: "vaccination", TYPE_TEST: "test", TYPE_RECOVERY: "recovery"}

# Extended key usage OIDs a DSC may carry to limit what it signs. The HCERT
# specification writes 1.3.6.1.4.1.1847.2021.1.x; the EU gateway and the
# public test suite's certificates use 1.3.6.1.4.1.0.1847.2021.1.x. Both count.
KEY_USAGE_OIDS: Mapping[str, frozenset[str]] = {
    TYPE_TEST: frozenset({"1.3.6.1.4.1.1847.2021.1.1", "1.3.6.1.4.1.0.1847.2021.1.1"}),
    TYPE_VACCINATION: frozenset({"1.3.6.1.4.1.1847.2021.1.2", "1.3.6.1.4.1.0.1847.2021.1.2"}),
    TYPE_RECOVERY: frozenset({"1.3.6.1.4.1.1847.2021.1.3", "1.3.6.1.4.1.0.1847.2021.1.3"}),
}

# Reason codes (messages in kiosk.messages).
REASON_BAD_ENCODING = "hcert-bad-encoding"
REASON_UNKNOWN_KEY = "hcert-unknown-key"
REASON_BAD_SIGNATURE = "hcert-bad-signature"
REASON_BAD_CLAIMS = "hcert-bad-claims"
REASON_SIGNER_EXPIRED = "hcert-signer-expired"
REASON_WRONG_KEY_USAGE = "hcert-wrong-key-usage"
REASON_EXPIRED = "hcert-expired"
REASON_NOT_YET_VALID = "hcert-not-yet-valid"
REASON_BAD_SCHEMA = "hcert-bad-schema"
REASON_VACCINATION_INCOMPLETE = "hcert-vaccination-incomplete"
REASON_VACCINATION_TOO_RECENT = "hcert-vaccination-too-recent"
REASON_TEST_POSITIVE = "hcert-test-positive"
REASON_TEST_TOO_OLD = "hcert-test-too-old"
REASON_RECOVERY_NOT_VALID = "hcert-recovery-not-valid"

DEFAULT_SKEW_S = 300.0

# Countries whose names are written family name first.
FAMILY_NAME_FIRST = frozenset({"VN", "CN", "JP", "KR", "KP", "TW", "HU", "KH", "MO", "HK"})


class HcertProblem(Exception):
    """One step of reading or checking an HCERT failed: ``reason`` is one of
    the ``REASON_*`` codes, ``detail`` a short English line for the log."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class HcertRules:
    """The site's acceptance rules. ``vaccination_min_days``: days after the
    last dose before a complete vaccination counts; ``test_max_hours``: how
    old a negative test's sample may be; recovery uses the certificate's own
    valid-from and valid-until dates. ``check_value_sets``: see
    :mod:`kiosk.codes.dcc_valuesets`."""

    vaccination_min_days: int = 14
    test_max_hours: float = 48.0
    check_value_sets: bool = True


@dataclass(frozen=True)
class HcertClaims:
    """The CWT claims of a verified HCERT."""

    issuer: str | None
    issued_s: int | None
    """Seconds since the epoch; None when the certificate has no ``iat``."""
    expires_s: int
    dcc: Mapping[str, Any]


# --- reading and verifying ---------------------------------------------------------


def decode(text: str) -> CoseSign1:
    """The COSE_Sign1 inside ``HC1:`` text (:mod:`kiosk.codes.cose` does every
    step, with the one leniency HC1 issuers need: an algorithm in the
    unprotected header when the protected one is empty)."""
    try:
        return parse_cose_sign1(decode_base45_zlib(text, PREFIX), unprotected_alg=True)
    except CoseError as exc:
        raise HcertProblem(REASON_BAD_ENCODING, exc.detail) from None


def verify(msg: CoseSign1, trust: TrustList) -> tuple[TrustedCertificate, bytes]:
    """The trusted certificate whose key verifies ``msg``, and the payload
    bytes that signature covers.

    Every certificate with the message's kid is tried (a kid is only 8
    bytes); a certificate whose key does not fit the algorithm is skipped.
    """
    if msg.kid is None:
        raise HcertProblem(REASON_UNKNOWN_KEY, "no key id in the certificate")
    candidates = trust.matching(msg.kid)
    if not candidates:
        raise HcertProblem(REASON_UNKNOWN_KEY, f"key {msg.kid.hex()} is not in the trust list")
    for cert in candidates:
        try:
            return cert, verified_payload(msg, cert.public_key)
        except CoseError:
            continue  # a bad signature, or a key that does not fit the algorithm
    raise HcertProblem(
        REASON_BAD_SIGNATURE,
        f"the {msg.alg_name} signature does not verify with {len(candidates)} trusted key(s)",
    )


def read_claims(payload: bytes) -> HcertClaims:
    """The CWT claims of a (verified) payload; HcertProblem(hcert-bad-claims)."""
    try:
        cwt = decode_cbor(payload)
    except CoseError as exc:
        raise HcertProblem(REASON_BAD_CLAIMS, exc.detail) from None
    if not isinstance(cwt, Mapping):
        raise HcertProblem(REASON_BAD_CLAIMS, "the claims are not a map")
    issued_s = _timestamp(cwt, CLAIM_IAT, "iat") if CLAIM_IAT in cwt else None
    expires_s = _timestamp(cwt, CLAIM_EXP, "exp")
    issuer = cwt.get(CLAIM_ISS)
    return HcertClaims(
        issuer=issuer if isinstance(issuer, str) else None,
        issued_s=issued_s,
        expires_s=expires_s,
        dcc=dcc_of(cwt),
    )


def dcc_of(cwt: Mapping[Any, Any]) -> Mapping[str, Any]:
    """The EU DCC inside CWT claims (``-260 -> 1``), as JSON-like values.

    Some issuers (HU in the public test suite) tag date-time strings with
    CBOR tag 0, or write epoch times with tag 1, where the schema has plain
    strings: both become the ISO text the schema expects. Any other tag stays
    and fails the schema.
    """
    hcert = cwt.get(CLAIM_HCERT)
    if not isinstance(hcert, Mapping) or len(hcert) != 1:
        raise HcertProblem(REASON_BAD_CLAIMS, "no hcert claim (-260) with exactly one entry")
    dcc = _untag(hcert.get(HCERT_EU_DCC))
    if not isinstance(dcc, Mapping):
        raise HcertProblem(REASON_BAD_CLAIMS, "the hcert claim holds no EU DCC (key 1)")
    return dcc


def _untag(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _untag(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_untag(item) for item in value]
    if isinstance(value, cbor2.CBORTag):
        if value.tag == 0 and isinstance(value.value, str):
            return value.value
        if value.tag == 1 and type(value.value) in (int, float):
            try:
                moment = datetime.fromtimestamp(value.value, UTC)
            except (OverflowError, OSError, ValueError):
                return value
            return moment.isoformat().replace("+00:00", "Z")
    return value


def _timestamp(cwt: Mapping[Any, Any], key: int, label: str) -> int:
    """Whole seconds since the epoch, from the encodings issuers used: an
    integer, a float (fractions dropped), either inside CBOR tag 1."""
    value = cwt.get(key)
    if isinstance(value, cbor2.CBORTag) and value.tag == 1:
        value = value.value
    if type(value) is float and math.isfinite(value):
        value = math.floor(value) if 0 <= value <= _MAX_TIMESTAMP else -1
    if type(value) is not int or not 0 <= value <= _MAX_TIMESTAMP:
        raise HcertProblem(REASON_BAD_CLAIMS, f"no valid {label}")
    return value


def validity_problem(
    claims: HcertClaims, signer: TrustedCertificate, *, at: datetime, skew_s: float
) -> HcertProblem | None:
    """Whether the certificate is valid at ``at``, as the specification
    rests validity on ``exp`` and the signing certificate:

    - not expired (``exp``), with ``skew_s`` of tolerance for the gate's clock;
    - with an ``iat``: issued (``iat``, same tolerance), and issued while its
      signing certificate was valid (``not_before <= iat <= not_after``:
      issuer-side times, compared without tolerance);
    - without one (``iat`` is optional): its signing certificate was valid
      before it expired (``not_before <= exp``).

    A certificate may outlive its signer (the public test suite has such
    cases marked valid); it may not be signed outside its validity.
    """
    now_s = at.timestamp()
    issued_s = claims.issued_s
    if issued_s is not None and now_s < issued_s - skew_s:
        return HcertProblem(REASON_NOT_YET_VALID, f"issued at {_iso(issued_s)}")
    if now_s > claims.expires_s + skew_s:
        return HcertProblem(REASON_EXPIRED, f"expired at {_iso(claims.expires_s)}")
    not_before_s, not_after_s = signer.not_before.timestamp(), signer.not_after.timestamp()
    if issued_s is None:
        signed_in_time = not_before_s <= claims.expires_s
    else:
        signed_in_time = not_before_s <= issued_s <= not_after_s
    if not signed_in_time:
        return HcertProblem(
            REASON_SIGNER_EXPIRED,
            f"issued outside its signing certificate's validity "
            f"({signer.not_before:%Y-%m-%d} to {signer.not_after:%Y-%m-%d})",
        )
    return None


def certificate_type(dcc: Mapping[str, Any]) -> str:
    """``v``, ``t`` or ``r``: exactly one must be present."""
    present = [key for key in CERTIFICATE_TYPES if key in dcc]
    if len(present) != 1:
        raise HcertProblem(
            REASON_BAD_SCHEMA,
            "no vaccination, test or recovery" if not present else "more than one of v, t, r",
        )
    return present[0]


def key_usage_problem(signer: TrustedCertificate, cert_type: str) -> HcertProblem | None:
    """A signing certificate with an extended key usage may sign only the
    certificate types it names; one without may sign all."""
    if signer.key_usages is None or signer.key_usages & KEY_USAGE_OIDS[cert_type]:
        return None
    return HcertProblem(
        REASON_WRONG_KEY_USAGE,
        f"the signing certificate may not sign {TYPE_NAMES[cert_type]} certificates",
    )


# --- the site's rules --------------------------------------------------------------


def rules_problem(
    dcc: Mapping[str, Any], rules: HcertRules, *, at: datetime
) -> HcertProblem | None:
    """Whether the certificate satisfies the site's rules at ``at`` (a
    schema-valid DCC): about COVID-19 (the schema leaves the disease code to
    the issuer; ``hcert-bad-schema`` otherwise), and then by type. Dates in
    certificates are calendar dates; they are compared with ``at``'s UTC
    date."""
    cert_type = certificate_type(dcc)
    entry = _latest(dcc[cert_type], cert_type)
    today = at.astimezone(UTC).date()
    if entry["tg"] != vs.DISEASE_COVID19:
        return HcertProblem(REASON_BAD_SCHEMA, "the disease targeted (tg) is not COVID-19")
    if cert_type == TYPE_VACCINATION:
        if entry["dn"] < entry["sd"]:
            return HcertProblem(
                REASON_VACCINATION_INCOMPLETE, f"dose {entry['dn']} of {entry['sd']}"
            )
        vaccinated = _required(parse_date(entry["dt"]), "v.dt")
        # Days since the dose, not dose + N days: a date near 9999-12-31
        # must not overflow into an exception.
        if (today - vaccinated).days < rules.vaccination_min_days:
            return HcertProblem(
                REASON_VACCINATION_TOO_RECENT,
                f"{rules.vaccination_min_days} days have not passed since the last dose",
            )
        return None
    if cert_type == TYPE_TEST:
        if entry["tr"] != vs.TEST_RESULT_NOT_DETECTED:
            return HcertProblem(REASON_TEST_POSITIVE, "the test result is not negative")
        sampled = _required(parse_datetime(entry["sc"]), "t.sc")
        if sampled > at + timedelta(hours=1):
            return HcertProblem(REASON_NOT_YET_VALID, "the sample was taken in the future")
        if at - sampled > timedelta(hours=rules.test_max_hours):
            return HcertProblem(
                REASON_TEST_TOO_OLD, f"sampled more than {rules.test_max_hours:g} hours ago"
            )
        return None
    valid_from = _required(parse_date(entry["df"]), "r.df")
    valid_until = _required(parse_date(entry["du"]), "r.du")
    if not valid_from <= today <= valid_until:
        return HcertProblem(
            REASON_RECOVERY_NOT_VALID,
            f"valid from {valid_from.isoformat()} until {valid_until.isoformat()}",
        )
    return None


def _required(value: _T | None, where: str) -> _T:
    """A date the schema's format check already read; a schema that let an
    unreadable one through is still a schema failure, never an exception."""
    if value is None:
        raise HcertProblem(REASON_BAD_SCHEMA, f"{where} is not a readable date")
    return value


def _latest(entries: Sequence[Mapping[str, Any]], cert_type: str) -> Mapping[str, Any]:
    """The entry that decides: the most recent one by its date."""
    key = {TYPE_VACCINATION: "dt", TYPE_TEST: "sc", TYPE_RECOVERY: "df"}[cert_type]
    return max(entries, key=lambda entry: str(entry[key]))


# --- identity ----------------------------------------------------------------------


def names(dcc: Mapping[str, Any], country: str) -> tuple[str, str]:
    """(display name, transliterated name) of a schema-valid DCC."""
    nam = dcc["nam"]
    fnt = str(nam.get("fnt") or "")
    gnt = str(nam.get("gnt") or "")
    family_first = country in FAMILY_NAME_FIRST
    transliterated = " ".join(
        part.replace("<", " ").strip() for part in ((fnt, gnt) if family_first else (gnt, fnt))
    )
    transliterated = " ".join(transliterated.split())
    native_parts = [nam.get("fn"), nam.get("gn")]
    if not family_first:
        native_parts.reverse()
    native = normalise_name(" ".join(p for p in native_parts if isinstance(p, str) and p))
    return native or transliterated or "?", transliterated


def subject_id(dcc: Mapping[str, Any]) -> str:
    """``hcert:<fnt><<<gnt>:<dob>``: stable across one person's certificates."""
    nam = dcc["nam"]
    return f"hcert:{nam.get('fnt') or ''}<<{nam.get('gnt') or ''}:{dcc['dob']}"


# --- the format --------------------------------------------------------------------


class HcertFormat:
    """Parses and verifies ``HC1:`` codes against the imported trust list.

    Returns None for payloads not starting with ``HC1:``; else a verified
    Credential or a Rejection with an ``hcert-*`` reason. ``skew_s`` is the
    gate clock's tolerance at both ends of the certificate's validity.
    """

    kind = KIND_HCERT

    def __init__(
        self, trust: TrustList, rules: HcertRules, *, skew_s: float = DEFAULT_SKEW_S
    ) -> None:
        if skew_s < 0:
            raise ValueError("skew_s must not be negative")
        self.trust = trust
        self.rules = rules
        self.skew_s = skew_s

    def parse(self, raw: bytes, *, at: datetime) -> Identified | None:
        raw = payload_bytes(raw)
        if not raw.startswith(_PREFIX_BYTES):
            return None
        try:
            return self._verify(raw, at=at)
        except HcertProblem as exc:
            return Rejection(KIND_HCERT, exc.reason, exc.detail)

    def _verify(self, raw: bytes, *, at: datetime) -> Credential:
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise HcertProblem(REASON_BAD_ENCODING, "not ASCII text") from None
        signer, payload = verify(decode(text), self.trust)
        # From here on the claims are the issuer's own words.
        claims = read_claims(payload)
        problem = validity_problem(claims, signer, at=at, skew_s=self.skew_s)
        if problem is not None:
            raise problem
        dcc = claims.dcc
        detail = schema_problem(dcc, value_sets=self.rules.check_value_sets)
        if detail is not None:
            raise HcertProblem(REASON_BAD_SCHEMA, detail)
        cert_type = certificate_type(dcc)
        problem = key_usage_problem(signer, cert_type) or rules_problem(dcc, self.rules, at=at)
        if problem is not None:
            raise problem
        entry = _latest(dcc[cert_type], cert_type)
        country = str(entry.get("co") or claims.issuer or signer.country)
        display, transliterated = names(dcc, country)
        dob = str(dcc["dob"])
        return Credential(
            kind=KIND_HCERT,
            subject_id=subject_id(dcc),
            display_name=display,
            birth_date=parse_date(dob) if len(dob) == 10 else None,
            verified=True,
            valid_until=datetime.fromtimestamp(claims.expires_s, UTC),
            attributes=(
                ("certificate_type", TYPE_NAMES[cert_type]),
                ("country", country),
                ("transliterated_name", transliterated),
                ("dob", dob),
                ("signer_kid", signer.kid_b64),
            ),
        )


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()
