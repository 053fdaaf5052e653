"""Down: the hub's settings, denylist, revocations, trust list and public
keys, as signed, versioned, retained documents, applied atomically at every gate.

Two channels (:mod:`kiosk.site.channel`), one per side:

- :class:`HubDocuments` (in ``gatekiosk hub``) looks at the site database
  and the keys folder every ``poll_s``; when the content of a kind changed,
  it spends the next version of that kind (``site_documents_published``),
  signs the document and publishes it retained on ``gk/<site>/doc/<kind>``.
  The signed bytes are kept, and every kind is published again at start
  and every ``republish_s`` (the broker keeps nothing across a restart).
- :class:`GateDocuments` (in ``gatekiosk sync``) verifies each document
  against the site's public keys in the gate's keys folder and applies
  only a newer, valid one of this site and kind, in one transaction that
  replaces that kind's rows and records the version
  (:class:`kiosk.store.site_documents.SiteDocumentRepository`); keys go to
  the keys folder by atomic rename. The running kiosk picks the change up
  as it does today (the settings version it polls, the keys manifest it
  watches; the denylist and revocations are read at each scan). Anything
  else is counted by reason (:attr:`GateDocuments.refused`) and logged,
  never applied, never raised.

Which key signs: the *oldest* site key that is not retired. Every gate has
it (rotation keeps old keys, and the keys document that announces a new key
is signed by a key the gates already trust); a gate that slept through a
rotation *and* the retirement of every key it knew must join again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kiosk.clock import Clock
from kiosk.config import EDITABLE_ON_WEB, Settings
from kiosk.errors import GateError
from kiosk.every import Every
from kiosk.keys import MANIFEST_NAME, KeyRing, kid_for, load_keyring
from kiosk.site import SiteError
from kiosk.site.channel import Publication
from kiosk.site.documents import (
    Document,
    DocumentKind,
    Refusal,
    Refused,
    sign_document,
    verify_document,
)
from kiosk.site.keyfiles import check_public_keys_body, install_public_keys, public_keys_body
from kiosk.site.topics import Topics
from kiosk.store import DenylistEntry, Store, TrustedRow
from kiosk.store.site_documents import PublishedDocument, RevokedCode
from kiosk.store.values import from_text, to_text

log = logging.getLogger(__name__)

# Settings that are the site's, not one gate's: everything a manager edits
# on the web except the gate's own name.
SITE_WIDE_SETTINGS = tuple(name for name in EDITABLE_ON_WEB if name != "gate.id")
POLL_S = 0.5  # how often the hub looks for changes (the target is 5 s to every gate)
REPUBLISH_S = 60.0  # every document again, for a broker that restarted empty
# Reading every body costs about 0.25 s for a denylist of 10,000 on this
# machine, so it is done only when the database or the keys changed, and in
# any case this often.
FULL_CHECK_S = 60.0

SigningKey = tuple[bytes, ec.EllipticCurvePrivateKey]


# --- bodies: what each kind carries (hub side) ---------------------------------


def document_bodies(store: Store, keys_dir: Path) -> dict[DocumentKind, Any]:
    """The body of every kind, from the site database and the keys folder."""
    settings = store.site_settings()
    return {
        DocumentKind.SETTINGS: {
            "values": {name: settings[name] for name in SITE_WIDE_SETTINGS if name in settings}
        },
        DocumentKind.DENYLIST: {
            "entries": sorted(
                [e.subject_hash, e.label, e.note, to_text(e.added_at), e.added_by or ""]
                for e in store.denylist_entries()
            )
        },
        DocumentKind.REVOCATIONS: {
            "codes": [
                [r.code_id, to_text(r.revoked_at), r.revoked_by]
                for r in store.site_documents.revoked_codes()
            ]
        },
        DocumentKind.TRUST: {
            "certificates": [
                [
                    row.kid,
                    row.country,
                    row.subject,
                    to_text(row.not_before),
                    to_text(row.not_after),
                    row.der,
                    to_text(row.added_at),
                    row.added_by,
                ]
                for row in sorted(store.trusted_certificates(), key=lambda r: r.der)
            ]
        },
        DocumentKind.KEYS: public_keys_body(keys_dir),
    }


def body_digest(body: Any) -> str:
    """SHA-256 of the canonical CBOR of ``body``: equal content, equal digest."""
    return hashlib.sha256(cbor2.dumps(body, canonical=True)).hexdigest()


def documents_signing_key(keys_dir: Path) -> SigningKey:
    """The oldest site key not retired, with its private key (see the module docstring)."""
    ring = load_keyring(keys_dir)
    active = [key for key in ring.keys if not key.retired]
    if not active:
        raise SiteError(f"every site key in {keys_dir} is retired; run `gatekiosk keys rotate`")
    oldest = min(active, key=lambda key: key.created)
    path = keys_dir / "private" / f"{oldest.kid.hex()}.pem"
    try:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            raise SiteError(f"the private key {path} is readable by other users; chmod 600 it")
        private_key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise SiteError(f"cannot read the private key {path}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise SiteError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(private_key, ec.EllipticCurvePrivateKey):
        raise SiteError(f"{path} is not an ECDSA private key")
    if kid_for(private_key.public_key()) != oldest.kid:
        raise SiteError(f"{path} does not hold the key its name says")
    return oldest.kid, private_key


# --- the hub's channel ---------------------------------------------------------


class HubDocuments:
    """Publishes the site's documents whenever their content changes (hub side)."""

    def __init__(
        self,
        store: Store,
        *,
        site_id: str,
        keys_dir: Path,
        clock: Clock,
        poll_s: float = POLL_S,
        republish_s: float = REPUBLISH_S,
        signing_key: Callable[[], SigningKey] | None = None,
    ) -> None:
        self._store = store
        self._topics = Topics(site_id)
        self._keys_dir = keys_dir
        self._clock = clock
        self._poll = Every(poll_s, clock.monotonic)
        self._republish = Every(republish_s, clock.monotonic)
        self._signing_key = signing_key or (lambda: documents_signing_key(keys_dir))
        self._full_check = Every(FULL_CHECK_S, clock.monotonic)
        self._stamp: tuple[object, ...] | None = None
        self._latest: dict[str, PublishedDocument] = {}
        self._pending: set[str] = set()

    @classmethod
    def for_settings(cls, settings: Settings, store: Store, clock: Clock) -> HubDocuments:
        """The hub's channel, for the site ``gatekiosk site init`` made here."""
        from kiosk.site.hub_setup import HubFolder

        site_id = HubFolder(settings.site_dir).description().site_id
        return cls(store, site_id=site_id, keys_dir=settings.keys_dir, clock=clock)

    def subscriptions(self) -> list[str]:
        return []

    def on_message(self, topic: str, payload: bytes) -> None:
        """The hub subscribes to nothing for documents."""

    def publications(self, limit: int) -> list[Publication]:
        """The documents not yet acknowledged since they changed (or since the
        last republish), each the latest of its kind, retained."""
        if self._poll.tick() and self._changed():
            self.refresh()
        if self._republish.tick():
            self._pending.update(self._latest)
        return [
            Publication(
                self._topics.document(kind),
                self._latest[kind].payload,
                key=_key(self._latest[kind]),
                retain=True,
            )
            for kind in sorted(self._pending)
        ][:limit]

    def published(self, items: list[Publication]) -> None:
        acknowledged = {item.key for item in items}
        self._pending = {
            kind for kind in self._pending if _key(self._latest[kind]) not in acknowledged
        }

    def _changed(self) -> bool:
        """Whether anything a document holds may have changed since the last look.

        SQLite's ``data_version`` moves when another connection commits (the
        web, a CLI command); this process's own writes (ingesting events)
        leave it alone. The keys are files: their manifest's inode, mtime
        and size. A full look every :data:`FULL_CHECK_S` covers the rest.
        """
        try:
            rows = self._store.connection.read("look for changes", "PRAGMA data_version", ())
            manifest = os.stat(self._keys_dir / MANIFEST_NAME)
            stamp: tuple[object, ...] = (
                int(rows[0][0]),
                manifest.st_ino,
                manifest.st_mtime_ns,
                manifest.st_size,
            )
        except (GateError, OSError):
            stamp = ()
        full = self._full_check.tick()
        if stamp == self._stamp and stamp and not full:
            return False
        self._stamp = stamp
        return True

    def refresh(self) -> list[str]:
        """Sign a new version of every kind whose content changed; the kinds signed.

        A kind whose content cannot be read now (the keys folder, the
        database) is skipped with a warning and tried again at the next poll.
        """
        if not self._latest:
            self._latest = self._store.site_documents.published()
            self._pending.update(self._latest)
        try:
            bodies = document_bodies(self._store, self._keys_dir)
        except GateError as exc:
            log.warning("cannot read what the site's documents hold; trying again: %s", exc)
            return []
        changed = []
        for kind, body in bodies.items():
            digest = body_digest(body)
            previous = self._latest.get(kind.value)
            if previous is not None and previous.digest == digest:
                continue
            version = 1 if previous is None else previous.version + 1
            now = self._clock.now()
            kid, private_key = self._signing_key()
            payload = sign_document(
                kind,
                self._topics.site_id,
                version,
                body,
                issued_at=now,
                kid=kid,
                private_key=private_key,
            )
            document = PublishedDocument(kind.value, version, digest, payload, now)
            self._store.site_documents.save_published(document)
            self._latest[kind.value] = document
            self._pending.add(kind.value)
            changed.append(kind.value)
            log.info("site document %s version %d signed (%d bytes)", kind, version, len(payload))
        return changed


def _key(document: PublishedDocument) -> str:
    return f"doc:{document.kind}:{document.version}"


# --- the gate's channel --------------------------------------------------------


class GateDocuments:
    """Verifies and applies the hub's documents (gate side). Never raises
    from :meth:`on_message`: what it does not apply is counted in
    :attr:`refused` by reason and logged."""

    def __init__(self, store: Store, *, site_id: str, keys_dir: Path, clock: Clock) -> None:
        self._store = store
        self._topics = Topics(site_id)
        self._keys_dir = keys_dir
        self._clock = clock
        self._kinds = {self._topics.document(kind): kind for kind in DocumentKind}
        self._applied: dict[str, int] | None = None
        # Signed by a key this gate does not know yet: tried again after a keys document.
        self._waiting: dict[DocumentKind, bytes] = {}
        # The bytes last applied, by kind: the hub's periodic republish of
        # the same document is expected, not a replay worth a log line.
        self._last_payload: dict[DocumentKind, bytes] = {}
        self.refused: Counter[str] = Counter()
        self.applied: Counter[str] = Counter()
        self.unchanged: Counter[str] = Counter()

    @classmethod
    def for_settings(cls, settings: Settings, store: Store, clock: Clock) -> GateDocuments:
        """The gate's channel, for the site ``gatekiosk site join`` joined."""
        from kiosk.site.join import GateSiteFiles

        site_id = GateSiteFiles(settings.site_dir).description().site_id
        return cls(store, site_id=site_id, keys_dir=settings.keys_dir, clock=clock)

    def subscriptions(self) -> list[str]:
        return [self._topics.all_documents]

    def publications(self, limit: int) -> list[Publication]:
        return []

    def published(self, items: list[Publication]) -> None:
        """A gate publishes no documents."""

    def on_message(self, topic: str, payload: bytes) -> None:
        kind = self._kinds.get(topic)
        if kind is None:
            self._refuse("unknown_topic", topic, "not a document topic")
            return
        try:
            self._receive(kind, payload)
        except Exception as exc:  # a boundary: the sync thread must go on
            self._refuse("error", topic, f"{type(exc).__name__}: {exc}")

    def versions(self) -> dict[str, int]:
        """The version in force of each kind (read from the database once)."""
        if self._applied is None:
            self._applied = self._store.site_documents.applied_versions()
        return self._applied

    def _receive(self, kind: DocumentKind, payload: bytes) -> None:
        if self._last_payload.get(kind) == payload:
            self.unchanged[kind.value] += 1
            log.debug("site document %s received again, unchanged", kind)
            return
        try:
            keyring = load_keyring(self._keys_dir)
        except GateError as exc:
            self._refuse("no_keys", kind, str(exc))
            return
        result = self._verify(kind, payload, keyring)
        if isinstance(result, Refused):
            if result.reason is Refusal.UNKNOWN_KEY:
                self._waiting[kind] = payload
            self._refuse(result.reason.value, kind, result.detail)
            return
        self._waiting.pop(kind, None)
        try:
            self._apply(result)
        except (SiteError, ValueError, KeyError, TypeError, IndexError) as exc:
            self._refuse("bad_body", kind, str(exc))
            return
        self.versions()[kind.value] = result.version
        self._last_payload[kind] = payload
        self.applied[kind.value] += 1
        log.info("applied site document %s version %d", kind, result.version)
        if kind is DocumentKind.KEYS:
            for waiting_kind, waiting in list(self._waiting.items()):
                self._waiting.pop(waiting_kind)
                self._receive(waiting_kind, waiting)

    def _verify(self, kind: DocumentKind, payload: bytes, keyring: KeyRing) -> Document | Refused:
        return verify_document(
            payload,
            keyring=keyring,
            site_id=self._topics.site_id,
            kind=kind,
            newer_than=self.versions().get(kind.value),
        )

    def _apply(self, document: Document) -> None:
        """One transaction (or, for keys, renames then one row) per document."""
        now, version, body = self._clock.now(), document.version, document.body
        repository = self._store.site_documents
        if document.kind is DocumentKind.SETTINGS:
            values = _mapping(body, "values")
            unknown = set(values) - set(SITE_WIDE_SETTINGS)
            if unknown:
                raise SiteError(f"settings this gate does not take: {sorted(unknown)}")
            repository.apply_settings(version, dict(values), at=now)
        elif document.kind is DocumentKind.DENYLIST:
            entries = [_denylist_entry(item) for item in _list(body, "entries")]
            repository.apply_denylist(version, entries, at=now)
        elif document.kind is DocumentKind.REVOCATIONS:
            codes = [_revoked_code(item) for item in _list(body, "codes")]
            repository.apply_revocations(version, codes, at=now)
        elif document.kind is DocumentKind.TRUST:
            rows = [_trusted_row(item) for item in _list(body, "certificates")]
            repository.apply_trust(version, rows, at=now)
        else:
            check_public_keys_body(body)
            install_public_keys(self._keys_dir, body)
            repository.record_applied(document.kind.value, version, at=now)

    def _refuse(self, reason: str, where: object, detail: str) -> None:
        self.refused[reason] += 1
        level = logging.INFO if reason == Refusal.NOT_NEWER.value else logging.WARNING
        log.log(level, "site document on %s not applied (%s): %s", where, reason, detail)


# --- bodies, checked (gate side) -------------------------------------------------


def _mapping(body: Any, name: str) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get(name), dict):
        raise SiteError(f"the body has no {name!r} map")
    return dict(body[name])


def _list(body: Any, name: str) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get(name), list):
        raise SiteError(f"the body has no {name!r} list")
    return list(body[name])


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise SiteError("a text field is not text")
    return value


def _time(value: Any) -> datetime:
    moment = from_text(_text(value))
    if moment.tzinfo is None:
        raise SiteError("a time without its zone")
    return moment


def _bytes(value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise SiteError("a binary field is not bytes")
    return value


def _denylist_entry(item: Any) -> DenylistEntry:
    subject, label, note, added_at, added_by = item
    return DenylistEntry(
        _text(subject), _text(label), _text(note), _time(added_at), _text(added_by) or None
    )


def _revoked_code(item: Any) -> RevokedCode:
    code_id, revoked_at, revoked_by = item
    return RevokedCode(_text(code_id), _time(revoked_at), _text(revoked_by))


def _trusted_row(item: Any) -> TrustedRow:
    kid, country, subject, not_before, not_after, der, added_at, added_by = item
    return TrustedRow(
        0,
        _bytes(kid),
        _text(country),
        _text(subject),
        _time(not_before),
        _time(not_after),
        _bytes(der),
        _time(added_at),
        _text(added_by),
    )
