"""The gate's outputs and inputs on GPIO, through gpiozero.

This package knows nothing of codes, policies or databases: the scanner
tells it what to show through :class:`GateSignals`.

The pieces: :class:`PinConfig` (where things are wired, validated before any
pin is touched), :func:`make_pin_factory` (real lgpio pins or gpiozero's
simulated ones) and :class:`GpiozeroSignals` (the adapter itself).
"""

from gate_controller.base import GateSignals
from gate_controller.errors import (
    GateControllerError,
    PinConfigError,
    PinFactoryError,
    SignalsClosed,
)
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
