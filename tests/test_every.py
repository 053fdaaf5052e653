"""kiosk.every.Every: the one "every N seconds" of the scan loop."""

from kiosk.clock import FakeClock
from kiosk.every import Every


def test_every_is_due_at_once_then_after_each_period() -> None:
    clock = FakeClock()
    every = Every(2.0, clock.monotonic)

    assert every.tick()  # never marked: due at once
    assert not every.tick()
    clock.advance(1.9)
    assert not every.due()
    clock.advance(0.1)
    assert every.due()
    assert every.due()  # due() marks nothing
    assert every.tick()
    assert not every.due()


def test_a_mark_starts_a_new_period_and_a_new_length_applies_to_it() -> None:
    clock = FakeClock()
    every = Every(1.0, clock.monotonic)
    every.mark()
    assert not every.due()
    every.seconds = 0.5
    clock.advance(0.5)
    assert every.due()
    every.mark()
    clock.advance(0.4)
    assert not every.due()
