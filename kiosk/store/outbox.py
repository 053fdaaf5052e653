"""The outbox: a gate's events on their way to the site's hub, and their arrival there.

A database is the durable queue at every hop, never the broker. At the gate
the kiosk writes each event with ``upload_pending = 1`` in the event's own
INSERT (:class:`~kiosk.store.events.EventRepository` with ``outbox=True``);
``gatekiosk sync`` reads the pending rows in log order (:meth:`Outbox.pending`)
and clears the mark only when the hub has acknowledged them
(:meth:`Outbox.mark_uploaded`). Purging never deletes a pending row.

At the hub, :meth:`SiteLog.ingest` inserts a gate's batch into the site
database idempotently, keyed by the event id and by (boot, seq), in one
transaction: a batch sent twice (a lost acknowledgement, a resync) changes
nothing the second time.

Example (at the gate)::

    outbox = Outbox(store.connection)
    batch = outbox.pending(limit=500)
    ...publish, wait for the hub's acknowledgement...
    outbox.mark_uploaded([event.id for event in batch.events])
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from kiosk.store.connection import Connection
from kiosk.store.events import (
    EVENT_COLUMNS,
    INSERT_COLUMNS,
    INSERT_PLACES,
    event_from_row,
    insert_values,
)
from kiosk.store.values import Event, to_text

log = logging.getLogger(__name__)

LogPosition = tuple[int, int]
"""Where an event sits in the gate's log: (boot ordinal, seq); later is larger."""

RESYNC_ROWS_PER_TRANSACTION = 2000

# SQLite's smallest default limit of bound parameters is 999 (before 3.32).
_IDS_PER_STATEMENT = 500


@dataclass(frozen=True)
class PendingBatch:
    """Pending events, oldest first, and their positions in the log.

    Pass a position (``last``, or that of the last event sent) as ``after``
    to read the next batch without the ones already in flight.
    """

    events: tuple[Event, ...]
    positions: tuple[LogPosition, ...]

    @property
    def last(self) -> LogPosition | None:
        """The position of the last event; None when there is none."""
        return self.positions[-1] if self.positions else None


class Outbox:
    """The gate's side: pending events, marking them uploaded, the backlog."""

    def __init__(self, db: Connection) -> None:
        self._db = db

    def pending(self, *, limit: int, after: LogPosition | None = None) -> PendingBatch:
        """Up to ``limit`` pending events after ``after`` (all if None), in log order.

        Reads the partial index of pending rows only, so its cost does not
        grow with the uploaded history.
        """
        start = after if after is not None else (-1, -1)
        rows = self._db.read(
            "read the events to upload",
            f"SELECT boot_ordinal, {EVENT_COLUMNS} FROM events "
            "WHERE upload_pending = 1 AND (boot_ordinal, seq) > (?, ?) "
            "ORDER BY boot_ordinal, seq LIMIT ?",
            (start[0], start[1], limit),
        )
        events = tuple(event_from_row(tuple(row[1:])) for row in rows)
        positions = tuple((int(row[0]), event.seq) for row, event in zip(rows, events, strict=True))
        return PendingBatch(events=events, positions=positions)

    def mark_uploaded(self, event_ids: Iterable[str]) -> int:
        """Clear the pending mark of these events, in one transaction; how many changed.

        Ids unknown here or already uploaded are ignored (a repeated
        acknowledgement).
        """
        ids = list(event_ids)
        changed = 0
        with self._db.write("mark events uploaded") as conn:
            for chunk in _chunks(ids):
                cursor = conn.execute(
                    "UPDATE events SET upload_pending = 0 WHERE upload_pending = 1 "
                    f"AND id IN ({_marks(chunk)})",
                    tuple(chunk),
                )
                changed += cursor.rowcount
        return changed

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database now, without waiting for anyone.

        The uploader calls this after marking events, so that the WAL its
        marks fill is emptied by its own process, not by the kiosk's next
        commit (SQLite's automatic checkpoint runs in whichever connection
        commits past the threshold, inside the kiosk's decision time).
        """
        self._db.read("checkpoint the log", "PRAGMA wal_checkpoint(PASSIVE)", ())

    def mark_pending_since(self, since: datetime) -> int:
        """Mark every event at or after ``since`` for upload again; how many changed.

        For a hub rebuilt after losing its disk (``gatekiosk hub resync``):
        the hub's idempotent insert makes sending an event twice harmless.
        In transactions of :data:`RESYNC_ROWS_PER_TRANSACTION` rows: a month
        of events marked at once would hold the write lock for seconds, and
        the kiosk, waiting for it, would refuse visitors (store fault).
        """
        marked = 0
        while True:
            with self._db.write("mark events for upload again") as conn:
                cursor = conn.execute(
                    "UPDATE events SET upload_pending = 1 WHERE rowid IN ("
                    "SELECT rowid FROM events WHERE at_utc >= ? AND upload_pending = 0 LIMIT ?)",
                    (to_text(since), RESYNC_ROWS_PER_TRANSACTION),
                )
            marked += cursor.rowcount
            if cursor.rowcount < RESYNC_ROWS_PER_TRANSACTION:
                return marked

    def count_pending(self) -> int:
        """How many events wait for the hub: the gate's backlog on the dashboard."""
        rows = self._db.read(
            "count the events to upload",
            "SELECT count(*) FROM events WHERE upload_pending = 1",
            (),
        )
        return int(rows[0][0])


@dataclass(frozen=True)
class Ingested:
    """What :meth:`SiteLog.ingest` did with one batch.

    ``stored`` are the ids the site database now holds for this gate (new
    or already there): the hub acknowledges exactly these. ``inserted``
    counts the new ones. ``conflicting`` are ids the database refused
    because another event holds their (boot, seq), or because the id is
    another gate's: never acknowledged, so they stay pending at the gate
    and in sight.
    """

    stored: tuple[str, ...]
    inserted: int
    conflicting: tuple[str, ...]


class SiteLog:
    """The hub's side: every gate's events, inserted once each into the site database."""

    def __init__(self, db: Connection) -> None:
        self._db = db

    def ingest(self, gate_id: str, events: Sequence[Event]) -> Ingested:
        """Insert ``events`` of gate ``gate_id`` idempotently, in one transaction.

        The caller checked that every event is ``gate_id``'s. On return the
        transaction is committed; only then may the hub acknowledge.
        """
        if not events:
            return Ingested(stored=(), inserted=0, conflicting=())
        with self._db.write("store a gate's events") as conn:
            first_seen: dict[str, str] = {}
            for event in events:
                first_seen.setdefault(event.boot_id, to_text(event.at))
            conn.executemany(
                "INSERT OR IGNORE INTO boots (boot_id, first_seen_utc) VALUES (?, ?)",
                list(first_seen.items()),
            )
            before = conn.total_changes
            conn.executemany(
                f"INSERT OR IGNORE INTO events ({INSERT_COLUMNS}) VALUES ({INSERT_PLACES})",
                [insert_values(e) for e in events],
            )
            inserted = conn.total_changes - before
            if inserted:
                _refold_presence(conn, events)
            ids = [e.id for e in events]
            if inserted == len(ids):  # all new: nothing was ignored
                return Ingested(stored=tuple(ids), inserted=inserted, conflicting=())
            present: set[str] = set()
            for chunk in _chunks(ids):
                present.update(
                    row[0]
                    for row in conn.execute(
                        f"SELECT id FROM events WHERE gate_id = ? AND id IN ({_marks(chunk)})",
                        (gate_id, *chunk),
                    )
                )
        stored = tuple(i for i in ids if i in present)
        conflicting = tuple(i for i in ids if i not in present)
        if conflicting:
            log.error(
                "gate %s: %d event(s) refused by the site database (their boot and sequence, "
                "or their id, belong to another event); they stay pending at the gate",
                gate_id,
                len(conflicting),
            )
        return Ingested(stored=stored, inserted=inserted, conflicting=conflicting)

    def event_ids(self, gate_id: str | None = None) -> list[str]:
        """Every event id in the site database (of one gate if given), for accounting."""
        if gate_id is None:
            rows = self._db.read("list event ids", "SELECT id FROM events", ())
        else:
            rows = self._db.read(
                "list event ids", "SELECT id FROM events WHERE gate_id = ?", (gate_id,)
            )
        return [str(row[0]) for row in rows]


def _refold_presence(conn: sqlite3.Connection, events: Sequence[Event]) -> None:
    """The hub's presence after ``events``, whatever order the gates' batches came in.

    ``site_subject_latest`` keeps each subject's latest allowed event in the
    site's order key (time, gate, boot, sequence, id); an event moves it only
    if it comes after, and then presence follows it: inside after an entry,
    not after an exit. So "who is inside" and occupancy on the hub's web are
    site-wide, and the same whatever the arrival order; each event costs one
    primary-key lookup. An event the database refused (its boot and sequence
    belong to another) moves nothing.
    """
    allowed = [e for e in events if e.decision == "allow" and e.subject_hash]
    for event in sorted(allowed, key=lambda e: (to_text(e.at), e.gate_id, e.boot_id, e.seq, e.id)):
        key = (to_text(event.at), event.gate_id, event.boot_id, event.seq, event.id)
        row = conn.execute(
            "SELECT at_utc, gate_id, boot_id, seq, event_id FROM site_subject_latest "
            "WHERE subject_hash = ?",
            (event.subject_hash,),
        ).fetchone()
        if row is not None and tuple(row) >= key:
            continue
        stored = conn.execute(
            "SELECT 1 FROM events WHERE id = ? AND gate_id = ? AND boot_id = ? AND seq = ?",
            (event.id, event.gate_id, event.boot_id, event.seq),
        ).fetchone()
        if stored is None:
            continue
        conn.execute(
            "INSERT INTO site_subject_latest (subject_hash, at_utc, gate_id, boot_id, seq, "
            "event_id) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (subject_hash) DO UPDATE SET "
            "at_utc = excluded.at_utc, gate_id = excluded.gate_id, boot_id = excluded.boot_id, "
            "seq = excluded.seq, event_id = excluded.event_id",
            (event.subject_hash, *key),
        )
        if event.direction != "in":
            conn.execute("DELETE FROM presence WHERE subject_hash = ?", (event.subject_hash,))
            continue
        conn.execute(
            "INSERT INTO presence (subject_hash, display_name, masked_id, entered_at_utc, "
            "event_id, gate_id) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (subject_hash) DO UPDATE SET display_name = excluded.display_name, "
            "masked_id = excluded.masked_id, entered_at_utc = excluded.entered_at_utc, "
            "event_id = excluded.event_id, gate_id = excluded.gate_id",
            (
                event.subject_hash,
                event.display_name,
                event.masked_id,
                key[0],
                event.id,
                event.gate_id,
            ),
        )


def _chunks(ids: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(ids), _IDS_PER_STATEMENT):
        yield ids[start : start + _IDS_PER_STATEMENT]


def _marks(chunk: Sequence[str]) -> str:
    return ", ".join("?" * len(chunk))
