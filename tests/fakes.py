"""Hand-written fakes shared by the tests and the benchmarks.

The benchmarks (``bench/``) may import from here; the tests import nothing
from ``bench/`` except to run a benchmark's own short version.

- :class:`FakeCamera`: the webcam behind ``cv2.VideoCapture`` for
  :class:`kiosk.camera.V4l2Source` (its ``open_capture`` seam), stepped by a
  test or paced in real time for a benchmark.
- :func:`fill_log`: a database with many events, fast, for tests that need
  volume rather than realistic rows.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kiosk.store import Store

WAIT_S = 10.0
"""Generous real-time limit for :meth:`FakeCamera.offer` (a loaded CI box)."""


class FakeCamera:
    """The webcam behind the device node, as a test or a benchmark drives it.

    Modes (:meth:`set_mode`): ``streaming``; ``stalled`` -- every read
    blocks (a hung driver; opens still succeed); ``error`` -- reads raise
    ``OSError(EIO)``; ``gone`` -- unplugged: reads fail, opens find nothing.
    A change of mode wakes every blocked read. Only the newest connection
    streams; an older one's read fails (its stream ended with it).

    Pacing while streaming:

    - stepped (``fps`` None, for tests on a fake clock): a read returns one
      frame each time the test calls :meth:`offer`, and waits in between;
      :attr:`parked` counts the reads waiting inside the device, so a test
      can wait until nothing moves before it acts;
    - real time (``fps`` given, for benchmarks): the newest connection
      delivers ``fps`` frames a second on ``monotonic``'s clock, the first
      ``first_frame_s`` after it opened; opening takes ``open_delay_s``
      (like a USB webcam waking up).
    """

    def __init__(
        self,
        image: np.ndarray,
        *,
        fps: float | None = None,
        open_delay_s: float = 0.0,
        first_frame_s: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.image = image
        self.fps = fps
        self.open_delay_s = open_delay_s
        self.first_frame_s = first_frame_s
        self.monotonic = monotonic
        self.mode = "streaming"
        self.opens = 0
        self.captures: list[FakeCapture] = []
        self.parked = 0  # reads blocked inside the device, not woken since
        self.epoch = 0  # bumped by every change of mode, which wakes them all
        self.pending = 0  # frames offered, not yet read
        self.cond = threading.Condition()

    def open(self) -> FakeCapture:
        """What ``cv2.VideoCapture(device)`` finds."""
        with self.cond:
            self.opens += 1
            if self.mode != "gone" and self.open_delay_s > 0:
                self.cond.wait_for(lambda: self.mode == "gone", self.open_delay_s)
            capture = FakeCapture(self, opened=self.mode != "gone")
            if capture.opened:
                capture.next_due = self.monotonic() + self.first_frame_s
                self.captures.append(capture)
            return capture

    @property
    def newest(self) -> FakeCapture | None:
        return self.captures[-1] if self.captures else None

    def set_mode(self, mode: str) -> None:
        with self.cond:
            self.mode = mode
            # Every blocked read is woken to act on the new mode: none counts
            # as parked any more, even before its thread has run.
            self.epoch += 1
            self.parked = 0
            self.cond.notify_all()

    def offer(self) -> bool:
        """Stepped pacing: if streaming and the current connection waits for a
        frame, give it one and wait until the grabber handed it over: it reads
        again, or it let the device go (an abandoned connection drops the
        frame and ends)."""
        assert self.fps is None, "a camera paced in real time is not offered frames"
        with self.cond:
            newest = self.newest
            if self.mode != "streaming" or newest is None or not newest.waiting:
                return False
            served = newest.served
            self.pending = 1
            self.cond.notify_all()
            assert self.cond.wait_for(
                lambda: newest.served > served and (newest.waiting or newest.released), WAIT_S
            )
            return True


class FakeCapture:
    """One ``cv2.VideoCapture`` on a :class:`FakeCamera`."""

    def __init__(self, camera: FakeCamera, *, opened: bool) -> None:
        self.camera = camera
        self.opened = opened
        self.waiting = False
        self.served = 0
        self.released = False
        self.next_due = 0.0  # real-time pacing: when the next frame is due

    def isOpened(self) -> bool:
        return self.opened

    def set(self, prop_id: int, value: float) -> bool:
        return True

    def read(self) -> tuple[bool, Any]:
        camera = self.camera
        with camera.cond:
            while True:
                if camera.mode == "gone":
                    return False, None
                if camera.mode == "error":
                    raise OSError(errno.EIO, "VIDIOC_DQBUF: Input/output error")
                if camera.mode == "streaming":
                    if self is not camera.newest:
                        return False, None
                    if camera.fps is not None:
                        t = camera.monotonic()
                        if t >= self.next_due:
                            self.next_due = max(self.next_due + 1 / camera.fps, t)
                            self.served += 1
                            return True, camera.image
                        camera.cond.wait(self.next_due - t)
                        continue
                    if camera.pending:
                        camera.pending -= 1
                        self.served += 1
                        return True, camera.image
                self._park()

    def _park(self) -> None:
        """Wait inside the device until a frame is offered or the mode changes."""
        camera = self.camera
        self.waiting = True
        camera.parked += 1
        epoch = camera.epoch
        camera.cond.notify_all()
        camera.cond.wait()
        if camera.epoch == epoch:
            camera.parked -= 1
        self.waiting = False

    def release(self) -> None:
        with self.camera.cond:
            self.released = True
            self.camera.cond.notify_all()


def fill_log(path: Path, rows: int) -> None:
    """Create the database at ``path`` with the project's schema and ``rows``
    allowed entries, one a minute from 2025-01-01 UTC, in one statement.

    For tests that need volume (an export that takes a while), not realistic
    rows: the benchmarks' logs come from :func:`bench.export_bench.populate`.
    """
    Store.open(path, boot_id="fill").close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            """
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
            INSERT INTO events (id, gate_id, at_utc, utc_offset_min, boot_id, seq, clock_synced,
                                direction, decision, reason, kind, subject_hash, display_name,
                                masked_id)
            SELECT printf('%032x', i), 'gate-1',
                   strftime('%Y-%m-%dT%H:%M:%S.000000Z', '2025-01-01', printf('+%d minutes', i)),
                   420, 'fill', i, 1, 'in', 'allow', 'ok', 'cccd', printf('%032x', i % 500),
                   'Nguyễn Văn ' || (i % 500), '********' || printf('%04d', i % 10000)
            FROM n
            """,
            (rows,),
        )
    conn.close()
