"""The kiosk's health row: what the dashboard and the gate screen show about
the camera, the decoder, the pins, the clock and the current fault.

Written every ``health_every_s``, and soon after the fault changes, through
the one store the gate has; a failed write is the caller's store fault.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from kiosk.clock import Clock
from kiosk.errors import GateError
from kiosk.every import Every
from kiosk.scan_settings import ScanSettings
from kiosk.store import KioskHealth, Store

if TYPE_CHECKING:
    from kiosk.camera import FrameSource

log = logging.getLogger(__name__)

FPS_WINDOW_FRAMES = 60
"""Frames the frame rate is measured over (about 4 s at 15 fps)."""


class FrameRate:
    """Frames delivered, and how fast, over the last :data:`FPS_WINDOW_FRAMES`."""

    def __init__(self) -> None:
        self.frames = 0
        self.last_mono: float | None = None
        self._window: list[float] = []

    def note(self, captured_mono: float) -> None:
        self.frames += 1
        self.last_mono = captured_mono
        self._window.append(captured_mono)
        if len(self._window) > FPS_WINDOW_FRAMES:
            del self._window[0]

    @property
    def fps(self) -> float:
        window = self._window
        if len(window) < 2 or window[-1] <= window[0]:
            return 0.0
        return (len(window) - 1) / (window[-1] - window[0])


class HealthReport:
    """Writes the health row on its cadence; see :meth:`maybe_write`."""

    def __init__(
        self,
        *,
        source: FrameSource,
        decoder_name: str,
        pin_backend: str,
        store: Store,
        clock: Clock,
        settings: Callable[[], ScanSettings],
    ) -> None:
        """``settings`` gives the scanner's current settings (the gate id
        may change while it runs)."""
        self._source = source
        self._decoder_name = decoder_name
        self._pin_backend = pin_backend
        self._store = store
        self._clock = clock
        self._settings = settings
        start = settings()
        self.rate = FrameRate()
        self._routine = Every(start.health_every_s, clock.monotonic)
        self._change = Every(start.health_min_gap_s, clock.monotonic)
        self._written_fault: str | None = None  # the fault in the last row written

    def maybe_write(self, fault: str | None, *, store_faulted: bool) -> bool:
        """Write the row every ``health_every_s``, and as soon as ``fault``
        differs from the one last written (such writes at most every
        ``health_min_gap_s``; a change held back by that is written by a
        later call). Not at once while the store is at fault: that write
        would fail too, after waiting out the busy timeout with the loop held.
        False when a write was tried and failed."""
        if self._routine.tick():
            return self.write(fault, store_faulted=store_faulted)
        if fault != self._written_fault and not store_faulted and self._change.tick():
            self._routine.mark()
            return self.write(fault, store_faulted=store_faulted)
        return True

    def write(self, fault: str | None, *, store_faulted: bool) -> bool:
        """Write the row now; False when the store refused it."""
        now = self._clock.now()
        last_frame_at = None
        if self.rate.last_mono is not None:
            age_s = self._clock.monotonic() - self.rate.last_mono
            last_frame_at = now - timedelta(seconds=max(0.0, age_s))
        state = self._source.state
        health = KioskHealth(
            gate_id=self._settings().gate_id,
            updated_at=now,
            last_frame_at=last_frame_at,
            fps=round(self.rate.fps, 2),
            camera=state.name,
            camera_ok=state.ok,
            camera_detail=state.detail,
            decoder=self._decoder_name,
            pin_backend=self._pin_backend,
            clock_synced=self._clock.synchronised(),
            fault=fault,
        )
        # Marked written even if the write fails: a failing store is the
        # store fault, and is not retried every step.
        self._written_fault = fault
        try:
            self._store.write_health(health)
        except GateError as exc:
            # The message says it was the health row; during a store fault the
            # reminder already repeats the cause once a minute.
            (log.debug if store_faulted else log.warning)("%s", exc)
            return False
        return True
