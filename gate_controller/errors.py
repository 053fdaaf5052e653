"""Errors the gate controller raises on purpose.

This package must not import :mod:`kiosk` (dependencies point the other way),
so it has its own small base, :class:`GateControllerError`. The composition
root catches it alongside ``kiosk.errors.GateError``.
"""

from __future__ import annotations


class GateControllerError(Exception):
    """Base of every error :mod:`gate_controller` raises on purpose."""


class PinConfigError(GateControllerError):
    """The pin settings are unusable; ``problems`` lists every problem found.

    Each problem starts with the :class:`~gate_controller.pins.PinConfig` field
    it concerns (``"relay: ..."``) so a config loader can map it back to its
    own setting names and report everything in one start-up error.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid pin settings:\n" + "\n".join(f"  - {p}" for p in problems))


class PinFactoryError(GateControllerError):
    """The requested GPIO backend cannot be used; the message says how to fix it."""


class SignalsClosed(GateControllerError):
    """The gate signals were used after :meth:`close`; their pins are released."""
