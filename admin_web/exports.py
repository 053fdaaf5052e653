"""Placeholder while this area is being built."""

from flask import Blueprint

from admin_web.auth import login_required

bp = Blueprint("exports", __name__)


@bp.get("/export.csv")
@login_required()
def csv() -> str:
    return "coming"
