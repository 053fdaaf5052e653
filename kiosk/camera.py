"""Frame sources: where grey frames come from.

Every source yields :class:`Frame` objects: a 2-D ``uint8`` array (the grey
image a decoder wants) and the capture time on the monotonic clock of the
:class:`~kiosk.clock.Clock` the source was given.

Adapters, named after their technology:

- :class:`Picamera2Source` -- the Pi Camera Module through picamera2;
- :class:`V4l2Source` -- a USB webcam through OpenCV's V4L2 backend;
- :class:`FileSource` -- a recorded video or a folder of images, replayed;
- :class:`SyntheticSource` -- QR codes rendered into noisy frames on a
  schedule of :class:`~kiosk.synthetic.Scene` (the demo and the tests).

The two live cameras share :class:`_GrabberSource`: a thread that keeps only
the newest frame, stall detection, and reopening with exponential backoff, so
``read`` never raises because a camera failed; it returns None and ``state``
says why. :func:`open_source` builds any of them from settings.

Camera faults, and the time budget the defaults are chosen for (the gate
must show the fault pattern within 2 s of a camera failing and scan again
within 5 s of it coming back):

- a read that fails or raises, or a device that vanishes (read returns
  nothing, open fails), wakes the waiting reader at once: ``read`` returns
  None with ``state.ok`` False, and the scan loop shows the fault;
- a read that blocks forever (a stall) is failed :data:`STALL_TIMEOUT_S`
  after the last frame: the reader waits no longer than that deadline;
- a failed camera is reopened after :data:`CAMERA_BACKOFF`, at most 2 s
  apart however long it has been gone, so a camera plugged back in is
  opened within 2 s, and delivering once it has opened;
- a connection stuck inside the driver is abandoned (a thread cannot be
  interrupted there); at most :data:`MAX_STUCK_THREADS` such threads are
  left waiting, so a driver that never returns does not eat the process.
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import cv2
import numpy as np
import numpy.typing as npt

from kiosk.clock import Clock
from kiosk.errors import CameraError, ConfigError, DependencyMissing
from kiosk.synthetic import CodeInView, FrameRenderer, Scene, plausible_look

log = logging.getLogger(__name__)

GreyImage = npt.NDArray[np.uint8]

SOURCE_KINDS = ("picamera2", "v4l2", "file", "synthetic")
"""The ``kind`` values :func:`open_source` accepts (the camera setting)."""

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
"""Files a folder replay picks up, compared case-insensitively."""

PICAMERA2_INSTALL = "sudo apt install python3-picamera2"


@dataclass(frozen=True)
class Frame:
    grey: GreyImage
    captured_mono: float
    """Capture time, seconds on the source's clock ``monotonic()``."""
    index: int
    """Frame number since the source was opened (replay: position in the file)."""


@dataclass(frozen=True)
class SourceState:
    """What the source is doing, for the dashboard and the fault light."""

    name: str
    ok: bool
    detail: str = ""
    reopen_attempts: int = 0


class FrameSource(Protocol):
    """A camera. ``read`` returns the newest frame not yet returned, or None
    if none arrived within ``timeout_s`` (a stall). It never raises for a
    failing device: it reports through ``state`` and reopens with backoff.
    ``read`` raising :class:`StopIteration`-like end is expressed by
    ``exhausted`` becoming True (file replays only).
    """

    @property
    def state(self) -> SourceState: ...

    @property
    def exhausted(self) -> bool: ...

    def read(self, timeout_s: float) -> Frame | None: ...

    def close(self) -> None: ...


class CaptureLike(Protocol):
    """The part of ``cv2.VideoCapture`` a live source uses; tests supply fakes."""

    def isOpened(self) -> bool: ...  # OpenCV's spelling

    def set(self, prop_id: int, value: float) -> bool: ...

    def read(self) -> tuple[bool, Any]: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class Backoff:
    """How long to wait before reopening a failed camera: ``first_s`` after the
    first failure, multiplied by ``factor`` after each further one, never more
    than ``max_s``. A camera unplugged for an hour is retried every ``max_s``
    without flooding the log (one warning per outage) or the USB bus; ``max_s``
    also bounds how long a camera plugged back in waits to be opened. The live
    cameras use :data:`CAMERA_BACKOFF`."""

    first_s: float = 0.5
    factor: float = 2.0
    max_s: float = 10.0

    def delay_s(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (>= 1)."""
        return min(self.max_s, self.first_s * self.factor ** max(0, failures - 1))


CAMERA_BACKOFF = Backoff(first_s=0.5, factor=2.0, max_s=2.0)
"""The live cameras' reopening schedule: 0.5, 1, 2, 2, ... seconds. The 2 s
ceiling keeps recovery within 5 s of a camera coming back (up to 2 s until
the next attempt, then opening and the first frame, about a second); an
attempt on a missing device costs one failed ``open``."""

STALL_TIMEOUT_S = 1.0
"""A streaming camera silent this long (seconds) has stalled: it is reported
and reopened. The fault pattern shows this long after the last frame, well
inside the 2 s allowed; it is 15 frame intervals at 15 fps, 5 at the 5 fps a
webcam may fall to in dim light, so a slow camera is not taken for a stalled
one (and never fewer than :data:`STALL_MIN_FRAMES` intervals at the fps asked)."""

STALL_MIN_FRAMES = 3.0
"""The stall timeout is at least this many frame intervals at the fps asked of
the camera, so a camera set to 1 fps is not failed between two frames."""

START_TIMEOUT_S = 5.0
"""How long (seconds) a connection may take to open the device, and then to
deliver its first frame, before it is abandoned as stuck. Longer than a stall:
a USB webcam takes up to a second or two to open and start streaming, the Pi
camera about one, and failing a slow but working start would retry it forever.
A connection only starts at boot or while the fault is already showing."""

MAX_STUCK_THREADS = 3
"""Connections abandoned inside a driver call that have not returned yet; with
this many, no new one is started until one returns (a new open of a hung
device would hang too), so threads do not pile up for as long as it is hung."""


def to_grey(image: npt.NDArray[Any]) -> GreyImage:
    """A 2-D ``uint8`` grey image from a grey, BGR or BGRA ``uint8`` image.

    Raises :class:`CameraError` for anything else (a device delivering a
    format we did not ask for is a failing device).
    """
    if image.dtype != np.uint8:
        raise CameraError(f"expected uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    if image.ndim == 3 and image.shape[2] == 4:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY), dtype=np.uint8)
    raise CameraError(f"cannot make a grey frame from an image of shape {image.shape}")


def _convertible_to_grey(image: npt.NDArray[Any]) -> bool:
    """Whether :func:`to_grey` accepts ``image`` (checked cheaply per captured frame)."""
    if image.dtype != np.uint8:
        return False
    return image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))


_WAKE_SLACK_S = 0.005
"""A reader waiting for a stall deadline wakes this much after it, so that the
clock has surely passed the deadline when it looks."""


class _Closing:
    """``with source:`` closes the source, whatever happens inside."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------
# Live cameras: a grabber thread, stall detection, reopening with backoff.


class Device(Protocol):
    """One opened camera as the grabber thread sees it.

    ``read`` blocks until the next image (grey, BGR or BGRA ``uint8``) and
    returns None, or raises, when the device has failed. Only the grabber
    thread that opened a device touches it, ``close`` included.
    """

    def read(self) -> npt.NDArray[np.uint8] | None: ...

    def close(self) -> None: ...


class _GrabberSource(_Closing):
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
    ) -> None:
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
        self._generation += 1  # the stuck thread's results are ignored from now on
        self._live = False
        self._fail_locked(detail, now)

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
            while True:
                try:
                    image = device.read()
                except Exception as exc:
                    detail = f"read failed: {exc}"
                    break
                if image is None:
                    detail = "read failed: no image (device gone?)"
                    break
                if not _convertible_to_grey(image):
                    detail = f"unexpected image {image.dtype} {image.shape}"
                    break
                if not self._deliver(generation, image):
                    break
        finally:
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


def _stall_timeout_for(name: str, stall_timeout_s: float, fps: float) -> float:
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


class _CaptureDevice:
    """A ``cv2.VideoCapture`` (or a fake of one) as a :class:`Device`."""

    def __init__(self, capture: CaptureLike) -> None:
        self._capture = capture

    def read(self) -> npt.NDArray[np.uint8] | None:
        ok, image = self._capture.read()
        if not ok or image is None:
            return None
        return np.asarray(image)

    def close(self) -> None:
        self._capture.release()


class V4l2Source(_GrabberSource):
    """A USB webcam through OpenCV's V4L2 backend.

    ``device`` is an index (``0`` for ``/dev/video0``) or a path; prefer the
    stable ``/dev/v4l/by-id/usb-...-video-index0`` link, which survives
    replugging into another port. ``size`` is (width, height) in pixels and
    ``fps`` frames per second, requested from the driver (it may pick the
    nearest it supports). The driver's queue is cut to one buffer and a
    grabber thread keeps only the newest frame, so a slow decoder never
    works on a picture of the previous visitor. ``fourcc`` optionally asks for
    a pixel format, e.g. ``"MJPG"`` (more fps over USB 2) or ``"GREY"`` for
    a monochrome camera.

    ``open_capture`` replaces ``cv2.VideoCapture(device, cv2.CAP_V4L2)``; tests
    pass a fake that fails, stalls, vanishes and returns.

    Example::

        with V4l2Source("/dev/v4l/by-id/usb-046d_C270-video-index0",
                        clock=SystemClock()) as camera:
            frame = camera.read(timeout_s=1.0)
    """

    def __init__(
        self,
        device: int | str,
        *,
        clock: Clock,
        size: tuple[int, int] = (640, 480),
        fps: float = 15.0,
        stall_timeout_s: float = STALL_TIMEOUT_S,
        start_timeout_s: float = START_TIMEOUT_S,
        backoff: Backoff = CAMERA_BACKOFF,
        fourcc: str | None = None,
        open_capture: Callable[[], CaptureLike] | None = None,
        join_timeout_s: float = 2.0,
    ) -> None:
        if isinstance(device, str) and device.isdigit():
            device = int(device)
        self.device = device
        self.size = size
        self.fps = fps
        self._fourcc = fourcc
        self._open_capture = open_capture or self._open_cv2_capture
        name = f"v4l2:{device}"
        super().__init__(
            name=name,
            open_device=self._open,
            clock=clock,
            stall_timeout_s=_stall_timeout_for(name, stall_timeout_s, fps),
            start_timeout_s=start_timeout_s,
            backoff=backoff,
            join_timeout_s=join_timeout_s,
        )

    def _open_cv2_capture(self) -> CaptureLike:
        # Look for the device node first: OpenCV prints two warnings to stderr
        # (the journal) for every failed open, and a camera unplugged for an
        # hour is tried every two seconds.
        node = Path(f"/dev/video{self.device}" if isinstance(self.device, int) else self.device)
        if not node.exists():
            raise CameraError(f"no such device {node}")
        return cv2.VideoCapture(self.device, cv2.CAP_V4L2)

    def _open(self) -> Device:
        capture = self._open_capture()
        if not capture.isOpened():
            capture.release()
            raise CameraError(f"cannot open {self.device}")
        if self._fourcc is not None:
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*self._fourcc))
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        capture.set(cv2.CAP_PROP_FPS, self.fps)
        return _CaptureDevice(capture)


def _import_picamera2() -> Any:
    """The picamera2 module, or :class:`DependencyMissing` saying how to get it.

    picamera2 needs libcamera's Python bindings, which only Raspberry Pi OS
    packages; pip cannot install them, so the venv must see system packages.
    """
    try:
        return importlib.import_module("picamera2")
    except ImportError as exc:
        raise DependencyMissing(
            "the Pi camera needs picamera2, which is not installed: run "
            f"`{PICAMERA2_INSTALL}` (and create the venv with --system-site-packages)"
        ) from exc


class _Picamera2Device:
    """A started Picamera2 whose low-resolution YUV420 stream is read.

    The Y plane of YUV420 is already the grey frame: no conversion, just the
    first ``height`` rows with the stride padding cut off.
    """

    def __init__(self, module: Any, camera_num: int, size: tuple[int, int], fps: float) -> None:
        self._size = size
        self._camera = module.Picamera2(camera_num)
        try:
            frame_us = round(1_000_000 / fps)
            config = self._camera.create_video_configuration(
                main={"size": size},
                lores={"size": size, "format": "YUV420"},
                controls={"FrameDurationLimits": (frame_us, frame_us)},
            )
            self._camera.configure(config)
            self._camera.start()
        except BaseException:
            self._camera.close()
            raise

    def read(self) -> npt.NDArray[np.uint8] | None:
        width, height = self._size
        yuv = np.asarray(self._camera.capture_array("lores"), dtype=np.uint8)
        return np.ascontiguousarray(yuv[:height, :width])

    def close(self) -> None:
        try:
            self._camera.stop()
        finally:
            self._camera.close()


class Picamera2Source(_GrabberSource):
    """The Raspberry Pi Camera Module, through picamera2.

    Configured with a low-resolution YUV420 stream of ``size`` (width,
    height) at ``fps``; its Y plane is the grey frame. picamera2 comes from
    apt on the Pi (``sudo apt install python3-picamera2``) and is imported
    here only, so gatekiosk imports on any laptop; constructing this source
    without it raises :class:`DependencyMissing` with that command.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        size: tuple[int, int] = (640, 480),
        fps: float = 15.0,
        camera_num: int = 0,
        stall_timeout_s: float = STALL_TIMEOUT_S,
        start_timeout_s: float = START_TIMEOUT_S,
        backoff: Backoff = CAMERA_BACKOFF,
        join_timeout_s: float = 2.0,
    ) -> None:
        module = _import_picamera2()
        self.size = size
        self.fps = fps
        name = f"picamera2:{camera_num}"
        super().__init__(
            name=name,
            open_device=lambda: _Picamera2Device(module, camera_num, size, fps),
            clock=clock,
            stall_timeout_s=_stall_timeout_for(name, stall_timeout_s, fps),
            start_timeout_s=start_timeout_s,
            backoff=backoff,
            join_timeout_s=join_timeout_s,
        )


# --------------------------------------------------------------------------
# Replays: files and synthetic frames, paced on the clock.


class _Pacer:
    """Real-time pacing for replayed frames: frame ``i`` is due at
    ``start + i / fps`` seconds on the clock, ``start`` being the first read.

    A consumer that falls behind gets the newest due frame, as from a camera;
    one that is early waits on the clock (so a FakeClock advances).
    """

    _EPSILON_FRAMES = 1e-6  # float sums of sleeps must not miss a due frame

    def __init__(self, clock: Clock, fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self._clock = clock
        self._fps = fps
        self._start: float | None = None

    def due(self, next_index: int, timeout_s: float) -> int | None:
        """Index to deliver (>= ``next_index``), after waiting for it at most
        ``timeout_s`` seconds; None if it is not due within the timeout."""
        now = self._clock.monotonic()
        if self._start is None:
            self._start = now
        newest_due = math.floor((now - self._start) * self._fps + self._EPSILON_FRAMES)
        if newest_due >= next_index:
            return newest_due
        wait_s = self._start + next_index / self._fps - now
        if wait_s > timeout_s:
            self._clock.sleep(max(0.0, timeout_s))
            return None
        self._clock.sleep(wait_s)
        return next_index

    def time_of(self, index: int) -> float:
        """Capture time of frame ``index``, seconds on the clock."""
        assert self._start is not None, "time_of before the first due()"
        return self._start + index / self._fps


class _FrameReader(Protocol):
    def next(self) -> tuple[int, GreyImage] | None:
        """The next readable frame and its position, or None at the end."""
        ...

    def skip(self) -> bool:
        """Pass over the next frame without decoding it if possible; False at the end."""
        ...

    def close(self) -> None: ...


class _ImageFolderReader:
    def __init__(self, files: Sequence[Path]) -> None:
        self._files = list(files)
        self._pos = 0
        self.unreadable: list[str] = []

    def next(self) -> tuple[int, GreyImage] | None:
        while self._pos < len(self._files):
            path, position = self._files[self._pos], self._pos
            self._pos += 1
            grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if grey is not None:
                return position, np.asarray(grey, dtype=np.uint8)
            log.warning("replay: cannot read image %s; skipping it", path.name)
            self.unreadable.append(path.name)
        return None

    def skip(self) -> bool:
        if self._pos >= len(self._files):
            return False
        self._pos += 1
        return True

    def close(self) -> None:
        self._pos = len(self._files)


class _VideoReader:
    def __init__(self, path: Path) -> None:
        self._capture = cv2.VideoCapture(str(path))
        if not self._capture.isOpened():
            self._capture.release()
            raise CameraError(f"cannot open video {path}")
        self._pos = 0
        self.unreadable: list[str] = []

    def next(self) -> tuple[int, GreyImage] | None:
        ok, image = self._capture.read()
        if not ok or image is None:
            return None
        position = self._pos
        self._pos += 1
        return position, to_grey(np.asarray(image))

    def skip(self) -> bool:
        if not self._capture.grab():
            return False
        self._pos += 1
        return True

    def close(self) -> None:
        self._capture.release()


class FileSource(_Closing):
    """A recorded video, or a folder of images (sorted by name), replayed.

    With ``fps`` the replay runs in real time on the clock, like a camera:
    a slow consumer gets the newest due frame and the ones in between are
    dropped. With ``fps=None`` every frame is returned as fast as it is read
    (benchmarks). ``exhausted`` becomes True as the last frame is returned.
    ``Frame.index`` is the frame's position in the file or folder; a folder
    image that cannot be read is skipped and reported in ``state``.

    Raises :class:`CameraError` if ``path`` is neither a readable video nor a
    folder holding images (``.png .jpg .jpeg .bmp``). A single image file is
    replayed as a one-frame folder.
    """

    def __init__(self, path: str | Path, *, clock: Clock, fps: float | None = None) -> None:
        self.path = Path(path)
        self._clock = clock
        self._pacer = None if fps is None else _Pacer(clock, fps)
        self._reader: _FrameReader
        self._unreadable: list[str]
        if self.path.is_dir():
            files = sorted(
                p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not files:
                raise CameraError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {self.path}")
            folder = _ImageFolderReader(files)
            self._reader, self._unreadable = folder, folder.unreadable
        elif self.path.is_file() and self.path.suffix.lower() in IMAGE_SUFFIXES:
            folder = _ImageFolderReader([self.path])
            self._reader, self._unreadable = folder, folder.unreadable
        elif self.path.is_file():
            video = _VideoReader(self.path)
            self._reader, self._unreadable = video, video.unreadable
        else:
            raise CameraError(f"no such video or folder: {self.path}")
        self._name = f"file:{self.path.name}"
        # One frame is read ahead, so that ``exhausted`` is known as the last
        # frame is returned rather than on the read after it.
        self._ahead = self._reader.next()
        self._closed = False

    @property
    def state(self) -> SourceState:
        if self._unreadable:
            return SourceState(
                self._name, ok=False, detail=f"unreadable images: {', '.join(self._unreadable)}"
            )
        return SourceState(self._name, ok=True, detail="end of file" if self.exhausted else "")

    @property
    def exhausted(self) -> bool:
        return self._ahead is None

    def read(self, timeout_s: float) -> Frame | None:
        """The next frame (paced: the newest due), or None when exhausted,
        closed, or the next frame is not due within ``timeout_s``."""
        if self._ahead is None or self._closed:
            return None
        if self._pacer is None:
            return self._take(self._clock.monotonic())
        index = self._pacer.due(self._ahead[0], timeout_s)
        if index is None:
            return None
        if index > self._ahead[0]:
            # Fell behind: drop frames as a camera would, decoding only the one returned.
            for _ in range(index - self._ahead[0] - 1):
                if not self._reader.skip():
                    self._ahead = None
                    return None
            self._ahead = self._reader.next()
            if self._ahead is None:
                return None
        return self._take(self._pacer.time_of(self._ahead[0]))

    def _take(self, captured_mono: float) -> Frame:
        assert self._ahead is not None
        position, grey = self._ahead
        self._ahead = self._reader.next()
        return Frame(grey, captured_mono, position)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._reader.close()


_EPSILON_S = 1e-9
"""Slack for sums of float durations, so that a frame due exactly at a scene
boundary (0.1 + 0.2 s) belongs to the scene that starts there."""


@dataclass(frozen=True)
class _PreparedScene:
    scene_number: int  # counts scenes from the start, across loops
    looks: tuple[CodeInView, ...]
    jitter_phases: tuple[float, ...]
    glare_offsets: tuple[tuple[float, float], ...]


class SyntheticSource(_Closing):
    """A camera that films a scripted queue of visitors: QR codes rendered
    into realistic grey frames, on a schedule of :class:`Scene`.

    ``schedule`` is a sequence of scenes, each some codes (none: an empty
    gate) in view for ``duration_s``; with ``loop`` it repeats forever (the
    demo), otherwise the source is ``exhausted`` after the last scene. Bare
    payloads in a scene get a plausible look chosen from ``seed`` (card or
    phone, turned, tilted, side by side if several); :class:`CodeInView`
    entries are rendered exactly as given. The hand holding a code trembles by
    ``Scene.jitter_px`` pixels.

    Frames are paced at ``fps`` on the clock like :class:`FileSource` (a
    FakeClock advances as ``read`` sleeps). Frame ``i`` depends only on
    ``seed`` and ``i``, not on when it is read. ``size`` is (width, height).

    Example::

        schedule = [Scene((), 1.0), Scene(("Nguyễn Văn An",), 2.0), Scene((), 1.0)]
        camera = SyntheticSource(schedule, clock=SystemClock(), loop=True)
    """

    def __init__(
        self,
        schedule: Sequence[Scene],
        *,
        clock: Clock,
        size: tuple[int, int] = (640, 480),
        fps: float = 15.0,
        seed: int = 0,
        loop: bool = False,
    ) -> None:
        self.schedule = tuple(schedule)
        if not self.schedule:
            raise ValueError("a synthetic schedule needs at least one scene")
        self.size = size
        self.fps = fps
        self.seed = seed
        self.loop = loop
        self._clock = clock
        self._pacer = _Pacer(clock, fps)
        self._renderer = FrameRenderer(size=size, rng=np.random.default_rng([seed, 0]))
        self._period_s = sum(scene.duration_s for scene in self.schedule)
        self._starts_s = np.cumsum([0.0] + [s.duration_s for s in self.schedule[:-1]])
        self._next_index = 0
        self._prepared: _PreparedScene | None = None
        self._exhausted = False
        self._closed = False
        self._scene_label = ""

    @property
    def state(self) -> SourceState:
        return SourceState("synthetic", ok=True, detail=self._scene_label)

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    def read(self, timeout_s: float) -> Frame | None:
        """The newest due frame, waiting on the clock up to ``timeout_s``;
        None if none is due in time, after the schedule ends, or after close."""
        if self._exhausted or self._closed:
            return None
        index = self._pacer.due(self._next_index, timeout_s)
        if index is None:
            return None
        if not self.loop and index / self.fps + _EPSILON_S >= self._period_s:
            self._end()
            return None
        self._next_index = index + 1
        grey = self.render(index)
        _, position = self._locate(index)
        self._scene_label = f"scene {position}"
        if not self.loop and self._next_index / self.fps + _EPSILON_S >= self._period_s:
            self._end()
        return Frame(grey, self._pacer.time_of(index), index)

    def render(self, index: int) -> GreyImage:
        """Frame ``index`` of the schedule (as if it looped), without pacing:
        for benchmarks and tests that want a particular moment."""
        scene_number, position = self._locate(index)
        scene = self.schedule[position]
        prepared = self._prepare(scene_number, scene)
        rng = np.random.default_rng([self.seed, 1, index])
        t_s = index / self.fps
        looks = [
            self._jittered(look, phase, scene.jitter_px, t_s)
            for look, phase in zip(prepared.looks, prepared.jitter_phases, strict=True)
        ]
        return self._renderer.render(
            looks,
            blur_sigma=scene.blur_sigma,
            noise_sigma=scene.noise_sigma,
            rng=rng,
            glare_offsets=prepared.glare_offsets,
        )

    def _locate(self, index: int) -> tuple[int, int]:
        """The scene showing in frame ``index``: its number counted across
        loops, and its position in the schedule."""
        loops, into_s = divmod(index / self.fps + _EPSILON_S, self._period_s)
        position = int(np.searchsorted(self._starts_s, into_s, side="right")) - 1
        return int(loops) * len(self.schedule) + position, position

    def _end(self) -> None:
        self._exhausted = True
        self._scene_label = "schedule finished"

    def _prepare(self, scene_number: int, scene: Scene) -> _PreparedScene:
        if self._prepared is not None and self._prepared.scene_number == scene_number:
            return self._prepared
        rng = np.random.default_rng([self.seed, 2, scene_number])
        slots = len(scene.codes)
        looks = tuple(
            code
            if isinstance(code, CodeInView)
            else plausible_look(code, rng, slot=slot, slots=slots, size=self.size)
            for slot, code in enumerate(scene.codes)
        )
        self._prepared = _PreparedScene(
            scene_number=scene_number,
            looks=looks,
            jitter_phases=tuple(float(p) for p in rng.uniform(0, 2 * math.pi, slots)),
            glare_offsets=tuple(
                (float(x), float(y)) for x, y in rng.uniform(-0.2, 0.2, (slots, 2))
            ),
        )
        return self._prepared

    def _jittered(self, look: CodeInView, phase: float, jitter_px: float, t_s: float) -> CodeInView:
        """The look moved by a smooth tremor (a few Hz, ``jitter_px`` pixels),
        a function of time only, so frames stay deterministic."""
        if jitter_px <= 0:
            return look
        width, height = self.size
        dx = jitter_px * math.sin(2 * math.pi * 1.3 * t_s + phase)
        dy = jitter_px * math.sin(2 * math.pi * 1.7 * t_s + 2 * phase)
        return CodeInView(
            payload=look.payload,
            eci=look.eci,
            center=(look.center[0] + dx / width, look.center[1] + dy / height),
            module_px=look.module_px,
            angle_deg=look.angle_deg + 0.3 * jitter_px * math.sin(2 * math.pi * 0.9 * t_s + phase),
            perspective=look.perspective,
            contrast=look.contrast,
            glare=look.glare,
            moire=look.moire,
            inverted=look.inverted,
            carrier=look.carrier,
        )

    def close(self) -> None:
        self._closed = True


# --------------------------------------------------------------------------


def open_source(
    kind: str,
    *,
    clock: Clock,
    device: int | str | None = None,
    size: tuple[int, int] = (640, 480),
    fps: float | None = 15.0,
    **kw: Any,
) -> FrameSource:
    """The frame source the settings ask for; the composition root calls this.

    ``kind`` is one of :data:`SOURCE_KINDS`. ``device`` is the camera number
    (picamera2), index or path (v4l2), or the video or folder (file).
    ``fps`` is requested from cameras and paces replays (None: a file as fast
    as it reads). Other keywords go to the adapter, e.g. ``schedule=`` and
    ``loop=`` for synthetic, ``stall_timeout_s=`` for the live cameras.

    Raises :class:`ConfigError` for an unknown kind or a missing ``device``,
    :class:`DependencyMissing` for picamera2 off a Pi, :class:`CameraError`
    for a file that cannot be replayed.
    """
    live_fps = 15.0 if fps is None else fps
    if kind == "picamera2":
        camera_num = 0 if device is None else int(device)
        return Picamera2Source(clock=clock, size=size, fps=live_fps, camera_num=camera_num, **kw)
    if kind == "v4l2":
        return V4l2Source(
            0 if device is None else device, clock=clock, size=size, fps=live_fps, **kw
        )
    if kind == "file":
        if device is None:
            raise ConfigError(["camera kind 'file' needs the video or image folder as device"])
        return FileSource(str(device), clock=clock, fps=fps, **kw)
    if kind == "synthetic":
        schedule = kw.pop("schedule", None)
        if not schedule:
            raise ConfigError(["camera kind 'synthetic' needs a schedule of scenes"])
        return SyntheticSource(schedule, clock=clock, size=size, fps=live_fps, **kw)
    raise ConfigError([f"unknown camera kind {kind!r}; expected one of {', '.join(SOURCE_KINDS)}"])
