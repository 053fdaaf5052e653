"""Placeholder while this area is being built."""

from flask import Blueprint

from admin_web.auth import login_required

bp = Blueprint("guard", __name__)


@bp.get("/admit")
@login_required()
def admit() -> str:
    return "coming"
