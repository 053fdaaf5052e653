"""``gatekiosk demo``: the whole gate with a simulated camera and simulated pins.

The simulated camera shows, in turn (each about 3 s in view, then 3 s of
nobody; a cycle of a minute, repeated):

1. an ID card (CCCD): allowed, entering;
2. a national personal QR (PC-Covid): allowed;
3. the site's own health declaration, made at start-up: allowed;
4. a restaurant menu link: refused, ``unrecognised``;
5. a declaration made two days ago: refused, ``sitecode-expired``;
6. a declaration whose name was edited: refused, ``sitecode-bad-signature``;
7. the ID card of a denylisted person: refused, ``denylisted``;
8. a declaration answering "yes" to symptoms: refused, ``sitecode-refused-answers``;
9. a staff pass: allowed;
10. the first ID card again: allowed, leaving.

The site's keys are created in the data folder on the first run
(``keys/``), and the signed samples are issued with them at every start,
so they appear among the site's declarations and passes on the admin page.

The demo writes its settings as a configuration file in its data folder
(``gatekiosk.toml``) and prints the commands that use it, so the other
commands (``user add``, ``check``, ``export``) work on the demo's database
and keys. Each run starts afresh from an empty database (the keys are
kept) unless asked to continue (``keep=True``), which it then says.

The demo's clock is the machine's: on a machine without time sync it says
so once at start, and its events are not flagged one by one
(:class:`DemoClock`).
"""

from __future__ import annotations

import json
import secrets
import shlex
import sqlite3
import sys
import threading
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from gpiozero.pins.mock import MockFactory

from kiosk.camera.synthetic import SyntheticSource
from kiosk.clock import Clock, SystemClock
from kiosk.codes.sitecodes import render_png
from kiosk.compose import build_gate
from kiosk.config import Settings, load_settings
from kiosk.demo_codes import SignedDemoVisitors, signed_demo_visitors
from kiosk.errors import GateError
from kiosk.keys import MANIFEST_NAME, init_keys
from kiosk.privacy import load_or_create_key, subject_hash, typed_id_subject
from kiosk.samples import (
    DENYLISTED_ID,
    VISITOR_CCCD,
    VISITOR_DENYLISTED,
    VISITOR_PC_COVID,
    VISITOR_UNRECOGNISED,
    SampleVisitor,
)
from kiosk.scanner import Outcome
from kiosk.store import Store
from kiosk.synthetic import Scene
from kiosk.webserver import RunningServer, Serving, serve_in_background

SHOW_S = 3.0
"""How long each sample visitor holds the code to the camera."""
GAP_S = 3.0
"""Empty frames between visitors: longer than the hysteresis."""


DEMO_MANAGER = "demo"
DEMO_WEB_PORT = 8080
DEMO_SITE_ID = "demo"
DEMO_GATE_ID = "demo-gate"
DEMO_CONFIG_NAME = "gatekiosk.toml"
DEMO_CODE_NAME = "declaration.png"
"""A valid signed declaration of this run, as a PNG in the data folder's ``codes/``."""

DEMO_SETTINGS: dict[str, Any] = {
    "gate.id": DEMO_GATE_ID,
    "gate.site_id": DEMO_SITE_ID,
    "gate.mode": "both",
    "camera.source": "synthetic",
    "camera.fps": 10.0,
    "pins.backend": "mock",
    "pins.relay_pulse_ms": 1000,
    "pins.light_ms": 1500,
}
"""The demo's settings beside the data folder, as written to its configuration file."""


class DemoClock(SystemClock):
    """The machine's clock, taken as it is: a demo has nothing to keep in
    step with, so its events and the dashboard are not flagged for a
    machine without time sync (the demo says so once instead)."""

    def synchronised(self) -> bool:
        return True


@dataclass
class DemoWeb:
    url: str
    password: str
    server: RunningServer
    store: Store

    def stop(self) -> None:
        self.server.stop()
        self.store.close()


def start_demo_web(settings: Settings, *, clock: Clock, port: int) -> DemoWeb:
    """The admin web beside the demo gate, with a manager whose password is
    made up for this run only (there are no default credentials)."""
    from admin_web import create_app
    from kiosk.accounts import add_user, reset_password

    store = Store.open(settings.db_path, concurrent_reads=True)
    password = secrets.token_urlsafe(12)
    account = store.user_by_name(DEMO_MANAGER)
    if account is None:
        add_user(store, DEMO_MANAGER, role="manager", password=password, at=clock.now())
    else:
        reset_password(store, account, password, at=clock.now())
        store.set_user_disabled(account.id, False)
    app = create_app(settings, store=store, clock=clock)
    serving = Serving.from_settings(settings)
    try:
        server = serve_in_background(app, host="127.0.0.1", port=port, serving=serving)
    except GateError:  # 8080 is taken
        server = serve_in_background(app, host="127.0.0.1", port=0, serving=serving)
    return DemoWeb(server.url, password, server, store)


def write_demo_config(data_dir: Path) -> Path:
    """Write the demo's configuration file into ``data_dir`` (made if missing)
    and return its path: :data:`DEMO_SETTINGS` and the data folder (absolute,
    so the file works from any folder)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    values = {**DEMO_SETTINGS, "gate.data_dir": str(data_dir.resolve())}
    sections: dict[str, list[str]] = {}
    for name, value in values.items():
        section, key = name.split(".", 1)
        sections.setdefault(section, []).append(f"{key} = {_toml_value(value)}")
    lines = [
        "# Written by `gatekiosk demo` at every start: the demo's own settings.",
        "# Pass it to any command to work on the demo, e.g.",
        f"#   gatekiosk user add minh --role guard --config {DEMO_CONFIG_NAME}",
    ]
    for section, entries in sections.items():
        lines += ["", f"[{section}]", *entries]
    path = data_dir / DEMO_CONFIG_NAME
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


def demo_settings(data_dir: Path) -> Settings:
    """The demo's settings, read back from the configuration file it writes
    into ``data_dir`` (so the demo runs on exactly what the printed commands use)."""
    return load_settings(write_demo_config(data_dir), env={})


def clear_demo_database(settings: Settings) -> bool:
    """Remove the demo's database (the keys and hash key stay), so a run starts
    from a known state; True if there was one. A database holding another
    gate's events is not the demo's: GateError, nothing removed."""
    db = settings.db_path
    if not db.exists():
        return False
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            other = conn.execute(
                "SELECT 1 FROM events WHERE gate_id <> ? LIMIT 1", (DEMO_GATE_ID,)
            ).fetchone()
    except sqlite3.Error as exc:
        raise GateError(f"{db}: cannot tell whether it is the demo's database ({exc})") from None
    if other is not None:
        raise GateError(
            f"{db} holds events of another gate, not the demo's; "
            "give the demo a folder of its own with --data-dir"
        )
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return True


def newcomer_commands(config: Path, code: Path, *, program: str = "gatekiosk") -> str:
    """What to try next, on the demo's own database and keys: the exact commands."""
    cfg = shlex.quote(str(config))
    return (
        f"Cấu hình của demo / the demo's configuration: {config}\n"
        "Thử trong một cửa sổ khác / try in another terminal:\n"
        f"  thêm bảo vệ / add a guard:       {program} user add minh --role guard --config {cfg}\n"
        f"  kiểm tra mã / check a demo code: {program} check --config {cfg} "
        f"--image {shlex.quote(str(code))}\n"
        f"  xuất nhật ký / export the log:   {program} export --config {cfg} -o demo-log.xlsx\n"
    )


def prepare_signed_visitors(settings: Settings, *, now: datetime) -> SignedDemoVisitors:
    """Create the demo site's keys if it has none, then issue the signed samples."""
    if not (settings.keys_dir / MANIFEST_NAME).exists():
        init_keys(settings.keys_dir, at=now)
    with Store.open(settings.db_path) as store:
        return signed_demo_visitors(
            store, settings.keys_dir, site_id=settings["gate.site_id"], now=now
        )


def demo_visitors(signed: SignedDemoVisitors) -> tuple[SampleVisitor, ...]:
    """One cycle of the simulated camera, in order (see the module docstring)."""
    return (
        VISITOR_CCCD,
        VISITOR_PC_COVID,
        signed.valid,
        VISITOR_UNRECOGNISED,
        signed.expired,
        signed.tampered,
        VISITOR_DENYLISTED,
        signed.refused,
        signed.staff,
        signed.hcert_valid,
        signed.hcert_tampered,
        VISITOR_CCCD,  # shown again: leaving
    )


def demo_source(
    clock: Clock, settings: Settings, visitors: tuple[SampleVisitor, ...]
) -> SyntheticSource:
    scenes = []
    for visitor in visitors:
        scenes.append(Scene((visitor.payload,), SHOW_S))
        scenes.append(Scene((), GAP_S))
    return SyntheticSource(
        scenes,
        clock=clock,
        size=(settings["camera.width"], settings["camera.height"]),
        fps=settings["camera.fps"],
        loop=True,
        seed=7,
    )


class LightsLine:
    """Draws the simulated lights on one terminal line, redrawn as pins change."""

    def __init__(self, factory: MockFactory, settings: Settings, out: TextIO) -> None:
        self.factory = factory
        self.settings = settings
        self.out = out
        self.colour = out.isatty()
        self._lock = threading.Lock()
        self._last = ""

    def _pin_on(self, name: str, active_high: bool = True) -> bool:
        number = self.settings[f"pins.{name}"]
        if number is None:
            return False
        state = bool(self.factory.pin(number).state)
        return state if active_high else not state

    def render(self) -> str:
        green = self._pin_on("green")
        red = self._pin_on("red")
        relay = self._pin_on("relay", self.settings["pins.relay_active_high"])
        buzzer = self._pin_on("buzzer")

        def lamp(on: bool, label: str, code: str) -> str:
            dot = "●" if on else "○"
            if self.colour and on:
                return f"\x1b[{code}m{dot} {label}\x1b[0m"
            return f"{dot} {label}"

        return "   ".join(
            [
                lamp(green, "XANH/green", "1;32"),
                lamp(red, "ĐỎ/red", "1;31"),
                lamp(relay, "CỬA MỞ/door open", "1;33"),
                lamp(buzzer, "CÒI/buzzer", "1;35"),
            ]
        )

    def refresh(self) -> None:
        line = self.render()
        with self._lock:
            if self.colour and line != self._last:
                self.out.write("\r\x1b[2K" + line)
                self.out.flush()
            self._last = line

    def print_above(self, text: str) -> None:
        with self._lock:
            if self.colour:
                self.out.write("\r\x1b[2K" + text + "\n" + self._last)
            else:
                self.out.write(text + "\n")
            self.out.flush()


def describe(outcome: Outcome, tz: Any) -> str:
    decision = outcome.decision
    when = outcome.event.at.astimezone(tz).strftime("%H:%M:%S") if outcome.event else "--:--:--"
    name = ""
    masked = ""
    if outcome.event is not None:
        name = outcome.event.display_name or ""
        masked = outcome.event.masked_id or ""
    kind = outcome.identified.kind if outcome.identified else "override"
    verdict = "CHO VÀO/ALLOW" if decision.allowed else "TỪ CHỐI/DENY"
    return (
        f"{when}  {verdict:<14} {decision.direction:<3} {kind:<12} {name} {masked}".rstrip()
        + f"  — {decision.message.vi} / {decision.message.en}"
        + f"  [{decision.reason}, {outcome.latency_ms:.0f} ms]"
    )


def run_demo(
    *,
    data_dir: Path,
    seconds: float | None,
    out: TextIO | None = None,
    stop: threading.Event | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    web_port: int = DEMO_WEB_PORT,
    keep: bool = False,
    program: str = "gatekiosk",
) -> None:
    """Run the demo until ``stop`` is set or ``seconds`` have passed. It starts
    from an empty database unless ``keep``; ``program`` is how the printed
    commands call gatekiosk."""
    out = out or sys.stdout
    stop = stop or threading.Event()
    settings = demo_settings(data_dir)
    if keep:
        start_note = (
            "Tiếp tục với dữ liệu của các lần chạy trước (--keep). / Continuing with the "
            "events, passes and presence of earlier runs (--keep).\n"
        )
    else:
        cleared = clear_demo_database(settings)
        start_note = (
            "Bắt đầu lại từ đầu: đã xóa dữ liệu demo cũ. / Starting afresh: the earlier "
            "demo's database was removed (--keep continues it).\n"
            if cleared
            else ""
        )
    clock = DemoClock()
    if not SystemClock().synchronised():
        start_note += (
            "Đồng hồ của máy này chưa được đồng bộ (NTP); bản demo dùng giờ của máy. / "
            "This machine's clock is not synchronised (NTP); the demo uses it as it is.\n"
        )
    signed = prepare_signed_visitors(settings, now=clock.now())
    code = settings.data_dir / "codes" / DEMO_CODE_NAME
    code.parent.mkdir(exist_ok=True)
    render_png(signed.valid.payload, code)
    visitors = demo_visitors(signed)
    factory = MockFactory()
    lights = LightsLine(factory, settings, out)

    def report(outcome: Outcome) -> None:
        lights.print_above(describe(outcome, settings.timezone))
        if on_outcome is not None:
            on_outcome(outcome)

    with build_gate(
        settings,
        clock=clock,
        source=demo_source(clock, settings, visitors),
        pin_factory=factory,
        on_outcome=report,
    ) as gate:
        key = load_or_create_key(settings.key_path)
        hashed = subject_hash(key, typed_id_subject(DENYLISTED_ID))
        if not gate.store.is_denylisted(hashed):
            gate.store.add_to_denylist(
                hashed, label="Lê Hoàng Phúc (demo)", note="demo: denylisted", at=clock.now()
            )
        web = start_demo_web(settings, clock=clock, port=web_port)
        config = data_dir / DEMO_CONFIG_NAME
        out.write(
            start_note + "gatekiosk demo: camera và chân GPIO mô phỏng / simulated camera "
            f"and pins, cơ sở dữ liệu / database {settings.db_path}. "
            "Ctrl-C để dừng / to stop.\n"
            f"Trang quản trị / Admin page: {web.url}  user: {DEMO_MANAGER}  "
            f"password (this run only): {web.password}  (mật khẩu chỉ cho lần chạy này)\n"
            f"Màn hình cổng / Gate screen: {web.url}display\n"
            + newcomer_commands(config, data_dir / "codes" / DEMO_CODE_NAME, program=program)
        )
        out.flush()
        scan = threading.Thread(target=gate.scanner.run, args=(stop,), name="scanner")
        scan.start()
        try:
            deadline = clock.monotonic() + seconds if seconds is not None else None
            while not stop.wait(0.05):
                lights.refresh()
                if deadline is not None and clock.monotonic() >= deadline:
                    stop.set()
        except KeyboardInterrupt:
            stop.set()
        finally:
            stop.set()
            scan.join()
            web.stop()
            if lights.colour:
                out.write("\n")
