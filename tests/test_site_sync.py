"""Events going up, with the real broker on loopback and real SQLite files:
the gate's sync and the hub run in threads of this process here (the faults
that need real processes are in test_site_sync_faults.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.clock import SystemClock
from kiosk.config import load_settings
from kiosk.site.gate_sync import UplinkChannel, build_sync
from kiosk.site.hub import HubFiles, IngestChannel
from kiosk.site.link import BrokerAddress, ChannelLoop
from kiosk.site.topics import Topics
from kiosk.site.uplink import GateStatus, decode_status, encode_batch, encode_status
from kiosk.store import Store
from tests.mosquitto_fixture import (  # noqa: F401  (fixtures: broker, clients, site)
    HOST,
    Clients,
    RunningBroker,
    TestSite,
    broker_fixture,
    clients_fixture,
    site_fixture,
)
from tests.site_sync_harness import SiteRig, synthetic_event, wait_until

WAIT_S = 30.0


class Running:
    """A ChannelLoop on a thread of its own, stopped at the end."""

    def __init__(self, loop: ChannelLoop) -> None:
        self.loop = loop
        self.thread = threading.Thread(target=loop.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.stop()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


@pytest.fixture
def rig(tmp_path: Path, site: TestSite, broker: RunningBroker) -> SiteRig:
    return SiteRig(tmp_path, site, broker)


@pytest.fixture
def running() -> Iterator[list[Running]]:
    made: list[Running] = []
    yield made
    for item in made:
        item.stop()


def start_hub(rig: SiteRig, running: list[Running]) -> IngestChannel:
    """The hub, subscribed (what a gate publishes from now on reaches it)."""
    store = Store.open(rig.hub_db, boot_id="hub-boot")
    files = HubFiles.in_site_dir(rig.folder)
    clock = SystemClock()
    ingest = IngestChannel(site_log=store.site_log, topics=Topics(files.site_id()), clock=clock)
    loop = files.loop(BrokerAddress(HOST, rig.broker.port), channels=[ingest], clock=clock)
    running.append(Running(loop))
    wait_until(lambda: loop.subscribed, WAIT_S)
    return ingest


def start_sync(
    rig: SiteRig, running: list[Running], gate_id: str, *, ack_timeout_s: float = 2.0
) -> tuple[ChannelLoop, UplinkChannel]:
    settings = load_settings(rig.gate_config(gate_id), env={})
    rig.gate_data(gate_id).mkdir(parents=True, exist_ok=True)
    store = Store.open(rig.gate_db(gate_id), boot_id=f"boot-of-{gate_id}")
    loop, uplink = build_sync(
        settings, outbox=store.outbox, clock=SystemClock(), ack_timeout_s=ack_timeout_s
    )
    running.append(Running(loop))
    return loop, uplink


def test_events_recorded_at_two_gates_reach_the_site_database_once(
    rig: SiteRig, running: list[Running]
) -> None:
    ingest = start_hub(rig, running)
    start_sync(rig, running, "gate-1")
    start_sync(rig, running, "gate-2")
    ids = rig.record("gate-1", 30) + rig.record("gate-2", 1200, per_transaction=400)
    wait_until(lambda: rig.all_uploaded(["gate-1", "gate-2"]), WAIT_S)
    site = rig.site_event_ids()
    assert sorted(site) == sorted(ids)
    assert ingest.stats.events_inserted == len(ids)
    with Store.open(rig.hub_db, boot_id="reader") as hub, Store.open(rig.gate_db("gate-1")) as gate:
        event = gate.recent_events(1)[0]
        assert hub.event_by_id(event.id) == event  # every column, as recorded


def test_the_gate_marks_events_uploaded_only_on_the_hubs_acknowledgement(
    rig: SiteRig, running: list[Running]
) -> None:
    rig.record("gate-1", 20)
    loop, uplink = start_sync(rig, running, "gate-1")
    # The broker takes the batch (PUBACK) but no hub is there to commit it.
    wait_until(lambda: loop.counts.published >= 1, WAIT_S)
    assert rig.gate_pending("gate-1") == 20
    start_hub(rig, running)
    wait_until(lambda: rig.all_uploaded(["gate-1"]), WAIT_S)
    assert uplink.counts.resends >= 1  # sent again after the acknowledgement timeout


def test_the_gate_publishes_a_retained_status_and_the_broker_its_will(
    rig: SiteRig, running: list[Running], clients: Clients
) -> None:
    rig.record("gate-1", 3)
    start_sync(rig, running, "gate-1")
    topic = rig.site.topics.gate_status("gate-1")
    hub = clients.hub()
    hub.subscribe(topic)
    message = hub.wait_for_message(topic)
    status = decode_status(message.payload)
    assert isinstance(status, GateStatus)
    assert status.online
    assert status.backlog == 3
    running.pop().stop()  # systemd's stop: the gate leaves with its will
    hub.wait_for_message(topic, encode_status(GateStatus("gate-1", False, None, None)))
    late = clients.hub()  # the status is retained for whoever comes later
    late.subscribe(topic)
    assert decode_status(late.wait_for_message(topic).payload) == GateStatus(
        "gate-1", False, None, None
    )


def test_a_gate_cannot_upload_events_for_another_gate(
    rig: SiteRig, running: list[Running], clients: Clients
) -> None:
    ingest = start_hub(rig, running)
    with Store.open(rig.folder / "forge.db", boot_id="forged") as forge:
        forged = [forge.record(synthetic_event("gate-1", SystemClock().now(), 0))]
    liar = clients.gate("gate-2")
    # On its own topic, claiming gate-1: the broker lets it through, the hub refuses.
    reason = liar.publish(rig.site.topics.gate_events("gate-2"), encode_batch("gate-1", forged))
    assert not reason.is_failure
    wait_until(lambda: ingest.stats.impersonations == 1, WAIT_S)
    # On gate-1's topic: the broker's ACL refuses it (MQTT 5 PUBACK 0x87).
    reason = liar.publish(rig.site.topics.gate_events("gate-1"), encode_batch("gate-1", forged))
    assert reason.is_failure
    assert rig.site_event_ids() == []


def test_malformed_batches_are_counted_and_the_hub_goes_on(
    rig: SiteRig, running: list[Running], clients: Clients
) -> None:
    ingest = start_hub(rig, running)
    gate = clients.gate("gate-1")
    topic = rig.site.topics.gate_events("gate-1")
    for payload in [
        b"",
        b"\xff",
        b"[]",
        b'{"v":2}',
        json.dumps({"v": 1, "gate": "gate-1"}).encode(),
    ]:
        assert not gate.publish(topic, payload).is_failure
    wait_until(lambda: sum(ingest.stats.malformed.values()) == 5, WAIT_S)
    assert ingest.stats.malformed == {
        "not-json": 2,
        "not-an-object": 1,
        "wrong-version": 1,
        "bad-field": 1,
    }
    start_sync(rig, running, "gate-1")
    ids = rig.record("gate-1", 5)
    wait_until(lambda: rig.all_uploaded(["gate-1"]), WAIT_S)
    assert sorted(rig.site_event_ids()) == sorted(ids)


def test_sync_refuses_to_start_on_a_gate_without_a_site(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from kiosk.cli import cli

    config = tmp_path / "gate.toml"
    config.write_text(f'[gate]\ndata_dir = "{tmp_path}"\n')
    result = CliRunner().invoke(cli, ["sync", "--config", str(config)])
    assert result.exit_code == 1
    assert "belongs to no site" in result.output
    listed = CliRunner().invoke(cli, ["--help"]).output
    assert "sync" in listed
    assert "hub" in listed
    assert "--since" in CliRunner().invoke(cli, ["hub", "resync", "--help"]).output
