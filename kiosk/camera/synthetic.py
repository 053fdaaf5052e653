"""A camera that films a scripted queue of visitors (see :class:`SyntheticSource`):
the demo's camera, and the tests'. The frames come from the renderer in
:mod:`kiosk.synthetic`, which this module alone of the camera package loads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kiosk.camera.base import ClosingSource, Frame, GreyImage, Pacer, SourceState
from kiosk.clock import Clock
from kiosk.synthetic import CodeInView, FrameRenderer, Scene, plausible_look

_EPSILON_S = 1e-9
"""Slack for sums of float durations, so that a frame due exactly at a scene
boundary (0.1 + 0.2 s) belongs to the scene that starts there."""


@dataclass(frozen=True)
class _PreparedScene:
    scene_number: int  # counts scenes from the start, across loops
    looks: tuple[CodeInView, ...]
    jitter_phases: tuple[float, ...]
    glare_offsets: tuple[tuple[float, float], ...]


class SyntheticSource(ClosingSource):
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
        self._pacer = Pacer(clock, fps)
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
