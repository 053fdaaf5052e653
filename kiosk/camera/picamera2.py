"""Cameras driven by libcamera, through picamera2 (see :class:`Picamera2Source`).

picamera2 is imported when a source is built, never with this module, so
gatekiosk imports on any laptop.

Two kinds of camera reach picamera2, and they are configured differently:

- a Raspberry Pi camera (Camera Module 2 or 3, HQ, ...): a low-resolution
  YUV420 stream beside the main one, whose Y plane is already the grey
  frame; the Camera Module 3's lens is focused as ``camera.focus`` says;
- a USB webcam (UVC), which libcamera also lists on Raspberry Pi OS: its
  pipeline gives one stream only, so only ``main`` is configured (YUYV asked
  for, whatever format the camera settles on converted to grey).

They are told apart by ``Picamera2.global_camera_info()``: a UVC camera's
``Id`` is its USB path (``.../usb@200000-1:1.0-046d:0825``).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from kiosk.camera.base import (
    CAMERA_BACKOFF,
    RELEASE_TIMEOUT_S,
    STALL_TIMEOUT_S,
    START_TIMEOUT_S,
    Backoff,
    GreyImage,
)
from kiosk.camera.focus import Focus, FocusPlan, focus_controls
from kiosk.camera.grabber import GrabberSource, stall_timeout_for
from kiosk.clock import Clock
from kiosk.errors import CameraError, DependencyMissing

log = logging.getLogger(__name__)

PICAMERA2_INSTALL = "sudo apt install python3-picamera2"

UVC_FORMAT = "YUYV"
"""What a UVC camera's one stream is asked for: every webcam offers it
uncompressed, and its Y bytes are the grey frame. libcamera may settle on
another format (MJPEG); :func:`grey_plane` converts those too."""


@dataclass(frozen=True)
class Libraries:
    """picamera2 and ``libcamera.controls`` (the enums focus is set with)."""

    picamera2: Any
    controls: Any


def _import_picamera2() -> Libraries:
    """picamera2, or :class:`DependencyMissing` saying how to get it.

    picamera2 needs libcamera's Python bindings, which only Raspberry Pi OS
    packages; pip cannot install them, so the venv must see system packages.
    """
    try:
        picamera2 = importlib.import_module("picamera2")
        libcamera = importlib.import_module("libcamera")
    except ImportError as exc:
        raise DependencyMissing(
            "the Pi camera needs picamera2, which is not installed: run "
            f"`{PICAMERA2_INSTALL}` (and create the venv with --system-site-packages)"
        ) from exc
    return Libraries(picamera2=picamera2, controls=libcamera.controls)


@dataclass(frozen=True)
class AttachedCamera:
    """One camera libcamera lists, in picamera2's numbering (``camera_num``)."""

    num: int
    id: str
    model: str

    @property
    def uvc(self) -> bool:
        """A USB webcam (libcamera's UVC pipeline: one stream, no autofocus control)."""
        return "/usb" in self.id

    def describe(self) -> str:
        kind = "USB webcam (UVC)" if self.uvc else "Raspberry Pi camera"
        return f"camera {self.num}: {self.model or 'unknown model'}, {kind}"


def attached_cameras(picamera2: Any) -> list[AttachedCamera]:
    """The cameras libcamera sees, numbered as ``Picamera2(camera_num)`` takes
    them (picamera2 puts USB webcams after the Pi's own cameras)."""
    info = picamera2.Picamera2.global_camera_info()
    return [
        AttachedCamera(num=i, id=str(entry.get("Id", "")), model=str(entry.get("Model", "")))
        for i, entry in enumerate(info)
    ]


def libcamera_cameras() -> list[AttachedCamera]:
    """The cameras libcamera sees on this machine (``selftest``, the installer);
    :class:`DependencyMissing` where picamera2 is not installed."""
    return attached_cameras(_import_picamera2().picamera2)


_Y_FIRST = ("YUYV", "YVYU")
_Y_SECOND = ("UYVY", "VYUY")
_CV2_TO_GREY = {
    # picamera2's names give the pixel order in memory the other way round.
    "XBGR8888": "COLOR_RGBA2GRAY",  # [R, G, B, 255]
    "XRGB8888": "COLOR_BGRA2GRAY",  # [B, G, R, 255]
    "RGB888": "COLOR_BGR2GRAY",  # [B, G, R]
    "BGR888": "COLOR_RGB2GRAY",  # [R, G, B]
    "MJPEG": "COLOR_RGB2GRAY",  # decoded by picamera2 (PIL) to RGB
}


def grey_plane(image: npt.NDArray[Any], fmt: str, size: tuple[int, int]) -> GreyImage:
    """The grey frame in an array ``capture_array`` returned for a stream
    configured as ``fmt`` and ``size`` (width, height) -- the configured size,
    which picamera2 aligns and a camera may change, not the size asked for:
    rows past ``height`` hold the colour planes, columns past ``width`` the
    stride's padding.

    YUV formats need no conversion (the Y samples are the grey image); RGB
    ones and decoded MJPEG are converted with OpenCV's luma weights.
    """
    width, height = size
    pixels = np.asarray(image, dtype=np.uint8)
    grey: npt.NDArray[Any]
    if fmt in ("YUV420", "YVU420"):
        grey = pixels[:height, :width]
    elif fmt in _Y_FIRST + _Y_SECOND and pixels.ndim == 3:
        grey = pixels[:height, :width, 0 if fmt in _Y_FIRST else 1]
    elif fmt in _CV2_TO_GREY and pixels.ndim == 3:
        import cv2

        code = getattr(cv2, _CV2_TO_GREY[fmt])
        if fmt.startswith("X") and pixels.shape[2] != 4:
            raise CameraError(f"a {fmt} frame of shape {pixels.shape} has no 4 channels")
        grey = cv2.cvtColor(np.ascontiguousarray(pixels[:height, :width]), code)
    else:
        raise CameraError(f"cannot take a grey frame from {fmt} of shape {pixels.shape}")
    if grey.shape != (height, width):
        raise CameraError(
            f"a {fmt} frame of shape {pixels.shape} is smaller than the configured {width}x{height}"
        )
    result: GreyImage = np.ascontiguousarray(grey)
    return result


@dataclass(frozen=True)
class OpenedCamera:
    """What a connection found and set up, for the log and ``selftest``."""

    camera: AttachedCamera
    stream: str
    """``lores`` (a Pi camera) or ``main`` (a UVC webcam, one stream)."""
    format: str
    size: tuple[int, int]
    """(width, height) as configured, which may differ from the size asked for."""
    focus: FocusPlan

    def describe(self) -> str:
        width, height = self.size
        return f"{self.camera.describe()}; {self.stream} stream {width}x{height} {self.format}"


class _Picamera2Device:
    """A started Picamera2, read from its grey-bearing stream.

    ``close`` may come from the supervisor while ``read`` blocks in a hung
    libcamera (see :mod:`kiosk.camera.grabber`); it runs once, and a second
    call, from the grabber thread when its read returns, does nothing.
    """

    def __init__(
        self,
        libraries: Libraries,
        camera_num: int,
        size: tuple[int, int],
        fps: float,
        focus: Focus,
        on_open: Callable[[OpenedCamera], None],
    ) -> None:
        cameras = attached_cameras(libraries.picamera2)
        if not 0 <= camera_num < len(cameras):
            found = "; ".join(c.describe() for c in cameras) or "none"
            raise CameraError(f"no camera number {camera_num}; libcamera sees: {found}")
        attached = cameras[camera_num]
        self._close_lock = threading.Lock()
        self._closed = False
        self._camera = libraries.picamera2.Picamera2(camera_num)
        try:
            available: Mapping[str, Any] = self._camera.camera_controls
            controls: dict[str, Any] = {}
            if "FrameDurationLimits" in available:  # picamera2 refuses controls not reported
                frame_us = round(1_000_000 / fps)
                controls["FrameDurationLimits"] = (frame_us, frame_us)
            plan = focus_controls(focus, available, libraries.controls)
            controls.update(plan.controls)
            if attached.uvc:
                self._stream = "main"
                config = self._camera.create_video_configuration(
                    main={"size": size, "format": UVC_FORMAT}, controls=controls
                )
            else:
                self._stream = "lores"
                config = self._camera.create_video_configuration(
                    main={"size": size},
                    lores={"size": size, "format": "YUV420"},
                    controls=controls,
                )
            self._camera.configure(config)
            # What libcamera settled on: picamera2 aligns sizes, a webcam
            # picks among the formats and sizes it has.
            configured = self._camera.camera_configuration()[self._stream]
            self._format = str(configured["format"])
            width, height = configured["size"]
            self._size = (int(width), int(height))
            self._camera.start()
        except BaseException:
            self.close()
            raise
        on_open(OpenedCamera(attached, self._stream, self._format, self._size, plan))

    def read(self) -> npt.NDArray[np.uint8] | None:
        image = self._camera.capture_array(self._stream)
        return grey_plane(image, self._format, self._size)

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._camera.stop()
        finally:
            self._camera.close()


class Picamera2Source(GrabberSource):
    """A camera driven by libcamera, through picamera2: the Pi Camera Module,
    or a USB webcam that libcamera lists (see the module).

    ``size`` (width, height) is asked for at ``fps``; frames come in the size
    the camera was configured to (picamera2 may align it). ``focus`` is set
    where the camera has the controls for it, and said once in the log where
    it has not. A connection stuck in libcamera is closed by the supervisor
    before a new ``Picamera2`` is made (a second one cannot open a camera
    the first still holds); if it cannot be closed within
    ``release_timeout_s``, ``state.restart_needed`` asks for a new process.

    picamera2 comes from apt on the Pi (``sudo apt install python3-picamera2``)
    and is imported here only, so gatekiosk imports on any laptop;
    constructing this source without it raises :class:`DependencyMissing`
    with that command.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        size: tuple[int, int] = (640, 480),
        fps: float = 15.0,
        camera_num: int = 0,
        focus: Focus | None = None,
        stall_timeout_s: float = STALL_TIMEOUT_S,
        start_timeout_s: float = START_TIMEOUT_S,
        backoff: Backoff = CAMERA_BACKOFF,
        join_timeout_s: float = 2.0,
        release_timeout_s: float = RELEASE_TIMEOUT_S,
    ) -> None:
        libraries = _import_picamera2()
        self.size = size
        self.fps = fps
        self.focus = focus or Focus()
        self.opened: OpenedCamera | None = None
        """What the newest connection found and set up (None before one opened)."""
        self._focus_logged = False
        name = f"picamera2:{camera_num}"
        focus_wanted = self.focus
        super().__init__(
            name=name,
            open_device=lambda: _Picamera2Device(
                libraries, camera_num, size, fps, focus_wanted, self._opened
            ),
            clock=clock,
            stall_timeout_s=stall_timeout_for(name, stall_timeout_s, fps),
            start_timeout_s=start_timeout_s,
            backoff=backoff,
            join_timeout_s=join_timeout_s,
            release_timeout_s=release_timeout_s,
        )

    def _opened(self, opened: OpenedCamera) -> None:
        """Called by each connection once configured; the focus is logged once."""
        self.opened = opened
        if self._focus_logged:
            return
        self._focus_logged = True
        log.info("camera %s: %s", self._name, opened.describe())
        plan = opened.focus
        if plan.supported:
            log.info("camera %s focus: %s", self._name, plan.note)
        elif self.focus.mode == "fixed":  # asked for explicitly, and impossible
            log.warning("camera %s focus: %s", self._name, plan.note)
        else:
            log.info("camera %s focus: %s", self._name, plan.note)
