"""Logging in and out, who may see what, and throttling of password guessing."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from werkzeug.wrappers.response import Response

from admin_web.context import gk
from admin_web.routing import home_endpoint
from kiosk.accounts import authenticate, valid_name
from kiosk.store import ThrottleRule, User
from kiosk.store.throttle import LoginKeys, login_keys

bp = Blueprint("auth", __name__)

FREE_FAILURES = 5
"""Failed logins allowed before each further try must wait."""
FIRST_WAIT_S = 30
MAX_WAIT_S = 15 * 60

F = TypeVar("F", bound=Callable[..., Any])


def wait_after(failures: int) -> timedelta:
    """How long the next try must wait: doubling from 30 s after the 5th miss, capped."""
    if failures < FREE_FAILURES:
        return timedelta(0)
    return timedelta(seconds=min(MAX_WAIT_S, FIRST_WAIT_S * 2 ** (failures - FREE_FAILURES)))


def _login_rule() -> ThrottleRule:
    """:func:`wait_after` as throttle steps: a wait for each count where it changes."""
    steps: list[tuple[int, timedelta]] = []
    failures = FREE_FAILURES
    while not steps or steps[-1][1] < timedelta(seconds=MAX_WAIT_S):
        steps.append((failures, wait_after(failures)))
        failures += 1
    return ThrottleRule(waits=tuple(steps))


LOGIN_RULE = _login_rule()


def _throttle_keys(name: str) -> LoginKeys:
    """The throttle's keys of a login: per address, and per account at that
    address if the name is a valid one (else nothing of it is stored)."""
    return login_keys(name if valid_name(name) else None, request.remote_addr)


def current_user() -> User | None:
    """The logged-in user, checked against the database on every request.

    A disabled account or a changed password ends existing sessions.
    """
    if "user" in g:
        return cast(User | None, g.user)
    user = None
    user_id = session.get("uid")
    if isinstance(user_id, int):
        candidate = gk().store.user_by_id(user_id)
        if (
            candidate is not None
            and not candidate.disabled
            and session.get("pwv") == candidate.password_changed_at.isoformat()
            and session.get("sev") == candidate.session_epoch
        ):
            user = candidate
    if user is None and "uid" in session:
        session.clear()
    g.user = user
    return user


def login_required(*roles: str) -> Callable[[F], F]:
    """Only logged-in users, and only these roles if any are named."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                if request.path.startswith("/api/") or request.method != "GET":
                    abort(401)
                return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
            if roles and user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return cast(F, wrapped)

    return decorate


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to somewhere else."""
    if not target:
        return url_for(home_endpoint())
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for(home_endpoint())
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""))
    name = request.form.get("name", "").strip()
    password = request.form.get("password", "")
    keys = _throttle_keys(name)
    # Counted before the password is checked, by the statement that decides:
    # parallel guesses cannot slip between a check and a count.
    verdict = gk().store.throttle_admit(keys.all, LOGIN_RULE, at=gk().clock.now())
    if not verdict.admitted:
        wait_s = math.ceil(verdict.retry_after.total_seconds())
        flash(_("Too many failed logins. Try again in %(seconds)d s.", seconds=wait_s), "error")
        return render_template("login.html", next=request.form.get("next", "")), 429
    user = authenticate(gk().store, name, password, hashing=gk().password_hashing)
    now = gk().clock.now()
    if user is None:
        flash(_("Wrong user name or password."), "error")
        return render_template("login.html", next=request.form.get("next", "")), 401
    # A success forgets this account's misses at this address and takes back
    # only its own per-address hit: failures from the address stay counted.
    if keys.account is not None:
        gk().store.throttle_clear([keys.account])
    gk().store.throttle_refund([keys.address])
    # A fresh session: nothing chosen before login (fixation) survives it.
    lang = session.get("lang")
    session.clear()
    session["uid"] = user.id
    session["pwv"] = user.password_changed_at.isoformat()
    session["sev"] = user.session_epoch
    if lang:
        session["lang"] = lang
    session.permanent = True
    gk().store.audit(actor=user.name, action="login", detail={}, at=now)
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
def logout() -> Response:
    user = current_user()
    if user is not None:
        # The cookie lives in the browser: clearing it is not enough if a copy
        # was taken. A new epoch makes every earlier copy worthless.
        gk().store.end_sessions(user.id)
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    return redirect(url_for("auth.login"))
