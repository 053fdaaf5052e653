"""The gate's outputs and inputs on GPIO, through gpiozero.

This package knows nothing of codes, policies or databases: the scanner
tells it what to show through :class:`GateSignals`.

The pieces: :class:`PinConfig` (where things are wired, validated before any
pin is touched), :func:`make_pin_factory` (real lgpio pins or gpiozero's
simulated ones) and :class:`GpiozeroSignals` (the adapter itself).
"""

from typing import TYPE_CHECKING, Any

from gate_controller.errors import (
    GateControllerError,
    PinConfigError,
    PinFactoryError,
    SignalsClosed,
)

if TYPE_CHECKING:
    from gate_controller.base import GateSignals
    from gate_controller.gpio import BeepPattern, GpiozeroSignals, beep_pattern
    from gate_controller.pins import (
        BACKENDS,
        PinConfig,
        board_model,
        is_raspberry_pi,
        make_pin_factory,
        normalise_pin,
        why_pins_are_simulated,
    )

_LAZY = {
    "GateSignals": "base",
    "BeepPattern": "gpio",
    "GpiozeroSignals": "gpio",
    "beep_pattern": "gpio",
    "BACKENDS": "pins",
    "PinConfig": "pins",
    "board_model": "pins",
    "is_raspberry_pi": "pins",
    "make_pin_factory": "pins",
    "normalise_pin": "pins",
    "why_pins_are_simulated": "pins",
}
"""Names loaded with their module on first use: the settings need PinConfig,
not gpiozero (which gate_controller.gpio imports)."""


def __getattr__(name: str) -> Any:
    import importlib

    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "BACKENDS",
    "BeepPattern",
    "GateControllerError",
    "GateSignals",
    "GpiozeroSignals",
    "PinConfig",
    "PinConfigError",
    "PinFactoryError",
    "SignalsClosed",
    "beep_pattern",
    "board_model",
    "is_raspberry_pi",
    "make_pin_factory",
    "normalise_pin",
    "why_pins_are_simulated",
]
