"""The ``gatekiosk`` group itself and what every command shares: the one
place library errors become ``Error: ...``, logging, ``--config``, settings.

Each command module imports what its command uses inside the command, so
that ``gatekiosk --help`` or ``gatekiosk export`` loads no camera, decoder
or web code.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kiosk import __version__
from kiosk.errors import GateError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flask import Flask

    from kiosk.config import Settings
    from kiosk.store import Store


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(logging.DEBUG, level), format=LOG_FORMAT, stream=sys.stderr)


class SiteTimeFormatter(logging.Formatter):
    """Log lines stamped in the site's time zone with its UTC offset
    (``2026-11-28T15:04:05.123+07:00``), as events are shown, whatever the
    machine's own zone is (often UTC on a Raspberry Pi)."""

    def __init__(self, tz: tzinfo) -> None:
        super().__init__(LOG_FORMAT)
        self._tz = tz

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        at = datetime.fromtimestamp(record.created, self._tz)
        return at.isoformat(timespec="milliseconds")


def log_in_site_time(tz: tzinfo) -> None:
    """Stamp this process's log lines in the site's time (see :class:`SiteTimeFormatter`)."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(SiteTimeFormatter(tz))


class _Group(click.Group):
    """Turns every GateError (and the pins' GateControllerError, such as no
    pin factory) into click's ``Error: ...`` with exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        from gate_controller.errors import GateControllerError

        try:
            return super().invoke(ctx)
        except (GateError, GateControllerError) as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gatekiosk")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """gatekiosk: an offline entry gate that reads QR codes.

    Example:

    \b
        gatekiosk demo
    """
    _configure_logging(verbose)


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML settings file; without it the built-in defaults apply.",
)


def load(config_path: Path | None, **overrides: Any) -> Settings:
    """The settings of ``--config`` (or the defaults), with ``overrides`` that are not None."""
    from kiosk.config import load_settings

    return load_settings(
        config_path, overrides={k: v for k, v in overrides.items() if v is not None}
    )


def cli_actor() -> str:
    """Who an audit row names for a change made from the command line:
    ``cli:`` and the Unix user running the command."""
    import getpass

    return f"cli:{getpass.getuser()}"


def open_store(config_path: Path | None) -> Store:
    """The database the settings of ``--config`` name, opened for this command."""
    from kiosk.store import Store

    return Store.open(load(config_path).db_path)


def raise_interrupt(signum: int, frame: object) -> None:
    """SIGTERM (systemd's stop) ends a blocking server like Ctrl-C does."""
    raise KeyboardInterrupt


def serve_web(app: Flask, settings: Settings, *, label: str, notes: Sequence[str] = ()) -> None:
    """Serve ``app`` (the admin web or the province web) on web.host:web.port
    until Ctrl-C or SIGTERM, then close its store.

    ``label`` names it in the "at URL" line ("Vietnamese / English");
    ``notes`` are printed after that line.
    """
    import signal

    from kiosk.webserver import Serving, make_server, url_of

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
    click.echo(f"gatekiosk: {label} at {url_of(server, host)}")
    for note in notes:
        click.echo(f"gatekiosk: {note}")
    signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        store.close()
