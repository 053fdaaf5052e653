"""What every frame source shares: the frame, its state, the port, and the
one conversion of a captured image to the grey frame a decoder wants.

Nothing here imports numpy or OpenCV when the module is imported: the scan
loop, the decoder's interface and the CLI's commands that never see an image
import these names, and a command such as ``gatekiosk export`` must not pay
for loading OpenCV. :func:`to_grey` loads them on its first call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeAlias

from kiosk.clock import Clock
from kiosk.errors import CameraError, GateError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

GreyImage: TypeAlias = "npt.NDArray[np.uint8]"
"""A 2-D ``uint8`` image, C-contiguous: what every source yields and every
decoder reads."""

SOURCE_KINDS = ("picamera2", "v4l2", "file", "synthetic")
"""The ``kind`` values :func:`~kiosk.camera.open_source` accepts (the camera setting)."""


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
    restart_needed: bool = False
    """The camera cannot be freed in this process (a driver that does not let
    go of it): only a new process can open it again, so the kiosk exits for
    systemd to restart it."""


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

RELEASE_TIMEOUT_S = 5.0
"""How long (seconds) the supervisor waits for a stuck camera it abandoned to
be closed, where the source closes it itself (picamera2: a second
``Picamera2`` cannot open a camera the first still holds). Closing takes well
under a second; past this bound the camera is taken as held for good and the
source reports :attr:`SourceState.restart_needed`."""

MAX_STUCK_THREADS = 3
"""Connections abandoned inside a driver call that have not returned yet; with
this many, no new one is started until one returns (a new open of a hung
device would hang too), so threads do not pile up for as long as it is hung."""


# --------------------------------------------------------------------------
# The one grey conversion (cameras, replays and decoders alike).


def grey_problem(image: npt.NDArray[Any]) -> str | None:
    """Why :func:`to_grey` would refuse ``image``, or None if it accepts it.

    Cheap (no pixel is touched): the grabber checks every captured frame
    with it, and converts only the frames a reader takes.
    """
    if image.dtype.name != "uint8":
        return f"expected uint8 pixels, got {image.dtype}"
    if image.size == 0:
        return f"the image is empty (shape {image.shape})"
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4)):
        return None
    return f"cannot make a grey frame from an image of shape {image.shape}"


def to_grey(image: npt.NDArray[Any], *, error: type[GateError] = CameraError) -> GreyImage:
    """A C-contiguous 2-D ``uint8`` grey image from a grey, BGR or BGRA ``uint8`` image.

    Grey frames pass through without a copy (unless non-contiguous); colour
    ones are converted with OpenCV's luma weights, so every source and every
    decoder backend sees the same pixels (pyzbar alone would read only the
    blue channel). Anything else -- another dtype, an empty image, another
    shape -- raises ``error``: :class:`CameraError` for a camera delivering a
    format we did not ask for (a failing device), the decoders pass
    :class:`~kiosk.errors.DecoderError` (a broken adapter upstream).
    """
    problem = grey_problem(image)
    if problem is not None:
        raise error(problem)
    # Imported here, not with the module: see the module's docstring. After
    # the first frame this is a dictionary lookup.
    import numpy as np

    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3:
        import cv2

        code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        image = cv2.cvtColor(image, code)
    grey: GreyImage = np.ascontiguousarray(image, dtype=np.uint8)
    return grey


# --------------------------------------------------------------------------
# Helpers the sources share.


class ClosingSource:
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


class Pacer:
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
