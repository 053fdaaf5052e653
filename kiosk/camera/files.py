"""Replays of recorded frames: a video, a folder of images, or one image
(see :class:`FileSource`). The CLI's ``decode``, ``check --image`` and
``replay`` read files through it, so every command picks up the same images.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from kiosk.camera.base import ClosingSource, Frame, GreyImage, Pacer, SourceState, to_grey
from kiosk.clock import Clock
from kiosk.errors import CameraError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
"""Files a folder replay picks up, compared case-insensitively: the still
image formats OpenCV reads. (Only recent OpenCV releases read GIF; an older
one reports a GIF as an unreadable image.)"""


def is_image_file(path: Path) -> bool:
    """Whether ``path`` names a still image (by its suffix), not a video."""
    return path.suffix.lower() in IMAGE_SUFFIXES


FOLDER_FPS = 10.0
"""The frame rate a folder of images is replayed at when none is given:
image ``i`` was taken ``i / 10`` seconds after the first."""


def recording_frame_rate(path: Path) -> float | None:
    """The frame rate a video file states (frames per second), or None for
    a folder, an image, or a video that states none."""
    if path.is_dir() or not path.is_file() or is_image_file(path):
        return None
    capture = cv2.VideoCapture(str(path))
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS)) if capture.isOpened() else 0.0
    finally:
        capture.release()
    return fps if fps > 0 else None


class RecordingClock:
    """The time of a recording being replayed: it moves only when the
    replay waits for the next frame (``sleep``), so a paced
    :class:`FileSource` on it delivers frame ``i`` at ``i / fps`` seconds
    of the recording, however fast the machine decodes.

    Every timer of the pipeline (the hysteresis, presence, expiry) then
    measures the recording's own time, and a replay decides the same at any
    machine speed. ``now()`` is ``start`` plus the recording time elapsed;
    ``synchronised`` is what the replay reports for the events' clock.
    """

    def __init__(self, *, start: datetime, synchronised: bool) -> None:
        self._start = start
        self._elapsed_s = 0.0
        self._synchronised = synchronised
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._start + timedelta(seconds=self._elapsed_s)

    def monotonic(self) -> float:
        with self._lock:
            return self._elapsed_s

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._elapsed_s += max(0.0, seconds)

    def synchronised(self) -> bool:
        return self._synchronised


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


class FileSource(ClosingSource):
    """A recorded video, or a folder of images (sorted by name), replayed.

    With ``fps`` the replay runs in real time on the clock, like a camera:
    a slow consumer gets the newest due frame and the ones in between are
    dropped. With ``fps=None`` every frame is returned as fast as it is read
    (benchmarks). ``exhausted`` becomes True as the last frame is returned.
    ``Frame.index`` is the frame's position in the file or folder; a folder
    image that cannot be read is skipped and reported in ``state``.

    Raises :class:`CameraError` if ``path`` is neither a readable video nor a
    folder holding images (:data:`IMAGE_SUFFIXES`). A single image file is
    replayed as a one-frame folder.
    """

    def __init__(self, path: str | Path, *, clock: Clock, fps: float | None = None) -> None:
        self.path = Path(path)
        self._clock = clock
        self._pacer = None if fps is None else Pacer(clock, fps)
        self._reader: _FrameReader
        self._unreadable: list[str]
        if self.path.is_dir():
            files = sorted(p for p in self.path.iterdir() if p.is_file() and is_image_file(p))
            if not files:
                raise CameraError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {self.path}")
            folder = _ImageFolderReader(files)
            self._reader, self._unreadable = folder, folder.unreadable
        elif self.path.is_file() and is_image_file(self.path):
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


class TimedReplay(FileSource):
    """A replay that notes, on this machine's clock, when it read each frame,
    so a decision's latency is real although the replay's clock is the
    recording's."""

    def __init__(self, path: str | Path, *, clock: Clock, fps: float, real: Clock) -> None:
        super().__init__(path, clock=clock, fps=fps)
        self._real = real
        self._read_at: dict[int, float] = {}

    def read(self, timeout_s: float) -> Frame | None:
        frame = super().read(timeout_s)
        if frame is not None:
            self._read_at = {frame.index: self._real.monotonic()}
        return frame

    def ms_since_read(self, index: int) -> float:
        read_at = self._read_at.get(index)
        return 0.0 if read_at is None else (self._real.monotonic() - read_at) * 1000.0
