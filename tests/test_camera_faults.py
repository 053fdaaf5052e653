"""Camera faults at the gate: a camera that stalls, errors, vanishes and comes
back, and a decoder that throws.

What the gate must do (issue 6): show the fault pattern within 2 s, report
it on the dashboard, scan again within 5 s of the camera coming back, and
never stop (no exception out of the loop, the systemd heartbeat going on
while the fault is reported).

The camera is a real :class:`V4l2Source` (grabber thread, stall detection,
reopening with backoff) on a fake device the test drives; the loop is a real
:class:`Scanner` with the real zxing-cpp decoder on a rendered CCCD, a real
SQLite store and gpiozero's MockFactory pins. Time is a FakeClock advanced in
ticks; after every step the test waits (through the fake device, never by
sleeping a set time) until each grabber thread is parked inside the device
or has ended, so every timing decision is taken at a known fake time. Real-
time figures are measured by ``bench/camera_faults.py``.
"""

from __future__ import annotations

import itertools
import logging
import re
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from gpiozero.pins.mock import MockFactory

from gate_controller.gpio import GpiozeroSignals
from gate_controller.pins import PinConfig
from kiosk.camera import (
    CAMERA_BACKOFF,
    MAX_STUCK_THREADS,
    RELEASE_TIMEOUT_S,
    STALL_TIMEOUT_S,
    START_TIMEOUT_S,
    Frame,
    Picamera2Source,
    SourceState,
    V4l2Source,
)
from kiosk.cli import cli
from kiosk.clock import FakeClock, SystemClock
from kiosk.codes import Registry, default_formats
from kiosk.decoder import Code, ZxingDecoder
from kiosk.errors import StoreError
from kiosk.policy import PolicyRules
from kiosk.samples import VISITOR_CCCD
from kiosk.scanner import (
    GateParts,
    GateSetup,
    Outcome,
    ScanHooks,
    Scanner,
    ScanSettings,
)
from kiosk.store import KioskHealth, Store
from kiosk.synthetic import render_code_frame
from tests.fake_picamera2 import FakeCameraBus, install
from tests.fakes import WAIT_S, FakeCamera
from tests.waiting import wait_until

TICK_S = 0.1
"""Fake time between two steps of the loop: a 10 fps camera."""

FAULT_WITHIN_S = 2.0
RECOVER_WITHIN_S = 5.0

KEY = b"k" * 32
GATE = "gate-1"
PINS = PinConfig(
    green=17, red=27, buzzer=22, relay=23, button=24, status=25, relay_pulse_ms=30, light_ms=60
)
RED, STATUS = 27, 25

_names = itertools.count()


def grabber_threads(source: V4l2Source) -> list[threading.Thread]:
    prefix = f"v4l2:{source.device}-grabber-"
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def settle(camera: FakeCamera, source: V4l2Source) -> None:
    """Wait until every grabber thread is parked in the device or has ended:
    then nothing changes until the test acts."""

    def parked() -> bool:
        alive = len(grabber_threads(source))
        with camera.cond:
            return alive == camera.parked

    wait_until(parked, WAIT_S)


FRAME = render_code_frame(VISITOR_CCCD.payload)


@pytest.fixture
def webcam() -> Iterator[Callable[..., tuple[V4l2Source, FakeCamera, FakeClock]]]:
    """A V4l2Source with the default timeouts and backoff on a fake camera;
    closed at the end, its threads checked gone."""
    made: list[tuple[V4l2Source, FakeCamera]] = []

    def build(**kw: Any) -> tuple[V4l2Source, FakeCamera, FakeClock]:
        clock = FakeClock()
        camera = FakeCamera(FRAME)
        source = V4l2Source(
            f"fake{next(_names)}",
            clock=clock,
            open_capture=camera.open,
            join_timeout_s=WAIT_S,
            **kw,
        )
        made.append((source, camera))
        settle(camera, source)
        return source, camera, clock

    yield build
    for source, camera in made:
        camera.set_mode("gone")  # wakes every blocked read
        source.close()
        assert not grabber_threads(source)


# --------------------------------------------------------------------------
# The camera on its own


def test_default_timeouts_leave_room_for_the_two_second_budget() -> None:
    # The stall deadline is the only wait between a camera falling silent and
    # the fault; the backoff ceiling is the longest wait for a camera back.
    assert STALL_TIMEOUT_S <= FAULT_WITHIN_S / 2
    assert CAMERA_BACKOFF.delay_s(1000) <= RECOVER_WITHIN_S / 2
    assert START_TIMEOUT_S > STALL_TIMEOUT_S


def test_streaming_camera_that_stalls_is_failed_one_stall_timeout_after_its_last_frame(webcam):
    source, camera, clock = webcam()
    assert camera.offer()
    assert source.read(0.0) is not None
    camera.set_mode("stalled")
    settle(camera, source)

    clock.advance(STALL_TIMEOUT_S - 0.05)
    assert source.read(0.0) is None
    assert source.state.ok  # late, not yet stalled

    clock.advance(0.1)
    assert source.read(0.0) is None
    assert not source.state.ok
    assert "no frame for 1.1 s" in source.state.detail


def test_camera_slow_to_start_is_given_the_start_timeout_not_the_stall_timeout(webcam):
    source, camera, clock = webcam()  # opened, no frame yet
    clock.advance(START_TIMEOUT_S - 0.5)  # a USB webcam waking up
    assert source.read(0.0) is None
    assert source.state.ok
    assert camera.offer()
    frame = source.read(0.0)
    assert frame is not None
    assert camera.opens == 1


def test_camera_that_never_delivers_a_first_frame_is_abandoned_after_the_start_timeout(webcam):
    source, camera, clock = webcam()
    camera.set_mode("stalled")
    clock.advance(START_TIMEOUT_S)
    assert source.read(0.0) is None
    assert not source.state.ok
    assert "not started after" in source.state.detail


def test_camera_set_to_one_fps_is_not_failed_between_two_frames(webcam):
    source, camera, clock = webcam(fps=1.0)
    for _ in range(3):
        assert camera.offer()
        assert source.read(0.0) is not None
        clock.advance(1.0)  # one frame a second, as asked
    assert source.state.ok
    camera.set_mode("stalled")
    settle(camera, source)
    clock.advance(1.95)
    assert source.read(0.0) is None
    assert source.state.ok
    clock.advance(0.1)  # three frame intervals since the last frame
    assert source.read(0.0) is None
    assert not source.state.ok


def tick_source(source: V4l2Source, camera: FakeCamera, clock: FakeClock) -> bool:
    """One tick of fake time for a source on its own; whether a frame came."""
    clock.advance(TICK_S)
    camera.offer()
    frame = source.read(0.0)
    settle(camera, source)
    return frame is not None


def test_camera_gone_for_a_minute_is_retried_every_two_seconds_and_back_within_them(webcam):
    source, camera, clock = webcam()
    assert camera.offer()
    assert source.read(0.0) is not None
    camera.set_mode("gone")
    settle(camera, source)
    for _ in range(600):  # a minute unplugged
        assert not tick_source(source, camera, clock)
    assert not source.state.ok
    # 0.5 + 1 + 2 s, then every 2 s: about 30 attempts, not one a tick.
    assert 27 <= camera.opens <= 32

    camera.set_mode("streaming")  # plugged back in
    back_at = clock.monotonic()
    while not tick_source(source, camera, clock):
        assert clock.monotonic() - back_at <= CAMERA_BACKOFF.max_s + TICK_S
    assert source.state.ok
    assert source.state.reopen_attempts == 0


def test_connections_stuck_in_the_driver_do_not_pile_up(webcam):
    source, camera, clock = webcam()
    assert camera.offer()
    assert source.read(0.0) is not None
    camera.set_mode("stalled")  # every read hangs, every reopen hangs again
    for _ in range(1200):  # two minutes of fake time
        tick_source(source, camera, clock)

    assert len(grabber_threads(source)) == MAX_STUCK_THREADS
    assert camera.opens == MAX_STUCK_THREADS
    assert not source.state.ok
    assert f"{MAX_STUCK_THREADS} connections stuck in the driver" in source.state.detail

    camera.set_mode("streaming")  # the driver lets go: the stuck reads fail
    back_at = clock.monotonic()
    while not tick_source(source, camera, clock):
        assert clock.monotonic() - back_at <= CAMERA_BACKOFF.max_s + TICK_S
    assert source.state.ok
    assert len(grabber_threads(source)) == 1


def test_missing_device_node_fails_the_open_without_asking_opencv(capfd):
    # OpenCV prints two warnings for every open of a missing device; a camera
    # unplugged for an hour is retried 1800 times.
    clock = FakeClock()
    source = V4l2Source("/dev/video-gatekiosk-absent", clock=clock, join_timeout_s=WAIT_S)
    try:
        assert source.read(WAIT_S) is None  # woken by the failure
        state = source.state
    finally:
        source.close()
    assert not state.ok
    assert "no such device /dev/video-gatekiosk-absent" in state.detail
    assert "VIDEOIO" not in capfd.readouterr().err


# --------------------------------------------------------------------------
# The gate: scanner, decoder, store, pins


class BreakableDecoder:
    """The real zxing-cpp decoder, throwing on the frames ``throws`` picks."""

    name = "zxing"

    def __init__(self) -> None:
        self._zxing = ZxingDecoder()
        self.throws: Callable[[int], bool] = lambda call: False
        self.calls = 0
        self.read_codes = 0  # frames in which it read a code

    def decode(self, grey: np.ndarray) -> list[Code]:
        self.calls += 1
        if self.throws(self.calls):
            raise RuntimeError("decoder bug")
        codes = self._zxing.decode(grey)
        self.read_codes += bool(codes)
        return codes


class CountingStore(Store):
    """The real store, counting the health rows written (or tried, while
    ``failing`` makes that write fail as a full disk would)."""

    health_writes = 0
    failing = False

    def write_health(self, health: KioskHealth) -> None:
        self.health_writes += 1
        if self.failing:
            raise StoreError("database or disk is full")
        super().write_health(health)


@dataclass
class Rig:
    clock: FakeClock
    camera: FakeCamera
    source: V4l2Source
    decoder: BreakableDecoder
    scanner: Scanner
    store: CountingStore
    factory: MockFactory
    heartbeats: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    on_beat: Callable[[], None] | None = None

    def beat(self) -> None:
        self.heartbeats += 1
        if self.on_beat is not None:
            self.on_beat()

    def tick(self) -> bool:
        """One step of the loop TICK_S after the last, the camera streaming if
        it can; whether the step sent the systemd heartbeat."""
        self.clock.advance(TICK_S)
        self.camera.offer()
        before = self.heartbeats
        self.outcomes += self.scanner.step()
        settle(self.camera, self.source)
        return self.heartbeats > before

    def ticks_until(self, condition: Callable[[], object], *, limit_s: float) -> float:
        """Tick until ``condition``; the fake seconds it took. Every step on
        the way must have sent the heartbeat or processed a frame."""
        start = self.clock.monotonic()
        while not condition():
            assert self.clock.monotonic() - start < limit_s + 10 * TICK_S, "never happened"
            self.tick()
        return self.clock.monotonic() - start

    def health(self) -> KioskHealth:
        health = self.store.read_health(GATE)
        assert health is not None
        return health


def pin_mark(factory: MockFactory) -> tuple[int, int]:
    return len(factory.pin(STATUS).states), len(factory.pin(RED).states)


def fault_pattern_since(factory: MockFactory, mark: tuple[int, int]) -> bool:
    """The status LED blinking (toggled twice) and the red light lit (its
    slow blink started) since ``mark``."""
    status = factory.pin(STATUS).states[mark[0] :]
    red = factory.pin(RED).states[mark[1] :]
    return len(status) >= 2 and any(s.state for s in red)


def ready_pattern(factory: MockFactory) -> bool:
    """Status steady on, red off, and staying so (no blink thread running)."""
    status, red = factory.pin(STATUS), factory.pin(RED)
    before = (len(status.states), len(red.states))
    return bool(status.state) and not red.state and before == pin_mark(factory)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    clock = FakeClock()
    camera = FakeCamera(FRAME)
    factory = MockFactory()
    signals = GpiozeroSignals(PINS, pin_factory=factory)
    store = CountingStore.open(tmp_path / "gate.db", boot_id="boot-1")
    assert isinstance(store, CountingStore)
    source = V4l2Source(
        f"fake{next(_names)}", clock=clock, open_capture=camera.open, join_timeout_s=WAIT_S
    )
    decoder = BreakableDecoder()
    holder: list[Rig] = []
    scanner = Scanner(
        parts=GateParts(source, decoder, signals, pin_backend="MockFactory"),
        registry=Registry(default_formats()),
        store=store,
        clock=clock,
        setup=GateSetup(
            PolicyRules(),
            ScanSettings(gate_id=GATE, timezone=ZoneInfo("Asia/Ho_Chi_Minh"), read_timeout_s=0.0),
        ),
        hash_key=KEY,
        hooks=ScanHooks(heartbeat=lambda: holder[0].beat()),
    )
    built = Rig(clock, camera, source, decoder, scanner, store, factory)
    holder.append(built)
    settle(camera, source)
    yield built
    camera.set_mode("gone")
    source.close()
    signals.close()
    factory.close()
    store.close()
    assert not grabber_threads(source)


def stream(rig: Rig, seconds: float) -> None:
    for _ in range(round(seconds / TICK_S)):
        assert rig.tick()  # a frame processed: the heartbeat


FAULTS = {
    "stall": "stalled",  # the driver's read blocks forever
    "error": "error",  # the driver's read raises
    "vanish": "gone",  # unplugged: reads fail, /dev/video0 is gone
}


@pytest.mark.parametrize("kind", list(FAULTS))
def test_camera_fault_shows_within_two_seconds_is_reported_and_clears_within_five(rig, kind):
    stream(rig, 3.0)
    assert rig.scanner.fault is None
    assert rig.decoder.read_codes > 0
    [entry] = rig.outcomes  # the visitor in view was let in once
    assert entry.decision.verdict == "allow"
    assert rig.health().fault is None
    mark = pin_mark(rig.factory)

    rig.camera.set_mode(FAULTS[kind])
    writes_before = rig.store.health_writes
    took_s = rig.ticks_until(lambda: rig.scanner.fault == "camera", limit_s=FAULT_WITHIN_S)

    assert took_s <= FAULT_WITHIN_S
    wait_until(lambda: fault_pattern_since(rig.factory, mark))
    health = rig.health()  # written at once, not at the next 5 s write
    assert rig.store.health_writes == writes_before + 1
    assert (health.fault, health.camera_ok) == ("camera", False)
    assert health.camera_detail

    # Gone for half a minute: reported and retried, the loop alive throughout.
    faulted_at = health.updated_at
    for _ in range(300):
        assert rig.tick(), "the heartbeat must go on while the fault is reported"
        assert rig.scanner.fault == "camera"
    health = rig.health()
    assert health.updated_at > faulted_at  # the routine writes go on
    assert (health.fault, health.camera_ok) == ("camera", False)

    rig.camera.set_mode("streaming")
    took_s = rig.ticks_until(lambda: rig.scanner.fault is None, limit_s=RECOVER_WITHIN_S)

    assert took_s <= RECOVER_WITHIN_S
    assert ready_pattern(rig.factory)
    health = rig.health()
    assert (health.fault, health.camera_ok, health.camera_detail) == (None, True, "")
    stream(rig, 3.0)  # scanning again: the visitor still in view is decided again
    assert [o.decision.verdict for o in rig.outcomes] == ["allow", "allow"]


def test_fault_state_reaches_the_health_row_in_both_directions_without_waiting(rig):
    stream(rig, 1.0)  # the routine write was at the first step; the next is due in 5 s
    writes = rig.store.health_writes
    rig.camera.set_mode("gone")
    rig.ticks_until(lambda: rig.scanner.fault == "camera", limit_s=FAULT_WITHIN_S)
    assert (rig.store.health_writes, rig.health().fault) == (writes + 1, "camera")

    rig.camera.set_mode("streaming")
    took_s = rig.ticks_until(lambda: rig.scanner.fault is None, limit_s=RECOVER_WITHIN_S)
    assert took_s < 5.0 - FAULT_WITHIN_S  # so not a routine write either
    assert (rig.store.health_writes, rig.health().fault) == (writes + 2, None)


def test_a_store_fault_is_not_written_at_once_into_the_failing_store(rig):
    # Showing a fault writes the health row at once, except the store's own:
    # that write would fail too, after the busy timeout, holding up the loop.
    stream(rig, 1.0)
    rig.store.failing = True
    tried = rig.store.health_writes
    rig.ticks_until(lambda: rig.scanner.fault == "store", limit_s=5.0)  # the routine write
    assert rig.store.health_writes == tried + 1
    stream(rig, 1.0)
    assert rig.store.health_writes == tried + 1


def test_decoder_throwing_on_every_frame_shows_the_fault_and_the_gate_keeps_going(rig, caplog):
    caplog.set_level(logging.DEBUG, logger="kiosk.faults")
    rig.decoder.throws = lambda call: True
    mark = pin_mark(rig.factory)

    assert rig.tick()
    assert rig.scanner.fault == "decoder"
    wait_until(lambda: fault_pattern_since(rig.factory, mark))
    assert rig.health().fault == "decoder"
    assert rig.health().camera_ok

    stream(rig, 20.0)  # every frame still read, the heartbeat going on
    assert rig.scanner.fault == "decoder"
    health = rig.health()  # the routine writes go on too: the dashboard sees it running
    assert health.fault == "decoder"
    assert (rig.clock.now() - health.updated_at).total_seconds() < 5.0 + TICK_S
    assert rig.outcomes == []
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1  # not one per frame

    rig.decoder.throws = lambda call: False
    assert rig.tick()
    assert rig.scanner.fault is None
    assert ready_pattern(rig.factory)
    [entry] = rig.outcomes  # the visitor waiting in view is let in
    assert entry.decision.verdict == "allow"
    rig.ticks_until(
        lambda: rig.health().fault is None, limit_s=rig.scanner.settings.health_min_gap_s
    )
    assert "decoding again after 201 failed frames" in caplog.text


def test_decoder_throwing_once_shows_the_fault_for_that_frame_only(rig):
    rig.decoder.throws = lambda call: call == 5
    stream(rig, 0.4)
    assert rig.tick()
    assert rig.scanner.fault == "decoder"
    assert rig.tick()
    assert rig.scanner.fault is None
    assert ready_pattern(rig.factory)
    rig.ticks_until(
        lambda: rig.health().fault is None, limit_s=rig.scanner.settings.health_min_gap_s
    )
    [entry] = rig.outcomes
    assert entry.decision.verdict == "allow"


def test_decoder_failing_on_alternate_frames_does_not_write_health_every_frame(rig):
    stream(rig, 1.0)
    before = rig.store.health_writes
    rig.decoder.throws = lambda call: call % 2 == 0
    stream(rig, 10.0)  # the fault flaps on every frame
    writes = rig.store.health_writes - before
    assert writes <= 10.0 / rig.scanner.settings.health_min_gap_s + 2
    assert writes >= 10.0 / 5.0  # at least the routine writes


def test_scan_loop_runs_through_every_fault_and_stops_only_when_told(rig):
    """``run`` itself: the camera gone, then erroring, then back with a
    decoder that throws, then all well; the heartbeat (driving the fake time
    and the script here) keeps coming, and nothing leaves ``run``."""
    stop = threading.Event()
    seen: list[str | None] = []
    script = {
        1: lambda: rig.camera.set_mode("gone"),
        40: lambda: rig.camera.set_mode("error"),
        80: lambda: setattr(rig.decoder, "throws", lambda call: True),
        81: lambda: rig.camera.set_mode("streaming"),
        160: lambda: setattr(rig.decoder, "throws", lambda call: False),
        200: stop.set,
    }

    def on_beat() -> None:  # on the scan loop's thread, between reads
        if rig.heartbeats in script:
            script[rig.heartbeats]()
        seen.append(rig.scanner.fault)
        rig.clock.advance(TICK_S)
        settle(rig.camera, rig.source)
        rig.camera.offer()  # the next frame, if the camera is streaming

    rig.on_beat = on_beat
    errors: list[BaseException] = []

    def run() -> None:
        try:
            rig.scanner.run(stop)
        except BaseException as exc:  # the failure being tested for
            errors.append(exc)

    assert rig.camera.offer()  # the first frame: from then on, every step beats
    thread = threading.Thread(target=run, name="scan-loop", daemon=True)
    thread.start()
    thread.join(WAIT_S * 6)
    stop.set()

    assert not thread.is_alive()
    assert errors == []
    assert rig.heartbeats >= 200
    assert "camera" in seen[1:80]
    assert "decoder" in seen[90:160]
    assert seen[-1] is None
    assert rig.health().fault is None


# --------------------------------------------------------------------------
# The dashboard


def test_dashboard_shows_the_camera_fault_as_the_kiosk_reports_it(
    app: Flask, manager: FlaskClient, clock: FakeClock, tmp_path: Path
):
    settings = app.extensions["gatekiosk"].settings
    camera = FakeCamera(FRAME)
    factory = MockFactory()
    signals = GpiozeroSignals(PINS, pin_factory=factory)
    source = V4l2Source("fake-dashboard", clock=clock, open_capture=camera.open)
    with Store.open(settings.db_path, boot_id="boot-2") as kiosk_store:
        scanner = Scanner(
            parts=GateParts(source, ZxingDecoder(), signals),
            registry=Registry(default_formats()),
            store=kiosk_store,
            clock=clock,
            setup=GateSetup(
                PolicyRules(),
                ScanSettings(
                    gate_id=settings["gate.id"], timezone=settings.timezone, read_timeout_s=0.0
                ),
            ),
            hash_key=KEY,
        )
        try:
            settle(camera, source)
            camera.offer()
            scanner.step()
            page = manager.get("/").get_data(as_text=True)
            assert "Ready" in page

            camera.set_mode("gone")
            settle(camera, source)
            clock.advance(TICK_S)
            scanner.step()
            page = manager.get("/").get_data(as_text=True)
            live = manager.get("/api/live").get_json()
        finally:
            camera.set_mode("gone")
            source.close()
            signals.close()
            factory.close()
    assert "Fault: Camera" in page
    assert "v4l2:fake-dashboard (read failed" in page
    health = live["summary"]["health"]
    assert (health["running"], health["fault"], health["camera_ok"]) == (True, "camera", False)


# --------------------------------------------------------------------------
# A Pi camera stuck in libcamera: closed by the supervisor, or the process restarted


@pytest.fixture
def pi_camera(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Picamera2Source, FakeCameraBus, FakeClock]]:
    """A Picamera2Source on a fake Camera Module 3, delivering; the bus lets
    every blocked call go at the end."""
    bus = install(monkeypatch, FakeCameraBus())
    clock = FakeClock()
    source = Picamera2Source(clock=clock, join_timeout_s=WAIT_S)
    try:
        wait_until(lambda: source.read(0.05) is not None, WAIT_S)
        yield source, bus, clock
    finally:
        bus.release_all()
        source.close()


def hang_and_abandon(source: Picamera2Source, bus: FakeCameraBus, clock: FakeClock) -> None:
    """libcamera stops completing requests; the stall is failed on the clock."""
    bus.hang()
    assert bus.made[0].blocked.wait(WAIT_S)  # the grabber is stuck in capture_array
    while source.read(0.0) is not None:  # frames captured before the hang
        pass
    clock.advance(STALL_TIMEOUT_S + TICK_S)
    assert source.read(0.0) is None
    assert not source.state.ok


def test_hung_libcamera_is_closed_by_the_supervisor_before_a_new_picamera2_opens(pi_camera):
    source, bus, clock = pi_camera
    hang_and_abandon(source, bus, clock)
    first = bus.made[0]

    # Closed from the supervising side although its grabber is still stuck.
    assert first.closed.wait(WAIT_S)
    assert first.blocked.is_set()
    clock.advance(CAMERA_BACKOFF.max_s)
    wait_until(lambda: source.read(0.05) is not None, WAIT_S)

    # The fake refuses a second Picamera2 while the first holds the camera:
    # the second opened, so the first had let go.
    assert len(bus.made) == 2
    assert source.state.ok
    assert not source.state.restart_needed


@pytest.mark.parametrize("failure", ["hangs", "raises"])
def test_camera_that_cannot_be_closed_asks_for_a_new_process(pi_camera, failure):
    source, bus, clock = pi_camera
    if failure == "hangs":
        bus.close_hangs.set()
    else:
        bus.close_error = "Failed to release camera"
    hang_and_abandon(source, bus, clock)
    if failure == "hangs":
        # Not before the bound: the close may still come.
        clock.advance(RELEASE_TIMEOUT_S - TICK_S)
        assert source.read(0.0) is None
        assert not source.state.restart_needed
        clock.advance(TICK_S)

    wait_until(lambda: source.read(0.01) is None and source.state.restart_needed, WAIT_S)
    clock.advance(60.0)  # and no reopening, however long it goes on
    assert source.read(0.01) is None

    state = source.state
    assert (state.ok, state.restart_needed) == (False, True)
    assert state.detail.endswith("; only a restart of the process frees it")
    expected = (
        "not closed within 5 s"
        if failure == "hangs"
        else "closing the stuck camera failed (RuntimeError: Failed to release camera)"
    )
    assert expected in state.detail
    assert len(bus.made) == 1


# --------------------------------------------------------------------------
# A camera fault that lasts: the kiosk stops and systemd restarts it


class SwitchableCamera:
    """A FrameSource delivering a blank frame while ``working``; otherwise it
    reports a failure (and ``restart_needed`` as set), and if ``waits`` waits
    out the read timeout on the clock as a failing camera does (for ``run``;
    the tests that step the loop move the clock themselves)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.working = True
        self.restart_needed = False
        self.waits = False
        self.index = 0

    @property
    def state(self) -> SourceState:
        if self.working:
            return SourceState("switchable", ok=True)
        return SourceState(
            "switchable",
            ok=False,
            detail="read failed: EIO",
            restart_needed=self.restart_needed,
        )

    @property
    def exhausted(self) -> bool:
        return False

    def read(self, timeout_s: float) -> Frame | None:
        if not self.working:
            if self.waits:
                self.clock.sleep(timeout_s)
            return None
        self.index += 1
        return Frame(np.zeros((48, 64), np.uint8), self.clock.monotonic(), self.index)

    def close(self) -> None:
        pass


@dataclass
class ExitRig:
    clock: FakeClock
    camera: SwitchableCamera
    scanner: Scanner
    store: Store
    heartbeats: int = 0

    def step(self, after_s: float = 0.5) -> bool:
        """One step ``after_s`` after the last; whether it fed the watchdog."""
        self.clock.advance(after_s)
        before = self.heartbeats
        self.scanner.step()
        return self.heartbeats > before

    def fail_for(self, seconds: float) -> float:
        """The camera failing for ``seconds`` of steps (every step fed the
        watchdog); when the fault was first seen."""
        self.camera.working = False
        assert self.step()
        since = self.clock.monotonic()
        while self.clock.monotonic() - since < seconds:
            assert self.step()
        return since


@pytest.fixture
def exit_rig(tmp_path: Path) -> Iterator[ExitRig]:
    clock = FakeClock()
    camera = SwitchableCamera(clock)
    factory = MockFactory()
    signals = GpiozeroSignals(PINS, pin_factory=factory)
    holder: list[ExitRig] = []

    def beat() -> None:
        holder[0].heartbeats += 1

    with Store.open(tmp_path / "gate.db", boot_id="boot-1") as store:
        scanner = Scanner(
            parts=GateParts(camera, ZxingDecoder(), signals, pin_backend="MockFactory"),
            registry=Registry(default_formats()),
            store=store,
            clock=clock,
            setup=GateSetup(
                PolicyRules(),
                ScanSettings(
                    gate_id=GATE,
                    timezone=ZoneInfo("Asia/Ho_Chi_Minh"),
                    read_timeout_s=0.5,
                    camera_fault_exit_s=60.0,
                ),
            ),
            hash_key=KEY,
            hooks=ScanHooks(heartbeat=beat),
        )
        holder.append(ExitRig(clock, camera, scanner, store))
        try:
            yield holder[0]
        finally:
            signals.close()
            factory.close()


def test_kiosk_gives_up_at_sixty_seconds_of_continuous_camera_fault(exit_rig):
    assert exit_rig.step()
    since = exit_rig.fail_for(59.5)
    assert exit_rig.scanner.gave_up is None

    assert not exit_rig.step()  # 60 s: no heartbeat any more
    assert exit_rig.clock.monotonic() - since == 60.0
    reason = exit_rig.scanner.gave_up
    assert reason == "camera switchable at fault for 60 s: read failed: EIO"


def test_a_fault_that_clears_at_fifty_nine_seconds_starts_the_count_again(exit_rig):
    exit_rig.fail_for(59.0)
    exit_rig.camera.working = True
    assert exit_rig.step()  # a frame: the fault clears
    exit_rig.fail_for(59.5)  # 119 s of fault in the last two minutes, none of it 60 s long

    assert exit_rig.scanner.gave_up is None
    assert exit_rig.scanner.fault == "camera"


def test_a_camera_only_a_new_process_can_free_gives_up_at_once(exit_rig):
    exit_rig.camera.working = False
    exit_rig.camera.restart_needed = True

    assert not exit_rig.step()
    assert exit_rig.scanner.gave_up == (
        "camera switchable cannot be freed in this process: read failed: EIO"
    )


def test_scan_loop_returns_by_itself_once_it_gives_up_and_says_so_in_the_health_row(exit_rig):
    exit_rig.camera.working = False
    exit_rig.camera.waits = True
    started = exit_rig.clock.monotonic()

    exit_rig.scanner.run(threading.Event())  # would never return without the give-up

    assert exit_rig.clock.monotonic() - started == pytest.approx(60.0, abs=1.0)
    assert exit_rig.scanner.gave_up is not None
    health = exit_rig.store.read_health(GATE)
    assert health is not None
    assert (health.fault, health.camera_ok) == ("camera", False)


class HurriedClock(SystemClock):
    """The system clock, its monotonic time running 50 times faster, so a
    minute of fault passes in about a second of the test."""

    SPEED = 50.0

    def __init__(self) -> None:
        self._origin = super().monotonic()

    def monotonic(self) -> float:
        real = super().monotonic()
        return self._origin + (real - self._origin) * self.SPEED


def test_gatekiosk_run_exits_non_zero_after_a_minute_without_a_camera(tmp_path, monkeypatch):
    config = tmp_path / "gate.toml"
    config.write_text(
        f'[gate]\ndata_dir = "{tmp_path}"\n'
        f'[camera]\nsource = "v4l2"\ndevice = "{tmp_path / "video9"}"\nfault_exit_s = 60\n'
        '[pins]\nbackend = "mock"\n'
    )
    monkeypatch.setattr("kiosk.clock.SystemClock", HurriedClock)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = CliRunner().invoke(cli, ["run", "--config", str(config)])
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    assert result.exit_code == 1, result.output
    assert "Error: camera v4l2:" in result.output
    # The exact moment is the fake-clock tests' business; here the loop steps
    # every read timeout (0.5 s, 25 s of this clock).
    fault_s = re.search(r"at fault for (\d+) s: open failed: no such device", result.output)
    assert fault_s is not None, result.output
    assert 60 <= int(fault_s[1]) < 60 + 2 * 25
    assert result.output.rstrip().endswith("exiting so that the service is restarted")
