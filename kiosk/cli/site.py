"""``gatekiosk sync`` (on a gate) and ``gatekiosk hub`` (on the site's hub)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import click

from kiosk.cli.group import cli, config_option, load

log = logging.getLogger(__name__)

SYNC_NICENESS = 10


def _stop_on_signals(stop: Callable[[], None]) -> None:
    """SIGTERM (systemd) and SIGINT (Ctrl-C) end the loop cleanly."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("stopping on signal %d", signum)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@cli.command()
@config_option
@click.option("--ack-timeout-s", type=float, default=None, hidden=True)
def sync(config_path: Path | None, ack_timeout_s: float | None) -> None:
    """Carry this gate's events up to the site's hub (a service beside `run`).

    Needs site.hub and the files of `gatekiosk site join`. Runs until stopped;
    the gate decides alone whether or not this runs.

    Example:

        gatekiosk sync --config /etc/gatekiosk/gatekiosk.toml
    """
    from kiosk.clock import SystemClock
    from kiosk.site.gate_sync import ACK_TIMEOUT_S, build_sync, gate_channels
    from kiosk.store import Store
    from kiosk.systemd import SystemdNotifier

    settings = load(config_path)
    # The kiosk's decisions come first: a backlog being uploaded takes only
    # the CPU the scan loop leaves (the kiosk runs at the default priority).
    os.nice(SYNC_NICENESS)
    clock = SystemClock()
    notifier = SystemdNotifier(clock=clock)
    with Store.open(settings.db_path) as store:
        # This process only clears "not yet uploaded" marks: one lost in a
        # power cut means an event sent again, which the hub ignores. So its
        # commits skip the fsync, and hold the lock the kiosk waits for
        # only for microseconds (the kiosk's own commits stay FULL).
        store.connection.conn.execute("PRAGMA synchronous = NORMAL")
        loop, _ = build_sync(
            settings,
            outbox=store.outbox,
            clock=clock,
            extra_channels=gate_channels(settings, store, clock),
            on_tick=notifier.watchdog,
            ack_timeout_s=ack_timeout_s or ACK_TIMEOUT_S,
            camera=lambda: store.read_health(str(settings["gate.id"])),
        )
        _stop_on_signals(loop.stop)
        click.echo(
            f"Đồng bộ với trạm trung tâm {settings['site.hub']} / "
            f"syncing with the hub {settings['site.hub']}",
            err=True,
        )
        notifier.ready()
        loop.run()
        notifier.stopping()


@cli.group(invoke_without_command=True)
@config_option
@click.option("--stats-file", type=click.Path(path_type=Path), default=None, hidden=True)
@click.pass_context
def hub(ctx: click.Context, config_path: Path | None, stats_file: Path | None) -> None:
    """Take every gate's events into the site database (on the hub).

    Needs site.hub (the broker, usually localhost:8883) and the hub's files
    of `gatekiosk site init` in site.dir. Runs until stopped.

    Example:

        gatekiosk hub --config /etc/gatekiosk/hub.toml
    """
    if ctx.invoked_subcommand is not None:
        return
    from kiosk.clock import SystemClock
    from kiosk.site.hub import HubFiles, IngestChannel, StatsFile, hub_channels
    from kiosk.site.link import BrokerAddress
    from kiosk.site.topics import Topics
    from kiosk.store import Store
    from kiosk.systemd import SystemdNotifier

    settings = load(config_path)
    clock = SystemClock()
    notifier = SystemdNotifier(clock=clock)
    files = HubFiles.in_site_dir(settings.site_dir)
    with Store.open(settings.db_path) as store:
        topics = Topics(files.site_id())
        ingest = IngestChannel(site_log=store.site_log, topics=topics, clock=clock)
        stats = StatsFile(ingest.stats, stats_file, clock=clock)

        def tick() -> None:
            notifier.watchdog()
            stats.tick()

        loop = files.loop(
            BrokerAddress.parse(str(settings["site.hub"])),
            channels=[ingest, *hub_channels(settings, store, topics, clock)],
            clock=clock,
            on_tick=tick,
        )
        _stop_on_signals(loop.stop)
        click.echo(
            f"Trạm trung tâm: nhận sự kiện / hub: taking events into {settings.db_path}", err=True
        )
        notifier.ready()
        loop.run()
        stats.write()
        notifier.stopping()


@hub.command()
@config_option
@click.option(
    "--since",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]),
    help="UTC time from which the gates send their events again.",
)
@click.option("--gate", "gates", multiple=True, help="Only this gate (repeatable); default: all.")
def resync(config_path: Path | None, since: datetime, gates: tuple[str, ...]) -> None:
    """Ask the gates to send their events since a time again (a hub rebuilt).

    Events the site database has already are ignored on arrival. The request
    is retained: a gate that is offline now obeys when it comes back.

    Example:

        gatekiosk hub resync --since 2026-01-01
    """
    from kiosk.clock import SystemClock
    from kiosk.site.hub import HubFiles, request_resync
    from kiosk.site.link import BrokerAddress
    from kiosk.site.topics import Topics

    settings = load(config_path)
    clock = SystemClock()
    files = HubFiles.in_site_dir(settings.site_dir)
    targets = list(gates) or files.gate_ids()
    if not targets:
        raise click.ClickException(
            "chưa có cổng nào tham gia khu vực / no gate has joined this site"
        )
    loop = files.loop(BrokerAddress.parse(str(settings["site.hub"])), channels=[], clock=clock)
    runner = threading.Thread(target=loop.run, name="resync", daemon=True)
    runner.start()

    def wait(condition: Callable[[], bool], timeout_s: float = 15.0) -> bool:
        deadline = clock.monotonic() + timeout_s
        while not condition():
            if clock.monotonic() > deadline:
                return False
            clock.sleep(0.02)
        return True

    try:
        sent = request_resync(
            loop, Topics(files.site_id()), targets, since.replace(tzinfo=UTC), wait=wait
        )
    finally:
        loop.stop()
        runner.join(timeout=10)
    for gate_id in targets:
        mark = "đã gửi / sent" if gate_id in sent else "CHƯA GỬI / NOT SENT"
        click.echo(f"{gate_id}: {mark}")
    if len(sent) != len(targets):
        raise click.ClickException("một số cổng chưa được yêu cầu / some gates were not asked")
