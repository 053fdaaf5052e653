"""What the gate did about one presentation or one guard's admission."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kiosk.codes.base import Identified
from kiosk.policy import Decision
from kiosk.store import Event


@dataclass(frozen=True)
class Outcome:
    """One decided presentation, as the CLI and the demo report it."""

    frame_index: int | None
    """None for an override or an admission: no frame was involved."""
    identified: Identified | None
    decision: Decision
    event: Event | None
    """None when the store failed and nothing could be recorded."""
    latency_ms: float
    """From the frame's capture (or the guard's action) to the signal."""


OnOutcome = Callable[[Outcome], None]
"""Told of every outcome as it happens (the demo's screen, the CLI's report)."""
