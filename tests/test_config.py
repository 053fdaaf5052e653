"""Settings: defaults, the TOML file, the environment, and one message for every problem."""

import re
from pathlib import Path

import pytest

from kiosk.config import example_toml, load_settings
from kiosk.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_apply_without_a_file():
    settings = load_settings(env={})
    assert settings["gate.mode"] == "both"
    assert settings["scan.hysteresis_s"] == 2.0
    assert settings["privacy.store_full_id"] is False
    assert settings.db_path == Path("gatekiosk-data/gatekiosk.db")


def test_file_then_environment_then_overrides(tmp_path):
    path = tmp_path / "gatekiosk.toml"
    path.write_text('[gate]\nmode = "entry"\nid = "north"\n[policy]\ncapacity = 50\n')
    settings = load_settings(
        path, env={"GATEKIOSK_GATE__MODE": "exit", "GATEKIOSK_PINS__RELAY_ACTIVE_HIGH": "true"}
    )
    assert settings["gate.mode"] == "exit"
    assert settings["gate.id"] == "north"
    assert settings["policy.capacity"] == 50
    assert settings["pins.relay_active_high"] is True
    assert load_settings(path, env={}, overrides={"gate.id": "south"})["gate.id"] == "south"


def test_every_problem_is_listed_in_one_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        '[gate]\nmode = "sideways"\ntimezone = "Mars/Olympus"\ncolour = "blue"\n'
        '[camera]\nfps = "fast"\n[pins]\ngreen = 17\nred = 17\n[policy]\ncapacity = -1\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    problems = "\n".join(caught.value.problems)
    assert "gate.mode: 'sideways' is not one of entry, exit, both" in problems
    assert "gate.timezone: unknown time zone 'Mars/Olympus'" in problems
    assert "gate.colour: unknown setting" in problems
    assert "camera.fps: expected a float, got 'fast'" in problems
    assert "policy.capacity: -1 is below the minimum 0" in problems
    assert "pins: " in problems
    assert len(caught.value.problems) == 6


def test_environment_with_an_unknown_key_fails_at_start():
    with pytest.raises(ConfigError, match=r"gate\.colour: unknown setting"):
        load_settings(env={"GATEKIOSK_GATE__COLOUR": "red"})


def test_broken_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[gate\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path, env={})


def test_optional_pin_can_be_left_out():
    assert load_settings(env={"GATEKIOSK_PINS__BUZZER": ""})["pins.buzzer"] is None


def test_documented_example_matches_the_declared_settings_and_loads():
    shipped = (ROOT / "deploy" / "gatekiosk.toml").read_text(encoding="utf-8")
    assert shipped == example_toml()
    assert (
        load_settings(ROOT / "deploy" / "gatekiosk.toml", env={}).values
        == load_settings(env={}).values
    )


def test_a_pin_timing_out_of_range_is_reported_not_crashed_on():
    with pytest.raises(ConfigError, match=r"pins\.relay_pulse_ms: 5 is below the minimum 50"):
        load_settings(overrides={"pins.relay_pulse_ms": 5}, env={})


def test_camera_focus_and_fault_exit_default_to_autofocus_and_a_minute():
    settings = load_settings(env={})
    assert settings["camera.focus"] == "auto-macro"
    assert settings["camera.focus_cm"] == 10.0
    assert settings["camera.fault_exit_s"] == 60.0


def test_fixed_focus_on_the_pi_camera_and_never_exiting_are_accepted():
    settings = load_settings(
        overrides={
            "camera.source": "picamera2",
            "camera.focus": "fixed",
            "camera.focus_cm": 12,
            "camera.fault_exit_s": 0,
        },
        env={},
    )
    assert (settings["camera.focus"], settings["camera.focus_cm"]) == ("fixed", 12.0)
    assert settings["camera.fault_exit_s"] == 0.0


def test_every_camera_focus_and_fault_problem_is_listed_in_one_error():
    with pytest.raises(ConfigError) as caught:
        load_settings(
            overrides={
                "camera.source": "v4l2",
                "camera.focus": "fixed",
                "camera.focus_cm": 1,
                "camera.fault_exit_s": 5,
            },
            env={},
        )
    assert caught.value.problems == [
        "camera.focus_cm: 1.0 is below the minimum 2",
        "camera.focus: 'fixed' needs camera.source = 'picamera2' (the lens of a USB webcam "
        "is not driven); got camera.source = 'v4l2'",
        "camera.fault_exit_s: 5 is too short; 0 (never) or at least 10 s, so that a camera "
        "is reopened a few times first",
    ]


def test_unknown_focus_mode_names_the_choices():
    with pytest.raises(ConfigError, match=r"camera\.focus: 'macro' is not one of auto-macro"):
        load_settings(env={"GATEKIOSK_CAMERA__FOCUS": "macro"})


def test_fault_exit_must_outlast_the_stall_timeout():
    with pytest.raises(ConfigError, match=r"fault_exit_s: 20 must be longer than .*\(30\)"):
        load_settings(overrides={"camera.fault_exit_s": 20, "camera.stall_timeout_s": 30}, env={})


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("web.display_token", "short-token", "at least 20 characters"),
        ("web.trusted_proxy", "*", "is not an IP address"),
        ("web.trusted_proxy", "proxy.lan", "is not an IP address"),
        ("web.allowed_hosts", "gate.example.org, bad host", "'bad host' is not a host name"),
    ],
)
def test_web_security_settings_are_checked_at_start_up(name, value, problem):
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_settings(overrides={name: value}, env={})


def test_web_security_settings_accept_sane_values():
    settings = load_settings(
        overrides={
            "web.display_token": "x" * 20,
            "web.trusted_proxy": "::1",
            "web.allowed_hosts": "gate.example.org, kiosk.local",
        },
        env={},
    )
    assert settings["web.connection_limit"] == 500
