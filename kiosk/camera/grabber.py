"""The live cameras' shared machinery: a grabber thread per connection that
keeps only the newest frame, stall detection, and reopening with backoff.

Camera faults, and the time budget the defaults are chosen for (the gate
must show the fault pattern within 2 s of a camera failing and scan again
within 5 s of it coming back):

- a read that fails or raises, or a device that vanishes (read returns
  nothing, open fails), wakes the waiting reader at once: ``read`` returns
  None with ``state.ok`` False, and the scan loop shows the fault;
- a read that blocks forever (a stall) is failed
  :data:`~kiosk.camera.base.STALL_TIMEOUT_S` after the last frame: the reader
  waits no longer than that deadline;
- a failed camera is reopened after :data:`~kiosk.camera.base.CAMERA_BACKOFF`,
  at most 2 s apart however long it has been gone, so a camera plugged back
  in is opened within 2 s, and delivering once it has opened;
- a connection stuck inside the driver is abandoned (a thread cannot be
  interrupted there); at most :data:`~kiosk.camera.base.MAX_STUCK_THREADS`
  such threads are left waiting, so a driver that never returns does not
  eat the process;
- where a new connection cannot open a camera the stuck one still holds
  (picamera2), the source is built with ``release_timeout_s``: the
  supervisor closes the abandoned device itself, from another thread, and
  reopens only once it is closed; a device not closed within that bound is
  held for the life of the process, and ``state.restart_needed`` says so
  (the kiosk then exits for systemd to restart it).

So ``read`` never raises because a camera failed; it returns None and
``state`` says why. :class:`~kiosk.camera.v4l2.V4l2Source` and
:class:`~kiosk.camera.picamera2.Picamera2Source` are built on it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from kiosk.camera.base import (
    MAX_STUCK_THREADS,
    STALL_MIN_FRAMES,
    START_TIMEOUT_S,
    Backoff,
    ClosingSource,
    Frame,
    SourceState,
    grey_problem,
    to_grey,
)
from kiosk.clock import Clock

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

log = logging.getLogger(__name__)

_WAKE_SLACK_S = 0.005
"""A reader waiting for a stall deadline wakes this much after it, so that the
clock has surely passed the deadline when it looks."""


class Device(Protocol):
    """One opened camera as the grabber thread sees it.

    ``read`` blocks until the next image (grey, BGR or BGRA ``uint8``) and
    returns None, or raises, when the device has failed. Only the grabber
    thread that opened a device touches it, ``close`` included -- except for
    a source built with ``release_timeout_s``, whose devices must accept
    ``close`` from another thread while ``read`` blocks, and a second
    ``close`` (which does nothing).
    """

    def read(self) -> npt.NDArray[np.uint8] | None: ...

    def close(self) -> None: ...


class GrabberSource(ClosingSource):
    """A live camera read by its own thread, of which only the newest frame is kept.

    Each connection is one thread: it opens the device (``open_device``,
    which may block or raise), reads until the device fails, and closes it.
    The consumer's ``read`` supervises: if no connection is alive and the
    backoff has passed, it starts a new one; if the live connection has shown
    no progress for too long on the clock -- ``stall_timeout_s`` since its last
    frame once it delivers, ``start_timeout_s`` to open and then to deliver its
    first frame -- it abandons it (the thread cannot be interrupted inside a
    driver call, so it closes its device whenever that call returns) and
    schedules a reopen. While ``max_stuck_threads`` abandoned threads are still
    inside the driver, no new connection is started. All waiting for frames is
    on a condition variable; all timing decisions use the clock, so a
    :class:`~kiosk.clock.FakeClock` drives them.

    Frames are converted to grey in ``read``, once per frame returned, not in
    the thread for every frame captured (a 30 fps webcam read at 10 fps).
    ``Frame.index`` counts frames captured since the source was opened, so a
    gap in the indices returned shows frames dropped for a slow consumer.
    """

    def __init__(
        self,
        *,
        name: str,
        open_device: Callable[[], Device],
        clock: Clock,
        stall_timeout_s: float,
        backoff: Backoff,
        start_timeout_s: float = START_TIMEOUT_S,
        max_stuck_threads: int = MAX_STUCK_THREADS,
        join_timeout_s: float = 2.0,
        release_timeout_s: float | None = None,
    ) -> None:
        """``release_timeout_s``: close an abandoned connection's device from
        the supervising side and wait this long (seconds on the clock) for it
        before reopening; None leaves it to its own thread (see the module)."""
        if stall_timeout_s <= 0:
            raise ValueError(f"stall_timeout_s must be positive, got {stall_timeout_s}")
        if max_stuck_threads < 1:
            raise ValueError(f"max_stuck_threads must be at least 1, got {max_stuck_threads}")
        self._name = name
        self._open_device = open_device
        self._clock = clock
        self._stall_timeout_s = stall_timeout_s
        self._start_timeout_s = max(start_timeout_s, stall_timeout_s)
        self._max_stuck_threads = max_stuck_threads
        self._backoff = backoff
        self._join_timeout_s = join_timeout_s
        self._release_timeout_s = release_timeout_s
        self._cond = threading.Condition()
        # Everything below is guarded by self._cond.
        self._generation = 0  # the live connection's number; older threads are abandoned
        self._live = False  # a connection of the current generation is running
        self._delivering = False  # ... and it has delivered a frame
        self._progress_mono = clock.monotonic()
        self._stuck_reported = False  # warned that connections are stuck in the driver
        self._failures = 0  # consecutive failures since the last good frame
        self._failure_seq = 0  # bumped on every failure, wakes waiting readers
        self._retry_at: float | None = None
        self._reopen_attempts = 0
        self._captured = 0
        self._latest: tuple[npt.NDArray[np.uint8], float, int] | None = None
        self._closed = False
        self._device: tuple[int, Device] | None = None  # the live connection's, once open
        self._release: _Release | None = None  # an abandoned device being closed
        self._restart_needed = False  # a device could not be closed: never reopen
        self._state = SourceState(name, ok=True, detail="opening")
        self._threads: list[threading.Thread] = []
        with self._cond:
            self._start_connection_locked()

    @property
    def state(self) -> SourceState:
        with self._cond:
            return self._state

    @property
    def exhausted(self) -> bool:
        """A live camera never runs out of frames."""
        return False

    def read(self, timeout_s: float) -> Frame | None:
        """The newest frame not yet returned, waiting up to ``timeout_s`` real
        seconds; None on a stall, a failed device or after ``close``."""
        with self._cond:
            self._supervise_locked()
            if self._latest is None and not self._closed:
                if self._live:
                    seq = self._failure_seq
                    wait_s = timeout_s
                    if self._delivering:
                        # Wake at the stall deadline at the latest: a stall is
                        # then failed, and the fault shown, on time rather
                        # than up to one read timeout late.
                        deadline = self._progress_mono + self._stall_timeout_s
                        wait_s = min(wait_s, deadline - self._clock.monotonic() + _WAKE_SLACK_S)
                    self._cond.wait_for(
                        lambda: (
                            self._latest is not None or self._closed or self._failure_seq != seq
                        ),
                        timeout=max(0.0, wait_s),
                    )
                elif self._release is not None and self._release_timeout_s is not None:
                    # Wait for the abandoned device to be closed, or the bound.
                    release = self._release
                    remaining_s = release.started_mono + self._release_timeout_s
                    remaining_s -= self._clock.monotonic()
                    self._cond.wait_for(
                        lambda: release.done or self._closed,
                        timeout=max(0.0, min(timeout_s, remaining_s + _WAKE_SLACK_S)),
                    )
                elif self._restart_needed:
                    self._cond.wait_for(lambda: self._closed, timeout=max(0.0, timeout_s))
                elif self._retry_at is not None:
                    # Nothing to wait for but the backoff; sleep through it (or
                    # the timeout, if shorter) and reopen if it is due.
                    due_in_s = self._retry_at - self._clock.monotonic()
                    self._cond.wait(max(0.0, min(timeout_s, due_in_s)))
                self._supervise_locked()
            latest, self._latest = self._latest, None
        if latest is None:
            return None
        image, captured_mono, index = latest
        return Frame(to_grey(image), captured_mono, index)

    def close(self) -> None:
        """Stop the grabber and release the device; waits up to ``join_timeout_s``
        in all for threads stuck in a driver call, then leaves them (daemons)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._generation += 1
            self._live = False
            self._cond.notify_all()
            threads = list(self._threads)
        give_up_at = self._clock.monotonic() + self._join_timeout_s
        for thread in threads:
            thread.join(max(0.0, give_up_at - self._clock.monotonic()))
            if thread.is_alive():
                log.warning(
                    "camera %s: grabber thread %s is stuck in the driver; leaving it",
                    self._name,
                    thread.name,
                )

    # -- supervision (consumer side) --------------------------------------

    def _supervise_locked(self) -> None:
        if self._closed:
            return
        now = self._clock.monotonic()
        silent_s = now - self._progress_mono
        if self._live:
            if self._delivering and silent_s >= self._stall_timeout_s:
                self._abandon_locked(f"no frame for {silent_s:.1f} s", now)
            elif not self._delivering and silent_s >= self._start_timeout_s:
                self._abandon_locked(f"not started after {silent_s:.1f} s", now)
        if self._restart_needed or not self._released_locked(now):
            return
        if not self._live and self._retry_at is not None and now >= self._retry_at:
            stuck = sum(1 for thread in self._threads if thread.is_alive())
            if stuck >= self._max_stuck_threads:
                self._wait_for_stuck_locked(stuck, now)
                return
            self._reopen_attempts += 1
            self._retry_at = None
            log.debug("camera %s: reopen attempt %d", self._name, self._reopen_attempts)
            self._start_connection_locked()

    def _abandon_locked(self, detail: str, now: float) -> None:
        abandoned = self._generation
        self._generation += 1  # the stuck thread's results are ignored from now on
        self._live = False
        device = self._device
        self._device = None
        if self._release_timeout_s is not None and device is not None and device[0] == abandoned:
            self._start_release_locked(device[1], now)
        self._fail_locked(detail, now)

    # -- closing an abandoned device (sources with release_timeout_s) --------

    def _start_release_locked(self, device: Device, now: float) -> None:
        """Close ``device`` on a thread of its own, so that a close that hangs
        too (a hung libcamera) holds neither the reader nor the lock."""
        release = _Release(started_mono=now)
        self._release = release
        threading.Thread(
            target=self._close_abandoned,
            args=(device, release),
            name=f"{self._name}-release-{self._generation}",
            daemon=True,
        ).start()

    def _close_abandoned(self, device: Device, release: _Release) -> None:
        error: str | None = None
        try:
            device.close()
        except Exception as exc:  # reported through state as a camera that stays held
            error = f"{type(exc).__name__}: {exc}"
        with self._cond:
            release.done = True
            release.error = error
            self._cond.notify_all()

    def _released_locked(self, now: float) -> bool:
        """True when no abandoned device is being closed (any more); gives up
        on the camera when closing it failed or outlasted the bound."""
        release = self._release
        if release is None or self._release_timeout_s is None:
            return True
        if release.done:
            self._release = None
            if release.error is None:
                log.info(
                    "camera %s: closed the stuck camera after %.1f s; reopening",
                    self._name,
                    now - release.started_mono,
                )
                return True
            self._give_up_locked(f"closing the stuck camera failed ({release.error})")
            return False
        if now - release.started_mono >= self._release_timeout_s:
            self._give_up_locked(
                f"the stuck camera was not closed within {self._release_timeout_s:.0f} s"
            )
        return False

    def _give_up_locked(self, detail: str) -> None:
        """The camera stays held by this process: never reopen it here."""
        self._restart_needed = True
        self._retry_at = None
        self._failure_seq += 1
        self._state = SourceState(
            self._name,
            ok=False,
            detail=f"{detail}; only a restart of the process frees it",
            reopen_attempts=self._reopen_attempts,
            restart_needed=True,
        )
        log.error("camera %s: %s", self._name, self._state.detail)
        self._cond.notify_all()

    def _wait_for_stuck_locked(self, stuck: int, now: float) -> None:
        """Too many abandoned threads are still inside the driver: try again
        later rather than start another that would hang beside them."""
        self._retry_at = now + self._backoff.max_s
        self._set_state_locked(
            ok=False, detail=f"{stuck} connections stuck in the driver; waiting for one to return"
        )
        if not self._stuck_reported:
            self._stuck_reported = True
            log.warning(
                "camera %s: %d connections stuck in the driver; no new one until one returns",
                self._name,
                stuck,
            )

    def _start_connection_locked(self) -> None:
        self._generation += 1
        self._live = True
        self._delivering = False
        self._progress_mono = self._clock.monotonic()
        self._threads = [t for t in self._threads if t.is_alive()]
        thread = threading.Thread(
            target=self._run,
            args=(self._generation,),
            name=f"{self._name}-grabber-{self._generation}",
            daemon=True,
        )
        self._threads.append(thread)
        thread.start()

    def _fail_locked(self, detail: str, now: float) -> None:
        self._failures += 1
        self._failure_seq += 1
        delay_s = self._backoff.delay_s(self._failures)
        self._retry_at = now + delay_s
        was_ok = self._state.ok
        self._set_state_locked(ok=False, detail=f"{detail}; reopening in {delay_s:.1f} s")
        if was_ok:
            log.warning("camera %s failed: %s; reopening with backoff", self._name, detail)
        else:
            log.debug("camera %s still failing: %s", self._name, detail)
        self._cond.notify_all()

    def _set_state_locked(self, *, ok: bool, detail: str) -> None:
        self._state = SourceState(
            self._name, ok=ok, detail=detail, reopen_attempts=self._reopen_attempts
        )

    # -- the grabber thread -------------------------------------------------

    def _current(self, generation: int) -> bool:
        return generation == self._generation and not self._closed

    def _run(self, generation: int) -> None:
        # This thread is a boundary: whatever the driver raises is a failed
        # device, reported through state and retried, never propagated.
        try:
            device = self._open_device()
        except Exception as exc:
            self._report_failure(generation, f"open failed: {exc}")
            return
        detail: str | None = None
        try:
            with self._cond:
                if not self._current(generation):
                    return
                self._progress_mono = self._clock.monotonic()
                self._device = (generation, device)
            while True:
                try:
                    image = device.read()
                except Exception as exc:
                    detail = f"read failed: {exc}"
                    break
                if image is None:
                    detail = "read failed: no image (device gone?)"
                    break
                if grey_problem(image) is not None:
                    detail = f"unexpected image {image.dtype} {image.shape}"
                    break
                if not self._deliver(generation, image):
                    break
        finally:
            with self._cond:
                if self._device is not None and self._device[0] == generation:
                    self._device = None
            try:
                device.close()
            except Exception:  # a failing release must not stop the reopening
                log.warning("camera %s: releasing the device failed", self._name, exc_info=True)
        if detail is not None:
            self._report_failure(generation, detail)

    def _deliver(self, generation: int, image: npt.NDArray[np.uint8]) -> bool:
        with self._cond:
            if not self._current(generation):
                return False
            now = self._clock.monotonic()
            self._latest = (image, now, self._captured)
            self._captured += 1
            self._progress_mono = now
            self._delivering = True
            if not self._state.ok:
                log.info(
                    "camera %s delivering again after %d reopen attempts",
                    self._name,
                    self._reopen_attempts,
                )
            if not self._state.ok or self._state.detail:
                self._failures = 0
                self._reopen_attempts = 0
                self._stuck_reported = False
                self._set_state_locked(ok=True, detail="")
            self._cond.notify_all()
            return True

    def _report_failure(self, generation: int, detail: str) -> None:
        with self._cond:
            if not self._current(generation):
                return
            self._live = False
            self._fail_locked(detail, self._clock.monotonic())


class _Release:
    """An abandoned device being closed by the supervisor (guarded by the source's lock)."""

    def __init__(self, started_mono: float) -> None:
        self.started_mono = started_mono
        self.done = False
        self.error: str | None = None


def stall_timeout_for(name: str, stall_timeout_s: float, fps: float) -> float:
    """``stall_timeout_s``, raised to :data:`STALL_MIN_FRAMES` frame intervals
    at ``fps`` if shorter (a camera slower than the timeout would be failed
    between every two frames)."""
    floor_s = STALL_MIN_FRAMES / fps if fps > 0 else stall_timeout_s
    if stall_timeout_s >= floor_s:
        return stall_timeout_s
    log.warning(
        "camera %s: stall timeout %.2f s is under %.0f frames at %.1f fps; using %.2f s",
        name,
        stall_timeout_s,
        STALL_MIN_FRAMES,
        fps,
        floor_s,
    )
    return floor_s
