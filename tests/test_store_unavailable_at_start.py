"""A kiosk whose database cannot be opened when it starts.

Before, ``build_gate`` raised, the kiosk exited, systemd restarted it in a
loop and the guard's override button was dead all the while. Now the gate
starts, fails secure (every code refused with ``store-fault``, the fault
pattern on the lights), the override button opens the door and the override
is recorded once the database opens, and from then on the gate works as
usual, with the database's settings and trust list, without a restart.

Real causes on real SQLite files: a data folder that cannot be created
(its path is a file), a write lock held by another process on a database
that still has to be set up, and (under ``unshare -rm``, like
tests/test_storage_faults.py) a file system mounted read-only after a clean
stop, where SQLite cannot open the file at all. The gate is built by the
composition root with gpiozero's MockFactory and a real decoder on rendered
codes; time is a fake clock stepped one frame at a time.

The read-only scenario runs in a private mount namespace::

    unshare -rm .venv/bin/python -m tests.test_store_unavailable_at_start /tmp/x \\
        --outer-mount-ns "$(readlink /proc/self/ns/mnt)"
"""

from __future__ import annotations

import argparse
import json
import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

import kiosk.compose
from kiosk.clock import FakeClock
from kiosk.compose import build_gate
from kiosk.config import Settings, load_settings
from kiosk.decoder import ZxingDecoder
from kiosk.demo_codes import demo_vaccine_passport
from kiosk.errors import StoreError
from kiosk.privacy import load_or_create_key
from kiosk.samples import VISITOR_CCCD, VISITOR_PC_COVID
from kiosk.store import OPEN_RETRY_S, NewEvent, Store
from tests import storage_fault_scenario as scenario

REPO = Path(__file__).resolve().parent.parent
SAVED = {"gate.id": "cong-2", "policy.capacity": 50}
"""What a manager saves on the web once the database works again."""


def kiosk_settings(data_dir: Path) -> Settings:
    return load_settings(
        overrides={
            "gate.data_dir": str(data_dir),
            "gate.id": "cong-1",
            "pins.backend": "mock",
            "pins.relay_pulse_ms": 50,
            "pins.light_ms": 100,
        },
        env={},
    )


# -- the store on its own -------------------------------------------------------------


def test_a_database_that_cannot_be_opened_is_tried_again_each_second_then_used(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("not a folder")  # the data folder cannot be created
    clock = FakeClock()
    store = Store.open_lazily(blocker / "gatekiosk.db", monotonic=clock.monotonic, boot_id="b")

    assert store.open_error is not None
    assert "cannot create the database directory: File exists" in str(store.open_error)
    with pytest.raises(StoreError, match="cannot create the database directory"):
        store.recent_events()
    with pytest.raises(StoreError, match="cannot create the database directory"):
        store.record(scenario_event(clock))

    blocker.unlink()
    clock.advance(OPEN_RETRY_S / 2)
    with pytest.raises(StoreError, match="cannot create the database directory"):
        store.check_writable()  # the last try was less than a second ago: not tried
    assert not blocker.exists()

    clock.advance(OPEN_RETRY_S / 2)
    recorded = store.record(scenario_event(clock))  # tried again: opens, and works

    assert store.open_error is None
    assert recorded.boot_id == "b"
    assert [e.id for e in store.recent_events()] == [recorded.id]
    store.check_writable()
    assert store.applied_migrations()  # set up like any other store
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.recent_events()
    with Store.open(blocker / "gatekiosk.db", boot_id="web") as web:
        assert [e.id for e in web.recent_events()] == [recorded.id]


def test_a_store_that_opens_at_once_behaves_as_a_store(tmp_path):
    clock = FakeClock()
    with Store.open_lazily(tmp_path / "gatekiosk.db", monotonic=clock.monotonic) as store:
        assert store.open_error is None
        event = store.record(scenario_event(clock))
        assert store.event_by_id(event.id) == event
        assert store.settings_version() == 0
        assert not store._conn.in_transaction  # the opened store's connection


def test_a_replay_still_refuses_to_start_on_a_database_it_cannot_open(tmp_path):
    (tmp_path / "data").write_text("not a folder")
    settings = kiosk_settings(tmp_path / "data" / "sub")

    with (
        pytest.raises(StoreError, match="cannot create the database directory"),
        build_gate(settings, clock=FakeClock(), pin_factory=MockFactory(), live=False),
    ):
        pass


def scenario_event(clock: FakeClock) -> NewEvent:
    return NewEvent(
        gate_id="cong-1",
        at=clock.now(),
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


# -- the gate, from a failed start to business as usual ------------------------------------


def start_then_recover(settings: Settings, fault: scenario.Fault) -> dict[str, Any]:
    """Start the gate while ``fault`` keeps its database from opening, then
    remove the fault; what was seen, as JSON-able values (the log under
    ``"log"``)."""
    logs = scenario.LogLines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(logs)
    root.setLevel(logging.INFO)
    try:
        report = _start_then_recover(settings, fault)
    finally:
        root.removeHandler(logs)
        root.setLevel(level)
    report["log"] = logs.lines
    return report


def _start_then_recover(settings: Settings, fault: scenario.Fault) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    clock = FakeClock()
    with ExitStack() as stack:
        factory = MockFactory()
        stack.callback(factory.close)  # after the gate has closed its signals
        source = scenario.HeldCodeSource(clock)
        built = stack.enter_context(
            build_gate(
                settings,
                clock=clock,
                source=source,
                pin_factory=factory,
                decoder=ZxingDecoder(),
            )
        )
        gate = scenario.Gate(built.scanner, source, factory, built.signals, clock)
        scanner = gate.scanner

        # A visitor arrives: refused, nothing recorded, the fault pattern shows.
        refused = gate.frames(VISITOR_CCCD.payload, 1.0)
        seen["refused"] = [
            (o.decision.verdict, o.decision.reason, o.event is None) for o in refused
        ]
        seen["fault_while_failing"] = scanner.fault
        seen["pattern_while_failing"] = gate.status_blinking()
        gate.frames(None, 0.5)

        # The guard lets the refused visitor in: the door opens.
        pulses = scenario.relay_pulses(factory)
        gate.press_override()
        seen["door_opened"] = scenario.relay_pulses(factory) == pulses + 1
        seen["waiting_after_override"] = scanner.overrides_waiting
        gate.frames(None, 3.0)
        seen["waiting_while_failing"] = scanner.overrides_waiting
        seen["fault_still"] = scanner.fault

        # The database can be opened again; the web opens it first and a
        # manager saves settings and imports a trust list.
        fault.remove()
        with Store.open(settings.db_path, boot_id="web") as web:
            web.save_site_settings(dict(SAVED), by="manager", at=clock.now())
            passport = demo_vaccine_passport(web, now=clock.now())
        steps = 0
        while steps < 100 and (scanner.overrides_waiting or scanner.fault is not None):
            gate.frames(None, 1 / scenario.FPS)
            steps += 1
        seen["steps_to_recover"] = steps
        seen["waiting_after_recovery"] = scanner.overrides_waiting
        seen["fault_after_recovery"] = scanner.fault
        seen["pattern_stopped"] = gate.status_steady()
        gate.frames(None, 6.0)  # a settings poll (2 s) and a keys poll (5 s)
        seen["gate_id"] = scanner.settings.gate_id
        seen["capacity"] = scanner.rules.capacity

        # Business as usual, with the database's settings and trust list.
        after = [gate.visit(VISITOR_PC_COVID.payload), gate.visit(passport)]
        seen["after"] = [
            f"{o.decision.verdict}/{o.identified.kind if o.identified else None}:"
            f"{o.decision.reason}"
            for o in after
        ]
    seen["rows"] = [
        {k: row[k] for k in ("gate_id", "decision", "reason", "kind", "override", "note")}
        for row in scenario.read_rows(settings.db_path)
    ]
    seen["integrity"] = scenario.integrity(settings.db_path)
    return seen


def assert_started_failing_secure_then_recovered(report: dict[str, Any], cause: str) -> None:
    assert report["refused"] == [("deny", "store-fault", True)]
    assert report["fault_while_failing"] == "store"
    assert report["pattern_while_failing"] is True
    assert report["door_opened"] is True
    assert report["waiting_after_override"] == report["waiting_while_failing"] == 1
    assert report["fault_still"] == "store"

    assert report["waiting_after_recovery"] == 0
    assert report["fault_after_recovery"] is None
    assert report["pattern_stopped"] is True
    assert (report["gate_id"], report["capacity"]) == ("cong-2", 50)
    assert report["after"] == ["allow/pc-covid:ok", "allow/hcert:ok"]

    # The override once, with its late note, then the two visitors at the renamed gate.
    assert report["integrity"] == ["ok"]
    rows = report["rows"]
    assert [(r["gate_id"], r["decision"], r["reason"], r["kind"]) for r in rows] == [
        ("cong-1", "allow", "override", "cccd"),
        ("cong-2", "allow", "ok", "pc-covid"),
        ("cong-2", "allow", "ok", "hcert"),
    ]
    assert rows[0]["override"] == 1
    assert "Recorded late" in rows[0]["note"]

    text = "\n".join(report["log"])
    assert f"at start-up: {cause}" in text
    assert "the gate starts anyway and refuses every code (store fault) until it opens" in text
    assert "trying again every 1 s; the override button still opens the door" in text
    assert "could not read the trust list at start-up, starting without one" in text
    assert "store fault: the gate refuses every code until the database works again" in text
    assert "the database opened after" in text
    assert "recorded 1 override(s) that opened the door while the database failed" in text
    assert "the database works again after" in text
    assert "trust list reloaded: 1 signing certificates" in text
    for secret in scenario.SECRETS:
        assert secret not in text


@pytest.mark.slow
def test_gate_starts_while_a_long_lock_keeps_its_database_from_being_set_up(tmp_path, monkeypatch):
    # Each try to open waits out the busy timeout; shortened, as the kiosk's 1 s
    # would only make the test slower.
    monkeypatch.setattr(kiosk.compose, "KIOSK_BUSY_TIMEOUT_MS", 50)
    settings = kiosk_settings(tmp_path / "data")
    settings.data_dir.mkdir()
    lock = scenario.LongLock(settings.db_path)  # holds an empty, new file
    lock.inject()
    try:
        report = start_then_recover(settings, lock)
    finally:
        if lock.holder is not None and lock.holder.poll() is None:
            lock.remove()

    assert_started_failing_secure_then_recovered(
        report,
        "cannot prepare the database: the database is locked by another process "
        "(database is locked; SQLITE_BUSY)",
    )


@pytest.mark.slow
def test_gate_starts_on_a_read_only_file_system_and_works_once_it_is_writable(tmp_path):
    report = scenario.run_under_unshare(
        "tests.test_store_unavailable_at_start",
        [str(tmp_path), "--outer-mount-ns", scenario.mount_namespace()],
        what="read-only start",
    )
    report["refused"] = [tuple(r) for r in report["refused"]]

    assert report["files_at_start"] == ["gatekiosk.db", "subject.key"]
    assert_started_failing_secure_then_recovered(
        report,
        "cannot prepare the database: cannot open the database file; its file system is "
        "mounted read-only (unable to open database file; SQLITE_CANTOPEN)",
    )


def read_only_at_start(workdir: Path, outer_namespace: str | None) -> dict[str, Any]:
    """The kiosk ran before and stopped cleanly (no ``-wal`` file); the file
    system is read-only when it starts again."""
    data_dir = workdir / "data"
    scenario.mount_tmpfs(data_dir, outer_namespace)
    settings = kiosk_settings(data_dir)
    Store.open(settings.db_path, boot_id="boot-1").close()
    load_or_create_key(settings.key_path)
    fault = scenario.ReadOnlyFileSystem(data_dir)
    fault.inject()
    files = sorted(p.name for p in data_dir.iterdir())
    report = start_then_recover(settings, fault)
    report["files_at_start"] = files
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The read-only start, in a private mount ns.")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--outer-mount-ns", help="the caller's mount namespace")
    args = parser.parse_args(argv)
    print(json.dumps(read_only_at_start(args.workdir, args.outer_mount_ns)))


if __name__ == "__main__":
    main()
