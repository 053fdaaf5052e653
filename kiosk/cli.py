"""The ``gatekiosk`` command: a thin click layer over the library.

Library errors become ``Error: ...`` and exit status 1; nothing else is
caught here.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kiosk import __version__
from kiosk.errors import GateError

if TYPE_CHECKING:
    from kiosk.declarations import Question

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(logging.DEBUG, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


class _Group(click.Group):
    """Turns every GateError into click's ``Error: ...`` with exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GateError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gatekiosk")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """gatekiosk: an offline entry gate that reads QR codes.

    Example:

        gatekiosk demo
    """
    _configure_logging(verbose)


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML settings file; without it the built-in defaults apply.",
)


def _settings(config_path: Path | None, **overrides: Any) -> Any:
    from kiosk.config import load_settings

    return load_settings(
        config_path, overrides={k: v for k, v in overrides.items() if v is not None}
    )


# -- run ---------------------------------------------------------------------


@cli.command()
@config_option
def run(config_path: Path | None) -> None:
    """Scan codes at the gate until stopped (Ctrl-C or SIGTERM).

    Example:

        gatekiosk run --config /etc/gatekiosk/gatekiosk.toml
    """
    from kiosk.clock import SystemClock
    from kiosk.compose import build_gate
    from kiosk.systemd import SystemdNotifier

    settings = _settings(config_path)
    stop = threading.Event()
    _stop_on_signals(stop)
    clock = SystemClock()
    systemd = SystemdNotifier(clock=clock)
    with build_gate(settings, clock=clock, heartbeat=systemd.watchdog) as gate:
        click.echo(
            f"gatekiosk: scanning at gate {settings['gate.id']}, database {settings.db_path}"
        )
        if gate.simulated_pins:
            click.echo("gatekiosk: pins are simulated (gpiozero MockFactory): not a Raspberry Pi")
        systemd.ready()
        try:
            gate.scanner.run(stop)
        finally:
            systemd.stopping()


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM (systemd's stop) ends a blocking server like Ctrl-C does."""
    raise KeyboardInterrupt


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


# -- demo --------------------------------------------------------------------


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
def demo(data_dir: Path, seconds: float | None, web_port: int) -> None:
    """The whole gate on this machine: simulated camera and pins.

    A simulated camera shows sample visitors in turn (an ID card, a national
    personal QR, the site's own health declarations: valid, expired, edited,
    and one answering "yes" to symptoms; an unrecognised code, a denylisted
    person, a staff pass, someone leaving); each decision lights the
    simulated lights, shown here live, and is recorded in
    DATA_DIR/gatekiosk.db. The demo site's keys are made in DATA_DIR/keys on
    the first run. The admin page runs too: its address and a manager
    password made up for this run are printed.

    Example:

        gatekiosk demo --seconds 60
    """
    from kiosk.demo import run_demo

    run_demo(data_dir=data_dir, seconds=seconds, web_port=web_port)


# -- web ---------------------------------------------------------------------


@cli.command()
@config_option
def web(config_path: Path | None) -> None:
    """Serve the admin web (dashboard, log, exports, gate screen).

    Listens on web.host:web.port, 127.0.0.1:8080 unless the settings say
    otherwise. Create the first manager with `gatekiosk user add`.

    Example:

        gatekiosk web --config /etc/gatekiosk/gatekiosk.toml
    """
    from admin_web import create_app
    from kiosk.webserver import make_server, url_of

    settings = _settings(config_path)
    app = create_app(settings)
    host = settings["web.host"]
    server = make_server(app, host=host, port=settings["web.port"])
    store = app.extensions["gatekiosk"].store
    if not store.count_managers():
        click.echo(
            "gatekiosk: no manager account yet; create one with "
            "`gatekiosk user add NAME --role manager`",
            err=True,
        )
    click.echo(f"gatekiosk: admin web at {url_of(server, host)}")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        store.close()


# -- users -------------------------------------------------------------------


@cli.group()
def user() -> None:
    """Manage the accounts of managers and guards.

    Example:

        gatekiosk user add lan --role manager
    """


def _open_store(config_path: Path | None) -> Any:
    from kiosk.store import Store

    return Store.open(_settings(config_path).db_path)


@user.command("add")
@config_option
@click.argument("name")
@click.option(
    "--role", type=click.Choice(["manager", "guard"]), required=True, help="What the user may do."
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input (for scripts) instead of prompting.",
)
def user_add(config_path: Path | None, name: str, role: str, password_stdin: bool) -> None:
    """Create an account. The password is prompted for (twice), never an argument.

    Example:

        gatekiosk user add lan --role manager
    """
    from kiosk.accounts import add_user
    from kiosk.clock import SystemClock

    password = _read_password(password_stdin)
    with _open_store(config_path) as store:
        add_user(store, name, role=role, password=password, at=SystemClock().now())
    click.echo(f"Added {role} {name}.")


@user.command("list")
@config_option
def user_list(config_path: Path | None) -> None:
    """List the accounts.

    Example:

        gatekiosk user list
    """
    with _open_store(config_path) as store:
        for account in store.users():
            state = "disabled" if account.disabled else "enabled"
            click.echo(f"{account.name}\t{account.role}\t{state}")


@user.command("reset-password")
@config_option
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
def user_reset_password(config_path: Path | None, name: str, password_stdin: bool) -> None:
    """Set a new password for an account (and re-enable it).

    Example:

        gatekiosk user reset-password lan
    """
    from kiosk.accounts import reset_password
    from kiosk.clock import SystemClock

    with _open_store(config_path) as store:
        account = store.user_by_name(name)
        if account is None:
            raise GateError(f"no user named {name!r}")
        password = _read_password(password_stdin)
        reset_password(store, account, password, at=SystemClock().now())
        store.set_user_disabled(account.id, False)
    click.echo(f"New password set for {name}.")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise GateError("no password on standard input")
        return password
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


# -- keys --------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """Manage the site's signing keys for declarations and staff passes.

    The machine that runs the web signs codes with the private key; gates
    verify them with the public keys (keys.json and public/ in the keys
    folder). Run these as the service user, so the private key stays
    readable by that user only.

    Example:

    \b
        sudo -u gatekiosk \\
            gatekiosk keys init --config /etc/gatekiosk/gatekiosk.toml
    """


def _private_key_note(keys_dir: Path, kid: bytes) -> str:
    private = keys_dir / "private" / f"{kid.hex()}.pem"
    return (
        f"Private key: {private}. It must stay readable only by the user the "
        "web service runs as (mode 0600); never copy it to a gate."
    )


@keys.command("init")
@config_option
def keys_init(config_path: Path | None) -> None:
    """Create the site's first signing key. Refused when keys exist.

    Example:

        gatekiosk keys init --config /etc/gatekiosk/gatekiosk.toml
    """
    from kiosk.clock import SystemClock
    from kiosk.keys import init_keys

    keys_dir = _settings(config_path).keys_dir
    kid = init_keys(keys_dir, at=SystemClock().now())
    click.echo(f"Created site key {kid.hex()} in {keys_dir}.")
    click.echo(_private_key_note(keys_dir, kid))
    click.echo(
        "A gate on another machine needs keys.json and public/ from this folder "
        "in its own keys folder."
    )


@keys.command("rotate")
@config_option
def keys_rotate(config_path: Path | None) -> None:
    """Add a new signing key. Codes signed with older keys keep working until
    they expire; running gates pick up the new key within seconds.

    Example:

        gatekiosk keys rotate
    """
    from kiosk.clock import SystemClock
    from kiosk.keys import rotate_keys

    keys_dir = _settings(config_path).keys_dir
    kid = rotate_keys(keys_dir, at=SystemClock().now())
    click.echo(f"New signing key {kid.hex()} in {keys_dir}; older keys still verify.")
    click.echo(_private_key_note(keys_dir, kid))


@keys.command("retire")
@config_option
@click.argument("kid")
def keys_retire(config_path: Path | None, kid: str) -> None:
    """Withdraw a lost or leaked key: every code it signed is refused.

    The key KID (as `gatekiosk keys list` shows it) is marked retired and its
    private key deleted; running gates refuse its codes within seconds.

    Example:

        gatekiosk keys retire 3f9c0a1b2c3d4e5f
    """
    from kiosk.clock import SystemClock
    from kiosk.keys import load_keyring, parse_kid, retire_key

    keys_dir = _settings(config_path).keys_dir
    retire_key(keys_dir, kid, at=SystemClock().now())
    click.echo(
        f"Retired site key {parse_kid(kid).hex()}: codes it signed are refused from now on; "
        "its private key was deleted."
    )
    if load_keyring(keys_dir).active is None:
        click.echo("No signing key remains: run `gatekiosk keys rotate` before issuing codes.")


@keys.command("list")
@config_option
def keys_list(config_path: Path | None) -> None:
    """List the site's keys and whether each is active, valid or retired.

    One line per key: key id, created (site time), and its state: active
    (signs new codes), valid (still verifies the codes it signed) or
    retired (its codes are refused).

    Example:

        gatekiosk keys list
    """
    from kiosk.keys import load_keyring

    settings = _settings(config_path)
    ring = load_keyring(settings.keys_dir)
    active = ring.active
    tz = settings.timezone
    for key in ring.keys:
        created = key.created.astimezone(tz).isoformat(timespec="seconds")
        if key.retired_at is not None:
            state = f"retired {key.retired_at.astimezone(tz).isoformat(timespec='seconds')}"
        elif active is not None and key.kid == active.kid:
            state = "active"
        else:
            state = "valid"
        click.echo(f"{key.kid_hex}\t{created}\t{state}")


# -- trust -------------------------------------------------------------------


@cli.group()
def trust() -> None:
    """Manage the signing certificates trusted for EU and Vietnamese COVID
    certificates (HC1:). The gate verifies them offline against this list;
    nothing is fetched from the network.

    Example:

    \b
        gatekiosk trust import dsc-list.json
        gatekiosk trust list
    """


@trust.command("import")
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def trust_import(config_path: Path | None, file: Path) -> None:
    """Add the certificates in FILE: a PEM bundle, or a JSON list of base64 DER
    certificates (plain, or objects with rawData/certificate/x5c, or a map
    kid -> list). Entries that cannot be read are listed and skipped.

    Example:

        gatekiosk trust import vn-dsc.pem
    """
    from kiosk.clock import SystemClock
    from kiosk.compose import import_trust_file

    data = file.read_bytes()
    with _open_store(config_path) as store:
        result = import_trust_file(store, data, by="cli", at=SystemClock().now())
    for problem in result.parsed.problems:
        click.echo(f"skipped {problem}", err=True)
    found = len(result.parsed.certificates)
    click.echo(f"Imported {result.added} new of {found} certificates from {file.name}.")


@trust.command("list")
@config_option
def trust_list(config_path: Path | None) -> None:
    """List the trusted certificates: key id (base64), country, valid from,
    valid until (UTC dates) and subject, one per line, tab-separated.

    Example:

        gatekiosk trust list
    """
    with _open_store(config_path) as store:
        rows = store.trusted_certificates()
    for row in rows:
        kid = base64.b64encode(row.kid).decode("ascii")
        click.echo(
            f"{kid}\t{row.country or '-'}\t{row.not_before:%Y-%m-%d}\t"
            f"{row.not_after:%Y-%m-%d}\t{row.subject}"
        )


@trust.command("remove")
@config_option
@click.argument("kid")
def trust_remove(config_path: Path | None, kid: str) -> None:
    """Stop trusting the certificates with key id KID (base64, as listed).

    Example:

        gatekiosk trust remove 2Rk3X8HntrI=
    """
    try:
        kid_bytes = base64.b64decode(kid, validate=True)
    except ValueError:
        raise GateError(f"{kid!r} is not a base64 key id") from None
    with _open_store(config_path) as store:
        removed = store.remove_trusted_certificates(kid_bytes)
    if not removed:
        raise GateError(f"no trusted certificate has key id {kid}")
    click.echo(f"Removed {removed} certificate(s) with key id {kid}.")


# -- declare -----------------------------------------------------------------


@cli.command()
@config_option
@click.option("--name", required=True, help="The visitor's full name.")
@click.option("--phone", required=True, help="The visitor's phone number (kept by the site only).")
@click.option(
    "--answers",
    "--answer",
    "answer_texts",
    multiple=True,
    metavar="KEY=yes|no",
    help="The answer to one of the site's questions; give one per question.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="PNG file to write the QR code to.",
)
def declare(
    config_path: Path | None,
    name: str,
    phone: str,
    answer_texts: tuple[str, ...],
    output: Path,
) -> None:
    """Make a visitor's health declaration at the guard's desk, as a QR code PNG.

    The questions are the site's (as managers set them on the web); every
    one must be answered. A refusing answer is signed too: the gate refuses
    the code and says why, and the guard decides.

    Example:

    \b
        gatekiosk declare --name "Nguyễn Văn An" --phone 0901234567 \\
            --answers symptoms=no --answers contact=no --answers area=no -o an.png
    """
    import getpass
    from datetime import timedelta

    from kiosk.clock import SystemClock
    from kiosk.codes.sitecodes import render_png
    from kiosk.config import with_site_settings
    from kiosk.declarations import issue_declaration, questions_from
    from kiosk.store import Store

    file_settings = _settings(config_path)
    if not output.parent.is_dir():
        raise click.BadParameter(f"no folder {output.parent}", param_hint="--output")
    with Store.open(file_settings.db_path) as store:
        site = store.site_settings()
        settings = with_site_settings(file_settings, site)
        questions = questions_from(site)
        answers = _parse_answers(answer_texts, questions)
        validity_h = settings["codes.declaration_validity_h"]
        issued = issue_declaration(
            store,
            settings.keys_dir,
            site_id=settings["gate.site_id"],
            name=name,
            phone=phone,
            answers=answers,
            questions=questions,
            validity=timedelta(hours=validity_h),
            at=SystemClock().now(),
            issued_by=f"cli:{getpass.getuser()}",
        )
    render_png(issued.text, output)
    record = issued.record
    until = record.expires_at.astimezone(settings.timezone).isoformat(timespec="minutes")
    click.echo(
        f"Wrote the declaration of {record.name} to {output}: valid until {until} "
        f"({validity_h:g} h), code {record.id}."
    )
    refusing = _refusing_question(questions, answers)
    if refusing is not None:
        click.echo(
            f"The gate will refuse it (sitecode-refused-answers): the answer to "
            f"{refusing.key!r} refuses entry; the guard decides."
        )
    elif "declaration" not in settings.allowed_kinds:
        click.echo("The gate will refuse it: this site does not accept declarations.")
    else:
        click.echo("The gate will admit it.")


def _parse_answers(texts: tuple[str, ...], questions: Sequence[Question]) -> dict[str, bool]:
    """``KEY=yes|no`` options as answers; every question answered, no other."""
    by_key = {q.key: q for q in questions}
    answers: dict[str, bool] = {}
    problems: list[str] = []
    for text in texts:
        key, sep, value = text.partition("=")
        key, value = key.strip(), value.strip().lower()
        if not sep or value not in ("yes", "no"):
            problems.append(f"{text!r} is not KEY=yes or KEY=no")
        elif key not in by_key:
            problems.append(f"{key!r} is not one of the site's questions")
        elif key in answers:
            problems.append(f"{key!r} is answered twice")
        else:
            answers[key] = value == "yes"
    missing = [q.key for q in questions if q.key not in answers]
    if missing:
        problems.append(f"not answered: {', '.join(missing)}")
    if problems:
        listing = "\n".join(f"  {q.key}: {q.vi} / {q.en}" for q in questions)
        raise GateError(
            "; ".join(problems)
            + ". Answer every question with --answers KEY=yes or KEY=no:\n"
            + listing
        )
    return answers


def _refusing_question(questions: Sequence[Question], answers: dict[str, bool]) -> Question | None:
    from kiosk.declarations import verdict_of

    key = verdict_of(questions, answers)
    return next((q for q in questions if q.key == key), None)


# -- purge -------------------------------------------------------------------


@cli.command()
@config_option
def purge(config_path: Path | None) -> None:
    """Delete now what is past retention: events older than
    privacy.retention_days, and issued declarations and passes that expired
    longer ago than that. The running kiosk does the same every hour.

    Example:

        gatekiosk purge --config /etc/gatekiosk/gatekiosk.toml
    """
    from kiosk.clock import SystemClock
    from kiosk.config import with_site_settings
    from kiosk.scanner import purge_past_retention
    from kiosk.store import Store

    file_settings = _settings(config_path)
    with Store.open(file_settings.db_path) as store:
        settings = with_site_settings(file_settings, store.site_settings())
        retention_days = settings["privacy.retention_days"]
        purged = purge_past_retention(store, now=SystemClock().now(), retention_days=retention_days)
    click.echo(
        f"Purged {purged.events} events and {purged.site_codes} issued codes "
        f"(retention: {retention_days} days)."
    )


# -- export ------------------------------------------------------------------


@cli.command()
@config_option
@click.option(
    "--from", "from_text", help="First day or local time (2026-11-01 or 2026-11-01T08:00)."
)
@click.option("--to", "to_text", help="Last day (included) or local time (excluded).")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "xlsx"]), help="Default: from -o's suffix."
)
@click.option("--direction", type=click.Choice(["in", "out"]))
@click.option("--decision", type=click.Choice(["allow", "deny"]))
@click.option("--reason", help="A reason code, e.g. denylisted.")
@click.option("--kind", help="A code kind, e.g. cccd.")
@click.option("--search", help="Part of a name or masked ID (case and accents ignored).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File to write (replaced atomically).",
)
def export(
    config_path: Path | None,
    from_text: str | None,
    to_text: str | None,
    fmt: str | None,
    direction: str | None,
    decision: str | None,
    reason: str | None,
    kind: str | None,
    search: str | None,
    output: Path,
) -> None:
    """Export the gate log to CSV (UTF-8, opens in Excel) or XLSX.

    Times without a UTC offset are the site's local time; a bare date in
    --to includes that whole day. The export is recorded in the audit log.

    Example:

        gatekiosk export --from 2026-11-01 --to 2026-11-30 --format xlsx -o november.xlsx
    """
    import getpass

    from kiosk.clock import SystemClock
    from kiosk.exporting import export_to_file
    from kiosk.store import EventFilter, Store

    settings = _settings(config_path)
    tz = settings.timezone
    if fmt is None:
        fmt = "xlsx" if output.suffix.lower() == ".xlsx" else "csv"
    where = EventFilter(
        start=_export_bound(from_text, tz, end=False, option="--from"),
        end=_export_bound(to_text, tz, end=True, option="--to"),
        direction=direction,
        decision=decision,
        reason=reason,
        kind=kind,
        text=search,
    )
    if where.start and where.end and where.start >= where.end:
        raise click.BadParameter("--from must be before --to", param_hint="--from")
    with Store.open(settings.db_path) as store:
        rows = export_to_file(
            store,
            where,
            fmt=fmt,
            path=output,
            tz=tz,
            actor=f"cli:{getpass.getuser()}",
            at=SystemClock().now(),
        )
    click.echo(f"Wrote {rows} events to {output}.")


def _export_bound(text: str | None, tz: Any, *, end: bool, option: str) -> datetime | None:
    """A --from/--to value as aware UTC: dates mean whole local days."""
    from datetime import date, time, timedelta

    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        if end:
            day += timedelta(days=1)
        return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a date (2026-11-01) or a time (2026-11-01T08:00)",
            param_hint=option,
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=tz)
    return at.astimezone(UTC)


# -- selftest ----------------------------------------------------------------


@cli.command()
@config_option
@click.option("--no-relay", is_flag=True, help="Do not switch the door relay.")
@click.option("--yes", "assume_yes", is_flag=True, help="Do not ask whether each output was seen.")
def selftest(config_path: Path | None, no_relay: bool, assume_yes: bool) -> None:
    """Check the gate after wiring: camera, decoders, lights, buzzer, relay,
    database, clock and disk; a checklist, exit status 1 if anything failed.

    Stop the kiosk service first (it owns the camera and the pins).

    Example:

        sudo -u gatekiosk gatekiosk selftest --config /etc/gatekiosk/gatekiosk.toml
    """
    from gate_controller.pins import make_pin_factory
    from kiosk.clock import SystemClock
    from kiosk.compose import source_for
    from kiosk.selftest import TEST_PAYLOAD, run_selftest
    from kiosk.synthetic import Scene

    settings = _settings(config_path)
    clock = SystemClock()
    extra: dict[str, Any] = {}
    if settings["camera.source"] == "synthetic":
        extra["schedule"] = [Scene((TEST_PAYLOAD,), 3600.0)]
    factory = make_pin_factory(settings["pins.backend"])

    def confirm(question: str) -> bool:
        return assume_yes or click.confirm(question, default=True)

    source = source_for(settings, clock=clock, **extra)
    try:
        checks = run_selftest(
            settings,
            clock=clock,
            source=source,
            pin_factory=factory,
            confirm=confirm,
            include_relay=not no_relay,
        )
    finally:
        source.close()
        factory.close()
    for check in checks:
        mark = "✓" if check.ok else "✗"
        click.echo(f"{mark} {check.name}: {check.detail}")
    if not all(check.ok for check in checks):
        raise click.exceptions.Exit(1)


# -- decode ------------------------------------------------------------------


@cli.command()
@click.option(
    "--backend",
    type=click.Choice(["pipeline", "zxing", "zbar"]),
    default="pipeline",
    show_default=True,
    help="QR decoder to use.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image or video frame.")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def decode(backend: str, as_json: bool, files: tuple[Path, ...]) -> None:
    """Decode the QR codes in images or videos.

    Images give one result each; videos give one per frame that holds a
    code. Times are the decoder's own, per frame, in milliseconds.

    Example:

        gatekiosk decode --json photo.jpg recording.mp4
    """
    import time

    from kiosk.decoder import make_decoder

    decoder = make_decoder(backend)
    for path in files:
        for frame_no, grey in _frames_of(path):
            started = time.perf_counter()
            codes = decoder.decode(grey)
            ms = (time.perf_counter() - started) * 1000.0
            if frame_no is not None and not codes:
                continue
            if as_json:
                click.echo(
                    json.dumps(
                        {
                            "file": str(path),
                            "frame": frame_no,
                            "codes": [
                                {
                                    "text": c.text,
                                    "bytes_b64": base64.b64encode(c.raw).decode("ascii"),
                                    "corners": [[round(x, 1), round(y, 1)] for x, y in c.corners],
                                }
                                for c in codes
                            ],
                            "ms": round(ms, 2),
                        },
                        ensure_ascii=False,
                    )
                )
            else:
                where = str(path) if frame_no is None else f"{path} frame {frame_no}"
                if not codes:
                    click.echo(f"{where}: no QR code ({ms:.1f} ms)")
                for c in codes:
                    click.echo(f"{where}: {c.text} ({ms:.1f} ms)")


def _frames_of(path: Path) -> Iterator[tuple[int | None, Any]]:
    """(frame number or None for a still image, grey image) for a file."""
    import cv2

    if path.suffix.lower() in IMAGE_SUFFIXES:
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            raise GateError(f"{path}: not an image this program can read")
        yield None, grey
        return
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise GateError(f"{path}: neither an image nor a video this program can read")
    try:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
            index += 1
    finally:
        capture.release()


# -- check -------------------------------------------------------------------


@cli.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
@click.option("--at", "at_text", help="Decide as at this ISO-8601 time (default: now).")
@click.option("--payload", help="The code's text.")
@click.option(
    "--image",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An image holding the code.",
)
def check(
    config_path: Path | None,
    as_json: bool,
    at_text: str | None,
    payload: str | None,
    image: Path | None,
) -> None:
    """What the gate would decide for a code, without recording anything.

    Declarations and staff passes are verified against the site's keys
    (the keys folder in the data folder). With a configuration whose
    database exists, revocations, presence and the denylist are read from
    it (read only).

    Example:

        gatekiosk check --json --payload '079201000123||Nguyễn Văn An|15031990|Nam|Q1|01072021'
    """
    from kiosk.checking import check_payloads

    if (payload is None) == (image is None):
        raise click.UsageError("give exactly one of --payload or --image")
    at = _parse_at(at_text)
    settings = _settings(config_path)
    if payload is not None:
        payloads = [payload.encode("utf-8")]
    else:
        assert image is not None
        payloads = _payloads_in_image(image, settings["decoder.backend"])
    for result in check_payloads(settings, payloads, at=at):
        if as_json:
            click.echo(json.dumps(result, ensure_ascii=False))
        else:
            click.echo(
                f"{result['decision']} ({result['direction']}): {result['reason']}"
                f" [{result['kind']}] {result['message']['vi']} / {result['message']['en']}"
            )


def _parse_at(at_text: str | None) -> datetime:
    if at_text is None:
        from kiosk.clock import SystemClock

        return SystemClock().now()
    try:
        at = datetime.fromisoformat(at_text)
    except ValueError:
        raise click.BadParameter(
            f"{at_text!r} is not an ISO-8601 time, e.g. 2026-11-28T08:30:00+07:00",
            param_hint="--at",
        ) from None
    if at.tzinfo is None:
        raise click.BadParameter(
            f"{at_text!r} has no UTC offset; add one, e.g. {at_text}+07:00", param_hint="--at"
        )
    return at.astimezone(UTC)


def _payloads_in_image(image: Path, backend: str) -> list[bytes]:
    from kiosk.decoder import make_decoder

    decoder = make_decoder(backend)
    grey = next(_frames_of(image))[1]
    codes = decoder.decode(grey)
    if not codes:
        raise GateError(f"{image}: no QR code found")
    return [c.raw for c in codes]


# -- replay ------------------------------------------------------------------


@cli.command()
@config_option
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Database to record into (default: a fresh one in a temporary folder).",
)
@click.option(
    "--fps", type=float, default=None, help="Replay at this rate (default: as fast as possible)."
)
@click.argument("recording", type=click.Path(exists=True, path_type=Path))
def replay(
    config_path: Path | None, db_path: Path | None, fps: float | None, recording: Path
) -> None:
    """Run the real pipeline over a video or an image folder, with simulated pins.

    Prints one JSON line per decision: frame, decision, reason, kind and
    latency_ms (from the frame's capture to the signal).

    Example:

        gatekiosk replay --fps 15 gate-recording.mp4
    """
    from gpiozero.pins.mock import MockFactory

    from kiosk.camera import FileSource
    from kiosk.clock import SystemClock
    from kiosk.compose import build_gate

    clock = SystemClock()
    with tempfile.TemporaryDirectory(prefix="gatekiosk-replay-") as tmp:
        data_dir = db_path.parent if db_path else Path(tmp)
        settings = _settings(config_path, **{"gate.data_dir": str(data_dir)})
        if db_path is not None:
            settings = _with_db_name(settings, db_path)
        source = FileSource(recording, clock=clock, fps=fps)

        def emit(outcome: Any) -> None:
            click.echo(
                json.dumps(
                    {
                        "frame": outcome.frame_index,
                        "decision": outcome.decision.verdict,
                        "reason": outcome.decision.reason,
                        "kind": outcome.identified.kind if outcome.identified else None,
                        "latency_ms": round(outcome.latency_ms, 2),
                    }
                )
            )

        with build_gate(
            settings,
            clock=clock,
            source=source,
            pin_factory=MockFactory(),
            on_outcome=emit,
            live=False,  # a replay must not carry out a guard's pending admission
        ) as gate:
            gate.scanner.run(threading.Event())


def _with_db_name(settings: Any, db_path: Path) -> Any:
    from kiosk.config import Settings

    return Settings(
        values={**settings.values, "gate.data_dir": str(db_path.parent)},
        source=settings.source,
        db_name=db_path.name,
    )


def main() -> None:
    # OpenCV prints a warning of its own on every failed camera open; the
    # camera module already reports the state once per change.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    cli(prog_name="gatekiosk")
