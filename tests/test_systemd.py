"""sd_notify to a real datagram socket, and when the scan loop proves alive."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from kiosk.camera import Frame, SourceState
from kiosk.clock import FakeClock
from kiosk.codes import Registry, default_formats
from kiosk.policy import PolicyRules
from kiosk.scanner import GateParts, GateSetup, ScanHooks, Scanner, ScanSettings
from kiosk.store import Store
from kiosk.systemd import SystemdNotifier
from tests.test_scanner import FakeSignals


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> list[str]:
    sock.setblocking(False)
    messages = []
    try:
        while True:
            messages.append(sock.recv(256).decode())
    except BlockingIOError:
        return messages


def test_ready_watchdog_and_stopping_reach_systemd(listener):
    sock, path = listener
    clock = FakeClock()
    notifier = SystemdNotifier(
        clock=clock, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"}
    )

    notifier.ready()
    notifier.watchdog()
    notifier.watchdog()  # within half the interval: not sent again
    clock.advance(5.0)
    notifier.watchdog()
    notifier.stopping()

    assert received(sock) == ["READY=1", "WATCHDOG=1", "WATCHDOG=1", "STOPPING=1"]


def test_abstract_socket_names_start_with_at():
    name = f"gatekiosk-test-{id(object())}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        SystemdNotifier(clock=FakeClock(), env={"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == ["READY=1"]
    finally:
        sock.close()


def test_outside_systemd_nothing_is_sent():
    notifier = SystemdNotifier(clock=FakeClock(), env={})
    assert not notifier.enabled
    notifier.ready()
    notifier.watchdog()


@dataclass
class Camera:
    """Delivers, reports a failure, or stalls silently, as scripted."""

    script: list[str]
    clock: FakeClock
    index: int = 0
    ok: bool = True

    @property
    def state(self) -> SourceState:
        return SourceState("scripted", self.ok)

    @property
    def exhausted(self) -> bool:
        return self.index >= len(self.script)

    def read(self, timeout_s: float) -> Frame | None:
        what = self.script[self.index]
        self.index += 1
        self.clock.advance(0.1)
        self.ok = what != "failing"
        if what == "frame":
            return Frame(np.zeros((48, 64), np.uint8), self.clock.monotonic(), self.index)
        return None

    def close(self) -> None:
        pass


class NoCodes:
    name = "none"

    def decode(self, grey: object) -> list:
        return []


def test_loop_beats_after_frames_and_while_reopening_but_not_when_silently_stalled(tmp_path):
    clock = FakeClock()
    beats: list[int] = []
    camera = Camera(["frame", "stalled", "stalled", "failing", "frame"], clock)
    with Store.open(tmp_path / "g.db", boot_id="b") as store:
        scanner = Scanner(
            parts=GateParts(camera, NoCodes(), FakeSignals()),
            registry=Registry(default_formats()),
            store=store,
            clock=clock,
            setup=GateSetup(PolicyRules(), ScanSettings(gate_id="g", timezone=ZoneInfo("UTC"))),
            hash_key=b"k" * 32,
            hooks=ScanHooks(heartbeat=lambda: beats.append(camera.index)),
        )
        while not camera.exhausted:
            scanner.step()

    assert beats == [1, 4, 5]
