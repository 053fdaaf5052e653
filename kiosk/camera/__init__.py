"""Frame sources: where grey frames come from.

Every source yields :class:`Frame` objects: a 2-D ``uint8`` array (the grey
image a decoder wants) and the capture time on the monotonic clock of the
:class:`~kiosk.clock.Clock` the source was given.

Adapters, named after their technology, one module each:

- :class:`Picamera2Source` (``picamera2``) -- a camera libcamera drives: the
  Pi Camera Module (focused as :class:`Focus` says), or a USB webcam it lists;
- :class:`V4l2Source` (``v4l2``) -- a USB webcam through OpenCV's V4L2 backend;
- :class:`FileSource` (``files``) -- a recorded video or a folder of images, replayed;
- :class:`SyntheticSource` (``synthetic``) -- QR codes rendered into noisy
  frames on a schedule of :class:`~kiosk.synthetic.Scene` (the demo and the tests).

The two live cameras share the supervised grabber thread of ``grabber``
(stall detection, reopening with backoff; its docstring gives the fault
budget; a stuck Pi camera is closed before it is reopened). ``focus``
turns the focus settings into libcamera controls and measures
:func:`sharpness`. ``base`` holds what all share: :class:`Frame`, :class:`SourceState`,
the :class:`FrameSource` port, :class:`Backoff` and :func:`to_grey`, the one
conversion of a captured image to grey. :func:`open_source` builds any of
them from settings.

Every name is importable from ``kiosk.camera``, but only ``base`` is loaded
with the package; an adapter's module (and OpenCV, picamera2 or the QR
renderer behind it) is loaded when its name is first used, so the scan
loop's types cost nothing to a command that never opens a camera.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kiosk.camera.base import (
    CAMERA_BACKOFF,
    MAX_STUCK_THREADS,
    RELEASE_TIMEOUT_S,
    SOURCE_KINDS,
    STALL_MIN_FRAMES,
    STALL_TIMEOUT_S,
    START_TIMEOUT_S,
    Backoff,
    Frame,
    FrameSource,
    GreyImage,
    SourceState,
    grey_problem,
    to_grey,
)
from kiosk.clock import Clock
from kiosk.errors import ConfigError
from kiosk.lazy import lazy_names

if TYPE_CHECKING:
    from kiosk.camera.files import IMAGE_SUFFIXES, FileSource, is_image_file
    from kiosk.camera.focus import FOCUS_MODES, Focus, FocusPlan, sharpness
    from kiosk.camera.grabber import Device, GrabberSource
    from kiosk.camera.picamera2 import PICAMERA2_INSTALL, Picamera2Source
    from kiosk.camera.synthetic import SyntheticSource
    from kiosk.camera.v4l2 import CaptureLike, V4l2Source

__all__ = [
    "CAMERA_BACKOFF",
    "FOCUS_MODES",
    "IMAGE_SUFFIXES",
    "MAX_STUCK_THREADS",
    "PICAMERA2_INSTALL",
    "RELEASE_TIMEOUT_S",
    "SOURCE_KINDS",
    "STALL_MIN_FRAMES",
    "STALL_TIMEOUT_S",
    "START_TIMEOUT_S",
    "Backoff",
    "CaptureLike",
    "Device",
    "FileSource",
    "Focus",
    "FocusPlan",
    "Frame",
    "FrameSource",
    "GrabberSource",
    "GreyImage",
    "Picamera2Source",
    "SourceState",
    "SyntheticSource",
    "V4l2Source",
    "grey_problem",
    "is_image_file",
    "open_source",
    "sharpness",
    "to_grey",
]

_LAZY = {
    "IMAGE_SUFFIXES": "files",
    "FileSource": "files",
    "is_image_file": "files",
    "FOCUS_MODES": "focus",
    "Focus": "focus",
    "FocusPlan": "focus",
    "sharpness": "focus",
    "Device": "grabber",
    "GrabberSource": "grabber",
    "PICAMERA2_INSTALL": "picamera2",
    "Picamera2Source": "picamera2",
    "SyntheticSource": "synthetic",
    "CaptureLike": "v4l2",
    "V4l2Source": "v4l2",
}
"""Names whose module is loaded on first use, and that module (in this package)."""


__getattr__ = lazy_names(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(__all__)


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
    ``loop=`` for synthetic, ``stall_timeout_s=`` for the live cameras. Only
    the adapter asked for is loaded.

    Raises :class:`ConfigError` for an unknown kind or a missing ``device``,
    :class:`DependencyMissing` for picamera2 off a Pi, :class:`CameraError`
    for a file that cannot be replayed.
    """
    live_fps = 15.0 if fps is None else fps
    if kind == "picamera2":
        from kiosk.camera.picamera2 import Picamera2Source

        camera_num = 0 if device is None else int(device)
        return Picamera2Source(clock=clock, size=size, fps=live_fps, camera_num=camera_num, **kw)
    if kind == "v4l2":
        from kiosk.camera.v4l2 import V4l2Source

        return V4l2Source(
            0 if device is None else device, clock=clock, size=size, fps=live_fps, **kw
        )
    if kind == "file":
        from kiosk.camera.files import FileSource

        if device is None:
            raise ConfigError(["camera kind 'file' needs the video or image folder as device"])
        return FileSource(str(device), clock=clock, fps=fps, **kw)
    if kind == "synthetic":
        from kiosk.camera.synthetic import SyntheticSource

        schedule = kw.pop("schedule", None)
        if not schedule:
            raise ConfigError(["camera kind 'synthetic' needs a schedule of scenes"])
        return SyntheticSource(schedule, clock=clock, size=size, fps=live_fps, **kw)
    raise ConfigError([f"unknown camera kind {kind!r}; expected one of {', '.join(SOURCE_KINDS)}"])
