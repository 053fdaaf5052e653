"""A real gate through a real storage fault, from before it to after it.

One scenario per fault kind, on a real SQLite file, a real decoder reading
rendered codes and gpiozero's MockFactory pins:

* ``locked``: another process holds the database's write lock
  (``BEGIN EXCLUSIVE``), as a long web or CLI transaction would;
* ``disk-full``: the database lives on a small tmpfs that gets filled;
* ``read-only``: the kiosk stops without closing the database (a power cut
  leaves the ``-wal`` file), the file system turns read-only, and the kiosk
  starts again on it. (A running connection cannot be given a read-only file
  system: Linux refuses to make a mount read-only while any file on it is
  open for writing (EBUSY); only the kernel's own emergency remount after
  disk errors can, and SQLite then reports a disk I/O error.)

The steps: visitors enter normally -> the fault is injected -> a code is
refused with ``store-fault`` and the fault pattern shows -> the guard's
button opens the door twice (for the refused visitor, then for nobody in
particular) -> the fault is removed -> both overrides are recorded, once, with
their own times and a note, and the fault pattern stops -> a visitor leaves
normally. What happened is printed as one JSON object; the test asserts on
it, the benchmark reads its figures.

The file-system kinds mount a tmpfs, so they must run in a private mount
namespace, which ``unshare -rm`` gives without real root::

    unshare -rm .venv/bin/python -m tests.storage_fault_scenario disk-full /tmp/x \
        --outer-mount-ns "$(readlink /proc/self/ns/mnt)"

``--clock system --busy-ms 1000`` runs on the real clock with the kiosk's
busy timeout (the benchmark); the default fake clock makes the test's
stepping deterministic (the probe cadence is counted in frames).
"""

from __future__ import annotations

import argparse
import errno
import itertools
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np
from gpiozero.pins.mock import MockFactory

from gate_controller.gpio import GpiozeroSignals
from gate_controller.pins import PinConfig
from kiosk.camera import Frame, SourceState
from kiosk.clock import Clock, FakeClock, SystemClock
from kiosk.codes import Registry, default_formats
from kiosk.decoder import ZxingDecoder
from kiosk.errors import StoreError
from kiosk.policy import PolicyRules
from kiosk.samples import VISITOR_CCCD, VISITOR_DENYLISTED, VISITOR_PC_COVID
from kiosk.scanner import GateParts, GateSetup, Outcome, Scanner, ScanSettings
from kiosk.store import Store
from kiosk.synthetic import render_code_frame
from tests.waiting import wait_until

KINDS = ("locked", "disk-full", "read-only")
KEY = b"k" * 32
PINS = PinConfig(
    green=17, red=27, buzzer=22, relay=23, button=24, status=25, relay_pulse_ms=30, light_ms=60
)
RELAY, BUTTON, STATUS = 23, 24, 25
FPS = 10.0
TMPFS_SIZE = "4m"
# Words that must never reach a log line: the visitors' ID numbers and names.
SECRETS = ("079201000123", "001095004567", "Nguyễn Văn An", "Lê Hoàng Phúc", "TRAN THI BICH NGOC")

log = logging.getLogger("scenario")


# -- a camera a visitor holds a code up to -------------------------------------


class HeldCodeSource:
    """Frames at ``FPS`` on the clock showing whatever code is held up now."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._held: str | None = None
        self._index = 0
        self._frames: dict[str | None, np.ndarray] = {None: np.full((480, 640), 128, np.uint8)}

    def show(self, payload: str | None) -> None:
        if payload is not None and payload not in self._frames:
            self._frames[payload] = render_code_frame(payload, module_px=4.0)
        self._held = payload

    @property
    def state(self) -> SourceState:
        return SourceState("held", True, "")

    @property
    def exhausted(self) -> bool:
        return False

    def read(self, timeout_s: float) -> Frame | None:
        self._clock.sleep(1 / FPS)
        self._index += 1
        return Frame(self._frames[self._held], self._clock.monotonic(), self._index)

    def close(self) -> None:
        pass


# -- the faults -------------------------------------------------------------------


class Fault(Protocol):
    def inject(self) -> None: ...

    def remove(self) -> None: ...


@dataclass
class LongLock:
    """Another process holds the write lock until told to let go."""

    db: Path
    holder: subprocess.Popen[str] | None = None

    def inject(self) -> None:
        code = (
            "import sqlite3, sys\n"
            f"c = sqlite3.connect({str(self.db)!r}, isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n"
            "c.execute('ROLLBACK')\n"
        )
        self.holder = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.holder.stdout is not None
        assert self.holder.stdout.readline().strip() == "locked"

    def remove(self) -> None:
        assert self.holder is not None
        assert self.holder.stdin is not None
        self.holder.stdin.close()
        assert self.holder.wait(timeout=30) == 0
        if self.holder.stdout is not None:
            self.holder.stdout.close()


@dataclass
class FullDisk:
    """The tmpfs holding the database fills up; removing the filler frees it."""

    mount_dir: Path

    @property
    def filler(self) -> Path:
        return self.mount_dir / "filler"

    def inject(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        finally:
            os.close(fd)

    def remove(self) -> None:
        self.filler.unlink()


@dataclass
class ReadOnlyFileSystem:
    """The mount holding the database is made read-only, then read-write again.

    Per mount (``remount,bind``): an unprivileged user namespace may change
    its own mount's flags but not remount the tmpfs itself. To SQLite and
    ``statvfs`` it is the same read-only file system (``EROFS``, ``ST_RDONLY``).
    """

    mount_dir: Path

    def inject(self) -> None:
        _run(["mount", "-o", "remount,bind,ro", str(self.mount_dir)])

    def remove(self) -> None:
        _run(["mount", "-o", "remount,bind,rw", str(self.mount_dir)])


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")


def run_under_unshare(module: str, args: list[str], what: str) -> dict[str, Any]:
    """Run ``python -m module args`` in a user and mount namespace of its own
    (``unshare -rm``, no real root needed), where it may mount a tmpfs and
    make it full or read-only; its JSON report from stdout. Fails the test
    with the reason when ``unshare`` is missing or the scenario fails."""
    import pytest

    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail(
            "`unshare` is missing: install util-linux (apt-get install util-linux); the "
            f"{what} test mounts a tmpfs in a private mount namespace"
        )
    done = subprocess.run(
        [unshare, "-rm", sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=600,
    )
    if done.returncode != 0:
        pytest.fail(
            f"the {what} scenario failed under `unshare -rm` (exit {done.returncode}); "
            "if unshare itself failed, user namespaces may be disabled "
            f"(sysctl user.max_user_namespaces):\n{done.stderr[-4000:]}"
        )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def mount_namespace() -> str:
    """This process's mount namespace, e.g. ``mnt:[4026531841]``."""
    return os.readlink("/proc/self/ns/mnt")


def mount_tmpfs(directory: Path, outer_namespace: str | None) -> None:
    """A small tmpfs at ``directory``, only in a mount namespace of this
    process's own (never the caller's: ``outer_namespace`` is the caller's)."""
    if outer_namespace is None or mount_namespace() == outer_namespace:
        raise SystemExit(
            "refusing to mount in the caller's mount namespace: run under `unshare -rm` "
            "with --outer-mount-ns set to the caller's (see the module docstring)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    _run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(directory)])


# -- the gate -------------------------------------------------------------------------


def relay_energised(factory: MockFactory) -> bool:
    return not factory.pin(RELAY).state  # active-low relay board


def relay_pulses(factory: MockFactory) -> int:
    levels = [not s.state for s in factory.pin(RELAY).states]
    return sum(1 for before, after in itertools.pairwise(levels) if after and not before)


@dataclass
class Gate:
    scanner: Scanner
    source: HeldCodeSource
    factory: MockFactory
    signals: GpiozeroSignals
    clock: Clock
    wall: Clock = field(default_factory=SystemClock)
    """The real clock, for the benchmark's figures whatever ``clock`` is."""
    longest_step_ms: float = 0.0
    """The longest real time one loop step took (the watchdog sees this gap)."""

    def frames(self, payload: str | None, seconds: float) -> list[Outcome]:
        """Hold ``payload`` (None: nobody) up for ``seconds`` of frames."""
        self.source.show(payload)
        outcomes: list[Outcome] = []
        for _ in range(round(seconds * FPS)):
            started = self.wall.monotonic()
            outcomes += self.scanner.step()
            took_ms = (self.wall.monotonic() - started) * 1000
            self.longest_step_ms = max(self.longest_step_ms, took_ms)
            wait_until(lambda: not relay_energised(self.factory))
        return outcomes

    def visit(self, payload: str) -> Outcome:
        """One visitor shows a code for a second, then walks on (3 s of nobody)."""
        outcomes = self.frames(payload, 1.0) + self.frames(None, 3.0)
        assert len(outcomes) == 1, outcomes
        return outcomes[0]

    def press_override(self) -> float:
        """The guard presses the button; returns real ms until the relay energised."""
        pulses = relay_pulses(self.factory)
        started = self.wall.monotonic()
        self.factory.pin(BUTTON).drive_low()
        wait_until(lambda: relay_pulses(self.factory) > pulses)
        opened_ms = (self.wall.monotonic() - started) * 1000
        self.factory.pin(BUTTON).drive_high()
        wait_until(lambda: not relay_energised(self.factory))
        return opened_ms

    def status_blinking(self) -> bool:
        """The fault pattern: the status LED keeps changing (0.1 s blink)."""
        seen = len(self.factory.pin(STATUS).states)
        try:
            wait_until(lambda: len(self.factory.pin(STATUS).states) >= seen + 4)
        except AssertionError:
            return False
        return True

    def status_steady(self) -> bool:
        """Ready: the status LED lit and no longer changing."""
        seen = len(self.factory.pin(STATUS).states)
        self.wall.sleep(0.35)  # more than three blink periods
        return len(self.factory.pin(STATUS).states) == seen and bool(self.factory.pin(STATUS).state)

    def close(self) -> None:
        self.signals.close()
        self.factory.close()


def build_gate(store: Store, clock: Clock, **settings: Any) -> Gate:
    """A gate over ``store``; ``settings`` are ScanSettings fields other than the defaults."""
    factory = MockFactory()
    signals = GpiozeroSignals(PINS, pin_factory=factory)
    source = HeldCodeSource(clock)
    scanner = Scanner(
        parts=GateParts(source, ZxingDecoder(), signals, pin_backend="MockFactory"),
        registry=Registry(default_formats()),
        store=store,
        clock=clock,
        setup=GateSetup(
            PolicyRules(),
            ScanSettings(gate_id="gate-1", timezone=ZoneInfo("Asia/Ho_Chi_Minh"), **settings),
        ),
        hash_key=KEY,
    )
    return Gate(scanner, source, factory, signals, clock)


# -- looking at the file from outside --------------------------------------------------


def read_rows(db: Path) -> list[dict[str, Any]]:
    """Every event row, by a read-only connection of its own (changes nothing)."""
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM events ORDER BY rowid").fetchall()
        out = [dict(row) for row in rows]
    conn.close()
    return out


def integrity(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        result = [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]
    conn.close()
    return result


# -- the scenario -----------------------------------------------------------------------


class LogLines(logging.Handler):
    """Every log line at INFO and above, as ``LEVEL logger: message``."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


def normal_phase(gate: Gate) -> dict[str, Any]:
    """Two visitors enter: the decisions (``verdict/reason``) and their latencies."""
    outcomes = [gate.visit(VISITOR_CCCD.payload), gate.visit(VISITOR_PC_COVID.payload)]
    return {
        "decisions": [f"{o.decision.verdict}/{o.decision.reason}" for o in outcomes],
        "latency_ms": [o.latency_ms for o in outcomes],
    }


def run(
    kind: str,
    workdir: Path,
    *,
    clock_kind: str = "fake",
    busy_ms: int = 200,
    outer_namespace: str | None = None,
) -> dict[str, Any]:
    """The whole scenario; returns what was seen (see the module docstring),
    with every log line at INFO and above under ``"log"``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    logs = LogLines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(logs)
    root.setLevel(logging.INFO)
    try:
        report = _scenario(
            kind, workdir, clock_kind=clock_kind, busy_ms=busy_ms, outer_namespace=outer_namespace
        )
    finally:
        root.removeHandler(logs)
        root.setLevel(level)
    report["log"] = logs.lines
    return report


def _scenario(
    kind: str,
    workdir: Path,
    *,
    clock_kind: str = "fake",
    busy_ms: int = 200,
    outer_namespace: str | None = None,
) -> dict[str, Any]:
    clock: Clock = FakeClock() if clock_kind == "fake" else SystemClock()
    report: dict[str, Any] = {"kind": kind, "busy_timeout_ms": busy_ms}
    data_dir = workdir / "data"
    if kind in ("disk-full", "read-only"):
        mount_tmpfs(data_dir, outer_namespace)
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
    db = data_dir / "gatekiosk.db"
    fault: Fault
    if kind == "locked":
        fault = LongLock(db)
    elif kind == "disk-full":
        fault = FullDisk(data_dir)
    else:
        fault = ReadOnlyFileSystem(data_dir)

    if kind == "read-only":
        # The gate runs, then the power goes: a child process does the normal
        # phase and dies without closing the database, leaving its -wal file.
        child = subprocess.run(
            [
                *(sys.executable, "-m", "tests.storage_fault_scenario", "--crash-after-normal"),
                *(kind, str(workdir), "--busy-ms", str(busy_ms), "--clock", clock_kind),
            ],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert child.returncode == 0, child.stderr
        report["normal"] = json.loads(child.stdout)["normal"]
        report["left_after_power_cut"] = sorted(p.name for p in data_dir.iterdir())
        report["pre_rows"] = read_rows(db)
        fault.inject()  # nothing has the file open now, so the remount works
        store = Store.open(db, boot_id="boot-2", busy_timeout_ms=busy_ms)
        if isinstance(clock, FakeClock):
            clock.advance(60.0)  # the restart took a minute
        gate = build_gate(store, clock)
    else:
        store = Store.open(db, boot_id="boot-1", busy_timeout_ms=busy_ms)
        gate = build_gate(store, clock)
        report["normal"] = normal_phase(gate)
        report["pre_rows"] = read_rows(db)
        fault.inject()

    try:
        report.update(fault_phase(gate, fault, db))
    finally:
        gate.close()
        store.close()
    report["post_rows"] = read_rows(db)
    report["integrity"] = integrity(db)
    report["files_after"] = sorted(p.name for p in data_dir.iterdir())
    if kind == "read-only":
        # Stopped cleanly this time (no -wal left): a kiosk started on the
        # read-only file system cannot open the database at all.
        fault.inject()
        try:
            Store.open(db, boot_id="boot-3", busy_timeout_ms=busy_ms).close()
        except StoreError as exc:
            report["open_after_clean_stop"] = str(exc)
        else:
            report["open_after_clean_stop"] = "opened"
        fault.remove()
    return report


def fault_phase(gate: Gate, fault: Fault, db: Path) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    scanner = gate.scanner
    gate.longest_step_ms = 0.0
    # A visitor arrives while the database fails.
    started = gate.wall.monotonic()
    refused = gate.frames(VISITOR_DENYLISTED.payload, 1.0)
    seen["refused_step_ms"] = (gate.wall.monotonic() - started) * 1000
    seen["refused"] = [
        {
            "verdict": o.decision.verdict,
            "reason": o.decision.reason,
            "recorded": o.event is not None,
            "latency_ms": o.latency_ms,
        }
        for o in refused
    ]
    seen["fault_while_failing"] = scanner.fault
    seen["pattern_while_failing"] = gate.status_blinking()
    seen["pulses_before_override"] = relay_pulses(gate.factory)
    gate.frames(None, 0.5)

    # The guard lets the refused visitor in, then someone else.
    pressed_at = [gate.clock.now()]
    seen["override_open_ms"] = [gate.press_override()]
    gate.frames(None, 0.5)
    pressed_at.append(gate.clock.now())
    seen["override_open_ms"].append(gate.press_override())
    seen["pressed_at"] = [at.isoformat() for at in pressed_at]
    seen["pulses_after_override"] = relay_pulses(gate.factory)
    seen["waiting_after_override"] = scanner.overrides_waiting

    # The database keeps failing for a while: nothing is recorded, nothing lost.
    gate.frames(None, 2.5)
    seen["waiting_while_failing"] = scanner.overrides_waiting
    seen["rows_while_failing"] = len(read_rows(db))
    seen["fault_still"] = scanner.fault

    seen["longest_step_ms_while_failing"] = gate.longest_step_ms

    # The fault goes away.
    fault.remove()
    removed_wall = gate.wall.monotonic()
    steps = 0
    recorded_ms = None
    cleared_ms = None
    while steps < 100 and (scanner.overrides_waiting or scanner.fault is not None):
        gate.frames(None, 1 / FPS)
        steps += 1
        now_ms = (gate.wall.monotonic() - removed_wall) * 1000
        if recorded_ms is None and not scanner.overrides_waiting:
            recorded_ms = now_ms
        if cleared_ms is None and scanner.fault is None:
            cleared_ms = now_ms
    seen["steps_to_recover"] = steps
    seen["recorded_after_ms"] = recorded_ms
    seen["cleared_after_ms"] = cleared_ms
    seen["waiting_after_recovery"] = scanner.overrides_waiting
    seen["fault_after_recovery"] = scanner.fault
    seen["pattern_stopped"] = gate.status_steady()

    # Business as usual: the first visitor leaves.
    leaving = gate.visit(VISITOR_CCCD.payload)
    seen["after"] = f"{leaving.decision.verdict}/{leaving.decision.reason}"
    return seen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--clock", choices=("fake", "system"), default="fake")
    parser.add_argument("--busy-ms", type=int, default=200)
    parser.add_argument(
        "--outer-mount-ns", help="the caller's mount namespace (disk-full, read-only)"
    )
    parser.add_argument("--crash-after-normal", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.crash_after_normal:
        clock: Clock = FakeClock() if args.clock == "fake" else SystemClock()
        store = Store.open(
            args.workdir / "data" / "gatekiosk.db", boot_id="boot-1", busy_timeout_ms=args.busy_ms
        )
        gate = build_gate(store, clock)
        print(json.dumps({"normal": normal_phase(gate)}), flush=True)
        os._exit(0)  # a power cut: nothing closed, the -wal file stays
    report = run(
        args.kind,
        args.workdir,
        clock_kind=args.clock,
        busy_ms=args.busy_ms,
        outer_namespace=args.outer_mount_ns,
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
