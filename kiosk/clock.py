"""Time, the one seam for it: wall clock, monotonic clock, sleeping.

Nothing outside this module calls ``time.time()``, ``time.monotonic()`` or
``time.sleep()``; collaborators receive a :class:`Clock`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps; only differences mean anything."""
        ...

    def sleep(self, seconds: float) -> None: ...

    def synchronised(self) -> bool:
        """Whether the wall clock is disciplined by NTP (a Pi has no RTC)."""
        ...


class SystemClock:
    """The real clocks of this machine."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def synchronised(self) -> bool:
        return kernel_clock_synchronised()


@dataclass
class FakeClock:
    """A clock that moves only when told to; ``sleep`` advances it."""

    wall: datetime = field(default_factory=lambda: datetime(2026, 1, 5, 1, 0, tzinfo=UTC))
    mono: float = 1000.0
    is_synchronised: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def now(self) -> datetime:
        with self._lock:
            return self.wall

    def monotonic(self) -> float:
        with self._lock:
            return self.mono

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.mono += seconds
            self.wall += timedelta(seconds=seconds)

    def synchronised(self) -> bool:
        return self.is_synchronised


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>; only the first fields are read, the
    # padding covers the rest of the kernel structure on 32 and 64 bit.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 256),
    ]


_TIME_ERROR = 5  # adjtimex() return value: clock not synchronised


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, looked up once per process: ``find_library`` runs
    ``ldconfig -p`` in a subprocess (about 4 ms), far too slow for every scan.
    None when there is none to be found or it cannot be loaded."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    try:
        return ctypes.CDLL(libc_name, use_errno=True)
    except OSError:
        return None


def kernel_clock_synchronised() -> bool:
    """Ask the kernel (``adjtimex``) whether NTP has synchronised the clock.

    This is what ``timedatectl`` reports as "System clock synchronized"; it
    works without systemd-timesyncd and costs one system call (the C library
    is looked up once, see :func:`_libc`).
    """
    libc = _libc()
    if libc is None:
        return False
    try:
        timex = _Timex()
        state = libc.adjtimex(ctypes.byref(timex))
    except (OSError, AttributeError):
        return False
    return bool(state >= 0 and state != _TIME_ERROR)
