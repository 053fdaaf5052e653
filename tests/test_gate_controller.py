"""gate_controller on gpiozero's real MockFactory: assertions on pin histories.

Background blinks and light timers run on real time, so durations are tiny
and every wait polls a condition against a generous deadline instead of
sleeping a fixed time.
"""

from __future__ import annotations

import dataclasses
import doctest
import importlib.util
import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero import LED, DigitalOutputDevice
from gpiozero.exc import GPIOPinInUse
from gpiozero.pins.mock import MockFactory, MockPin

import gate_controller.gpio
import gate_controller.pins as pins_module
from gate_controller import (
    GateSignals,
    GpiozeroSignals,
    PinConfig,
    PinConfigError,
    PinFactoryError,
    SignalsClosed,
    beep_pattern,
    board_model,
    is_raspberry_pi,
    make_pin_factory,
    normalise_pin,
    why_pins_are_simulated,
)
from tests.waiting import wait_until

RELAY, GREEN, RED, BUZZER, BUTTON, STATUS = 23, 17, 27, 22, 24, 25

WIRING = PinConfig(
    relay=RELAY,
    green=GREEN,
    red=RED,
    buzzer=BUZZER,
    button=BUTTON,
    status=STATUS,
    relay_pulse_ms=40,
    light_ms=60,
    beep_ms=20,
    long_beep_ms=80,
    button_bounce_ms=0,
)

# For assertions made right after a call returns: long enough that a test
# thread descheduled on a loaded machine still sees the light or relay on.
HOLD_MS = 300

LGPIO_INSTALLED = importlib.util.find_spec("lgpio") is not None


def wiring(**overrides: Any) -> PinConfig:
    return dataclasses.replace(WIRING, **overrides)


def levels(pin: Any) -> list[bool]:
    return [bool(s.state) for s in pin.states]


def rising_edges(pin: Any) -> int:
    states = levels(pin)
    return sum(1 for before, after in itertools.pairwise(states) if after and not before)


def on_durations_s(pin: Any) -> list[float]:
    """How long each high period lasted (a history entry's timestamp is the
    time since the previous change)."""
    return [s.timestamp for s in pin.states[1:] if not s.state]


@pytest.fixture(autouse=True)
def no_leftover_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    wait_until(lambda: not (set(threading.enumerate()) - before))


@pytest.fixture
def factory() -> Iterator[Any]:
    pin_factory = MockFactory()
    yield pin_factory
    pin_factory.close()


@pytest.fixture
def relay_pin(factory: Any) -> Any:
    """The relay pin with an active-low relay board attached: the board's own
    pull-up holds IN high (relay off) until the Pi drives it."""
    pin = factory.pin(RELAY)
    pin.pull = "up"
    pin.clear_states()
    return pin


@pytest.fixture
def make_signals(factory: Any) -> Iterator[Callable[..., GpiozeroSignals]]:
    made: list[GpiozeroSignals] = []

    def make(**overrides: Any) -> GpiozeroSignals:
        signals = GpiozeroSignals(wiring(**overrides), pin_factory=factory)
        made.append(signals)
        return signals

    yield make
    for signals in made:
        signals.close()


class ShortedPin(MockPin):
    """An output whose driver fails the moment it is driven high."""

    def _set_state(self, value: Any) -> None:
        if value:
            raise OSError("buzzer driver shorted")
        super()._set_state(value)


# -- start-up and shutdown ----------------------------------------------------


@pytest.mark.parametrize("active_high", [True, False])
def test_relay_is_never_energised_at_start_up(
    factory: Any, make_signals: Callable[..., GpiozeroSignals], active_high: bool
) -> None:
    pin = factory.pin(RELAY)
    if not active_high:
        pin.pull = "up"  # the active-low board's pull-up
    pin.clear_states()

    make_signals(relay_active_high=active_high)

    assert pin.function == "output"
    assert levels(pin) == [not active_high]  # the inactive level, never anything else


def test_status_led_shows_ready_at_start_up(
    factory: Any, make_signals: Callable[..., GpiozeroSignals]
) -> None:
    make_signals()
    assert factory.pin(STATUS).state
    assert not factory.pin(GREEN).state
    assert not factory.pin(RED).state
    assert not factory.pin(BUZZER).state


def test_failed_start_leaves_relay_inactive_and_releases_its_pin(
    factory: Any, relay_pin: Any
) -> None:
    squatter = LED(STATUS, pin_factory=factory)  # the status pin is taken
    try:
        with pytest.raises(GPIOPinInUse):
            GpiozeroSignals(wiring(), pin_factory=factory)
    finally:
        squatter.close()

    assert levels(relay_pin) == [True]
    DigitalOutputDevice(RELAY, pin_factory=factory).close()  # released for reuse


def test_invalid_pins_raise_every_problem_and_touch_no_pin(factory: Any) -> None:
    with pytest.raises(PinConfigError) as caught:
        GpiozeroSignals(PinConfig(relay=17, green="GPIO17", red=None), pin_factory=factory)

    assert len(caught.value.problems) == 2
    assert factory.pins == {}


def test_close_during_a_pulse_de_energises_the_relay(
    factory: Any, relay_pin: Any, make_signals: Callable[..., GpiozeroSignals]
) -> None:
    signals = make_signals(relay_pulse_ms=5_000)
    signals.allow()
    assert not relay_pin.state

    signals.close()

    assert relay_pin.state  # inactive (high) at once, not after the pulse
    assert levels(relay_pin) == [True, False, True]
    assert relay_pin.function == "input"  # released
    assert not factory.pin(GREEN).state
    assert not factory.pin(BUZZER).state
    assert not factory.pin(STATUS).state


def test_close_is_idempotent_and_later_signals_raise(
    make_signals: Callable[..., GpiozeroSignals],
) -> None:
    signals = make_signals()
    signals.close()
    signals.close()

    with pytest.raises(SignalsClosed):
        signals.allow()
    with pytest.raises(SignalsClosed):
        signals.deny()
    with pytest.raises(SignalsClosed):
        signals.set_fault(True)


def _allow_then_fail(signals: GpiozeroSignals) -> None:
    with signals:
        signals.allow()
        raise RuntimeError("scan loop crashed")


def test_leaving_the_with_block_on_an_error_de_energises_the_relay(
    factory: Any, relay_pin: Any
) -> None:
    signals = GpiozeroSignals(wiring(relay_pulse_ms=5_000), pin_factory=factory)

    with pytest.raises(RuntimeError, match="crashed"):
        _allow_then_fail(signals)

    assert levels(relay_pin) == [True, False, True]


# -- allow and deny -----------------------------------------------------------


def test_allow_energises_relay_before_returning_then_ends_the_pulse(
    factory: Any, relay_pin: Any, make_signals: Callable[..., GpiozeroSignals]
) -> None:
    signals = make_signals(relay_pulse_ms=HOLD_MS, light_ms=HOLD_MS)

    signals.allow()

    assert not relay_pin.state  # energised (active-low) by the time allow() returns
    assert factory.pin(GREEN).state
    assert not factory.pin(RED).state
    wait_until(lambda: relay_pin.state)
    assert levels(relay_pin) == [True, False, True]
    assert relay_pin.states[-1].timestamp >= HOLD_MS / 1000 - 0.005  # low for relay_pulse_ms
    wait_until(lambda: not factory.pin(GREEN).state)


def test_allow_drives_an_active_high_relay_high(
    factory: Any, make_signals: Callable[..., GpiozeroSignals]
) -> None:
    pin = factory.pin(RELAY)
    signals = make_signals(relay_active_high=True, relay_pulse_ms=HOLD_MS)

    signals.allow()

    assert pin.state
    wait_until(lambda: not pin.state)


def test_deny_lights_red_and_never_energises_the_relay(
    factory: Any, relay_pin: Any, make_signals: Callable[..., GpiozeroSignals]
) -> None:
    signals = make_signals(light_ms=HOLD_MS)

    signals.deny()

    assert factory.pin(RED).state
    assert not factory.pin(GREEN).state
    wait_until(lambda: not factory.pin(RED).state)  # off after light_ms
    assert levels(relay_pin) == [True]


def test_deny_during_a_pulse_lets_the_admission_finish(
    factory: Any, relay_pin: Any, make_signals: Callable[..., GpiozeroSignals]
) -> None:
    signals = make_signals(relay_pulse_ms=HOLD_MS, light_ms=HOLD_MS)
    signals.allow()

    signals.deny()

    assert not relay_pin.state  # still energised for the admitted visitor
    assert factory.pin(RED).state
    assert not factory.pin(GREEN).state
    wait_until(lambda: relay_pin.state)
    assert levels(relay_pin) == [True, False, True]


def test_exception_during_allow_leaves_the_relay_inactive(
    factory: Any, relay_pin: Any, make_signals: Callable[..., GpiozeroSignals]
) -> None:
    factory.pin(BUZZER, pin_class=ShortedPin)
    signals = make_signals(relay_pulse_ms=5_000)

    with pytest.raises(OSError, match="shorted"):
        signals.allow()

    assert relay_pin.state  # de-energised before the error left allow()
    assert levels(relay_pin) == [True, False, True]
    assert not factory.pin(GREEN).state  # no "go" for a door that stays shut


def test_warning_allow_beeps_twice_where_plain_allow_beeps_once(
    factory: Any, make_signals: Callable[..., GpiozeroSignals]
) -> None:
    buzzer = factory.pin(BUZZER)
    green = factory.pin(GREEN)
    signals = make_signals()

    signals.allow(warning=True)
    wait_until(lambda: rising_edges(buzzer) == 2 and not buzzer.state)
    wait_until(lambda: not green.state)
    assert rising_edges(buzzer) == 2

    buzzer.clear_states()
    signals.allow()
    wait_until(lambda: rising_edges(buzzer) == 1 and not buzzer.state)
    wait_until(lambda: not green.state)  # light_ms outlasts the whole pattern
    assert rising_edges(buzzer) == 1


def test_deny_beeps_once_and_longer_than_an_allow_beep(
    factory: Any, make_signals: Callable[..., GpiozeroSignals]
) -> None:
    buzzer = factory.pin(BUZZER)
    signals = make_signals()

    signals.deny()
    wait_until(lambda: rising_edges(buzzer) == 1 and not buzzer.state)

    [beep_s] = on_durations_s(buzzer)
    assert beep_s >= 0.080 - 0.005
    assert beep_pattern(wiring(), "deny").on_ms > beep_pattern(wiring(), "allow").on_ms


def test_signals_without_optional_pins_still_work(
    factory: Any, relay_pin: Any, make_signals: Callable[..., GpiozeroSignals]
) -> None:
    signals = make_signals(buzzer=None, button=None, status=None)
    signals.set_override_handler(lambda: None)

    signals.allow(warning=True)
    signals.set_fault(True)
    signals.deny()

    wait_until(lambda: relay_pin.state)
    assert "GPIO22" not in {info.name for info in factory.pins}  # buzzer pin never claimed


# -- fault pattern ------------------------------------------------------------


def test_fault_blinks_status_fast_and_red_slowly_until_ready(
    factory: Any, make_signals: Callable[..., GpiozeroSignals]
) -> None:
    status, red = factory.pin(STATUS), factory.pin(RED)
    signals = make_signals()

    signals.set_fault(True)
    wait_until(lambda: rising_edges(status) >= 2)  # 0.1 s on / 0.1 s off
    wait_until(lambda: red.state)

    signals.set_fault(False)
    assert status.state  # steady: ready
    assert not red.state


def test_deny_while_faulted_shows_red_then_resumes_the_fault_blink(
    factory: Any, make_signals: Callable[..., GpiozeroSignals]
) -> None:
    red = factory.pin(RED)
    signals = make_signals()
    signals.set_fault(True)
    wait_until(lambda: red.state)

    signals.deny()
    red.clear_states()
    assert red.state

    wait_until(lambda: rising_edges(red) >= 1, timeout_s=3.0)  # off, then on again


# -- override button ----------------------------------------------------------


def test_override_button_calls_the_handler_once_per_press(
    factory: Any, make_signals: Callable[..., GpiozeroSignals]
) -> None:
    button = factory.pin(BUTTON)
    presses: list[str] = []
    signals = make_signals()
    signals.set_override_handler(lambda: presses.append("press"))

    for _ in range(2):
        button.drive_low()  # pressed: pulled-up pin shorted to ground
        button.drive_high()

    assert presses == ["press", "press"]
    signals.set_override_handler(None)
    button.drive_low()
    button.drive_high()
    assert presses == ["press", "press"]


def test_override_handler_may_open_the_gate(
    factory: Any, relay_pin: Any, make_signals: Callable[..., GpiozeroSignals]
) -> None:
    signals = make_signals(relay_pulse_ms=HOLD_MS)
    signals.set_override_handler(signals.allow)

    factory.pin(BUTTON).drive_low()

    assert not relay_pin.state
    factory.pin(BUTTON).drive_high()
    wait_until(lambda: relay_pin.state)


def test_failing_override_handler_is_logged_and_the_button_keeps_working(
    factory: Any, make_signals: Callable[..., GpiozeroSignals], caplog: pytest.LogCaptureFixture
) -> None:
    button = factory.pin(BUTTON)
    calls: list[int] = []

    def handler() -> None:
        calls.append(1)
        raise RuntimeError("store unavailable")

    signals = make_signals()
    signals.set_override_handler(handler)

    with caplog.at_level(logging.ERROR, logger="gate_controller.gpio"):
        button.drive_low()
        button.drive_high()
        button.drive_low()
        button.drive_high()

    assert calls == [1, 1]
    assert [r.getMessage() for r in caplog.records] == ["override handler failed"] * 2


def test_concurrent_scans_and_overrides_leave_the_relay_inactive_after_close(
    factory: Any, relay_pin: Any, make_signals: Callable[..., GpiozeroSignals]
) -> None:
    signals = make_signals(relay_pulse_ms=10, light_ms=10)
    signals.set_override_handler(signals.allow)
    button = factory.pin(BUTTON)
    errors: list[BaseException] = []

    def scan_loop(warning: bool) -> None:
        try:
            for i in range(30):
                if i % 3:
                    signals.allow(warning=warning)
                else:
                    signals.deny()
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=scan_loop, args=(w,)) for w in (False, True)]
    for worker in workers:
        worker.start()
    for _ in range(10):
        button.drive_low()
        button.drive_high()
    for worker in workers:
        worker.join()
    signals.close()

    assert errors == []
    assert relay_pin.state


def test_gpiozero_signals_satisfies_the_gate_signals_port(
    make_signals: Callable[..., GpiozeroSignals],
) -> None:
    signals: GateSignals = make_signals()
    signals.set_fault(False)


def test_module_example_runs() -> None:
    result = doctest.testmod(gate_controller.gpio)
    assert result.attempted > 0
    assert result.failed == 0


# -- pin settings -------------------------------------------------------------


def test_default_timings_with_the_deploy_wiring_validate() -> None:
    pins = PinConfig(relay=23, green=17, red=27, buzzer=22, button=24, status=25)
    assert pins.validate() == []


@pytest.mark.parametrize("spelling", [17, "17", "GPIO17", "gpio17", "BCM17", "BOARD11", "J8:11"])
def test_every_spelling_of_a_pin_normalises_to_one_name(spelling: int | str) -> None:
    assert normalise_pin(spelling) == "GPIO17"


def test_validation_catches_one_pin_used_twice_under_different_spellings() -> None:
    pins = PinConfig(relay=17, green="GPIO17", red="bcm17", buzzer="BOARD11", status=" 17 ")

    problems = pins.validate()

    assert len(problems) == 4
    assert all("already used as the relay pin" in p for p in problems)
    assert [p.split(":")[0] for p in problems] == ["green", "red", "buzzer", "status"]


def test_validation_lists_missing_required_pins_only() -> None:
    problems = PinConfig(green=27).validate()

    assert problems == [
        "relay: no pin set; the gate needs a relay pin",
        "red: no pin set; the gate needs a red pin",
    ]


def test_validation_rejects_non_gpio_pins_and_nonsense() -> None:
    problems = wiring(button="GND", status="GPIO99", buzzer=True).validate()

    assert [p.split(":")[0] for p in problems] == ["buzzer", "button", "status"]
    assert "not a GPIO" in problems[1]


def test_validation_rejects_durations_in_the_wrong_units() -> None:
    problems = wiring(relay_pulse_ms=1.5, light_ms=0, button_bounce_ms=5_000).validate()

    assert [p.split(":")[0] for p in problems] == [
        "relay_pulse_ms",
        "light_ms",
        "button_bounce_ms",
    ]


def test_validation_rejects_a_deny_beep_no_longer_than_the_allow_beep() -> None:
    problems = wiring(beep_ms=100, long_beep_ms=100).validate()

    assert len(problems) == 1
    assert problems[0].startswith("long_beep_ms:")


def test_active_high_relay_on_a_pin_pulled_high_at_boot_is_rejected() -> None:
    assert wiring(relay=4, relay_active_high=True).validate()[0].startswith("relay: GPIO4")
    assert wiring(relay=4, relay_active_high=False).validate() == []


# -- pin factory --------------------------------------------------------------


def test_auto_backend_off_a_pi_simulates_pins_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = tmp_path / "model"
    model.write_bytes(b"QEMU Virtual Machine\x00")

    with caplog.at_level(logging.DEBUG, logger="gate_controller.pins"):
        pin_factory = make_pin_factory("auto", model_path=model)
    pin_factory.close()

    assert isinstance(pin_factory, MockFactory)
    assert len(caplog.records) == 1
    assert "simulated" in caplog.records[0].getMessage()


def test_auto_backend_without_a_model_file_simulates_pins(tmp_path: Path) -> None:
    pin_factory = make_pin_factory("auto", model_path=tmp_path / "missing")
    pin_factory.close()
    assert isinstance(pin_factory, MockFactory)


@pytest.mark.skipif(LGPIO_INSTALLED, reason="lgpio is installed here")
def test_auto_backend_on_a_pi_without_lgpio_warns_with_the_install_hint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")

    with caplog.at_level(logging.DEBUG, logger="gate_controller.pins"):
        pin_factory = make_pin_factory("auto", model_path=model)
    pin_factory.close()

    assert isinstance(pin_factory, MockFactory)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "sudo apt install python3-lgpio" in record.getMessage()


@pytest.mark.skipif(LGPIO_INSTALLED, reason="lgpio is installed here")
def test_lgpio_backend_without_lgpio_says_how_to_install_it() -> None:
    with pytest.raises(PinFactoryError, match="sudo apt install python3-lgpio"):
        make_pin_factory("lgpio")


def test_mock_backend_gives_a_mock_factory() -> None:
    pin_factory = make_pin_factory("mock")
    pin_factory.close()
    assert isinstance(pin_factory, MockFactory)


def test_the_model_is_read_without_its_trailing_nul(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert board_model(model) == "Raspberry Pi 5 Model B Rev 1.0"
    assert is_raspberry_pi(model)
    assert board_model(tmp_path / "missing") == ""
    assert not is_raspberry_pi(tmp_path / "missing")


@pytest.mark.parametrize(
    ("backend", "model", "because", "door_stays_shut"),
    [
        ("mock", b"Raspberry Pi 5 Model B Rev 1.0\x00", 'pins.backend is "mock"', True),
        (
            "auto",
            b"Raspberry Pi 4 Model B Rev 1.4\x00",
            "Raspberry Pi 4 Model B Rev 1.4 has no lgpio",
            True,
        ),
        ("auto", b"QEMU Virtual Machine\x00", "not a Raspberry Pi (QEMU Virtual Machine)", False),
        ("mock", b"QEMU Virtual Machine\x00", 'pins.backend is "mock"', False),
    ],
)
def test_simulated_pins_say_why_and_never_not_a_pi_on_a_pi(
    tmp_path: Path, backend: str, model: bytes, because: str, door_stays_shut: bool
) -> None:
    path = tmp_path / "model"
    path.write_bytes(model)

    line = why_pins_are_simulated(backend, model_path=path)

    vi, en = line.split(" / pins are simulated: ")
    assert vi.startswith("chân GPIO được mô phỏng: ")
    assert because in en
    assert "\n" not in line
    assert ("the door will not open" in line) == door_stays_shut
    if door_stays_shut:
        assert "not a Raspberry Pi" not in line


class _BrokenChip:
    """An lgpio factory whose chip cannot be opened, with lgpio's multi-line message."""

    def __init__(self) -> None:
        raise OSError("can not open gpiochip\n  (no such file)")


def test_a_gpio_chip_that_cannot_be_opened_is_a_one_line_error() -> None:
    with pytest.raises(PinFactoryError) as raised:
        pins_module._lgpio_factory(_BrokenChip)
    message = str(raised.value)
    assert "\n" not in message
    assert "can not open gpiochip (no such file)" in message
    assert "'gpio' group" in message


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(PinFactoryError, match="auto, lgpio, mock"):
        make_pin_factory("rpigpio")
