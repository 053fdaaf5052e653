"""The event store: one SQLite file, one connection per process, one repository per area.

Neither process runs SQL anywhere else; both go through a :class:`Store`,
a thin facade over the repositories that share its one connection:

* :mod:`~kiosk.store.connection`: opening, pragmas, transactions, errors;
* :mod:`~kiosk.store.migrations`: the schema, append only;
* :mod:`~kiosk.store.values`: the frozen values that go in and come out;
* :mod:`~kiosk.store.events` (events, presence, the live cursor, tally,
  visits, who is inside, purge), :mod:`~kiosk.store.accounts` (users,
  sessions), :mod:`~kiosk.store.throttle` (failed logins, declarations),
  :mod:`~kiosk.store.audit`, :mod:`~kiosk.store.site`
  (settings, admissions by hand, denylist, kiosk health),
  :mod:`~kiosk.store.codes` (issued site codes, the trust list),
  :mod:`~kiosk.store.outbox` (events on their way to the site's hub, and
  their idempotent arrival in the site database) and
  :mod:`~kiosk.store.site_presence` (the other gates' entries and exits,
  when each gate was last heard, conflicts after a partition).

Durability is the point. The gate admits nobody without a durable row, so
:meth:`Store.record` commits with ``synchronous=FULL`` (an fsync of the WAL)
before it returns, and the caller pulses the relay only afterwards. Anything
SQLite refuses becomes a :class:`~kiosk.errors.StoreError` with the
transaction rolled back, so the scanner can fail secure.

Example::

    with Store.open(tmp_path / "gate.db") as store:
        event = store.record(new_event)   # committed and fsynced
        store.presence_of(event.subject_hash, now=now, expiry_h=12.0)
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from kiosk.errors import StoreError
from kiosk.store.accounts import AccountRepository
from kiosk.store.audit import AuditRepository
from kiosk.store.codes import CodeRepository
from kiosk.store.connection import (
    BOOT_ID_PATH,
    BUSY_TIMEOUT_MS,
    CHECK_MIN_FREE_BYTES,
    KIOSK_BUSY_TIMEOUT_MS,
    OPEN_RETRY_S,
    Connection,
    LazyConnection,
    OpenConnection,
    current_boot_id,
    read_snapshot,
)
from kiosk.store.events import EventRepository
from kiosk.store.migrations import MIGRATIONS, migrate
from kiosk.store.outbox import Outbox, SiteLog
from kiosk.store.self_assessment import SelfAssessmentRepository
from kiosk.store.site import SiteRepository
from kiosk.store.site_documents import SiteDocumentRepository
from kiosk.store.site_gates import GateStatusRow, SiteGatesRepository
from kiosk.store.site_presence import (
    PartitionSnapshot,
    PresenceConflict,
    PresenceFact,
    SitePresenceRepository,
)
from kiosk.store.throttle import ThrottleRepository, ThrottleRule, ThrottleVerdict
from kiosk.store.values import (
    DECISIONS,
    DIRECTIONS,
    LOG_ORDER,
    LOG_ORDER_NEWEST_FIRST,
    AdmitRequest,
    AuditEntry,
    AuditNote,
    DenylistEntry,
    Event,
    EventFilter,
    KioskHealth,
    NewEvent,
    Presence,
    SiteCode,
    Tally,
    ThrottleCount,
    TrustedRow,
    User,
    Visit,
    search_fold,
)

__all__ = [
    "BOOT_ID_PATH",
    "BUSY_TIMEOUT_MS",
    "CHECK_MIN_FREE_BYTES",
    "DECISIONS",
    "DIRECTIONS",
    "KIOSK_BUSY_TIMEOUT_MS",
    "LOG_ORDER",
    "LOG_ORDER_NEWEST_FIRST",
    "MIGRATIONS",
    "OPEN_RETRY_S",
    "AdmitRequest",
    "AuditEntry",
    "AuditNote",
    "DenylistEntry",
    "Event",
    "EventFilter",
    "GateStatusRow",
    "KioskHealth",
    "NewEvent",
    "PartitionSnapshot",
    "Presence",
    "PresenceConflict",
    "PresenceFact",
    "SiteCode",
    "Store",
    "StoreError",
    "Tally",
    "ThrottleCount",
    "ThrottleRule",
    "ThrottleVerdict",
    "TrustedRow",
    "User",
    "Visit",
    "current_boot_id",
    "search_fold",
]


class Store:
    """The one gateway to the database file: open one per process.

    Every method is its area's repository's (``store.events``,
    ``store.accounts``, ``store.audit_log``, ``store.site``, ``store.codes``,
    ``store.throttle``, ``store.site_presence``: other gates' facts, read
    through ``store.site_presence`` itself; ``store.self_assessment``: the
    province's checklist and the site's ratings),
    so callers need only the store; all of them share ``connection``. A
    method that changes what a manager may audit takes an ``audit``
    (:class:`AuditNote`) and writes it in the change's own transaction.
    """

    def __init__(
        self, connection: Connection, *, boot_id: str, mark_for_upload: bool = False
    ) -> None:
        """Use :meth:`open` or :meth:`open_lazily`; this wraps a connection.

        ``mark_for_upload``: this gate belongs to a site (``site.hub`` is
        set), so every event is recorded with its "not yet uploaded" mark
        (see :mod:`~kiosk.store.outbox`). Without it nothing changes.
        """
        self.connection = connection
        self.path = connection.path
        self.boot_id = boot_id
        self.events = EventRepository(connection, boot_id=boot_id, mark_for_upload=mark_for_upload)
        self.outbox = Outbox(connection)
        self.site_log = SiteLog(connection)
        self.site = SiteRepository(connection, events=self.events)
        self.accounts = AccountRepository(connection)
        self.audit_log = AuditRepository(connection)
        self.codes = CodeRepository(connection)
        self.throttle = ThrottleRepository(connection)
        self.site_presence = SitePresenceRepository(connection)
        self.site_documents = SiteDocumentRepository(connection)
        self.site_gates = SiteGatesRepository(connection)
        self.self_assessment = SelfAssessmentRepository(connection)

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        boot_id: str | None = None,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        read_only: bool = False,
        concurrent_reads: bool = False,
        mark_for_upload: bool = False,
    ) -> Store:
        """Open (creating if needed) the database at ``path`` and migrate it.

        ``boot_id`` names this boot of the machine; it defaults to the kernel's
        (see :func:`current_boot_id`). ``busy_timeout_ms`` is how long a write
        waits for the other process's lock before giving up with StoreError
        (the kiosk passes :data:`KIOSK_BUSY_TIMEOUT_MS`).
        ``read_only`` opens an existing database for reading only, without
        creating or migrating anything; every write raises StoreError.
        ``concurrent_reads`` gives each thread its own connection for reads
        (see :class:`~kiosk.store.connection.OpenConnection`); writes still
        share one.
        """
        connection = OpenConnection.open(
            Path(path),
            migrate=migrate,
            busy_timeout_ms=busy_timeout_ms,
            read_only=read_only,
            concurrent_reads=concurrent_reads,
        )
        return cls(
            connection,
            boot_id=boot_id if boot_id is not None else current_boot_id(),
            mark_for_upload=mark_for_upload,
        )

    @classmethod
    def open_lazily(
        cls,
        path: str | Path,
        *,
        monotonic: Callable[[], float],
        boot_id: str | None = None,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        mark_for_upload: bool = False,
    ) -> Store:
        """The kiosk's store, which starts even when the database cannot be opened.

        Tries to open now and never raises StoreError for it (see
        :attr:`open_error`); while the file cannot be opened, every call
        raises StoreError with the cause, trying again at most every
        :data:`OPEN_RETRY_S` seconds of ``monotonic`` (see
        :class:`~kiosk.store.connection.LazyConnection`).
        """
        path = Path(path)
        connection = LazyConnection(
            path,
            opener=lambda: OpenConnection.open(
                path, migrate=migrate, busy_timeout_ms=busy_timeout_ms
            ),
            monotonic=monotonic,
        )
        return cls(
            connection,
            boot_id=boot_id if boot_id is not None else current_boot_id(),
            mark_for_upload=mark_for_upload,
        )

    @property
    def open_error(self) -> StoreError | None:
        """Why the database could not be opened at the last try; None once open."""
        return self.connection.open_error

    @property
    def _conn(self) -> sqlite3.Connection:
        """The shared connection (benchmarks look at it); StoreError while it cannot open."""
        return self.connection.conn

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        self.connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- the file

    def integrity_ok(self) -> bool:
        """Whether SQLite's full integrity check passes (slow on big files; run at start-up)."""
        rows = self.connection.read("check integrity", "PRAGMA integrity_check", ())
        return [tuple(row) for row in rows] == [("ok",)]

    def applied_migrations(self) -> list[str]:
        """Names of the migrations applied to this file, in the order applied."""
        rows = self.connection.read(
            "read migrations", "SELECT name FROM migrations ORDER BY applied_at, rowid", ()
        )
        return [str(row[0]) for row in rows]

    def check_writable(self) -> None:
        """Prove that the database takes a durable write now, or raise StoreError."""
        self.connection.check_writable()

    def read_snapshot(self, action: str) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A read-only connection of its own, in one read transaction, for a long read.

        For readers with SQL of their own (the export's, in
        :mod:`kiosk.export.columns`): they neither hold the shared
        connection's lock nor see a half-written page, and SQLite's errors
        inside the ``with`` become StoreError("could not ``action``: ...").
        The SQL function ``fold`` (see :func:`search_fold`) is there, so an
        :class:`EventFilter`'s clause works. Example::

            with store.read_snapshot("export events") as conn:
                for row in conn.execute("SELECT id FROM events"):
                    ...
        """
        return read_snapshot(self.path, action)

    # ----------------------------------------------------------------- events

    def record(self, event: NewEvent) -> Event:
        """Append ``event`` to the log and update presence, durably, in one transaction."""
        return self.events.record(event)

    def recent_events(self, limit: int = 20) -> list[Event]:
        """The latest ``limit`` events, newest first (in :data:`LOG_ORDER`, not by clock)."""
        return self.events.recent_events(limit)

    def events_between(self, start: datetime, end: datetime) -> list[Event]:
        """Events with ``start <= at < end``, oldest first."""
        return self.events.events_between(start, end)

    def presence_of(self, subject_hash: str, *, now: datetime, expiry_h: float) -> Presence | None:
        """This person's presence, or ``None`` if they are not inside."""
        return self.events.presence_of(subject_hash, now=now, expiry_h=expiry_h)

    def occupancy(self, *, now: datetime, expiry_h: float) -> int:
        """How many people are inside, with the same expiry as :meth:`presence_of`."""
        return self.events.occupancy(now=now, expiry_h=expiry_h)

    def count_events(self, where: EventFilter) -> int:
        return self.events.count_events(where)

    def find_events(self, where: EventFilter, *, limit: int, offset: int = 0) -> list[Event]:
        """One page of the log, newest first."""
        return self.events.find_events(where, limit=limit, offset=offset)

    def iter_events(self, where: EventFilter, *, batch: int = 2000) -> Iterator[Event]:
        """Every matching event, oldest first, streamed in bounded memory."""
        return self.events.iter_events(where, batch=batch)

    def event_by_id(self, event_id: str) -> Event | None:
        return self.events.event_by_id(event_id)

    def latest_cursor(self) -> int:
        """A position in the log: events recorded later have a larger cursor."""
        return self.events.latest_cursor()

    def events_after(self, cursor: int, *, limit: int = 50) -> list[tuple[int, Event]]:
        """Events recorded after ``cursor`` (oldest first) with their own cursors."""
        return self.events.events_after(cursor, limit=limit)

    def tally(self, start: datetime, end: datetime) -> Tally:
        """Entries, exits and refusals (by reason) with ``start <= at < end``."""
        return self.events.tally(start, end)

    def visits(self, start: datetime, end: datetime, *, expiry_h: float) -> list[Visit]:
        """Everyone whose presence overlapped ``[start, end)``: the contact-tracing question."""
        return self.events.visits(start, end, expiry_h=expiry_h)

    def inside(self, *, now: datetime, expiry_h: float) -> list[Presence]:
        """Everyone inside now, earliest entry first."""
        return self.events.inside(now=now, expiry_h=expiry_h)

    def purge_events_before(self, cutoff: datetime, *, limit: int) -> int:
        """Delete the ``limit`` oldest events older than ``cutoff`` (one batch of
        the retention purge); presence goes with them. Fewer than ``limit``: done."""
        return self.events.purge_events_before(cutoff, limit=limit)

    def event_reasons(self) -> list[str]:
        """The reason codes present in the log, sorted: what the log's reason filter offers."""
        return self.events.event_reasons()

    # ----------------------------------------------------------------- site

    def settings_version(self) -> int:
        """The settings counter; the kiosk reloads settings when it changes."""
        return self.site.settings_version()

    def bump_settings_version(self) -> int:
        """Tell running kiosks that settings changed; returns the new version."""
        return self.site.bump_settings_version()

    def site_settings(self) -> dict[str, Any]:
        """Settings changed on the web, by name (``"gate.mode"``); they override the file."""
        return self.site.site_settings()

    def save_site_settings(
        self, values: dict[str, Any], *, by: str, at: datetime, audit: AuditNote | None = None
    ) -> int:
        """Store changed settings and bump the version the kiosk polls; returns it."""
        return self.site.save_site_settings(values, by=by, at=at, audit=audit)

    def is_denylisted(self, subject_hash: str) -> bool:
        return self.site.is_denylisted(subject_hash)

    def add_to_denylist(
        self,
        subject_hash: str,
        *,
        label: str,
        note: str,
        at: datetime,
        added_by: str | None = None,
        audit: AuditNote | None = None,
    ) -> bool:
        """Deny this person from now on; whether they were on the list already."""
        return self.site.add_to_denylist(
            subject_hash, label=label, note=note, at=at, added_by=added_by, audit=audit
        )

    def remove_from_denylist(self, subject_hash: str, *, audit: AuditNote | None = None) -> bool:
        """Lift a denial; ``False`` if the person was not on the list."""
        return self.site.remove_from_denylist(subject_hash, audit=audit)

    def denylist_entries(self) -> list[DenylistEntry]:
        return self.site.denylist_entries()

    def write_health(self, health: KioskHealth) -> None:
        """Replace the health row of ``health.gate_id`` (one row per gate)."""
        self.site.write_health(health)

    def read_health(self, gate_id: str) -> KioskHealth | None:
        return self.site.read_health(gate_id)

    def request_admit(
        self,
        *,
        actor: str,
        reason: str,
        display_name: str | None,
        at: datetime,
        audit: AuditNote | None = None,
        gate_id: str | None = None,
    ) -> int:
        """A guard's "admit once" from the web (for ``gate_id``, or this gate)."""
        return self.site.request_admit(
            actor=actor,
            reason=reason,
            display_name=display_name,
            at=at,
            audit=audit,
            gate_id=gate_id,
        )

    def pending_admits(
        self, *, now: datetime, max_age_s: float, gate_id: str | None = None
    ) -> list[AdmitRequest]:
        """Requests to carry out now (for ``gate_id`` if given); older ones expire."""
        return self.site.pending_admits(now=now, max_age_s=max_age_s, gate_id=gate_id)

    def admit_request(self, request_id: int) -> AdmitRequest | None:
        return self.site.admit_request(request_id)

    def record_admit(self, request: AdmitRequest, event: NewEvent) -> Event:
        """Record the manual entry and mark the request done, in one transaction."""
        return self.site.record_admit(request, event)

    # ----------------------------------------------------------------- accounts

    def add_user(
        self,
        name: str,
        *,
        role: str,
        password_hash: str,
        at: datetime,
        audit: AuditNote | None = None,
    ) -> User:
        """Create an account; StoreError if the name is taken (names ignore case)."""
        return self.accounts.add_user(
            name, role=role, password_hash=password_hash, at=at, audit=audit
        )

    def user_by_name(self, name: str) -> User | None:
        return self.accounts.user_by_name(name)

    def user_by_id(self, user_id: int) -> User | None:
        return self.accounts.user_by_id(user_id)

    def users(self) -> list[User]:
        return self.accounts.users()

    def count_managers(self) -> int:
        return self.accounts.count_managers()

    def set_user_disabled(
        self, user_id: int, disabled: bool, *, audit: AuditNote | None = None
    ) -> None:
        """Disable (or enable) an account."""
        self.accounts.set_user_disabled(user_id, disabled, audit=audit)

    def end_sessions(self, user_id: int) -> None:
        """Invalidate every session of this user (logout, everywhere)."""
        self.accounts.end_sessions(user_id)

    def set_password(
        self, user_id: int, password_hash: str, *, at: datetime, audit: AuditNote | None = None
    ) -> None:
        """Replace a password hash, ending the account's sessions and its login throttle."""
        self.accounts.set_password(user_id, password_hash, at=at, audit=audit)

    # ----------------------------------------------------------------- throttle

    def throttle_admit(
        self, keys: Sequence[str], rule: ThrottleRule, *, at: datetime
    ) -> ThrottleVerdict:
        """Count one hit under every key unless ``rule`` blocks one: the UPSERT decides."""
        return self.throttle.admit(keys, rule, at=at)

    def throttle_refund(self, keys: Sequence[str]) -> None:
        """Take back one admitted hit under each key (it turned out not to count)."""
        self.throttle.refund(keys)

    def throttle_counts(self, keys: Sequence[str]) -> dict[str, ThrottleCount]:
        """The counts under ``keys`` that have any hits, by key."""
        return self.throttle.counts(keys)

    def throttle_clear(self, keys: Sequence[str]) -> None:
        """Forget the counts under ``keys`` (a successful login's account key)."""
        self.throttle.clear(keys)

    # ----------------------------------------------------------------- audit

    def audit(
        self,
        *,
        actor: str,
        action: str,
        detail: dict[str, Any],
        at: datetime,
        row_count: int | None = None,
    ) -> int:
        """Record who did what (exports, settings, users, denylist); the new row's id."""
        return self.audit_log.audit(
            actor=actor, action=action, detail=detail, at=at, row_count=row_count
        )

    def update_audit(self, audit_id: int, *, detail: dict[str, Any], row_count: int | None) -> None:
        """Replace the detail and row count of an audit row (an export that ended)."""
        self.audit_log.update_audit(audit_id, detail=detail, row_count=row_count)

    def audit_entries(self, *, limit: int = 200) -> list[AuditEntry]:
        return self.audit_log.audit_entries(limit=limit)

    # ----------------------------------------------------------------- codes

    def save_site_code(self, code: SiteCode, *, audit: AuditNote | None = None) -> None:
        """Keep a declaration or staff pass the site issued (and ``audit``, with its id)."""
        self.codes.save_site_code(code, audit=audit)

    def site_code(self, code_id: str) -> SiteCode | None:
        return self.codes.site_code(code_id)

    def site_codes(
        self, kind: str, *, now: datetime, include_expired: bool = False
    ) -> list[SiteCode]:
        """Issued codes of one kind, newest first; by default only unexpired ones."""
        return self.codes.site_codes(kind, now=now, include_expired=include_expired)

    def is_revoked(self, code_id: str) -> bool:
        """Whether a manager revoked this declaration or pass (the gate asks per scan)."""
        return self.codes.is_revoked(code_id)

    def revoke_site_code(
        self, code_id: str, *, by: str, at: datetime, audit: AuditNote | None = None
    ) -> bool:
        """Revoke; False if there is no such code or it was revoked already."""
        return self.codes.revoke_site_code(code_id, by=by, at=at, audit=audit)

    def purge_site_codes_before(self, cutoff: datetime, *, limit: int) -> int:
        """Delete up to ``limit`` issued codes that expired before ``cutoff`` (one
        batch of the retention purge). Fewer than ``limit``: done."""
        return self.codes.purge_site_codes_before(cutoff, limit=limit)

    def add_trusted_certificates(
        self,
        certificates: list[TrustedRow],
        *,
        by: str,
        at: datetime,
        audit: AuditNote | None = None,
    ) -> int:
        """Add certificates; returns how many were new (the kiosk reloads)."""
        return self.codes.add_trusted_certificates(certificates, by=by, at=at, audit=audit)

    def trusted_certificates(self) -> list[TrustedRow]:
        """Every trusted certificate, by country then key id."""
        return self.codes.trusted_certificates()

    def remove_trusted_certificates(self, kid: bytes, *, audit: AuditNote | None = None) -> int:
        """Remove every trusted certificate with key id ``kid``; returns how many."""
        return self.codes.remove_trusted_certificates(kid, audit=audit)
