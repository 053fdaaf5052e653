"""gatekiosk selftest against the simulated camera and gpiozero's MockFactory."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from gpiozero.pins.mock import MockFactory

from kiosk.cli import cli
from kiosk.clock import FakeClock, kernel_clock_synchronised
from kiosk.config import load_settings
from kiosk.selftest import TEST_PAYLOAD, check_disk, run_selftest
from kiosk.synthetic import Scene


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
    assert "✓ green light: seen by the tester" in lines
    assert any(line.startswith("✓ database: ") for line in lines)
    assert not any("door relay" in line for line in lines)
    synced = kernel_clock_synchronised()
    assert ("✓ clock: synchronised" in lines) == synced
    assert result.exit_code == (0 if synced else 1)
