"""The kiosk doing the site's business through the database while it scans:
a manager's settings applied without a restart, a guard's "admit once" from
the web carried out, and old events purged.

The gate is built by the composition root (``build_gate``) on a real SQLite
file, gpiozero's MockFactory and a fake clock. The admin web is a second
:class:`Store` on the same file. The camera is a hand-held fake: each step
is one frame 0.1 s later on the fake clock, and its decoder reads whatever
code the test holds up, so the tests say exactly when a code is in view
relative to the settings poll (the real camera and decoder are tested in
test_scanner.py).
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from gate_controller.errors import PinConfigError, SignalsClosed
from gate_controller.gpio import GpiozeroSignals
from kiosk.admits import ADMIT_MAX_AGE_S
from kiosk.camera import Frame, SourceState
from kiosk.clock import FakeClock
from kiosk.compose import Gate, build_gate, gate_setup, registry_for, setup_for_site
from kiosk.config import Settings, load_settings
from kiosk.decoder import Code
from kiosk.errors import ConfigError
from kiosk.samples import VISITOR_CCCD, VISITOR_PC_COVID
from kiosk.scanner import (
    GateParts,
    GateSetup,
    Outcome,
    Scanner,
    ScanSettings,
    SiteLink,
)
from kiosk.site_business import PURGE_BATCH_ROWS, PURGE_START_DELAY_S
from kiosk.store import AdmitRequest, Event, NewEvent, Store
from tests.test_purge import copy_event
from tests.waiting import wait_until

RELAY = 23  # the default relay pin, active-low
KEY = b"k" * 32


# -- fakes and helpers -----------------------------------------------------------


@dataclass
class HandCamera:
    """Each read is the next frame, ``frame_s`` later on the fake clock."""

    clock: FakeClock
    frame_s: float = 0.1
    held: tuple[bytes, ...] = ()
    index: int = 0

    @property
    def state(self) -> SourceState:
        return SourceState("hand", ok=True, detail="")

    @property
    def exhausted(self) -> bool:
        return False

    def read(self, timeout_s: float) -> Frame | None:
        self.clock.advance(self.frame_s)
        self.index += 1
        return Frame(np.zeros((8, 8), np.uint8), self.clock.monotonic(), self.index)

    def close(self) -> None:
        pass


@dataclass
class HeldCodes:
    """A decoder that reads the codes held up to its camera."""

    camera: HandCamera
    name: str = "held"

    def decode(self, grey: object) -> list[Code]:
        return [Code(raw, raw.decode(), ()) for raw in self.camera.held]


def relay_pulse_lengths_s(factory: MockFactory) -> list[float]:
    """How long each finished relay pulse lasted; a MockPin state's timestamp
    is the time since the previous change. The first state is the pin before
    the relay device drove it inactive, not a pulse."""
    states = factory.pin(RELAY).states[1:]
    return [
        after.timestamp
        for before, after in itertools.pairwise(states)
        if not before.state and after.state  # energised (low), then released (high)
    ]


def relay_pulses(factory: MockFactory) -> int:
    """Pulses started: changes from released (high) to energised (low)."""
    states = factory.pin(RELAY).states
    return sum(
        1 for before, after in itertools.pairwise(states) if before.state and not after.state
    )


def relay_energised(factory: MockFactory) -> bool:
    return not factory.pin(RELAY).state


@dataclass
class Kiosk:
    gate: Gate
    camera: HandCamera
    clock: FakeClock
    factory: MockFactory
    web: Store
    """The admin web's own connection to the same file."""
    settings: Settings
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def scanner(self) -> Scanner:
        return self.gate.scanner

    def frames(self, seconds: float) -> list[Outcome]:
        """Step the loop for ``seconds`` of camera time."""
        outcomes: list[Outcome] = []
        for _ in range(round(seconds / self.camera.frame_s)):
            outcomes += self.scanner.step()
        self.outcomes += outcomes
        return outcomes

    def hold(self, payload: str, seconds: float = 0.5) -> list[Outcome]:
        """A visitor holds a code up for ``seconds``; then every relay pulse has ended."""
        self.camera.held = (payload.encode(),)
        try:
            return self.frames(seconds)
        finally:
            self.camera.held = ()
            wait_until(lambda: not relay_energised(self.factory))

    def away(self, seconds: float = 2.5) -> list[Outcome]:
        """Nobody at the camera; long enough by default for the next showing
        to count as a new presentation and for a settings poll to happen."""
        return self.frames(seconds)

    def save(self, values: dict[str, Any]) -> None:
        """A manager saves settings on the web."""
        self.web.save_site_settings(values, by="manager", at=self.clock.now())

    def events(self) -> list[Event]:
        return list(reversed(self.web.recent_events(limit=1000)))


@pytest.fixture
def make_kiosk(tmp_path: Path) -> Iterator[Callable[..., Kiosk]]:
    with ExitStack() as stack:

        def build(*, live: bool = True, **file_settings: Any) -> Kiosk:
            settings = load_settings(
                overrides={
                    "gate.data_dir": str(tmp_path / "data"),
                    "pins.backend": "mock",
                    "pins.relay_pulse_ms": 50,
                    "pins.light_ms": 100,
                    **file_settings,
                },
                env={},
            )
            clock = FakeClock()
            camera = HandCamera(clock)
            factory = MockFactory()
            stack.callback(factory.close)  # after the gate has closed its signals
            gate = stack.enter_context(
                build_gate(
                    settings,
                    clock=clock,
                    source=camera,
                    pin_factory=factory,
                    decoder=HeldCodes(camera),
                    live=live,
                )
            )
            web = stack.enter_context(Store.open(settings.db_path, boot_id="web"))
            return Kiosk(gate, camera, clock, factory, web, settings)

        yield build


def kinds_and_reasons(outcomes: list[Outcome]) -> list[tuple[str, str, str]]:
    return [(o.decision.verdict, o.decision.direction, o.decision.reason) for o in outcomes]


# -- live settings ---------------------------------------------------------------


def test_managers_mode_change_flips_the_direction_after_the_poll_interval_not_before(
    make_kiosk,
):
    kiosk = make_kiosk(**{"gate.mode": "entry"})
    kiosk.frames(0.1)  # the kiosk starts and reads the settings version
    kiosk.save({"gate.mode": "exit"})

    before = kiosk.hold(VISITOR_CCCD.payload, 1.5)  # still within the 2 s poll interval
    kiosk.away()
    after = kiosk.hold(VISITOR_CCCD.payload)

    assert kinds_and_reasons(before) == [("allow", "in", "ok")]
    assert kinds_and_reasons(after) == [("allow", "out", "ok-exit")]
    assert [e.direction for e in kiosk.events()] == ["in", "out"]


def test_settings_saved_while_the_kiosk_was_stopped_apply_from_the_first_frame(make_kiosk):
    kiosk = make_kiosk()
    kiosk.save({"gate.id": "cong-sau", "gate.timezone": "UTC"})

    [outcome] = kiosk.hold(VISITOR_CCCD.payload)

    assert outcome.event is not None
    assert (outcome.event.gate_id, outcome.event.utc_offset_min) == ("cong-sau", 0)
    assert kiosk.scanner.settings.gate_id == "cong-sau"


def test_capacity_change_takes_effect(make_kiosk):
    kiosk = make_kiosk()
    kiosk.frames(0.1)
    kiosk.save({"policy.capacity": 1})
    kiosk.away()

    first = kiosk.hold(VISITOR_CCCD.payload)
    kiosk.away()
    second = kiosk.hold(VISITOR_PC_COVID.payload)

    assert kinds_and_reasons(first + second) == [
        ("allow", "in", "ok"),
        ("deny", "in", "capacity-full"),
    ]
    assert relay_pulses(kiosk.factory) == 1


def test_allowed_kinds_and_antipassback_changes_take_effect(make_kiosk):
    kiosk = make_kiosk(**{"gate.mode": "entry"})
    entered = kiosk.hold(VISITOR_CCCD.payload)
    kiosk.save({"policy.antipassback": "hard", "policy.allowed_kinds": "cccd"})
    kiosk.away()

    again = kiosk.hold(VISITOR_CCCD.payload)
    kiosk.away()
    other_kind = kiosk.hold(VISITOR_PC_COVID.payload)

    assert kinds_and_reasons(entered + again + other_kind) == [
        ("allow", "in", "ok"),
        ("deny", "in", "antipassback"),
        ("deny", "in", "kind-not-allowed"),
    ]


def test_presence_expiry_change_takes_effect(make_kiosk):
    kiosk = make_kiosk()
    kiosk.hold(VISITOR_CCCD.payload)  # inside; presence lasts 12 h by the file
    kiosk.save({"policy.presence_expiry_h": 1.0})
    kiosk.clock.advance(2 * 3600)
    kiosk.away()

    [outcome] = kiosk.hold(VISITOR_CCCD.payload)

    assert outcome.decision.direction == "in"  # 2 h on, no longer counted inside


def test_hysteresis_change_takes_effect_and_a_code_in_view_is_not_decided_twice(make_kiosk):
    kiosk = make_kiosk()  # 2 s hysteresis in the file
    kiosk.frames(0.1)
    kiosk.save({"scan.hysteresis_s": 0.5})

    held_through_the_change = kiosk.hold(VISITOR_CCCD.payload, 3.0)  # the poll is at 2 s
    kiosk.away(1.0)  # a new presentation at 0.5 s, not at 2 s
    shown_again = kiosk.hold(VISITOR_CCCD.payload)

    assert kiosk.scanner.settings.hysteresis_s == 0.5
    assert kinds_and_reasons(held_through_the_change) == [("allow", "in", "ok")]
    assert kinds_and_reasons(shown_again) == [("allow", "out", "ok-exit")]


def test_relay_pulse_change_reaches_the_relay(make_kiosk):
    kiosk = make_kiosk()  # 50 ms pulses in the file
    kiosk.hold(VISITOR_CCCD.payload)
    kiosk.save({"pins.relay_pulse_ms": 200})
    kiosk.away()
    kiosk.hold(VISITOR_CCCD.payload)

    short, long = relay_pulse_lengths_s(kiosk.factory)

    # Lower bounds are exact (a pulse never ends early); upper ones only
    # catch a runaway, since a loaded machine may end a pulse late.
    assert 0.045 <= short < long
    assert 0.19 <= long < 2.0


@pytest.mark.parametrize(
    ("values", "name"),
    [
        ({"gate.mode": "sideways"}, "gate.mode"),
        ({"gate.timezone": "Mars/Olympus_Mons"}, "gate.timezone"),
        ({"policy.capacity": "lots"}, "policy.capacity"),
        ({"policy.allowed_kinds": "cccd,library-card"}, "policy.allowed_kinds"),
        ({"pins.relay_pulse_ms": 5}, "pins.relay_pulse_ms"),
        ({"scan.hysteresis_s": [1, 2]}, "scan.hysteresis_s"),
        ({"gate.id": ""}, "gate.id"),
    ],
)
def test_invalid_stored_value_keeps_the_current_settings_and_the_kiosk_keeps_scanning(
    make_kiosk, caplog, values, name
):
    kiosk = make_kiosk(**{"gate.mode": "entry"})
    kiosk.frames(0.1)
    # One save with a valid change too: a version is applied whole or not at all.
    kiosk.save({"policy.capacity": 1, **values})
    with caplog.at_level(logging.WARNING, logger="kiosk.site_business"):
        kiosk.away(5.0)  # two polls: one warning

    first = kiosk.hold(VISITOR_CCCD.payload)
    kiosk.away()
    second = kiosk.hold(VISITOR_PC_COVID.payload)

    assert kinds_and_reasons(first + second) == [("allow", "in", "ok"), ("allow", "in", "ok")]
    assert kiosk.scanner.settings.relay_pulse_ms == 50
    [warning] = [r for r in caplog.records if r.name == "kiosk.site_business"]
    assert name in warning.getMessage()
    for value in values.values():
        if value:
            assert str(value) not in warning.getMessage()  # names, never values


def test_a_fixed_setting_applies_after_an_invalid_one(make_kiosk):
    kiosk = make_kiosk(**{"gate.mode": "entry"})
    kiosk.frames(0.1)
    kiosk.save({"policy.capacity": 1, "gate.mode": "sideways"})
    kiosk.away()
    kiosk.hold(VISITOR_CCCD.payload)  # capacity 1 not applied: nobody refused yet
    kiosk.save({"gate.mode": "entry"})
    kiosk.away()

    [outcome] = kiosk.hold(VISITOR_PC_COVID.payload)

    assert outcome.decision.reason == "capacity-full"


def test_a_pulse_the_signals_refuse_keeps_every_current_setting(tmp_path):
    """The signals may check the pulse more strictly than the settings do;
    then nothing of that version applies, not just the pulse."""
    settings = load_settings(overrides={"gate.data_dir": str(tmp_path)}, env={})
    clock = FakeClock()
    camera = HandCamera(clock)
    refused: list[int] = []

    def refuse(pulse_ms: int) -> None:
        refused.append(pulse_ms)
        raise PinConfigError([f"relay_pulse_ms: {pulse_ms} ms is outside this board's limits"])

    def site(values: Mapping[str, Any]) -> GateSetup:
        setup = gate_setup(settings)
        return GateSetup(
            replace(setup.rules, mode="exit"), replace(setup.settings, relay_pulse_ms=9000)
        )

    setup = gate_setup(settings)
    factory = MockFactory()
    with (
        Store.open(tmp_path / "gate.db", boot_id="b") as store,
        GpiozeroSignals(settings.pin_config(), pin_factory=factory) as signals,
    ):
        scanner = Scanner(
            parts=GateParts(camera, HeldCodes(camera), signals),
            registry=registry_for(settings, store),
            store=store,
            clock=clock,
            setup=GateSetup(setup.rules, setup.settings),
            hash_key=KEY,
            site=SiteLink(setup_for_site=site, retime_relay=refuse),
        )
        scanner.step()

        assert refused == [9000]
        assert scanner.rules == setup.rules
        assert scanner.settings == setup.settings
    factory.close()


def test_setup_for_site_raises_config_error_for_an_invalid_value(tmp_path):
    settings = load_settings(overrides={"gate.data_dir": str(tmp_path)}, env={})
    setup = setup_for_site(settings)

    assert setup({}).rules.mode == "both"
    assert setup({"gate.mode": "exit", "not.editable": 1}).rules.mode == "exit"
    with pytest.raises(ConfigError):
        setup({"gate.mode": "sideways"})


def test_a_kiosk_that_is_not_live_ignores_the_web(make_kiosk):
    kiosk = make_kiosk(live=False)
    kiosk.save({"gate.mode": "exit"})
    request_id = kiosk.web.request_admit(
        actor="Hùng", reason="test", display_name=None, at=kiosk.clock.now()
    )

    [outcome] = kiosk.hold(VISITOR_CCCD.payload, 3.0)

    assert outcome.decision.direction == "in"
    request = kiosk.web.admit_request(request_id)
    assert request is not None
    assert request.status == "pending"


# -- the relay pulse on the signals ------------------------------------------------


def test_relay_pulse_is_checked_like_the_pin_config_and_kept_when_refused():
    factory = MockFactory()
    pins = load_settings(env={}).pin_config()
    with GpiozeroSignals(replace(pins, relay_pulse_ms=50, light_ms=60), pin_factory=factory) as s:
        for bad in (5, 1.5, True, 120_000):
            with pytest.raises(PinConfigError, match="relay_pulse_ms"):
                s.set_relay_pulse_ms(bad)  # type: ignore[arg-type]

        s.allow()
        wait_until(lambda: not relay_energised(factory))

        [pulse] = relay_pulse_lengths_s(factory)
        assert 0.045 <= pulse < 1.0  # still 50 ms, give or take a loaded machine
    with pytest.raises(SignalsClosed):
        s.set_relay_pulse_ms(100)
    factory.close()


# -- guards' admit requests ---------------------------------------------------------


def test_admit_request_becomes_one_manual_entry_and_one_relay_pulse(make_kiosk, tmp_path):
    kiosk = make_kiosk()
    committed_when_the_relay_fired: list[int] = []
    real_allow = kiosk.gate.signals.allow

    def allow_after_looking(*, warning: bool = False) -> None:
        # An independent connection sees only committed rows.
        with sqlite3.connect(kiosk.settings.db_path) as other:
            (count,) = other.execute(
                "SELECT count(*) FROM events e JOIN admit_requests r ON r.event_id = e.id "
                "WHERE r.status = 'done'"
            ).fetchone()
        other.close()
        committed_when_the_relay_fired.append(count)
        real_allow(warning=warning)

    kiosk.gate.signals.allow = allow_after_looking
    request_id = kiosk.web.request_admit(
        actor="Hùng (bảo vệ)",
        reason="Quên điện thoại ở nhà",
        display_name="Trần Thị Bình",
        at=kiosk.clock.now(),
    )

    [outcome] = kiosk.frames(1.0)
    wait_until(lambda: relay_pulses(kiosk.factory) == 1)
    assert kiosk.frames(2.0) == []  # done once, not again

    assert kinds_and_reasons([outcome]) == [("allow", "in", "manual-admit")]
    assert outcome.decision.message.vi == "Bảo vệ cho phép vào"
    [event] = kiosk.events()
    assert outcome.event == event
    assert (event.kind, event.reason, event.direction, event.decision, event.override) == (
        "manual",
        "manual-admit",
        "in",
        "allow",
        True,
    )
    assert (event.actor, event.note, event.display_name) == (
        "Hùng (bảo vệ)",
        "Quên điện thoại ở nhà",
        "Trần Thị Bình",
    )
    assert (event.subject_hash, event.masked_id, event.id_number) == (None, None, None)
    request = kiosk.web.admit_request(request_id)
    assert request is not None
    assert request.status == "done"
    assert committed_when_the_relay_fired == [1]
    assert relay_pulses(kiosk.factory) == 1


def test_admit_request_older_than_thirty_seconds_is_not_carried_out(make_kiosk):
    kiosk = make_kiosk()
    request_id = kiosk.web.request_admit(
        actor="Hùng",
        reason="late",
        display_name=None,
        at=kiosk.clock.now() - timedelta(seconds=ADMIT_MAX_AGE_S + 1),
    )

    assert kiosk.frames(1.0) == []

    assert kiosk.events() == []
    assert relay_pulses(kiosk.factory) == 0
    request = kiosk.web.admit_request(request_id)
    assert request is not None
    assert request.status == "expired"


def test_store_failure_while_admitting_keeps_the_door_shut_and_shows_the_fault(make_kiosk):
    kiosk = make_kiosk()
    with sqlite3.connect(kiosk.settings.db_path) as db:  # the disk refuses manual entries
        db.execute(
            "CREATE TRIGGER refuse_manual BEFORE INSERT ON events WHEN NEW.kind = 'manual' "
            "BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END"
        )
    db.close()
    request_id = kiosk.web.request_admit(
        actor="Hùng", reason="test", display_name=None, at=kiosk.clock.now()
    )

    [outcome] = kiosk.frames(1.0)
    assert kiosk.scanner.fault == "store"
    assert kiosk.frames(2.0) == []  # reported once, not retried every poll
    # Only manual entries fail: the store's probe finds the database writable
    # and the fault clears, while the request stays undone.
    assert kiosk.scanner.fault is None

    assert kinds_and_reasons([outcome]) == [("deny", "in", "store-fault")]
    assert outcome.event is None
    assert relay_pulses(kiosk.factory) == 0
    assert kiosk.events() == []
    request = kiosk.web.admit_request(request_id)
    assert request is not None
    assert request.status == "pending"


# -- retention --------------------------------------------------------------------


def record_event_aged(kiosk: Kiosk, age: timedelta) -> None:
    at = kiosk.clock.now() - age
    kiosk.web.record(
        NewEvent(
            gate_id="gate-1",
            at=at,
            utc_offset_min=420,
            clock_synced=True,
            direction="in",
            decision="deny",
            reason="unrecognised",
            kind="unrecognised",
            subject_hash=None,
            display_name=None,
            masked_id=None,
        )
    )


def test_events_past_retention_are_purged_shortly_after_start_then_once_an_hour(make_kiosk, caplog):
    kiosk = make_kiosk()  # 21 days
    record_event_aged(kiosk, timedelta(days=30))
    record_event_aged(kiosk, timedelta(days=20))

    kiosk.frames(1.0)
    assert len(kiosk.events()) == 2  # not at start: the camera and the watchdog first

    kiosk.clock.advance(PURGE_START_DELAY_S)
    with caplog.at_level(logging.INFO, logger="kiosk.site_business"):
        kiosk.frames(0.5)
    assert len(kiosk.events()) == 1
    assert "purged 1 events older than 21 days" in caplog.text

    record_event_aged(kiosk, timedelta(days=30))
    kiosk.frames(10.0)
    assert len(kiosk.events()) == 2  # not within the hour

    kiosk.clock.advance(3600)
    kiosk.frames(0.5)
    assert len(kiosk.events()) == 1


def test_retention_change_takes_effect_at_the_next_purge(make_kiosk):
    kiosk = make_kiosk()
    record_event_aged(kiosk, timedelta(days=10))
    kiosk.clock.advance(PURGE_START_DELAY_S)
    kiosk.frames(0.5)  # the first purge: nothing is 21 days old
    kiosk.save({"privacy.retention_days": 7})
    kiosk.away()
    assert len(kiosk.events()) == 1  # the purge waits for its hour

    kiosk.clock.advance(3600)
    kiosk.frames(0.5)

    assert kiosk.events() == []


def test_a_long_purge_takes_one_batch_a_frame_while_the_gate_keeps_deciding(make_kiosk, caplog):
    kiosk = make_kiosk()  # 21 days
    record_event_aged(kiosk, timedelta(days=30))
    [old] = kiosk.events()
    copy_event(kiosk.settings.db_path, old.id, 2 * PURGE_BATCH_ROWS)  # two batches and one row
    record_event_aged(kiosk, timedelta(days=20))
    kiosk.clock.advance(PURGE_START_DELAY_S)
    cutoff = kiosk.clock.now() - timedelta(days=21)

    def past_retention() -> int:
        return len(kiosk.web.events_between(cutoff - timedelta(days=3650), cutoff))

    assert past_retention() == 2 * PURGE_BATCH_ROWS + 1
    with caplog.at_level(logging.INFO, logger="kiosk.site_business"):
        [outcome] = kiosk.hold(VISITOR_CCCD.payload, 0.2)  # two frames, two batches
        assert past_retention() == 1
        kiosk.frames(0.2)  # the last row, then the issued codes

    assert outcome.decision.reason == "ok"  # decided and recorded during the purge
    assert past_retention() == 0
    assert "purged 1001 events older than 21 days (4 batches)" in caplog.text
    assert [e.reason for e in kiosk.events()] == ["unrecognised", "ok"]  # the recent ones


# -- the hot path -------------------------------------------------------------------


class CountingStore(Store):
    """The real store, counting the queries the loop makes between frames."""

    calls: Counter[str]

    def settings_version(self) -> int:
        self.calls["settings_version"] += 1
        return super().settings_version()

    def site_settings(self) -> dict[str, Any]:
        self.calls["site_settings"] += 1
        return super().site_settings()

    def pending_admits(
        self, *, now: datetime, max_age_s: float, gate_id: str | None = None
    ) -> list[AdmitRequest]:
        self.calls["pending_admits"] += 1
        return super().pending_admits(now=now, max_age_s=max_age_s, gate_id=gate_id)

    def purge_events_before(self, cutoff: datetime, *, limit: int) -> int:
        self.calls["purge_events_before"] += 1
        return super().purge_events_before(cutoff, limit=limit)


def test_the_loop_polls_the_database_on_the_clock_not_every_frame(tmp_path):
    settings = load_settings(overrides={"gate.data_dir": str(tmp_path)}, env={})
    clock = FakeClock()
    camera = HandCamera(clock)
    setup = gate_setup(settings)
    factory = MockFactory()
    store = CountingStore.open(tmp_path / "gate.db", boot_id="b")
    assert isinstance(store, CountingStore)
    store.calls = Counter()
    key_polls: list[str] = []

    def refresh_registry(scan: ScanSettings) -> None:
        key_polls.append(scan.site_id)  # the keys are unchanged: no new registry

    with store, GpiozeroSignals(settings.pin_config(), pin_factory=factory) as signals:
        scanner = Scanner(
            parts=GateParts(camera, HeldCodes(camera), signals),
            registry=registry_for(settings, store),
            store=store,
            clock=clock,
            setup=GateSetup(setup.rules, setup.settings),
            hash_key=KEY,
            site=SiteLink(
                setup_for_site=setup_for_site(settings), refresh_registry=refresh_registry
            ),
        )
        for _ in range(100):  # 10 s of frames
            scanner.step()
        store.save_site_settings({"gate.mode": "exit"}, by="m", at=clock.now())
        for _ in range(30):
            scanner.step()

    # every 2 s, every 0.5 s, and once at start
    assert 5 <= store.calls["settings_version"] <= 8
    assert store.calls["site_settings"] == 2  # at start, and once for the one change
    assert 20 <= store.calls["pending_admits"] <= 27
    assert store.calls["purge_events_before"] == 0  # the first purge waits a minute
    # every 5 s and once at start, and once for each settings change applied
    assert 4 <= len(key_polls) <= 6
    factory.close()
