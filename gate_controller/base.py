"""The port the scanner drives: what a gate can show and what a guard can press."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class GateSignals(Protocol):
    """What the scanner may ask of the gate's outputs, whatever drives them.

    The real adapter is :class:`gate_controller.gpio.GpiozeroSignals`; with
    gpiozero's ``MockFactory`` it is also the fake used by tests and the demo.
    """

    def allow(self, *, warning: bool = False) -> None:
        """Green light, the allow beep (a distinct one with ``warning``), and a
        relay pulse. Returns as soon as the relay is energised; the pulse and
        the light end on their own."""
        ...

    def deny(self) -> None:
        """Red light and the deny beep; the relay stays de-energised."""
        ...

    def set_fault(self, fault: bool) -> None:
        """Fault pattern on (camera or store lost) or back to ready."""
        ...

    def set_override_handler(self, handler: Callable[[], None] | None) -> None:
        """Call ``handler`` (from another thread) when the guard presses the
        override button."""
        ...

    def close(self) -> None:
        """De-energise the relay, turn everything off, release the pins."""
        ...
