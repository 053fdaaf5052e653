"""The gate's lights, buzzer, door relay and override button on GPIO, via gpiozero.

:class:`GpiozeroSignals` is the real :class:`~gate_controller.base.GateSignals`.
It drives whatever pin factory it is given, so the same class runs a real
gate (``make_pin_factory("lgpio")``) and the demo and tests (gpiozero's
``MockFactory``, whose pins keep a history of their states).

What the gate shows
-------------------
===================  ===========================  ==========================
call                 lights                       buzzer
===================  ===========================  ==========================
``allow()``          green for ``light_ms``       one short beep (``beep_ms``)
``allow(warning=)``  green for ``light_ms``       two short beeps
``deny()``           red for ``light_ms``         one long beep (``long_beep_ms``)
``set_fault(True)``  status blinks fast (0.1 s),  silent
                     red blinks slowly (0.5 s)
``set_fault(False)`` status steady (ready)        silent
===================  ===========================  ==========================

``allow()`` also pulses the relay for ``relay_pulse_ms``. A second ``allow()``
during a pulse restarts it (the relay stays energised throughout). A
``deny()`` during a pulse lets the pulse finish: the earlier visitor was
admitted and recorded, may be walking through, and the deny is about whoever
is at the camera now. While faulted, allow and deny still show green or red
for ``light_ms``, then the red slow blink resumes.

Fail-secure rules
-----------------
* The relay is the first device created, with ``initial_value=False`` and the
  configured ``active_high``, so the very first write to its pin is the
  inactive level (high, for the common active-low board).
* ``allow()`` energises the relay before anything else (decision-to-door
  latency) and, if anything after that raises (a light or the buzzer), turns
  the relay off again before the exception leaves ``allow()``.
* ``close()`` (and leaving a ``with`` block, and a failed construction)
  de-energises the relay first, then turns everything off and releases the
  pins. The relay is driven to its inactive level *before* its pin is
  released, because a released line may keep its last level.

Example, runnable on any machine::

    >>> from gpiozero.pins.mock import MockFactory
    >>> from gate_controller import GpiozeroSignals, PinConfig
    >>> factory = MockFactory()
    >>> pins = PinConfig(relay=23, green=17, red=27, buzzer=22, button=24, status=25)
    >>> with GpiozeroSignals(pins, pin_factory=factory) as gate:
    ...     gate.allow()              # returns with the relay already energised
    ...     factory.pin(23).state     # active-low relay board: low = energised
    ...     factory.pin(17).state     # green LED lit
    False
    True
    >>> factory.pin(23).state         # closed: relay released (high = off)
    True
    >>> factory.close()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal

from gpiozero import LED, Button, Buzzer, DigitalOutputDevice

from gate_controller.errors import PinConfigError, SignalsClosed
from gate_controller.pins import PinConfig

log = logging.getLogger(__name__)

# Fault pattern, (on, off) in seconds: a fast status blink reads as "broken",
# a slow red blink as "do not pass" without being mistaken for a deny.
FAULT_STATUS_BLINK_S = (0.1, 0.1)
FAULT_RED_BLINK_S = (0.5, 0.5)

BeepKind = Literal["allow", "warning", "deny"]


@dataclass(frozen=True)
class BeepPattern:
    """``count`` beeps of ``on_ms`` each, ``gap_ms`` of silence after each."""

    count: int
    on_ms: int
    gap_ms: int


def beep_pattern(pins: PinConfig, kind: BeepKind) -> BeepPattern:
    """The buzzer pattern for ``kind``: distinguishable by ear, by count and length.

    allow: one short beep; warning (allowed, but tell the guard): two short
    beeps; deny: one long beep.
    """
    if kind == "allow":
        return BeepPattern(count=1, on_ms=pins.beep_ms, gap_ms=pins.beep_ms)
    if kind == "warning":
        return BeepPattern(count=2, on_ms=pins.beep_ms, gap_ms=pins.beep_ms)
    return BeepPattern(count=1, on_ms=pins.long_beep_ms, gap_ms=pins.beep_ms)


class GpiozeroSignals:
    """Show decisions on GPIO: relay pulse, green/red light, buzzer, status LED.

    Wiring (the BCM numbers are the kiosk's defaults; all come from
    :class:`PinConfig`):

    * **Relay board** (GPIO23, header pin 16): ``VCC`` to 5 V (pin 2),
      ``GND`` to GND (pin 6), ``IN`` to the relay pin. Door strike on ``COM``/``NO`` so the
      door is locked whenever the relay is off. Most cheap boards are
      active-low (``relay_active_high=False``, the default).
    * **Green / red / status LEDs** (GPIO17 / 27 / 25): pin to a 330 Ω
      resistor to the anode (long leg); cathode (short leg, flat side) to GND.
    * **Buzzer** (GPIO22), optional: an active buzzer, ``+`` to the pin, ``-``
      to GND.
    * **Override button** (GPIO24), optional: one leg to the pin, the other
      to GND; the internal pull-up is used, so no resistor is needed.

    ``pin_factory`` is required and passed to every device; gpiozero's global
    default factory is never used. Constructing validates ``pins`` first
    (:class:`~gate_controller.errors.PinConfigError` lists every problem) and
    touches no pin if they are invalid.

    Thread-safety: :meth:`allow`, :meth:`deny`, :meth:`set_fault`,
    :meth:`set_relay_pulse_ms` and :meth:`close` may be called from any
    thread (the scan loop, the override handler on gpiozero's callback
    thread). One lock serialises them; the
    override handler is called *without* the lock held, so it may call
    :meth:`allow`.
    """

    def __init__(self, pins: PinConfig, *, pin_factory: Any) -> None:
        wired = pins.wired_pins()
        self._pins = pins
        self._lock = threading.Lock()
        self._closed = False
        self._fault = False
        self._handler: Callable[[], None] | None = None
        self._light_timer: threading.Timer | None = None
        self._light_token = 0
        # Output devices in creation order; the relay is first so that it is
        # driven inactive first and released first.
        self._outputs: list[Any] = []
        self._buzzer: Any = None
        self._status: Any = None
        self._button: Any = None
        try:
            self._relay: Any = self._add_output(
                DigitalOutputDevice(
                    wired["relay"],
                    active_high=pins.relay_active_high,
                    initial_value=False,
                    pin_factory=pin_factory,
                )
            )
            self._green: Any = self._add_output(LED(wired["green"], pin_factory=pin_factory))
            self._red: Any = self._add_output(LED(wired["red"], pin_factory=pin_factory))
            if "buzzer" in wired:
                self._buzzer = self._add_output(
                    Buzzer(
                        wired["buzzer"],
                        active_high=pins.buzzer_active_high,
                        initial_value=False,
                        pin_factory=pin_factory,
                    )
                )
            if "status" in wired:
                # Lit from the start: ready until told otherwise.
                self._status = self._add_output(
                    LED(wired["status"], initial_value=True, pin_factory=pin_factory)
                )
            if "button" in wired:
                self._button = Button(
                    wired["button"],
                    pull_up=True,
                    bounce_time=pins.button_bounce_ms / 1000 or None,
                    pin_factory=pin_factory,
                )
                self._button.when_pressed = self._button_pressed
        except BaseException:
            for release in (self._release_outputs, self._release_button):
                try:
                    release()
                except Exception:
                    log.exception("could not release GPIO after a failed start")
            raise
        log.info(
            "gate signals ready: %s (relay active-%s)",
            ", ".join(f"{role}={name}" for role, name in wired.items()),
            "high" if pins.relay_active_high else "low",
        )

    def __enter__(self) -> GpiozeroSignals:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def allow(self, *, warning: bool = False) -> None:
        """Energise the relay, then green light and the allow (or warning) beeps.

        Returns as soon as the relay pin is at its active level; the relay
        pulse (``relay_pulse_ms``), light and beeps end on background
        threads. If anything after the relay raises, the relay (then the green
        light) is turned off before the exception propagates: the visitor is
        not admitted and the guard can override.
        """
        with self._lock:
            self._check_open()
            try:
                self._relay.on()
                self._relay.blink(
                    on_time=self._pins.relay_pulse_ms / 1000, off_time=0, n=1, background=True
                )
                self._show_light(self._green, self._red)
                self._beep(beep_pattern(self._pins, "warning" if warning else "allow"))
            except BaseException:
                self._relay.off()
                self._green.off()  # do not show "go" for a door that stays shut
                raise
        log.debug("allow shown (warning=%s)", warning)

    def deny(self) -> None:
        """Red light and the deny beep; the relay is not touched.

        A relay pulse already running from an earlier :meth:`allow` is left
        to finish (see the module docstring for why).
        """
        with self._lock:
            self._check_open()
            self._show_light(self._red, self._green)
            self._beep(beep_pattern(self._pins, "deny"))
        log.debug("deny shown")

    def set_fault(self, fault: bool) -> None:
        """Fault pattern (status fast blink, red slow blink) on, or back to ready.

        Repeating the current state does nothing, so a loop may call this
        every iteration without restarting the blink.
        """
        with self._lock:
            self._check_open()
            if fault == self._fault:
                return
            self._fault = fault
            if self._status is not None:
                if fault:
                    self._status.blink(*FAULT_STATUS_BLINK_S, background=True)
                else:
                    self._status.on()
            if self._light_timer is None:  # no allow/deny light showing
                self._show_idle_red()
        if fault:
            log.warning("gate fault pattern on")
        else:
            log.info("gate ready")

    def set_relay_pulse_ms(self, relay_pulse_ms: int) -> None:
        """Hold the relay this long at every later :meth:`allow` (a manager
        changed it while the gate runs); a pulse already running keeps its length.

        Checked like :class:`PinConfig` checks it (whole milliseconds, within
        its limits): :class:`~gate_controller.errors.PinConfigError`
        otherwise, and the pulse stays as it was.
        """
        with self._lock:
            self._check_open()
            pins = replace(self._pins, relay_pulse_ms=relay_pulse_ms)
            problems = pins.validate()
            if problems:
                raise PinConfigError(problems)
            self._pins = pins
        log.info("relay pulse now %d ms", relay_pulse_ms)

    def set_override_handler(self, handler: Callable[[], None] | None) -> None:
        """Call ``handler`` on gpiozero's thread at each override button press.

        ``None`` disconnects. The handler runs without this object's lock, so
        it may call :meth:`allow`; an exception from it is logged (there is no
        caller on that thread to receive it) and the button keeps working.
        """
        with self._lock:
            if self._closed and handler is not None:
                raise SignalsClosed("the gate signals are closed")
            if self._button is None and handler is not None:
                log.info("no override button pin is set; the override handler will not be called")
            self._handler = handler

    def close(self) -> None:
        """De-energise the relay first, then turn everything off and release the pins.

        Idempotent. Pending light timers are cancelled; the pin factory is
        not closed (the caller owns it).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._handler = None
            timer = self._light_timer
            self._light_timer = None
        try:
            if timer is not None:
                timer.cancel()
            with self._lock:
                self._release_outputs()
        finally:
            # Outside the lock: a button callback blocked on the lock must be
            # able to finish while the button's event detection is torn down.
            self._release_button()
            if timer is not None:
                timer.join()
        log.info("gate signals closed; relay de-energised")

    # -- internals ----------------------------------------------------------

    def _add_output(self, device: Any) -> Any:
        self._outputs.append(device)
        return device

    def _check_open(self) -> None:
        if self._closed:
            raise SignalsClosed("the gate signals are closed")

    def _show_light(self, lit: Any, dark: Any) -> None:
        """Light ``lit`` for ``light_ms`` with ``dark`` off; then back to idle."""
        if self._light_timer is not None:
            self._light_timer.cancel()
        dark.off()
        lit.on()
        self._light_token += 1
        timer = threading.Timer(
            self._pins.light_ms / 1000, self._end_light, args=(self._light_token,)
        )
        timer.daemon = True
        self._light_timer = timer
        timer.start()

    def _end_light(self, token: int) -> None:
        with self._lock:
            if self._closed or token != self._light_token:
                return  # closed, or a newer allow/deny owns the lights now
            self._light_timer = None
            self._green.off()
            self._show_idle_red()

    def _show_idle_red(self) -> None:
        if self._fault:
            self._red.blink(*FAULT_RED_BLINK_S, background=True)
        else:
            self._red.off()

    def _beep(self, pattern: BeepPattern) -> None:
        if self._buzzer is None:
            return
        # The first write happens here, on the caller's thread, so a failing
        # buzzer raises in allow()/deny() rather than on a background thread.
        self._buzzer.on()
        self._buzzer.blink(
            on_time=pattern.on_ms / 1000,
            off_time=pattern.gap_ms / 1000,
            n=pattern.count,
            background=True,
        )

    def _button_pressed(self) -> None:
        with self._lock:
            handler = None if self._closed else self._handler
        if handler is None:
            log.info("override button pressed; no handler connected")
            return
        log.info("override button pressed")
        try:
            handler()
        except Exception:
            # gpiozero's callback thread is a boundary: nobody above us can
            # handle this, and the button must keep working.
            log.exception("override handler failed")

    def _release_outputs(self) -> None:
        """Each output off then closed, relay first; the first error is re-raised."""
        first_error: Exception | None = None
        for device in self._outputs:
            try:
                device.off()
            except Exception as exc:
                first_error = first_error or exc
            try:
                device.close()
            except Exception as exc:
                first_error = first_error or exc
        self._outputs.clear()
        if first_error is not None:
            raise first_error

    def _release_button(self) -> None:
        button, self._button = self._button, None
        if button is not None:
            button.close()
