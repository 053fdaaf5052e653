"""The Raspberry Pi Camera Module through picamera2 (see :class:`Picamera2Source`).

picamera2 is imported when a source is built, never with this module, so
gatekiosk imports on any laptop.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import numpy.typing as npt

from kiosk.camera.base import CAMERA_BACKOFF, STALL_TIMEOUT_S, START_TIMEOUT_S, Backoff
from kiosk.camera.grabber import GrabberSource, stall_timeout_for
from kiosk.clock import Clock
from kiosk.errors import DependencyMissing

PICAMERA2_INSTALL = "sudo apt install python3-picamera2"


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


class Picamera2Source(GrabberSource):
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
            stall_timeout_s=stall_timeout_for(name, stall_timeout_s, fps),
            start_timeout_s=start_timeout_s,
            backoff=backoff,
            join_timeout_s=join_timeout_s,
        )
