"""The kiosk process that bench/crash_harness.py kills: a real gate, reporting as it goes.

``python -m bench.crash_child --data-dir DIR --life N``

It builds the gate through the composition root (``kiosk.compose.build_gate``)
with a real SQLite store in DIR, the real decoder, gpiozero's ``MockFactory``
pins and a synthetic camera presenting codes back to back (ID cards that are
allowed, codes that are refused), and scans until SIGTERM. Whatever happens
that the harness must check after a SIGKILL is written to stdout *as it
happens*, one JSON object per line, with a single ``write(2)`` to the pipe:
what a process wrote to a pipe is the reader's even if the writer is killed
the next instant. The lines, in the order the scanner causes them:

``{"t": "boot"}``
    first thing, before any import of the gate;
``{"t": "start", "relay_energised": bool, "relay_states": [...]}``
    the gate is built, no frame read yet: the relay output's level (the pin
    was left at the *energised* level before building, as a killed process
    may leave a real line) and the pin's history since;
``{"t": "record", "decision": ...}``
    the scanner asks the store to record an event (the row is not committed);
``{"t": "commit"}``
    that record's ``COMMIT`` starts (the row is being made durable);
``{"t": "recorded", "id": ..., "seq": ..., "decision": ...}``
    the store returned: the row is committed;
``{"t": "record-failed"}``
    the store raised (the gate then refuses with the fault pattern);
``{"t": "signal", "signal": "allow"|"deny"}``
    the scanner calls the gate signals, reported *before* the call reaches
    the pins, so every energising of the relay is reported;
``{"t": "outcome", "id": ..., "decision": ..., "reason": ...}``
    the scanner's ``on_outcome`` (after the signal);
``{"t": "stopped", "relay_energised": bool}``
    after a SIGTERM, the gate closed.

The store and the signals are wrapped after the gate is built (the scanner's
``store`` and ``signals`` attributes), which instruments the seams without
changing what the scanner does.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any


def emit(**fields: Any) -> None:
    """One line to the harness, in one write(2), unbuffered."""
    data = (json.dumps(fields, separators=(",", ":")) + "\n").encode()
    os.write(1, data)  # under PIPE_BUF (4 KiB): atomic, and never half a line


emit(t="boot", pid=os.getpid())

import argparse  # noqa: E402 - "boot" goes out before the imports' time
import random  # noqa: E402
import signal  # noqa: E402
from pathlib import Path  # noqa: E402

from gpiozero.pins.mock import MockFactory  # noqa: E402

from kiosk.camera import SyntheticSource  # noqa: E402
from kiosk.clock import SystemClock  # noqa: E402
from kiosk.compose import build_gate  # noqa: E402
from kiosk.config import Settings, load_settings  # noqa: E402
from kiosk.errors import StoreError  # noqa: E402
from kiosk.scanner import Outcome  # noqa: E402
from kiosk.store import Event, NewEvent  # noqa: E402
from kiosk.synthetic import Scene  # noqa: E402

GIVEN = ("An", "Bình", "Chi", "Dũng", "Giang", "Hà", "Hùng", "Khánh", "Linh", "Mai", "Nam", "Phúc")

SHOW_S = 0.5
"""How long each code is held up (seconds): a few frames, one decision."""
GAP_S = 0.35
"""Nobody at the gate between codes (seconds): longer than the hysteresis."""
HYSTERESIS_S = 0.2
FPS = 12.0


def payloads(count: int = 60) -> list[str]:
    """Distinct codes, about one in four refused: chip ID cards (CCCD) of
    fictional people, allowed (entering, or leaving when already inside), and
    a restaurant menu link or an ID card with a bad ID number, refused."""
    codes = []
    for n in range(count):
        if n % 4 == 3:
            codes.append(
                f"https://example.com/thuc-don/{n}"
                if n % 8 == 3
                else f"0792010{n:04d}|025{n:06d}|Trần Văn {GIVEN[n % len(GIVEN)]}|01011990|Nam|"
                "Huế|01072021"
            )
        else:
            codes.append(
                f"0792010{n:05d}|025{n:06d}|Nguyễn Văn {GIVEN[n % len(GIVEN)]}|15031990|Nam|"
                "12 Lê Lợi, Quận 1, TP. Hồ Chí Minh|01072021"
            )
    return codes


def schedule(life: int) -> list[Scene]:
    """The codes back to back, starting at a different one in each life."""
    codes = payloads()
    start = random.Random(life).randrange(len(codes))
    scenes = []
    for payload in codes[start:] + codes[:start]:
        scenes += [Scene((payload,), SHOW_S), Scene((), GAP_S)]
    return scenes


def child_settings(data_dir: Path) -> Settings:
    return load_settings(
        overrides={
            "gate.id": "crash-gate",
            "gate.data_dir": str(data_dir),
            "gate.mode": "both",
            "camera.source": "synthetic",
            "camera.fps": FPS,
            "pins.backend": "mock",
            "pins.relay_pulse_ms": 300,
            "pins.light_ms": 300,
            "scan.hysteresis_s": HYSTERESIS_S,
        },
        env={},
    )


class ReportingStore:
    """The gate's store, reporting each record before and after it, and the
    moment its transaction's COMMIT starts (SQLite's trace callback on the
    store's connection, called as each statement begins)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._recording = False
        inner._conn.set_trace_callback(self._statement)

    def _statement(self, sql: str) -> None:
        if self._recording and sql.strip().upper() == "COMMIT":
            emit(t="commit")

    def record(self, event: NewEvent) -> Event:
        emit(t="record", decision=event.decision)
        self._recording = True
        try:
            recorded = self._inner.record(event)
        except StoreError:
            emit(t="record-failed")
            raise
        finally:
            self._recording = False
        emit(t="recorded", id=recorded.id, seq=recorded.seq, decision=recorded.decision)
        return recorded

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ReportingSignals:
    """The gate's signals, reporting allow and deny before the pins see them."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def allow(self, *, warning: bool = False) -> None:
        emit(t="signal", signal="allow")
        self._inner.allow(warning=warning)

    def deny(self) -> None:
        emit(t="signal", signal="deny")
        self._inner.deny()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def report_outcome(outcome: Outcome) -> None:
    event = outcome.event
    emit(
        t="outcome",
        id=event.id if event else None,
        decision=outcome.decision.verdict,
        reason=outcome.decision.reason,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--life", type=int, default=0, help="which start this is (varies codes)")
    args = parser.parse_args()

    settings = child_settings(args.data_dir)
    active_high = settings["pins.relay_active_high"]
    factory = MockFactory()
    relay_pin = factory.pin(settings["pins.relay"])
    # The worst a killed process can leave on a real line: the relay energised.
    relay_pin.function = "output"
    relay_pin.state = active_high
    relay_pin.clear_states()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    clock = SystemClock()
    source = SyntheticSource(
        schedule(args.life),
        clock=clock,
        size=(settings["camera.width"], settings["camera.height"]),
        fps=settings["camera.fps"],
        loop=True,
        seed=args.life,
    )
    with build_gate(
        settings, clock=clock, source=source, pin_factory=factory, on_outcome=report_outcome
    ) as gate:
        emit(
            t="start",
            relay_energised=relay_pin.state == active_high,
            relay_states=[bool(s.state) for s in relay_pin.states],
        )
        gate.scanner.store = ReportingStore(gate.scanner.store)  # type: ignore[assignment]
        gate.scanner.signals = ReportingSignals(gate.scanner.signals)
        gate.scanner.run(stop)
    emit(t="stopped", relay_energised=relay_pin.state == active_high)
    factory.close()


if __name__ == "__main__":
    main()
