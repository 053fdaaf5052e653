"""Admit once: a guard lets someone in by hand from the web.

The web owns no pins, so it files a request in the database; the kiosk picks
it up within a second, records a manual entry with the guard's name and
reason, and pulses the door relay. The page then follows the request until
the gate has carried it out (or it expired because the gate did not).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _

from admin_web.auth import current_user, login_required
from admin_web.context import gk
from admin_web.site_status import known_gates
from kiosk.admits import ADMIT_MAX_AGE_S
from kiosk.codes.base import normalise_name
from kiosk.store import AdmitRequest, AuditNote, User

log = logging.getLogger(__name__)

bp = Blueprint("guard", __name__)

REASON_MAX_CHARS = 200
NAME_MAX_CHARS = 100
GRACE_S = 5.0
"""After ADMIT_MAX_AGE_S plus this, a request still pending was not carried
out: the kiosk is not running (it marks such requests expired when it starts)."""


def _user() -> User:
    user = current_user()
    assert user is not None  # login_required let the request through
    return user


def status_of(admit: AdmitRequest, now: datetime) -> str:
    """pending, done or expired, as a guard should understand it now."""
    if admit.status == "pending":
        age_s = (now - admit.requested_at).total_seconds()
        if age_s > ADMIT_MAX_AGE_S + GRACE_S:
            return "expired"
    return admit.status


def status_text(status: str) -> str:
    if status == "done":
        return _("Done: the gate opened and the entry is in the log.")
    if status == "expired":
        return _(
            "Not carried out: the gate did not take the request in time. "
            "Check that the kiosk is running, then try again."
        )
    return _("Waiting for the gate…")


def _own_request(request_id: int) -> AdmitRequest:
    """The request, if this user may follow it: guards their own, managers any."""
    admit = gk().store.admit_request(request_id)
    user = _user()
    if admit is None or (user.role != "manager" and admit.actor != user.name):
        abort(404)
    return admit


def _form_page(form: dict[str, str], problems: dict[str, str], status: int) -> Any:
    return (
        render_template(
            "admit.html",
            form=form,
            problems=problems,
            reason_max=REASON_MAX_CHARS,
            name_max=NAME_MAX_CHARS,
            admit=None,
            gates=known_gates(gk()),
            this_gate=str(gk().effective()["gate.id"]),
        ),
        status,
    )


@bp.route("/admit", methods=["GET", "POST"])
@login_required("guard", "manager")
def admit() -> Any:
    if request.method == "GET":
        return _form_page({}, {}, 200)
    form = {
        "reason": request.form.get("reason", "").strip(),
        "name": request.form.get("name", "").strip(),
        "gate": request.form.get("gate", "").strip(),
    }
    problems: dict[str, str] = {}
    # On a site's hub the guard names the gate; on a gate it is this gate.
    this_gate = str(gk().effective()["gate.id"])
    if form["gate"] and form["gate"] not in known_gates(gk()):
        problems["gate"] = _("Unknown gate; it is ignored.")
    if not form["reason"]:
        problems["reason"] = _("Enter the reason for letting this person in.")
    elif len(form["reason"]) > REASON_MAX_CHARS:
        problems["reason"] = _("Use at most %(count)d characters.", count=REASON_MAX_CHARS)
    if len(form["name"]) > NAME_MAX_CHARS:
        problems["name"] = _("Use at most %(count)d characters.", count=NAME_MAX_CHARS)
    elif form["name"]:
        # Like every other name: no control characters (a leading NUL made a
        # live formula in a CSV export), letters and spaces, NFC.
        name = normalise_name(form["name"])
        if name is None:
            problems["name"] = _(
                "A name has letters and spaces only (also ' - .), up to %(count)d characters.",
                count=NAME_MAX_CHARS,
            )
        else:
            form["name"] = name
    if problems:
        flash(_("Nobody was admitted. Correct the values marked below."), "error")
        return _form_page(form, problems, 400)

    user = _user()
    now = gk().clock.now()
    detail = {"reason": form["reason"], "name": form["name"]}  # and the "request" id
    if form["gate"] not in ("", this_gate):
        detail["gate"] = form["gate"]
    request_id = gk().store.request_admit(
        actor=user.name,
        reason=form["reason"],
        display_name=form["name"] or None,
        at=now,
        audit=AuditNote(user.name, "admit", detail, now),
        gate_id=form["gate"] if form["gate"] not in ("", this_gate) else None,
    )
    log.info("%s asked the gate to admit once (request %d)", user.name, request_id)
    return redirect(url_for("guard.admit_status", request_id=request_id))


@bp.get("/admit/<rowid:request_id>")
@login_required("guard", "manager")
def admit_status(request_id: int) -> Any:
    admit = _own_request(request_id)
    status = status_of(admit, gk().clock.now())
    return render_template(
        "admit.html",
        form={},
        problems={},
        reason_max=REASON_MAX_CHARS,
        name_max=NAME_MAX_CHARS,
        admit=admit,
        status=status,
        status_text=status_text(status),
    )


@bp.get("/api/admit/<rowid:request_id>")
@login_required("guard", "manager")
def admit_status_json(request_id: int) -> Any:
    """What the status page polls until the request is no longer pending."""
    admit = _own_request(request_id)
    status = status_of(admit, gk().clock.now())
    return jsonify({"id": admit.id, "status": status, "text": status_text(status)})
