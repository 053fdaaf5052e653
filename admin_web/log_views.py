"""Placeholder while this area is being built."""

from flask import Blueprint

from admin_web.auth import login_required

bp = Blueprint("log", __name__)


@bp.get("/log")
@login_required()
def index() -> str:
    return "coming"


@bp.get("/log/<event_id>")
@login_required()
def detail(event_id: str) -> str:
    return "coming"
