"""The gate screen: what the visitor in front of the camera sees.

A full-screen page that Chromium shows in kiosk mode on a monitor or the
Pi's touchscreen at the gate. It polls :func:`state` a few times a second and
shows each decision for a few seconds, in Vietnamese first and English second,
whatever language the admin pages are in (the words come from
:mod:`kiosk.messages` and :data:`LABELS`, not from Flask-Babel).

Who may open it: the machine itself (the Pi's own screen), a screen elsewhere
that carries the site's display token (``/display?token=...``), or anyone
logged in.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request
from flask.blueprints import BlueprintSetupState

from admin_web.auth import current_user
from admin_web.context import gk
from admin_web.dashboard import HEALTH_STALE_S
from admin_web.presenting import DENYLISTED, mask_name
from admin_web.token_guesses import TokenGuesses
from kiosk.codes.base import KIND_HCERT
from kiosk.messages import Message, message_for
from kiosk.store import Event, KioskHealth

bp = Blueprint("display", __name__)

RECENT_S = 10.0
"""A decision older than this is not reported: a screen opened (or reloaded)
later does not show someone else's stale decision."""

LABELS: dict[str, Message] = {
    "idle": Message("Đưa mã QR vào camera", "Hold your QR code to the camera"),
    "inside": Message("Đang ở trong", "Inside"),
    "entry": Message("Vào", "Entry"),
    "exit": Message("Ra", "Exit"),
    "fault": Message("Cổng đang lỗi — vui lòng gặp bảo vệ", "Gate fault — please see the guard"),
    "offline": Message("Mất kết nối", "Offline"),
    "forbidden": Message(
        "Không được phép xem màn hình cổng", "Not allowed to view the gate screen"
    ),
}
"""The screen's fixed words, always both languages."""

_PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def _from_this_machine() -> bool:
    """The request comes from this machine's loopback.

    ``remote_addr`` is what waitress established: the TCP peer, or, behind
    the proxy named by ``web.trusted_proxy``, the client the proxy reports
    (see :mod:`kiosk.webserver`); no header is read here to grant anything.
    Without a trusted proxy, a loopback request that carries a forwarding
    header came through a proxy nobody said to trust, on behalf of anyone:
    it is not taken as local.
    """
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not address.is_loopback:
        return False
    if gk().settings["web.trusted_proxy"]:
        return True
    return not any(name in request.headers for name in _PROXY_HEADERS)


def _token_matches(given: str) -> bool:
    expected = str(gk().settings["web.display_token"])
    if not expected or not given:
        return False
    # Bytes: compare_digest refuses non-ASCII str, and a token is anyone's input.
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _token_given() -> str | None:
    """The ``?token=`` of the request if it is the site's display token."""
    given = request.args.get("token", "")
    return given if _token_matches(given) else None


def _forbidden() -> Response:
    text = LABELS["forbidden"]
    return Response(f"{text.vi}.\n{text.en}.\n", status=403, mimetype="text/plain")


def _too_many_guesses(wait_s: float) -> Response:
    minutes = max(1, int(wait_s // 60 + 1))
    return Response(
        f"Quá nhiều mã màn hình sai; thử lại sau {minutes} phút.\n"
        f"Too many wrong display tokens; try again in {minutes} min.\n",
        status=429,
        mimetype="text/plain",
        headers={"Retry-After": str(int(wait_s) + 1)},
    )


def _guesses() -> TokenGuesses:
    guesses: TokenGuesses = current_app.extensions["gatekiosk.display_guesses"]
    return guesses


@bp.record_once
def _count_guesses(state: BlueprintSetupState) -> None:
    state.app.extensions["gatekiosk.display_guesses"] = TokenGuesses()


def screen_access(view: Callable[..., Any]) -> Callable[..., Any]:
    """Let through the local machine, a valid display token or a logged-in user.

    Wrong tokens are counted per client address (as waitress established
    it); after :data:`~admin_web.token_guesses.MAX_GUESSES` in the window,
    that address may try no token, right or wrong, until the window ends.
    """

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if _from_this_machine() or current_user() is not None:
            return view(*args, **kwargs)
        given = request.args.get("token", "")
        if not given:
            return _forbidden()
        address = request.remote_addr or "?"
        now_s = gk().clock.monotonic()
        wait_s = _guesses().wait_s(address, now_s)
        if wait_s > 0:
            return _too_many_guesses(wait_s)
        if not _token_matches(given):
            _guesses().wrong(address, now_s)
            return _forbidden()
        return view(*args, **kwargs)

    return wrapped


def gate_fault(health: KioskHealth | None, now: datetime) -> bool:
    """The kiosk reports a fault, or is not running (no health, or stale)."""
    if health is None:
        return True
    if abs((now - health.updated_at).total_seconds()) >= HEALTH_STALE_S:
        return True
    return bool(health.fault)


def _day_month_year(iso_date: str | None) -> str:
    """``YYYY-MM-DD`` as ``dd/mm/yyyy``, the way a Vietnamese ID card prints it."""
    if not iso_date:
        return ""
    try:
        return date.fromisoformat(iso_date).strftime("%d/%m/%Y")
    except ValueError:
        return iso_date


def hcert_identity(event: Event) -> dict[str, str] | None:
    """The full name, the Latin name and the date of birth of a verified HC1:
    certificate's holder; None for every other kind.

    A deliberate exception to the masked name: the signature proves the
    certificate, not that the person holding the phone is its holder, so the
    guard compares these with an ID card (the issue "EU Digital COVID
    Certificates and Vietnam's vaccine passport"). The queue can read them
    too; other kinds, a CCCD included, keep the masked name only.
    """
    if event.kind != KIND_HCERT:
        return None
    return {
        "name": event.display_name or "",
        "name_latin": event.name_latin or "",
        "birth_date": _day_month_year(event.birth_date),
    }


def decision_json(event: Event, *, now: datetime) -> dict[str, Any]:
    """One decision as the queue at the gate may see it.

    The masked name only: the people queueing behind do not need the ID
    number, masked or not, nor the kind of code. The exception is
    ``identity``, for HC1: certificates only (see :func:`hcert_identity`).
    """
    message = message_for(event.reason)
    warning = message_for(event.warning) if event.warning else None
    # A denylisted person is refused in front of the queue: not even initials.
    anonymous = event.reason == DENYLISTED
    return {
        "decision": event.decision,
        "direction": event.direction,
        "masked_name": "" if anonymous else mask_name(event.display_name),
        "identity": None if anonymous else hcert_identity(event),
        "reason": event.reason,
        "message": {"vi": message.vi, "en": message.en},
        "warning": None if warning is None else {"vi": warning.vi, "en": warning.en},
        "age_s": round(max(0.0, (now - event.at).total_seconds()), 3),
    }


def _newest_recent(after: int, latest: int, now: datetime) -> Event | None:
    """The newest event after ``after`` if it happened within :data:`RECENT_S`."""
    if latest <= after:
        return None
    rows = gk().store.events_after(max(after, latest - 1), limit=1)
    if not rows:
        return None
    event = rows[-1][1]
    if abs((now - event.at).total_seconds()) > RECENT_S:
        return None
    return event


@bp.get("/display")
@screen_access
def index() -> str:
    """The page; it carries no event data, only the URL to poll."""
    return render_template("display.html", labels=LABELS, token=_token_given() or "")


@bp.get("/display/state")
@screen_access
def state() -> Any:
    """The newest decision after ``after`` (none if older than
    :data:`RECENT_S`), occupancy, and whether the gate is at fault.

    Without ``after`` the newest recent decision is reported, so a reloaded
    screen picks up a decision just made.
    """
    context = gk()
    settings = context.effective()
    now = context.clock.now()
    after = max(0, request.args.get("after", default=0, type=int))
    latest = context.store.latest_cursor()
    event = _newest_recent(after, latest, now)
    return jsonify(
        {
            # The log's position even if it is behind ``after`` (a database
            # replaced under a running screen): the screen follows it.
            "cursor": latest,
            "event": None if event is None else decision_json(event, now=now),
            "occupancy": context.store.occupancy(
                now=now, expiry_h=settings["policy.presence_expiry_h"]
            ),
            "capacity": settings["policy.capacity"],
            "fault": gate_fault(context.store.read_health(settings["gate.id"]), now),
        }
    )
