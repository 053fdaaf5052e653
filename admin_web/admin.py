"""Placeholder while this area is being built."""

from flask import Blueprint

from admin_web.auth import login_required

bp = Blueprint("admin", __name__)


@bp.get("/settings")
@login_required("manager")
def settings() -> str:
    return "coming"


@bp.get("/denylist")
@login_required("manager")
def denylist() -> str:
    return "coming"


@bp.get("/users")
@login_required("manager")
def users() -> str:
    return "coming"


@bp.get("/audit")
@login_required("manager")
def audit() -> str:
    return "coming"
