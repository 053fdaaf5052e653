"""Who was inside: everyone whose presence overlapped a time window (contact tracing)."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, flash, render_template, request

from admin_web.auth import login_required
from admin_web.context import gk
from admin_web.forms import local_input, parse_gate, parse_range
from admin_web.presenting import people_inside
from admin_web.site_status import known_gates

bp = Blueprint("inside", __name__)


@bp.get("/inside")
@login_required()
def index() -> str:
    """The window comes from ``from`` and ``to`` (local ``datetime-local`` values);
    by default it is today, from local midnight to now."""
    context = gk()
    tz = context.tz
    now = context.clock.now()
    start, end, _values, problems = parse_range(request.args, tz)
    gate_values: dict[str, str] = {}
    gate = parse_gate(request.args, gate_values, problems)
    for problem in problems:
        flash(problem, "error")
    if start is None:
        # Today until now; or the local day that the given end falls in.
        start = context.local_day(now if end is None else end - timedelta(microseconds=1))[0]
    if end is None:
        end = now if start < now else context.local_day(start)[1]
    expiry_h = context.effective()["policy.presence_expiry_h"]
    visits = context.store.visits(start, end, expiry_h=expiry_h)
    if gate is not None:
        visits = [visit for visit in visits if visit.gate_id == gate]
    return render_template(
        "inside.html",
        people=people_inside(visits),
        start=start,
        end=end,
        values={"from": local_input(start, tz), "to": local_input(end, tz), **gate_values},
        tz_name=tz.key,
        gates=known_gates(context),
        expiry_h=expiry_h,
    )
