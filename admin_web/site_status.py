"""The site dashboard: every gate of the site, and the double entries found
after a partition healed.

For each gate: online or offline with when the hub last heard it, the events
waiting at the gate to be uploaded, its camera, and its counts today (from
the site database, so what has reached the hub). The gates' status comes
from their retained status messages, which ``gatekiosk hub`` keeps in the
site database (:mod:`kiosk.store.site_gates`).

Conflicts are a query over the merged log (:meth:`~kiosk.store.site_presence.
SitePresenceRepository.conflicts`): nothing is rewritten or dropped, so they
stay listed for as long as the events are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Blueprint, render_template

from admin_web.auth import login_required
from admin_web.context import WebContext, gk
from kiosk.store import GateStatusRow

bp = Blueprint("site_status", __name__)

CONFLICT_DAYS = 30
"""How far back the page looks for double entries."""


@dataclass(frozen=True)
class GateRow:
    """One line of the site dashboard."""

    gate_id: str
    status: GateStatusRow | None
    allowed_today: int
    refused_today: int
    stale: bool
    """Online by its last status, but not heard for longer than ``site.stale_after_s`` x 3."""


@bp.app_context_processor
def _site_globals() -> dict[str, object]:
    """``in_site``: whether to show the site's pages (a gate alone shows none)."""
    return {"in_site": gk().settings.in_site}


def known_gates(context: WebContext) -> list[str]:
    """Every gate this database knows of: the hub's reported gates, and this gate itself."""
    ids = {row.gate_id for row in context.store.site_gates.all()}
    ids.add(str(context.effective()["gate.id"]))
    return sorted(ids)


def gate_rows(context: WebContext, now: datetime) -> list[GateRow]:
    statuses = {row.gate_id: row for row in context.store.site_gates.all()}
    counts = context.store.site_gates.counts_since(context.local_day(now)[0])
    limit = timedelta(seconds=3 * float(context.effective()["site.stale_after_s"]))
    rows = []
    for gate_id in sorted(set(statuses) | set(counts)):
        status = statuses.get(gate_id)
        allowed, refused = counts.get(gate_id, (0, 0))
        stale = status is not None and status.online and now - status.received_at > limit
        rows.append(GateRow(gate_id, status, allowed, refused, stale))
    return rows


@bp.get("/site/status")
@login_required()
def index() -> str:
    context = gk()
    now = context.clock.now()
    expiry_h = float(context.effective()["policy.presence_expiry_h"])
    conflicts = context.store.site_presence.conflicts(
        since=now - timedelta(days=CONFLICT_DAYS), expiry_h=expiry_h
    )
    return render_template(
        "site_status.html",
        gates=gate_rows(context, now),
        conflicts=conflicts,
        conflict_days=CONFLICT_DAYS,
        now=now,
    )
