"""URL pieces shared by the blueprints."""

from __future__ import annotations

from typing import Any

from werkzeug.routing import IntegerConverter, Map

ROWID_MAX = 2**63 - 1
"""The largest SQLite rowid. A larger number names no row, and SQLite cannot
even bind it (OverflowError), so no route lets one through."""


class RowIdConverter(IntegerConverter):
    """``<rowid:name>``: a row's id in the URL, 1 to :data:`ROWID_MAX`; anything
    else does not match the route (404), rather than failing in SQLite (500)."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        super().__init__(url_map, min=1, max=ROWID_MAX)


HOME_ENDPOINT = "GATEKIOSK_HOME"
"""The app's config key naming its home page's endpoint: the dashboard on a
site, the site list in province mode (:func:`admin_web.create_province_app`)."""


def home_endpoint() -> str:
    """The endpoint of this app's home page (where logins and way-backs lead)."""
    from flask import current_app

    return str(current_app.config.get(HOME_ENDPOINT, "dashboard.index"))
