"""What the authority's web reads from the province's PostgreSQL, as typed rows.

Every query runs on a connection of a ``province_reader`` login (it reads
everything and writes nothing but audit rows, through
``province.audit_request``). Counts come from ``province.hourly``, the rollup
the insert trigger keeps: a few thousand rows for the whole province instead
of millions of events. The province holds no names (``schema.sql``): nothing
here selects one, and a row's ``subject_hash`` is keyed by its site.

Days are the province zone's calendar days, turned into UTC bounds by
:func:`day_bounds`; the rollup's hours are UTC hours, which align with
local hours in a zone whose offset is a whole number of hours (Viet Nam's
UTC+07:00).

Example::

    with psycopg.connect(reader_dsn) as conn:
        for site in site_list(conn, day_bounds(date.today(), ZoneInfo("Asia/Ho_Chi_Minh"))):
            print(site.site_id, site.state, site.today.entries)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

log = logging.getLogger(__name__)

SCANNING_WINDOW = timedelta(minutes=15)
"""A site heard from (an event received or a health report) within this long,
with events today, is scanning; one heard from earlier, or without events
today, is quiet."""

SCANNING, QUIET, NEVER_HEARD = "scanning", "quiet", "never-heard"
"""A site's state on the site list."""

CURRENT, STALE, MISSING = "current", "stale", "missing"
"""A site's self-assessment state."""

WINDOW_BATCH = 2000
"""Rows a window's server-side cursor fetches at a time: memory stays bounded."""


@dataclass(frozen=True)
class Day:
    """A calendar day of the province's zone as aware UTC bounds, end exclusive."""

    day: date
    start: datetime
    end: datetime


def day_bounds(day: date, tz: ZoneInfo) -> Day:
    """``day`` in ``tz``, from local midnight to the next local midnight."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return Day(day, start, end)


@dataclass(frozen=True)
class Counts:
    """Allowed entries, allowed exits and refusals."""

    entries: int = 0
    exits: int = 0
    refused: int = 0


@dataclass(frozen=True)
class SiteRow:
    """One site on the site list."""

    site_id: str
    name: str
    last_heard: datetime | None
    """The latest health report or event received, by the server's clock; None if never."""
    state: str
    """:data:`SCANNING`, :data:`QUIET` or :data:`NEVER_HEARD`."""
    today: Counts


@dataclass(frozen=True)
class SiteList:
    """The site list and the server's clock it was judged by."""

    now: datetime
    sites: tuple[SiteRow, ...]


_SITE_LIST = """
WITH today AS (
    SELECT site_id, sum(entries) AS entries, sum(exits) AS exits, sum(denied) AS denied
    FROM province.hourly WHERE hour >= %(start)s AND hour < %(end)s
    GROUP BY site_id
)
SELECT s.id, s.name, s.last_heard, latest.received_at,
       coalesce(t.entries, 0), coalesce(t.exits, 0), coalesce(t.denied, 0), now()
FROM province.sites s
LEFT JOIN today t ON t.site_id = s.id
LEFT JOIN LATERAL (
    SELECT e.received_at FROM province.events e
    WHERE e.site_id = s.id AND e.at_utc >= %(recent)s
    ORDER BY e.at_utc DESC LIMIT 1
) latest ON true
ORDER BY s.id
"""


def site_list(conn: psycopg.Connection[Any], day: Day) -> SiteList:
    """Every site of the province, heard from or not, with ``day``'s counts.

    Last heard is the later of the site's last health report and the
    reception (server clock) of its latest event of the last few hours,
    so a hub's wrong clock cannot make a silent site look alive.
    """
    recent = day.start - timedelta(days=1)
    rows = conn.execute(
        _SITE_LIST, {"start": day.start, "end": day.end, "recent": recent}
    ).fetchall()
    now = rows[0][7] if rows else conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    sites = []
    for site_id, name, reported, received, entries, exits, denied, _ in rows:
        heard = max((t for t in (reported, received) if t is not None), default=None)
        today = Counts(int(entries), int(exits), int(denied))
        sites.append(SiteRow(site_id, name, heard, site_state(heard, today, now=now), today))
    return SiteList(now, tuple(sites))


def site_state(heard: datetime | None, today: Counts, *, now: datetime) -> str:
    """Scanning: heard from within :data:`SCANNING_WINDOW` and events today."""
    if heard is None:
        return NEVER_HEARD
    busy = today.entries + today.exits + today.refused > 0
    return SCANNING if busy and now - heard <= SCANNING_WINDOW else QUIET


def totals(sites: tuple[SiteRow, ...]) -> Counts:
    """The province's counts: the sum of its sites'."""
    return Counts(
        sum(s.today.entries for s in sites),
        sum(s.today.exits for s in sites),
        sum(s.today.refused for s in sites),
    )


@dataclass(frozen=True)
class SiteInfo:
    site_id: str
    name: str
    last_heard: datetime | None


def all_sites(conn: psycopg.Connection[Any]) -> tuple[SiteInfo, ...]:
    """Every site, by id."""
    rows = conn.execute("SELECT id, name, last_heard FROM province.sites ORDER BY id").fetchall()
    return tuple(SiteInfo(*row) for row in rows)


_SITE_INFO = """
SELECT s.id, s.name, greatest(s.last_heard, (
    SELECT e.received_at FROM province.events e
    WHERE e.site_id = s.id AND e.at_utc >= now() - interval '2 days'
    ORDER BY e.at_utc DESC LIMIT 1))
FROM province.sites s WHERE s.id = %s
"""


def site_info(conn: psycopg.Connection[Any], site_id: str) -> SiteInfo | None:
    """A site by its id, last heard as on the site list; None if the province has no such site."""
    row = conn.execute(_SITE_INFO, (site_id,)).fetchone()
    return None if row is None else SiteInfo(row[0], row[1], row[2])


@dataclass(frozen=True)
class HourlyChart:
    """A site's day, hour by hour of the province's zone (24 hours, or 23/25
    on a day a daylight-saving zone changes its clocks)."""

    entries: tuple[int, ...]
    exits: tuple[int, ...]
    refused: tuple[int, ...]

    @property
    def total(self) -> Counts:
        return Counts(sum(self.entries), sum(self.exits), sum(self.refused))


def hourly_chart(conn: psycopg.Connection[Any], site_id: str, day: Day) -> HourlyChart:
    """``site_id``'s counts per hour of ``day``, from the rollup."""
    hours = round((day.end - day.start).total_seconds() / 3600)
    entries, exits, refused = [0] * hours, [0] * hours, [0] * hours
    rows = conn.execute(
        "SELECT hour, entries, exits, denied FROM province.hourly "
        "WHERE site_id = %s AND hour >= %s AND hour < %s",
        (site_id, day.start, day.end),
    ).fetchall()
    for hour, entered, exited, denied in rows:
        index = int((hour - day.start).total_seconds() // 3600)
        if 0 <= index < hours:
            entries[index] += entered
            exits[index] += exited
            refused[index] += denied
    return HourlyChart(tuple(entries), tuple(exits), tuple(refused))


@dataclass(frozen=True)
class Rating:
    """A site's latest self-assessment, and whether it still counts."""

    site_id: str
    name: str
    state: str
    """:data:`CURRENT`, :data:`STALE` or :data:`MISSING`."""
    score: int | None
    """Percentage of the checklist's measures in place (0-100); None if missing."""
    made_at: datetime | None
    version: int | None
    """The checklist version it answered; :attr:`Ratings.newest_version` is the latest."""


@dataclass(frozen=True)
class Ratings:
    newest_version: int | None
    ratings: tuple[Rating, ...]
    """Missing first, then stale, then current; by site id within each."""


_RATINGS = """
SELECT s.id, s.name, a.score, a.made_at, a.checklist_version, c.stale_after_days,
       (SELECT max(version) FROM province.checklists), now()
FROM province.sites s
LEFT JOIN LATERAL (
    SELECT score, made_at, checklist_version FROM province.assessments a
    WHERE a.site_id = s.id ORDER BY made_at DESC LIMIT 1
) a ON true
LEFT JOIN province.checklists c ON c.version = a.checklist_version
"""

_RATING_ORDER = {MISSING: 0, STALE: 1, CURRENT: 2}


def ratings(conn: psycopg.Connection[Any]) -> Ratings:
    """Every site's latest rating: stale when older than its checklist's
    ``stale_after_days`` (server clock) or made on an older checklist version."""
    newest: int | None = None
    found = []
    for site_id, name, score, made_at, version, stale_days, newest, now in conn.execute(
        _RATINGS
    ).fetchall():
        if made_at is None:
            state = MISSING
        elif (newest is not None and version < newest) or now - made_at > timedelta(
            days=stale_days
        ):
            state = STALE
        else:
            state = CURRENT
        found.append(Rating(site_id, name, state, score, made_at, version))
    found.sort(key=lambda r: (_RATING_ORDER[r.state], r.site_id))
    return Ratings(newest, tuple(found))


@dataclass(frozen=True)
class WindowEvent:
    """One event of a site's window, as the province has it (no name: none left the site)."""

    site_id: str
    id: str
    at: datetime
    utc_offset_min: int
    gate_id: str
    boot_id: str
    seq: int
    clock_synced: bool
    direction: str
    decision: str
    reason: str
    kind: str
    subject_hash: str | None
    """Keyed by the site's own key: the same person has another hash at another site."""
    province_subject_hash: str | None
    """Keyed by the province key, only where a hub's setting turned it on; else None."""
    override: bool
    warning: str | None
    received_at: datetime


_WINDOW = (
    "SELECT site_id, id, at_utc, utc_offset_min, gate_id, boot_id, seq, clock_synced, "
    "direction, decision, reason, kind, subject_hash, province_subject_hash, override, "
    "warning, received_at FROM province.events "
    "WHERE site_id = %s AND at_utc >= %s AND at_utc < %s ORDER BY at_utc, id"
)


def iter_window(
    conn: psycopg.Connection[Any], site_id: str, start: datetime, end: datetime
) -> Iterator[WindowEvent]:
    """``site_id``'s events from ``start`` (inclusive) to ``end`` (exclusive),
    in time order, through a server-side cursor: :data:`WINDOW_BATCH` rows in
    memory at a time, however long the window. Runs in a transaction of
    ``conn`` (not autocommit), ended when the iterator is exhausted or closed.
    """
    with conn.transaction(), conn.cursor(name="province_window") as cursor:
        cursor.itersize = WINDOW_BATCH
        cursor.execute(_WINDOW, (site_id, start, end))
        for row in cursor:
            yield WindowEvent(*row)


def record_request(
    conn: psycopg.Connection[Any],
    *,
    actor: str,
    action: str,
    site_id: str | None,
    reason: str,
    detail: dict[str, Any],
) -> int:
    """Audit a request before anything is read for it, committed at once; the
    audit row's id. The database stamps the time and the login (``db_role``)."""
    with conn.transaction():
        row = conn.execute(
            "SELECT province.audit_request(%s, %s, %s, %s, %s)",
            (actor, action, site_id, reason, Jsonb(detail)),
        ).fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    db_role: str
    action: str
    site_id: str | None
    reason: str
    detail: dict[str, Any]


def recent_requests(conn: psycopg.Connection[Any], limit: int = 200) -> tuple[AuditRow, ...]:
    """The latest audited requests, newest first."""
    rows = conn.execute(
        "SELECT id, at, actor, db_role, action, site_id, reason, detail FROM province.audit "
        "ORDER BY id DESC LIMIT %s",
        (limit,),
    ).fetchall()
    return tuple(AuditRow(*row) for row in rows)
