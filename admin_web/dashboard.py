"""Today at a glance, and the live feed of decisions."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, abort, jsonify, render_template, request
from flask_babel import gettext as _

from admin_web.auth import login_required
from admin_web.charts import HourlyLabels, OccupancyLabels, hourly_bars_svg, occupancy_line_svg
from admin_web.context import gk
from admin_web.presenting import DATE, event_json, local
from admin_web.routing import ROWID_MAX
from kiosk.store import EventFilter, KioskHealth, Visit

bp = Blueprint("dashboard", __name__)

HEALTH_STALE_S = 15
"""A kiosk that has not written its health for this long is reported as not running."""


def hourly_counts(start: datetime, end: datetime) -> tuple[list[int], list[int]]:
    """Entries and exits for each local hour of the day starting at ``start``."""
    entries, exits = [0] * 24, [0] * 24
    tz = gk().tz
    for event in gk().store.events_between(start, end):
        if event.decision != "allow":
            continue
        local_hour = event.at.astimezone(tz)
        hour = int((local_hour - start).total_seconds() // 3600)
        if 0 <= hour < 24:
            (entries if event.direction == "in" else exits)[hour] += 1
    return entries, exits


def occupancy_points(
    visits: list[Visit], start: datetime, until: datetime, expiry: timedelta
) -> list[tuple[float, int]]:
    """Occupancy through the day as (hour since local midnight, people) steps.

    People, not stays: two stays of one subject that overlap (a guard let
    someone in again by hand) count once, as on the "who was inside" page
    (:func:`admin_web.presenting.people_inside`).
    """
    changes: list[tuple[datetime, int, str]] = []
    for visit in visits:
        ends = visit.exited_at or visit.entered_at + expiry
        changes.append((max(visit.entered_at, start), +1, visit.subject_hash))
        if ends < until:
            changes.append((max(ends, start), -1, visit.subject_hash))
    changes.sort(key=lambda change: (change[0], change[1]))
    points = [(0.0, 0)]
    stays_of: dict[str, int] = {}
    for at, delta, subject in changes:
        stays_of[subject] = stays_of.get(subject, 0) + delta
        if stays_of[subject] == 0:
            del stays_of[subject]
        points.append(((at - start).total_seconds() / 3600, len(stays_of)))
    points.append(((until - start).total_seconds() / 3600, len(stays_of)))
    return points


def health_view(health: KioskHealth | None, now: datetime) -> dict[str, Any]:
    if health is None:
        return {"running": False}
    age_s = (now - health.updated_at).total_seconds()
    return {
        "running": age_s < HEALTH_STALE_S,
        "updated": local(health.updated_at, "HH:mm:ss"),
        "last_frame": local(health.last_frame_at, "HH:mm:ss"),
        "fps": health.fps,
        "camera": health.camera,
        "camera_ok": health.camera_ok,
        "camera_detail": health.camera_detail,
        "decoder": health.decoder,
        "pin_backend": health.pin_backend,
        "clock_synced": health.clock_synced,
        "fault": health.fault or "",
    }


def summary() -> dict[str, Any]:
    context = gk()
    settings = context.effective()
    now = context.clock.now()
    start, end = context.local_day(now)
    tally = context.store.tally(start, end)
    expiry_h = settings["policy.presence_expiry_h"]
    return {
        "entries": tally.entries,
        "exits": tally.exits,
        "refused": tally.refused,
        "refusals": sorted(tally.refusals.items(), key=lambda item: -item[1]),
        "occupancy": context.store.occupancy(now=now, expiry_h=expiry_h),
        "capacity": settings["policy.capacity"],
        "health": health_view(context.store.read_health(settings["gate.id"]), now),
    }


@bp.get("/")
@login_required()
def index() -> str:
    context = gk()
    settings = context.effective()
    now = context.clock.now()
    start, end = context.local_day(now)
    expiry = timedelta(hours=settings["policy.presence_expiry_h"])
    entries, exits = hourly_counts(start, end)
    visits = context.store.visits(start, min(now, end), expiry_h=expiry.total_seconds() / 3600)
    capacity = settings["policy.capacity"] or None
    return render_template(
        "dashboard.html",
        summary=summary(),
        events=context.store.recent_events(limit=20),
        cursor=context.store.latest_cursor(),
        unsynced=context.store.count_events(EventFilter(clock_synced=False)),
        hourly_svg=hourly_bars_svg(
            entries,
            exits,
            labels=HourlyLabels(
                title=_("Entries and exits per hour"),
                entries=_("Entries"),
                exits=_("Exits"),
                hour_axis=_("Hour of day"),
            ),
        ),
        occupancy_svg=occupancy_line_svg(
            occupancy_points(visits, start, min(now, end), expiry),
            capacity=capacity,
            labels=OccupancyLabels(
                title=_("People inside over the day"),
                people=_("People inside"),
                hour_axis=_("Hour of day"),
                capacity=_("Capacity"),
            ),
        ),
        today=local(now, DATE),
    )


_ROWID_DIGITS = len(str(ROWID_MAX))


def cursor_arg(name: str = "after") -> int | None:
    """The request's cursor argument, None if absent.

    Anything but plain ASCII decimal digits within a rowid's range is a 400:
    a cursor only ever comes from a previous answer, so a malformed one is a
    client's bug (or a probe), not a request for the whole log.
    """
    text = request.args.get(name)
    if text is None:
        return None
    digits = text.lstrip("0") or "0"
    if not (text.isascii() and text.isdigit()) or len(digits) > _ROWID_DIGITS:
        abort(400)
    value = int(digits)
    if value > ROWID_MAX:
        abort(400)
    return value


@bp.get("/api/live")
@login_required()
def live() -> Any:
    """Events recorded after ``after`` (a cursor from a previous answer) and the
    day's figures; the dashboard polls this twice a second."""
    after = cursor_arg()
    store = gk().store
    if after is None:
        after = store.latest_cursor()
    rows = store.events_after(after, limit=50)
    return jsonify(
        {
            "cursor": rows[-1][0] if rows else after,
            "events": [event_json(event, cursor) for cursor, event in rows],
            "summary": summary(),
        }
    )
