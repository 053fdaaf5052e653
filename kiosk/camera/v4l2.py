"""A USB webcam through OpenCV's V4L2 backend (see :class:`V4l2Source`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from kiosk.camera.base import CAMERA_BACKOFF, STALL_TIMEOUT_S, START_TIMEOUT_S, Backoff
from kiosk.camera.grabber import Device, GrabberSource, stall_timeout_for
from kiosk.clock import Clock
from kiosk.errors import CameraError


class CaptureLike(Protocol):
    """The part of ``cv2.VideoCapture`` a live source uses; tests supply fakes."""

    def isOpened(self) -> bool: ...  # OpenCV's spelling

    def set(self, prop_id: int, value: float) -> bool: ...

    def read(self) -> tuple[bool, Any]: ...

    def release(self) -> None: ...


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


class V4l2Source(GrabberSource):
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
            stall_timeout_s=stall_timeout_for(name, stall_timeout_s, fps),
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
