"""gatekiosk selftest against the simulated camera and gpiozero's MockFactory."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from gpiozero.pins.mock import MockFactory

from kiosk.cli import cli
from kiosk.clock import FakeClock, kernel_clock_synchronised
from kiosk.config import load_settings
from kiosk.decoder import make_decoder
from kiosk.selftest import (
    SIMULATED_PINS_DETAIL,
    TEST_PAYLOAD,
    check_attached_cameras,
    check_camera,
    check_disk,
    check_focus,
    focus_mode,
    run_selftest,
)
from kiosk.synthetic import Scene
from tests.fake_picamera2 import CAMERA_MODULE_2, UVC_WEBCAM, FakeCameraBus, install
from tests.waiting import wait_until


class TickingClock(FakeClock):
    """A fake clock that moves 10 ms each time it is read, for checks that
    watch a camera fed by a real thread for a while."""

    def monotonic(self) -> float:
        self.advance(0.01)
        return super().monotonic()


def settings_for(tmp_path: Path):
    return load_settings(
        overrides={
            "gate.data_dir": str(tmp_path),
            "camera.source": "synthetic",
            "pins.backend": "mock",
        },
        env={},
    )


def test_every_check_passes_on_a_working_gate_and_each_output_switches(tmp_path):
    from kiosk.camera import SyntheticSource

    clock = FakeClock()
    settings = settings_for(tmp_path)
    factory = MockFactory()
    asked: list[str] = []

    def confirm(question: str) -> bool:
        asked.append(question)
        return True

    source = SyntheticSource([Scene((TEST_PAYLOAD,), 60.0)], clock=clock, fps=15.0)

    checks = run_selftest(
        settings,
        clock=clock,
        source=source,
        pin_factory=factory,
        confirm=confirm,
    )

    assert [(c.name, c.ok) for c in checks] == [
        ("camera synthetic", True),
        *[(c.name, True) for c in checks[1:-8]],
        ("green light", True),
        ("red light", True),
        ("buzzer", True),
        ("status light", True),
        ("door relay", True),
        ("database", True),
        ("clock", True),
        ("disk", True),
    ]
    assert {c.name for c in checks[1:-8]} >= {"decoder zxing", "decoder zbar"}
    assert "15.0 frames per second" in checks[0].detail
    assert len(asked) == 5
    assert (
        asked[0]
        == "Đèn xanh (GPIO 17) có bật lên không? / Did the green light (GPIO 17) switch on?"
    )
    assert checks[-8].detail == "người kiểm tra đã thấy / seen by the tester"
    for pin in (17, 27, 22, 25):
        assert [bool(s.state) for s in factory.pin(pin).states] == [False, True, False]
    # The mock pin starts low; the active-low relay is then held high (off),
    # pulled low (energised) once, and released.
    relay_levels = [bool(s.state) for s in factory.pin(23).states]
    assert relay_levels == [False, True, False, True]
    factory.close()


def test_an_output_nobody_saw_fails_and_no_relay_skips_the_door(tmp_path):
    from kiosk.camera import SyntheticSource

    clock = FakeClock()
    factory = MockFactory()
    checks = run_selftest(
        settings_for(tmp_path),
        clock=clock,
        source=SyntheticSource([Scene((), 60.0)], clock=clock),
        pin_factory=factory,
        confirm=lambda question: "buzzer" not in question,
        include_relay=False,
    )
    by_name = {c.name: c for c in checks}
    assert not by_name["buzzer"].ok
    assert "door relay" not in by_name
    assert by_name["camera synthetic"].ok
    assert [bool(s.state) for s in factory.pin(23).states] == [False]  # never touched
    factory.close()


def test_on_simulated_pins_the_outputs_are_not_checked_and_nobody_is_asked(tmp_path):
    from kiosk.camera import SyntheticSource

    clock = FakeClock()
    factory = MockFactory()
    asked: list[str] = []

    def confirm(question: str) -> bool:
        asked.append(question)
        return True

    checks = run_selftest(
        settings_for(tmp_path),
        clock=clock,
        source=SyntheticSource([Scene((), 60.0)], clock=clock),
        pin_factory=factory,
        confirm=confirm,
        simulated_pins=True,
    )
    outputs = [c for c in checks if c.name.endswith(("light", "buzzer", "relay"))]
    assert [c.name for c in outputs] == [
        "green light",
        "red light",
        "buzzer",
        "status light",
        "door relay",
    ]
    assert all(not c.checked and c.ok and c.detail == SIMULATED_PINS_DETAIL for c in outputs)
    assert asked == []
    factory.close()


def test_a_full_disk_is_reported(tmp_path):
    check = check_disk(tmp_path, min_free_mb=10**12)
    assert not check.ok
    assert "MB free" in check.detail


@pytest.mark.slow
def test_cli_prints_a_checklist_and_exits_non_zero_on_any_failure(tmp_path):
    config = tmp_path / "gate.toml"
    config.write_text(
        f'[gate]\ndata_dir = "{tmp_path}"\n'
        '[camera]\nsource = "synthetic"\n[pins]\nbackend = "mock"\n'
    )
    result = CliRunner().invoke(cli, ["selftest", "--config", str(config), "--yes", "--no-relay"])

    lines = result.output.splitlines()
    assert lines, result
    assert lines[0].startswith("✓ camera synthetic: ")
    assert "✓ decoder zxing: read the test code exactly" in lines
    assert f"– green light: {SIMULATED_PINS_DETAIL}" in lines
    assert not any("seen by the tester" in line for line in lines)
    assert any(line.startswith("✓ database: ") for line in lines)
    assert not any("door relay" in line for line in lines)
    synced = kernel_clock_synchronised()
    assert ("✓ clock: synchronised" in lines) == synced
    assert result.exit_code == (0 if synced else 1)


def test_focus_check_shows_the_mode_and_the_sharpness_of_the_held_code(tmp_path):
    from kiosk.camera import SyntheticSource

    clock = FakeClock()
    factory = MockFactory()
    readings: list[str] = []
    checks = run_selftest(
        settings_for(tmp_path),
        clock=clock,
        source=SyntheticSource([Scene((TEST_PAYLOAD,), 60.0)], clock=clock, fps=15.0),
        pin_factory=factory,
        confirm=lambda question: True,
        on_reading=readings.append,
    )
    factory.close()

    focus = {c.name: c for c in checks}["focus"]
    assert focus.ok
    assert focus.detail.startswith("auto-macro: set on picamera2 cameras only")
    assert re.search(r"; sharpness \d+ on the held code$", focus.detail), focus.detail
    # Live figures every half second of the three the check watches.
    assert 5 <= len(readings) <= 7
    assert all(re.fullmatch(r"sharpness \d+ \(code held\)", r) for r in readings), readings


def test_pi_camera_check_says_what_is_attached_and_how_it_is_focused(tmp_path, monkeypatch):
    from kiosk.camera import Focus, Picamera2Source

    bus = install(monkeypatch, FakeCameraBus())
    clock = TickingClock()
    settings = settings_for(tmp_path)
    source = Picamera2Source(clock=clock, focus=Focus(), join_timeout_s=10.0)
    try:
        wait_until(lambda: source.opened is not None, 10.0)
        camera = check_camera(source, clock, seconds=0.5)
        focus = check_focus(
            source,
            clock,
            mode=focus_mode(settings, source),
            decoder=make_decoder("zxing"),
            seconds=0.0,
        )
    finally:
        source.close()
        bus.release_all()

    assert "camera 0: imx708, Raspberry Pi camera; lores stream 640x480 YUV420" in camera.detail
    assert focus.ok
    assert focus.detail.startswith("auto-macro: continuous autofocus, macro range; no code read")


def test_fixed_focus_on_a_camera_without_a_lens_motor_fails_the_focus_check(tmp_path, monkeypatch):
    from kiosk.camera import Focus, Picamera2Source

    bus = install(monkeypatch, FakeCameraBus(cameras=[CAMERA_MODULE_2]))
    clock = FakeClock()
    settings = load_settings(
        overrides={
            "gate.data_dir": str(tmp_path),
            "camera.source": "picamera2",
            "camera.focus": "fixed",
            "pins.backend": "mock",
        },
        env={},
    )
    source = Picamera2Source(clock=clock, focus=Focus("fixed", 10.0), join_timeout_s=10.0)
    try:
        wait_until(lambda: source.opened is not None, 10.0)
        mode = focus_mode(settings, source)
    finally:
        source.close()
        bus.release_all()

    assert mode == (
        "fixed: the camera cannot move its lens (no LensPosition control); 10 cm not set",
        False,
    )


def test_selftest_lists_the_cameras_libcamera_sees_and_checks_the_configured_one(
    tmp_path, monkeypatch
):
    install(monkeypatch, FakeCameraBus(cameras=[UVC_WEBCAM, CAMERA_MODULE_2]))

    def settings(**overrides: object):
        return load_settings(
            overrides={"gate.data_dir": str(tmp_path), "pins.backend": "mock", **overrides},
            env={},
        )

    listed = "camera 0: imx219, Raspberry Pi camera; camera 1: HD Pro Webcam C920, USB webcam (UVC)"
    webcam = check_attached_cameras(settings(**{"camera.source": "v4l2"}))
    assert (webcam.ok, webcam.detail) == (True, listed)
    second = check_attached_cameras(
        settings(**{"camera.source": "picamera2", "camera.device": "1"})
    )
    assert (second.ok, second.detail) == (True, f"{listed} (camera.device = '1' is listed)")
    third = check_attached_cameras(settings(**{"camera.source": "picamera2", "camera.device": "2"}))
    assert (third.ok, third.detail) == (False, f"{listed} (camera.device = '2' is not listed)")


def test_without_picamera2_the_libcamera_list_is_skipped_not_failed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails
    check = check_attached_cameras(settings_for(tmp_path))
    assert check.ok
    assert check.detail.startswith("not listed: the Pi camera needs picamera2")
