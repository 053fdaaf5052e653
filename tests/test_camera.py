"""Frame sources: replays, the synthetic camera, and live cameras behind fakes.

Live-camera tests use a fake ``cv2.VideoCapture`` whose ``read`` plays a
script (images, failures, stalls) and a fake USB port deciding what each open
finds. Time is a FakeClock; real threads are only ever waited on through
events with generous timeouts, never by sleeping.
"""

from __future__ import annotations

import logging
import sys
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import zxingcpp
from hypothesis import given
from hypothesis import strategies as st

from kiosk.camera import (
    PICAMERA2_INSTALL,
    Backoff,
    FileSource,
    Focus,
    Frame,
    FrameSource,
    Picamera2Source,
    SyntheticSource,
    V4l2Source,
    open_source,
)
from kiosk.camera.focus import focus_controls, sharpness
from kiosk.clock import FakeClock
from kiosk.errors import CameraError, ConfigError, DependencyMissing
from kiosk.synthetic import (
    CodeInView,
    FrameRenderer,
    Scene,
    qr_matrix,
    render_code_frame,
    textured_background,
)
from tests.fake_picamera2 import (
    CAMERA_MODULE_2,
    UVC_MJPEG_ONLY,
    UVC_WEBCAM,
    Y_VALUE,
    AfModeEnum,
    AfRangeEnum,
    FakeCameraBus,
    install,
)
from tests.waiting import wait_until

NAME = "Nguyễn Văn An"
CCCD = "001089012345|123456789|Nguyễn Văn An|01011990|Nam|Số 1 Hàng Bạc, Hoàn Kiếm, Hà Nội|15082021"
WAIT_S = 10.0
"""Generous real-time limit for anything a thread has to do (a loaded CI box)."""


def decoded(grey: np.ndarray) -> list[bytes]:
    return sorted(result.bytes for result in zxingcpp.read_barcodes(grey))


def flat(value: int, shape: tuple[int, ...] = (48, 64)) -> np.ndarray:
    return np.full(shape, value, dtype=np.uint8)


# --------------------------------------------------------------------------
# The renderer


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (NAME, NAME.encode("utf-8")),
        (CCCD, CCCD.encode("utf-8")),
        (b"\x00\xff\x80 not text \xfe", b"\x00\xff\x80 not text \xfe"),
        ("0123456789", b"0123456789"),
    ],
)
def test_rendered_code_decodes_to_the_exact_bytes(payload: bytes | str, expected: bytes) -> None:
    grey = render_code_frame(payload, angle_deg=8.0, perspective=0.05)
    assert decoded(grey) == [expected]


@pytest.mark.parametrize(
    "distortion",
    [
        {"angle_deg": 35.0, "perspective": 0.2},
        {"module_px": 2.5},
        {"module_px": 9.0, "center": (0.3, 0.6)},
        {"blur_sigma": 1.4, "noise_sigma": 8.0},
        {"contrast": 0.3},
        {"glare": 0.5},
        {"moire": 0.5, "carrier": "phone"},
        {"inverted": True, "carrier": "phone"},
    ],
    ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()),
)
def test_distorted_code_still_decodes(distortion: dict[str, Any]) -> None:
    grey = render_code_frame(NAME, rng=np.random.default_rng(3), **distortion)
    assert grey.dtype == np.uint8
    assert grey.shape == (480, 640)
    assert decoded(grey) == [NAME.encode()]


def test_eci_header_is_written_only_when_asked() -> None:
    def with_eci_markers(eci: bool) -> bytes:
        grey = render_code_frame(NAME, eci=eci)
        (result,) = zxingcpp.read_barcodes(grey, text_mode=zxingcpp.TextMode.HexECI)
        return bytes.fromhex(result.text)

    # The symbology identifier ]Q2 says "ECI present", then ECI 000026: UTF-8.
    assert with_eci_markers(eci=True) == b"]Q2\\000026" + NAME.encode()
    assert with_eci_markers(eci=False) == b"]Q1" + NAME.encode()


def test_eci_needs_utf8_payload() -> None:
    with pytest.raises(UnicodeDecodeError):
        qr_matrix(b"\xff\xfe", eci=True)


def test_frame_size_is_width_by_height() -> None:
    grey = render_code_frame("x", size=(320, 240), module_px=3.0)
    assert grey.shape == (240, 320)
    assert decoded(grey) == [b"x"]


def test_same_rng_seed_renders_the_same_frame() -> None:
    first = render_code_frame(NAME, noise_sigma=4.0, rng=np.random.default_rng(11))
    again = render_code_frame(NAME, noise_sigma=4.0, rng=np.random.default_rng(11))
    other = render_code_frame(NAME, noise_sigma=4.0, rng=np.random.default_rng(12))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_background_alone_holds_no_code() -> None:
    for seed in range(3):
        assert decoded(textured_background((640, 480), np.random.default_rng(seed))) == []


def test_renderer_puts_two_codes_in_one_frame() -> None:
    renderer = FrameRenderer(rng=np.random.default_rng(5))
    grey = renderer.render(
        [
            CodeInView("left", center=(0.27, 0.5), angle_deg=-10.0),
            CodeInView(NAME, center=(0.73, 0.45), carrier="phone", moire=0.2),
        ]
    )
    assert decoded(grey) == sorted([b"left", NAME.encode()])


def test_scene_rejects_a_bare_payload_instead_of_a_tuple() -> None:
    with pytest.raises(TypeError, match="tuple"):
        Scene("abc", 1.0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# The synthetic camera


def read_all(source: FrameSource, *, limit: int = 1000) -> list[Frame]:
    frames: list[Frame] = []
    while not source.exhausted and len(frames) < limit:
        frame = source.read(timeout_s=1.0)
        if frame is not None:
            frames.append(frame)
    return frames


def test_synthetic_schedule_shows_codes_only_during_their_scenes() -> None:
    clock = FakeClock()
    schedule = [Scene((), 0.4), Scene((NAME,), 0.4), Scene(("staff-17", CCCD), 0.4)]
    source = SyntheticSource(schedule, clock=clock, fps=10.0, seed=1)
    start = clock.monotonic()

    frames = read_all(source)

    assert [f.index for f in frames] == list(range(12))
    seen = [decoded(f.grey) for f in frames]
    assert seen[:4] == [[]] * 4
    assert seen[4:8] == [[NAME.encode()]] * 4
    assert seen[8:] == [sorted([b"staff-17", CCCD.encode()])] * 4
    assert source.exhausted
    assert source.read(timeout_s=1.0) is None
    assert clock.monotonic() - start == pytest.approx(1.1)  # 12 frames at 10 fps
    assert [f.captured_mono - start for f in frames] == pytest.approx([i / 10 for i in range(12)])


def test_synthetic_frames_depend_only_on_seed_and_index() -> None:
    schedule = [Scene((NAME,), 1.0)]
    a = SyntheticSource(schedule, clock=FakeClock(), fps=10.0, seed=4)
    b = SyntheticSource(schedule, clock=FakeClock(), fps=10.0, seed=4)
    c = SyntheticSource(schedule, clock=FakeClock(), fps=10.0, seed=5)
    frames_a = read_all(a)
    assert all(np.array_equal(f.grey, b.render(f.index)) for f in frames_a)
    assert not np.array_equal(frames_a[0].grey, c.render(0))
    assert not np.array_equal(frames_a[0].grey, frames_a[1].grey)  # noise and tremor move


def test_looping_synthetic_schedule_never_runs_out() -> None:
    schedule = [Scene(("a",), 0.2), Scene((), 0.1)]
    source = SyntheticSource(schedule, clock=FakeClock(), fps=10.0, loop=True)
    frames = [source.read(timeout_s=1.0) for _ in range(10)]
    assert [f.index for f in frames if f is not None] == list(range(10))
    assert not source.exhausted
    assert [bool(decoded(f.grey)) for f in frames if f is not None] == [True, True, False] * 3 + [
        True
    ]


def test_synthetic_read_waits_only_up_to_its_timeout() -> None:
    clock = FakeClock()
    source = SyntheticSource([Scene((), 5.0)], clock=clock, fps=2.0)
    assert source.read(timeout_s=1.0) is not None
    before = clock.monotonic()
    assert source.read(timeout_s=0.1) is None  # next frame is due in 0.5 s
    assert clock.monotonic() - before == pytest.approx(0.1)
    frame = source.read(timeout_s=1.0)
    assert frame is not None
    assert frame.index == 1
    assert clock.monotonic() - before == pytest.approx(0.5)


def test_slow_consumer_of_synthetic_camera_gets_the_newest_frame() -> None:
    clock = FakeClock()
    source = SyntheticSource([Scene((), 5.0)], clock=clock, fps=10.0)
    assert source.read(timeout_s=1.0) is not None
    clock.advance(0.35)
    frame = source.read(timeout_s=1.0)
    assert frame is not None
    assert frame.index == 3


# --------------------------------------------------------------------------
# File replays


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Five frames of distinct brightness, named so that sorting matters."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(5):
        image = np.full((48, 64, 3), (20 + 40 * i, 10, 200), dtype=np.uint8)  # BGR
        cv2.imwrite(str(folder / f"frame_{i:02d}.{'png' if i % 2 else 'bmp'}"), image)
    (folder / "notes.txt").write_text("not a frame")
    return folder


def brightness_order(frames: Sequence[Frame]) -> bool:
    means = [float(f.grey.mean()) for f in frames]
    return means == sorted(means) and len(set(means)) == len(means)


def test_folder_replay_gives_every_image_in_name_order_as_grey(image_folder: Path) -> None:
    source = FileSource(image_folder, clock=FakeClock(), fps=None)
    frames = read_all(source)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert all(f.grey.dtype == np.uint8 and f.grey.shape == (48, 64) for f in frames)
    assert brightness_order(frames)
    assert source.exhausted
    assert source.state.ok
    assert source.read(timeout_s=1.0) is None


@pytest.fixture
def video_file(tmp_path: Path) -> Path:
    path = tmp_path / "gate.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (64, 48))
    assert writer.isOpened()
    for i in range(6):
        writer.write(np.full((48, 64, 3), 30 + 35 * i, dtype=np.uint8))
    writer.release()
    return path


def test_video_replay_gives_every_frame_in_order(video_file: Path) -> None:
    with FileSource(video_file, clock=FakeClock(), fps=None) as source:
        frames = read_all(source)
        assert source.exhausted
    assert [f.index for f in frames] == list(range(6))
    assert all(f.grey.ndim == 2 and f.grey.shape == (48, 64) for f in frames)
    assert brightness_order(frames)


def test_paced_replay_runs_at_fps_on_the_clock(image_folder: Path) -> None:
    clock = FakeClock()
    source = FileSource(image_folder, clock=clock, fps=10.0)
    start = clock.monotonic()
    frames = read_all(source)
    assert len(frames) == 5
    assert clock.monotonic() - start == pytest.approx(0.4)
    assert [f.captured_mono - start for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_paced_replay_drops_frames_for_a_slow_consumer(video_file: Path) -> None:
    clock = FakeClock()
    source = FileSource(video_file, clock=clock, fps=10.0)
    first = source.read(timeout_s=1.0)
    clock.advance(0.35)
    newest = source.read(timeout_s=1.0)
    assert first is not None
    assert newest is not None
    assert (first.index, newest.index) == (0, 3)
    assert float(newest.grey.mean()) == pytest.approx(30 + 35 * 3, abs=3)
    clock.advance(10.0)
    assert source.read(timeout_s=1.0) is None  # past the end
    assert source.exhausted


def test_replay_of_missing_or_empty_path_is_a_camera_error(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="no such"):
        FileSource(tmp_path / "absent.avi", clock=FakeClock())
    with pytest.raises(CameraError, match="no images"):
        FileSource(tmp_path, clock=FakeClock())


@pytest.mark.parametrize("suffix", [".tif", ".tiff", ".webp", ".JPG"])
def test_folder_replay_reads_every_still_format_opencv_writes(tmp_path: Path, suffix: str) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    image = np.full((48, 64), 128, dtype=np.uint8)
    for name in ("a", "b"):
        assert cv2.imwrite(str(folder / f"{name}{suffix}"), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    source = FileSource(folder, clock=FakeClock(), fps=None)
    frames = read_all(source)
    assert [f.index for f in frames] == [0, 1]
    assert all(f.grey.shape == (48, 64) for f in frames)
    assert source.state.ok


def test_unreadable_image_is_skipped_and_reported(image_folder: Path) -> None:
    (image_folder / "frame_02.bmp").write_bytes(b"not a bitmap")
    source = FileSource(image_folder, clock=FakeClock(), fps=None)
    frames = read_all(source)
    assert [f.index for f in frames] == [0, 1, 3, 4]
    assert not source.state.ok
    assert "frame_02.bmp" in source.state.detail


# --------------------------------------------------------------------------
# USB webcam through a fake capture

FAIL = object()
"""Script step: ``read`` reports failure (a device unplugged mid-stream)."""


class FakeCapture:
    """A ``cv2.VideoCapture`` stand-in whose ``read`` plays a script of images
    and FAILs; once the script is used up it blocks, like a stalled camera,
    until ``unstall`` is set (then it fails)."""

    def __init__(self, script: Sequence[object] = (), *, opened: bool = True) -> None:
        self.script = list(script)
        self.opened = opened
        self.props: dict[int, float] = {}
        self.released = False
        self.reads = 0
        self.unstall = threading.Event()
        self._cond = threading.Condition()

    def isOpened(self) -> bool:
        return self.opened

    def set(self, prop_id: int, value: float) -> bool:
        self.props[prop_id] = value
        return True

    def read(self) -> tuple[bool, Any]:
        with self._cond:
            self.reads += 1
            self._cond.notify_all()
            step = self.script.pop(0) if self.script else None
        if step is None:
            self.unstall.wait(WAIT_S * 3)
            return False, None
        if step is FAIL:
            return False, None
        return True, step

    def release(self) -> None:
        self.released = True

    def wait_for_reads(self, count: int) -> bool:
        """Whether ``read`` has been entered ``count`` times: by then every
        earlier image has been handed to the source."""
        with self._cond:
            return self._cond.wait_for(lambda: self.reads >= count, WAIT_S)


class FakePort:
    """The USB port: what each open finds, in order (a capture, or an
    exception); once the plan is used up, nothing is plugged in."""

    def __init__(self, plan: Sequence[FakeCapture | Exception]) -> None:
        self.plan = list(plan)
        self.opens = 0
        self.made: list[FakeCapture] = []
        self._lock = threading.Lock()

    def __call__(self) -> FakeCapture:
        with self._lock:
            self.opens += 1
            item = self.plan.pop(0) if self.plan else FakeCapture(opened=False)
            if isinstance(item, Exception):
                raise item
            self.made.append(item)
            return item

    def unstall_all(self) -> None:
        with self._lock:
            for capture in self.made:
                capture.unstall.set()


@pytest.fixture
def webcam() -> Iterator[Callable[..., tuple[V4l2Source, FakePort, FakeClock]]]:
    """Builds V4l2Sources on fake ports; closes them and checks their threads ended."""
    made: list[tuple[V4l2Source, FakePort]] = []

    def build(
        plan: Sequence[FakeCapture | Exception], **kw: Any
    ) -> tuple[V4l2Source, FakePort, FakeClock]:
        clock = FakeClock()
        port = FakePort(plan)
        source = V4l2Source(0, clock=clock, open_capture=port, join_timeout_s=WAIT_S, **kw)
        made.append((source, port))
        return source, port, clock

    yield build
    for source, port in made:
        port.unstall_all()
        source.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("v4l2:")]


def test_webcam_asks_for_one_buffer_and_the_requested_format(webcam: Any) -> None:
    capture = FakeCapture([flat(1)])
    source, _, _ = webcam([capture], size=(320, 240), fps=12.0, fourcc="MJPG")
    assert source.read(WAIT_S) is not None
    assert capture.props[cv2.CAP_PROP_BUFFERSIZE] == 1
    assert capture.props[cv2.CAP_PROP_FRAME_WIDTH] == 320
    assert capture.props[cv2.CAP_PROP_FRAME_HEIGHT] == 240
    assert capture.props[cv2.CAP_PROP_FPS] == 12.0
    assert capture.props[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter.fourcc(*"MJPG")


def test_slow_reader_gets_only_the_newest_webcam_frame(webcam: Any) -> None:
    capture = FakeCapture([flat(10), flat(20), flat(30)])
    source, _, _ = webcam([capture])
    assert capture.wait_for_reads(4)  # all three frames captured, nobody read them

    frame = source.read(WAIT_S)

    assert frame is not None
    assert (int(frame.grey[0, 0]), frame.index) == (30, 2)
    assert source.read(0.01) is None  # the older frames were dropped, not queued


def test_webcam_colour_frames_become_grey(webcam: Any) -> None:
    bgr = np.zeros((48, 64, 3), dtype=np.uint8)
    bgr[..., 1] = 200  # pure green
    source, _, _ = webcam([FakeCapture([bgr])])
    frame = source.read(WAIT_S)
    assert frame is not None
    assert frame.grey.shape == (48, 64)
    assert int(frame.grey[0, 0]) == int(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[0, 0])


def test_stalled_webcam_is_reported_and_reopened_after_backoff(webcam: Any) -> None:
    source, port, clock = webcam([FakeCapture([flat(1)]), FakeCapture([flat(2)])])
    assert source.read(WAIT_S) is not None
    assert source.read(0.01) is None
    assert source.state.ok  # a frame late is not yet a stall

    clock.advance(2.5)
    assert source.read(0.01) is None
    state = source.state
    assert not state.ok
    assert "no frame for 2.5 s" in state.detail

    clock.advance(0.49)
    assert source.read(0.01) is None
    assert port.opens == 1  # still backing off
    clock.advance(0.01)
    frame = source.read(WAIT_S)

    assert port.opens == 2
    assert frame is not None
    assert int(frame.grey[0, 0]) == 2
    assert source.state.ok
    assert source.state.reopen_attempts == 0


def test_vanished_webcam_is_retried_with_growing_backoff_without_raising(
    webcam: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kiosk.camera")
    plan: list[FakeCapture | Exception] = [
        FakeCapture([flat(1), FAIL]),  # unplugged after one frame
        FakeCapture(opened=False),
        OSError("No such device"),
        FakeCapture(opened=False),
        FakeCapture([flat(5)]),  # plugged back in
    ]
    source, port, clock = webcam(plan)
    assert source.read(WAIT_S) is not None
    assert source.read(WAIT_S) is None  # the failure wakes the reader
    assert not source.state.ok
    assert "read failed" in source.state.detail

    for attempt, delay_s in enumerate([0.5, 1.0, 2.0], start=1):
        clock.advance(delay_s - 0.05)
        assert source.read(0.0) is None
        assert port.opens == attempt  # not yet
        clock.advance(0.05)
        assert source.read(WAIT_S) is None  # reopened, and it failed again
        assert port.opens == attempt + 1
        assert not source.state.ok
        assert source.state.reopen_attempts == attempt

    assert "No such device" in caplog.text
    clock.advance(4.0)
    frame = source.read(WAIT_S)
    assert frame is not None
    assert int(frame.grey[0, 0]) == 5
    assert source.state.ok
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    recoveries = [r for r in caplog.records if "delivering again" in r.getMessage()]
    assert len(warnings) == 1  # one per state change, not one per attempt
    assert len(recoveries) == 1


def test_read_after_close_returns_none(webcam: Any) -> None:
    source, _, _ = webcam([FakeCapture([flat(1)])])
    source.close()
    assert source.read(0.01) is None


def test_backoff_doubles_up_to_its_ceiling() -> None:
    assert [Backoff().delay_s(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]


@given(st.integers(min_value=1, max_value=200))
def test_backoff_never_exceeds_its_ceiling_and_never_shrinks(failures: int) -> None:
    backoff = Backoff(first_s=0.25, factor=3.0, max_s=7.0)
    assert 0.25 <= backoff.delay_s(failures) <= 7.0
    assert backoff.delay_s(failures) <= backoff.delay_s(failures + 1)


# --------------------------------------------------------------------------
# Pi camera


def test_pi_camera_without_picamera2_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails
    with pytest.raises(DependencyMissing, match="sudo apt install python3-picamera2"):
        Picamera2Source(clock=FakeClock())
    assert PICAMERA2_INSTALL == "sudo apt install python3-picamera2"


@pytest.fixture
def camera_bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCameraBus]:
    """A fake picamera2 and libcamera in ``sys.modules``, a Camera Module 3 attached."""
    bus = install(monkeypatch, FakeCameraBus())
    yield bus
    bus.release_all()


def first_frame(**kw: Any) -> tuple[Frame | None, Picamera2Source]:
    """The first frame of a Picamera2Source built with ``kw``, closed after it."""
    kw.setdefault("clock", FakeClock())
    source = Picamera2Source(join_timeout_s=WAIT_S, **kw)
    try:
        return source.read(WAIT_S), source
    finally:
        source.close()


def test_pi_camera_frame_is_the_y_plane_of_the_lores_stream(camera_bus: FakeCameraBus) -> None:
    frame, _ = first_frame(size=(320, 240), fps=10.0)

    assert frame is not None
    assert frame.grey.shape == (240, 320)
    assert frame.grey.flags.c_contiguous
    assert np.all(frame.grey == Y_VALUE)
    (camera,) = camera_bus.made
    assert camera.requested["lores"] == {"size": (320, 240), "format": "YUV420"}
    assert camera.controls_set["FrameDurationLimits"] == (100_000, 100_000)
    assert not camera_bus.held  # closed with the source


def test_pi_camera_frame_is_cut_to_the_configured_size_not_the_one_asked_for(
    camera_bus: FakeCameraBus,
) -> None:
    # picamera2 aligns a YUV420 stream's width (650 -> 640 here); cutting the
    # frame at 650 columns would keep the stride's padding as a bright band.
    frame, source = first_frame(size=(650, 490))

    assert frame is not None
    assert frame.grey.shape == (490, 640)
    assert np.all(frame.grey == Y_VALUE)
    assert source.opened is not None
    assert (source.opened.size, source.opened.stream) == ((640, 490), "lores")


def test_usb_webcam_under_picamera2_is_given_one_stream(camera_bus: FakeCameraBus) -> None:
    camera_bus.cameras = [UVC_WEBCAM]
    frame, source = first_frame(size=(800, 600))

    assert frame is not None
    (camera,) = camera_bus.made
    assert camera.requested["lores"] is None
    assert camera.requested["main"]["format"] == "YUYV"
    assert camera.requested["controls"] == {}  # reports neither frame rate nor focus
    # The webcam has no 800x600: frames come in the size it settled on.
    assert frame.grey.shape == (480, 640)
    assert np.all(frame.grey == Y_VALUE)
    assert source.opened is not None
    assert source.opened.camera.uvc
    assert "USB webcam (UVC); main stream 640x480 YUYV" in source.opened.describe()


def test_webcam_that_only_sends_mjpeg_is_converted_from_the_decoded_picture(
    camera_bus: FakeCameraBus,
) -> None:
    camera_bus.cameras = [UVC_MJPEG_ONLY]
    frame, source = first_frame()

    assert frame is not None
    assert source.opened is not None
    assert source.opened.format == "MJPEG"
    assert frame.grey.shape == (480, 640)
    assert np.all(frame.grey == Y_VALUE)


def test_camera_number_follows_picamera2s_order_pi_cameras_before_webcams(
    camera_bus: FakeCameraBus,
) -> None:
    camera_bus.cameras = [UVC_WEBCAM, CAMERA_MODULE_2]
    _, pi_camera = first_frame(camera_num=0)
    _, webcam = first_frame(camera_num=1)

    assert pi_camera.opened is not None
    assert webcam.opened is not None
    assert (pi_camera.opened.camera.model, pi_camera.opened.stream) == ("imx219", "lores")
    assert (webcam.opened.camera.model, webcam.opened.stream) == ("HD Pro Webcam C920", "main")


def test_missing_camera_number_is_reported_with_what_libcamera_sees(
    camera_bus: FakeCameraBus,
) -> None:
    frame, source = first_frame(camera_num=2, clock=FakeClock())

    assert frame is None
    assert not source.state.ok
    assert "no camera number 2; libcamera sees: camera 0: imx708" in source.state.detail


@pytest.mark.parametrize(
    ("focus", "expected"),
    [
        (Focus(), {"AfMode": AfModeEnum.Continuous, "AfRange": AfRangeEnum.Macro}),
        (Focus("fixed", 10.0), {"AfMode": AfModeEnum.Manual, "LensPosition": 10.0}),
        (Focus("fixed", 25.0), {"AfMode": AfModeEnum.Manual, "LensPosition": 4.0}),
        (Focus("none"), {}),
    ],
)
def test_camera_module_3_is_focused_as_the_settings_say(
    camera_bus: FakeCameraBus, focus: Focus, expected: dict[str, Any]
) -> None:
    frame, _ = first_frame(focus=focus, fps=10.0)

    assert frame is not None
    (camera,) = camera_bus.made
    assert camera.controls_set == {"FrameDurationLimits": (100_000, 100_000), **expected}


def test_fixed_focus_closer_than_the_lens_reaches_is_clamped_and_said_so(
    camera_bus: FakeCameraBus,
) -> None:
    _, source = first_frame(focus=Focus("fixed", 5.0))  # 20 dioptres; the lens stops at 15

    (camera,) = camera_bus.made
    assert camera.controls_set["LensPosition"] == 15.0
    assert source.opened is not None
    assert "5 cm is outside the lens's range" in source.opened.focus.note


@pytest.mark.parametrize(
    ("focus", "level"), [(Focus(), logging.INFO), (Focus("fixed", 10.0), logging.WARNING)]
)
def test_camera_without_a_lens_motor_is_left_alone_and_said_so_once(
    camera_bus: FakeCameraBus, caplog: pytest.LogCaptureFixture, focus: Focus, level: int
) -> None:
    camera_bus.cameras = [CAMERA_MODULE_2]
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="kiosk.camera.picamera2")
    source = Picamera2Source(clock=clock, focus=focus, join_timeout_s=WAIT_S)
    try:
        assert source.read(WAIT_S) is not None
        camera_bus.made[0].capture_error = "dequeue failed"
        wait_until(lambda: source.read(0.05) is None and not source.state.ok, WAIT_S)
        clock.advance(1.0)  # past the backoff: a second Picamera2 is configured
        wait_until(lambda: source.read(0.05) is not None and len(camera_bus.made) == 2, WAIT_S)
    finally:
        source.close()

    for camera in camera_bus.made:
        assert "AfMode" not in camera.controls_set
        assert "LensPosition" not in camera.controls_set
    notes = [r for r in caplog.records if "focus:" in r.getMessage()]
    assert len(notes) == 1
    assert notes[0].levelno == level
    assert (
        "cannot move its lens" in notes[0].getMessage() or "no autofocus" in notes[0].getMessage()
    )


def test_focus_controls_are_only_those_the_camera_reports() -> None:
    enums = types.SimpleNamespace(AfModeEnum=AfModeEnum, AfRangeEnum=AfRangeEnum)
    af_only = {"AfMode": (0, 2, 0)}
    lens_only = {"LensPosition": (0.0, 10.0, 1.0)}

    assert focus_controls(Focus(), af_only, enums).controls == {"AfMode": AfModeEnum.Continuous}
    assert focus_controls(Focus("fixed", 20.0), lens_only, enums).controls == {"LensPosition": 5.0}
    assert not focus_controls(Focus("fixed", 20.0), af_only, enums).supported
    assert not focus_controls(Focus(), lens_only, enums).supported
    assert Focus("fixed", 12.5).dioptres == 8.0


def test_sharpness_is_higher_for_a_focused_code_than_a_blurred_one() -> None:
    sharp = render_code_frame(CCCD, blur_sigma=0.0, noise_sigma=0.0)
    blurred = np.asarray(cv2.GaussianBlur(sharp, (0, 0), 6.0), dtype=np.uint8)

    assert sharpness(sharp) > 5 * sharpness(blurred)


# --------------------------------------------------------------------------
# The factory


def test_factory_builds_each_kind(image_folder: Path) -> None:
    clock = FakeClock()
    synthetic = open_source("synthetic", clock=clock, schedule=[Scene(("a",), 1.0)], seed=3)
    assert isinstance(synthetic, SyntheticSource)
    replay = open_source("file", clock=clock, device=str(image_folder), fps=None)
    assert isinstance(replay, FileSource)
    assert len(read_all(replay)) == 5
    port = FakePort([FakeCapture([flat(9)])])
    webcam = open_source("v4l2", clock=clock, device="0", open_capture=port)
    try:
        assert isinstance(webcam, V4l2Source)
        assert webcam.device == 0
        assert webcam.read(WAIT_S) is not None
    finally:
        port.unstall_all()
        webcam.close()


@pytest.mark.parametrize(
    ("kind", "kw", "message"),
    [
        ("usb", {}, "unknown camera kind 'usb'"),
        ("synthetic", {}, "needs a schedule"),
        ("file", {}, "needs the video"),
    ],
)
def test_factory_refuses_incomplete_settings(kind: str, kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_source(kind, clock=FakeClock(), **kw)


# --------------------------------------------------------------------------
# What importing the package costs


def test_naming_frames_and_codes_loads_no_image_library() -> None:
    """The scan loop's types (and ``gatekiosk check --payload``, which never
    sees a frame) must not load OpenCV, numpy, the QR renderer or a backend."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from kiosk.camera import Frame, FrameSource, GreyImage, SourceState, open_source\n"
        "from kiosk.decoder import Code, Decoder, make_decoder\n"
        "heavy = ('cv2', 'numpy', 'segno', 'zxingcpp', 'pyzbar', 'picamera2')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
