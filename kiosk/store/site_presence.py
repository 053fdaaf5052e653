"""Site-wide presence: the other gates' entries and exits, folded into this gate's.

Every gate of a site publishes its allowed entries and exits as *facts*
(:class:`PresenceFact`: subject hash, direction, time, gate, boot, sequence,
event id; nothing else) and keeps the other gates' facts here. Presence is
then the latest allowed event per subject over this gate's own events and
the facts, in the site's order key ``(at_utc, gate_id, boot_id, seq)`` (the
event id breaks a tie, which only a forged fact can make). A maximum does
not depend on the order it is taken in, and a fact is stored once by its
event id, so neither arrival order nor duplicates change the answer.

Partitions: each gate heard (a fact or a beat, see :mod:`kiosk.site.presence`)
is kept with the time it was last heard; the site view is fresh as of the
oldest of those. The kiosk reads that, and under a stale view what it needs
for the capacity share (:meth:`SitePresenceRepository.partition_snapshot`).

Conflicts (the same subject entering at two gates with no exit between, as a
partition allows) are found by a query over the merged order, never by
rewriting anything.

The order key trusts the gates' clocks: every gate computes the same answer
whatever their skew, but a gate whose clock is behind by more than the time
between someone's entry at one gate and their exit at another orders the
exit first (the person stays inside everywhere until presence expires).
Events carry ``clock_synced`` for that reason.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from kiosk.store.connection import Connection
from kiosk.store.values import Presence, expiry_cutoff, from_text, to_text

log = logging.getLogger(__name__)

FactDirection = Literal["in", "out"]

OrderKey = tuple[str, str, str, int, str]
"""``(at_utc, gate_id, boot_id, seq, event_id)``: the site's order of allowed events."""

AFTER_EVERYTHING = "9999"
"""Sorts after every stored time (they start with a four-digit year)."""

# A local presence row (joined to its event) that no remote fact of the same
# subject comes after; and a remote latest entry that no local allowed event
# of the same subject comes after. Together: everyone inside, site-wide.
_LOCAL_INSIDE = """
    FROM presence p
    WHERE p.entered_at_utc >= ?1 AND p.entered_at_utc <= ?2
    AND NOT EXISTS (
        SELECT 1 FROM site_presence_latest r JOIN events e ON e.id = p.event_id
        WHERE r.subject_hash = p.subject_hash
        AND (r.at_utc, r.gate_id, r.boot_id, r.seq, r.event_id)
            > (e.at_utc, e.gate_id, e.boot_id, e.seq, e.id)
    )
"""
# "+e.decision": the subject's index is the selective one; without statistics
# SQLite would pick the (decision, reason) index and read every allowed event
# for each remote entry (3.4 s against a few ms for 6,000 facts).
_REMOTE_INSIDE = """
    FROM site_presence_latest r
    WHERE r.direction = 'in' AND r.at_utc >= ?1
    AND NOT EXISTS (
        SELECT 1 FROM events e WHERE e.subject_hash = r.subject_hash AND +e.decision = 'allow'
        AND (e.at_utc, e.gate_id, e.boot_id, e.seq, e.id)
            > (r.at_utc, r.gate_id, r.boot_id, r.seq, r.event_id)
    )
"""

_OCCUPANCY = f"(SELECT count(*) {_LOCAL_INSIDE}) + (SELECT count(*) {_REMOTE_INSIDE})"
SITE_OCCUPANCY_SQL = (
    "SELECT CASE WHEN EXISTS (SELECT 1 FROM site_presence_latest) "
    f"THEN {_OCCUPANCY} "
    # A gate that has no facts (no site) counts as it always did: the index alone.
    "ELSE (SELECT count(*) FROM presence WHERE entered_at_utc >= ?1 AND entered_at_utc <= ?2) "
    "END"
)
"""How many are inside site-wide: ``?1`` the expiry cutoff, ``?2`` the
last time a local entry may have (later ones are left out)."""

SITE_INSIDE_SQL = (
    "SELECT p.subject_hash, p.display_name, p.masked_id, p.entered_at_utc, p.event_id, "
    f"p.gate_id {_LOCAL_INSIDE} UNION ALL "
    "SELECT r.subject_hash, NULL, NULL, r.at_utc, r.event_id, r.gate_id "
    f"{_REMOTE_INSIDE} ORDER BY 4"
)
"""Everyone inside site-wide, earliest entry first (same parameters)."""


@dataclass(frozen=True)
class PresenceFact:
    """One allowed entry or exit of one gate, as the other gates learn it."""

    event_id: str
    gate_id: str
    subject_hash: str
    direction: FactDirection
    at_utc: str
    """Fixed-width UTC text, as events keep it (text order is time order)."""
    boot_id: str
    seq: int

    @property
    def order_key(self) -> OrderKey:
        return (self.at_utc, self.gate_id, self.boot_id, self.seq, self.event_id)


@dataclass(frozen=True)
class FoldResult:
    """What became of a batch of facts: new ones, ones already known, this gate's own."""

    added: int = 0
    duplicate: int = 0
    own: int = 0


@dataclass(frozen=True)
class PartitionSnapshot:
    """What the capacity share under a stale site view is computed from.

    ``occupancy_known``: inside site-wide as this gate knows it, leaving out
    its own entries since ``fresh_as_of`` (they are ``entries_since``,
    counted whether or not the person has left since).
    """

    occupancy_known: int
    entries_since: int


@dataclass(frozen=True)
class PresenceConflict:
    """A double entry in the merged order: ``subject_hash`` entered at
    ``first_gate`` and again at ``second_gate`` with no exit between."""

    subject_hash: str
    first_event_id: str
    first_gate_id: str
    first_at: datetime
    second_event_id: str
    second_gate_id: str
    second_at: datetime


class SitePresenceRepository:
    """The site_presence tables, over the store's one connection."""

    def __init__(self, db: Connection) -> None:
        self._db = db

    # ----------------------------------------------------------------- folding

    def mark_heard(self, gate_ids: Sequence[str], *, at: datetime) -> None:
        """Gates ``gate_ids`` were heard at ``at`` (this gate's clock)."""
        if not gate_ids:
            return
        with self._db.write("mark gates heard") as conn:
            conn.executemany(
                "INSERT INTO site_peers (gate_id, last_heard_utc) VALUES (?, ?) "
                "ON CONFLICT (gate_id) DO UPDATE SET last_heard_utc = "
                "max(last_heard_utc, excluded.last_heard_utc)",
                [(gate_id, to_text(at)) for gate_id in sorted(set(gate_ids))],
            )

    def fold(
        self, facts: Sequence[PresenceFact], *, heard: Sequence[str] = (), at: datetime
    ) -> FoldResult:
        """Keep ``facts`` (validated already) received at ``at`` and mark the
        gates ``heard`` then, in one transaction (one fsync per message).

        A fact known by its event id is a duplicate and changes nothing; a
        fact of an event of this database's own log (this gate's echo) is
        left out.
        """
        added = duplicate = own = 0
        stamp = to_text(at)
        with self._db.write("fold presence facts") as conn:
            for fact in facts:
                if conn.execute("SELECT 1 FROM events WHERE id = ?", (fact.event_id,)).fetchone():
                    own += 1
                elif _insert_fact(conn, fact, stamp):
                    added += 1
                else:
                    duplicate += 1
            conn.executemany(
                "INSERT INTO site_peers (gate_id, last_heard_utc) VALUES (?, ?) "
                "ON CONFLICT (gate_id) DO UPDATE SET last_heard_utc = "
                "max(last_heard_utc, excluded.last_heard_utc)",
                [(gate_id, stamp) for gate_id in sorted(set(heard))],
            )
        return FoldResult(added=added, duplicate=duplicate, own=own)

    def forget_gate(self, gate_id: str) -> bool:
        """Stop waiting for ``gate_id`` (a gate taken out of the site): the
        view's freshness no longer depends on hearing it. Its facts stay."""
        with self._db.write("forget a gate") as conn:
            return conn.execute("DELETE FROM site_peers WHERE gate_id = ?", (gate_id,)).rowcount > 0

    # ----------------------------------------------------------------- freshness

    def fresh_as_of(self) -> datetime | None:
        """When every gate of the site heard so far had last been heard: the
        oldest of their times. None while no gate was ever heard (no site)."""
        rows = self._db.read(
            "read the site view's freshness", "SELECT min(last_heard_utc) FROM site_peers", ()
        )
        return from_text(rows[0][0]) if rows and rows[0][0] is not None else None

    def last_heard(self) -> dict[str, datetime]:
        """Each gate heard so far, with when it was last heard (for the dashboard)."""
        rows = self._db.read(
            "read the gates heard", "SELECT gate_id, last_heard_utc FROM site_peers", ()
        )
        return {str(gate): from_text(at) for gate, at in rows}

    def partition_snapshot(
        self, fresh_as_of: datetime, *, now: datetime, expiry_h: float
    ) -> PartitionSnapshot:
        """What the capacity share under a view stale since ``fresh_as_of`` needs."""
        fresh = to_text(fresh_as_of)
        rows = self._db.read(
            "read the partition snapshot",
            f"SELECT {_OCCUPANCY}, "
            "(SELECT count(*) FROM events WHERE decision = 'allow' AND direction = 'in' "
            "AND at_utc > ?2)",
            (expiry_cutoff(now, expiry_h), fresh),
        )
        occupancy, since = rows[0]
        return PartitionSnapshot(occupancy_known=int(occupancy), entries_since=int(since))

    # ----------------------------------------------------------------- presence

    def latest_remote(self, subject_hash: str) -> PresenceFact | None:
        """The latest fact about ``subject_hash`` from another gate, if any."""
        rows = self._db.read(
            "read remote presence",
            "SELECT event_id, gate_id, subject_hash, direction, at_utc, boot_id, seq "
            "FROM site_presence_latest WHERE subject_hash = ?",
            (subject_hash,),
        )
        return PresenceFact(*rows[0]) if rows else None

    def latest_local_key(self, subject_hash: str) -> tuple[OrderKey, str] | None:
        """The order key and direction of this log's latest allowed event of ``subject_hash``."""
        rows = self._db.read(
            "read local presence",
            "SELECT at_utc, gate_id, boot_id, seq, id, direction FROM events "
            "WHERE subject_hash = ? AND +decision = 'allow' "
            "ORDER BY at_utc DESC, gate_id DESC, boot_id DESC, seq DESC, id DESC LIMIT 1",
            (subject_hash,),
        )
        if not rows:
            return None
        at, gate, boot, seq, event_id, direction = rows[0]
        return (at, gate, boot, int(seq), event_id), str(direction)

    def remote_presence(
        self, subject_hash: str, *, now: datetime, expiry_h: float
    ) -> tuple[bool, Presence | None]:
        """Whether another gate has the last word on ``subject_hash`` and, if
        so, their presence by it (None: they left, or it expired)."""
        remote = self.latest_remote(subject_hash)
        if remote is None:
            return False, None
        local = self.latest_local_key(subject_hash)
        if local is not None and local[0] > remote.order_key:
            return False, None
        if remote.direction != "in" or remote.at_utc < expiry_cutoff(now, expiry_h):
            return True, None
        return True, Presence(
            subject_hash=remote.subject_hash,
            display_name=None,
            masked_id=None,
            entered_at=from_text(remote.at_utc),
            event_id=remote.event_id,
            gate_id=remote.gate_id,
        )

    # ----------------------------------------------------------------- publishing

    def unpublished(self, *, since: datetime, limit: int) -> list[tuple[int, PresenceFact]]:
        """This log's allowed entries and exits not yet published, oldest first,
        with their log positions; events before ``since`` are too old to matter."""
        rows = self._db.read(
            "read unpublished presence",
            "SELECT rowid, id, gate_id, subject_hash, direction, at_utc, boot_id, seq "
            "FROM events WHERE rowid > (SELECT published_rowid FROM site_presence_meta) "
            "AND decision = 'allow' AND subject_hash IS NOT NULL AND at_utc >= ? "
            "ORDER BY rowid LIMIT ?",
            (to_text(since), limit),
        )
        return [(int(row[0]), PresenceFact(*row[1:])) for row in rows]

    def published_up_to(self) -> int:
        """The log position up to which this gate's facts were published."""
        rows = self._db.read(
            "read the presence cursor", "SELECT published_rowid FROM site_presence_meta", ()
        )
        return int(rows[0][0])

    def mark_published(self, rowid: int) -> None:
        """Facts up to log position ``rowid`` were acknowledged by the broker."""
        with self._db.write("mark presence published") as conn:
            conn.execute(
                "UPDATE site_presence_meta SET published_rowid = max(published_rowid, ?) "
                "WHERE id = 1",
                (rowid,),
            )

    def rewind_published(self, since: datetime) -> bool:
        """Offer again this log's facts from ``since`` on (a gate that was not
        heard for a while may have missed them: receivers drop duplicates).
        Whether the position moved back."""
        with self._db.write("rewind the presence cursor") as conn:
            (first,) = conn.execute(
                "SELECT min(rowid) FROM events WHERE at_utc >= ?", (to_text(since),)
            ).fetchone()
            if first is None:
                return False
            cursor = conn.execute(
                "UPDATE site_presence_meta SET published_rowid = ? "
                "WHERE id = 1 AND published_rowid > ?",
                (int(first) - 1, int(first) - 1),
            )
            return cursor.rowcount > 0

    # ----------------------------------------------------------------- after a partition

    def conflicts(self, *, since: datetime, expiry_h: float) -> list[PresenceConflict]:
        """Double entries since ``since``: in the merged order (this log and the
        facts), an entry at one gate followed, within ``expiry_h`` hours, by an
        entry of the same subject at another gate with no exit between.
        Oldest first. What the dashboard lists after a partition heals."""
        rows = self._db.read(
            "find presence conflicts",
            """
            WITH merged AS (
                SELECT id AS event_id, gate_id, subject_hash, direction, at_utc, boot_id, seq
                FROM events WHERE decision = 'allow' AND subject_hash IS NOT NULL
                AND at_utc >= ?1
                UNION
                SELECT event_id, gate_id, subject_hash, direction, at_utc, boot_id, seq
                FROM site_presence WHERE at_utc >= ?1
            ), ordered AS (
                SELECT *,
                    lag(direction) OVER w AS prev_direction,
                    lag(gate_id) OVER w AS prev_gate_id,
                    lag(event_id) OVER w AS prev_event_id,
                    lag(at_utc) OVER w AS prev_at_utc
                FROM merged
                WINDOW w AS (
                    PARTITION BY subject_hash ORDER BY at_utc, gate_id, boot_id, seq, event_id
                )
            )
            SELECT subject_hash, prev_event_id, prev_gate_id, prev_at_utc,
                event_id, gate_id, at_utc
            FROM ordered
            WHERE direction = 'in' AND prev_direction = 'in' AND prev_gate_id <> gate_id
            ORDER BY at_utc, gate_id, boot_id, seq, event_id
            """,
            (to_text(since),),
        )
        limit = timedelta(hours=expiry_h)
        found = []
        for subject, first_id, first_gate, first_at, second_id, second_gate, second_at in rows:
            first, second = from_text(first_at), from_text(second_at)
            if second - first <= limit:
                found.append(
                    PresenceConflict(
                        subject, first_id, first_gate, first, second_id, second_gate, second
                    )
                )
        return found


def purge_facts_before(conn: sqlite3.Connection, cutoff: datetime) -> int:
    """Delete facts older than ``cutoff`` (retention, in the caller's transaction)
    and the latest entries that were theirs; returns how many facts."""
    text = to_text(cutoff)
    deleted = conn.execute("DELETE FROM site_presence WHERE at_utc < ?", (text,)).rowcount
    conn.execute("DELETE FROM site_presence_latest WHERE at_utc < ?", (text,))
    return int(deleted)


def _insert_fact(conn: sqlite3.Connection, fact: PresenceFact, received: str) -> bool:
    """Store one fact unless its event id is known; keep the subject's latest. Whether new."""
    cursor = conn.execute(
        "INSERT OR IGNORE INTO site_presence (event_id, gate_id, subject_hash, direction, "
        "at_utc, boot_id, seq, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            fact.event_id,
            fact.gate_id,
            fact.subject_hash,
            fact.direction,
            fact.at_utc,
            fact.boot_id,
            fact.seq,
            received,
        ),
    )
    if cursor.rowcount == 0:
        return False
    conn.execute(
        """
        INSERT INTO site_presence_latest
            (subject_hash, event_id, gate_id, direction, at_utc, boot_id, seq)
        VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (subject_hash) DO UPDATE SET
            event_id = excluded.event_id, gate_id = excluded.gate_id,
            direction = excluded.direction, at_utc = excluded.at_utc,
            boot_id = excluded.boot_id, seq = excluded.seq
        WHERE (excluded.at_utc, excluded.gate_id, excluded.boot_id, excluded.seq,
               excluded.event_id)
            > (site_presence_latest.at_utc, site_presence_latest.gate_id,
               site_presence_latest.boot_id, site_presence_latest.seq,
               site_presence_latest.event_id)
        """,
        (
            fact.subject_hash,
            fact.event_id,
            fact.gate_id,
            fact.direction,
            fact.at_utc,
            fact.boot_id,
            fact.seq,
        ),
    )
    return True
