"""Health declarations on the web: the public form, the guard's desk, the
poster, the managers' list and the questions.

A visitor scans the poster at the gate, fills in the form on their phone and
gets a signed QR code on screen (:func:`kiosk.declarations.issue_declaration`
signs it and keeps the site's record). The code is never stored and never
served by a route of its own: it goes out once, as a ``data:`` image inside
the result page, and the download link is the same ``data:`` URL. So a
stranger who guesses a code id finds nothing to fetch.

The form asks for the minimum the law allows: name, phone, the site's
yes/no questions and consent. No ID number: the site's record has no place
for it and the gate does not need it.

Who may do what: anyone may declare (rate-limited per client address);
guards and managers fill in the form at the desk for a visitor without a
phone and print the poster; guards see the list without phone numbers;
managers see phones, revoke declarations and edit the questions.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import logging
import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from werkzeug.wrappers.response import Response

from admin_web.auth import current_user, login_required
from admin_web.context import gk
from admin_web.presenting import DATE_TIME, local
from admin_web.question_rows import posted_rows, questions_from_rows, rows_of
from kiosk.codes.base import KIND_DECLARATION
from kiosk.codes.sitecodes import qr_version, render_png
from kiosk.declarations import (
    QUESTIONS_SETTING,
    TEXT_ANSWER_MAX_CHARS,
    DeclarationError,
    Issued,
    Question,
    clean_name,
    clean_phone,
    clean_text_answer,
    issue_declaration,
    questions_from,
    questions_setting,
)
from kiosk.keys import KeysError
from kiosk.store import AuditNote, SiteCode, ThrottleRule, User
from kiosk.store.throttle import bounded_address

log = logging.getLogger(__name__)

bp = Blueprint("declare", __name__)

NAME_MAX_CHARS = 100
PHONE_MAX_CHARS = 25
RATE_WINDOW = timedelta(hours=1)
"""``codes.declarations_per_hour`` counts declarations in this window, from
an address's first declaration in it."""


QR_MIN_PX = 320
"""The PNG's width in pixels at least: a phone shows it about 300 CSS px wide."""
POSTER_QR_MIN_PX = 600
POSTER_URL_MAX_CHARS = 300

TIME_FORMAT = DATE_TIME
"""How the pages show a code's validity: local time, Vietnamese date order."""


# ----------------------------------------------------------------------------- helpers


def qr_data_url(text: str, *, min_px: int = QR_MIN_PX) -> str:
    """``text`` as a QR code PNG in a ``data:`` URL, at least ``min_px`` wide.

    The page's CSP allows ``data:`` images, and nothing is left on the server.
    """
    modules = 17 + 4 * qr_version(text) + 2 * 4  # the symbol plus its quiet zone
    scale = max(2, math.ceil(min_px / modules))
    out = io.BytesIO()
    render_png(text, out, scale=scale)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def site_questions() -> tuple[Question, ...]:
    return questions_from(gk().store.site_settings())


def question_text(question: Question) -> str:
    """The question in the page's language (Vietnamese unless English is asked for)."""
    return question.en if str(get_locale()) == "en" else question.vi


def site_name() -> str:
    return str(gk().effective()["gate.site_name"]).strip()


def _user() -> User:
    user = current_user()
    assert user is not None  # login_required let the request through
    return user


# ----------------------------------------------------------------------------- the form


def name_problem(name: str, *, missing: str) -> str | None:
    """Why a typed name cannot be signed into a code, or None if it can."""
    if not name.strip():
        return missing
    try:
        clean_name(name)
    except DeclarationError:
        return str(
            _(
                "A name has letters and spaces only (also ' - .), up to %(count)d characters.",
                count=NAME_MAX_CHARS,
            )
        )
    return None


@dataclass
class Declaring:
    """What was typed into the declaration form, and what is wrong with it."""

    name: str = ""
    phone: str = ""
    answers: dict[str, str] = field(default_factory=dict)
    """Question key -> "yes" or "no"; unanswered questions are absent."""
    texts: dict[str, str] = field(default_factory=dict)
    """Free-text question key -> what was typed (optional, may be empty)."""
    consent: bool = False
    problems: dict[str, str] = field(default_factory=dict)
    """Field ("name", "phone", "consent", "answer-<key>", "" for the form) -> message."""

    @classmethod
    def from_form(cls, form: Mapping[str, str], questions: Sequence[Question]) -> Declaring:
        answers, texts = {}, {}
        for question in questions:
            value = form.get(f"answer-{question.key}", "")
            if question.free_text:
                texts[question.key] = value[: TEXT_ANSWER_MAX_CHARS * 2]
            elif value in ("yes", "no"):
                answers[question.key] = value
        return cls(
            name=form.get("name", "")[: NAME_MAX_CHARS * 2],
            phone=form.get("phone", "")[:PHONE_MAX_CHARS],
            answers=answers,
            texts=texts,
            consent=form.get("consent") == "yes",
        )

    def check(self, questions: Sequence[Question]) -> None:
        """Fill :attr:`problems` with one message per field that cannot be accepted."""
        if problem := name_problem(self.name, missing=_("Enter your full name.")):
            self.problems["name"] = problem
        if not self.phone.strip():
            self.problems["phone"] = _("Enter your phone number.")
        else:
            try:
                clean_phone(self.phone)
            except DeclarationError:
                self.problems["phone"] = _(
                    "A phone number has 9 to 15 digits, for example 0912 345 678."
                )
        for question in questions:
            if question.free_text:
                try:
                    clean_text_answer(self.texts.get(question.key, ""))
                except DeclarationError:
                    self.problems[f"answer-{question.key}"] = _(
                        "Use at most %(count)d characters, without special characters.",
                        count=TEXT_ANSWER_MAX_CHARS,
                    )
            elif question.key not in self.answers:
                self.problems[f"answer-{question.key}"] = _("Answer yes or no.")
        if not self.consent:
            self.problems["consent"] = _("Tick the box to agree, or the code cannot be made.")

    def answer_values(self) -> dict[str, bool]:
        return {key: value == "yes" for key, value in self.answers.items()}


@dataclass(frozen=True)
class Result:
    """A declaration just issued, as the result page shows it."""

    record: SiteCode
    qr: str
    """The code as a ``data:image/png`` URL (also the download link)."""
    valid_until: str
    refused: bool
    file_name: str


def _result(issued: Issued) -> Result:
    record = issued.record
    return Result(
        record=record,
        qr=qr_data_url(issued.text),
        valid_until=local(record.expires_at, TIME_FORMAT),
        refused=record.verdict == "refuse",
        file_name=f"declaration-{local(record.issued_at, 'yyyyMMdd-HHmm')}.png",
    )


def _issue(
    declaring: Declaring, questions: Sequence[Question], *, issued_by: str, audited: bool = False
) -> Issued | None:
    """Sign the declaration; None (with a problem noted) when the site cannot.
    ``audited``: record it in the audit log by ``issued_by``, in the same
    transaction as the declaration (the guard's desk)."""
    settings = gk().effective()
    now = gk().clock.now()
    try:
        return issue_declaration(
            gk().store,
            settings.keys_dir,
            site_id=settings["gate.site_id"],
            name=declaring.name,
            phone=declaring.phone,
            answers=declaring.answer_values(),
            texts=declaring.texts,
            questions=questions,
            validity=timedelta(hours=settings["codes.declaration_validity_h"]),
            at=now,
            issued_by=issued_by,
            audit=AuditNote(issued_by, "declaration", {}, now) if audited else None,
        )
    except KeysError as exc:
        log.error("cannot sign a declaration: %s", exc)
        declaring.problems[""] = _(
            "This site has not set up its keys yet, so no code can be made. Please tell the guard."
        )
    except DeclarationError as exc:
        log.warning("declaration refused by the issuer: %s", exc)
        declaring.problems[""] = _("The declaration could not be made. Check what you typed.")
    return None


def _form_context(declaring: Declaring, questions: Sequence[Question]) -> dict[str, Any]:
    settings = gk().effective()
    return {
        "declaring": declaring,
        "questions": [(q, question_text(q)) for q in questions],
        "retention_days": settings["privacy.retention_days"],
        "validity_h": settings["codes.declaration_validity_h"],
        "site_name": site_name(),
        "name_max": NAME_MAX_CHARS,
        "phone_max": PHONE_MAX_CHARS,
        "text_max": TEXT_ANSWER_MAX_CHARS,
    }


# ----------------------------------------------------------------------------- rate limit


def _rate_key() -> str:
    """The throttle's key for this client address (bounded: never a long text)."""
    return f"declare:{bounded_address(request.remote_addr)}"


def _count_declaration(limit: int) -> int:
    """Count this declaration if the address may make one now: 0, else how
    long it must wait, in seconds. The UPSERT that counts also decides, so
    parallel submissions get no more than ``limit`` in a window."""
    rule = ThrottleRule(waits=((limit, RATE_WINDOW),), window=RATE_WINDOW)
    verdict = gk().store.throttle_admit([_rate_key()], rule, at=gk().clock.now())
    if verdict.admitted:
        return 0
    return max(1, math.ceil(verdict.retry_after.total_seconds()))


# ----------------------------------------------------------------------------- public form


@bp.route("/declare", methods=["GET", "POST"])
def form() -> Any:
    """The public declaration form (no login): on a phone, from the poster's QR."""
    questions = site_questions()
    if request.method == "GET":
        return render_template("declare_form.html", **_form_context(Declaring(), questions))

    declaring = Declaring.from_form(request.form, questions)
    limit = int(gk().effective()["codes.declarations_per_hour"])
    wait_s = _count_declaration(limit)
    if wait_s > 0:
        declaring.problems[""] = _(
            "Too many declarations from this device: at most %(count)d an hour. "
            "Try again in %(minutes)d minutes, or ask the guard.",
            count=limit,
            minutes=math.ceil(wait_s / 60),
        )
        response = render_template("declare_form.html", **_form_context(declaring, questions))
        return response, 429, {"Retry-After": str(wait_s)}

    declaring.check(questions)
    issued = None if declaring.problems else _issue(declaring, questions, issued_by="self")
    if issued is None:
        gk().store.throttle_refund([_rate_key()])  # mistakes do not count
        return render_template("declare_form.html", **_form_context(declaring, questions)), 400
    return render_template("declare_result.html", result=_result(issued), site_name=site_name())


# ----------------------------------------------------------------------------- the guard's desk


@bp.route("/declarations/new", methods=["GET", "POST"])
@login_required("guard", "manager")
def desk() -> Any:
    """The same form, filled in by a guard for a visitor without a smartphone;
    the code is printed. Not rate-limited: one desk serves a queue."""
    questions = site_questions()
    if request.method == "GET":
        return render_template("declare_desk.html", **_form_context(Declaring(), questions))

    declaring = Declaring.from_form(request.form, questions)
    declaring.check(questions)
    user = _user()
    issued = (
        None
        if declaring.problems
        else _issue(declaring, questions, issued_by=user.name, audited=True)
    )
    if issued is None:
        return render_template("declare_desk.html", **_form_context(declaring, questions)), 400
    return render_template("declare_desk.html", result=_result(issued), site_name=site_name())


# ----------------------------------------------------------------------------- the poster


def _is_local_host(host: str) -> bool:
    name = (urlsplit(f"//{host}").hostname or "").strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def poster_url_problem(url: str) -> str | None:
    """Why ``url`` cannot go on the poster, if it cannot."""
    if len(url) > POSTER_URL_MAX_CHARS:
        return _("Use at most %(count)d characters.", count=POSTER_URL_MAX_CHARS)
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in url):
        return _("An address must not contain spaces.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return _("This is not a web address.")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return _("Enter an address that starts with http:// or https://.")
    return None


@bp.get("/poster")
@login_required("guard", "manager")
def poster() -> Any:
    """A printable A4 poster: the QR of the declaration page, for the gate."""
    default_url = url_for("declare.form", _external=True)
    typed = request.args.get("url", "").strip()
    problem = poster_url_problem(typed) if typed else None
    url = typed if typed and problem is None else default_url
    return render_template(
        "poster.html",
        url=url,
        typed=typed,
        problem=problem,
        qr=qr_data_url(url, min_px=POSTER_QR_MIN_PX),
        site_name=site_name(),
        local_only=not typed and _is_local_host(request.host),
    )


# ----------------------------------------------------------------------------- the list


@bp.get("/declarations")
@login_required("guard", "manager")
def index() -> Any:
    """Declarations still valid (or, with ``?all=1``, those kept until
    retention removes them); phone numbers for managers only."""
    show_all = request.args.get("all") == "1"
    codes = gk().store.site_codes(KIND_DECLARATION, now=gk().clock.now(), include_expired=show_all)
    return render_template(
        "declarations.html",
        codes=codes,
        show_all=show_all,
        show_phone=_user().role == "manager",
        now=gk().clock.now(),
        time_format=TIME_FORMAT,
        question_texts={q.key: question_text(q) for q in site_questions()},
    )


def revoke_issued(code_id: str, kind: str) -> tuple[SiteCode, bool]:
    """Revoke a declaration or pass of ``kind`` for the logged-in manager,
    audited; (the code, whether it was revoked now). 404 if there is none."""
    code = gk().store.site_code(code_id)
    if code is None or code.kind != kind:
        abort(404)
    user = _user()
    now = gk().clock.now()
    detail = {"code": code.id, "kind": code.kind, "name": code.name}
    audit = AuditNote(user.name, "revoke", detail, now)
    revoked = gk().store.revoke_site_code(code.id, by=user.name, at=now, audit=audit)
    if revoked:
        log.info("%s revoked %s %s", user.name, code.kind, code.id)
    return code, revoked


@bp.post("/declarations/<code_id>/revoke")
@login_required("manager")
def revoke(code_id: str) -> Response:
    code, revoked = revoke_issued(code_id, KIND_DECLARATION)
    if revoked:
        flash(
            _("The declaration of %(name)s is revoked: the gate refuses it.", name=code.name),
            "success",
        )
    else:
        flash(_("That declaration was already revoked."), "info")
    return redirect(url_for("declare.index", all=request.form.get("all") or None))


# ----------------------------------------------------------------------------- questions


@bp.route("/declarations/questions", methods=["GET", "POST"])
@login_required("manager")
def questions() -> Any:
    current = site_questions()
    if request.method == "GET":
        return render_template(
            "questions.html", rows=rows_of(current), general=[], text_max=TEXT_ANSWER_MAX_CHARS
        )
    rows = posted_rows(request.form)
    new, general = questions_from_rows(rows, current)
    if new is None:
        flash(_("Nothing was saved. Correct the questions marked below."), "error")
        return (
            render_template(
                "questions.html", rows=rows, general=general, text_max=TEXT_ANSWER_MAX_CHARS
            ),
            400,
        )
    if tuple(new) == tuple(current):
        flash(_("Nothing changed."), "info")
        return redirect(url_for("declare.questions"))
    user = _user()
    now = gk().clock.now()
    detail = {"old": questions_setting(current), "new": questions_setting(new)}
    gk().store.save_site_settings(
        {QUESTIONS_SETTING: questions_setting(new)},
        by=user.name,
        at=now,
        audit=AuditNote(user.name, "questions", detail, now),
    )
    log.info("%s changed the declaration questions", user.name)
    flash(_("Saved. New declarations ask these questions."), "success")
    return redirect(url_for("declare.questions"))
