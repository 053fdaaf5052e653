"""How events look on the pages and in JSON: local times, reasons in words."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Flask
from flask_babel import format_datetime, get_locale

from admin_web.context import gk
from kiosk.messages import message_for
from kiosk.store import Event


def local(at: datetime | None, fmt: str = "yyyy-MM-dd HH:mm:ss") -> str:
    """A time in the site's time zone (not the browser's, not the server's)."""
    if at is None:
        return ""
    return str(format_datetime(at.astimezone(gk().tz), fmt, rebase=False))


def reason_text(reason: str) -> str:
    """The visitor message for a reason, in the page's language."""
    message = message_for(reason)
    return message.en if str(get_locale()) == "en" else message.vi


def mask_name(name: str | None) -> str:
    """A name shown on the gate screen, where people queueing can read it:
    initials, then the given name (Vietnamese names end with it).
    "Nguyễn Văn An" -> "N. V. An"."""
    if not name:
        return ""
    words = name.split()
    return " ".join([f"{w[0]}." for w in words[:-1]] + words[-1:])


def event_json(event: Event, cursor: int | None = None) -> dict[str, Any]:
    """An event for the live views; the browser inserts it as text, never HTML."""
    message = message_for(event.reason)
    return {
        "cursor": cursor,
        "id": event.id,
        "time": local(event.at, "HH:mm:ss"),
        "date": local(event.at, "yyyy-MM-dd"),
        "direction": event.direction,
        "decision": event.decision,
        "reason": event.reason,
        "reason_text": reason_text(event.reason),
        "message": {"vi": message.vi, "en": message.en},
        "kind": event.kind,
        "name": event.display_name or "",
        "masked_name": mask_name(event.display_name),
        "masked_id": event.masked_id or "",
        "override": event.override,
        "warning": event.warning or "",
        "clock_synced": event.clock_synced,
        "actor": event.actor or "",
    }


def init_app(app: Flask) -> None:
    from admin_web.auth import current_user

    app.add_template_global(current_user, "current_user")
    app.add_template_global(lambda: str(get_locale()), "current_locale")
    app.add_template_filter(local, "local")
    app.add_template_filter(reason_text, "reason_text")
    app.add_template_filter(mask_name, "mask_name")
