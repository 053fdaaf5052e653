"""Trust lists for EU Digital COVID Certificates (``HC1:``): the signing
certificates (DSCs) a site imports once, so the gate verifies offline.

A trust list file is either a PEM bundle (``-----BEGIN CERTIFICATE-----``
blocks) or JSON in one of the shapes national and EU gateways publish:

- a list of base64 DER strings;
- a list of objects with the DER in ``rawData``, ``certificate``, ``raw``,
  ``x5c`` (a list, the first is the signer) or ``der``, and optionally
  ``kid`` and ``country``;
- an object with such a list under ``certificates``/``dscs``/``keys``, or a
  map ``kid -> [objects or base64 strings]``.

Every certificate's key id is computed as the HCERT specification defines it:
the first 8 bytes of the SHA-256 of its DER. A kid given in the file is only
compared with that. The country is the file's, else the certificate
subject's ``C``. Entries that cannot be read are reported one by one, the
rest still imported.

Nothing here touches the network or the database: :class:`TrustList` is the
value the ``HC1:`` format verifies against, built by the composition root
from the store's rows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kiosk.errors import GateError

KID_BYTES = 8
# A trust list file bigger than this is not a trust list (the EU's whole
# list of some 2,000 DSCs is about 4 MB of JSON).
MAX_TRUST_FILE_BYTES = 16 * 1024 * 1024
_EKU_OID = "2.5.29.37"
_PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.DOTALL)
_DER_FIELDS = ("rawData", "certificate", "raw", "der", "cert", "x5c")


class TrustError(GateError):
    """A trust list file, or one certificate in it, that cannot be used."""


@dataclass(frozen=True)
class TrustedCertificate:
    """One document signer certificate (DSC) the gate trusts.

    ``key_usages`` are the extended key usage OIDs (dotted), or None when the
    certificate has no extended key usage extension (then it may sign every
    kind of certificate). Times are aware UTC.
    """

    kid: bytes
    country: str
    subject: str
    not_before: datetime
    not_after: datetime
    der: bytes
    key_usages: frozenset[str] | None
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey = field(compare=False, repr=False)

    @property
    def kid_b64(self) -> str:
        """The key id as trust lists and the HCERT specification print it."""
        return base64.b64encode(self.kid).decode("ascii")


def kid_of(der: bytes) -> bytes:
    """The HCERT key id of a certificate: the first 8 bytes of SHA-256(DER)."""
    return hashlib.sha256(der).digest()[:KID_BYTES]


def certificate_from_der(der: bytes, *, country: str | None = None) -> TrustedCertificate:
    """A trusted certificate from its DER; raises TrustError.

    Only EC P-256 and RSA keys are accepted (ES256 and PS256 are the
    algorithms HCERT allows). The extended key usage is read from the DER
    directly and tolerantly: some issuers' certificates carry encodings that
    strict parsers refuse (an empty key usage list, encoded defaults), and a
    gate that refused them would refuse valid certificates.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
        public_key = cert.public_key()
    except ValueError as exc:
        raise TrustError(f"not a readable X.509 certificate ({str(exc)[:60]})") from None
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ec.SECP256R1):
            raise TrustError(f"EC key on {public_key.curve.name}, not P-256")
    elif not isinstance(public_key, rsa.RSAPublicKey):
        raise TrustError(f"{type(public_key).__name__} keys cannot sign HCERTs")
    subject_country = _subject_country(cert)
    chosen = (country or subject_country or "").strip().upper()
    return TrustedCertificate(
        kid=kid_of(der),
        country=chosen if re.fullmatch(r"[A-Z]{2,3}", chosen) else "",
        subject=_subject_text(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        der=der,
        key_usages=extended_key_usages(cert.tbs_certificate_bytes),
        public_key=public_key,
    )


def _subject_country(cert: x509.Certificate) -> str | None:
    try:
        values = cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
    except ValueError:
        return None
    return str(values[0].value) if values else None


def _subject_text(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string()[:200]
    except ValueError:
        return ""


# --- trust list files ---------------------------------------------------------


@dataclass(frozen=True)
class ParsedTrustFile:
    """What a trust list file held: the usable certificates and, for every
    entry that could not be used, one line saying which and why."""

    certificates: tuple[TrustedCertificate, ...]
    problems: tuple[str, ...]


def parse_trust_file(data: bytes) -> ParsedTrustFile:
    """Read a PEM bundle or a JSON trust list (see the module docstring).

    Raises TrustError when the file as a whole is neither; entries that
    cannot be read are listed in ``problems``. A certificate listed twice is
    kept once.
    """
    if len(data) > MAX_TRUST_FILE_BYTES:
        raise TrustError(f"file larger than {MAX_TRUST_FILE_BYTES // (1024 * 1024)} MB")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    entries: list[tuple[str, bytes | None, str | None, str | None, str | None]] = []
    if b"-----BEGIN CERTIFICATE-----" in data:
        for number, match in enumerate(_PEM_RE.finditer(data), start=1):
            der = _b64(match.group(1).decode("ascii", "replace"))
            entries.append((f"PEM block {number}", der, None, None, None))
    else:
        try:
            document = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise TrustError("neither a PEM bundle nor a JSON trust list") from None
        except RecursionError:  # "[" x 200,000: Python's JSON parser recurses per level
            raise TrustError(
                f"JSON nested more than {MAX_JSON_DEPTH} levels deep; not a trust list"
            ) from None
        entries = list(_json_entries(document))
        if not entries:
            raise TrustError("no certificates found in the JSON trust list")
    certificates: dict[bytes, TrustedCertificate] = {}
    problems: list[str] = []
    for where, der, kid_text, country, problem in entries:
        if der is None:
            problems.append(f"{where}: {problem or 'no base64 certificate'}")
            continue
        try:
            cert = certificate_from_der(der, country=country)
        except TrustError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if kid_text is not None and _b64(kid_text) != cert.kid:
            problems.append(
                f"{where}: the given kid {kid_text[:16]} is not the certificate's "
                f"({cert.kid_b64}); imported under its own"
            )
        certificates.setdefault(cert.kid + cert.der, cert)
    if not certificates and not problems:
        raise TrustError("no certificates found")
    return ParsedTrustFile(tuple(certificates.values()), tuple(problems))


_Entry = tuple[str, bytes | None, str | None, str | None, str | None]


MAX_JSON_DEPTH = 8
"""Objects nested deeper than this in a JSON trust list are not looked into:
real lists nest two or three levels, and each level is a recursion here."""


def _json_entries(
    document: Any, where: str = "entry", kid: str | None = None, depth: int = 0
) -> Iterator[_Entry]:
    """(where, der, kid, country, problem) for each certificate in a JSON document."""
    if depth > MAX_JSON_DEPTH:
        yield (where, None, None, None, f"nested more than {MAX_JSON_DEPTH} levels deep")
        return
    if isinstance(document, list):
        for index, item in enumerate(document, start=1):
            yield from _json_entry(item, f"{where} {index}", kid)
        return
    if isinstance(document, Mapping):
        for key in ("certificates", "dscs", "keys", "trustList", "dsc"):
            if isinstance(document.get(key), list | Mapping):
                yield from _json_entries(document[key], key, depth=depth + 1)
                return
        if any(name in document for name in _DER_FIELDS):
            yield from _json_entry(document, where, kid)
            return
        # A map kid -> certificate or list of certificates.
        for key, value in document.items():
            listed = value if isinstance(value, list) else [value]
            yield from _json_entries(listed, str(key), key, depth=depth + 1)
        return
    yield (where, None, None, None, "not a list or an object")


def _json_entry(item: Any, where: str, kid: str | None) -> Iterator[_Entry]:
    if isinstance(item, str):
        der = _b64(item)
        yield (where, der, kid, None, None if der else "not base64")
        return
    if not isinstance(item, Mapping):
        yield (where, None, None, None, "not a base64 string or an object")
        return
    raw: Any = None
    for name in _DER_FIELDS:
        if name in item:
            raw = item[name]
            break
    if isinstance(raw, list):
        raw = raw[0] if raw else None
    if not isinstance(raw, str):
        yield (where, None, None, None, "no base64 certificate (rawData, certificate or x5c)")
        return
    der = _b64(raw)
    given_kid = item.get("kid", kid)
    country = item.get("country") or item.get("countryCode")
    yield (
        where,
        der,
        given_kid if isinstance(given_kid, str) else None,
        country if isinstance(country, str) else None,
        None if der else "the certificate is not base64",
    )


def _b64(text: str) -> bytes | None:
    cleaned = "".join(text.split())
    try:
        if "-" in cleaned or "_" in cleaned:
            return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


# --- the trust list the gate verifies against ------------------------------------


class TrustList:
    """Trusted signing certificates by key id. Several certificates may share
    a key id (it is only 8 bytes); the format tries each of them."""

    def __init__(self, certificates: Iterable[TrustedCertificate] = ()) -> None:
        self.certificates: tuple[TrustedCertificate, ...] = tuple(certificates)
        by_kid: dict[bytes, list[TrustedCertificate]] = {}
        for cert in self.certificates:
            by_kid.setdefault(cert.kid, []).append(cert)
        self._by_kid = {kid: tuple(certs) for kid, certs in by_kid.items()}

    def matching(self, kid: bytes) -> Sequence[TrustedCertificate]:
        return self._by_kid.get(kid, ())

    def __len__(self) -> int:
        return len(self.certificates)


# --- a tolerant reader for the extended key usage ------------------------------


def extended_key_usages(tbs: bytes) -> frozenset[str] | None:
    """The extended key usage OIDs in a TBSCertificate's DER, or None when the
    extension is absent or lists nothing (RFC 5280 forbids an empty list, but
    issuers wrote them; the public test suite's CO15 is valid, unrestricted).
    An unreadable extension gives an empty set: it restricts everything."""
    try:
        _, body, _ = _tlv(tbs, 0)
        for tag, content in _children(body):
            if tag != 0xA3:  # [3] EXPLICIT Extensions
                continue
            (_, extensions), *_ = _children(content)
            for ext_tag, extension in _children(extensions):
                if ext_tag != 0x30:
                    continue
                parts = _children(extension)
                if not parts or parts[0][0] != 0x06 or _oid(parts[0][1]) != _EKU_OID:
                    continue
                value = parts[-1][1]  # OCTET STRING holding SEQUENCE OF OID
                _, usages, _ = _tlv(value, 0)
                oids = frozenset(_oid(oid) for tag, oid in _children(usages) if tag == 0x06)
                return oids or None
    except (IndexError, ValueError):
        return frozenset()
    return None


def _tlv(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """(tag, content, next offset) of the DER item at ``offset``."""
    tag = data[offset]
    length = data[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[offset : offset + count], "big")
        offset += count
    end = offset + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, data[offset:end], end


def _children(data: bytes) -> list[tuple[int, bytes]]:
    items = []
    offset = 0
    while offset < len(data):
        tag, content, offset = _tlv(data, offset)
        items.append((tag, content))
    return items


def _oid(content: bytes) -> str:
    if not content:
        raise ValueError("empty OID")
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in (first, arcs[0] - 40 * first, *arcs[1:]))
