"""Signed, versioned documents: how the hub tells every gate what is in force.

Settings, the denylist, revocations, the trust list and the site's public
keys are edited on the hub and go down to the gates as *documents*: one
retained MQTT message per kind (``gk/<site>/doc/<kind>``), each the latest
version. A gate applies a document only if

1. it is signed by a site key the gate knows and that is not retired
   (the same ECDSA P-256 keys that sign the site's codes, :mod:`kiosk.keys`;
   the hub holds the private key, a gate only public keys);
2. it is for this site and this kind (a document for another site or
   another kind, replayed on this topic, is refused);
3. its version is newer than the one the gate applies now (a replayed old
   document, or the broker handing out a stale retained copy, is refused).

The broker checks who *publishes* on a document topic (the ACL lets only
the hub write there); the signature lets a gate check the content itself,
whatever relayed it, and keeps working if a document reaches it another way
(a file on a USB stick, a future relay).

Wire format: a COSE_Sign1 message (RFC 9052, ES256, key id in the protected
header; :func:`kiosk.codes.cose.sign1`) whose payload is a canonical CBOR
map with exactly these text keys::

    {"gkdoc": 1,            # format; also keeps a document from passing as a code
     "kind": "settings",    # a DocumentKind
     "site": "factory-1",   # the site id
     "version": 42,         # int, 1 ... 2**63-1, larger is newer
     "issued": 1767574800,  # seconds since 1970-01-01 UTC, the hub's clock
     "body": {...}}         # the content: maps with text keys, lists, text,
                            # bytes, integers, floats, booleans, null

:func:`verify_document` returns a :class:`Document` or a :class:`Refused`
with a :class:`Refusal` reason; it never raises on the bytes it is given,
whatever they are. The issue time is informative only: gates' clocks may
be wrong, so order comes from the version alone.

Example::

    kid, key = load_signing_key(data_dir / "keys")
    data = sign_document(DocumentKind.SETTINGS, "factory-1", 42, {"capacity": 300},
                         issued_at=clock.now(), kid=kid, private_key=key)
    result = verify_document(data, keyring=ring, site_id="factory-1",
                             kind=DocumentKind.SETTINGS, newer_than=41)
    if isinstance(result, Refused):
        log.warning("document refused: %s", result.reason)
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec

from kiosk.codes import cose
from kiosk.keys import KeyRing
from kiosk.site import SiteError
from kiosk.site.topics import check_site_id

FORMAT = 1
# The largest document accepted, in bytes (signature included). A denylist
# of 10,000 subject hashes is about 400 KB; Mosquitto's max_packet_size is
# set to the same order (kiosk.site.broker.DEFAULT_MAX_PACKET_BYTES).
MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_VERSION = 2**63 - 1  # fits an SQLite INTEGER
_MAX_ISSUED_S = 253402300799  # 9999-12-31T23:59:59Z, the last second datetime holds
# Bodies are data, not programs: nesting deeper than this is refused.
MAX_BODY_DEPTH = 12
_KEYS = frozenset({"gkdoc", "kind", "site", "version", "issued", "body"})


class DocumentKind(enum.StrEnum):
    """What a document carries; also the last level of its topic."""

    SETTINGS = "settings"
    DENYLIST = "denylist"
    REVOCATIONS = "revocations"
    TRUST = "trust"
    KEYS = "keys"


_KIND_NAMES = frozenset(kind.value for kind in DocumentKind)


class Refusal(enum.StrEnum):
    """Why a document was not applied (for counters and the log)."""

    TOO_LARGE = "too_large"  # over MAX_DOCUMENT_BYTES
    MALFORMED = "malformed"  # not a COSE_Sign1 document, or its content is not one
    UNSIGNED = "unsigned"  # a bare document, or a COSE_Sign1 with no signature
    UNKNOWN_KEY = "unknown_key"  # no key id, or a key this gate does not know
    RETIRED_KEY = "retired_key"  # signed by a key the site has withdrawn
    BAD_SIGNATURE = "bad_signature"  # the signature does not verify (or wrong algorithm)
    OTHER_SITE = "other_site"  # a valid document of another site
    OTHER_KIND = "other_kind"  # a valid document of another kind
    NOT_NEWER = "not_newer"  # a version not newer than the one in force


@dataclass(frozen=True)
class Document:
    """A verified document. ``kid`` names the key that signed it."""

    kind: DocumentKind
    site_id: str
    version: int
    issued_at: datetime
    body: Any
    kid: bytes


@dataclass(frozen=True)
class Refused:
    """A document that must not be applied. ``detail`` is a short English
    explanation for the log; it never quotes the document."""

    reason: Refusal
    detail: str


def encode_payload(
    kind: DocumentKind, site_id: str, version: int, body: Any, *, issued_at: datetime
) -> bytes:
    """The canonical CBOR payload of a document (what the signature covers)."""
    check_site_id(site_id)
    if type(version) is not int or not 1 <= version <= MAX_VERSION:
        raise SiteError(f"a document version is an integer from 1 to {MAX_VERSION}")
    if issued_at.tzinfo is None:
        raise ValueError("issued_at must be timezone-aware")
    problem = _body_problem(body, 0)
    if problem is not None:
        raise SiteError(f"a document body cannot hold this: {problem}")
    payload = {
        "gkdoc": FORMAT,
        "kind": DocumentKind(kind).value,
        "site": site_id,
        "version": version,
        "issued": int(issued_at.timestamp()),
        "body": body,
    }
    return cbor2.dumps(payload, canonical=True)


def sign_document(
    kind: DocumentKind,
    site_id: str,
    version: int,
    body: Any,
    *,
    issued_at: datetime,
    kid: bytes,
    private_key: ec.EllipticCurvePrivateKey,
) -> bytes:
    """A signed document, ready to publish (retained) on its topic.

    ``kid`` and ``private_key`` are the site's signing key
    (:func:`kiosk.keys.load_signing_key`, on the hub only).
    """
    payload = encode_payload(kind, site_id, version, body, issued_at=issued_at)
    data = cose.sign1(payload, private_key, kid=kid)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise SiteError(
            f"the {kind} document is {len(data)} bytes, more than {MAX_DOCUMENT_BYTES};"
            " gates would refuse it"
        )
    return data


def verify_document(
    data: bytes,
    *,
    keyring: KeyRing,
    site_id: str,
    kind: DocumentKind,
    newer_than: int | None,
) -> Document | Refused:
    """Check ``data`` as a document of ``kind`` for ``site_id``.

    ``newer_than`` is the version in force (None when there is none yet).
    Returns the :class:`Document`, or :class:`Refused` with the first reason
    found, in this order: size, form, signature, content, site, kind,
    version. Never raises for any ``data``.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        return Refused(Refusal.MALFORMED, "not bytes")
    data = bytes(data)
    if len(data) > MAX_DOCUMENT_BYTES:
        return Refused(Refusal.TOO_LARGE, f"{len(data)} bytes, more than {MAX_DOCUMENT_BYTES}")
    try:
        message = cose.parse_cose_sign1(data, max_bytes=MAX_DOCUMENT_BYTES)
    except cose.CoseError as exc:
        if _is_bare_document(data):
            return Refused(Refusal.UNSIGNED, "a document without a signature")
        return Refused(Refusal.MALFORMED, f"not a COSE_Sign1 message ({exc.reason})")

    signed = _check_signature(message, keyring)
    if isinstance(signed, Refused):
        return signed
    try:
        payload = cose.decode_cbor(signed, max_depth=MAX_BODY_DEPTH + 2)
    except cose.CoseError as exc:
        return Refused(Refusal.MALFORMED, f"a signed payload that is not CBOR ({exc.reason})")
    content = _content(payload, message.kid or b"")
    if isinstance(content, Refused):
        return content

    if content.site_id != site_id:
        return Refused(Refusal.OTHER_SITE, "a document of another site")
    if content.kind != kind:
        return Refused(Refusal.OTHER_KIND, f"a {content.kind} document where {kind} was expected")
    if newer_than is not None and content.version <= newer_than:
        return Refused(Refusal.NOT_NEWER, f"version {content.version}, not newer than {newer_than}")
    return content


def _check_signature(message: cose.CoseSign1, keyring: KeyRing) -> bytes | Refused:
    """The verified payload bytes, or why the signature is not acceptable."""
    if not message.signature:
        return Refused(Refusal.UNSIGNED, "a COSE_Sign1 message with an empty signature")
    if message.kid is None:
        return Refused(Refusal.UNKNOWN_KEY, "no key id")
    key = keyring.get(message.kid)
    if key is None:
        return Refused(Refusal.UNKNOWN_KEY, f"key {message.kid.hex()[:16]} is not a site key")
    if key.retired:
        return Refused(Refusal.RETIRED_KEY, f"key {key.kid_hex} is retired")
    if message.alg != cose.ALG_ES256:
        return Refused(Refusal.BAD_SIGNATURE, f"algorithm {message.alg_name}, not ES256")
    try:
        return cose.verified_payload(message, key.public_key)
    except cose.CoseError:
        return Refused(Refusal.BAD_SIGNATURE, "the signature does not verify")


def _content(payload: Any, kid: bytes) -> Document | Refused:
    """The document a verified payload holds, checked field by field."""
    if not isinstance(payload, Mapping) or set(payload) != _KEYS:
        return Refused(Refusal.MALFORMED, "the payload is not a document map")
    if payload["gkdoc"] != FORMAT or type(payload["gkdoc"]) is not int:
        return Refused(Refusal.MALFORMED, "an unknown document format")
    kind, site, version, issued = (
        payload["kind"],
        payload["site"],
        payload["version"],
        payload["issued"],
    )
    if not isinstance(kind, str) or kind not in _KIND_NAMES:
        return Refused(Refusal.MALFORMED, "an unknown document kind")
    if not isinstance(site, str) or not site:
        return Refused(Refusal.MALFORMED, "no site id")
    if type(version) is not int or not 1 <= version <= MAX_VERSION:
        return Refused(Refusal.MALFORMED, "a version that is not an integer in range")
    if type(issued) is not int or not 0 <= issued <= _MAX_ISSUED_S:
        return Refused(Refusal.MALFORMED, "an issue time that is not seconds in range")
    problem = _body_problem(payload["body"], 0)
    if problem is not None:
        return Refused(Refusal.MALFORMED, f"the body holds {problem}")
    return Document(
        kind=DocumentKind(kind),
        site_id=site,
        version=version,
        issued_at=datetime.fromtimestamp(issued, UTC),
        body=payload["body"],
        kid=kid,
    )


def _body_problem(value: Any, depth: int) -> str | None:
    """What in ``value`` a body may not hold (None if nothing): only plain
    data, no CBOR tags, no non-finite floats, maps keyed by text."""
    if depth > MAX_BODY_DEPTH:
        return f"nesting deeper than {MAX_BODY_DEPTH}"
    if value is None or isinstance(value, bool | int | str | bytes):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "a non-finite number"
    if isinstance(value, list | tuple):
        for item in value:
            problem = _body_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return "a map key that is not text"
            problem = _body_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    return f"a value of type {type(value).__name__}"


def _is_bare_document(data: bytes) -> bool:
    """Whether ``data`` is a document payload sent without any signature."""
    try:
        item = cose.decode_cbor(data, max_depth=MAX_BODY_DEPTH + 2)
    except cose.CoseError:
        return False
    return isinstance(item, Mapping) and "gkdoc" in item
