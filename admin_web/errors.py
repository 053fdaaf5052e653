"""The product's own 403 and 404 pages: translated, with the menu and a way back.

The JSON API (``/api/*``) keeps werkzeug's small answers, which its callers
read only for the status code (see ``openapi.yaml``); the gate screen's 403 is
its own plain-text line (:mod:`admin_web.display`).
"""

from __future__ import annotations

from flask import Blueprint, render_template, request
from werkzeug.exceptions import HTTPException

bp = Blueprint("errors", __name__)


def _page(error: HTTPException) -> tuple[str, int] | HTTPException:
    if request.path.startswith("/api/"):
        return error
    code = error.code or 500
    return render_template("error.html", code=code), code


@bp.app_errorhandler(403)
def forbidden(error: HTTPException) -> tuple[str, int] | HTTPException:
    return _page(error)


@bp.app_errorhandler(404)
def not_found(error: HTTPException) -> tuple[str, int] | HTTPException:
    return _page(error)
