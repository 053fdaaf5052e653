"""Vietnamese and English, with Flask-Babel; Vietnamese unless the user chooses."""

from __future__ import annotations

from flask import Blueprint, Flask, redirect, request, session, url_for
from flask_babel import Babel
from werkzeug.wrappers.response import Response

from admin_web.context import gk

LANGUAGES = ("vi", "en")

bp = Blueprint("i18n", __name__)


def select_locale() -> str:
    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return str(chosen)
    return request.accept_languages.best_match(LANGUAGES) or "vi"


def select_timezone() -> str:
    return gk().tz.key


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=select_locale, timezone_selector=select_timezone)


@bp.post("/lang/<code>")
def choose(code: str) -> Response:
    if code in LANGUAGES:
        session["lang"] = code
    target = request.form.get("next", "")
    if not target.startswith("/") or target.startswith("//"):
        target = url_for("dashboard.index")
    return redirect(target)
