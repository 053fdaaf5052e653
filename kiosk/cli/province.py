"""``gatekiosk uplink`` (on a hub) and ``gatekiosk province ...`` (on the province server)."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import click

from kiosk.cli.group import cli, config_option, load
from kiosk.province.errors import ProvinceError

log = logging.getLogger(__name__)


@cli.command()
@config_option
@click.option("--once", is_flag=True, help="Send everything pending, then stop.")
def uplink(config_path: Path | None, once: bool) -> None:
    """Send the site database's events to the province's PostgreSQL (on a hub).

    Needs the [uplink] settings: uplink.host, uplink.role and uplink.ca_file
    (TLS, the server's name checked), or uplink.dsn. Events are marked sent
    only after the province committed them; a hub offline for weeks catches
    up. Runs until stopped.

    Example:

        gatekiosk uplink --config /etc/gatekiosk/gatekiosk.toml
    """
    from kiosk.clock import SystemClock
    from kiosk.province.outbox import ProvinceOutbox
    from kiosk.province.target import uplink_target
    from kiosk.province.uplink import Uplink, UplinkSettings
    from kiosk.store import Store
    from kiosk.systemd import SystemdNotifier

    settings = load(config_path)
    target = uplink_target(settings.values)
    log.info("uplink to %s", target.shown)
    clock = SystemClock()
    notifier = SystemdNotifier(clock=clock)
    with Store.open(settings.db_path) as store:
        # Clearing a mark is the only write here; one lost in a power cut
        # means an event sent again, which the province ignores.
        store.connection.conn.execute("PRAGMA synchronous = NORMAL")
        up = Uplink(
            ProvinceOutbox(store.connection),
            UplinkSettings(
                dsn=target.conninfo,
                zone=settings.timezone,
                batch_size=int(settings["uplink.batch"]),
            ),
            clock=clock,
            on_tick=notifier.watchdog,
        )

        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("stopping on signal %d", signum)
            up.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        notifier.ready()
        if once:
            stats = up.drain_once()
            click.echo(f"Đã gửi / sent {stats.sent}, mới / new {stats.inserted}")
        else:
            click.echo("Gửi sự kiện lên cấp tỉnh / uploading to the province", err=True)
            up.run()
        notifier.stopping()


@cli.group()
def province() -> None:
    """The province's PostgreSQL: its schema, its sites, the authority's readers.

    Example (as the database's owner on the province server):

    \b
        gatekiosk province init "dbname=province"
        gatekiosk province add-site "dbname=province" market-3 --name "Chợ 3" --password-stdin
    """


def _run(action: str, call: Callable[[], object]) -> None:
    """``call``, a refusal of the server shown as ``Error: ...``."""
    import psycopg

    try:
        call()
    except psycopg.Error as exc:
        raise ProvinceError(f"{action}: {str(exc).strip()}") from exc


@province.command("init")
@click.argument("dsn")
def province_init(dsn: str) -> None:
    """Create or update the province schema in DSN (safe to run again)."""
    from kiosk.province.setup import init_schema

    _run("province init", lambda: init_schema(dsn))
    click.echo("Đã tạo lược đồ cấp tỉnh / province schema ready")


@province.command("add-site")
@click.argument("dsn")
@click.argument("site_id")
@click.option("--name", default="", help="The site's name, as the authority reads it.")
@click.option("--role", "role_name", default=None, help="Login role (default: site_<id>).")
@click.option("--password-stdin", is_flag=True, help="Read the role's password from stdin.")
def province_add_site(
    dsn: str, site_id: str, name: str, role_name: str | None, password_stdin: bool
) -> None:
    """Register a site and create the login its hub uploads with."""
    from kiosk.province.setup import SiteRole, add_site, default_role_name

    role = role_name or default_role_name(site_id)
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    try:
        _run("province add-site", lambda: add_site(dsn, SiteRole(site_id, name, role, password)))
    except ValueError as exc:
        raise ProvinceError(str(exc)) from exc
    click.echo(f"Khu vực / site {site_id}: tài khoản / role {role}")


@province.command("add-reader")
@click.argument("dsn")
@click.argument("role")
@click.option("--password-stdin", is_flag=True, help="Read the role's password from stdin.")
def province_add_reader(dsn: str, role: str, password_stdin: bool) -> None:
    """Create a read-only login for the authority's web."""
    from kiosk.province.setup import add_reader

    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    try:
        _run("province add-reader", lambda: add_reader(dsn, role, password))
    except ValueError as exc:
        raise ProvinceError(str(exc)) from exc
    click.echo(f"Tài khoản đọc / reader role {role}")


@province.command("checklist")
@click.argument("dsn")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def province_checklist(dsn: str, file: Path) -> None:
    """Publish the self-assessment checklist in FILE as a new version.

    FILE is TOML: a title, stale_after_days (a site's rating older than this
    counts as stale; default 30) and 1 to 50 questions, each with an id
    (1-40 of a-z, 0-9, '_', '-', unique) and its text in Vietnamese (vi)
    and English (en), at most 300 characters each. Every publish is the
    next version; hubs fetch the newest through `gatekiosk uplink`, and
    ratings made on an older one count as stale. Run as the schema's owner.

    Example (deploy/province-checklist.toml is a full one):

    \b
        title = "Tiêu chí an toàn / Safety criteria"
        stale_after_days = 30
        [[questions]]
        id = "sanitiser"
        vi = "Có dung dịch sát khuẩn tay tại cổng"
        en = "Hand sanitiser at the gate"

    \b
        gatekiosk province checklist "dbname=province" province-checklist.toml
    """
    from kiosk.province.checklist import load_checklist, publish_checklist

    checklist = load_checklist(file)
    version = 0

    def publish() -> None:
        nonlocal version
        version = publish_checklist(dsn, checklist)

    _run("province checklist", publish)
    click.echo(
        f"Đã công bố bộ câu hỏi phiên bản {version} ({len(checklist.questions)} câu) / "
        f"checklist version {version} published ({len(checklist.questions)} questions)"
    )
