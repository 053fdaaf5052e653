"""Which GPIO pins the gate uses, checked before any pin is touched, and the
choice of pin factory (real ``lgpio`` pins or gpiozero's simulated ones).

Pins are named the way gpiozero names them, all meaning the same header pin:
``17``, ``"17"``, ``"GPIO17"``, ``"BCM17"`` (Broadcom numbers), ``"BOARD11"``
or ``"J8:11"`` (physical position on the 40-pin header). A bare number is
always a Broadcom (BCM) number, never a physical position. Names are
case-insensitive here, and :func:`normalise_pin` turns every spelling into
gpiozero's canonical ``"GPIO17"`` so that two spellings of one pin are caught
as a clash.

The default wiring of the kiosk's settings (``kiosk.config``), used in the
examples here; every pin is a setting and nothing in this package assumes it::

    role     BCM     header pin   notes
    relay    GPIO23  16           relay board IN (most boards: active-low)
    green    GPIO17  11           LED + 330 Ω to GND
    red      GPIO27  13           LED + 330 Ω to GND
    buzzer   GPIO22  15           active buzzer (+) ; (-) to GND
    button   GPIO24  18           push button to GND (internal pull-up)
    status   GPIO25  22           LED + 330 Ω to GND
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from gate_controller.errors import PinConfigError, PinFactoryError

log = logging.getLogger(__name__)

PinName = int | str
"""A BCM number or any pin name gpiozero accepts (see the module docstring)."""

PI_MODEL_PATH = Path("/proc/device-tree/model")
"""The device-tree model string; on a Pi it reads e.g. ``Raspberry Pi 4 Model B Rev 1.4``."""

PI_MODEL_PATHS = (PI_MODEL_PATH, Path("/sys/firmware/devicetree/base/model"))
"""Where the model is read when no path is given: ``/proc/device-tree`` is a
link to the second, and may be missing where /proc is a container's own."""

BACKENDS = ("auto", "lgpio", "mock")
"""Accepted values of the GPIO backend setting, see :func:`make_pin_factory`."""

LGPIO_INSTALL_HINT = (
    "sudo apt install python3-lgpio (and create the virtualenv with "
    "--system-site-packages so it can import the system package)"
)

# Pins the gate cannot work without, then the optional ones (None = not wired).
_REQUIRED_PINS = ("relay", "green", "red")
_OPTIONAL_PINS = ("buzzer", "button", "status")

# Inclusive limits in milliseconds. They are wide on purpose: they catch
# seconds typed into a millisecond field (1.5, 2) and runaway values, not
# taste. Below ~200 ms most door strikes will not even release.
_DURATION_LIMITS_MS: dict[str, tuple[int, int]] = {
    "relay_pulse_ms": (10, 60_000),
    "light_ms": (10, 60_000),
    "beep_ms": (10, 2_000),
    "long_beep_ms": (10, 5_000),
    "button_bounce_ms": (0, 1_000),
}

# On the BCM2835..BCM2711 (Pi 1-4) GPIO0-8 come out of reset pulled high
# (GPIO2/3 even through fixed 1.8 kΩ resistors), so a relay that is energised
# by a high level on one of them would click on at every boot and whenever
# the kiosk is not running.
_BOOT_HIGH_PINS = frozenset(f"GPIO{n}" for n in range(9))


@dataclass(frozen=True, kw_only=True)
class PinConfig:
    """Where the gate's lights, buzzer, relay and buttons are wired, and timings.

    ``relay``, ``green`` and ``red`` are required; ``buzzer``, ``button`` and
    ``status`` may be ``None`` when not fitted. Pins have no defaults here:
    they come from the site's configuration (see the module docstring for
    the default wiring). Call :meth:`validate`
    before building anything from it.

    ``relay``
        The relay board's ``IN`` pin. Power the board from 5 V and GND on the
        header; the door strike goes on the relay's ``COM`` and ``NO``
        (normally open) terminals so that a de-energised relay, an unplugged
        Pi or a crashed kiosk keeps the door locked (fail-secure). Use ``NC``
        only for a fail-safe magnetic lock that must release on power loss,
        and then think twice.
    ``relay_active_high``
        Most cheap relay boards (blue SRD-05VDC boards with an optocoupler,
        "low level trigger") are **active-low**: the relay pulls in when
        ``IN`` is driven low. That is the default, ``False``. Set ``True``
        only for boards marked "high level trigger". A wrong value opens the
        door permanently at start-up, so check with the board's own LED.
    ``green``, ``red``, ``status``
        LEDs wired active-high: GPIO pin to a 330 Ω resistor to the anode
        (long leg), cathode (short leg, flat side) to GND. ``status`` is the
        ready/fault indicator: steady when ready, fast blink on fault.
    ``buzzer``, ``buzzer_active_high``
        An *active* buzzer (it sounds on DC; a passive one only clicks).
        Bare buzzers and KY-012 style modules are active-high (the default);
        3-pin modules with a PNP transistor are usually active-low.
    ``button``, ``button_bounce_ms``
        The guard's override push button, between the pin and GND; the pin's
        internal pull-up holds it high, so a press reads low. Contact bounce
        shorter than ``button_bounce_ms`` is ignored (0 disables the filter).
    ``relay_pulse_ms``
        How long the relay stays energised per admission.
    ``light_ms``
        How long green (allow) or red (deny) stays lit.
    ``beep_ms``, ``long_beep_ms``
        Short beep (allow: one, allow with warning: two) and long beep
        (deny: one). The long beep must be longer, or deny sounds like allow.
    """

    relay: PinName | None = None
    green: PinName | None = None
    red: PinName | None = None
    buzzer: PinName | None = None
    button: PinName | None = None
    status: PinName | None = None
    relay_active_high: bool = False
    buzzer_active_high: bool = True
    relay_pulse_ms: int = 1500
    light_ms: int = 1500
    beep_ms: int = 120
    long_beep_ms: int = 700
    button_bounce_ms: int = 50

    def validate(self) -> list[str]:
        """Every problem with these settings, ``[]`` when usable.

        Each string starts with the field name and a colon. Checks: required
        pins present, every pin a real GPIO on the 40-pin header, no pin used
        twice under any spelling, an active-high relay not on a pin pulled
        high at boot, durations whole milliseconds within sane limits, and
        booleans really booleans.
        """
        problems: list[str] = []
        used: dict[str, str] = {}  # canonical name -> first role using it
        for role in (*_REQUIRED_PINS, *_OPTIONAL_PINS):
            value = getattr(self, role)
            if value is None:
                if role in _REQUIRED_PINS:
                    problems.append(f"{role}: no pin set; the gate needs a {role} pin")
                continue
            try:
                name = normalise_pin(value)
            except ValueError as exc:
                problems.append(f"{role}: {exc}")
                continue
            if name in used:
                spelled = name if str(value) == name else f"{value!r} ({name})"
                problems.append(f"{role}: {spelled} is already used as the {used[name]} pin")
                continue
            used[name] = role
            if role == "relay" and self.relay_active_high is True and name in _BOOT_HIGH_PINS:
                problems.append(
                    f"relay: {name} is pulled high while the Pi boots, which would energise "
                    "an active-high relay before the kiosk starts; use one of GPIO9-GPIO27"
                )

        for flag in ("relay_active_high", "buzzer_active_high"):
            if not isinstance(getattr(self, flag), bool):
                problems.append(f"{flag}: must be true or false, not {getattr(self, flag)!r}")

        durations_ok = True
        for field_name, (low, high) in _DURATION_LIMITS_MS.items():
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(
                    f"{field_name}: must be a whole number of milliseconds, not {value!r}"
                )
                durations_ok = False
            elif not low <= value <= high:
                problems.append(f"{field_name}: {value} ms is outside {low}..{high} ms")
                durations_ok = False
        if durations_ok and self.long_beep_ms <= self.beep_ms:
            problems.append(
                f"long_beep_ms: {self.long_beep_ms} ms must be longer than beep_ms "
                f"({self.beep_ms} ms), or the deny beep sounds like the allow beep"
            )
        return problems

    def check(self) -> None:
        """Raise :class:`PinConfigError` listing every problem, if there are any."""
        problems = self.validate()
        if problems:
            raise PinConfigError(problems)

    def wired_pins(self) -> dict[str, str]:
        """Role -> canonical gpiozero name (``"GPIO17"``) for every wired pin.

        Raises :class:`PinConfigError` if the settings do not validate, so the
        caller never drives a pin from a half-checked configuration.
        """
        self.check()
        roles = (*_REQUIRED_PINS, *_OPTIONAL_PINS)
        return {
            role: normalise_pin(getattr(self, role))
            for role in roles
            if getattr(self, role) is not None
        }


@cache
def _header() -> Any:
    # gpiozero's own description of the 40-pin header (Pi 3B, revision
    # a02082). GPIO numbering and header positions are the same on every
    # 40-pin Pi, so this needs no hardware and no pin factory.
    from gpiozero.pins.pi import PiBoardInfo

    return PiBoardInfo.from_revision(0xA02082)


def normalise_pin(pin: PinName) -> str:
    """gpiozero's canonical name, e.g. ``"GPIO17"``, for any spelling of a GPIO pin.

    Raises :class:`ValueError` with a readable reason for anything that is
    not a GPIO on the 40-pin header: unknown names, power and ground pins,
    booleans and floats (a ``True`` would otherwise silently mean GPIO1).
    """
    if isinstance(pin, bool) or not isinstance(pin, int | str):
        raise ValueError(
            f"{pin!r} is not a pin; use a BCM number such as 17 or a name such as 'GPIO17'"
        )
    key: PinName = pin.strip().upper() if isinstance(pin, str) else pin
    matches = list(_header().find_pin(key))
    if not matches:
        raise ValueError(
            f"{pin!r} is not a pin on the 40-pin header; use a BCM number (0-27), "
            "'GPIO17', 'BCM17' or 'BOARD11'"
        )
    _, info = matches[0]
    if "gpio" not in info.interfaces:
        raise ValueError(f"{pin!r} is a {info.name} pin, not a GPIO")
    return str(info.name)


def board_model(model_path: Path | None = None) -> str:
    """The board's device-tree model (``"Raspberry Pi 5 Model B Rev 1.0"``), or ``""``.

    Read from ``model_path``, or from the first of :data:`PI_MODEL_PATHS` that exists.
    """
    for path in PI_MODEL_PATHS if model_path is None else (model_path,):
        try:
            return path.read_bytes().rstrip(b"\0").decode("utf-8", "replace").strip()
        except OSError:
            continue
    return ""


def is_raspberry_pi(model_path: Path | None = None) -> bool:
    """Whether the device-tree model (see :func:`board_model`) names a Raspberry Pi."""
    return "Raspberry Pi" in board_model(model_path)


def why_pins_are_simulated(backend: str, *, model_path: Path | None = None) -> str:
    """The one line to show when :func:`make_pin_factory` gave simulated pins, and why.

    Vietnamese first, English second: a guard or installer reads it. On a
    Raspberry Pi it never says "not a Raspberry Pi": there the reason is the
    setting or the missing lgpio, and the door will not open.
    """
    model = board_model(model_path)
    if backend == "mock":
        vi, en = 'pins.backend = "mock" trong cấu hình', 'pins.backend is "mock" in the settings'
    elif "Raspberry Pi" in model:
        vi = f"{model} nhưng thiếu thư viện lgpio"
        en = f"this {model} has no lgpio library ({LGPIO_INSTALL_HINT})"
    else:
        vi, en = (
            "không phải Raspberry Pi",
            f"not a Raspberry Pi ({model or 'no device-tree model'})",
        )
    door = ""
    if "Raspberry Pi" in model:
        door = " — cửa sẽ không mở / the door will not open"
    return f"chân GPIO được mô phỏng: {vi} / pins are simulated: {en}{door}"


def make_pin_factory(backend: str = "auto", *, model_path: Path | None = None) -> Any:
    """The gpiozero pin factory for ``backend``; pass it as ``pin_factory=`` to devices.

    ``"lgpio"``
        Real pins through lgpio (Pi 1-5, Raspberry Pi OS Bookworm and later).
        Raises :class:`PinFactoryError` with the install command if lgpio is
        missing, or the reason if the GPIO chip cannot be opened.
    ``"mock"``
        gpiozero's :class:`~gpiozero.pins.mock.MockFactory`: simulated pins
        with state history, for tests and ``gatekiosk demo``.
    ``"auto"``
        ``lgpio`` on a Raspberry Pi (by :func:`board_model`) when lgpio imports,
        otherwise the mock, announced by exactly one log line (a warning on a
        Pi, because there the door will not open).

    gpiozero's global ``Device.pin_factory`` is never set or read: the caller
    owns the factory, passes it to every device and closes it at exit.
    """
    if backend not in BACKENDS:
        raise PinFactoryError(
            f"unknown GPIO backend {backend!r}; choose one of {', '.join(BACKENDS)}"
        )
    if backend == "mock":
        return _mock_factory()
    if backend == "lgpio":
        return _lgpio_factory(_import_lgpio_factory())

    on_pi = is_raspberry_pi(model_path)
    factory_class = _import_lgpio_factory() if on_pi else None
    if factory_class is not None:
        return _lgpio_factory(factory_class)
    if on_pi:
        log.warning(
            "lgpio is not installed, so pins are simulated and the door will not open; "
            "install it with: %s",
            LGPIO_INSTALL_HINT,
        )
    else:
        log.info("not a Raspberry Pi (%r): pins are simulated", board_model(model_path))
    return _mock_factory()


def _mock_factory() -> Any:
    from gpiozero.pins.mock import MockFactory

    return MockFactory()


def _import_lgpio_factory() -> Any:
    """gpiozero's LGPIOFactory class, or None when the lgpio module is missing."""
    try:
        from gpiozero.pins.lgpio import LGPIOFactory
    except ImportError:
        return None
    return LGPIOFactory


def _lgpio_factory(factory_class: Any) -> Any:
    if factory_class is None:
        raise PinFactoryError(
            f"the lgpio GPIO backend needs the lgpio library: {LGPIO_INSTALL_HINT}"
        )
    try:
        return factory_class()
    except Exception as exc:  # lgpio.error, OSError, PinUnknownPi: all mean "no GPIO here"
        reason = " ".join(str(exc).split()) or type(exc).__name__  # one line for the CLI
        raise PinFactoryError(
            f"cannot open the GPIO chip with lgpio ({reason}); is this a Raspberry Pi "
            "and is the user in the 'gpio' group?"
        ) from exc
