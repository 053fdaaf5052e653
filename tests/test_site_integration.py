"""The whole site wired together, with the real processes over the real broker:
two gates each running `gatekiosk sync` (uplink, status, documents, presence)
and the hub running `gatekiosk hub` (ingestion, status, documents).

An entry at gate A reaches the site database, gate B's presence and the hub's
own "who is inside"; a setting changed at the hub is in force at both gates;
the hub keeps each gate's status for the dashboard."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kiosk.keys import init_keys
from kiosk.site.keyfiles import install_public_keys, public_keys_body
from kiosk.store import NewEvent, Store
from tests.mosquitto_fixture import (  # noqa: F401  (fixtures: broker, site)
    RunningBroker,
    TestSite,
    broker_fixture,
    site_fixture,
)
from tests.site_sync_harness import SiteRig, wait_until

GATES = ["gate-1", "gate-2"]
SUBJECT = "ab" * 16  # a subject hash is 128 bits in hex
EXPIRY_H = 12.0


@pytest.fixture
def rig(tmp_path: Path, site: TestSite, broker: RunningBroker) -> Iterator[SiteRig]:
    made = SiteRig(tmp_path, site, broker)
    # What `site init` and `site join` leave: the hub's signing keys, and
    # their public halves in each gate's keys folder.
    hub_keys = made.hub_db.parent / "keys"
    hub_keys.parent.mkdir(parents=True, exist_ok=True)
    init_keys(hub_keys, at=datetime.now(UTC))
    for gate_id in GATES:
        install_public_keys(made.gate_data(gate_id) / "keys", public_keys_body(hub_keys))
    yield made
    made.stop_all()


def entry(gate_id: str) -> NewEvent:
    return NewEvent(
        gate_id=gate_id,
        at=datetime.now(UTC),
        utc_offset_min=420,
        clock_synced=True,
        direction="in",
        decision="allow",
        reason="ok",
        kind="cccd",
        subject_hash=SUBJECT,
        display_name="Nguyễn Văn A",
        masked_id="0010******23",
    )


def test_an_entry_at_one_gate_reaches_the_hub_and_the_other_gate_and_settings_come_down(
    rig: SiteRig,
) -> None:
    for gate_id in GATES:
        rig.gate_data(gate_id).mkdir(parents=True, exist_ok=True)
        with Store.open(rig.gate_db(gate_id), boot_id=f"boot-of-{gate_id}"):
            pass  # migrated before the sync processes share it
    rig.start_hub()
    for gate_id in GATES:
        rig.start_sync(gate_id)

    with Store.open(
        rig.gate_db("gate-1"), boot_id="boot-of-gate-1", mark_for_upload=True
    ) as kiosk_a:
        event = kiosk_a.record(entry("gate-1"))

    wait_until(lambda: event.id in rig.site_event_ids(), what="the entry in the site database")
    with Store.open(rig.gate_db("gate-2"), boot_id="reader-2") as gate_b:
        wait_until(
            lambda: (
                gate_b.presence_of(SUBJECT, now=datetime.now(UTC), expiry_h=EXPIRY_H) is not None
            ),
            what="gate-2 knows the person is inside",
        )
    with Store.open(rig.hub_db, boot_id="hub-web") as hub_web:
        now = datetime.now(UTC)
        inside = hub_web.inside(now=now, expiry_h=EXPIRY_H)
        assert [p.subject_hash for p in inside] == [SUBJECT]
        assert hub_web.occupancy(now=now, expiry_h=EXPIRY_H) == 1

        wait_until(
            lambda: {row.gate_id for row in hub_web.site_gates.all() if row.online} == set(GATES),
            what="both gates online on the hub",
        )
        backlog = {row.gate_id: row.backlog for row in hub_web.site_gates.all()}
        assert set(backlog) == set(GATES)

        hub_web.save_site_settings({"policy.capacity": 42}, by="manager", at=now)
        hub_web.request_admit(
            actor="guard1", reason="quên thẻ", display_name=None, at=now, gate_id="gate-2"
        )
    with Store.open(rig.gate_db("gate-2"), boot_id="reader-admit") as gate_b:
        wait_until(
            lambda: (
                [
                    r.reason
                    for r in gate_b.pending_admits(
                        now=datetime.now(UTC), max_age_s=30, gate_id="gate-2"
                    )
                ]
                == ["quên thẻ"]
            ),
            what="the hub's admit request at gate-2",
        )
    for gate_id in GATES:
        with Store.open(rig.gate_db(gate_id), boot_id=f"reader-{gate_id}") as gate:
            wait_until(
                lambda: gate.site_settings().get("policy.capacity") == 42,
                timeout_s=30,
                what=f"the setting in force at {gate_id}",
            )

    rig.processes[1].terminate()  # gate-1's sync leaves: the broker says so (its will)
    with Store.open(rig.hub_db, boot_id="hub-web") as hub_web:
        wait_until(
            lambda: {r.gate_id: r.online for r in hub_web.site_gates.all()}["gate-1"] is False,
            what="gate-1 offline on the hub",
        )
    assert "Traceback" not in rig.log("hub.log")
