"""Vietnamese and English, with Flask-Babel; Vietnamese unless the user chooses.

The admin pages' own words are English in the code and translated through
the catalog in ``translations/`` (one language per page, the user's). What
a visitor is told about a decision is not: :mod:`kiosk.messages` holds each
reason's Vietnamese and English side by side, because the gate, which runs
without Flask, shows both at once, and the log, the live feed and the gate
screen repeat those same words (the pages pick the side for their language,
:func:`admin_web.presenting.reason_text`). They translate different
messages (where a word coincides, the meaning differs: "Entry" heads the
inside page's time column, "Giờ vào", and is the gate screen's direction,
"Vào"), so they are two jobs, not one mechanism twice.
"""

from __future__ import annotations

import unicodedata

from flask import Blueprint, Flask, redirect, request, session, url_for
from flask_babel import Babel
from werkzeug.wrappers.response import Response

from admin_web.context import gk
from admin_web.routing import home_endpoint

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


BAD_NEXT = (
    "Địa chỉ quay lại không hợp lệ (có ký tự điều khiển).\n"
    "The return address is not valid (it has control characters).\n"
)


@bp.post("/lang/<code>")
def choose(code: str) -> Response:
    """Remember the language, then go back to ``next``: a path on this site
    (anything else goes to the home page). A ``next`` with control characters
    (CR/LF would split the Location header) is refused with a 400."""
    target = request.form.get("next", "")
    if any(unicodedata.category(char) == "Cc" for char in target):
        return Response(BAD_NEXT, status=400, mimetype="text/plain")
    if code in LANGUAGES:
        session["lang"] = code
    # A backslash counts as a slash in browsers: "/\\evil.example" is "//evil.example".
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        target = url_for(home_endpoint())
    return redirect(target)
