"""What is wrong at the gate now: the camera, the decoder or the store.

One fault at a time is shown (the store first: with it, every code is
refused), on the status light's fault pattern and in the health row the
dashboard and the gate screen read. Each change is logged once; a decoder
that keeps throwing, or a store that stays down, is reminded of on a slow
cadence so the journal does not fill up.

A camera fault that outlasts ``camera_fault_exit_s``, or a camera the source
says only a new process can free, is hopeless here: :attr:`Faults.gave_up`
says why, the scan loop stops feeding the watchdog and returns, and
``gatekiosk run`` exits non-zero so that systemd restarts the kiosk with a
fresh camera driver (a hung libcamera, a camera denied by a device policy
resolved before its driver loaded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from gate_controller.base import GateSignals
from kiosk.clock import Clock
from kiosk.errors import StoreError
from kiosk.every import Every
from kiosk.health import HealthReport
from kiosk.scan_settings import ScanSettings
from kiosk.store import Store

if TYPE_CHECKING:
    from kiosk.camera import FrameSource

log = logging.getLogger(__name__)


class Faults:
    """The gate's faults, the fault pattern that shows them, and the health row.

    Not thread-safe by itself: the scanner calls it from the scan thread, and
    from the override handler with its lock held.
    """

    def __init__(
        self,
        *,
        source: FrameSource,
        decoder_name: str,
        pin_backend: str,
        store: Store,
        signals: GateSignals,
        clock: Clock,
        settings: Callable[[], ScanSettings],
    ) -> None:
        """``settings`` gives the scanner's current settings; the cadences
        (``store_probe_s``, ``store_fault_reminder_s``,
        ``decoder_log_every_s``, the health row's) are taken from them now."""
        self._source = source
        self._decoder_name = decoder_name
        self._signals = signals
        self._clock = clock
        start = settings()
        self.health = HealthReport(
            source=source,
            decoder_name=decoder_name,
            pin_backend=pin_backend,
            store=store,
            clock=clock,
            settings=settings,
        )
        self._camera = False
        self._decoder = False
        self._store = False
        self.store_cause = ""
        """The last StoreError's message while the store is at fault, else empty."""
        self._store_since_mono: float | None = None
        self.store_probe = Every(start.store_probe_s, clock.monotonic)
        """When to try the database again while it is at fault (from the end of a try)."""
        self._store_reminder = Every(start.store_fault_reminder_s, clock.monotonic)
        self._decoder_log = Every(start.decoder_log_every_s, clock.monotonic)
        self._decoder_failed_frames = 0  # frames the decoder threw on since it last worked
        self._camera_exit_s = start.camera_fault_exit_s
        self._camera_since_mono: float | None = None  # when the camera fault began
        self.gave_up: str | None = None
        """Why the gate cannot go on in this process (a hopeless camera), else None."""

    @property
    def fault(self) -> str | None:
        if self._store:
            return "store"
        if self._camera:
            return "camera"
        if self._decoder:
            return "decoder"
        return None

    @property
    def store_faulted(self) -> bool:
        return self._store

    # -- the camera and the decoder ------------------------------------------

    def frame_arrived(self, captured_mono: float) -> None:
        """Count a delivered frame for the health row's frame rate and age."""
        self.health.rate.note(captured_mono)

    @property
    def fps(self) -> float:
        return self.health.rate.fps

    def set_camera(self, fault: bool) -> None:
        """The camera delivers (False) or reports that it fails (True), once
        per step of the loop; gives up on it (see :attr:`gave_up`) after
        ``camera_fault_exit_s`` of continuous fault, or at once when the
        source says only a new process can free it."""
        now = self._clock.monotonic()
        if not fault:
            self._camera_since_mono = None
        else:
            if self._camera_since_mono is None:
                self._camera_since_mono = now
            self._give_up_if_hopeless(now - self._camera_since_mono)
        if fault == self._camera:
            return
        self._camera = fault
        state = self._source.state
        if fault:
            log.warning("camera %s not delivering: %s", state.name, state.detail)
        else:
            log.info("camera %s delivering again", state.name)
        self._refresh()

    def _give_up_if_hopeless(self, fault_s: float) -> None:
        if self.gave_up is not None:
            return
        state = self._source.state
        if state.restart_needed:
            reason = f"camera {state.name} cannot be freed in this process: {state.detail}"
        elif self._camera_exit_s is not None and fault_s >= self._camera_exit_s:
            reason = f"camera {state.name} at fault for {fault_s:.0f} s: {state.detail}"
        else:
            return
        self.gave_up = reason
        log.error("%s; stopping so that the service restarts with a fresh camera driver", reason)

    def decoder_failed(self, frame_index: int) -> None:
        """Called from the ``except`` block around the decoder: the fault
        shows from the first frame it throws on until it decodes one again;
        the traceback is logged at most every ``decoder_log_every_s``, so one
        throwing on every frame (15 a second) does not fill the journal."""
        self._decoder_failed_frames += 1
        if self._decoder_log.tick():
            log.exception(
                "decoder %s failed on frame %d (%d frames in a row); "
                "fault shown until it decodes again",
                self._decoder_name,
                frame_index,
                self._decoder_failed_frames,
            )
        else:
            log.debug("decoder %s failed on frame %d", self._decoder_name, frame_index)
        if not self._decoder:
            self._decoder = True
            self._refresh()

    def decoder_works(self) -> None:
        if not self._decoder:
            return
        log.info(
            "decoder %s decoding again after %d failed frames",
            self._decoder_name,
            self._decoder_failed_frames,
        )
        self._decoder = False
        self._decoder_failed_frames = 0
        self._refresh()

    # -- the store ------------------------------------------------------------

    def set_store(self, fault: bool, cause: str = "") -> None:
        """Turn the store fault (and with it the fault pattern) on or off,
        saying so once per change; ``cause`` is the StoreError's message."""
        if fault and cause:
            self.store_cause = cause
        if fault == self._store:
            return
        self._store = fault
        now = self._clock.monotonic()
        if fault:
            self._store_since_mono = now
            self.store_probe.mark()  # the next try in store_probe_s
            self._store_reminder.mark()
            # The cause is in the caller's log line, just before this one.
            log.error(
                "store fault: the gate refuses every code until the database works again "
                "(tried every %.0f s); the override button still opens the door",
                self.store_probe.seconds,
            )
        else:
            self.store_cause = ""
            log.info(
                "the database works again after %.1f s: store fault cleared",
                self._store_fault_s(now),
            )
        self._refresh()

    def store_still_failing(self, exc: StoreError, *, overrides_waiting: int) -> None:
        """A try at the database failed again: remind the log every
        ``store_fault_reminder_s``."""
        self.store_cause = str(exc)
        if not self._store_reminder.tick():
            log.debug("database still failing: %s", exc)
            return
        log.warning(
            "database still failing after %.0f s: %s; the gate refuses every code; "
            "%d override(s) waiting to be recorded",
            self._store_fault_s(self._clock.monotonic()),
            exc,
            overrides_waiting,
        )

    def _store_fault_s(self, now_mono: float) -> float:
        since = self._store_since_mono
        return now_mono - since if since is not None else 0.0

    # -- showing them -----------------------------------------------------------

    def _refresh(self) -> None:
        """Show the fault pattern, or ready, as :attr:`fault` says, and tell the
        dashboard and the gate screen now rather than at the next routine
        health write (both when a fault starts and when it clears)."""
        self._signals.set_fault(self.fault is not None)
        self.tick()

    def tick(self) -> None:
        """Write the health row if it is due (see :meth:`HealthReport.maybe_write`)."""
        if not self.health.maybe_write(self.fault, store_faulted=self._store):
            self.set_store(True)

    def write_health(self) -> None:
        """Write the health row now (on the way out)."""
        if not self.health.write(self.fault, store_faulted=self._store):
            self.set_store(True)
