"""Faults on the way up, with real processes: ``gatekiosk hub``, ``gatekiosk
sync`` per gate and the real broker, while the gates keep recording.

Each test accounts for every event: the set of ids at the gates and in the
site database must be equal at the end (none lost, none doubled).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kiosk.store import Store
from tests.mosquitto_fixture import (  # noqa: F401  (fixtures: broker, site)
    RunningBroker,
    TestSite,
    broker_fixture,
    site_fixture,
)
from tests.site_sync_harness import SiteRig, account, synthetic_event, wait_until

GATES = ["gate-1", "gate-2"]
WAIT_S = 60.0


class Writer:
    """Records events at one gate, one transaction each, as its kiosk would, until stopped."""

    def __init__(self, rig: SiteRig, gate_id: str) -> None:
        rig.gate_data(gate_id).mkdir(parents=True, exist_ok=True)
        self.count = 0
        self._stop = threading.Event()
        self._store = Store.open(
            rig.gate_db(gate_id), boot_id=f"boot-of-{gate_id}", mark_for_upload=True
        )
        self._gate_id = gate_id
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):  # about 100 events a second at most
            self._store.record(synthetic_event(self._gate_id, datetime.now(UTC), self.count))
            self.count += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._store.close()


@pytest.fixture
def rig(tmp_path: Path, site: TestSite, broker: RunningBroker) -> Iterator[SiteRig]:
    made = SiteRig(tmp_path, site, broker)
    yield made
    made.stop_all()


def running_site(rig: SiteRig, fault: Callable[[SiteRig, list[Writer]], None]) -> None:
    """Hub, syncs and writers running; ``fault`` in the middle; then account."""
    hub = rig.start_hub()
    for gate_id in GATES:
        rig.start_sync(gate_id, ack_timeout_s=1.0)
    writers = [Writer(rig, gate_id) for gate_id in GATES]
    try:
        wait_until(lambda: len(rig.site_event_ids()) >= 50, WAIT_S, "the first events at the hub")
        assert hub.poll() is None, rig.log("hub.log")
        fault(rig, writers)
        more = sum(w.count for w in writers) + 100
        wait_until(lambda: sum(w.count for w in writers) >= more, WAIT_S, "more events")
    finally:
        for writer in writers:
            writer.stop()
    wait_until(lambda: rig.all_uploaded(GATES), WAIT_S, "every event at the hub")
    recorded, lost, doubled = account(rig, GATES)
    assert recorded == sum(w.count for w in writers)
    assert (lost, doubled) == (0, 0)
    assert sorted(rig.site_event_ids()) == sorted(
        i for gate_id in GATES for i in rig.gate_event_ids(gate_id)
    )


def recorded_grows(writers: list[Writer], by: int) -> None:
    target = sum(w.count for w in writers) + by
    wait_until(lambda: sum(w.count for w in writers) >= target, WAIT_S, "events recorded meanwhile")


def test_a_hub_killed_mid_stream_loses_and_doubles_nothing(rig: SiteRig) -> None:
    def kill_hub(rig: SiteRig, writers: list[Writer]) -> None:
        hub = rig.processes[0]
        hub.send_signal(signal.SIGKILL)
        hub.wait()
        recorded_grows(writers, 100)  # the gates keep recording while the hub is gone
        rig.start_hub()

    running_site(rig, kill_hub)


def test_a_broker_killed_and_restarted_loses_and_doubles_nothing(rig: SiteRig) -> None:
    def kill_broker(rig: SiteRig, writers: list[Writer]) -> None:
        rig.broker.process.send_signal(signal.SIGKILL)
        rig.broker.process.wait()
        recorded_grows(writers, 100)
        rig.restart_broker(kill=False)

    running_site(rig, kill_broker)


def test_a_frozen_broker_loses_and_doubles_nothing(rig: SiteRig) -> None:
    def freeze_broker(rig: SiteRig, writers: list[Writer]) -> None:
        os.kill(rig.broker.process.pid, signal.SIGSTOP)
        try:
            recorded_grows(writers, 500)  # a few seconds of half-open connections
        finally:
            os.kill(rig.broker.process.pid, signal.SIGCONT)

    running_site(rig, freeze_broker)


def test_a_sync_killed_mid_drain_loses_and_doubles_nothing(rig: SiteRig) -> None:
    ids = rig.record("gate-1", 6000, per_transaction=1000)
    rig.start_hub()
    sync = rig.start_sync("gate-1", ack_timeout_s=1.0)
    wait_until(lambda: len(rig.site_event_ids()) > 0, WAIT_S, "the drain has started")
    sync.send_signal(signal.SIGKILL)
    sync.wait()
    drained = len(rig.site_event_ids())
    again = rig.start_sync("gate-1", ack_timeout_s=1.0)
    wait_until(lambda: rig.all_uploaded(["gate-1"]), WAIT_S, "the rest of the backlog")
    again.send_signal(signal.SIGTERM)  # systemd's stop: a clean exit
    assert again.wait(timeout=WAIT_S) == 0, rig.log("sync-gate-1.log")
    assert drained < len(ids), "killed after the drain; the test proves less than it says"
    recorded, lost, doubled = account(rig, ["gate-1"])
    assert (recorded, lost, doubled) == (len(ids), 0, 0)


def test_a_hub_that_lost_its_disk_is_rebuilt_from_the_gates(rig: SiteRig) -> None:
    ids = rig.record("gate-1", 40) + rig.record("gate-2", 60)
    hub = rig.start_hub()
    for gate_id in GATES:
        rig.start_sync(gate_id, ack_timeout_s=1.0)
    wait_until(lambda: rig.all_uploaded(GATES), WAIT_S, "the first upload")
    hub.send_signal(signal.SIGKILL)
    hub.wait()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{rig.hub_db}{suffix}").unlink(missing_ok=True)
    rig.start_hub()
    done = rig.resync("2000-01-01")
    assert done.returncode == 0, done.stderr.decode()
    assert "gate-1: đã gửi / sent".encode() in done.stdout
    wait_until(lambda: sorted(rig.site_event_ids()) == sorted(ids), WAIT_S, "the rebuilt log")
    wait_until(lambda: rig.all_uploaded(GATES), WAIT_S, "the marks cleared again")
    assert sorted(rig.site_event_ids()) == sorted(ids)
