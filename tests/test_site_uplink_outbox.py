"""The outbox on real SQLite files: marks written with the event, batches in log
order, marks cleared by acknowledgement only, purge keeping what is pending, and
the hub's idempotent insert."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kiosk.config import load_settings
from kiosk.store import NewEvent, Store

T0 = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)


def scan(at: datetime = T0, **overrides: object) -> NewEvent:
    event = NewEvent(
        gate_id="gate-1",
        at=at,
        utc_offset_min=420,
        clock_synced=True,
        direction="in",
        decision="allow",
        reason="ok",
        kind="cccd",
        subject_hash="a1" * 32,
        display_name="Nguyễn Văn A",
        masked_id="0010******23",
    )
    return replace(event, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "gate.db", boot_id="boot-a", mark_for_upload=True) as opened:
        yield opened


def pending_marks(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT id, upload_pending FROM events").fetchall())


def test_a_gate_without_a_site_marks_nothing(tmp_path: Path) -> None:
    with Store.open(tmp_path / "alone.db", boot_id="boot-a") as store:
        store.record(scan())
        assert store.outbox.count_pending() == 0
        assert store.outbox.pending(limit=10).events == ()


def test_a_gate_in_a_site_writes_the_mark_with_the_event(gate: Store) -> None:
    recorded = gate.record(scan())
    assert pending_marks(gate.path) == {recorded.id: 1}
    assert gate.outbox.count_pending() == 1


def test_the_settings_say_whether_the_gate_is_in_a_site(tmp_path: Path) -> None:
    alone = load_settings(overrides={"gate.data_dir": str(tmp_path)}, env={})
    assert not alone.in_site
    assert alone.site_dir == tmp_path / "site"
    in_site = load_settings(overrides={"site.hub": "hub.local:8883"}, env={})
    assert in_site.in_site


def test_pending_events_come_in_log_order_in_batches(gate: Store) -> None:
    recorded = [gate.record(scan(T0 + timedelta(seconds=-i))) for i in range(7)]
    first = gate.outbox.pending(limit=3)
    second = gate.outbox.pending(limit=3, after=first.last)
    third = gate.outbox.pending(limit=3, after=second.last)
    ids = [e.id for batch in (first, second, third) for e in batch.events]
    # Log order (boot, seq), not clock order: the clock ran backwards here.
    assert ids == [e.id for e in recorded]
    assert gate.outbox.pending(limit=3, after=third.last).events == ()


def test_a_later_boot_comes_after_an_earlier_one(tmp_path: Path) -> None:
    path = tmp_path / "gate.db"
    with Store.open(path, boot_id="boot-z", mark_for_upload=True) as first_boot:
        early = first_boot.record(scan())
    with Store.open(path, boot_id="boot-a", mark_for_upload=True) as second_boot:
        late = second_boot.record(scan(T0 - timedelta(days=1)))
        assert [e.id for e in second_boot.outbox.pending(limit=10).events] == [early.id, late.id]


def test_marking_uploaded_clears_only_those_events(gate: Store) -> None:
    a, b, c = (gate.record(scan()) for _ in range(3))
    assert gate.outbox.mark_uploaded([a.id, c.id, "unknown"]) == 2
    assert gate.outbox.mark_uploaded([a.id]) == 0  # a repeated acknowledgement
    assert [e.id for e in gate.outbox.pending(limit=10).events] == [b.id]
    assert gate.outbox.count_pending() == 1


def test_purge_never_deletes_pending_events(gate: Store) -> None:
    old_pending = gate.record(scan(T0 - timedelta(days=40)))
    old_uploaded = gate.record(scan(T0 - timedelta(days=40)))
    recent = gate.record(scan(T0))
    gate.outbox.mark_uploaded([old_uploaded.id])
    assert gate.purge_events_before(T0 - timedelta(days=21), limit=500) == 1
    assert set(pending_marks(gate.path)) == {old_pending.id, recent.id}
    gate.outbox.mark_uploaded([old_pending.id])
    assert gate.purge_events_before(T0 - timedelta(days=21), limit=500) == 1
    assert set(pending_marks(gate.path)) == {recent.id}


def test_resync_marks_events_since_a_time_again(gate: Store) -> None:
    old = gate.record(scan(T0 - timedelta(hours=2)))
    new = gate.record(scan(T0))
    gate.outbox.mark_uploaded([old.id, new.id])
    assert gate.outbox.mark_pending_since(T0 - timedelta(hours=1)) == 1
    assert [e.id for e in gate.outbox.pending(limit=10).events] == [new.id]


def test_the_hub_inserts_a_batch_once_however_often_it_comes(gate: Store, tmp_path: Path) -> None:
    events = [gate.record(scan(T0 + timedelta(seconds=i))) for i in range(5)]
    with Store.open(tmp_path / "site.db", boot_id="hub-boot") as site:
        first = site.site_log.ingest("gate-1", events[:3])
        again = site.site_log.ingest("gate-1", events)
        assert (first.inserted, again.inserted) == (3, 2)
        assert again.stored == tuple(e.id for e in events)
        assert again.conflicting == ()
        assert sorted(site.site_log.event_ids()) == sorted(e.id for e in events)
        # The rows are the gate's, column for column, and not pending at the hub.
        assert site.event_by_id(events[4].id) == events[4]
        assert site.outbox.count_pending() == 0


def test_the_hub_refuses_another_event_with_the_same_boot_and_sequence(
    gate: Store, tmp_path: Path
) -> None:
    event = gate.record(scan())
    impostor = replace(event, id="f" * 32)
    with Store.open(tmp_path / "site.db", boot_id="hub-boot") as site:
        site.site_log.ingest("gate-1", [event])
        result = site.site_log.ingest("gate-1", [impostor])
        assert result.stored == ()
        assert result.conflicting == (impostor.id,)
        assert site.site_log.event_ids() == [event.id]


def test_a_resync_of_many_events_marks_them_all_in_short_transactions(
    gate: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kiosk.store.outbox

    monkeypatch.setattr(kiosk.store.outbox, "RESYNC_ROWS_PER_TRANSACTION", 3)
    ids = [gate.record(scan(T0)).id for _ in range(10)]
    gate.outbox.mark_uploaded(ids)
    assert gate.outbox.mark_pending_since(T0) == 10
    assert gate.outbox.count_pending() == 10


@pytest.mark.parametrize(("hub", "marked"), [("", 0), ("hub.local:8883", 1)])
def test_the_kiosks_store_marks_events_only_in_a_site(
    tmp_path: Path, hub: str, marked: int
) -> None:
    from kiosk.clock import FakeClock
    from kiosk.compose import open_store

    settings = load_settings(overrides={"gate.data_dir": str(tmp_path), "site.hub": hub}, env={})
    store = open_store(settings, clock=FakeClock())
    try:
        store.record(scan())
        assert store.outbox.count_pending() == marked
    finally:
        store.close()
