"""``gatekiosk province web``: the authority's web over the province's PostgreSQL."""

from __future__ import annotations

import logging
from pathlib import Path

from kiosk.cli.group import config_option, load, log_in_site_time, serve_web
from kiosk.cli.province import province
from kiosk.errors import ConfigError

log = logging.getLogger(__name__)


@province.command("web")
@config_option
def province_web(config_path: Path | None) -> None:
    """Serve the province web: every site, its counts and chart, the
    self-assessments, and audited exports of a site's window.

    Reads PostgreSQL through province_web.dsn, a login made with `gatekiosk
    province add-reader`; its own accounts are local (`gatekiosk user add
    NAME --role manager --config ...`). Listens on web.host:web.port.

    Example:

    \b
        gatekiosk province web --config /etc/gatekiosk/province.toml
    """
    from admin_web import create_province_app

    settings = load(config_path)
    if not str(settings["province_web.dsn"]).strip():
        raise ConfigError(
            [
                "chưa cấu hình kết nối PostgreSQL cấp tỉnh (province_web.dsn, một tài khoản "
                "province_reader) / province_web.dsn is empty (a login in province_reader)"
            ]
        )
    log_in_site_time(settings.timezone)
    serve_web(create_province_app(settings), settings, label="web cấp tỉnh / province web")
