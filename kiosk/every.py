"""A cadence on a monotonic clock: "every N seconds", said once.

The scan loop runs 15 times a second, and most of what it does besides the
scan (polls, probes, reminders, health rows) must happen far less often. An
:class:`Every` replaces a ``_last_*_mono`` field and the comparison that went
with it, so each cadence reads as what it is::

    settings_poll = Every(2.0, clock.monotonic)
    ...
    if settings_poll.tick():
        poll_settings()
"""

from __future__ import annotations

from collections.abc import Callable


class Every:
    """Due when ``seconds`` have passed on ``monotonic`` (a clock's
    ``monotonic``) since it was last marked, or when it never was.

    ``seconds`` may be changed at any time; the next :meth:`due` uses it.
    """

    def __init__(self, seconds: float, monotonic: Callable[[], float]) -> None:
        self.seconds = seconds
        self._monotonic = monotonic
        self._marked: float | None = None

    def due(self) -> bool:
        """Whether the period is over (always, before the first mark); marks nothing."""
        return self._marked is None or self._monotonic() - self._marked >= self.seconds

    def mark(self) -> None:
        """Start a new period now: the next :meth:`due` is ``seconds`` away."""
        self._marked = self._monotonic()

    def tick(self) -> bool:
        """When due, mark and say so: ``if every.tick(): do_it()``."""
        if not self.due():
            return False
        self.mark()
        return True
