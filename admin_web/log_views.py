"""The log: search every recorded event, read one in full, deny a person from it."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from admin_web.auth import current_user, login_required
from admin_web.context import gk
from admin_web.forms import KINDS, parse_filter
from admin_web.site_status import known_gates
from kiosk.store import Event

bp = Blueprint("log", __name__)

PAGE_SIZE = 50
MAX_NOTE_CHARS = 500
PAGE_LINKS_AROUND = 2
"""Page links shown on each side of the current page."""


def _page_numbers(page: int, pages: int) -> list[int]:
    """The page numbers to link: the first, the last, and a few around ``page``."""
    around = range(max(1, page - PAGE_LINKS_AROUND), min(pages, page + PAGE_LINKS_AROUND) + 1)
    return sorted({1, pages, *around})


def _offset(minutes: int) -> str:
    """A UTC offset in minutes as ``+07:00``."""
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}"


@bp.get("/log")
@login_required()
def index() -> str:
    context = gk()
    parsed = parse_filter(request.args, context.tz)
    for problem in parsed.problems:
        flash(problem, "error")
    total = context.store.count_events(parsed.where)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, request.args.get("page", 1, type=int) or 1), pages)
    events = context.store.find_events(parsed.where, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    reasons = context.store.event_reasons()
    if parsed.where.reason and parsed.where.reason not in reasons:
        reasons = sorted([*reasons, parsed.where.reason])
    return render_template(
        "log.html",
        events=events,
        total=total,
        page=page,
        pages=pages,
        page_numbers=_page_numbers(page, pages),
        values=parsed.values,
        reasons=reasons,
        kinds=KINDS,
        tz_name=context.tz.key,
        gates=known_gates(context),
    )


def _event_or_404(event_id: str) -> Event:
    event = gk().store.event_by_id(event_id)
    if event is None:
        abort(404)
    return event


def _viewer_is_manager() -> bool:
    user = current_user()
    return user is not None and user.role == "manager"


def _detail_page(event: Event, *, note: str = "", status: int = 200) -> tuple[str, int]:
    context = gk()
    denylisted = event.subject_hash is not None and context.store.is_denylisted(event.subject_hash)
    page = render_template(
        "event.html",
        event=event,
        utc=event.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        offset=_offset(event.utc_offset_min),
        tz_name=context.tz.key,
        denylisted=denylisted,
        # Full ID numbers (kept only when privacy.store_full_id is on) are for
        # managers; guards see the masked ID, as they do not see phone numbers.
        show_id_number=_viewer_is_manager(),
        note=note,
        max_note_chars=MAX_NOTE_CHARS,
    )
    return page, status


@bp.get("/log/<event_id>")
@login_required()
def detail(event_id: str) -> Any:
    return _detail_page(_event_or_404(event_id))


@bp.post("/log/<event_id>/denylist")
@login_required("manager")
def denylist(event_id: str) -> Any:
    """Deny the person of this event from now on, with the manager's reason."""
    event = _event_or_404(event_id)
    note = request.form.get("note", "").strip()
    if event.subject_hash is None:
        flash(_("This event identifies nobody, so there is no one to deny."), "error")
        return _detail_page(event, status=400)
    if not note:
        flash(_("Write a note saying why this person is denied."), "error")
        return _detail_page(event, status=400)
    if len(note) > MAX_NOTE_CHARS:
        flash(_("The note is longer than %(count)d characters.", count=MAX_NOTE_CHARS), "error")
        return _detail_page(event, note=note, status=400)
    context = gk()
    user = current_user()
    assert user is not None  # login_required
    now = context.clock.now()
    label = event.display_name or event.masked_id or ""
    context.store.add_to_denylist(
        event.subject_hash, label=label, note=note, at=now, added_by=user.name
    )
    context.store.audit(
        actor=user.name,
        action="denylist-add",
        detail={
            "subject_hash": event.subject_hash,
            "label": label,
            "note": note,
            "event_id": event.id,
        },
        at=now,
    )
    flash(_("Added to the denylist. The gate refuses this person from now on."), "success")
    return redirect(url_for("log.detail", event_id=event.id))
