"""Building blocks for the browser tests (tests/test_browser.py).

The admin web runs as a user would run it: ``gatekiosk user add`` then
``gatekiosk web`` as subprocesses, over a config file in a temporary folder.
The test process plays the kiosk: it opens a :class:`~kiosk.store.Store` on
the same database file, records events with the real clock (the server uses
the system clock too) and keeps the kiosk's health row fresh, as ``gatekiosk
run`` does, so the gate screen is not in its fault state.

Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright; no
browser is ever downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from playwright.sync_api import ConsoleMessage, Dialog, Error, Page

from kiosk.store import Event, KioskHealth, NewEvent, Store

PROJECT_ROOT = Path(__file__).resolve().parent.parent

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]

SITE_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
"""The default ``gate.timezone``, which the config written here keeps."""
GATE_ID = "gate-1"
MANAGER = "boss"
MANAGER_PASSWORD = "correct horse battery staple"

SERVER_START_TIMEOUT_S = 30.0
SERVER_STOP_TIMEOUT_S = 10.0
HEARTBEAT_S = 1.0
"""How often the simulated kiosk refreshes its health row (the web calls a
kiosk silent for 15 s not running)."""

GATEKIOSK = Path(sys.executable).parent / "gatekiosk"
"""The console script; ``kiosk.cli`` has no ``__main__`` block."""


def artifacts_dir() -> Path:
    """Where screenshots go: $GATEKIOSK_ARTIFACTS, or artifacts/ in the project."""
    folder = Path(os.environ.get("GATEKIOSK_ARTIFACTS", str(PROJECT_ROOT / "artifacts")))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _environment() -> dict[str, str]:
    """This process's environment without settings overrides (GATEKIOSK_SECTION__KEY)."""
    env = {k: v for k, v in os.environ.items() if not (k.startswith("GATEKIOSK_") and "__" in k)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def subject_hash(name: str) -> str:
    """A stand-in for the kiosk's keyed hash: one per person, 32 hex digits."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]


@dataclass
class Gate:
    """A running ``gatekiosk web`` and the kiosk's side of the database."""

    url: str
    """Base URL, ending in ``/``."""
    data_dir: Path
    config: Path
    store: Store
    process: subprocess.Popen[bytes]
    log_path: Path
    _stop: threading.Event = field(default_factory=threading.Event)
    _heartbeat: threading.Thread | None = None
    _health: dict[str, Any] = field(default_factory=dict)

    def record(self, name: str | None, *, at: datetime | None = None, **fields: Any) -> Event:
        """Record one event as the kiosk would: an allowed entry unless ``fields`` say otherwise."""
        at = at if at is not None else datetime.now(UTC)
        offset = at.astimezone(SITE_TZ).utcoffset()
        assert offset is not None
        values: dict[str, Any] = {
            "gate_id": GATE_ID,
            "at": at,
            "utc_offset_min": int(offset.total_seconds() // 60),
            "clock_synced": True,
            "direction": "in",
            "decision": "allow",
            "reason": "ok",
            "kind": "cccd",
            "subject_hash": subject_hash(name or ""),
            "display_name": name,
            "masked_id": "********" + subject_hash(name or "")[:4].upper(),
        }
        values.update(fields)
        return self.store.record(NewEvent(**values))

    def beat(self) -> None:
        """Write the kiosk's health row now: running, and as :meth:`report` last said
        (camera fine, no fault unless told otherwise)."""
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "last_frame_at": now,
            "fps": 15.0,
            "camera": "synthetic",
            "camera_ok": True,
            "camera_detail": "",
            "decoder": "zxing",
            "pin_backend": "mock",
            "clock_synced": True,
            "fault": None,
            **self._health,
        }
        self.store.write_health(KioskHealth(gate_id=GATE_ID, updated_at=now, **values))

    def report(self, **health: Any) -> None:
        """From now on the kiosk reports these health fields (e.g. a camera fault)."""
        self._health = health
        self.beat()

    def start_heartbeat(self) -> None:
        """Keep the health row fresh from a thread, as the running kiosk does."""
        self.beat()

        def run() -> None:
            while not self._stop.wait(HEARTBEAT_S):
                self.beat()

        self._heartbeat = threading.Thread(target=run, name="kiosk-heartbeat", daemon=True)
        self._heartbeat.start()

    def server_log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        """Stop the heartbeat, stop the server (SIGTERM, then SIGKILL), close the store."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=10)
        stop_process(self.process)
        self.store.close()


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=SERVER_STOP_TIMEOUT_S)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _write_config(data_dir: Path, port: int) -> Path:
    config = data_dir / "gatekiosk.toml"
    config.write_text(
        f'[gate]\ndata_dir = "{data_dir.as_posix()}"\n\n[web]\nport = {port}\n',
        encoding="utf-8",
    )
    return config


def add_manager(config: Path) -> None:
    """``gatekiosk user add boss --role manager --password-stdin``, as an installer would."""
    done = subprocess.run(
        [
            str(GATEKIOSK),
            *("user", "add", MANAGER, "--role", "manager", "--password-stdin"),
            *("--config", str(config)),
        ],
        input=(MANAGER_PASSWORD + "\n").encode("utf-8"),
        capture_output=True,
        env=_environment(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")


def start_gate(data_dir: Path, *, attempts: int = 3) -> Gate:
    """Create a manager, start ``gatekiosk web`` on a free port and wait until it answers.

    The free port is found by binding port 0 and closing it; if another
    program takes it before the server does, the server exits and another
    port is tried.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    for attempt in range(attempts):
        port = _free_port()
        config = _write_config(data_dir, port)
        if attempt == 0:
            add_manager(config)
        log_path = data_dir / f"web-{attempt}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [str(GATEKIOSK), "web", "--config", str(config)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=_environment(),
            )
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while process.poll() is None and time.monotonic() < deadline:
            if _answers(url + "login"):
                store = Store.open(data_dir / "gatekiosk.db")
                return Gate(url, data_dir, config, store, process, log_path)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.05)
        stop_process(process)
        problems.append(
            f"attempt {attempt + 1} on port {port}: exit status {process.returncode}\n"
            + log_path.read_text(encoding="utf-8", errors="replace")
        )
    raise AssertionError("gatekiosk web did not start:\n" + "\n".join(problems))


def spread_over_today(hours_ago: float, *, now: datetime | None = None) -> datetime:
    """``hours_ago`` before now, but no earlier than a minute after local midnight
    (nor later than now), so the event counts in today's dashboard figures."""
    now = now if now is not None else datetime.now(UTC)
    local_now = now.astimezone(SITE_TZ)
    midnight = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    earliest = min(now, (midnight + timedelta(minutes=1)).astimezone(UTC))
    return max(earliest, now - timedelta(hours=max(0.0, hours_ago)))


CSP_WATCH_SCRIPT = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " blocked " + e.blockedURI);
});
"""
"""Runs before any page script (Playwright injects it over CDP, outside the
page's CSP) and collects the page's own CSP violation events."""


@dataclass
class PageWatch:
    """What a page said on the console, threw, or tried to pop up."""

    console: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    csp_events: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.add_init_script(CSP_WATCH_SCRIPT)
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("dialog", self._on_dialog)

    def _on_console(self, message: ConsoleMessage) -> None:
        line = f"{message.type}: {message.text} ({message.location.get('url', '')})"
        self.console.append(line)
        if message.type == "error":
            self.console_errors.append(line)

    def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        with contextlib.suppress(Error):
            dialog.dismiss()

    def collect_csp_events(self, page: Page) -> None:
        """Take the CSP violation events of the document now in ``page``."""
        found = page.evaluate("window.__cspViolations || []")
        self.csp_events.extend(str(item) for item in found)

    @property
    def csp_violations(self) -> list[str]:
        from_console = [
            line
            for line in self.console
            if "Content Security Policy" in line or "Refused to" in line
        ]
        return from_console + self.csp_events

    def assert_clean(self) -> None:
        """No CSP violation, no uncaught script error, no dialog."""
        assert self.csp_violations == [], self.csp_violations
        assert self.page_errors == [], self.page_errors
        assert self.dialogs == [], self.dialogs
