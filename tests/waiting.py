"""Waiting for gpiozero's own threads (pulses, blinks) without fixed sleeps."""

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], object], timeout_s: float = 5.0) -> None:
    """Poll ``condition`` until true; fail after ``timeout_s`` (generous: CI is loaded)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.002)
