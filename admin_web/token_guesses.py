"""Counting wrong display tokens per client address, in memory.

The display token is the one secret the admin web accepts in a URL, from
anyone on the LAN; without a limit it could be guessed at the speed of the
network. A process restart forgets the counts, which is fine: a restart is
rare and slow compared with the window.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

MAX_GUESSES = 10
"""Wrong tokens one address may send within :data:`WINDOW_S`."""
WINDOW_S = 15 * 60.0
MAX_ADDRESSES = 4096
"""Addresses remembered at most: a flood of addresses cannot grow memory."""


@dataclass
class _Count:
    first_s: float
    wrong: int = 0


@dataclass
class TokenGuesses:
    """Wrong guesses per address in fixed windows of :data:`WINDOW_S` seconds
    (times from a monotonic clock, in seconds)."""

    max_guesses: int = MAX_GUESSES
    window_s: float = WINDOW_S
    max_addresses: int = MAX_ADDRESSES
    _counts: dict[str, _Count] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_s(self, address: str, now_s: float) -> float:
        """Seconds before ``address`` may try a token again; 0 if it may now."""
        with self._lock:
            count = self._current(address, now_s)
            if count is None or count.wrong < self.max_guesses:
                return 0.0
            return count.first_s + self.window_s - now_s

    def wrong(self, address: str, now_s: float) -> None:
        """Note one wrong token from ``address``."""
        with self._lock:
            count = self._current(address, now_s)
            if count is None:
                if len(self._counts) >= self.max_addresses:
                    self._forget_old(now_s)
                count = self._counts[address] = _Count(now_s)
            count.wrong += 1

    def _current(self, address: str, now_s: float) -> _Count | None:
        count = self._counts.get(address)
        if count is not None and now_s - count.first_s >= self.window_s:
            del self._counts[address]
            return None
        return count

    def _forget_old(self, now_s: float) -> None:
        """Drop finished windows; if every address is still counting, the oldest half."""
        for address in [a for a, c in self._counts.items() if now_s - c.first_s >= self.window_s]:
            del self._counts[address]
        if len(self._counts) >= self.max_addresses:
            for address in list(self._counts)[: self.max_addresses // 2]:
                del self._counts[address]
