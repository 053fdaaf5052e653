"""The log's filter, from a query string to an :class:`~kiosk.store.EventFilter`.

Shared by the log page, its exports and the "who was inside" page, so a
download always covers what the page showed. Times come from
``<input type="datetime-local">`` (``2026-11-28T09:00``, no zone): they are
read in the site's time zone and turned into aware UTC. Malformed input never
fails the request: the field is ignored and the problem is reported in words.
A well-formed time outside :data:`MIN_YEAR` to :data:`MAX_YEAR` (a browser's
date picker offers years 0001 to 275760) is refused with a 400 and a message
in Vietnamese then English (:class:`DateOutOfRange`): such a range cannot
be what anyone meant, and near year 1 or 9999 the conversion to UTC overflows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import Response
from flask_babel import gettext as _
from werkzeug.exceptions import BadRequest

from kiosk.site.topics import is_valid_id
from kiosk.store import DECISIONS, DIRECTIONS, EventFilter

KINDS = (
    "cccd",
    "pc-covid",
    "declaration",
    "staff-pass",
    "hcert",
    "unrecognised",
    "override",
    "manual",
)
"""Code kinds the log's filter offers."""

FILTER_FIELDS = ("from", "to", "gate", "direction", "decision", "reason", "kind", "clock", "q")
"""Query-string names of the filter, in the order links carry them."""

CLOCK_STATES = ("synced", "unsynced")
"""The log filter's ``clock`` values: events recorded with or without a synchronised clock."""

MAX_SEARCH_CHARS = 100

_LOCAL_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")

MIN_YEAR = 1970
MAX_YEAR = 2999
"""The years a ``from`` or ``to`` may fall in: every event ever recorded
(a Pi without a clock may start at 1970), and far from datetime's limits."""


class DateOutOfRange(BadRequest):
    """A ``from`` or ``to`` outside :data:`MIN_YEAR` to :data:`MAX_YEAR`: 400."""

    TEXT = (
        f"Ngày giờ phải nằm trong các năm {MIN_YEAR} đến {MAX_YEAR}.\n"
        f"The date and time must fall in the years {MIN_YEAR} to {MAX_YEAR}.\n"
    )

    def get_response(self, *args: object, **kwargs: object) -> Response:
        return Response(self.TEXT, status=400, mimetype="text/plain")


_REASON_CODE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


@dataclass(frozen=True)
class ParsedFilter:
    """A filter read from a query string.

    ``values`` holds only the accepted fields, as text, to refill the form and
    to carry into page and download links; ``problems`` says, in the page's
    language, what was ignored and why.
    """

    where: EventFilter
    values: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def parse_local(text: str, tz: ZoneInfo) -> datetime:
    """A ``datetime-local`` value read in ``tz``, as aware UTC; ValueError if
    malformed, :class:`DateOutOfRange` if outside the years allowed.

    A local time that a daylight-saving change skips or repeats is taken with
    its first offset (``fold=0``).
    """
    for fmt in _LOCAL_FORMATS:
        try:
            naive = datetime.strptime(text, fmt)  # noqa: DTZ007 - the zone is attached below
        except ValueError:
            continue
        if not MIN_YEAR <= naive.year <= MAX_YEAR:
            raise DateOutOfRange()
        return naive.replace(tzinfo=tz).astimezone(UTC)
    raise ValueError(f"not a local date and time: {text!r}")


def local_input(at: datetime, tz: ZoneInfo) -> str:
    """An aware time as a ``datetime-local`` value in ``tz`` (to the minute)."""
    return at.astimezone(tz).strftime("%Y-%m-%dT%H:%M")


def parse_range(
    args: Mapping[str, str], tz: ZoneInfo
) -> tuple[datetime | None, datetime | None, dict[str, str], list[str]]:
    """The ``from`` and ``to`` fields: (start, end, accepted values, problems).

    ``end`` is exclusive, as in :class:`EventFilter`. A start that is not
    before the end makes both ignored.
    """
    values: dict[str, str] = {}
    problems: list[str] = []
    bounds: dict[str, datetime | None] = {"from": None, "to": None}
    for name in ("from", "to"):
        text = (args.get(name) or "").strip()
        if not text:
            continue
        try:
            bounds[name] = parse_local(text, tz)
        except ValueError:
            problems.append(
                _("The start date and time was not understood and is ignored.")
                if name == "from"
                else _("The end date and time was not understood and is ignored.")
            )
            continue
        values[name] = text
    start, end = bounds["from"], bounds["to"]
    if start is not None and end is not None and start >= end:
        problems.append(_("The start must be before the end; the time range is ignored."))
        return None, None, {}, problems
    return start, end, values, problems


def parse_gate(args: Mapping[str, str], values: dict[str, str], problems: list[str]) -> str | None:
    """The ``gate`` filter (a gate id, as the site's certificates allow), kept in ``values``."""
    gate = (args.get("gate") or "").strip() or None
    if gate is not None and not is_valid_id(gate):
        problems.append(_("Unknown gate; it is ignored."))
        return None
    if gate is not None:
        values["gate"] = gate
    return gate


def parse_filter(args: Mapping[str, str], tz: ZoneInfo) -> ParsedFilter:
    """The log filter from query-string ``args``, local times read in ``tz``."""
    start, end, values, problems = parse_range(args, tz)

    def choice(name: str, allowed: tuple[str, ...], problem: str) -> str | None:
        text = (args.get(name) or "").strip()
        if not text:
            return None
        if text not in allowed:
            problems.append(problem)
            return None
        values[name] = text
        return text

    direction = choice("direction", DIRECTIONS, _("Unknown direction; it is ignored."))
    decision = choice("decision", DECISIONS, _("Unknown decision; it is ignored."))
    kind = choice("kind", KINDS, _("Unknown code kind; it is ignored."))
    clock = choice("clock", CLOCK_STATES, _("Unknown clock state; it is ignored."))

    reason = (args.get("reason") or "").strip() or None
    if reason is not None:
        if _REASON_CODE.fullmatch(reason):
            values["reason"] = reason
        else:
            problems.append(_("Unknown reason code; it is ignored."))
            reason = None

    gate = parse_gate(args, values, problems)

    text = (args.get("q") or "").strip() or None
    if text is not None:
        if len(text) > MAX_SEARCH_CHARS:
            problems.append(
                _(
                    "The search text was longer than %(count)d characters and was shortened.",
                    count=MAX_SEARCH_CHARS,
                )
            )
            text = text[:MAX_SEARCH_CHARS].strip()
        values["q"] = text

    where = EventFilter(
        start=start,
        end=end,
        direction=direction,
        decision=decision,
        reason=reason,
        kind=kind,
        text=text,
        clock_synced=None if clock is None else clock == "synced",
        gate_id=gate,
    )
    ordered = {name: values[name] for name in FILTER_FIELDS if name in values}
    return ParsedFilter(where=where, values=ordered, problems=problems)
