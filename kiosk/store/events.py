"""Events and presence: the log the gate writes and everything read from it.

Recording an event and updating presence are one transaction, committed and
fsynced before :meth:`EventRepository.record` returns: the gate opens the
door only afterwards. Everything else here reads the log (pages, live
cursor, the day's tally, contact-tracing visits, who is inside) or purges it.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from kiosk.store.connection import Connection, read_snapshot
from kiosk.store.site_presence import (
    AFTER_EVERYTHING,
    SITE_INSIDE_SQL,
    SITE_OCCUPANCY_SQL,
    SitePresenceRepository,
    purge_facts_before,
)
from kiosk.store.values import (
    LOG_ORDER,
    LOG_ORDER_NEWEST_FIRST,
    Event,
    EventFilter,
    NewEvent,
    Presence,
    Tally,
    Visit,
    expiry_cutoff,
    from_text,
    require_aware,
    to_text,
)

log = logging.getLogger(__name__)

EVENT_COLUMNS = (
    "id, boot_id, seq, gate_id, at_utc, utc_offset_min, clock_synced, direction, decision, "
    "reason, kind, subject_hash, display_name, masked_id, id_number, override, warning, "
    "actor, note, birth_date, name_latin, province_subject_hash"
)
"""The columns :func:`event_from_row` reads, in its order."""


class EventRepository:
    """The events and presence tables, over the store's one connection.

    ``boot_id`` names this boot of the machine: ``seq`` counts within it.
    ``mark_for_upload`` (a gate in a site) writes every new event with its
    "not yet uploaded" mark, in the same INSERT; without a site no row is marked.
    """

    def __init__(self, db: Connection, *, boot_id: str, mark_for_upload: bool = False) -> None:
        self._db = db
        self.boot_id = boot_id
        self._site = SitePresenceRepository(db)
        self.mark_for_upload = mark_for_upload

    def record(self, event: NewEvent) -> Event:
        """Append ``event`` to the log and update presence, durably, in one transaction.

        On return the row is committed and fsynced; only then may the caller
        open the door. Presence follows allowed events only: an allowed entry
        with a subject makes (or refreshes) that person's presence, an allowed
        exit removes it, a denial changes nothing.
        """
        with self._db.write("record the event") as conn:
            recorded = self.insert(conn, event)
        log.debug("recorded event seq=%d decision=%s", recorded.seq, event.decision)
        return recorded

    def insert(self, conn: sqlite3.Connection, event: NewEvent) -> Event:
        """Insert one event and update presence, inside the caller's transaction."""
        event_id = uuid.uuid4().hex
        at_utc = to_text(event.at)
        (last_seq,) = conn.execute(
            "SELECT coalesce(max(seq), 0) FROM events WHERE boot_id = ?", (self.boot_id,)
        ).fetchone()
        seq = int(last_seq) + 1
        conn.execute(
            "INSERT OR IGNORE INTO boots (boot_id, first_seen_utc) VALUES (?, ?)",
            (self.boot_id, at_utc),
        )
        recorded = Event.of(event, id=event_id, boot_id=self.boot_id, seq=seq)
        conn.execute(
            f"INSERT INTO events ({INSERT_COLUMNS}, upload_pending) VALUES ({INSERT_PLACES}, ?)",
            (*insert_values(recorded), int(self.mark_for_upload)),
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
            dataclasses.replace(event, at=from_text(at_utc)),
            id=event_id,
            boot_id=self.boot_id,
            seq=seq,
        )

    def recent_events(self, limit: int = 20) -> list[Event]:
        """The latest ``limit`` events, newest first (in :data:`LOG_ORDER`, not by clock)."""
        rows = self._db.read(
            "read recent events",
            f"SELECT {EVENT_COLUMNS} FROM events ORDER BY {LOG_ORDER_NEWEST_FIRST} LIMIT ?",
            (limit,),
        )
        return [event_from_row(row) for row in rows]

    def events_between(self, start: datetime, end: datetime) -> list[Event]:
        """Events with ``start <= at < end``, oldest first.

        Half-open, so consecutive windows (9:00-10:00, 10:00-11:00) neither
        miss nor double-count an event on the boundary.
        """
        rows = self._db.read(
            "read events",
            f"SELECT {EVENT_COLUMNS} FROM events "
            f"WHERE at_utc >= ? AND at_utc < ? ORDER BY {LOG_ORDER}",
            (to_text(start), to_text(end)),
        )
        return [event_from_row(row) for row in rows]

    # ----------------------------------------------------------------- presence

    def presence_of(self, subject_hash: str, *, now: datetime, expiry_h: float) -> Presence | None:
        """This person's presence, or ``None`` if they are not inside.

        Site-wide: when another gate's fact about them comes later in the
        site's order than this gate's own events, it decides (see
        :mod:`kiosk.store.site_presence`). An entry older than ``expiry_h``
        hours counts as gone: people leave without scanning out, and a stale
        presence must not block them (or inflate occupancy) forever.
        """
        remote_has_last_word, remote = self._site.remote_presence(
            subject_hash, now=now, expiry_h=expiry_h
        )
        if remote_has_last_word:
            return remote
        rows = self._db.read(
            "read presence",
            "SELECT subject_hash, display_name, masked_id, entered_at_utc, event_id, gate_id "
            "FROM presence WHERE subject_hash = ? AND entered_at_utc >= ?",
            (subject_hash, expiry_cutoff(now, expiry_h)),
        )
        if not rows:
            return None
        subject, display_name, masked_id, entered_at, event_id, gate_id = rows[0]
        return Presence(
            subject_hash=subject,
            display_name=display_name,
            masked_id=masked_id,
            entered_at=from_text(entered_at),
            event_id=event_id,
            gate_id=gate_id,
        )

    def occupancy(self, *, now: datetime, expiry_h: float) -> int:
        """How many people are inside site-wide, with the same expiry as :meth:`presence_of`."""
        rows = self._db.read(
            "count presence",
            SITE_OCCUPANCY_SQL,
            (expiry_cutoff(now, expiry_h), AFTER_EVERYTHING),
        )
        return int(rows[0][0])

    # ----------------------------------------------------------------- the log, for the web

    def count_events(self, where: EventFilter) -> int:
        sql, params = where.sql()
        rows = self._db.read("count events", f"SELECT count(*) FROM events WHERE {sql}", params)
        return int(rows[0][0])

    def find_events(self, where: EventFilter, *, limit: int, offset: int = 0) -> list[Event]:
        """One page of the log, newest first."""
        sql, params = where.sql()
        rows = self._db.read(
            "search events",
            f"SELECT {EVENT_COLUMNS} FROM events WHERE {sql} "
            f"ORDER BY {LOG_ORDER_NEWEST_FIRST} LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [event_from_row(row) for row in rows]

    def iter_events(self, where: EventFilter, *, batch: int = 2000) -> Iterator[Event]:
        """Every matching event, oldest first, streamed in bounded memory.

        Reads through a connection of its own, so a long export neither holds
        this store's lock nor sees a half-written page: one snapshot throughout.
        """
        sql, params = where.sql()
        with read_snapshot(self._db.path, "export events") as conn:
            cursor = conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE {sql} ORDER BY {LOG_ORDER}", params
            )
            while rows := cursor.fetchmany(batch):
                for row in rows:
                    yield event_from_row(row)

    def event_by_id(self, event_id: str) -> Event | None:
        rows = self._db.read(
            "read an event", f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ?", (event_id,)
        )
        return event_from_row(rows[0]) if rows else None

    def latest_cursor(self) -> int:
        """A position in the log: events recorded later have a larger cursor."""
        rows = self._db.read(
            "read the log position", "SELECT coalesce(max(rowid), 0) FROM events", ()
        )
        return int(rows[0][0])

    def events_after(self, cursor: int, *, limit: int = 50) -> list[tuple[int, Event]]:
        """Events recorded after ``cursor`` (oldest first) with their own cursors."""
        rows = self._db.read(
            "read new events",
            f"SELECT rowid, {EVENT_COLUMNS} FROM events WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (cursor, limit),
        )
        return [(int(row[0]), event_from_row(row[1:])) for row in rows]

    def tally(self, start: datetime, end: datetime) -> Tally:
        """Entries, exits and refusals (by reason) with ``start <= at < end``."""
        rows = self._db.read(
            "count the day",
            "SELECT decision, direction, reason, count(*) FROM events "
            "WHERE at_utc >= ? AND at_utc < ? GROUP BY decision, direction, reason",
            (to_text(start), to_text(end)),
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
        require_aware(start, "start")
        require_aware(end, "end")
        expiry = timedelta(hours=expiry_h)
        rows = self._db.read(
            "read visits",
            # "+decision": the time range is the selective term; without
            # statistics SQLite would otherwise pick the (decision, reason)
            # index and scan most of the log (284 ms against 12 ms on 1M events).
            f"SELECT {EVENT_COLUMNS} FROM events WHERE +decision = 'allow' "
            "AND subject_hash IS NOT NULL AND at_utc >= ? AND at_utc < ? "
            f"ORDER BY {LOG_ORDER}",
            # Exits up to one expiry after the window still close visits in it.
            (to_text(start - expiry), to_text(end + expiry)),
        )
        open_visits: dict[str, Event] = {}
        visits: list[Visit] = []

        def close(entry: Event, exited_at: datetime | None) -> None:
            ends = exited_at if exited_at is not None else entry.at + expiry
            if entry.at < end and ends >= start:
                visits.append(Visit.of(entry, exited_at))

        for event in map(event_from_row, rows):
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
        """Everyone inside now, site-wide, earliest entry first (another gate's
        entry has no name: facts carry none)."""
        rows = self._db.read(
            "read presence", SITE_INSIDE_SQL, (expiry_cutoff(now, expiry_h), AFTER_EVERYTHING)
        )
        return [
            Presence(
                subject_hash=r[0],
                display_name=r[1],
                masked_id=r[2],
                entered_at=from_text(r[3]),
                event_id=r[4],
                gate_id=r[5],
            )
            for r in rows
        ]

    def purge_events_before(self, cutoff: datetime, *, limit: int) -> int:
        """Delete the ``limit`` oldest events older than ``cutoff`` (retention),
        in one short transaction; presence, and the other gates' facts as
        old, go with them. Returns how many
        went: fewer than ``limit`` means none older than ``cutoff`` are left.

        One batch at a time, so the write lock is never held for long (a
        million rows in one statement held it for about a minute) and a
        purge cut short loses nothing: each batch is committed. Events the
        hub has not acknowledged yet stay, however old: purging them would
        lose them from the site's log (they go once uploaded); so do those
        the province has not committed yet (``province_pending``).
        """
        with self._db.write("purge old events") as conn:
            cursor = conn.execute(
                "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events "
                "WHERE at_utc < ? AND upload_pending = 0 AND province_pending = 0 "
                "ORDER BY at_utc LIMIT ?)",
                (to_text(cutoff), limit),
            )
            purge_facts_before(conn, cutoff)
            return cursor.rowcount

    def event_reasons(self) -> list[str]:
        """The reason codes present in the log, sorted: what the log's reason filter offers.

        Answered from the (decision, reason) index, without reading event rows.
        """
        rows = self._db.read(
            "list reasons", "SELECT DISTINCT reason FROM events ORDER BY reason", ()
        )
        return [str(row[0]) for row in rows]


INSERT_COLUMNS = (
    "id, gate_id, at_utc, utc_offset_min, boot_id, boot_ordinal, seq, clock_synced, "
    "direction, decision, reason, kind, subject_hash, display_name, masked_id, id_number, "
    "override, warning, actor, note, birth_date, name_latin, province_subject_hash"
)
"""The columns an event is inserted with, at a gate and at the hub alike."""
INSERT_PLACES = "?, ?, ?, ?, ?, (SELECT ordinal FROM boots WHERE boot_id = ?), " + ", ".join(
    ["?"] * 17
)
"""The values of :data:`INSERT_COLUMNS`: the boot's ordinal comes from ``boots``."""


def insert_values(event: Event) -> tuple[object, ...]:
    """The parameters of :data:`INSERT_PLACES` for ``event``."""
    return (
        event.id,
        event.gate_id,
        to_text(event.at),
        event.utc_offset_min,
        event.boot_id,
        event.boot_id,
        event.seq,
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
        event.province_subject_hash,
    )


def event_from_row(row: tuple[Any, ...]) -> Event:
    """An :class:`Event` from a row of :data:`EVENT_COLUMNS`."""
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
        province_subject_hash,
    ) = row
    return Event(
        id=event_id,
        boot_id=boot_id,
        seq=int(seq),
        gate_id=gate_id,
        at=from_text(at_utc),
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
        province_subject_hash=province_subject_hash,
    )
