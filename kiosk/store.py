"""The event store: schema, migrations and every SQL query of gatekiosk.

One SQLite file, in WAL mode, is shared by two processes: the kiosk (writes
events, presence and its health) and the admin web (denylist, settings, and
reads). Neither process touches SQL anywhere else; both go through a
:class:`Store`.

Durability is the point of this module. The gate admits nobody without a
durable row, so :meth:`Store.record` commits with ``synchronous=FULL`` (an
fsync of the WAL) before it returns, and the caller pulses the relay only
afterwards. Anything SQLite refuses (locked past the busy timeout, disk full,
read-only file) becomes a :class:`~kiosk.errors.StoreError` with the
transaction rolled back, so the scanner can fail secure.

Times are stored as fixed-width ISO-8601 UTC text with microseconds and a
``Z`` (``2026-01-05T01:00:00.000000Z``): text order is time order, so range
queries and indexes work on the column as it is, and a human reading the file
with ``sqlite3`` sees a real time.

Example::

    with Store.open(tmp_path / "gate.db") as store:
        event = store.record(new_event)   # committed and fsynced
        store.presence_of(event.subject_hash, now=now, expiry_h=12.0)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import sqlite3
import threading
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sqlite_utils import Database

from kiosk.datadir import create_private_file
from kiosk.errors import StoreError

log = logging.getLogger(__name__)

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")

DIRECTIONS = ("in", "out")
DECISIONS = ("allow", "deny")

_EVENT_COLUMNS = (
    "id, boot_id, seq, gate_id, at_utc, utc_offset_min, clock_synced, direction, decision, "
    "reason, kind, subject_hash, display_name, masked_id, id_number, override, warning, "
    "actor, note, birth_date, name_latin"
)

LOG_ORDER = "boot_ordinal, seq"
"""The order events happened in, whatever the wall clock said: boots in the
order the database first saw them, then the per-boot sequence. Times are
filtered on, never sorted on (a Pi has no real-time clock)."""
LOG_ORDER_NEWEST_FIRST = "boot_ordinal DESC, seq DESC"

# Fixed width: every stored time has exactly this shape, so text order = time order.
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

# UTC offsets in use on Earth run from UTC-12:00 to UTC+14:00.
_MIN_OFFSET_MIN = -12 * 60
_MAX_OFFSET_MIN = 14 * 60

BUSY_TIMEOUT_MS = 5000
"""How long a write waits for the other process's write lock, by default: the
admin web and the CLI, where a person waits for a page or a command and a
slow save is better than a failed one."""

CHECK_MIN_FREE_BYTES = 256 * 1024
"""Below this much free space, :meth:`Store.check_writable` reports a full
disk: a few hundred events' worth, so a gate that comes back from a full disk
does not fall straight back into it."""

KIOSK_BUSY_TIMEOUT_MS = 1000
"""How long the kiosk waits for the write lock before it refuses with a store
fault. Every write by the web or a CLI command holds the lock for tens of
milliseconds (one fsync on an SD card), so 1 s absorbs them all; a lock held
longer is a fault the gate should show, not wait out. The wait blocks the scan
loop (and the guard's override, which shares its lock): at 1 s a visitor has
an answer and the guard an open door within about a second, and one loop step
(the store probe, the decision, the health row: up to three waits) stays well
inside the service's 10 s watchdog. Measured under a long lock
(``python -m bench.storage_faults``): the longest step took 3.2 s at 1 s and
20 s at 5 s, which the watchdog would end with a restart."""


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class NewEvent:
    """A decision about to be recorded: what the scanner knows before the store.

    ``at`` is aware UTC; ``utc_offset_min`` is the site's local offset at that
    instant, so the log can show local time without guessing past DST rules.
    ``subject_hash`` is the keyed hash (hex) that matches one person across
    scans, ``None`` for codes that identify nobody. ``id_number`` is set only
    when the site chose to store full ID numbers; by default it is ``None``.
    """

    gate_id: str
    at: datetime
    utc_offset_min: int
    clock_synced: bool
    direction: str
    decision: str
    reason: str
    kind: str
    subject_hash: str | None
    display_name: str | None
    masked_id: str | None
    id_number: str | None = None
    override: bool = False
    warning: str | None = None
    actor: str | None = None
    """The guard or manager who admitted someone by hand."""
    note: str | None = None
    """The reason a guard gave for a manual admission."""
    birth_date: str | None = None
    """The date of birth (ISO ``YYYY-MM-DD``) of a verified HC1: certificate's
    holder, so a guard can compare it with an ID card; None for other kinds."""
    name_latin: str | None = None
    """The transliterated (ICAO, Latin) name of an HC1: certificate's holder."""

    def __post_init__(self) -> None:
        # Fail at construction, in the caller's code, rather than as a CHECK
        # constraint at the gate, where it would look like a storage failure.
        _require_aware(self.at, "at")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, not {self.direction!r}")
        if self.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, not {self.decision!r}")
        if not _MIN_OFFSET_MIN <= self.utc_offset_min <= _MAX_OFFSET_MIN:
            raise ValueError(f"utc_offset_min out of range: {self.utc_offset_min}")


@dataclass(frozen=True)
class Event:
    """A recorded event: a :class:`NewEvent` plus where it sits in the log.

    ``id`` is a random uuid4 hex, unique across gates and boots; it carries no
    time, because the clock it would carry may be wrong (a Pi has no RTC).
    Order that survives a wrong clock is the boot, then ``seq`` (see
    :data:`LOG_ORDER`): ``seq`` counts 1, 2, 3 ... within one boot of the
    machine, across process restarts.
    """

    id: str
    boot_id: str
    seq: int
    gate_id: str
    at: datetime
    utc_offset_min: int
    clock_synced: bool
    direction: str
    decision: str
    reason: str
    kind: str
    subject_hash: str | None
    display_name: str | None
    masked_id: str | None
    id_number: str | None = None
    override: bool = False
    warning: str | None = None
    actor: str | None = None
    note: str | None = None
    birth_date: str | None = None
    name_latin: str | None = None

    @classmethod
    def of(cls, new: NewEvent, *, id: str, boot_id: str, seq: int) -> Event:
        fields = {f.name: getattr(new, f.name) for f in dataclasses.fields(NewEvent)}
        return cls(id=id, boot_id=boot_id, seq=seq, **fields)

    def as_new(self) -> NewEvent:
        """The event's content, to record a follow-up (e.g. a guard's override)."""
        return NewEvent(**{f.name: getattr(self, f.name) for f in dataclasses.fields(NewEvent)})


@dataclass(frozen=True)
class Presence:
    """Someone believed inside: their latest allowed entry with no exit since."""

    subject_hash: str
    display_name: str | None
    masked_id: str | None
    entered_at: datetime
    event_id: str
    gate_id: str


@dataclass(frozen=True)
class KioskHealth:
    """What the kiosk last reported about itself, for the admin web's status page.

    ``fps`` is frames per second actually processed; ``fault`` is a short code
    of the fault the gate is signalling, ``None`` when healthy.
    """

    gate_id: str
    updated_at: datetime
    last_frame_at: datetime | None
    fps: float
    camera: str
    camera_ok: bool
    camera_detail: str
    decoder: str
    pin_backend: str
    clock_synced: bool
    fault: str | None


def search_fold(text: str) -> str:
    """Text folded for search: no case, no diacritics, đ as d.

    So a guard typing "nguyen van an" finds "Nguyễn Văn An".
    """
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.casefold()


@dataclass(frozen=True)
class EventFilter:
    """Which events a log page or an export covers; every field optional.

    ``start`` is inclusive and ``end`` exclusive (aware datetimes). ``text``
    matches part of the name or of the masked ID, ignoring case and
    diacritics.
    """

    start: datetime | None = None
    end: datetime | None = None
    direction: str | None = None
    decision: str | None = None
    reason: str | None = None
    kind: str | None = None
    text: str | None = None
    clock_synced: bool | None = None
    """Only events recorded with (True) or without (False) a synchronised clock."""

    def sql(self) -> tuple[str, tuple[Any, ...]]:
        """A WHERE clause and its parameters; values are always bound, never inlined."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.start is not None:
            clauses.append("at_utc >= ?")
            params.append(_to_text(self.start))
        if self.end is not None:
            clauses.append("at_utc < ?")
            params.append(_to_text(self.end))
        # Within a time range, the range is the selective term: "+decision"
        # keeps SQLite (which has no statistics) from choosing the
        # (decision, reason) index and scanning half the log instead.
        timed = self.start is not None or self.end is not None
        for column in ("direction", "decision", "reason", "kind"):
            value = getattr(self, column)
            if value:
                plain = "+" if timed and column == "decision" else ""
                clauses.append(f"{plain}{column} = ?")
                params.append(value)
        if self.clock_synced is not None:
            # A literal, not a parameter, so SQLite can use the partial index
            # of unsynchronised events (idx_events_unsynced).
            clauses.append(f"clock_synced = {int(self.clock_synced)}")
        if self.text and self.text.strip():
            pattern = "%" + _like_escape(search_fold(self.text.strip())) + "%"
            clauses.append(
                "(fold(coalesce(display_name, '')) LIKE ? ESCAPE '\\' "
                "OR fold(coalesce(masked_id, '')) LIKE ? ESCAPE '\\')"
            )
            params += [pattern, pattern]
        return (" AND ".join(clauses) or "1"), tuple(params)

    def as_dict(self) -> dict[str, str]:
        """The filter as plain text, for the audit log."""
        return {
            f.name: (v.isoformat() if isinstance(v, datetime) else str(v))
            for f in dataclasses.fields(self)
            if (v := getattr(self, f.name)) not in (None, "")
        }


@dataclass(frozen=True)
class Tally:
    entries: int
    exits: int
    refusals: dict[str, int]
    """Refused scans by reason code."""

    @property
    def refused(self) -> int:
        return sum(self.refusals.values())


@dataclass(frozen=True)
class Visit:
    """One stay inside: from an allowed entry to the next allowed exit."""

    subject_hash: str
    display_name: str | None
    masked_id: str | None
    entered_at: datetime
    exited_at: datetime | None
    """None when no exit was recorded (the presence expired or is still open)."""
    entry_event_id: str

    @classmethod
    def of(cls, entry: Event, exited_at: datetime | None) -> Visit:
        assert entry.subject_hash is not None
        return cls(
            entry.subject_hash,
            entry.display_name,
            entry.masked_id,
            entry.at,
            exited_at,
            entry.id,
        )


@dataclass(frozen=True)
class DenylistEntry:
    subject_hash: str
    label: str
    note: str
    added_at: datetime
    added_by: str | None


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    password_hash: str
    disabled: bool
    created_at: datetime
    password_changed_at: datetime
    session_epoch: int = 0
    """Sessions carry the epoch they began in; logging out bumps it, so a
    cookie copied before the logout no longer works."""


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]
    row_count: int | None


@dataclass(frozen=True)
class AdmitRequest:
    id: int
    requested_at: datetime
    actor: str
    reason: str
    display_name: str | None
    status: str


@dataclass(frozen=True)
class TrustedRow:
    """A trusted signing certificate as stored (see kiosk.trust for its meaning)."""

    id: int
    kid: bytes
    country: str
    subject: str
    not_before: datetime
    not_after: datetime
    der: bytes
    added_at: datetime
    added_by: str


@dataclass(frozen=True)
class SiteCode:
    """A declaration or staff pass as the site keeps it (the QR holds a signed copy)."""

    id: str
    kind: str
    issued_at: datetime
    valid_from: datetime
    expires_at: datetime
    name: str
    phone: str | None
    organisation: str | None
    answers: dict[str, Any]
    verdict: str
    issued_by: str
    """"self" for a visitor's own declaration, else the user who issued it."""
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    text: str | None = None
    """The signed ``GK1:`` text, kept for staff passes only (to print badges
    again); a visitor keeps their own declaration's code."""


# --------------------------------------------------------------------------- migrations


def _m0001_initial(db: Database) -> None:
    """The first schema: events, presence, denylist, kiosk health, settings version."""
    # Raw DDL for the tables that need CHECK and table-level UNIQUE constraints,
    # which sqlite-utils' Table.create does not express.
    db.execute(
        """
        CREATE TABLE events (
            id             TEXT PRIMARY KEY NOT NULL,
            gate_id        TEXT NOT NULL,
            at_utc         TEXT NOT NULL,
            utc_offset_min INTEGER NOT NULL,
            boot_id        TEXT NOT NULL,
            seq            INTEGER NOT NULL CHECK (seq >= 1),
            clock_synced   INTEGER NOT NULL CHECK (clock_synced IN (0, 1)),
            direction      TEXT NOT NULL CHECK (direction IN ('in', 'out')),
            decision       TEXT NOT NULL CHECK (decision IN ('allow', 'deny')),
            reason         TEXT NOT NULL,
            kind           TEXT NOT NULL,
            subject_hash   TEXT,
            display_name   TEXT,
            masked_id      TEXT,
            id_number      TEXT,
            override       INTEGER NOT NULL DEFAULT 0 CHECK (override IN (0, 1)),
            warning        TEXT,
            UNIQUE (boot_id, seq)
        )
        """
    )
    events = db.table("events")
    events.create_index(["at_utc"], index_name="idx_events_at_utc")
    events.create_index(["subject_hash"], index_name="idx_events_subject_hash")
    events.create_index(["decision", "reason"], index_name="idx_events_decision_reason")

    # A presence row points at the entry that created it; purging old events
    # takes their (long expired) presence rows with them.
    db.execute(
        """
        CREATE TABLE presence (
            subject_hash   TEXT PRIMARY KEY NOT NULL,
            display_name   TEXT,
            masked_id      TEXT,
            entered_at_utc TEXT NOT NULL,
            event_id       TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
            gate_id        TEXT NOT NULL
        )
        """
    )
    db.table("presence").create_index(["entered_at_utc"], index_name="idx_presence_entered_at_utc")
    db.table("presence").create_index(["event_id"], index_name="idx_presence_event_id")

    db.table("denylist").create(
        {"subject_hash": str, "label": str, "note": str, "added_at_utc": str},
        pk="subject_hash",
        not_null=["subject_hash", "label", "note", "added_at_utc"],
    )
    db.table("kiosk_health").create(
        {
            "gate_id": str,
            "updated_at_utc": str,
            "last_frame_at_utc": str,
            "fps": float,
            "camera": str,
            "camera_ok": int,
            "camera_detail": str,
            "decoder": str,
            "pin_backend": str,
            "clock_synced": int,
            "fault": str,
        },
        pk="gate_id",
        not_null=[
            "gate_id",
            "updated_at_utc",
            "fps",
            "camera",
            "camera_ok",
            "camera_detail",
            "decoder",
            "pin_backend",
            "clock_synced",
        ],
    )
    # Exactly one row (id = 1), so the version is a single value both processes share.
    db.execute(
        """
        CREATE TABLE settings_meta (
            id      INTEGER PRIMARY KEY CHECK (id = 1),
            version INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    db.execute("INSERT INTO settings_meta (id, version) VALUES (1, 0)")


def _m0002_admin(db: Database) -> None:
    """What the admin web needs: accounts, audit, site settings, guards' admissions."""
    db.execute("ALTER TABLE events ADD COLUMN actor TEXT")
    db.execute("ALTER TABLE events ADD COLUMN note TEXT")
    db.execute("ALTER TABLE denylist ADD COLUMN added_by TEXT")
    db.table("events").create_index(["kind", "at_utc"], index_name="idx_events_kind_at_utc")
    db.execute(
        """
        CREATE TABLE users (
            id             INTEGER PRIMARY KEY,
            name           TEXT NOT NULL UNIQUE COLLATE NOCASE,
            role           TEXT NOT NULL CHECK (role IN ('manager', 'guard')),
            password_hash  TEXT NOT NULL,
            disabled       INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
            created_at_utc TEXT NOT NULL,
            password_changed_at_utc TEXT NOT NULL
        )
        """
    )
    # Failed logins, by account name and by client address, so throttling
    # survives a restart of the web process.
    db.execute(
        """
        CREATE TABLE login_failures (
            key          TEXT PRIMARY KEY NOT NULL,
            failures     INTEGER NOT NULL,
            last_at_utc  TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE audit (
            id      INTEGER PRIMARY KEY AUTOINCREMENT,
            at_utc  TEXT NOT NULL,
            actor   TEXT NOT NULL,
            action  TEXT NOT NULL,
            detail  TEXT NOT NULL,
            row_count INTEGER
        )
        """
    )
    db.table("audit").create_index(["at_utc"], index_name="idx_audit_at_utc")
    # Settings a manager changed on the web, as JSON values; they override the
    # file's. Each save bumps settings_meta.version, which the kiosk polls.
    db.execute(
        """
        CREATE TABLE site_settings (
            name           TEXT PRIMARY KEY NOT NULL,
            value_json     TEXT NOT NULL,
            updated_at_utc TEXT NOT NULL,
            updated_by     TEXT NOT NULL
        )
        """
    )
    # A guard's "admit once" on the web: the web process owns no pins, so it
    # asks the kiosk, which records the event and pulses the relay.
    db.execute(
        """
        CREATE TABLE admit_requests (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            requested_at_utc TEXT NOT NULL,
            actor            TEXT NOT NULL,
            reason           TEXT NOT NULL,
            display_name     TEXT,
            status           TEXT NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'done', 'expired')),
            handled_at_utc   TEXT,
            event_id         TEXT
        )
        """
    )


def _m0003_site_codes(db: Database) -> None:
    """Declarations and staff passes the site issued (its own signed codes)."""
    db.execute(
        """
        CREATE TABLE site_codes (
            id              TEXT PRIMARY KEY NOT NULL,
            kind            TEXT NOT NULL CHECK (kind IN ('declaration', 'staff-pass')),
            issued_at_utc   TEXT NOT NULL,
            valid_from_utc  TEXT NOT NULL,
            expires_at_utc  TEXT NOT NULL,
            name            TEXT NOT NULL,
            phone           TEXT,
            organisation    TEXT,
            answers_json    TEXT NOT NULL DEFAULT '{}',
            verdict         TEXT NOT NULL CHECK (verdict IN ('ok', 'refuse')),
            issued_by       TEXT NOT NULL,
            revoked_at_utc  TEXT,
            revoked_by      TEXT
        )
        """
    )
    db.table("site_codes").create_index(
        ["kind", "expires_at_utc"], index_name="idx_site_codes_kind"
    )


def _m0004_site_code_text(db: Database) -> None:
    """The signed text of a staff pass, so its badge can be printed again."""
    db.execute("ALTER TABLE site_codes ADD COLUMN text TEXT")


def _m0005_trust(db: Database) -> None:
    """Signing certificates trusted for EU/Vietnam COVID certificates (HC1:)."""
    db.execute(
        """
        CREATE TABLE trusted_certificates (
            id             INTEGER PRIMARY KEY,
            kid            BLOB NOT NULL,
            country        TEXT NOT NULL,
            subject        TEXT NOT NULL,
            not_before_utc TEXT NOT NULL,
            not_after_utc  TEXT NOT NULL,
            der            BLOB NOT NULL UNIQUE,
            added_at_utc   TEXT NOT NULL,
            added_by       TEXT NOT NULL
        )
        """
    )
    db.table("trusted_certificates").create_index(["kid"], index_name="idx_trusted_kid")


def _m0006_event_identity(db: Database) -> None:
    """The HC1: holder's date of birth and transliterated name, for the guard
    (other kinds leave them NULL)."""
    db.execute("ALTER TABLE events ADD COLUMN birth_date TEXT")
    db.execute("ALTER TABLE events ADD COLUMN name_latin TEXT")


def _m0007_session_epoch(db: Database) -> None:
    """Logging out ends every copy of the user's session cookie."""
    db.execute("ALTER TABLE users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0")


def _m0008_boot_order(db: Database) -> None:
    """The log's order that survives a wrong clock: boots numbered in the order
    this database first saw them, then ``seq`` within a boot.

    A boot id is random, so on its own it orders nothing; a Pi without a
    real-time clock can start a later boot at an earlier wall-clock time.
    Existing boots are numbered by their first row's position in the file.
    """
    db.execute(
        """
        CREATE TABLE boots (
            ordinal        INTEGER PRIMARY KEY,
            boot_id        TEXT NOT NULL UNIQUE,
            first_seen_utc TEXT NOT NULL
        )
        """
    )
    db.execute(
        "INSERT INTO boots (boot_id, first_seen_utc) "
        "SELECT boot_id, min(at_utc) FROM events GROUP BY boot_id ORDER BY min(rowid)"
    )
    db.execute("ALTER TABLE events ADD COLUMN boot_ordinal INTEGER NOT NULL DEFAULT 0")
    db.execute(
        "UPDATE events SET boot_ordinal = "
        "(SELECT ordinal FROM boots WHERE boots.boot_id = events.boot_id)"
    )
    db.execute("CREATE INDEX idx_events_log_order ON events (boot_ordinal, seq)")
    # Few rows, counted on every dashboard view: those whose times may be wrong.
    db.execute(
        "CREATE INDEX idx_events_unsynced ON events (boot_ordinal, seq) WHERE clock_synced = 0"
    )


Migration = tuple[str, Callable[[Database], None]]

# Append only: a migration, once released, is never edited, renamed or reordered.
MIGRATIONS: tuple[Migration, ...] = (
    ("0001_initial", _m0001_initial),
    ("0002_admin", _m0002_admin),
    ("0003_site_codes", _m0003_site_codes),
    ("0004_site_code_text", _m0004_site_code_text),
    ("0005_trust", _m0005_trust),
    ("0006_event_identity", _m0006_event_identity),
    ("0007_session_epoch", _m0007_session_epoch),
    ("0008_boot_order", _m0008_boot_order),
)


# --------------------------------------------------------------------------- the store


class Store:
    """The one gateway to the database file. Open one per process.

    The connection runs in SQLite autocommit mode (``isolation_level=None``)
    and every write takes the write lock up front with ``BEGIN IMMEDIATE``, so
    a conflict with the other process shows up as a busy wait at the start of
    a transaction, never as a deadlock half-way through one.

    The connection is shared by threads (the scan loop and the health writer),
    so it is opened with ``check_same_thread=False`` and every method holds
    ``self._lock``: one statement or transaction at a time. A store opened
    with ``concurrent_reads`` (the admin web, whose server runs requests on
    several threads) reads on one connection per thread instead, without the
    lock: WAL lets readers run beside each other and beside the writer, so a
    slow page no longer holds up every other request.
    """

    def __init__(self, db: Database, *, boot_id: str, path: Path) -> None:
        """Use :meth:`open`; this only wraps an already prepared database."""
        self.path = path
        self._db = db
        self._conn: sqlite3.Connection = db.conn
        self.boot_id = boot_id
        self._lock = threading.RLock()
        self._closed = False
        self._reopen_when_writable = False
        """SQLite opened the file read-only (it or its file system was): the
        first write after it is writable again reopens the connection."""
        self._concurrent_reads = False
        self._readers = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._busy_timeout_ms = BUSY_TIMEOUT_MS

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        boot_id: str | None = None,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        read_only: bool = False,
        concurrent_reads: bool = False,
    ) -> Store:
        """Open (creating if needed) the database at ``path`` and migrate it.

        ``boot_id`` names this boot of the machine; it defaults to the kernel's
        (see :func:`current_boot_id`). ``busy_timeout_ms`` is how long a write
        waits for the other process's lock before giving up with StoreError
        (the kiosk passes :data:`KIOSK_BUSY_TIMEOUT_MS`).
        ``read_only`` opens an existing database for reading only, without
        creating or migrating anything; every write raises StoreError.
        ``concurrent_reads`` gives each thread its own connection for reads
        (see the class docstring); writes still share one.
        """
        path = Path(path)
        if read_only and not path.exists():
            raise StoreError(f"no database at {path}")
        try:
            if not read_only:  # folder 0700, file 0600 (SQLite gives -wal and -shm its mode)
                create_private_file(path)
        except OSError as exc:
            raise StoreError(f"cannot create the database directory: {exc.strerror}") from exc
        try:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro" if read_only else path,
                isolation_level=None,
                check_same_thread=False,
                timeout=busy_timeout_ms / 1000,
                uri=read_only,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database: {_describe(exc, path)}") from exc
        try:
            db = Database(conn, execute_plugins=False)
            _add_functions(conn)
            if read_only:
                conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            else:
                _configure(conn, busy_timeout_ms=busy_timeout_ms)
                _migrate(db)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot prepare the database: {_describe(exc, path)}") from exc
        except BaseException:
            conn.close()
            raise
        store = cls(db, boot_id=boot_id if boot_id is not None else current_boot_id(), path=path)
        store._concurrent_reads = concurrent_reads
        store._busy_timeout_ms = busy_timeout_ms
        if not read_only and _read_only_file(path):
            # SQLite quietly opened it for reading (a database left in WAL mode
            # by a power cut opens so): reads work, every write fails until
            # the file is writable again, and then _write reopens it.
            store._reopen_when_writable = True
            log.error(
                "the database file or its file system is read-only: opened for reading "
                "only; every write fails until it is writable again"
            )
        return store

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
                for reader in self._reader_conns:
                    reader.close()
                self._reader_conns.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- events

    def record(self, event: NewEvent) -> Event:
        """Append ``event`` to the log and update presence, durably, in one transaction.

        On return the row is committed and fsynced; only then may the caller
        open the door. Presence follows allowed events only: an allowed entry
        with a subject makes (or refreshes) that person's presence, an allowed
        exit removes it, a denial changes nothing.
        """
        with self._write("record the event") as conn:
            recorded = self._insert(conn, event)
        log.debug("recorded event seq=%d decision=%s", recorded.seq, event.decision)
        return recorded

    def _insert(self, conn: sqlite3.Connection, event: NewEvent) -> Event:
        """Insert one event and update presence, inside the caller's transaction."""
        event_id = uuid.uuid4().hex
        at_utc = _to_text(event.at)
        (last_seq,) = conn.execute(
            "SELECT coalesce(max(seq), 0) FROM events WHERE boot_id = ?", (self.boot_id,)
        ).fetchone()
        seq = int(last_seq) + 1
        conn.execute(
            "INSERT OR IGNORE INTO boots (boot_id, first_seen_utc) VALUES (?, ?)",
            (self.boot_id, at_utc),
        )
        conn.execute(
            """
            INSERT INTO events (
                id, gate_id, at_utc, utc_offset_min, boot_id, boot_ordinal, seq, clock_synced,
                direction, decision, reason, kind, subject_hash, display_name,
                masked_id, id_number, override, warning, actor, note, birth_date, name_latin
            ) VALUES (
                ?, ?, ?, ?, ?, (SELECT ordinal FROM boots WHERE boot_id = ?),
                ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
            )
            """,
            (
                event_id,
                event.gate_id,
                at_utc,
                event.utc_offset_min,
                self.boot_id,
                self.boot_id,
                seq,
                int(event.clock_synced),
                event.direction,
                event.decision,
                event.reason,
                event.kind,
                event.subject_hash,
                event.display_name,
                event.masked_id,
                event.id_number,
                int(event.override),
                event.warning,
                event.actor,
                event.note,
                event.birth_date,
                event.name_latin,
            ),
        )
        if event.decision == "allow" and event.subject_hash is not None:
            if event.direction == "in":
                conn.execute(
                    """
                    INSERT INTO presence (
                        subject_hash, display_name, masked_id, entered_at_utc,
                        event_id, gate_id
                    ) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (subject_hash) DO UPDATE SET
                        display_name = excluded.display_name,
                        masked_id = excluded.masked_id,
                        entered_at_utc = excluded.entered_at_utc,
                        event_id = excluded.event_id,
                        gate_id = excluded.gate_id
                    """,
                    (
                        event.subject_hash,
                        event.display_name,
                        event.masked_id,
                        at_utc,
                        event_id,
                        event.gate_id,
                    ),
                )
            else:
                conn.execute("DELETE FROM presence WHERE subject_hash = ?", (event.subject_hash,))
        return Event.of(
            dataclasses.replace(event, at=_from_text(at_utc)),
            id=event_id,
            boot_id=self.boot_id,
            seq=seq,
        )

    def recent_events(self, limit: int = 20) -> list[Event]:
        """The latest ``limit`` events, newest first (in :data:`LOG_ORDER`, not by clock)."""
        rows = self._read(
            "read recent events",
            f"SELECT {_EVENT_COLUMNS} FROM events ORDER BY {LOG_ORDER_NEWEST_FIRST} LIMIT ?",
            (limit,),
        )
        return [_event_from_row(row) for row in rows]

    def events_between(self, start: datetime, end: datetime) -> list[Event]:
        """Events with ``start <= at < end``, oldest first.

        Half-open, so consecutive windows (9:00-10:00, 10:00-11:00) neither
        miss nor double-count an event on the boundary.
        """
        rows = self._read(
            "read events",
            f"SELECT {_EVENT_COLUMNS} FROM events "
            f"WHERE at_utc >= ? AND at_utc < ? ORDER BY {LOG_ORDER}",
            (_to_text(start), _to_text(end)),
        )
        return [_event_from_row(row) for row in rows]

    # ----------------------------------------------------------------- presence

    def presence_of(self, subject_hash: str, *, now: datetime, expiry_h: float) -> Presence | None:
        """This person's presence, or ``None`` if they are not inside.

        An entry older than ``expiry_h`` hours counts as gone: people leave
        without scanning out, and a stale presence must not block them (or
        inflate occupancy) forever.
        """
        rows = self._read(
            "read presence",
            "SELECT subject_hash, display_name, masked_id, entered_at_utc, event_id, gate_id "
            "FROM presence WHERE subject_hash = ? AND entered_at_utc >= ?",
            (subject_hash, _expiry_cutoff(now, expiry_h)),
        )
        if not rows:
            return None
        subject, display_name, masked_id, entered_at, event_id, gate_id = rows[0]
        return Presence(
            subject_hash=subject,
            display_name=display_name,
            masked_id=masked_id,
            entered_at=_from_text(entered_at),
            event_id=event_id,
            gate_id=gate_id,
        )

    def occupancy(self, *, now: datetime, expiry_h: float) -> int:
        """How many people are inside, with the same expiry as :meth:`presence_of`."""
        rows = self._read(
            "count presence",
            "SELECT count(*) FROM presence WHERE entered_at_utc >= ?",
            (_expiry_cutoff(now, expiry_h),),
        )
        return int(rows[0][0])

    # ----------------------------------------------------------------- denylist

    def is_denylisted(self, subject_hash: str) -> bool:
        rows = self._read(
            "read the denylist",
            "SELECT 1 FROM denylist WHERE subject_hash = ?",
            (subject_hash,),
        )
        return bool(rows)

    def add_to_denylist(
        self,
        subject_hash: str,
        *,
        label: str,
        note: str,
        at: datetime,
        added_by: str | None = None,
    ) -> None:
        """Deny this person from now on; adding again replaces label, note and time."""
        added_at = _to_text(at)
        with self._write("update the denylist") as conn:
            conn.execute(
                """
                INSERT INTO denylist (subject_hash, label, note, added_at_utc, added_by)
                VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (subject_hash) DO UPDATE SET
                    label = excluded.label,
                    note = excluded.note,
                    added_at_utc = excluded.added_at_utc,
                    added_by = excluded.added_by
                """,
                (subject_hash, label, note, added_at, added_by),
            )

    def remove_from_denylist(self, subject_hash: str) -> bool:
        """Lift a denial; ``False`` if the person was not on the list."""
        with self._write("update the denylist") as conn:
            cursor = conn.execute("DELETE FROM denylist WHERE subject_hash = ?", (subject_hash,))
            return cursor.rowcount > 0

    # ----------------------------------------------------------------- health

    def write_health(self, health: KioskHealth) -> None:
        """Replace the health row of ``health.gate_id`` (one row per gate)."""
        with self._write("write kiosk health") as conn:
            conn.execute(
                """
                INSERT INTO kiosk_health (
                    gate_id, updated_at_utc, last_frame_at_utc, fps, camera, camera_ok,
                    camera_detail, decoder, pin_backend, clock_synced, fault
                ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (gate_id) DO UPDATE SET
                    updated_at_utc = excluded.updated_at_utc,
                    last_frame_at_utc = excluded.last_frame_at_utc,
                    fps = excluded.fps,
                    camera = excluded.camera,
                    camera_ok = excluded.camera_ok,
                    camera_detail = excluded.camera_detail,
                    decoder = excluded.decoder,
                    pin_backend = excluded.pin_backend,
                    clock_synced = excluded.clock_synced,
                    fault = excluded.fault
                """,
                (
                    health.gate_id,
                    _to_text(health.updated_at),
                    None if health.last_frame_at is None else _to_text(health.last_frame_at),
                    float(health.fps),
                    health.camera,
                    int(health.camera_ok),
                    health.camera_detail,
                    health.decoder,
                    health.pin_backend,
                    int(health.clock_synced),
                    health.fault,
                ),
            )

    def read_health(self, gate_id: str) -> KioskHealth | None:
        rows = self._read(
            "read kiosk health",
            "SELECT gate_id, updated_at_utc, last_frame_at_utc, fps, camera, camera_ok, "
            "camera_detail, decoder, pin_backend, clock_synced, fault "
            "FROM kiosk_health WHERE gate_id = ?",
            (gate_id,),
        )
        if not rows:
            return None
        (
            gate,
            updated_at,
            last_frame_at,
            fps,
            camera,
            camera_ok,
            camera_detail,
            decoder,
            pin_backend,
            clock_synced,
            fault,
        ) = rows[0]
        return KioskHealth(
            gate_id=gate,
            updated_at=_from_text(updated_at),
            last_frame_at=None if last_frame_at is None else _from_text(last_frame_at),
            fps=float(fps),
            camera=camera,
            camera_ok=bool(camera_ok),
            camera_detail=camera_detail,
            decoder=decoder,
            pin_backend=pin_backend,
            clock_synced=bool(clock_synced),
            fault=fault,
        )

    # ----------------------------------------------------------------- settings, upkeep

    def settings_version(self) -> int:
        """The settings counter; the kiosk reloads settings when it changes."""
        rows = self._read("read the settings version", "SELECT version FROM settings_meta", ())
        return int(rows[0][0])

    def bump_settings_version(self) -> int:
        """Tell running kiosks that settings changed; returns the new version."""
        with self._write("bump the settings version") as conn:
            conn.execute("UPDATE settings_meta SET version = version + 1 WHERE id = 1")
            (version,) = conn.execute("SELECT version FROM settings_meta WHERE id = 1").fetchone()
        return int(version)

    def integrity_ok(self) -> bool:
        """Whether SQLite's full integrity check passes (slow on big files; run at start-up)."""
        rows = self._read("check integrity", "PRAGMA integrity_check", ())
        return [tuple(row) for row in rows] == [("ok",)]

    def applied_migrations(self) -> list[str]:
        """Names of the migrations applied to this file, in the order applied."""
        rows = self._read(
            "read migrations", "SELECT name FROM migrations ORDER BY applied_at, rowid", ()
        )
        return [str(row[0]) for row in rows]

    # ----------------------------------------------------------------- the log, for the web

    def count_events(self, where: EventFilter) -> int:
        sql, params = where.sql()
        rows = self._read("count events", f"SELECT count(*) FROM events WHERE {sql}", params)
        return int(rows[0][0])

    def find_events(self, where: EventFilter, *, limit: int, offset: int = 0) -> list[Event]:
        """One page of the log, newest first."""
        sql, params = where.sql()
        rows = self._read(
            "search events",
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE {sql} "
            f"ORDER BY {LOG_ORDER_NEWEST_FIRST} LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [_event_from_row(row) for row in rows]

    def iter_events(self, where: EventFilter, *, batch: int = 2000) -> Iterator[Event]:
        """Every matching event, oldest first, streamed in bounded memory.

        Reads through a connection of its own, so a long export neither holds
        this store's lock nor sees a half-written page: one snapshot throughout.
        """
        sql, params = where.sql()
        with _store_errors("export events"):
            conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
            )
        try:
            _add_functions(conn)
            with _store_errors("export events"):
                conn.execute("BEGIN")  # one read snapshot for the whole export
                cursor = conn.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events WHERE {sql} ORDER BY {LOG_ORDER}",
                    params,
                )
                while rows := cursor.fetchmany(batch):
                    for row in rows:
                        yield _event_from_row(row)
        finally:
            conn.close()

    def event_by_id(self, event_id: str) -> Event | None:
        rows = self._read(
            "read an event", f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = ?", (event_id,)
        )
        return _event_from_row(rows[0]) if rows else None

    def latest_cursor(self) -> int:
        """A position in the log: events recorded later have a larger cursor."""
        rows = self._read("read the log position", "SELECT coalesce(max(rowid), 0) FROM events", ())
        return int(rows[0][0])

    def events_after(self, cursor: int, *, limit: int = 50) -> list[tuple[int, Event]]:
        """Events recorded after ``cursor`` (oldest first) with their own cursors."""
        rows = self._read(
            "read new events",
            f"SELECT rowid, {_EVENT_COLUMNS} FROM events WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (cursor, limit),
        )
        return [(int(row[0]), _event_from_row(row[1:])) for row in rows]

    def tally(self, start: datetime, end: datetime) -> Tally:
        """Entries, exits and refusals (by reason) with ``start <= at < end``."""
        rows = self._read(
            "count the day",
            "SELECT decision, direction, reason, count(*) FROM events "
            "WHERE at_utc >= ? AND at_utc < ? GROUP BY decision, direction, reason",
            (_to_text(start), _to_text(end)),
        )
        entries = exits = 0
        refusals: dict[str, int] = {}
        for decision, direction, reason, count in rows:
            if decision == "allow" and direction == "in":
                entries += int(count)
            elif decision == "allow":
                exits += int(count)
            else:
                refusals[reason] = refusals.get(reason, 0) + int(count)
        return Tally(entries=entries, exits=exits, refusals=refusals)

    def visits(self, start: datetime, end: datetime, *, expiry_h: float) -> list[Visit]:
        """Everyone whose presence overlapped ``[start, end)``: the contact-tracing question.

        A visit runs from an allowed entry to the same person's next allowed
        exit; with no exit it ends when presence expires (``expiry_h``), as
        the gate itself assumes.
        """
        _require_aware(start, "start")
        _require_aware(end, "end")
        expiry = timedelta(hours=expiry_h)
        rows = self._read(
            "read visits",
            # "+decision": the time range is the selective term; without
            # statistics SQLite would otherwise pick the (decision, reason)
            # index and scan most of the log (284 ms against 12 ms on 1M events).
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE +decision = 'allow' "
            "AND subject_hash IS NOT NULL AND at_utc >= ? AND at_utc < ? "
            f"ORDER BY {LOG_ORDER}",
            # Exits up to one expiry after the window still close visits in it.
            (_to_text(start - expiry), _to_text(end + expiry)),
        )
        open_visits: dict[str, Event] = {}
        visits: list[Visit] = []

        def close(entry: Event, exited_at: datetime | None) -> None:
            ends = exited_at if exited_at is not None else entry.at + expiry
            if entry.at < end and ends >= start:
                visits.append(Visit.of(entry, exited_at))

        for event in map(_event_from_row, rows):
            assert event.subject_hash is not None
            entry = open_visits.pop(event.subject_hash, None)
            if entry is not None and event.at - entry.at > expiry:
                close(entry, None)
                entry = None
            if event.direction == "in":
                if entry is not None:
                    close(entry, None)  # entered again without an exit
                if event.at < end:
                    open_visits[event.subject_hash] = event
            elif entry is not None:
                close(entry, event.at)
        for entry in open_visits.values():
            close(entry, None)
        visits.sort(key=lambda v: (v.entered_at, v.display_name or ""))
        return visits

    def inside(self, *, now: datetime, expiry_h: float) -> list[Presence]:
        """Everyone inside now, earliest entry first."""
        rows = self._read(
            "read presence",
            "SELECT subject_hash, display_name, masked_id, entered_at_utc, event_id, gate_id "
            "FROM presence WHERE entered_at_utc >= ? ORDER BY entered_at_utc",
            (_expiry_cutoff(now, expiry_h),),
        )
        return [
            Presence(
                subject_hash=r[0],
                display_name=r[1],
                masked_id=r[2],
                entered_at=_from_text(r[3]),
                event_id=r[4],
                gate_id=r[5],
            )
            for r in rows
        ]

    def purge_events_before(self, cutoff: datetime) -> int:
        """Delete events older than ``cutoff`` (retention); presence goes with them."""
        with self._write("purge old events") as conn:
            cursor = conn.execute("DELETE FROM events WHERE at_utc < ?", (_to_text(cutoff),))
            return cursor.rowcount

    def denylist_entries(self) -> list[DenylistEntry]:
        rows = self._read(
            "read the denylist",
            "SELECT subject_hash, label, note, added_at_utc, added_by FROM denylist "
            "ORDER BY added_at_utc DESC",
            (),
        )
        return [DenylistEntry(r[0], r[1], r[2], _from_text(r[3]), r[4]) for r in rows]

    # ----------------------------------------------------------------- accounts

    def add_user(self, name: str, *, role: str, password_hash: str, at: datetime) -> User:
        """Create an account; StoreError if the name is taken (names ignore case)."""
        with self._write("add the user") as conn:
            exists = conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone()
            if exists:
                raise StoreError(f"a user named {name!r} already exists")
            conn.execute(
                "INSERT INTO users (name, role, password_hash, disabled, created_at_utc, "
                "password_changed_at_utc) VALUES (?, ?, ?, 0, ?, ?)",
                (name, role, password_hash, _to_text(at), _to_text(at)),
            )
        user = self.user_by_name(name)
        assert user is not None
        return user

    def user_by_name(self, name: str) -> User | None:
        rows = self._read(
            "read a user", f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,)
        )
        return _user_from_row(rows[0]) if rows else None

    def user_by_id(self, user_id: int) -> User | None:
        rows = self._read(
            "read a user", f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)
        )
        return _user_from_row(rows[0]) if rows else None

    def users(self) -> list[User]:
        rows = self._read("read users", f"SELECT {_USER_COLUMNS} FROM users ORDER BY name", ())
        return [_user_from_row(r) for r in rows]

    def count_managers(self) -> int:
        rows = self._read(
            "count managers",
            "SELECT count(*) FROM users WHERE role = 'manager' AND disabled = 0",
            (),
        )
        return int(rows[0][0])

    def set_user_disabled(self, user_id: int, disabled: bool) -> None:
        with self._write("update the user") as conn:
            conn.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), user_id))

    def end_sessions(self, user_id: int) -> None:
        """Invalidate every session of this user (logout, everywhere)."""
        with self._write("end the user's sessions") as conn:
            conn.execute(
                "UPDATE users SET session_epoch = session_epoch + 1 WHERE id = ?", (user_id,)
            )

    def set_password(self, user_id: int, password_hash: str, *, at: datetime) -> None:
        with self._write("change the password") as conn:
            conn.execute(
                "UPDATE users SET password_hash = ?, password_changed_at_utc = ? WHERE id = ?",
                (password_hash, _to_text(at), user_id),
            )

    def note_login_failure(self, key: str, *, at: datetime) -> int:
        """Count one more failed login for ``key``; returns the count so far."""
        with self._write("count a failed login") as conn:
            conn.execute(
                "INSERT INTO login_failures (key, failures, last_at_utc) VALUES (?, 1, ?) "
                "ON CONFLICT (key) DO UPDATE SET failures = failures + 1, "
                "last_at_utc = excluded.last_at_utc",
                (key, _to_text(at)),
            )
            (count,) = conn.execute(
                "SELECT failures FROM login_failures WHERE key = ?", (key,)
            ).fetchone()
        return int(count)

    def login_failures(self, key: str) -> tuple[int, datetime | None]:
        """Failed logins for ``key`` since the last success, and when the last one was."""
        rows = self._read(
            "read failed logins",
            "SELECT failures, last_at_utc FROM login_failures WHERE key = ?",
            (key,),
        )
        if not rows:
            return 0, None
        return int(rows[0][0]), _from_text(rows[0][1])

    def clear_login_failures(self, key: str) -> None:
        with self._write("clear failed logins") as conn:
            conn.execute("DELETE FROM login_failures WHERE key = ?", (key,))

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
        """Record who did what (exports, settings, users, denylist); the new row's id.

        The id is for :meth:`update_audit`: a long export is audited when it
        starts, so that a process killed midway still leaves its row.
        """
        with self._write("write the audit log") as conn:
            cursor = conn.execute(
                "INSERT INTO audit (at_utc, actor, action, detail, row_count) "
                "VALUES (?, ?, ?, ?, ?)",
                (_to_text(at), actor, action, json.dumps(detail, ensure_ascii=False), row_count),
            )
            return int(cursor.lastrowid or 0)

    def update_audit(self, audit_id: int, *, detail: dict[str, Any], row_count: int | None) -> None:
        """Replace the detail and row count of the audit row ``audit_id`` (its actor,
        action and time stay): how an export audited at its start ends.

        Raises StoreError if there is no such row.
        """
        with self._write("update the audit log") as conn:
            cursor = conn.execute(
                "UPDATE audit SET detail = ?, row_count = ? WHERE id = ?",
                (json.dumps(detail, ensure_ascii=False), row_count, audit_id),
            )
            if cursor.rowcount != 1:
                raise StoreError(f"could not update the audit log: no entry {audit_id}")

    def audit_entries(self, *, limit: int = 200) -> list[AuditEntry]:
        rows = self._read(
            "read the audit log",
            "SELECT id, at_utc, actor, action, detail, row_count FROM audit "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            AuditEntry(int(r[0]), _from_text(r[1]), r[2], r[3], json.loads(r[4]), r[5])
            for r in rows
        ]

    # ----------------------------------------------------------------- site settings

    def site_settings(self) -> dict[str, Any]:
        """Settings changed on the web, by name (``"gate.mode"``); they override the file."""
        rows = self._read("read site settings", "SELECT name, value_json FROM site_settings", ())
        return {str(name): json.loads(value) for name, value in rows}

    def save_site_settings(self, values: dict[str, Any], *, by: str, at: datetime) -> int:
        """Store changed settings and bump the version the kiosk polls; returns it."""
        with self._write("save site settings") as conn:
            for name, value in values.items():
                conn.execute(
                    "INSERT INTO site_settings (name, value_json, updated_at_utc, updated_by) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                    "value_json = excluded.value_json, updated_at_utc = excluded.updated_at_utc, "
                    "updated_by = excluded.updated_by",
                    (name, json.dumps(value), _to_text(at), by),
                )
            conn.execute("UPDATE settings_meta SET version = version + 1 WHERE id = 1")
            (version,) = conn.execute("SELECT version FROM settings_meta WHERE id = 1").fetchone()
        return int(version)

    # ----------------------------------------------------------------- admissions by hand

    def request_admit(
        self, *, actor: str, reason: str, display_name: str | None, at: datetime
    ) -> int:
        """A guard's "admit once" from the web; the kiosk carries it out."""
        with self._write("request an admission") as conn:
            cursor = conn.execute(
                "INSERT INTO admit_requests (requested_at_utc, actor, reason, display_name) "
                "VALUES (?, ?, ?, ?)",
                (_to_text(at), actor, reason, display_name),
            )
            return int(cursor.lastrowid or 0)

    def pending_admits(self, *, now: datetime, max_age_s: float) -> list[AdmitRequest]:
        """Requests to carry out now; older ones are marked expired (the visitor left)."""
        cutoff = _to_text(now - timedelta(seconds=max_age_s))
        with self._write("read admission requests") as conn:
            conn.execute(
                "UPDATE admit_requests SET status = 'expired', handled_at_utc = ? "
                "WHERE status = 'pending' AND requested_at_utc < ?",
                (_to_text(now), cutoff),
            )
            rows = conn.execute(
                "SELECT id, requested_at_utc, actor, reason, display_name, status "
                "FROM admit_requests WHERE status = 'pending' ORDER BY id"
            ).fetchall()
        return [AdmitRequest(int(r[0]), _from_text(r[1]), r[2], r[3], r[4], r[5]) for r in rows]

    def admit_request(self, request_id: int) -> AdmitRequest | None:
        rows = self._read(
            "read an admission request",
            "SELECT id, requested_at_utc, actor, reason, display_name, status "
            "FROM admit_requests WHERE id = ?",
            (request_id,),
        )
        return AdmitRequest(int(rows[0][0]), _from_text(rows[0][1]), *rows[0][2:]) if rows else None

    def record_admit(self, request: AdmitRequest, event: NewEvent) -> Event:
        """Record the manual entry and mark the request done, in one transaction."""
        with self._write("record the admission") as conn:
            recorded = self._insert(conn, event)
            conn.execute(
                "UPDATE admit_requests SET status = 'done', handled_at_utc = ?, event_id = ? "
                "WHERE id = ?",
                (_to_text(recorded.at), recorded.id, request.id),
            )
        return recorded

    # ----------------------------------------------------------------- the site's own codes

    def save_site_code(self, code: SiteCode) -> None:
        """Keep a declaration or staff pass the site issued (for revocation and
        the managers' lists); the code itself carries what the gate needs."""
        with self._write("save the issued code") as conn:
            conn.execute(
                "INSERT INTO site_codes (id, kind, issued_at_utc, valid_from_utc, "
                "expires_at_utc, name, phone, organisation, answers_json, verdict, issued_by, "
                "text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    code.id,
                    code.kind,
                    _to_text(code.issued_at),
                    _to_text(code.valid_from),
                    _to_text(code.expires_at),
                    code.name,
                    code.phone,
                    code.organisation,
                    json.dumps(code.answers, ensure_ascii=False),
                    code.verdict,
                    code.issued_by,
                    code.text,
                ),
            )

    def site_code(self, code_id: str) -> SiteCode | None:
        rows = self._read(
            "read an issued code",
            f"SELECT {_SITE_CODE_COLUMNS} FROM site_codes WHERE id = ?",
            (code_id,),
        )
        return _site_code_from_row(rows[0]) if rows else None

    def site_codes(
        self, kind: str, *, now: datetime, include_expired: bool = False
    ) -> list[SiteCode]:
        """Issued codes of one kind, newest first; by default only unexpired ones."""
        rows = self._read(
            "read issued codes",
            f"SELECT {_SITE_CODE_COLUMNS} FROM site_codes WHERE kind = ? "
            "AND (? OR expires_at_utc > ?) ORDER BY issued_at_utc DESC",
            (kind, int(include_expired), _to_text(now)),
        )
        return [_site_code_from_row(r) for r in rows]

    def is_revoked(self, code_id: str) -> bool:
        """Whether a manager revoked this declaration or pass (the gate asks per scan)."""
        rows = self._read(
            "check a revocation",
            "SELECT 1 FROM site_codes WHERE id = ? AND revoked_at_utc IS NOT NULL",
            (code_id,),
        )
        return bool(rows)

    def revoke_site_code(self, code_id: str, *, by: str, at: datetime) -> bool:
        """Revoke; False if there is no such code or it was revoked already."""
        with self._write("revoke the code") as conn:
            cursor = conn.execute(
                "UPDATE site_codes SET revoked_at_utc = ?, revoked_by = ? "
                "WHERE id = ? AND revoked_at_utc IS NULL",
                (_to_text(at), by, code_id),
            )
            return cursor.rowcount > 0

    def purge_site_codes_before(self, cutoff: datetime) -> int:
        """Delete issued codes that expired before ``cutoff`` (retention)."""
        with self._write("purge old issued codes") as conn:
            cursor = conn.execute(
                "DELETE FROM site_codes WHERE expires_at_utc < ?", (_to_text(cutoff),)
            )
            return cursor.rowcount

    # ----------------------------------------------------------------- plumbing

    def _read(self, action: str, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """Run one query and fetch all rows; one statement is one consistent snapshot."""
        if self._concurrent_reads:
            with _store_errors(action, self.path):
                return self._reader().execute(sql, params).fetchall()
        with self._lock, _store_errors(action, self.path):
            return self._conn.execute(sql, params).fetchall()

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection, opened on first use (sqlite3.Error
        propagates, for _store_errors to describe)."""
        conn: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,  # so that close() may close it from any thread
            timeout=self._busy_timeout_ms / 1000,
        )
        try:
            conn.execute("PRAGMA query_only = ON")
            _add_functions(conn)
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self._reader_conns.append(conn)
        self._readers.conn = conn
        return conn

    @contextlib.contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction: lock, BEGIN IMMEDIATE, COMMIT, or ROLLBACK on any error."""
        with self._lock, _store_errors(action, self.path):
            if self._reopen_when_writable:
                self._reopen_for_writing()
            with _immediate_transaction(self._conn):
                yield self._conn

    def _reopen_for_writing(self) -> None:
        """Replace the read-only connection SQLite gave at open with a
        read-write one once the file can be written, so the store works again
        without a restart (which would lose what the kiosk keeps waiting)."""
        if _read_only_file(self.path):
            return
        (timeout_ms,) = self._conn.execute("PRAGMA busy_timeout").fetchone()
        # Closed first: SQLite shares one mapping of the -shm file among a
        # process's connections, and the read-only one would be reused.
        self._conn.close()
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=timeout_ms / 1000
        )
        self._conn = conn
        self._db = Database(conn, execute_plugins=False)
        _add_functions(conn)
        _configure(conn, busy_timeout_ms=int(timeout_ms))  # if it fails, the next write retries
        self._reopen_when_writable = False
        log.info("the database file is writable again: reopened for writing")

    def check_writable(self) -> None:
        """Prove that the database takes a durable write now, or raise StoreError.

        The kiosk asks this while it shows a store fault, to clear the fault
        as soon as the database works again. A real page is rewritten and
        committed (the settings counter, to its own value: nothing changes and
        no kiosk reloads), so a lock, a full disk and a read-only file all
        fail it as they would fail an event. One page can still fit on a disk
        that has no room for an event (its table and index pages), so less
        than :data:`CHECK_MIN_FREE_BYTES` free counts as full too.
        """
        free = _free_bytes(self.path)
        if free is not None and free < CHECK_MIN_FREE_BYTES:
            raise StoreError(
                f"could not write to the database: disk full: {free // 1024} KiB free, "
                f"less than the {CHECK_MIN_FREE_BYTES // 1024} KiB the kiosk waits for"
            )
        with self._write("write to the database") as conn:
            conn.execute("UPDATE settings_meta SET version = version WHERE id = 1")

    # ----------------------------------------------------------------- the log's reason filter
    # (added with the log area of the admin web)

    def event_reasons(self) -> list[str]:
        """The reason codes present in the log, sorted: what the log's reason filter offers.

        Answered from the (decision, reason) index, without reading event rows.
        """
        rows = self._read("list reasons", "SELECT DISTINCT reason FROM events ORDER BY reason", ())
        return [str(row[0]) for row in rows]

    # ----------------------------------------------------------------- trusted certificates
    # (HC1: signing certificates; every change bumps the settings version so
    # the running kiosk reloads its trust list)

    def add_trusted_certificates(
        self, certificates: list[TrustedRow], *, by: str, at: datetime
    ) -> int:
        """Add certificates (``id``, ``added_*`` of the rows are ignored);
        returns how many were new. One transaction; the kiosk reloads."""
        added = 0
        with self._write("add trusted certificates") as conn:
            for cert in certificates:
                cursor = conn.execute(
                    "INSERT INTO trusted_certificates (kid, country, subject, not_before_utc, "
                    "not_after_utc, der, added_at_utc, added_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (der) DO NOTHING",
                    (
                        cert.kid,
                        cert.country,
                        cert.subject,
                        _to_text(cert.not_before),
                        _to_text(cert.not_after),
                        cert.der,
                        _to_text(at),
                        by,
                    ),
                )
                added += cursor.rowcount
            if added:
                conn.execute("UPDATE settings_meta SET version = version + 1 WHERE id = 1")
        return added

    def trusted_certificates(self) -> list[TrustedRow]:
        """Every trusted certificate, by country then key id."""
        rows = self._read(
            "read trusted certificates",
            "SELECT id, kid, country, subject, not_before_utc, not_after_utc, der, "
            "added_at_utc, added_by FROM trusted_certificates ORDER BY country, kid, id",
            (),
        )
        return [
            TrustedRow(
                id=int(r[0]),
                kid=bytes(r[1]),
                country=r[2],
                subject=r[3],
                not_before=_from_text(r[4]),
                not_after=_from_text(r[5]),
                der=bytes(r[6]),
                added_at=_from_text(r[7]),
                added_by=r[8],
            )
            for r in rows
        ]

    def remove_trusted_certificates(self, kid: bytes) -> int:
        """Remove every trusted certificate with key id ``kid``; returns how many."""
        with self._write("remove trusted certificates") as conn:
            cursor = conn.execute("DELETE FROM trusted_certificates WHERE kid = ?", (kid,))
            if cursor.rowcount:
                conn.execute("UPDATE settings_meta SET version = version + 1 WHERE id = 1")
            return cursor.rowcount

    # ----------------------------------------------------------------- the CSV export's rows
    # (added with the export benchmark: kiosk.export.write_store_csv)

    def iter_export_lines(
        self,
        where: EventFilter,
        *,
        unusable: Callable[[list[str | None]], list[int]],
        local_offset_min: int | None,
        local_span: tuple[str, str] = ("0000", "9999"),
        batch: int = 2000,
    ) -> Iterator[tuple[str | Event, ...]]:
        """Every matching event, oldest first, as one line of text formatted by SQLite.

        The fast path of the CSV export (:func:`kiosk.export.write_store_csv`):
        one Python string per event instead of an :class:`Event`. A line is
        the export's eighteen cells joined by U+001F (unit separator), in the
        order of ``kiosk.export.EXPORT_COLUMNS``:

        * local time ``YYYY-MM-DD HH:MM:SS``: the UTC time (fraction dropped)
          shifted by ``local_offset_min`` minutes, for events with
          ``local_span[0] <= at_utc < local_span[1]`` (UTC text; by default
          every event); empty outside that span or when ``local_offset_min``
          is None;
        * UTC time as stored (``YYYY-MM-DDTHH:MM:SS.ffffffZ``);
        * text as stored (NULL as empty), ``override`` and ``clock_synced`` as
          ``TRUE``/``FALSE``, ``seq`` as digits.

        A line is None where a free-text cell holds a NUL character, which
        SQLite's printf() would cut short.

        Lines come in tuples of up to ``batch``. ``unusable(lines)`` gives the
        positions in such a list of the lines the caller cannot use as they
        are (say, a cell that needs neutralising, or no local time); each is
        replaced by its :class:`Event`, read in the same snapshot. Streams
        like :meth:`iter_events`: a read-only connection of its own, one
        snapshot for the whole export.
        """
        sql, params = where.sql()
        local = "''"
        span_params: tuple[str, ...] = ()
        if local_offset_min is not None:
            span_params = local_span
            shift = f"'{int(local_offset_min):+d} minutes'"  # an int: safe in the SQL text
            local = (
                "CASE WHEN at_utc >= ? AND at_utc < ? "
                f"THEN datetime(substr(at_utc, 1, 19), {shift}) ELSE '' END"
            )
        cells = (
            *(local, "at_utc", "gate_id", "direction", "decision", "reason", "kind"),
            *("display_name", "masked_id", "id_number"),
            "CASE WHEN override THEN 'TRUE' ELSE 'FALSE' END",
            "warning",
            "CASE WHEN clock_synced THEN 'TRUE' ELSE 'FALSE' END",
            *("boot_id", "seq", "id"),
            *("birth_date", "name_latin"),  # HC1: identity, NULL (empty) for other kinds
        )
        free_text = (
            *("gate_id", "reason", "kind", "display_name", "masked_id", "id_number"),
            *("warning", "birth_date", "name_latin"),
        )
        has_nul = " OR ".join(f"instr({c}, char(0))" for c in free_text)
        # printf builds the line in one allocation (|| would copy it per cell); %s of NULL is "".
        line = f"printf('{chr(0x1F).join(['%s'] * len(cells))}', {', '.join(cells)})"
        query = (
            f"SELECT CASE WHEN {has_nul} THEN NULL ELSE {line} END, rowid FROM events "
            f"WHERE {sql} ORDER BY {LOG_ORDER}"
        )
        with _store_errors("export events"):
            conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
            )
        try:
            _add_functions(conn)
            with _store_errors("export events"):
                conn.execute("BEGIN")  # one read snapshot for the whole export
                cursor = conn.execute(query, (*span_params, *params))
                while rows := cursor.fetchmany(batch):
                    texts = [row[0] for row in rows]
                    lines: list[str | Event] = list(texts)
                    for i in unusable(texts):
                        found = conn.execute(
                            f"SELECT {_EVENT_COLUMNS} FROM events WHERE rowid = ?", (rows[i][1],)
                        )
                        lines[i] = _event_from_row(found.fetchone())
                    yield tuple(lines)
        finally:
            conn.close()


# --------------------------------------------------------------------------- helpers


def current_boot_id() -> str:
    """The kernel's id of this boot, so ``seq`` restarts at 1 after a reboot only.

    Where there is none (not Linux), a random id stands in for this process's
    lifetime; sequences then restart with each process, which is logged once.
    """
    try:
        text = BOOT_ID_PATH.read_text(encoding="ascii").strip()
    except OSError:
        text = ""
    return text or _fallback_boot_id()


@functools.cache
def _fallback_boot_id() -> str:
    boot_id = uuid.uuid4().hex
    log.warning("no kernel boot id at %s; using a random one for this process", BOOT_ID_PATH)
    return boot_id


def _configure(conn: sqlite3.Connection, *, busy_timeout_ms: int) -> None:
    """Set the pragmas every connection needs before it touches data."""
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if str(mode).lower() != "wal":
        # Two processes share the file; without WAL, readers block the writer.
        raise sqlite3.OperationalError(f"journal mode is {mode!r}, WAL is required")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")


def _migrate(db: Database) -> None:
    """Apply pending migrations in order, each in its own write transaction.

    Checking first with a plain read lets a fully migrated file open without
    taking the write lock; the check is repeated under the lock because the
    other process may be migrating the same file at the same moment.
    """
    applied = _applied(db)
    for name, apply in MIGRATIONS:
        if name in applied:
            continue
        with _immediate_transaction(db.conn):
            if not db.table("migrations").exists():
                db.table("migrations").create(
                    {"name": str, "applied_at": str}, pk="name", not_null=["applied_at"]
                )
            if name in _applied(db):
                continue
            log.info("applying database migration %s", name)
            apply(db)
            # The database's own clock: migrations are metadata, not events.
            db.execute(
                "INSERT INTO migrations (name, applied_at) "
                "VALUES (?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                (name,),
            )


def _applied(db: Database) -> set[str]:
    if not db.table("migrations").exists():
        return set()
    return {str(row[0]) for row in db.execute("SELECT name FROM migrations").fetchall()}


@contextlib.contextmanager
def _immediate_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back if anything (commit included) fails."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            # If the rollback fails too, the original error is the one to report;
            # SQLite rolls back an open transaction when the connection closes.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def _store_errors(action: str, path: Path | None = None) -> Iterator[None]:
    """Turn SQLite's errors into StoreError at this module's boundary."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"could not {action}: {_describe(exc, path)}") from exc


# The causes a gate meets in the field, by SQLite's primary result code (the
# low byte of an extended code), said so that whoever reads the log knows what
# to fix. SQLite's own words and the code's name follow in parentheses.
_CAUSES = {
    sqlite3.SQLITE_BUSY: "the database is locked by another process",
    sqlite3.SQLITE_LOCKED: "the database is locked by another connection",
    sqlite3.SQLITE_FULL: "disk full: no space left for the database",
    sqlite3.SQLITE_READONLY: "the database file is read-only",
    sqlite3.SQLITE_IOERR: "disk I/O error: the storage failed or became read-only",
    sqlite3.SQLITE_CORRUPT: "the database file is corrupt",
    sqlite3.SQLITE_NOTADB: "the database file is corrupt (not a database)",
    sqlite3.SQLITE_CANTOPEN: "cannot open the database file",
    sqlite3.SQLITE_PERM: "permission denied on the database file",
}

_FILE_SYSTEM_CAUSES = (
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PERM,
)


def _describe(exc: sqlite3.Error, path: Path | None = None) -> str:
    """The cause in plain words, then SQLite's message and error name.

    With the database's ``path``, a full disk also says how much space is
    left and a file-system error says whether the file system is mounted
    read-only (an SD card the kernel remounted read-only after errors shows
    as a disk I/O error on a connection that was open). Never bound values,
    so no personal data.
    """
    name = getattr(exc, "sqlite_errorname", None)
    code = getattr(exc, "sqlite_errorcode", None)
    detail = f"{exc}; {name}" if name else str(exc)
    cause = _CAUSES.get(code & 0xFF) if code is not None else None
    if cause is None:
        return f"{exc} ({name})" if name else str(exc)
    if path is not None and code is not None:
        cause += _file_system_state(path, code & 0xFF)
    return f"{cause} ({detail})"


def _free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged process may still write on ``path``'s file system."""
    try:
        stats = os.statvfs(path.parent)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def _read_only_file(path: Path) -> bool:
    """Whether ``path`` or the file system holding it cannot be written now."""
    try:
        read_only_fs = bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False
    return read_only_fs or not os.access(path, os.W_OK)


def _file_system_state(path: Path, primary_code: int) -> str:
    """What the file system holding ``path`` says about a full disk or a
    file-system error, as a clause to append; empty when it cannot tell."""
    if primary_code != sqlite3.SQLITE_FULL and primary_code not in _FILE_SYSTEM_CAUSES:
        return ""
    try:
        stats = os.statvfs(path if path.is_dir() else path.parent)
    except OSError:
        return ""
    if primary_code == sqlite3.SQLITE_FULL:
        return f", {stats.f_bavail * stats.f_frsize // 1024} KiB free"
    if stats.f_flag & os.ST_RDONLY:
        return "; its file system is mounted read-only"
    return ""


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def _to_text(value: datetime) -> str:
    """A datetime as fixed-width UTC text, so text order is time order."""
    _require_aware(value, "datetime")
    return value.astimezone(UTC).strftime(_TIME_FORMAT)


def _from_text(text: str) -> datetime:
    # fromisoformat reads the fixed-width "...Z" form ~60x faster than strptime,
    # which matters when a million rows are exported.
    return datetime.fromisoformat(text)


def _expiry_cutoff(now: datetime, expiry_h: float) -> str:
    return _to_text(now - timedelta(hours=expiry_h))


def _event_from_row(row: tuple[Any, ...]) -> Event:
    (
        event_id,
        boot_id,
        seq,
        gate_id,
        at_utc,
        utc_offset_min,
        clock_synced,
        direction,
        decision,
        reason,
        kind,
        subject_hash,
        display_name,
        masked_id,
        id_number,
        override,
        warning,
        actor,
        note,
        birth_date,
        name_latin,
    ) = row
    return Event(
        id=event_id,
        boot_id=boot_id,
        seq=int(seq),
        gate_id=gate_id,
        at=_from_text(at_utc),
        utc_offset_min=int(utc_offset_min),
        clock_synced=bool(clock_synced),
        direction=direction,
        decision=decision,
        reason=reason,
        kind=kind,
        subject_hash=subject_hash,
        display_name=display_name,
        masked_id=masked_id,
        id_number=id_number,
        override=bool(override),
        warning=warning,
        actor=actor,
        note=note,
        birth_date=birth_date,
        name_latin=name_latin,
    )


_USER_COLUMNS = (
    "id, name, role, password_hash, disabled, created_at_utc, password_changed_at_utc, "
    "session_epoch"
)


def _user_from_row(row: tuple[Any, ...]) -> User:
    return User(
        id=int(row[0]),
        name=row[1],
        role=row[2],
        password_hash=row[3],
        disabled=bool(row[4]),
        created_at=_from_text(row[5]),
        password_changed_at=_from_text(row[6]),
        session_epoch=int(row[7]),
    )


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _add_functions(conn: sqlite3.Connection) -> None:
    """SQL functions the queries use: ``fold`` (see :func:`search_fold`)."""
    conn.create_function("fold", 1, search_fold, deterministic=True)


_SITE_CODE_COLUMNS = (
    "id, kind, issued_at_utc, valid_from_utc, expires_at_utc, name, phone, organisation, "
    "answers_json, verdict, issued_by, revoked_at_utc, revoked_by, text"
)


def _site_code_from_row(row: tuple[Any, ...]) -> SiteCode:
    return SiteCode(
        id=row[0],
        kind=row[1],
        issued_at=_from_text(row[2]),
        valid_from=_from_text(row[3]),
        expires_at=_from_text(row[4]),
        name=row[5],
        phone=row[6],
        organisation=row[7],
        answers=json.loads(row[8]),
        verdict=row[9],
        issued_by=row[10],
        revoked_at=_from_text(row[11]) if row[11] else None,
        revoked_by=row[12],
        text=row[13],
    )


# --------------------------------------------------------------------------- the kiosk's store

OPEN_RETRY_S = 1.0
"""While the database cannot be opened, how long (seconds) a
:class:`ReopeningStore` waits after one try before it tries again; calls in
between fail at once with the last cause, without touching the file."""


class ReopeningStore(Store):
    """The kiosk's store, which starts even when the database cannot be opened.

    A kiosk that exits because its database will not open (the SD card's file
    system mounted read-only after a power cut, a disk too full to migrate, a
    lock held for long) is restarted by systemd in a loop, and its override
    button is dead all the while. This one keeps the cause instead: every
    call first tries :meth:`Store.open` again (at most every
    :data:`OPEN_RETRY_S` after the last try ended, on ``monotonic``, in
    seconds) and, while that fails, raises StoreError with the cause, so the
    scanner fails secure as for any store fault; once the open succeeds,
    every call goes to the opened store and the gate works normally, without
    a restart.

    Every query of :class:`Store` goes through ``_read`` and ``_write``, so
    overriding those two reaches all of them; only the exports
    (:meth:`~Store.iter_events`, :meth:`~Store.iter_export_lines`, the web's)
    read through a connection of their own on the same path.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        monotonic: Callable[[], float],
        boot_id: str | None = None,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        """Tries to open the database now; never raises StoreError (see
        :attr:`open_error`)."""
        self.path = Path(path)
        self.boot_id = boot_id if boot_id is not None else current_boot_id()
        self._lock = threading.RLock()
        self._closed = False
        self._busy_timeout_ms = busy_timeout_ms
        self._monotonic = monotonic
        self._opened: Store | None = None
        self._open_error: StoreError | None = None
        self._first_try_mono = monotonic()
        self._last_try_mono = self._first_try_mono
        self._tries = 0
        with contextlib.suppress(StoreError):
            self._try_open()

    @property
    def open_error(self) -> StoreError | None:
        """Why the database could not be opened at the last try; None once open."""
        return self._open_error

    def _try_open(self) -> Store:
        self._tries += 1
        try:
            store = Store.open(
                self.path, boot_id=self.boot_id, busy_timeout_ms=self._busy_timeout_ms
            )
        except StoreError as exc:
            self._open_error = exc
            log.debug("the database still cannot be opened: %s", exc)
            raise
        finally:
            # From the end of the try: a lock makes each try wait out the busy
            # timeout, and the loop must get on between tries.
            self._last_try_mono = self._monotonic()
        self._opened, self._open_error = store, None
        if self._tries > 1:
            log.info(
                "the database opened after %.1f s (%d tries)",
                self._last_try_mono - self._first_try_mono,
                self._tries,
            )
        return store

    def _store(self) -> Store:
        """The opened store, opening it if a try is due; else StoreError with the cause."""
        with self._lock:
            if self._closed:
                raise StoreError("the database is closed")
            if self._opened is not None:
                return self._opened
            if self._monotonic() - self._last_try_mono < OPEN_RETRY_S:
                assert self._open_error is not None
                raise StoreError(str(self._open_error))
            return self._try_open()

    @property
    def _conn(self) -> sqlite3.Connection:
        """The opened store's connection (benchmarks and tests look at it);
        StoreError while the database cannot be opened."""
        return self._store()._conn

    @_conn.setter
    def _conn(self, conn: sqlite3.Connection) -> None:
        self._store()._conn = conn

    def _read(self, action: str, sql: str, params: tuple[Any, ...]) -> list[Any]:
        return self._store()._read(action, sql, params)

    @contextlib.contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._store()._write(action) as conn:
            yield conn

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._opened is not None:
                self._opened.close()
