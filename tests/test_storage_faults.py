"""Storage faults at a real gate: a long lock, a full disk, a read-only file
system. The gate fails secure (refuses, fault pattern), the guard's override
still opens the door and is recorded once the database is back, the logs
say what is wrong, and the file is intact afterwards.

The end-to-end scenarios live in :mod:`tests.storage_fault_scenario`; the
file-system ones run under ``unshare -rm`` (a private mount namespace, no
real root needed) so that they can mount a small tmpfs, fill it and remount
it read-only.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from kiosk.clock import FakeClock
from kiosk.errors import StoreError
from kiosk.samples import VISITOR_CCCD, VISITOR_DENYLISTED
from kiosk.store import NewEvent, Store
from tests import storage_fault_scenario as scenario

CAUSES = {
    "locked": "the database is locked by another process",
    "disk-full": "disk full: no space left for the database",
    "read-only": "the database file is read-only; its file system is mounted read-only",
}


def run_in_private_mounts(kind: str, workdir: Path) -> dict[str, Any]:
    """Run a file-system scenario in a mount namespace of its own."""
    return scenario.run_under_unshare(
        "tests.storage_fault_scenario",
        [kind, str(workdir), "--outer-mount-ns", scenario.mount_namespace()],
        what=kind,
    )


def stored_time(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def assert_fails_secure_then_recovers(report: dict[str, Any], kind: str) -> None:
    pre, post = report["pre_rows"], report["post_rows"]
    assert report["normal"]["decisions"] == ["allow/ok", "allow/ok"]
    assert len(pre) == 2

    # The fault: the code is refused, nothing recorded, the fault pattern shows.
    [refused] = report["refused"]
    assert (refused["verdict"], refused["reason"], refused["recorded"]) == (
        "deny",
        "store-fault",
        False,
    )
    assert report["fault_while_failing"] == "store"
    assert report["pattern_while_failing"] is True

    # The guard's button opens the door twice; both overrides wait, nothing is lost.
    assert report["pulses_after_override"] == report["pulses_before_override"] + 2
    assert report["waiting_after_override"] == 2
    assert report["waiting_while_failing"] == 2
    assert report["rows_while_failing"] == len(pre)
    assert report["fault_still"] == "store"

    # The database is back: both recorded, the fault pattern stops, the gate decides.
    assert report["waiting_after_recovery"] == 0
    assert report["fault_after_recovery"] is None
    assert report["pattern_stopped"] is True
    assert report["after"] == "allow/ok-exit"

    # The file: intact, every earlier row as it was, each override exactly once.
    assert report["integrity"] == ["ok"]
    assert report["files_after"] == ["gatekiosk.db"]
    assert post[: len(pre)] == pre
    assert len(post) == len(pre) + 3
    for_visitor, for_nobody, leaving = post[len(pre) :]
    assert [r["reason"] for r in post].count("override") == 2
    assert (for_visitor["decision"], for_visitor["override"], for_visitor["kind"]) == (
        "allow",
        1,
        "cccd",
    )
    assert for_visitor["display_name"] == "Lê Hoàng Phúc"
    assert for_visitor["subject_hash"] is not None
    assert (for_nobody["kind"], for_nobody["subject_hash"], for_nobody["override"]) == (
        "override",
        None,
        1,
    )
    # Recorded late, but with the time the door opened, and saying so.
    assert [for_visitor["at_utc"], for_nobody["at_utc"]] == [
        stored_time(at) for at in report["pressed_at"]
    ]
    for late in (for_visitor, for_nobody):
        assert "Recorded late" in late["note"]
        assert "Ghi muộn" in late["note"]
    assert for_visitor["seq"] < for_nobody["seq"] < leaving["seq"]
    assert (leaving["direction"], leaving["reason"], leaving["note"]) == ("out", "ok-exit", None)

    # The log says what is wrong, what the gate does, and when it is over.
    text = "\n".join(report["log"])
    assert CAUSES[kind] in text
    assert "store fault: the gate refuses every code until the database works again" in text
    assert "the door opens; 2 override(s) waiting to be recorded" in text
    assert "recorded 2 override(s) that opened the door while the database failed" in text
    assert "the database works again after" in text
    for secret in scenario.SECRETS:
        assert secret not in text


# -- the three faults, end to end --------------------------------------------------


@pytest.mark.slow
def test_long_lock_refuses_then_records_the_guards_overrides_once_it_is_released(tmp_path):
    report = scenario.run("locked", tmp_path)

    assert_fails_secure_then_recovers(report, "locked")


@pytest.mark.slow
def test_full_disk_refuses_then_records_the_guards_overrides_once_space_is_freed(tmp_path):
    report = run_in_private_mounts("disk-full", tmp_path)

    assert_fails_secure_then_recovers(report, "disk-full")
    # With one page of room left, the gate still waits for real space.
    assert "less than the 256 KiB the kiosk waits for" in "\n".join(report["log"])


@pytest.mark.slow
def test_read_only_file_system_refuses_then_records_the_guards_overrides_once_writable(
    tmp_path,
):
    report = run_in_private_mounts("read-only", tmp_path)

    assert report["left_after_power_cut"] == [
        "gatekiosk.db",
        "gatekiosk.db-shm",
        "gatekiosk.db-wal",
    ]
    assert_fails_secure_then_recovers(report, "read-only")
    text = "\n".join(report["log"])
    assert "opened for reading only; every write fails until it is writable again" in text
    assert "the database file is writable again: reopened for writing" in text
    # Without a -wal file, SQLite cannot open the file at all: the message says why.
    assert report["open_after_clean_stop"] == (
        "cannot prepare the database: cannot open the database file; its file system is "
        "mounted read-only (unable to open database file; SQLITE_CANTOPEN)"
    )


# -- details, in-process -----------------------------------------------------------


@pytest.fixture
def locked_gate(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[scenario.Gate, scenario.LongLock]]:
    """A gate whose database can be locked; indirect parameters are ScanSettings fields."""
    db = tmp_path / "gatekiosk.db"
    store = Store.open(db, boot_id="boot-1", busy_timeout_ms=100)
    gate = scenario.build_gate(store, FakeClock(), **getattr(request, "param", {}))
    lock = scenario.LongLock(db)
    yield gate, lock
    if lock.holder is not None and lock.holder.poll() is None:
        lock.remove()
    gate.close()
    store.close()


def test_store_fault_clears_when_the_database_works_again_with_no_override_waiting(locked_gate):
    gate, lock = locked_gate
    lock.inject()
    [outcome] = gate.frames(VISITOR_CCCD.payload, 1.0)
    assert outcome.decision.reason == "store-fault"
    assert gate.scanner.fault == "store"
    assert gate.status_blinking()

    lock.remove()
    gate.frames(None, gate.scanner.settings.store_probe_s)

    assert gate.scanner.fault is None
    assert gate.status_steady()
    assert gate.scanner.store.recent_events() == []  # the refusal itself is not recorded


@pytest.mark.parametrize("locked_gate", [{"overrides_waiting_max": 2}], indirect=True)
def test_overrides_past_the_limit_still_open_the_door_and_say_they_are_lost(locked_gate, caplog):
    gate, lock = locked_gate
    lock.inject()
    gate.frames(VISITOR_DENYLISTED.payload, 1.0)
    pulses = scenario.relay_pulses(gate.factory)

    with caplog.at_level(logging.ERROR, logger="kiosk.overrides"):
        for _ in range(3):
            gate.press_override()

    assert scenario.relay_pulses(gate.factory) == pulses + 3
    assert gate.scanner.overrides_waiting == 2
    assert "this override will never be recorded: 2 overrides already wait" in caplog.text
    lock.remove()
    gate.frames(None, 1.0)
    assert [e.reason for e in gate.scanner.store.recent_events()] == ["override", "override"]


def test_a_scan_after_the_database_is_back_records_the_waiting_overrides_first(locked_gate):
    gate, lock = locked_gate
    lock.inject()
    gate.frames(VISITOR_DENYLISTED.payload, 1.0)
    gate.press_override()
    lock.remove()

    # The next code is decided before the probe is due: the override goes first.
    [outcome] = gate.frames(VISITOR_CCCD.payload, 0.2)

    assert outcome.decision.reason == "ok"
    events = list(reversed(gate.scanner.store.recent_events()))
    assert [(e.reason, e.kind) for e in events] == [("override", "cccd"), ("ok", "cccd")]
    assert events[0].seq < events[1].seq
    assert gate.scanner.fault is None


def test_stopping_records_the_waiting_overrides_if_the_database_is_back(locked_gate):
    gate, lock = locked_gate
    lock.inject()
    gate.frames(VISITOR_DENYLISTED.payload, 1.0)
    gate.press_override()
    lock.remove()

    gate.scanner.run(stopped())  # the service is stopped before the next probe

    assert [e.reason for e in gate.scanner.store.recent_events()] == ["override"]
    assert gate.scanner.overrides_waiting == 0


def test_stopping_while_the_database_fails_says_how_many_overrides_are_lost(locked_gate, caplog):
    gate, lock = locked_gate
    lock.inject()
    gate.frames(VISITOR_DENYLISTED.payload, 1.0)
    gate.press_override()
    gate.press_override()

    with caplog.at_level(logging.ERROR, logger="kiosk.overrides"):
        gate.scanner.run(stopped())

    assert "stopping with 2 override(s) that opened the door never recorded" in caplog.text
    assert "locked by another process" in caplog.text


def stopped() -> threading.Event:
    stop = threading.Event()
    stop.set()
    return stop


# -- the messages, from real SQLite errors -----------------------------------------------


def test_a_file_that_is_not_a_database_is_called_corrupt(tmp_path):
    path = tmp_path / "gatekiosk.db"
    path.write_bytes(os.urandom(8192))

    with pytest.raises(StoreError) as raised:
        Store.open(path, boot_id="b")

    assert "the database file is corrupt (not a database)" in str(raised.value)
    assert "SQLITE_NOTADB" in str(raised.value)


def test_a_damaged_page_is_called_corrupt(tmp_path):
    path = tmp_path / "gatekiosk.db"
    with Store.open(path, boot_id="b") as store:
        store.record(scenario_event())
    size = path.stat().st_size
    with path.open("r+b") as raw:  # scribble over every page but the header page
        raw.seek(4096)
        raw.write(b"\xff" * (size - 4096))

    with pytest.raises(StoreError) as raised, Store.open(path, boot_id="b") as store:
        store.recent_events()

    assert "the database file is corrupt" in str(raised.value)


def test_a_read_only_connection_is_called_read_only(tmp_path):
    path = tmp_path / "gatekiosk.db"
    Store.open(path, boot_id="b").close()
    with (
        Store.open(path, boot_id="b", read_only=True) as store,
        pytest.raises(StoreError) as raised,
    ):
        store.record(scenario_event())

    assert str(raised.value) == (
        "could not record the event: the database file is read-only "
        "(attempt to write a readonly database; SQLITE_READONLY)"
    )


def test_a_lock_past_the_busy_timeout_is_called_locked_by_another_process(tmp_path):
    path = tmp_path / "gatekiosk.db"
    with Store.open(path, boot_id="b", busy_timeout_ms=50) as store:
        lock = scenario.LongLock(path)
        lock.inject()
        try:
            with pytest.raises(StoreError) as raised:
                store.check_writable()
        finally:
            lock.remove()
        store.check_writable()  # released: it works again

    assert str(raised.value) == (
        "could not write to the database: the database is locked by another process "
        "(database is locked; SQLITE_BUSY)"
    )


def scenario_event() -> NewEvent:
    return NewEvent(
        gate_id="g",
        at=FakeClock().now(),
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
