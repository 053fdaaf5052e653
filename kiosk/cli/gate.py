"""Commands that run the gate's services: ``run``, ``demo``, ``web``, ``selftest``."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click

from kiosk.cli.group import cli, config_option, load, log_in_site_time, raise_interrupt, serve_web


@cli.command()
@config_option
def run(config_path: Path | None) -> None:
    """Scan codes at the gate until stopped (Ctrl-C or SIGTERM).

    Exits with status 1 when the camera stays at fault for camera.fault_exit_s
    (or cannot be freed at all), so that systemd restarts the kiosk.

    Example:

    \b
        gatekiosk run --config /etc/gatekiosk/gatekiosk.toml
    """
    from kiosk.clock import SystemClock
    from kiosk.compose import build_gate
    from kiosk.systemd import SystemdNotifier

    settings = load(config_path)
    log_in_site_time(settings.timezone)
    stop = threading.Event()
    _stop_on_signals(stop)
    clock = SystemClock()
    systemd = SystemdNotifier(clock=clock)
    with build_gate(settings, clock=clock, heartbeat=systemd.watchdog) as gate:
        click.echo(
            f"gatekiosk: scanning at gate {settings['gate.id']}, database {settings.db_path}"
        )
        if gate.simulated_pins:
            from gate_controller.pins import why_pins_are_simulated

            click.echo(f"gatekiosk: {why_pins_are_simulated(settings['pins.backend'])}")
        systemd.ready()
        try:
            gate.scanner.run(stop)
        finally:
            systemd.stopping()
        gave_up = gate.scanner.gave_up
    if gave_up is not None:
        # After the gate is closed (relay off, health row written): systemd
        # restarts the process, with a fresh camera driver (Restart=on-failure).
        raise click.ClickException(f"{gave_up}; exiting so that the service is restarted")


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-data"),
    show_default=True,
    help="Folder for the demo's database.",
)
@click.option("--seconds", type=float, default=None, help="Stop after this long (default: Ctrl-C).")
@click.option(
    "--web-port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port of the admin page (if taken, any free port is used).",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Continue with the database of earlier runs (default: start afresh; keys are kept); "
    "with --province: keep the PostgreSQL cluster.",
)
@click.option(
    "--gates",
    type=click.IntRange(1, 20),
    default=None,
    help="A site instead: this many simulated gates, a hub and its broker (needs mosquitto).",
)
@click.option(
    "--province",
    is_flag=True,
    help="With --gates: a province too, on a throwaway PostgreSQL (needs postgresql): "
    "the site's events uploaded live, other sites, the province web on the next port.",
)
def demo(
    data_dir: Path,
    seconds: float | None,
    web_port: int,
    keep: bool,
    gates: int | None,
    province: bool,
) -> None:
    """The whole gate on this machine: simulated camera and pins.

    A simulated camera shows sample visitors in turn (an ID card, a national
    personal QR, the site's own health declarations: valid, expired, edited,
    and one answering "yes" to symptoms; an unrecognised code, a denylisted
    person, a staff pass, someone leaving); each decision lights the
    simulated lights, shown here live, and is recorded in
    DATA_DIR/gatekiosk.db. The demo site's keys are made in DATA_DIR/keys on
    the first run. The admin page runs too: its address and a manager
    password made up for this run are printed.

    Each run starts from an empty database (unless --keep). The demo writes
    its configuration to DATA_DIR/gatekiosk.toml and prints the commands that
    use it: adding a guard, checking a demo code, exporting the log.

    With --gates N, a site instead: N simulated gates, their hub and its
    broker. With --province too, a province on a throwaway PostgreSQL: the
    site's events uploaded live, other sites with their history and ratings,
    and the province web, its address and password printed.

    Example:

    \b
        gatekiosk demo --seconds 60

        gatekiosk demo --gates 3

        gatekiosk demo --gates 2 --province
    """
    if province and gates is None:
        raise click.UsageError(
            "--province cần --gates N / --province needs --gates N (a site to feed the province)"
        )
    if gates is not None:
        from kiosk.demo_site import run_site_demo

        # SIGTERM stops the demo like Ctrl-C: its broker and PostgreSQL stopped too.
        previous = signal.signal(signal.SIGTERM, raise_interrupt)
        try:
            run_site_demo(
                data_dir=data_dir,
                gates=gates,
                seconds=seconds,
                web_port=web_port,
                province=province,
                keep=keep,
            )
        finally:
            signal.signal(signal.SIGTERM, previous)
        return
    from kiosk.demo import run_demo

    run_demo(data_dir=data_dir, seconds=seconds, web_port=web_port, keep=keep, program=_program())


def _program() -> str:
    """How the user called gatekiosk, for commands printed to copy: the bare
    name when it is on the PATH (an activated virtualenv), else the path
    used (``.venv/bin/gatekiosk`` from ``make demo``)."""
    import shutil

    called = Path(sys.argv[0])
    if called.name != "gatekiosk":
        return "gatekiosk"
    found = shutil.which("gatekiosk")
    if found is not None and Path(found).resolve() == called.resolve():
        return "gatekiosk"
    return str(called)


@cli.command()
@config_option
def web(config_path: Path | None) -> None:
    """Serve the admin web (dashboard, log, exports, gate screen).

    Listens on web.host:web.port, 127.0.0.1:8080 unless the settings say
    otherwise. Create the first manager with `gatekiosk user add`.

    Example:

    \b
        gatekiosk web --config /etc/gatekiosk/gatekiosk.toml
    """
    from admin_web import create_app, start_enrolment

    settings = load(config_path)
    log_in_site_time(settings.timezone)
    app = create_app(settings)
    enrolment = start_enrolment(app)  # on a site's hub only
    notes = []
    if enrolment is not None:
        notes.append(
            f"các cổng tham gia trạm này qua HTTPS, cổng {enrolment.port} / "
            f"gates join this hub over HTTPS on port {enrolment.port}"
        )
    try:
        serve_web(app, settings, label="trang quản trị / admin web", notes=notes)
    finally:
        if enrolment is not None:
            enrolment.stop()


@cli.command()
@config_option
@click.option("--no-relay", is_flag=True, help="Do not switch the door relay.")
@click.option("--yes", "assume_yes", is_flag=True, help="Do not ask whether each output was seen.")
def selftest(config_path: Path | None, no_relay: bool, assume_yes: bool) -> None:
    """Check the gate after wiring: camera, decoders, lights, buzzer, relay,
    database, clock and disk; a checklist, exit status 1 if anything failed.

    Stop the kiosk service first (it owns the camera and the pins).

    Example:

    \b
        sudo -u gatekiosk \\
            gatekiosk selftest --config /etc/gatekiosk/gatekiosk.toml
    """
    from kiosk.clock import SystemClock
    from kiosk.selftest import selftest_at_gate

    def confirm(question: str) -> bool:
        return assume_yes or click.confirm(question, default=True)

    def show_reading(reading: str) -> None:
        # On a terminal only, rewritten in place while the tester moves the code.
        click.echo(f"\r  focus: {reading}    ", nl=False, err=True)

    live = sys.stderr.isatty()
    if live:
        click.echo(
            "Đưa mã QR cách camera 5-15 cm để đo độ nét. / "
            "Hold a QR code 5-15 cm from the camera to measure the focus.",
            err=True,
        )
    checks = selftest_at_gate(
        load(config_path),
        clock=SystemClock(),
        confirm=confirm,
        include_relay=not no_relay,
        on_reading=show_reading if live else None,
    )
    if live:
        click.echo(err=True)
    for check in checks:
        mark = "–" if not check.checked else "✓" if check.ok else "✗"
        click.echo(f"{mark} {check.name}: {check.detail}")
    if not all(check.ok for check in checks):
        raise click.exceptions.Exit(1)
