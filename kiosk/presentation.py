"""One decision per presentation, not per frame.

A visitor holds a code in view for several seconds; the camera sees it in
dozens of frames and the decoder misses it in some. A code is *presented*
when it appears after having been out of view for at least ``hysteresis_s``.
"""

from __future__ import annotations

from collections.abc import Iterable

from kiosk.decoder import Code


class PresentationFilter:
    def __init__(self, *, hysteresis_s: float) -> None:
        self.hysteresis_s = hysteresis_s
        self._last_seen: dict[bytes, float] = {}

    def new_presentations(self, codes: Iterable[Code], seen_mono: float) -> list[Code]:
        """The codes in this frame that start a new presentation.

        ``seen_mono`` is the frame's capture time (monotonic seconds). Codes
        are told apart by their exact payload bytes; two different codes in
        one frame are each a presentation.
        """
        fresh: list[Code] = []
        for code in codes:
            last = self._last_seen.get(code.raw)
            if last is None or seen_mono - last > self.hysteresis_s:
                fresh.append(code)
            self._last_seen[code.raw] = seen_mono
        self._forget_older_than(seen_mono - self.hysteresis_s)
        return fresh

    def _forget_older_than(self, cutoff_mono: float) -> None:
        stale = [raw for raw, seen in self._last_seen.items() if seen < cutoff_mono]
        for raw in stale:
            del self._last_seen[raw]
