"""The schema, as ordered and recorded migrations: append only.

Each migration runs once per database file, in its own write transaction,
and its name is recorded in the ``migrations`` table; a file made by any
earlier release upgrades by running the ones it lacks. A migration, once
released, is never edited, renamed or reordered.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

from kiosk.store.connection import immediate_transaction
from kiosk.store.migrations_site import (
    m0010_outbox,
    m0011_site_documents,
    m0012_site_presence,
    m0013_site_gates,
    m0014_province_outbox,
    m0015_self_assessment,
    m0016_province_subject_hash,
)

if TYPE_CHECKING:
    # sqlite-utils imports numpy whenever numpy is installed (about 0.1 s and
    # 20 MB): loaded only when a migration is pending, not by every command.
    from sqlite_utils import Database

log = logging.getLogger(__name__)


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


def _m0009_throttle(db: Database) -> None:
    """One throttle for failed logins and declarations: a count per key, since
    its first hit, updated by one UPSERT per hit.

    Replaces ``login_failures``, where the declaration page kept its count and
    its window's start under two keys. Counts in progress carry over.
    """
    db.execute(
        """
        CREATE TABLE throttle (
            key           TEXT PRIMARY KEY NOT NULL,
            hits          INTEGER NOT NULL CHECK (hits >= 1),
            first_at_utc  TEXT NOT NULL,
            last_at_utc   TEXT NOT NULL
        )
        """
    )
    db.execute(
        "INSERT INTO throttle (key, hits, first_at_utc, last_at_utc) "
        "SELECT key, failures, last_at_utc, last_at_utc FROM login_failures "
        "WHERE key LIKE 'user:%' OR key LIKE 'ip:%'"
    )
    db.execute(
        "INSERT INTO throttle (key, hits, first_at_utc, last_at_utc) "
        "SELECT n.key, n.failures, since.last_at_utc, n.last_at_utc "
        "FROM login_failures AS n JOIN login_failures AS since "
        "ON since.key = 'declare-since:' || substr(n.key, length('declare:') + 1) "
        "WHERE n.key LIKE 'declare:%'"
    )
    db.execute("DROP TABLE login_failures")


Migration = tuple[str, Callable[["Database"], None]]

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
    ("0009_throttle", _m0009_throttle),
    ("0010_outbox", m0010_outbox),
    ("0011_site_documents", m0011_site_documents),
    ("0012_site_presence", m0012_site_presence),
    ("0013_site_gates", m0013_site_gates),
    ("0014_province_outbox", m0014_province_outbox),
    ("0015_self_assessment", m0015_self_assessment),
    ("0016_province_subject_hash", m0016_province_subject_hash),
)


def migrate(conn: sqlite3.Connection) -> None:
    """Apply pending migrations in order, each in its own write transaction.

    Checking first with a plain read lets a fully migrated file open without
    taking the write lock (or loading sqlite-utils); the check is repeated
    under the lock because the other process may be migrating the same file
    at the same moment.
    """
    if not _pending(conn):
        return
    from sqlite_utils import Database

    db = Database(conn, execute_plugins=False)
    applied = _applied(db)
    for name, apply in MIGRATIONS:
        if name in applied:
            continue
        with immediate_transaction(db.conn):
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


def _pending(conn: sqlite3.Connection) -> bool:
    """Whether any migration is still to apply, by one plain read."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'migrations'"
    ).fetchone()
    if exists is None:
        return True
    applied = {str(row[0]) for row in conn.execute("SELECT name FROM migrations")}
    return any(name not in applied for name, _ in MIGRATIONS)


def _applied(db: Database) -> set[str]:
    if not db.table("migrations").exists():
        return set()
    return {str(row[0]) for row in db.execute("SELECT name FROM migrations").fetchall()}
