"""The province's pages: every site at a glance, a site's day hour by hour,
the sites' self-assessments, and the audit of the authority's requests.

Registered only in province mode (:func:`admin_web.create_province_app`).
Each request reads the province's PostgreSQL over one connection of the
``province_reader`` login in ``province_web.dsn``, opened when a view first
needs it and closed when the request ends. The queries are
:mod:`kiosk.province.dashboard`'s; the views parse, query, render.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from flask import Blueprint, abort, current_app, g, render_template, request
from flask_babel import gettext as _

from admin_web.auth import login_required
from admin_web.charts import HOURS_PER_DAY, HourlyLabels, hourly_bars_svg, hourly_spark_svg
from admin_web.context import gk
from admin_web.presenting import DATE, local
from kiosk.config import Settings
from kiosk.province import dashboard
from kiosk.province.dashboard import Day, day_bounds

log = logging.getLogger(__name__)

bp = Blueprint("province", __name__)

SITE_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")
"""A site id as ``province.sites`` allows it; any other text names no site."""


@dataclass(frozen=True)
class ProvinceWeb:
    """How the province web reaches PostgreSQL, and its limits."""

    dsn: str
    """A libpq connection string of a ``province_reader`` login."""
    export_max_days: int
    """The longest window one export may cover, in days."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ProvinceWeb:
        return cls(
            dsn=str(settings["province_web.dsn"]).strip(),
            export_max_days=int(settings["province_web.export_max_days"]),
        )

    def connect(self) -> psycopg.Connection[Any]:
        """A new connection of the reader login; the caller closes it."""
        return psycopg.connect(self.dsn)


def province_web() -> ProvinceWeb:
    web: ProvinceWeb = current_app.extensions["gatekiosk_province"]
    return web


def reader() -> psycopg.Connection[Any]:
    """This request's connection to the province (closed when the request ends)."""
    if "province_conn" not in g:
        g.province_conn = province_web().connect()
    conn: psycopg.Connection[Any] = g.province_conn
    return conn


@bp.teardown_app_request
def _close_reader(error: BaseException | None) -> None:
    conn = g.pop("province_conn", None)
    if conn is not None:
        conn.close()


def today() -> Day:
    """Today in the province's zone (the web's clock)."""
    context = gk()
    return day_bounds(context.clock.now().astimezone(context.tz).date(), context.tz)


def state_labels() -> dict[str, str]:
    return {
        dashboard.SCANNING: _("Scanning"),
        dashboard.QUIET: _("Quiet"),
        dashboard.NEVER_HEARD: _("Never heard from"),
        dashboard.CURRENT: _("Current"),
        dashboard.STALE: _("Stale"),
        dashboard.MISSING: _("Missing"),
    }


@bp.get("/")
@login_required()
def index() -> str:
    day = today()
    listing = dashboard.site_list(reader(), day)
    by_hour = dashboard.events_by_hour(reader(), day)
    empty = (0,) * HOURS_PER_DAY
    sparks = {
        site.site_id: hourly_spark_svg(
            (by_hour.get(site.site_id, ()) + empty)[:HOURS_PER_DAY],  # a 23/25-hour day fits
            title=_("%(site)s: events per hour today", site=site.site_id),
        )
        for site in listing.sites
    }
    return render_template(
        "province_sites.html",
        listing=listing,
        sparks=sparks,
        totals=dashboard.totals(listing.sites),
        scanning=sum(1 for s in listing.sites if s.state == dashboard.SCANNING),
        labels=state_labels(),
        window_min=int(dashboard.SCANNING_WINDOW.total_seconds() // 60),
        today=local(day.start, DATE),
        day_arg=day.day.isoformat(),
    )


def _chosen_day() -> tuple[Day, str | None]:
    """The ``day`` argument (``YYYY-MM-DD``, a date input's value), today if
    absent; a malformed one is today with a problem to show."""
    text = (request.args.get("day") or "").strip()
    if not text:
        return today(), None
    try:
        chosen = date.fromisoformat(text)
    except ValueError:
        return today(), _("The day was not understood; today is shown.")
    if not 2000 <= chosen.year <= 2999:
        return today(), _("The day was not understood; today is shown.")
    return day_bounds(chosen, gk().tz), None


def _24(counts: tuple[int, ...]) -> list[int]:
    """A day's hourly counts as the chart's 24 (a 23- or 25-hour day of a
    zone with daylight saving padded or its last hours folded in)."""
    hours = list(counts[:HOURS_PER_DAY]) + [0] * max(0, HOURS_PER_DAY - len(counts))
    hours[-1] += sum(counts[HOURS_PER_DAY:])
    return hours


@bp.get("/sites/<site_id>")
@login_required()
def site(site_id: str) -> str:
    if not SITE_ID.fullmatch(site_id):
        abort(404)
    conn = reader()
    info = dashboard.site_info(conn, site_id)
    if info is None:
        abort(404)
    day, problem = _chosen_day()
    chart = dashboard.hourly_chart(conn, site_id, day)
    svg = hourly_bars_svg(
        _24(chart.entries),
        _24(chart.exits),
        labels=HourlyLabels(
            title=_("Entries and exits per hour"),
            entries=_("Entries"),
            exits=_("Exits"),
            hour_axis=_("Hour of day"),
        ),
    )
    hours = [
        (f"{hour:02d}:00", chart.entries[hour], chart.exits[hour], chart.refused[hour])
        for hour in range(len(chart.entries))
    ]
    return render_template(
        "province_site.html",
        info=info,
        chart=chart,
        hourly_svg=svg,
        hours=hours,
        problem=problem,
        day_text=local(day.start, DATE),
        day_arg=day.day.isoformat(),
    )


@bp.get("/ratings")
@login_required()
def ratings() -> str:
    found = dashboard.ratings(reader())
    return render_template("province_ratings.html", found=found, labels=state_labels())


def detail_lines(detail: dict[str, Any]) -> list[tuple[str, str]]:
    """An audit row's detail as (key, text) lines; ISO times in the province's zone."""
    lines = []
    for key, value in detail.items():
        text = str(value)
        if key in ("from", "to") and isinstance(value, str):
            with contextlib.suppress(ValueError):
                text = local(datetime.fromisoformat(value), "dd/MM/yyyy HH:mm")
        lines.append((str(key), text))
    return lines


@bp.get("/requests")
@login_required("manager")
def requests() -> str:
    limit = 200
    rows = dashboard.recent_requests(reader(), limit)
    return render_template(
        "province_requests.html",
        rows=[(row, detail_lines(row.detail)) for row in rows],
        limit=limit,
    )
