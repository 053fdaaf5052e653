"""``gatekiosk uplink`` (on a hub) and ``gatekiosk province ...`` (on the province server)."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TypeVar

import click

from kiosk.cli.group import cli, config_option, load
from kiosk.province.errors import ProvinceError

log = logging.getLogger(__name__)

T = TypeVar("T")

# libpq's refusals of a TLS connection, and the setting to look at.
_TLS_HINTS = (
    (
        "certificate verify failed",
        "uplink.ca_file không phải CA đã ký chứng chỉ của máy chủ cấp tỉnh / "
        "uplink.ca_file is not the CA that signed the province server's certificate",
    ),
    (
        "does not match host name",
        "uplink.host không có trong chứng chỉ của máy chủ; dùng đúng tên trong chứng chỉ / "
        "uplink.host is not a name in the server's certificate; use a name it lists",
    ),
    (
        "no encryption",
        "máy chủ cấp tỉnh chỉ nhận kết nối TLS: đặt uplink.ca_file / "
        "the province server accepts TLS only: set uplink.ca_file",
    ),
    (
        "certificate authentication failed",
        "tên (CN) trong uplink.cert_file phải là uplink.role / "
        "the common name of uplink.cert_file must be uplink.role",
    ),
    (
        "password authentication failed",
        "mật khẩu trong uplink.password_file sai / the password in uplink.password_file is wrong",
    ),
)


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
            stats = _run(
                "không gửi được lên cấp tỉnh / cannot upload to the province",
                up.drain_once,
                hints=_TLS_HINTS,
            )
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


def _run(action: str, call: Callable[[], T], *, hints: tuple[tuple[str, str], ...] = ()) -> T:
    """``call``'s result; a refusal of the server shown as ``Error: ...``,
    followed by the hint of each ``(text in the message, hint)`` that applies."""
    import psycopg

    try:
        return call()
    except psycopg.Error as exc:
        message = str(exc).strip()
        found = [hint for text, hint in hints if text in message]
        raise ProvinceError("\n".join([f"{action}: {message}", *found])) from exc


@province.command("init")
@click.argument("dsn")
def province_init(dsn: str) -> None:
    """Create or update the province schema in DSN (safe to run again)."""
    from kiosk.province.setup import init_schema

    _run("province init", lambda: init_schema(dsn))
    click.echo("Đã tạo lược đồ cấp tỉnh / province schema ready")


@province.command("key")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def province_key(out: Path) -> None:
    """Make the province key: 32 random bytes in OUT, mode 0600.

    Off by default, and only where the law requires the authority to follow
    one person across the province's sites: give this same file to every
    gate of the province, out of band, and set privacy.province_key_file to
    it on each. An existing OUT is never overwritten (two keys would split
    the province's hashes in two).

    Example:

    \b
        gatekiosk province key /root/province.key
    """
    from kiosk.privacy import create_province_key

    try:
        create_province_key(out)
    except FileExistsError:
        raise ProvinceError(
            f"{out} đã có; không ghi đè khóa cấp tỉnh (mọi cổng phải giữ cùng một khóa) / "
            f"{out} exists; a province key is never overwritten (every gate must hold the same key)"
        ) from None
    except OSError as exc:
        raise ProvinceError(f"không ghi được / cannot write {out}: {exc.strerror}") from None
    click.echo(
        f"Đã tạo khóa cấp tỉnh {out} (quyền 0600). Chỉ dùng nơi pháp luật yêu cầu: chuyển "
        "chính tệp này tới mọi cổng của tỉnh qua kênh riêng, đặt privacy.province_key_file "
        f"trỏ tới nó. / Province key written to {out} (mode 0600). Only where the law requires "
        "it: give this same file to every gate of the province, out of band, and set "
        "privacy.province_key_file to it on each."
    )


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
