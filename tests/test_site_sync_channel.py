"""The gate's uplink channel on a real SQLite file and a fake clock, without a
broker: what it offers, when it sends again, what an acknowledgement clears."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kiosk.clock import FakeClock
from kiosk.site.gate_sync import BATCH_MAX_BYTES, UplinkChannel
from kiosk.site.topics import Topics
from kiosk.site.uplink import EventBatch, decode_batch, encode_ack, encode_resync
from kiosk.store import Store
from tests.site_sync_harness import synthetic_event

TOPICS = Topics("test-site")
ACK = "gk/test-site/to/gate-1/ack"
RESYNC = "gk/test-site/to/gate-1/resync"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "gate.db", boot_id="boot-1", mark_for_upload=True) as opened:
        yield opened


def channel(store: Store, clock: FakeClock, tmp_path: Path | None = None) -> UplinkChannel:
    return UplinkChannel(
        outbox=store.outbox,
        topics=TOPICS,
        gate_id="gate-1",
        clock=clock,
        resync_memory=None if tmp_path is None else tmp_path / "resync-request",
        batch_events=10,
        window=2,
        ack_timeout_s=5.0,
    )


def record(store: Store, count: int, clock: FakeClock) -> list[str]:
    return [store.record(synthetic_event("gate-1", clock.now(), i)).id for i in range(count)]


def ids_of(payload: bytes) -> list[str]:
    batch = decode_batch(payload)
    assert isinstance(batch, EventBatch)
    return [e.id for e in batch.events]


def test_batches_go_in_log_order_within_the_window(store: Store) -> None:
    clock = FakeClock()
    ids = record(store, 25, clock)
    uplink = channel(store, clock)
    offers = uplink.publications(limit=10)
    assert [o.topic for o in offers] == ["gk/test-site/gate/gate-1/events"] * 2  # the window
    assert [i for o in offers for i in ids_of(o.payload)] == ids[:20]
    assert uplink.publications(limit=10) == []


def test_only_the_hubs_acknowledgement_clears_the_marks(store: Store) -> None:
    clock = FakeClock()
    ids = record(store, 15, clock)
    uplink = channel(store, clock)
    first, second = uplink.publications(limit=10)
    uplink.published([first, second])  # PUBACK: the broker has them, the hub not yet
    assert store.outbox.count_pending() == 15
    uplink.on_message(ACK, encode_ack(ids_of(first.payload)))
    assert store.outbox.count_pending() == 5
    assert uplink.publications(limit=10) == []  # nothing new beyond what is in flight
    uplink.on_message(ACK, encode_ack(ids[10:]))
    assert store.outbox.count_pending() == 0


def test_what_stays_unacknowledged_is_sent_again_after_the_timeout(store: Store) -> None:
    clock = FakeClock()
    ids = record(store, 15, clock)
    uplink = channel(store, clock)
    first, _second = uplink.publications(limit=10)
    clock.advance(4.0)
    uplink.on_message(ACK, encode_ack(ids_of(first.payload)))  # progress
    clock.advance(4.0)  # 8 s since the second batch went, 4 s since the last ack
    assert uplink.publications(limit=10) == []
    clock.advance(1.5)
    again = uplink.publications(limit=10)
    assert [i for o in again for i in ids_of(o.payload)] == ids[10:]
    assert uplink.counts.resends == 1


def test_a_batch_too_large_for_the_broker_is_split(store: Store) -> None:
    clock = FakeClock()
    for i in range(20):  # about 60 KB each once encoded: 1.2 MB in all
        store.record(replace(synthetic_event("gate-1", clock.now(), i), note="x" * 60_000))
    uplink = UplinkChannel(
        outbox=store.outbox, topics=TOPICS, gate_id="gate-1", clock=clock, batch_events=20
    )
    offers = uplink.publications(limit=10)
    assert all(len(o.payload) <= BATCH_MAX_BYTES for o in offers)
    assert len(offers) > 1
    assert sum(len(ids_of(o.payload)) for o in offers) == 20


def test_malformed_acknowledgements_are_counted_and_ignored(store: Store) -> None:
    clock = FakeClock()
    record(store, 3, clock)
    uplink = channel(store, clock)
    uplink.publications(limit=10)
    for payload in (b"", b'{"v":1,"ids":"all"}', b'{"v":1,"ids":[1]}'):
        uplink.on_message(ACK, payload)
    assert uplink.counts.malformed == 3
    assert store.outbox.count_pending() == 3


def test_a_resync_request_is_carried_out_once(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    ids = record(store, 4, clock)
    store.outbox.mark_uploaded(ids)
    uplink = channel(store, clock, tmp_path)
    request = encode_resync("r-1", datetime(2000, 1, 1, tzinfo=UTC))
    uplink.on_message(RESYNC, request)
    assert store.outbox.count_pending() == 4
    store.outbox.mark_uploaded(ids)
    uplink.on_message(RESYNC, request)  # the retained request again, at a reconnection
    assert store.outbox.count_pending() == 0
    later = encode_resync("r-2", clock.now() - timedelta(seconds=1))
    uplink.on_message(RESYNC, later)
    assert store.outbox.count_pending() == 4
