"""``gatekiosk province web``: the authority's web over the province's PostgreSQL."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from types import FrameType

import click

from kiosk.cli.group import config_option, load, log_in_site_time
from kiosk.cli.province import province
from kiosk.errors import ConfigError

log = logging.getLogger(__name__)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


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
    from kiosk.webserver import Serving, make_server, url_of

    settings = load(config_path)
    if not str(settings["province_web.dsn"]).strip():
        raise ConfigError(
            [
                "province_web.dsn is empty / chưa cấu hình kết nối PostgreSQL cấp tỉnh "
                "(a login in province_reader)"
            ]
        )
    log_in_site_time(settings.timezone)
    app = create_province_app(settings)
    host = settings["web.host"]
    server = make_server(
        app, host=host, port=settings["web.port"], serving=Serving.from_settings(settings)
    )
    store = app.extensions["gatekiosk"].store
    if not store.count_managers():
        click.echo(
            "gatekiosk: chưa có tài khoản quản lý / no manager account yet; create one with "
            "`gatekiosk user add NAME --role manager`",
            err=True,
        )
    click.echo(f"gatekiosk: web cấp tỉnh / province web at {url_of(server, host)}")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        store.close()
