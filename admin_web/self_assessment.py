"""The hub's self-assessment page: the site rates its safety measures for the province.

Managers only. The checklist is the province's (its newest version, which
``gatekiosk uplink`` fetched into the site database); the manager answers
yes or no for each measure, and the rating is kept with its score (the
percentage of measures in place) and audited in the same transaction. The
uplink sends it to the province, where the authority's web shows each
site's latest rating. The page also lists the site's past ratings and
whether each has reached the province.

Only on a hub with a province (``[uplink]`` settings); elsewhere the page says
so. Before the first checklist arrives it says how to get one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers.response import Response

from admin_web.auth import current_user, login_required
from admin_web.context import gk
from kiosk.province.target import uplink_configured
from kiosk.store import AuditNote
from kiosk.store.self_assessment import AssessmentRefused, HubChecklist, SelfAssessment

log = logging.getLogger(__name__)

bp = Blueprint("self_assessment", __name__)

HISTORY = 30
"""Past ratings listed on the page."""


@dataclass(frozen=True)
class FormProblem:
    """Why a submitted rating was not kept, and the HTTP status to answer with."""

    message: str
    status: int


@bp.app_context_processor
def _province_globals() -> dict[str, object]:
    """``province_configured``: whether this hub uploads to a province (the menu link)."""
    return {"province_configured": _configured()}


def _configured() -> bool:
    return uplink_configured(gk().settings.values)


def due_by(checklist: HubChecklist, ratings: list[SelfAssessment]) -> datetime | None:
    """When the site's latest rating of ``checklist`` goes stale at the province;
    None when there is none (a rating of an older version counts as none)."""
    latest = next((r for r in ratings if r.checklist_version == checklist.version), None)
    if latest is None:
        return None
    return latest.made_at + timedelta(days=checklist.stale_after_days)


def _page(status: int = 200, *, answers: dict[str, bool] | None = None) -> tuple[str, int]:
    context = gk()
    configured = _configured()
    checklist = context.store.self_assessment.latest_checklist() if configured else None
    ratings = context.store.self_assessment.assessments(limit=HISTORY) if configured else []
    return (
        render_template(
            "self_assessment.html",
            configured=configured,
            checklist=checklist,
            ratings=ratings,
            due=None if checklist is None else due_by(checklist, ratings),
            now=context.clock.now(),
            answers=answers or {},
        ),
        status,
    )


@bp.get("/site/assessment")
@login_required("manager")
def index() -> tuple[str, int]:
    return _page()


def _answers(checklist: HubChecklist) -> tuple[dict[str, bool], FormProblem | None]:
    """The form's yes/no per question; a problem if one is missing or the
    checklist changed since the form was shown."""
    answers: dict[str, bool] = {}
    for question in checklist.questions:
        value = request.form.get(f"q-{question.id}")
        if value in ("yes", "no"):
            answers[question.id] = value == "yes"
    if request.form.get("version") != str(checklist.version):
        return answers, FormProblem(
            _("The province sent a new checklist since this form was shown. Answer it again."),
            409,
        )
    if len(answers) != len(checklist.questions):
        return answers, FormProblem(
            _("Nothing was saved. Answer yes or no for every measure."), 400
        )
    return answers, None


@bp.post("/site/assessment")
@login_required("manager")
def save() -> Response | tuple[str, int]:
    context = gk()
    if not _configured():
        return _page(409)
    checklist = context.store.self_assessment.latest_checklist()
    if checklist is None:
        flash(_("No checklist has arrived from the province yet."), "error")
        return _page(409)
    answers, problem = _answers(checklist)
    if problem is not None:
        flash(problem.message, "error")
        return _page(problem.status, answers=answers)
    user = current_user()
    assert user is not None  # login_required let the request through
    now = context.clock.now()
    try:
        rating: SelfAssessment = context.store.self_assessment.save_assessment(
            checklist_version=checklist.version,
            answers=answers,
            made_by=user.name,
            at=now,
            audit=AuditNote(user.name, "self-assessment", {}, now),
        )
    except AssessmentRefused as exc:
        flash(str(exc), "error")
        return _page(409, answers=answers)
    log.info(
        "%s rated the site: %d%% (checklist version %d)",
        user.name,
        rating.score,
        rating.checklist_version,
    )
    flash(
        _(
            "Saved: %(score)d%% of measures in place. It goes to the province with the next "
            "upload.",
            score=rating.score,
        ),
        "success",
    )
    return redirect(url_for("self_assessment.index"))
