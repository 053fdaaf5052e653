"""How events look on the pages and in JSON: local times, reasons in words."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from flask import Flask
from flask_babel import format_datetime, get_locale
from flask_babel import gettext as _

from admin_web.context import gk
from admin_web.labels import action_label, kind_choice, kind_text
from kiosk.codes.base import KIND_DECLARATION
from kiosk.messages import message_for
from kiosk.privacy import subject_hash
from kiosk.store import Event, Visit, search_fold

DATE = "dd/MM/yyyy"
"""The one date format people read, as Vietnamese write dates (CLDR pattern)."""
DATE_TIME = "dd/MM/yyyy HH:mm"
"""A date and a 24-hour time to the minute."""
DATE_TIME_S = "dd/MM/yyyy HH:mm:ss"
"""A date and a 24-hour time to the second: the log's own times."""


def local(at: datetime | None, fmt: str = DATE_TIME_S) -> str:
    """A time in the site's time zone (not the browser's, not the server's);
    ``fmt`` is a CLDR pattern, one of the constants above unless only the
    time of day is wanted (``HH:mm:ss``)."""
    if at is None:
        return ""
    return str(format_datetime(at.astimezone(gk().tz), fmt, rebase=False))


def day_month_year(iso_date: str | None) -> str:
    """A calendar date kept as ``YYYY-MM-DD`` (a date of birth) as people
    read it, ``dd/mm/yyyy``; anything else as it is."""
    if not iso_date:
        return ""
    try:
        return date.fromisoformat(iso_date).strftime("%d/%m/%Y")
    except ValueError:
        return iso_date


def reason_text(reason: str) -> str:
    """The visitor message for a reason, in the page's language."""
    message = message_for(reason)
    return message.en if str(get_locale()) == "en" else message.vi


DENYLISTED = "denylisted"
"""The reason of a denylist refusal, which the gate screen shows without a name."""


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
        "date": local(event.at, "yyyy-MM-dd"),  # for programs (openapi.yaml), not people
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


@dataclass(frozen=True)
class PersonInside:
    """One person on the "who was inside" page, with every stay in the window.

    A person is a subject: the codes that prove they belong to the same
    person share one (the subject hash, :mod:`kiosk.privacy`). A chip ID card
    and a personal QR showing the same full 12-digit ID number are one
    person; so are one staff member's passes. A health declaration carries
    only a name and a phone number, which anyone can type, so it proves no
    one's identity: a visitor who came in once with a declaration and once
    with their ID card is two rows, and ``shares_name`` marks both so the
    reader can decide.
    """

    subject_hash: str
    display_name: str | None
    masked_id: str | None
    stays: tuple[Visit, ...]
    shares_name: bool = False
    """Another person in the list has the same name (ignoring case and accents)."""


def people_inside(visits: list[Visit]) -> list[PersonInside]:
    """``visits`` grouped by person (see :class:`PersonInside`), in order of
    their first entry; the name and masked ID are those of the latest stay."""
    stays: dict[str, list[Visit]] = {}
    for visit in sorted(visits, key=lambda v: v.entered_at):
        stays.setdefault(visit.subject_hash, []).append(visit)
    names: dict[str, int] = {}
    for group in stays.values():
        name = search_fold(" ".join((group[-1].display_name or "").split()))
        if name:
            names[name] = names.get(name, 0) + 1
    people = []
    for subject, group in stays.items():
        latest = group[-1]
        name = search_fold(" ".join((latest.display_name or "").split()))
        people.append(
            PersonInside(
                subject,
                latest.display_name,
                latest.masked_id,
                tuple(group),
                shares_name=bool(name) and names[name] > 1,
            )
        )
    return people


ANSWERS_LOOKBACK = timedelta(days=7)
"""How long before an event a declaration may have expired and still be the
one scanned (a refusal for expiry names an expired code)."""


@dataclass(frozen=True)
class Answer:
    """One answer of a declaration, as the event page shows it."""

    question: str
    text: str
    free_text: bool


def declaration_answers(event: Event) -> list[Answer]:
    """The answers of the declaration an event's code was, in the page's
    language; empty for other kinds, or when the record is gone (purged).

    The event keeps only the code's subject hash, so the declaration is found
    by hashing the ids of those issued up to the event, as the gate hashed
    the one it read (:mod:`kiosk.privacy`: ``declaration:<code id>``; events
    recorded before subjects had namespaces hashed the bare id).
    """
    from admin_web.declare import question_text, site_questions

    if event.kind != KIND_DECLARATION or not event.subject_hash:
        return []
    context = gk()
    codes = context.store.site_codes(KIND_DECLARATION, now=event.at - ANSWERS_LOOKBACK)
    record = None
    for code in codes:
        if code.issued_at > event.at:
            continue
        for subject in (f"{KIND_DECLARATION}:{code.id}", code.id):
            try:
                matches = subject_hash(context.hash_key, subject) == event.subject_hash
            except ValueError:  # a bare id, refused once subjects have namespaces
                continue
            if matches:
                record = code
                break
        if record is not None:
            break
    if record is None:
        return []
    asked = {q.key: q for q in site_questions()}
    answers = []
    for key, value in record.answers.items():
        question = asked.get(key)
        label = question_text(question) if question is not None else key
        if isinstance(value, str):
            answers.append(Answer(label, value, True))
        elif value is not None:
            answers.append(Answer(label, str(_("yes") if value else _("no")), False))
    return answers


def init_app(app: Flask) -> None:
    from admin_web.auth import current_user

    app.add_template_global(current_user, "current_user")
    app.add_template_global(lambda: str(get_locale()), "current_locale")
    app.add_template_filter(local, "local")
    app.add_template_filter(reason_text, "reason_text")
    app.add_template_filter(mask_name, "mask_name")
    app.add_template_filter(day_month_year, "day_month_year")
    app.add_template_global(declaration_answers, "declaration_answers")
    app.add_template_filter(kind_text, "kind_text")
    app.add_template_filter(action_label, "action_label")
    app.add_template_filter(kind_choice, "kind_choice")
    app.jinja_env.globals.update(DATE=DATE, DATE_TIME=DATE_TIME)
