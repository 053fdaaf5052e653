"""Placeholder while this area is being built."""

from flask import Blueprint

from admin_web.auth import login_required

bp = Blueprint("inside", __name__)


@bp.get("/inside")
@login_required()
def index() -> str:
    return "coming"
