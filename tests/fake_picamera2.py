"""A fake picamera2 (and ``libcamera.controls``) honouring the parts of the
real API the Pi camera source uses, for machines without a Pi camera.

What it copies from picamera2 and libcamera (see picamera2/picamera2.py):

- ``Picamera2.global_camera_info()`` lists cameras as dicts with ``Model``,
  ``Id`` and ``Num``, USB webcams last; a UVC camera's ``Id`` holds ``/usb``;
- ``Picamera2(camera_num)`` fails while another instance holds that camera
  (libcamera's acquire: the camera is in use until ``close``);
- ``camera_controls`` maps each control the camera reports to
  (min, max, default); ``configure`` refuses a control it does not report
  (``Control X is not advertised by libcamera``), and a ``lores`` stream on
  a UVC camera (libcamera's UVC pipeline has one stream);
- ``create_video_configuration`` aligns sizes (picamera2's ``align_stream``
  rounds a YUV420 width down to a multiple of 64 here) and ``configure``
  settles a UVC camera on a format and size it has, with a padded stride,
  as ``camera_configuration()`` then reports;
- ``capture_array(name)`` shapes arrays as picamera2's ``make_array``: YUV420
  (height * 3 / 2, stride), YUYV (height, stride / 2, 2), MJPEG decoded to
  RGB (height, width, 3), XBGR8888 (height, width, 4).

The test drives :class:`FakeCameraBus`: which cameras are attached, and a
libcamera that hangs (``capture_array`` blocks; optionally ``close`` too,
until :meth:`FakeCameraBus.release_all`).
"""

from __future__ import annotations

import enum
import threading
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np

WAIT_S = 10.0
"""Generous real-time bound for a blocked fake call (a loaded CI box)."""

FRAME_INTERVAL_S = 0.01
"""Real time between two frames of a fake camera, so a grabber does not spin."""

Y_VALUE = 77
"""Every sample of the Y plane (or grey value) the fake cameras deliver."""


class AfModeEnum(enum.IntEnum):
    Manual = 0
    Auto = 1
    Continuous = 2


class AfRangeEnum(enum.IntEnum):
    Normal = 0
    Macro = 1
    Full = 2


CAMERA_MODULE_3 = {
    "Model": "imx708",
    "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a",
    "controls": {
        "FrameDurationLimits": (33333, 120000, 33333),
        "AfMode": (0, 2, 0),
        "AfRange": (0, 2, 0),
        "LensPosition": (0.0, 15.0, 1.0),
    },
    "formats": ("XBGR8888", "YUV420"),
    "sizes": ((640, 480), (1280, 720), (4608, 2592)),
}
CAMERA_MODULE_2 = {
    "Model": "imx219",
    "Id": "/base/soc/i2c0mux/i2c@1/imx219@10",
    "controls": {"FrameDurationLimits": (33333, 120000, 33333)},
    "formats": ("XBGR8888", "YUV420"),
    "sizes": ((640, 480), (3280, 2464)),
}
UVC_WEBCAM = {
    "Model": "HD Pro Webcam C920",
    "Id": "/base/axi/pcie@120000/rp1/usb@200000-1:1.0-046d:082d",
    "controls": {"Brightness": (-1.0, 1.0, 0.0)},
    "formats": ("YUYV", "MJPEG"),
    "sizes": ((640, 480), (1280, 720)),
}
UVC_MJPEG_ONLY = {**UVC_WEBCAM, "Model": "cheap webcam", "formats": ("MJPEG",)}


@dataclass
class FakeCameraBus:
    """What is attached, and how libcamera behaves, as the test sets it."""

    cameras: list[dict[str, Any]] = field(default_factory=lambda: [CAMERA_MODULE_3])
    made: list[FakePicamera2] = field(default_factory=list)
    held: set[int] = field(default_factory=set)
    close_hangs: threading.Event = field(default_factory=threading.Event)
    """Set: ``close`` blocks too (until :meth:`release_all`)."""
    close_error: str | None = None
    """Set: ``close`` raises RuntimeError with this message, the camera still held."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def info(self) -> list[dict[str, Any]]:
        entries = [
            {"Model": c["Model"], "Id": c["Id"], "Num": i, "Location": 2, "Rotation": 0}
            for i, c in enumerate(self.cameras)
        ]
        return sorted(entries, key=lambda e: ("/usb" not in e["Id"], e["Id"]), reverse=True)

    def modules(self) -> tuple[types.ModuleType, types.ModuleType]:
        """``picamera2`` and ``libcamera`` module objects backed by this bus."""
        bus = self

        class Picamera2(FakePicamera2):
            @staticmethod
            def global_camera_info() -> list[dict[str, Any]]:
                return bus.info()

            def __init__(self, camera_num: int = 0) -> None:
                super().__init__(bus, camera_num)

        picamera2 = types.ModuleType("picamera2")
        picamera2.Picamera2 = Picamera2  # type: ignore[attr-defined]
        libcamera = types.ModuleType("libcamera")
        libcamera.controls = types.SimpleNamespace(  # type: ignore[attr-defined]
            AfModeEnum=AfModeEnum, AfRangeEnum=AfRangeEnum
        )
        return picamera2, libcamera

    def hang(self) -> None:
        """libcamera stops completing the open cameras' requests: their
        captures block (a camera opened afterwards works)."""
        for camera in self.made:
            camera.hung = True

    def release_all(self) -> None:
        """Let every blocked call return (the end of a test)."""
        self.close_hangs.clear()
        for camera in list(self.made):
            camera.wake.set()


def install(monkeypatch: Any, bus: FakeCameraBus) -> FakeCameraBus:
    """Put ``bus``'s picamera2 and libcamera in ``sys.modules`` for one test
    (``monkeypatch`` is pytest's fixture)."""
    import sys

    picamera2, libcamera = bus.modules()
    monkeypatch.setitem(sys.modules, "picamera2", picamera2)
    monkeypatch.setitem(sys.modules, "libcamera", libcamera)
    return bus


class FakePicamera2:
    def __init__(self, bus: FakeCameraBus, camera_num: int) -> None:
        info = bus.info()[camera_num]  # IndexError for a missing camera, as picamera2
        self.bus = bus
        self.index = int(info["Num"])
        self.spec = bus.cameras[self.index]
        with bus.lock:
            if self.index in bus.held:
                raise RuntimeError("Camera __init__ sequence did not complete.")
            bus.held.add(self.index)
        self.is_open = True
        self.started = False
        self.config: dict[str, Any] = {}
        self.requested: dict[str, Any] = {}
        self.controls_set: dict[str, Any] = {}
        self.captures = 0
        self.hung = False
        self.capture_error: str | None = None
        """Set: captures raise RuntimeError with this message (a failed request)."""
        self.closes = 0
        self.wake = threading.Event()
        self.blocked = threading.Event()
        self.closed = threading.Event()
        bus.made.append(self)

    @property
    def uvc(self) -> bool:
        return "/usb" in self.spec["Id"]

    @property
    def camera_controls(self) -> dict[str, tuple[Any, Any, Any]]:
        return dict(self.spec["controls"])

    @property
    def camera_properties(self) -> dict[str, Any]:
        properties: dict[str, Any] = {"Model": self.spec["Model"]}
        if not self.uvc:
            properties["ColorFilterArrangement"] = 0
        return properties

    def create_video_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        controls: dict[str, Any] | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        main = {"format": "XBGR8888", "size": (1280, 720), **(main or {})}
        if lores is not None:
            lores = {"format": "YUV420", "size": main["size"], **lores}
            width, height = lores["size"]
            lores["size"] = (width - width % 64, height - height % 2)
        return {"main": main, "lores": lores, "controls": dict(controls or {})}

    def configure(self, config: dict[str, Any]) -> None:
        self.requested = config
        if self.uvc and config.get("lores") is not None:
            raise RuntimeError(f"Configuration failed: {config}")
        for name in config["controls"]:
            if name not in self.spec["controls"]:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")
        settled: dict[str, Any] = {}
        for stream in ("main", "lores"):
            wanted = config.get(stream)
            if wanted is None:
                continue
            fmt = wanted["format"]
            size = tuple(wanted["size"])
            if self.uvc:  # libcamera adjusts to what the webcam has
                fmt = fmt if fmt in self.spec["formats"] else self.spec["formats"][0]
                size = size if size in self.spec["sizes"] else self.spec["sizes"][0]
            width = size[0]
            bytes_per_pixel = {"YUYV": 2, "XBGR8888": 4}.get(fmt, 1)
            stride = (width * bytes_per_pixel + 63) // 64 * 64 + 64  # padded rows
            settled[stream] = {"format": fmt, "size": size, "stride": stride}
        self.config = {**config, **settled}
        self.controls_set.update(config["controls"])

    def camera_configuration(self) -> dict[str, Any]:
        return self.config

    def set_controls(self, controls: dict[str, Any]) -> None:
        self.controls_set.update(controls)

    def start(self) -> None:
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        stream = self.config[name]
        if stream is None:
            raise RuntimeError(f"stream {name} was not configured")
        if self.hung:
            self.blocked.set()
            self.wake.wait(WAIT_S)
        if self.closed.is_set():
            raise RuntimeError("Camera is closed")
        if self.capture_error is not None:
            raise RuntimeError(self.capture_error)
        if self.captures:
            self.wake.wait(FRAME_INTERVAL_S)  # the camera's frame rate, roughly
        self.captures += 1
        (width, height), stride, fmt = stream["size"], stream["stride"], stream["format"]
        if fmt == "YUV420":
            image = np.full((height * 3 // 2, stride), 250, dtype=np.uint8)  # U, V, padding
            image[:height, :width] = Y_VALUE
            return image
        if fmt == "YUYV":
            image = np.full((height, stride // 2, 2), 250, dtype=np.uint8)
            image[:height, :width, 0] = Y_VALUE
            return image
        if fmt == "MJPEG":
            return np.full((height, width, 3), Y_VALUE, dtype=np.uint8)
        if fmt == "XBGR8888":
            image = np.full((height, width, 4), 255, dtype=np.uint8)
            image[:, :, :3] = Y_VALUE
            return image
        raise RuntimeError(f"Format {fmt} not supported")

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closes += 1
        if self.bus.close_hangs.is_set():
            self.wake.wait(WAIT_S)
        if self.bus.close_error is not None:
            raise RuntimeError(self.bus.close_error)
        if not self.is_open:
            return
        self.is_open = False
        self.closed.set()
        with self.bus.lock:
            self.bus.held.discard(self.index)
