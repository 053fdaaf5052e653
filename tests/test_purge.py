"""The retention purge in batches: each batch one short transaction on a
real SQLite file, a run that a kill or a store fault cuts short loses
nothing, and the kiosk's purge waits after start, then takes one batch per
loop step until a short batch, then waits for the hour.

The scan loop's side (a code decided while a long purge runs) is in
test_live_settings.py; ``gatekiosk purge`` in test_cli.py; the pauses of
the loop purging a million events in bench/purge_bench.py.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kiosk.clock import FakeClock
from kiosk.errors import StoreError
from kiosk.site_business import (
    PURGE_BATCH_MIN_ROWS,
    PURGE_BATCH_ROWS,
    PURGE_BATCH_TARGET_S,
    PURGE_PAUSE_S,
    PURGE_START_DELAY_S,
    Purged,
    PurgeRun,
    RetentionPurge,
    next_batch_rows,
    purge_past_retention,
)
from kiosk.store import NewEvent, SiteCode, Store

DAY = timedelta(days=1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "gate.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store.open(db_path, boot_id="boot-a") as store:
        yield store


def entry(at: datetime, person: int) -> NewEvent:
    """An allowed entry: it also puts the person in presence."""
    return NewEvent(
        gate_id="gate-1",
        at=at,
        utc_offset_min=420,
        clock_synced=True,
        direction="in",
        decision="allow",
        reason="ok",
        kind="cccd",
        subject_hash=f"{person:064x}",
        display_name="Nguyễn Văn An",
        masked_id="********0123",
    )


def issued_code(code_id: str, *, expires: datetime) -> SiteCode:
    return SiteCode(
        id=code_id,
        kind="declaration",
        issued_at=expires - DAY,
        valid_from=expires - DAY,
        expires_at=expires,
        name="Vũ Minh Khoa",
        phone=None,
        organisation=None,
        answers={"fever": False},
        verdict="ok",
        issued_by="self",
    )


def ages_in_days(store: Store, now: datetime) -> list[int]:
    """The events' ages, oldest first."""
    events = store.events_between(now - 3650 * DAY, now + DAY)
    return sorted(((now - e.at).days for e in events), reverse=True)


def copy_event(path: Path, event_id: str, copies: int) -> None:
    """``copies`` more rows like event ``event_id`` (new ids and sequence
    numbers, no presence), in one transaction: a big log in milliseconds."""
    with closing(sqlite3.connect(path)) as db, db:
        names = ", ".join(
            row[1] for row in db.execute("PRAGMA table_info(events)") if row[1] not in ("id", "seq")
        )
        db.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            f"INSERT INTO events (id, seq, {names}) "
            f"SELECT id || '-' || i, seq + 1000000 + i, {names} FROM events, n WHERE id = ?",
            (copies, event_id),
        )


# -- one batch ---------------------------------------------------------------------


def test_a_batch_deletes_the_oldest_events_before_the_cutoff_with_their_presence(store, clock):
    now = clock.now()
    for person, days in enumerate((9, 5, 7, 3, 1)):
        store.record(entry(now - days * DAY, person))
    store.record(entry(now - 2 * DAY, 9))  # exactly at the cutoff: kept
    cutoff = now - 2 * DAY

    assert store.purge_events_before(cutoff, limit=2) == 2

    assert ages_in_days(store, now) == [5, 3, 2, 1]  # the two oldest went, 9 and 7 days
    expiry_h = 24 * 365
    assert store.presence_of(f"{0:064x}", now=now, expiry_h=expiry_h) is None
    assert store.presence_of(f"{2:064x}", now=now, expiry_h=expiry_h) is None
    assert store.presence_of(f"{1:064x}", now=now, expiry_h=expiry_h) is not None
    assert store.purge_events_before(cutoff, limit=3) == 2  # fewer than the limit: none left
    assert store.purge_events_before(cutoff, limit=3) == 0
    assert ages_in_days(store, now) == [2, 1]


def test_a_batch_of_issued_codes_stops_at_its_limit(store, clock):
    now = clock.now()
    for i in range(3):
        store.save_site_code(issued_code(f"old-{i}", expires=now - (10 + i) * DAY))
    store.save_site_code(issued_code("current", expires=now + DAY))

    assert store.purge_site_codes_before(now, limit=2) == 2
    assert store.purge_site_codes_before(now, limit=2) == 1
    assert store.purge_site_codes_before(now, limit=2) == 0
    assert store.site_code("current") is not None


def test_slow_batches_halve_and_fast_ones_double_within_bounds():
    slow, fast, fine = PURGE_BATCH_TARGET_S * 1.5, PURGE_BATCH_TARGET_S / 4, PURGE_BATCH_TARGET_S

    assert next_batch_rows(400, slow) == 200
    assert next_batch_rows(PURGE_BATCH_MIN_ROWS + 1, slow) == PURGE_BATCH_MIN_ROWS
    assert next_batch_rows(100, fast) == 200
    assert next_batch_rows(PURGE_BATCH_ROWS, fast) == PURGE_BATCH_ROWS
    assert next_batch_rows(100, fast, most=150) == 150
    assert next_batch_rows(100, fine) == 100


# -- a whole purge -----------------------------------------------------------------


def test_a_purge_deletes_all_past_retention_in_batches_pausing_between_them(store, clock):
    now = clock.now()
    for person in range(7):
        store.record(entry(now - (30 + person) * DAY, person))
    store.record(entry(now - 20 * DAY, 99))
    for i in range(3):
        store.save_site_code(issued_code(f"old-{i}", expires=now - 25 * DAY))
    store.save_site_code(issued_code("recent", expires=now - 20 * DAY))
    started = clock.monotonic()

    purged = purge_past_retention(store, clock=clock, retention_days=21, batch_rows=3)

    assert purged == Purged(events=7, site_codes=3)
    assert ages_in_days(store, now) == [20]
    assert store.site_code("recent") is not None
    # events 3, 3, 1; issued codes 3, 0: five batches, four pauses
    assert clock.monotonic() - started == pytest.approx(4 * PURGE_PAUSE_S)


def test_a_run_cut_short_by_a_store_fault_keeps_its_batches_and_waits_for_the_hour(
    db_path, clock, caplog
):
    class FailingStore(Store):
        fail_at_batch = 2
        batches = 0

        def purge_events_before(self, cutoff: datetime, *, limit: int) -> int:
            self.batches += 1
            if self.batches == self.fail_at_batch:
                raise StoreError("cannot purge old events: database is locked")
            return super().purge_events_before(cutoff, limit=limit)

    now = clock.now()
    with FailingStore.open(db_path, boot_id="boot-a") as store:
        for person in range(5):
            store.record(entry(now - (30 + person) * DAY, person))
        purge = RetentionPurge(store=store, clock=clock, every_s=3600, batch_rows=2)
        clock.advance(PURGE_START_DELAY_S)

        with caplog.at_level(logging.WARNING, logger="kiosk.site_business"):
            purge.step(21)
            purge.step(21)  # the fault

        assert len(ages_in_days(store, now)) == 3  # the first batch stays deleted
        assert "could not purge records older than 21 days" in caplog.text
        assert not purge.running
        clock.advance(3599)
        purge.step(21)
        assert len(ages_in_days(store, now)) == 3

        clock.advance(1)
        for _ in range(3):  # 2, 1 (short), then the issued codes
            purge.step(21)
        assert ages_in_days(store, now) == []
        assert not purge.running


def test_the_kiosk_purges_a_minute_after_start_then_an_hour_after_each_purge_ended(
    store, clock, caplog
):
    now = clock.now()
    for person in range(5):
        store.record(entry(now - (30 + person) * DAY, person))
    purge = RetentionPurge(store=store, clock=clock, every_s=3600, batch_rows=2)

    purge.step(21)  # the first step after start: nothing
    clock.advance(PURGE_START_DELAY_S - 0.1)
    purge.step(21)
    assert len(ages_in_days(store, now)) == 5

    clock.advance(0.1)
    left = []
    with caplog.at_level(logging.INFO, logger="kiosk.site_business"):
        for _ in range(4):  # one batch a step: 2, 2, 1 (short), no issued codes
            purge.step(21)
            left.append(len(ages_in_days(store, now)))
            clock.advance(600)  # a slow loop: the hour counts from the end
    assert left == [3, 1, 0, 0]
    assert "purged 5 events older than 21 days (4 batches)" in caplog.text
    assert not purge.running

    store.record(entry(clock.now() - 30 * DAY, 7))
    clock.advance(3600 - 600 - 1)
    purge.step(21)
    assert len(ages_in_days(store, clock.now())) == 1
    clock.advance(1)
    purge.step(21)
    assert ages_in_days(store, clock.now()) == []


def test_retention_turned_off_stops_a_run_under_way(store, clock):
    now = clock.now()
    for person in range(5):
        store.record(entry(now - (30 + person) * DAY, person))
    purge = RetentionPurge(store=store, clock=clock, every_s=3600, batch_rows=2)
    clock.advance(PURGE_START_DELAY_S)

    purge.step(21)
    purge.step(None)
    purge.step(None)

    assert not purge.running
    assert len(ages_in_days(store, now)) == 3


def test_a_purge_killed_midway_loses_nothing_and_the_next_one_carries_on(db_path, clock):
    now = clock.now()
    with Store.open(db_path, boot_id="boot-a") as store:
        for person in range(40):
            store.record(entry(now - (30 + person) * DAY, person))
        store.record(entry(now - DAY, 99))
    child = textwrap.dedent(
        f"""
        import sys
        from datetime import datetime
        from kiosk.site_business import PurgeRun
        from kiosk.store import Store

        store = Store.open({str(db_path)!r}, boot_id="boot-b")
        run = PurgeRun(
            store, cutoff=datetime.fromisoformat({(now - 21 * DAY).isoformat()!r}),
            monotonic=lambda: 0.0, batch_rows=1,
        )
        while True:
            run.step()
            print(run.events, flush=True)
            sys.stdin.readline()  # the parent says when to go on
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", child],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        reported = [int(process.stdout.readline())]
        for _ in range(2):
            process.stdin.write("\n")
            process.stdin.flush()
            reported.append(int(process.stdout.readline()))
        process.send_signal(signal.SIGKILL)  # waiting between two batches
        process.wait(timeout=30)

    assert reported == [1, 2, 3]
    with Store.open(db_path, boot_id="boot-c") as store:
        assert store.integrity_ok()
        assert len(ages_in_days(store, now)) == 41 - 3  # every batch it reported is gone
        purged = purge_past_retention(store, clock=clock, retention_days=21)
        assert purged.events == 37
        assert ages_in_days(store, now) == [1]


def test_a_run_sizes_its_next_batch_on_the_last_ones_time(store, clock):
    class SlowStore:
        """Each batch takes 0.1 s of the fake clock: twice the target and more."""

        def purge_events_before(self, cutoff: datetime, *, limit: int) -> int:
            clock.advance(0.1)
            return limit

    slow: Any = SlowStore()
    run = PurgeRun(slow, cutoff=clock.now(), monotonic=clock.monotonic, batch_rows=400)

    limits = []
    for _ in range(4):
        limits.append(run.rows)
        run.step()

    assert limits == [400, 200, 100, 50]
    assert run.events == 750
