"""Camera faults in real time: how fast the gate shows and reports a failing
camera or decoder, how fast it scans again, and that it never stops.

Targets (issue 6): the fault pattern within 2 s of the fault, on the
dashboard (the kiosk health row), scanning again within 5 s of the camera
coming back, and the process never exiting.

Part 1, the gate in this process, on the real clock with real threads: the
scanner, source and decoder exactly as ``gatekiosk run`` composes them from
the default settings (``kiosk.compose.build_gate``, ``source_for``), with a
V4L2 camera whose ``cv2.VideoCapture`` is a fake device paced in real time
(:class:`tests.fakes.FakeCamera`, the tests' own, at 15 fps; opening takes
``--open-delay-s`` and the first frame ``--first-frame-s`` more, like a USB
webcam), the production decoder
(pipeline) on a rendered CCCD held in view, a real SQLite store and
gpiozero's MockFactory pins. The scan loop runs in its own thread for the
whole run; each repetition breaks one thing for a while, then mends it:

- ``stall``: every read blocks (a hung driver; opens still succeed);
- ``error``: every read raises ``OSError(EIO)``;
- ``vanish``: unplugged: reads fail, opens find no device;
- ``decoder``: the decoder throws on every frame.

Measured from the moment the bench breaks it: the first pin change of the
fault pattern (red slow blink, status fast blink), the health row showing
the fault (polled every 10 ms through a second, read-only connection, as the
admin web reads it). From the moment it is mended: the first frame the
decoder sees, the first frame it reads the code in, the fault pattern
cleared, the health row clear. Also the longest gap between two systemd
heartbeats, and whether the loop is still running.

Part 2, the real process: ``gatekiosk run`` on this machine with the camera
at a device node that does not exist, simulated pins and the systemd notify
protocol on a socket of the bench's (``WATCHDOG_USEC`` as deployed), for
``--process-s`` seconds: is it still running, did READY and the watchdog
pings keep coming, what does its health row say, what reached stderr.

Writes ``bench/report-camera.md`` and ``bench/report-camera.json``.

Usage: .venv/bin/python -m bench.camera_faults [--quick] [--reps N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from gpiozero.pins.mock import MockFactory, MockPin

from kiosk.camera import CAMERA_BACKOFF, STALL_TIMEOUT_S, START_TIMEOUT_S
from kiosk.clock import SystemClock
from kiosk.compose import build_gate, source_for
from kiosk.config import SETTINGS, load_settings
from kiosk.decoder import Code, Decoder, make_decoder
from kiosk.samples import VISITOR_CCCD
from kiosk.store import Store
from kiosk.synthetic import render_code_frame
from tests.fakes import FakeCamera

HERE = Path(__file__).resolve().parent
REPORT_MD = HERE / "report-camera.md"
REPORT_JSON = HERE / "report-camera.json"

FAULT_WITHIN_S = 2.0
RECOVER_WITHIN_S = 5.0
WATCHDOG_SEC = 10.0
"""``WatchdogSec=`` of deploy/gatekiosk-kiosk.service."""

KINDS = ("stall", "error", "vanish", "decoder")
CAMERA_MODES = {"stall": "stalled", "error": "error", "vanish": "gone"}
FPS = 15.0
RED, STATUS = 27, 25
GATE = "bench-gate"


def now() -> float:
    return time.monotonic()  # the clock SystemClock, gpiozero and threading use


# --------------------------------------------------------------------------- probes


class TimedPin(MockPin):
    """gpiozero's MockPin, also keeping the monotonic time of each change."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.changes: list[tuple[float, bool]] = []
        super().__init__(*args, **kw)

    def _change_state(self, value: Any) -> bool:
        changed = bool(super()._change_state(value))
        if changed:
            self.changes.append((now(), bool(value)))
        return changed


class ProbeDecoder:
    """The production decoder, throwing while ``broken``; records every call."""

    def __init__(self, inner: Decoder) -> None:
        self.inner = inner
        self.name = inner.name
        self.broken = False
        self.calls: list[tuple[float, int]] = []  # (time, codes read; -1: threw)

    def decode(self, grey: np.ndarray) -> list[Code]:
        if self.broken:
            self.calls.append((now(), -1))
            raise RuntimeError("decoder bug (bench)")
        codes = self.inner.decode(grey)
        self.calls.append((now(), len(codes)))
        return codes


class ProbeSignals:
    """The gate's real signals, recording when the fault pattern is switched."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.fault_calls: list[tuple[float, bool]] = []

    def set_fault(self, fault: bool) -> None:
        self.inner.set_fault(fault)
        self.fault_calls.append((now(), fault))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class HealthWatcher:
    """Polls the kiosk health row every ``every_s`` as the admin web reads it;
    keeps each change of its fault as (time, fault)."""

    def __init__(self, db_path: Path, every_s: float = 0.01) -> None:
        self.db_path = db_path
        self.every_s = every_s
        self.changes: list[tuple[float, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        store = Store.open(self.db_path, read_only=True, boot_id="bench")
        last: object = object()
        try:
            while not self._stop.wait(self.every_s):
                health = store.read_health(GATE)
                fault = None if health is None else health.fault
                if health is not None and fault != last:
                    self.changes.append((now(), fault))
                    last = fault
        finally:
            store.close()


class CountingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((now(), record.name))


def first(times: list[tuple[float, Any]], after: float, test: Callable[[Any], bool]) -> float:
    return next((t for t, value in times if t >= after and test(value)), float("nan"))


# --------------------------------------------------------------------------- part 1


@dataclass
class Rig:
    camera: FakeCamera
    decoder: ProbeDecoder
    signals: ProbeSignals
    factory: MockFactory
    health: HealthWatcher
    beats: list[float]
    log: CountingHandler
    scanner: Any
    loop: threading.Thread
    errors: list[BaseException] = field(default_factory=list)

    def pin_changes(self, pin: int) -> list[tuple[float, bool]]:
        timed: TimedPin = self.factory.pin(pin)
        return list(timed.changes)

    def fault(self) -> str | None:
        fault: str | None = self.scanner.fault
        return fault


@contextmanager
def gate(
    work: Path, *, stall_timeout_s: float, open_delay_s: float, first_frame_s: float
) -> Iterator[Rig]:
    settings = load_settings(
        overrides={
            "gate.id": GATE,
            "gate.data_dir": str(work),
            "camera.source": "v4l2",
            "camera.device": "bench0",
            "camera.fps": FPS,
            "camera.stall_timeout_s": stall_timeout_s,
            "pins.backend": "mock",
        },
        env={},
    )
    clock = SystemClock()
    camera = FakeCamera(
        render_code_frame(VISITOR_CCCD.payload),
        fps=FPS,
        open_delay_s=open_delay_s,
        first_frame_s=first_frame_s,
        monotonic=now,
    )
    factory = MockFactory(pin_class=TimedPin)
    decoder = ProbeDecoder(make_decoder(settings["decoder.backend"]))
    beats: list[float] = []
    handler = CountingHandler()
    logging.getLogger().addHandler(handler)
    source = source_for(settings, clock=clock, open_capture=camera.open)
    try:
        with build_gate(
            settings,
            clock=clock,
            source=source,
            pin_factory=factory,
            decoder=decoder,
            heartbeat=lambda: beats.append(now()),
        ) as built:
            signals = ProbeSignals(built.signals)
            built.scanner.signals = signals
            health = HealthWatcher(settings.db_path)
            stop = threading.Event()
            errors: list[BaseException] = []

            def loop() -> None:
                try:
                    built.scanner.run(stop)
                except BaseException as exc:
                    errors.append(exc)

            thread = threading.Thread(target=loop, name="scan-loop", daemon=True)
            rig = Rig(
                camera, decoder, signals, factory, health, beats, handler, built.scanner, thread
            )
            rig.errors = errors
            thread.start()
            health.start()
            try:
                yield rig
            finally:
                stop.set()
                camera.set_mode("gone")
                thread.join(10)
                health.stop()
    finally:
        logging.getLogger().removeHandler(handler)
        factory.close()


def wait_for(condition: Callable[[], object], timeout_s: float) -> bool:
    deadline = now() + timeout_s
    while not condition():
        if now() > deadline:
            return False
        time.sleep(0.005)
    return True


def one_fault(rig: Rig, kind: str, outage_s: float) -> dict[str, Any]:
    """Break ``kind`` for ``outage_s``, mend it, measure."""
    ok = wait_for(lambda: rig.fault() is None and rig.loop.is_alive(), 15.0)
    time.sleep(2.5)  # streaming, the code in view decided, the presentation settled
    expected = "decoder" if kind == "decoder" else "camera"
    logs_before = len(rig.log.records)
    onset = now()
    if kind == "decoder":
        rig.decoder.broken = True
    else:
        rig.camera.set_mode(CAMERA_MODES[kind])
    time.sleep(outage_s)
    mended = now()
    if kind == "decoder":
        rig.decoder.broken = False
    else:
        rig.camera.set_mode("streaming")
    recovered = wait_for(
        lambda: (
            rig.fault() is None
            and any(t >= mended and n > 0 for t, n in rig.decoder.calls)
            and bool(rig.health.changes)
            and rig.health.changes[-1][1] is None
            and rig.health.changes[-1][0] >= mended
        ),
        15.0,
    )
    time.sleep(0.5)
    end = now()

    # The red light's slow blink starts lit; the status LED's fast blink first
    # changes 0.1 s in (it was lit). Whichever shows first.
    candidates = [
        first(rig.pin_changes(RED), onset, lambda high: high),
        first(rig.pin_changes(STATUS), onset, lambda high: True),
    ]
    pattern_on = min((t for t in candidates if t == t), default=float("nan"))
    beats = [t for t in rig.beats if onset - 1.0 <= t <= end]
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    decoder_calls = rig.decoder.calls
    first_frame = first(
        decoder_calls, mended, (lambda n: n >= 0) if kind == "decoder" else (lambda n: True)
    )
    return {
        "kind": kind,
        "outage_s": outage_s,
        "settled_before": ok,
        "recovered": recovered,
        "loop_alive": rig.loop.is_alive() and not rig.errors,
        "to_pattern_s": pattern_on - onset,
        "to_set_fault_s": first(rig.signals.fault_calls, onset, lambda f: f) - onset,
        "to_health_s": first(rig.health.changes, onset, lambda f: f == expected) - onset,
        "to_first_frame_s": first_frame - mended,
        "to_first_code_s": first(decoder_calls, mended, lambda n: n > 0) - mended,
        "to_cleared_s": first(rig.signals.fault_calls, mended, lambda f: not f) - mended,
        "to_health_clear_s": first(rig.health.changes, mended, lambda f: f is None) - mended,
        "max_heartbeat_gap_s": max(gaps) if gaps else float("nan"),
        "opens": rig.camera.opens,
        "log_warnings": len(rig.log.records) - logs_before,
        "camera_detail": rig.scanner.source.state.detail,
    }


def outages(reps: int, quick: bool) -> list[float]:
    """How long each repetition's fault lasts: short and long (past the backoff
    ceiling), each with a different fraction of the 2 s retry period added, so
    that the mending falls at different points between two reopen attempts."""
    cycle = [2.0, 3.0] if quick else [2.0, 4.0, 8.0, 15.0, 25.0]
    return [cycle[i % len(cycle)] + round((0.37 * i) % 2.0, 2) for i in range(reps)]


def run_gate(
    *,
    stall_timeout_s: float,
    kinds: tuple[str, ...],
    reps: int,
    quick: bool,
    open_delay_s: float,
    first_frame_s: float,
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="camera-faults-") as work,
        gate(
            Path(work),
            stall_timeout_s=stall_timeout_s,
            open_delay_s=open_delay_s,
            first_frame_s=first_frame_s,
        ) as rig,
    ):
        for kind in kinds:
            for outage_s in outages(reps, quick):
                print(
                    f"  stall timeout {stall_timeout_s} s: {kind}, {outage_s:.2f} s ...",
                    file=sys.stderr,
                )
                result = one_fault(rig, kind, outage_s)
                result["stall_timeout_s"] = stall_timeout_s
                results.append(result)
        alive = rig.loop.is_alive() and not rig.errors
    for result in results:
        result["loop_alive_at_end"] = alive
    return results


# --------------------------------------------------------------------------- part 2


def run_process(seconds: float) -> dict[str, Any]:
    """``gatekiosk run`` with no camera, watched through the notify socket."""
    device = "/dev/video-gatekiosk-bench"
    with tempfile.TemporaryDirectory(prefix="camera-process-") as work:
        notify_path = Path(work) / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify_path))
        sock.settimeout(0.2)
        env = {
            **os.environ,
            "GATEKIOSK_GATE__DATA_DIR": work,
            "GATEKIOSK_GATE__ID": GATE,
            "GATEKIOSK_CAMERA__SOURCE": "v4l2",
            "GATEKIOSK_CAMERA__DEVICE": device,
            "GATEKIOSK_PINS__BACKEND": "mock",
            "NOTIFY_SOCKET": str(notify_path),
            "WATCHDOG_USEC": str(int(WATCHDOG_SEC * 1_000_000)),
        }
        gatekiosk = Path(sys.executable).parent / "gatekiosk"
        started = now()
        process = subprocess.Popen(
            [str(gatekiosk), "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        messages: list[tuple[float, str]] = []
        while now() - started < seconds and process.poll() is None:
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            messages.append((now() - started, data.decode("ascii", "replace")))
        alive = process.poll() is None
        process.send_signal(signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        sock.settimeout(0.0)
        try:
            while True:  # what it said on the way out (STOPPING=1) is still queued
                messages.append((now() - started, sock.recv(4096).decode("ascii", "replace")))
        except (BlockingIOError, TimeoutError):
            pass
        sock.close()
        db_path = load_settings(overrides={"gate.data_dir": work}, env={}).db_path
        with Store.open(db_path, read_only=True, boot_id="bench") as store:
            health = store.read_health(GATE)
    pings = [t for t, m in messages if "WATCHDOG=1" in m]
    ready = [t for t, m in messages if "READY=1" in m]
    after_ready = [t for t in pings if ready and t >= ready[0]]
    gaps = [b - a for a, b in itertools.pairwise(after_ready)]
    return {
        "seconds": seconds,
        "device": device,
        "alive_at_end": alive,
        "exit_code_after_sigterm": process.returncode,
        "ready_after_s": ready[0] if ready else None,
        "watchdog_pings": len(pings),
        "max_ping_gap_s": max(gaps) if gaps else None,
        "stopping_sent": any("STOPPING=1" in m for _, m in messages),
        "health_fault": None if health is None else health.fault,
        "health_camera_ok": None if health is None else health.camera_ok,
        "health_detail": None if health is None else health.camera_detail,
        "stderr_lines": len(err.splitlines()),
        "stderr_opencv_warnings": sum("VIDEOIO" in line for line in err.splitlines()),
        "stderr_tracebacks": err.count("Traceback"),
        "stderr_tail": err.splitlines()[-6:],
        "stdout": out.splitlines()[:4],
    }


# --------------------------------------------------------------------------- report


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    keys = [
        "to_pattern_s",
        "to_health_s",
        "to_first_frame_s",
        "to_first_code_s",
        "to_cleared_s",
        "to_health_clear_s",
        "max_heartbeat_gap_s",
    ]
    for stall in sorted({r["stall_timeout_s"] for r in results}):
        for kind in KINDS:
            group = [r for r in results if r["kind"] == kind and r["stall_timeout_s"] == stall]
            if not group:
                continue
            row: dict[str, Any] = {"stall_timeout_s": stall, "kind": kind, "reps": len(group)}
            for key in keys:
                values = [r[key] for r in group if r[key] == r[key]]
                row[key] = {
                    "median": statistics.median(values) if values else None,
                    "max": max(values) if values else None,
                    "missing": len(group) - len(values),
                }
            row["all_recovered"] = all(r["recovered"] for r in group)
            row["loop_alive"] = all(r["loop_alive"] and r["loop_alive_at_end"] for r in group)
            pattern = row["to_pattern_s"]["max"]
            health = row["to_health_s"]["max"]
            code = row["to_first_code_s"]["max"]
            row["meets_2s"] = (
                pattern is not None
                and health is not None
                and pattern <= FAULT_WITHIN_S
                and health <= FAULT_WITHIN_S
                and row["to_pattern_s"]["missing"] == 0
                and row["to_health_s"]["missing"] == 0
            )
            row["meets_5s"] = code is not None and code <= RECOVER_WITHIN_S and row["all_recovered"]
            rows.append(row)
    return rows


def fmt(cell: dict[str, Any]) -> str:
    if cell["median"] is None:
        return "–"
    text = f"{cell['median']:.2f} / {cell['max']:.2f}"
    return text + (f" ({cell['missing']} missing)" if cell["missing"] else "")


def render(report: dict[str, Any]) -> str:
    env = report["environment"]
    setup = report["setup"]
    lines = [
        "# Camera faults in real time",
        "",
        f"{env['date_utc']}, Python {env['python']}, {env['machine']}, {env['cpus']} CPUs "
        f"(shared; load average {env['load_average'][0]:.2f} at the start), "
        f"{report['duration_s']:.0f} s in all. Command: `.venv/bin/python -m bench.camera_faults"
        f"{' --quick' if setup['quick'] else ''}`.",
        "",
        "The gate as `gatekiosk run` builds it from the default settings (decoder "
        f"`{setup['decoder']}`, scan loop on the system clock in its own thread), a V4L2 "
        f"camera whose device is a fake paced at {FPS:.0f} fps (opening takes "
        f"{setup['open_delay_s']} s and the first frame {setup['first_frame_s']} s more, "
        "as a USB webcam's might), a rendered CCCD held in view, a real SQLite store, "
        "MockFactory pins. Each repetition breaks one thing for the outage shown, then "
        f"mends it; outages {', '.join(f'{o:.2f}' for o in setup['outages'])} s. "
        f"Camera defaults: stall timeout {setup['camera_stall_timeout_s']} s "
        f"(`kiosk.camera.STALL_TIMEOUT_S`), start timeout {setup['start_timeout_s']} s, "
        f"backoff {setup['backoff']}; the settings file's `camera.stall_timeout_s` default "
        f"is {setup['settings_stall_timeout_s']} s.",
        "",
        "Seconds, **median / max** over the repetitions. *Pattern*: from the fault to "
        "the first pin change of the fault pattern. *Health*: to the health row showing "
        "it (polled every 10 ms as the web reads it). From the camera (or decoder) being "
        "mended: *first frame* the decoder sees (decoder: the first it does not throw on), "
        "*first code* read, fault pattern *cleared*, *health clear*. *Heartbeat gap*: the "
        f"longest between two systemd heartbeats (WatchdogSec={WATCHDOG_SEC:.0f}).",
        "",
        "| stall timeout s | fault | reps | pattern | health | first frame | first code "
        "| cleared | health clear | heartbeat gap | ≤ 2 s | ≤ 5 s | loop alive |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|:-:|:-:|:-:|",
    ]
    for row in report["summary"]:
        lines.append(
            f"| {row['stall_timeout_s']} | {row['kind']} | {row['reps']} "
            f"| {fmt(row['to_pattern_s'])} | {fmt(row['to_health_s'])} "
            f"| {fmt(row['to_first_frame_s'])} | {fmt(row['to_first_code_s'])} "
            f"| {fmt(row['to_cleared_s'])} | {fmt(row['to_health_clear_s'])} "
            f"| {fmt(row['max_heartbeat_gap_s'])} "
            f"| {'yes' if row['meets_2s'] else '**no**'} "
            f"| {'yes' if row['meets_5s'] else '**no**'} "
            f"| {'yes' if row['loop_alive'] else '**no**'} |"
        )
    proc = report["process"]
    lines += [
        "",
        "## The real process without a camera",
        "",
        f"`gatekiosk run` with `camera.source = v4l2` at `{proc['device']}` (no such "
        f"device), simulated pins, `NOTIFY_SOCKET` on the bench's socket and "
        f"`WATCHDOG_USEC` for WatchdogSec={WATCHDOG_SEC:.0f} (the kiosk pings every "
        f"{WATCHDOG_SEC / 2:.0f} s), watched for {proc['seconds']:.0f} s:",
        "",
        f"- still running at the end: **{'yes' if proc['alive_at_end'] else 'no'}**; "
        f"after SIGTERM it exited with code {proc['exit_code_after_sigterm']} "
        f"(STOPPING sent: {'yes' if proc['stopping_sent'] else 'no'});",
        f"- READY after {proc['ready_after_s']:.2f} s; {proc['watchdog_pings']} watchdog "
        f"pings, longest gap {proc['max_ping_gap_s']:.2f} s;"
        if proc["ready_after_s"] is not None and proc["max_ping_gap_s"] is not None
        else "- **no READY or no watchdog pings**;",
        f"- health row: fault `{proc['health_fault']}`, camera ok {proc['health_camera_ok']}, "
        f"detail \u201c{proc['health_detail']}\u201d;",
        f"- stderr: {proc['stderr_lines']} lines, {proc['stderr_opencv_warnings']} OpenCV "
        f"warnings, {proc['stderr_tracebacks']} tracebacks.",
        "",
    ]
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 short repetitions of each")
    parser.add_argument("--reps", type=int, help="repetitions of each fault (default 5)")
    parser.add_argument("--open-delay-s", type=float, default=0.3, help="device open time")
    parser.add_argument("--first-frame-s", type=float, default=0.2, help="first frame after")
    parser.add_argument("--process-s", type=float, help="seconds to watch gatekiosk run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    reps = args.reps or (2 if args.quick else 5)
    settings_stall = next(
        s.default for s in SETTINGS if (s.section, s.key) == ("camera", "stall_timeout_s")
    )
    started = now()
    report: dict[str, Any] = {
        "environment": environment(),
        "setup": {
            "quick": args.quick,
            "reps": reps,
            "outages": outages(reps, args.quick),
            "open_delay_s": args.open_delay_s,
            "first_frame_s": args.first_frame_s,
            "decoder": load_settings(env={})["decoder.backend"],
            "camera_stall_timeout_s": STALL_TIMEOUT_S,
            "settings_stall_timeout_s": settings_stall,
            "start_timeout_s": START_TIMEOUT_S,
            "backoff": f"{CAMERA_BACKOFF.first_s} s doubling to {CAMERA_BACKOFF.max_s} s",
        },
    }
    results: list[dict[str, Any]] = []
    print("the gate in this process ...", file=sys.stderr)
    results += run_gate(
        stall_timeout_s=STALL_TIMEOUT_S,
        kinds=KINDS,
        reps=reps,
        quick=args.quick,
        open_delay_s=args.open_delay_s,
        first_frame_s=args.first_frame_s,
    )
    if settings_stall != STALL_TIMEOUT_S:
        # The settings file's default, for the stall it governs: the comparison
        # behind the camera default.
        results += run_gate(
            stall_timeout_s=settings_stall,
            kinds=("stall",),
            reps=reps,
            quick=True,
            open_delay_s=args.open_delay_s,
            first_frame_s=args.first_frame_s,
        )
    report["results"] = results
    report["summary"] = summarise(results)
    print("gatekiosk run without a camera ...", file=sys.stderr)
    report["process"] = run_process(args.process_s or (8.0 if args.quick else 30.0))
    report["duration_s"] = now() - started
    REPORT_JSON.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    REPORT_MD.write_text(render(report), encoding="utf-8")
    print(render(report))


if __name__ == "__main__":
    main()
