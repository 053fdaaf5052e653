"""The hub's side of the province uplink: the site database is the queue.

Migration ``0014_province_outbox`` gives every event a ``province_pending``
mark of its own (apart from ``upload_pending``, the gate-to-hub outbox) and
a trigger that sets it on every insert once the uplink is enabled here.
``gatekiosk uplink`` reads the pending rows in arrival (rowid) order, sends
them, and clears the mark only after the province has committed them: a
hub offline for weeks keeps its backlog and catches up.

Only what the province may hold is read: no name, ID number, birth date or
note (see ``schema.sql``).

Example::

    outbox = ProvinceOutbox(store.connection)
    outbox.enable(now)
    batch = outbox.pending(limit=5000)
    ...COPY, INSERT ... ON CONFLICT DO NOTHING, COMMIT at the province...
    outbox.mark_sent(batch.rowids)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from kiosk.store.connection import Connection
from kiosk.store.values import to_text

log = logging.getLogger(__name__)

PROVINCE_COLUMNS: tuple[str, ...] = (
    "id",
    "at_utc",
    "utc_offset_min",
    "gate_id",
    "boot_id",
    "seq",
    "clock_synced",
    "direction",
    "decision",
    "reason",
    "kind",
    "subject_hash",
    "override",
    "warning",
    # Issue 18, helper D: NULL unless the gate has privacy.province_key_file.
    "province_subject_hash",
)
"""The event columns that go to the province (``site_id`` is added there)."""

MARK_ROWS_PER_TRANSACTION = 2000
"""Rows marked for upload per transaction when the uplink is first enabled:
the kiosk waits for the write lock, so it is never held for long."""

_PENDING_SQL = (
    f"SELECT rowid, {', '.join(PROVINCE_COLUMNS)} FROM events "  # noqa: S608 (constants)
    "WHERE province_pending = 1 AND rowid > ? ORDER BY rowid LIMIT ?"
)

_IDS_PER_STATEMENT = 500  # under SQLite's smallest bound-parameter limit (999)


@dataclass(frozen=True)
class ProvinceBatch:
    """Pending events, oldest arrival first: their rowids and province columns.

    ``rows`` hold the values of :data:`PROVINCE_COLUMNS` as stored (times as
    UTC text, booleans as 0/1).
    """

    rowids: tuple[int, ...]
    rows: tuple[tuple[object, ...], ...]

    @property
    def last(self) -> int | None:
        """The last rowid, to read the next batch after it; None when empty."""
        return self.rowids[-1] if self.rowids else None

    @property
    def months(self) -> frozenset[str]:
        """The UTC months (``YYYY-MM``) the events fall in: the partitions they need."""
        return frozenset(str(row[1])[:7] for row in self.rows)


@dataclass(frozen=True)
class DayCounts:
    """Decisions recorded in one day (the site's day), for the site's health."""

    allowed: int
    denied: int


class ProvinceOutbox:
    """Pending events for the province, marking them sent, the backlog."""

    def __init__(self, db: Connection) -> None:
        self._db = db

    @property
    def connection(self) -> Connection:
        """The site database's connection (the uplink's other queues use it too)."""
        return self._db

    def enable(self, now: datetime) -> int:
        """Start the queue here (idempotent); on the first call, mark every
        existing event pending. Returns how many were marked.

        The trigger marks new events from the commit of the first
        transaction on; the existing ones are then marked in short
        transactions, so nothing inserted in between is missed.
        """
        with self._db.write("enable the province uplink") as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO province_uplink (id, enabled_at_utc) VALUES (1, ?)",
                (to_text(now),),
            )
            first = cursor.rowcount == 1
        if not first:
            return 0
        # Rows after ``top`` were inserted with the trigger on: already marked.
        # Walk rowid ranges, so each transaction touches its own rows only
        # (re-scanning from the start for unmarked rows grew as n squared).
        top = int(
            self._db.read("find the last event", "SELECT max(rowid) FROM events", ())[0][0] or 0
        )
        marked = 0
        for low in range(0, top, MARK_ROWS_PER_TRANSACTION):
            with self._db.write("mark events for the province") as conn:
                cursor = conn.execute(
                    "UPDATE events SET province_pending = 1 "
                    "WHERE rowid > ? AND rowid <= ? AND province_pending = 0",
                    (low, min(low + MARK_ROWS_PER_TRANSACTION, top)),
                )
            marked += cursor.rowcount
        log.info("province uplink enabled: %d existing event(s) to send", marked)
        return marked

    def pending(self, *, limit: int, after: int | None = None) -> ProvinceBatch:
        """Up to ``limit`` pending events after rowid ``after``, oldest arrival first.

        Reads the partial index of pending rows only: its cost does not grow
        with the history already sent.
        """
        rows = self._db.read(
            "read the events for the province",
            _PENDING_SQL,
            (after if after is not None else -1, limit),
        )
        return ProvinceBatch(
            rowids=tuple(int(row[0]) for row in rows),
            rows=tuple(tuple(row[1:]) for row in rows),
        )

    def mark_sent(self, rowids: Sequence[int]) -> int:
        """Clear the mark of these rows in one transaction; how many changed.

        Call only after the province committed them.
        """
        changed = 0
        with self._db.write("mark events sent to the province") as conn:
            for chunk in _chunks(rowids):
                cursor = conn.execute(
                    "UPDATE events SET province_pending = 0 WHERE province_pending = 1 "  # noqa: S608
                    f"AND rowid IN ({', '.join('?' * len(chunk))})",  # only placeholders
                    tuple(chunk),
                )
                changed += cursor.rowcount
        return changed

    def count_pending(self) -> int:
        """How many events wait for the province: the backlog in the site's health."""
        rows = self._db.read(
            "count the events for the province",
            "SELECT count(*) FROM events WHERE province_pending = 1",
            (),
        )
        return int(rows[0][0])

    def day_counts(self, start: datetime, end: datetime) -> DayCounts:
        """Allowed and denied events with ``start <= at < end``."""
        rows = self._db.read(
            "count the day's decisions",
            "SELECT decision, count(*) FROM events WHERE at_utc >= ? AND at_utc < ? "
            "GROUP BY decision",
            (to_text(start), to_text(end)),
        )
        counts = {str(row[0]): int(row[1]) for row in rows}
        return DayCounts(allowed=counts.get("allow", 0), denied=counts.get("deny", 0))


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), _IDS_PER_STATEMENT):
        yield ids[start : start + _IDS_PER_STATEMENT]
