"""The scan loop end to end: synthetic camera -> real decoder -> real store
-> gpiozero MockFactory pins, on a fake clock."""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from gate_controller.gpio import GpiozeroSignals
from gate_controller.pins import PinConfig
from kiosk.camera import Frame, SourceState, SyntheticSource
from kiosk.clock import FakeClock
from kiosk.codes import Registry, default_formats
from kiosk.codes.hcert import HcertFormat, HcertRules
from kiosk.decoder import Code, ZxingDecoder
from kiosk.demo_codes import demo_vaccine_passport
from kiosk.policy import PolicyRules
from kiosk.privacy import subject_hash
from kiosk.rules import trust_list_for
from kiosk.samples import VISITOR_CCCD, VISITOR_DENYLISTED, VISITOR_UNRECOGNISED
from kiosk.scanner import GateParts, GateSetup, Outcome, Scanner, ScanSettings
from kiosk.store import Event, Store
from kiosk.synthetic import Scene
from tests.waiting import wait_until

KEY = b"k" * 32
PINS = PinConfig(
    green=17, red=27, buzzer=22, relay=23, button=24, status=25, relay_pulse_ms=30, light_ms=60
)
RELAY, GREEN, RED, BUTTON, STATUS = 23, 17, 27, 24, 25
SETTINGS = ScanSettings(gate_id="test-gate", timezone=ZoneInfo("Asia/Ho_Chi_Minh"))


def relay_energised(factory: MockFactory) -> bool:
    return not factory.pin(RELAY).state  # active-low relay board


def relay_pulses(factory: MockFactory) -> int:
    levels = [not s.state for s in factory.pin(RELAY).states]
    return sum(1 for before, after in itertools.pairwise(levels) if after and not before)


def all_events(store: Store) -> list[Event]:
    return list(reversed(store.recent_events(limit=1000)))


@dataclass
class Gate:
    scanner: Scanner
    store: Store
    factory: MockFactory
    clock: FakeClock
    outcomes: list[Outcome] = field(default_factory=list)

    def run_to_end(self) -> list[Outcome]:
        """Step until the recording ends, letting each relay pulse finish
        before the next frame so every pulse shows in the pin history."""
        while not self.scanner.source.exhausted:
            for outcome in self.scanner.step():
                self.outcomes.append(outcome)
                wait_until(lambda: not relay_energised(self.factory))
        return self.outcomes


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "gate.db", boot_id="boot-1") as s:
        yield s


@pytest.fixture
def make_gate(store: Store) -> Iterator[Callable[..., Gate]]:
    made: list[tuple[GpiozeroSignals, MockFactory]] = []

    def build(
        scenes: list[Scene],
        *,
        rules: PolicyRules | None = None,
        settings: ScanSettings = SETTINGS,
        gate_store: Store | None = None,
        registry: Registry | None = None,
    ) -> Gate:
        clock = FakeClock()
        factory = MockFactory()
        signals = GpiozeroSignals(PINS, pin_factory=factory)
        made.append((signals, factory))
        source = SyntheticSource(scenes, clock=clock, fps=10.0, seed=3)
        scanner = Scanner(
            parts=GateParts(source, ZxingDecoder(), signals, pin_backend="MockFactory"),
            registry=registry or Registry(default_formats()),
            store=gate_store or store,
            clock=clock,
            setup=GateSetup(rules or PolicyRules(), settings),
            hash_key=KEY,
        )
        return Gate(scanner, gate_store or store, factory, clock)

    yield build
    for signals, factory in made:
        signals.close()
        factory.close()


def visit(*payloads: str, show_s: float = 2.0, gap_s: float = 3.0) -> list[Scene]:
    """Each payload shown in turn, with empty frames before and between."""
    scenes = [Scene((), 0.5)]
    for payload in payloads:
        scenes += [Scene((payload,), show_s), Scene((), gap_s)]
    return scenes


def test_visitor_entering_then_leaving_is_recorded_twice_and_the_door_opens_twice(make_gate):
    gate = make_gate(visit(VISITOR_CCCD.payload, VISITOR_CCCD.payload))

    outcomes = gate.run_to_end()

    assert [(o.decision.verdict, o.decision.direction, o.decision.reason) for o in outcomes] == [
        ("allow", "in", "ok"),
        ("allow", "out", "ok-exit"),
    ]
    events = all_events(gate.store)
    assert [(e.direction, e.decision, e.kind, e.seq) for e in events] == [
        ("in", "allow", "cccd", 1),
        ("out", "allow", "cccd", 2),
    ]
    assert {e.display_name for e in events} == {"Nguyễn Văn An"}
    assert {e.masked_id for e in events} == {"********0123"}
    assert {e.id_number for e in events} == {None}
    assert {e.utc_offset_min for e in events} == {420}
    assert events[0].subject_hash == subject_hash(KEY, "person:079201000123")
    assert gate.store.occupancy(now=gate.clock.now(), expiry_h=12) == 0
    assert relay_pulses(gate.factory) == 2
    assert not any(s.state for s in gate.factory.pin(RED).states)


def test_code_held_for_ten_seconds_is_decided_once(make_gate):
    gate = make_gate(visit(VISITOR_CCCD.payload, show_s=10.0))

    assert len(gate.run_to_end()) == 1
    assert len(all_events(gate.store)) == 1


def test_unrecognised_code_lights_red_and_never_opens_the_door(make_gate):
    gate = make_gate(visit(VISITOR_UNRECOGNISED.payload))

    [outcome] = gate.run_to_end()

    assert (outcome.decision.verdict, outcome.decision.reason) == ("deny", "unrecognised")
    [event] = all_events(gate.store)
    assert (event.kind, event.subject_hash, event.display_name) == ("unrecognised", None, None)
    assert relay_pulses(gate.factory) == 0
    assert any(s.state for s in gate.factory.pin(RED).states)


def test_denylisted_person_is_refused(make_gate, store):
    hashed = subject_hash(KEY, "person:001095004567")
    store.add_to_denylist(hashed, label="test", note="", at=FakeClock().now())
    gate = make_gate(visit(VISITOR_DENYLISTED.payload))

    [outcome] = gate.run_to_end()

    assert outcome.decision.reason == "denylisted"
    assert relay_pulses(gate.factory) == 0


def test_event_is_committed_before_the_relay_pulses(make_gate, store, tmp_path):
    gate = make_gate(visit(VISITOR_CCCD.payload))
    rows_when_relay_fired: list[int] = []
    signals = gate.scanner.signals
    real_allow = signals.allow

    def allow_after_looking(*, warning: bool = False) -> None:
        # An independent connection: only committed rows are visible to it.
        with sqlite3.connect(tmp_path / "gate.db") as other:
            rows_when_relay_fired.append(other.execute("SELECT count(*) FROM events").fetchone()[0])
        other.close()
        real_allow(warning=warning)

    signals.allow = allow_after_looking
    gate.run_to_end()

    assert rows_when_relay_fired == [1]


def test_store_failure_fails_secure_and_the_guards_override_still_opens_the_door(
    make_gate, tmp_path
):
    Store.open(tmp_path / "ro.db", boot_id="boot-1").close()
    with Store.open(tmp_path / "ro.db", boot_id="boot-1", read_only=True) as broken:
        gate = make_gate(visit(VISITOR_CCCD.payload), gate_store=broken)

        [outcome] = gate.run_to_end()

        assert (outcome.decision.verdict, outcome.decision.reason) == ("deny", "store-fault")
        assert outcome.event is None
        assert gate.scanner.fault == "store"
        assert relay_pulses(gate.factory) == 0
        wait_until(lambda: len(gate.factory.pin(STATUS).states) > 4)  # blinking: fault

        override = gate.scanner.override()

        assert override.decision.reason == "override"
        assert override.event is None  # could not be recorded
        wait_until(lambda: relay_pulses(gate.factory) == 1)


def test_override_button_admits_the_last_refused_visitor_once_and_is_logged(make_gate, store):
    store.add_to_denylist(
        subject_hash(KEY, "person:001095004567"), label="t", note="", at=FakeClock().now()
    )
    gate = make_gate(visit(VISITOR_DENYLISTED.payload))
    gate.run_to_end()

    gate.factory.pin(BUTTON).drive_low()  # the guard presses the button
    wait_until(lambda: len(all_events(gate.store)) == 2)
    gate.factory.pin(BUTTON).drive_high()
    wait_until(lambda: relay_pulses(gate.factory) == 1)
    gate.scanner.override()  # a second press admits nobody in particular

    refused, admitted, anonymous = all_events(gate.store)
    assert (refused.decision, refused.reason, refused.override) == ("deny", "denylisted", False)
    assert (admitted.decision, admitted.reason, admitted.override) == ("allow", "override", True)
    assert admitted.display_name == "Lê Hoàng Phúc"
    assert admitted.subject_hash == refused.subject_hash
    assert (anonymous.kind, anonymous.subject_hash, anonymous.override) == ("override", None, True)


def test_full_id_number_is_stored_only_when_the_site_turns_it_on(make_gate):
    settings = ScanSettings(gate_id="g", timezone=ZoneInfo("UTC"), store_full_id=True)
    gate = make_gate(visit(VISITOR_CCCD.payload), settings=settings)
    gate.run_to_end()
    [event] = all_events(gate.store)
    assert event.id_number == "079201000123"


def test_hcert_records_the_holders_birth_date_and_latin_name_a_cccd_does_not(make_gate, store):
    clock = FakeClock()  # the gate's clock starts at the same instant
    passport = demo_vaccine_passport(store, now=clock.now())
    registry = Registry(
        [HcertFormat(trust_list_for(store), HcertRules(), skew_s=300), *default_formats()]
    )
    gate = make_gate(visit(passport, VISITOR_CCCD.payload), registry=registry)
    gate.run_to_end()
    hcert_event, cccd_event = all_events(gate.store)
    assert (hcert_event.kind, hcert_event.decision) == ("hcert", "allow")
    assert hcert_event.display_name == "Nguyễn Thị Mai"
    assert (hcert_event.birth_date, hcert_event.name_latin) == ("1990-04-12", "NGUYEN THI MAI")
    assert cccd_event.kind == "cccd"
    assert (cccd_event.birth_date, cccd_event.name_latin) == (None, None)


def test_health_is_recorded_for_the_dashboard(make_gate):
    gate = make_gate(visit(VISITOR_CCCD.payload))
    gate.scanner.run(stop=threading.Event())

    health = gate.store.read_health("test-gate")
    assert health is not None
    assert (health.camera_ok, health.decoder, health.pin_backend, health.fault) == (
        True,
        "zxing",
        "MockFactory",
        None,
    )
    assert health.fps == pytest.approx(10.0, rel=0.05)


# -- faults, with hand-written fakes ------------------------------------------


@dataclass
class FakeSignals:
    calls: list[str] = field(default_factory=list)

    def allow(self, *, warning: bool = False) -> None:
        self.calls.append("allow")

    def deny(self) -> None:
        self.calls.append("deny")

    def set_fault(self, fault: bool) -> None:
        self.calls.append(f"fault={fault}")

    def set_override_handler(self, handler: Callable[[], None] | None) -> None:
        pass

    def close(self) -> None:
        self.calls.append("close")


@dataclass
class ScriptedSource:
    """Delivers or fails frame by frame, as its script says."""

    script: list[bool]
    clock: FakeClock
    _index: int = 0
    _ok: bool = True

    @property
    def state(self) -> SourceState:
        return SourceState("scripted", self._ok, "" if self._ok else "read failed")

    @property
    def exhausted(self) -> bool:
        return self._index >= len(self.script)

    def read(self, timeout_s: float) -> Frame | None:
        delivers = self.script[self._index]
        self._index += 1
        self.clock.advance(0.1)
        self._ok = delivers
        if not delivers:
            return None
        return Frame(np.zeros((48, 64), np.uint8), self.clock.monotonic(), self._index)

    def close(self) -> None:
        pass


class ThrowingDecoder:
    name = "throwing"

    def __init__(self, throws: list[bool]) -> None:
        self.throws = throws

    def decode(self, grey: object) -> list[Code]:
        if self.throws.pop(0):
            raise RuntimeError("decoder bug")
        return []


def faulty_scanner(
    store: Store, source: ScriptedSource, decoder: object
) -> tuple[Scanner, FakeSignals]:
    signals = FakeSignals()
    scanner = Scanner(
        parts=GateParts(source, decoder, signals),  # type: ignore[arg-type]
        registry=Registry(default_formats()),
        store=store,
        clock=source.clock,
        setup=GateSetup(PolicyRules(), SETTINGS),
        hash_key=KEY,
    )
    return scanner, signals


def test_camera_that_stops_delivering_shows_the_fault_and_recovers(store):
    clock = FakeClock()
    source = ScriptedSource([True, False, False, True, True], clock)
    scanner, signals = faulty_scanner(store, source, ThrowingDecoder([False] * 5))

    faults = []
    while not source.exhausted:
        scanner.step()
        faults.append(scanner.fault)

    assert faults == [None, "camera", "camera", None, None]
    assert signals.calls == ["fault=True", "fault=False"]
    assert store.read_health("test-gate") is not None


def test_decoder_that_throws_does_not_stop_the_gate(store):
    clock = FakeClock()
    source = ScriptedSource([True, True, True], clock)
    scanner, signals = faulty_scanner(store, source, ThrowingDecoder([False, True, False]))

    results = [scanner.step() for _ in range(3)]

    assert results == [[], [], []]
    assert signals.calls == ["fault=True", "fault=False"]
