"""Down documents without a broker: the hub's channel signs what changed, the
gate's channel applies only a newer valid document of its site, atomically,
and counts everything else."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from kiosk.clock import FakeClock
from kiosk.codes import cose
from kiosk.keys import init_keys, load_keyring, load_signing_key, retire_key, rotate_keys
from kiosk.site.channel import Publication
from kiosk.site.documents import DocumentKind, sign_document
from kiosk.site.downlink import GateDocuments, HubDocuments
from kiosk.site.keyfiles import install_public_keys, public_keys_body
from kiosk.store import SiteCode, Store, TrustedRow

SITE = "factory-1"
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@dataclass
class Site:
    clock: FakeClock
    hub_store: Store  # where managers change things (the hub's web)
    hub_keys: Path
    gate_store: Store
    gate_keys: Path
    hub: HubDocuments
    gate: GateDocuments

    def publish(self) -> list[Publication]:
        """One pass of the hub's channel, everything delivered to the gate."""
        self.clock.advance(1.0)
        items = self.hub.publications(100)
        for item in items:
            self.gate.on_message(item.topic, item.payload)
        self.hub.published(items)
        return items


@pytest.fixture
def site(tmp_path: Path) -> Site:
    clock = FakeClock(wall=T0)
    hub_keys, gate_keys = tmp_path / "hub" / "keys", tmp_path / "gate" / "keys"
    init_keys(hub_keys, at=T0)
    install_public_keys(gate_keys, public_keys_body(hub_keys))
    hub_store = Store.open(tmp_path / "hub" / "site.db", boot_id="hub-web")
    hub_process = Store.open(tmp_path / "hub" / "site.db", boot_id="hub-boot")
    gate_store = Store.open(tmp_path / "gate" / "gate.db", boot_id="gate-boot")
    hub = HubDocuments(hub_process, site_id=SITE, keys_dir=hub_keys, clock=clock)
    gate = GateDocuments(gate_store, site_id=SITE, keys_dir=gate_keys, clock=clock)
    return Site(clock, hub_store, hub_keys, gate_store, gate_keys, hub, gate)


def test_every_kind_goes_down_once_and_again_only_when_it_changes(site: Site) -> None:
    first = site.publish()
    assert sorted(item.topic.rsplit("/", 1)[1] for item in first) == sorted(DocumentKind)
    assert all(item.retain for item in first)
    assert site.publish() == []  # nothing changed, nothing new
    site.hub_store.save_site_settings({"policy.capacity": 120}, by="m", at=T0)
    again = site.publish()
    assert [item.topic for item in again] == [f"gk/{SITE}/doc/settings"]
    assert site.gate.versions()["settings"] == 2


def test_a_setting_changed_on_the_hub_is_in_force_at_the_gate(site: Site, tmp_path: Path) -> None:
    site.publish()
    kiosk = Store.open(tmp_path / "gate" / "gate.db", boot_id="kiosk")  # the kiosk's own reader
    before = kiosk.settings_version()
    site.hub_store.save_site_settings(
        {"policy.capacity": 80, "gate.mode": "entry", "gate.id": "hub-name"}, by="m", at=T0
    )
    site.gate_store.save_site_settings({"gate.id": "main-gate"}, by="local", at=T0)
    site.publish()
    assert kiosk.settings_version() > before
    settings = kiosk.site_settings()
    assert settings["policy.capacity"] == 80
    assert settings["gate.mode"] == "entry"
    assert settings["gate.id"] == "main-gate"  # each gate keeps its own name


def test_denylist_revocations_and_trust_replace_the_gates_rows(site: Site) -> None:
    site.gate_store.add_to_denylist("f" * 32, label="local", note="n", at=T0)
    site.hub_store.add_to_denylist("a" * 32, label="Nguyễn Văn A", note="theft", at=T0)
    site.hub_store.save_site_code(
        SiteCode(
            id="pass-1",
            kind="staff-pass",
            issued_at=T0,
            valid_from=T0,
            expires_at=T0 + timedelta(days=30),
            name="Trần Thị B",
            phone=None,
            organisation=None,
            answers={},
            verdict="ok",
            issued_by="m",
        )
    )
    site.hub_store.revoke_site_code("pass-1", by="m", at=T0)
    site.hub_store.add_trusted_certificates(
        [
            TrustedRow(
                0, b"12345678", "VN", "CN=DSC", T0, T0 + timedelta(days=9), b"\x30der", T0, "m"
            )
        ],
        by="m",
        at=T0,
    )
    site.publish()
    assert [e.subject_hash for e in site.gate_store.denylist_entries()] == ["a" * 32]
    assert site.gate_store.is_denylisted("a" * 32)
    assert site.gate_store.is_revoked("pass-1")  # a code the gate never issued
    assert [row.der for row in site.gate_store.trusted_certificates()] == [b"\x30der"]
    site.hub_store.remove_from_denylist("a" * 32)
    site.publish()
    assert site.gate_store.denylist_entries() == []


def test_a_rotated_key_reaches_the_gate_and_later_documents_still_verify(site: Site) -> None:
    site.publish()
    rotate_keys(site.hub_keys, at=T0 + timedelta(days=1))
    site.publish()
    assert len(load_keyring(site.gate_keys).keys) == 2
    retire_key(site.hub_keys, load_keyring(site.hub_keys).keys[0].kid, at=T0 + timedelta(days=2))
    site.publish()  # signed by the new key, which the gate learnt above
    site.hub_store.save_site_settings({"policy.capacity": 7}, by="m", at=T0)
    site.publish()
    assert site.gate_store.site_settings()["policy.capacity"] == 7
    assert site.gate.refused == {}


def document(
    site: Site, kind: DocumentKind, version: int, body: object, **options: object
) -> bytes:
    kid, key = load_signing_key(site.hub_keys)
    return sign_document(
        kind,
        str(options.get("site_id", SITE)),
        version,
        body,
        issued_at=T0,
        kid=kid,
        private_key=key,
    )


def test_replayed_other_site_unsigned_and_forged_documents_are_counted_never_applied(
    site: Site,
) -> None:
    site.hub_store.save_site_settings({"policy.capacity": 50}, by="m", at=T0)
    site.publish()
    version = site.gate.versions()["settings"]
    topic = f"gk/{SITE}/doc/settings"
    old = document(site, DocumentKind.SETTINGS, version, {"values": {"policy.capacity": 1}})
    other = document(
        site, DocumentKind.SETTINGS, version + 5, {"values": {"policy.capacity": 2}}, site_id="x"
    )
    bare = cbor2.dumps({"gkdoc": 1, "kind": "settings", "site": SITE, "version": 99})
    forged_key = cose.sign1(
        cbor2.dumps({"gkdoc": 1}),
        ec.generate_private_key(ec.SECP256R1()),
        kid=load_keyring(site.gate_keys).keys[0].kid,
    )
    wrong_kind = document(site, DocumentKind.DENYLIST, version + 9, {"entries": []})
    bad_body = document(site, DocumentKind.SETTINGS, version + 7, {"values": {"gate.id": "evil"}})
    for payload in (old, other, bare, forged_key, wrong_kind, bad_body, b"\xff" * 40, b""):
        site.gate.on_message(topic, payload)
    site.gate.on_message(f"gk/{SITE}/doc/unknown", old)
    assert site.gate.refused == {
        "not_newer": 1,
        "other_site": 1,
        "unsigned": 1,
        "bad_signature": 1,
        "other_kind": 1,
        "bad_body": 1,
        "malformed": 2,
        "unknown_topic": 1,
    }
    assert site.gate_store.site_settings()["policy.capacity"] == 50
    assert site.gate.versions()["settings"] == version


def test_documents_out_of_order_apply_only_the_newest(site: Site) -> None:
    topic = f"gk/{SITE}/doc/settings"
    v3 = document(site, DocumentKind.SETTINGS, 3, {"values": {"policy.capacity": 3}})
    v2 = document(site, DocumentKind.SETTINGS, 2, {"values": {"policy.capacity": 2}})
    site.gate.on_message(topic, v3)
    site.gate.on_message(topic, v2)
    site.gate.on_message(topic, v3)
    assert site.gate_store.site_settings()["policy.capacity"] == 3
    assert site.gate.refused == {"not_newer": 1}
    assert site.gate.unchanged == {"settings": 1}  # the hub's republish, not a replay


def test_the_hubs_periodic_republish_is_received_quietly(site: Site) -> None:
    site.publish()
    site.clock.advance(61)
    again = site.publish()
    assert len(again) == len(DocumentKind)
    assert site.gate.refused == {}
    assert site.gate.unchanged == dict.fromkeys(DocumentKind, 1)


def test_the_version_in_force_survives_a_restart_of_the_sync_process(
    site: Site, tmp_path: Path
) -> None:
    site.hub_store.save_site_settings({"policy.capacity": 9}, by="m", at=T0)
    items = site.publish()
    restarted = GateDocuments(
        site.gate_store, site_id=SITE, keys_dir=site.gate_keys, clock=site.clock
    )
    for item in items:  # the broker's retained copies, delivered again
        restarted.on_message(item.topic, item.payload)
    assert restarted.applied == {}
    assert restarted.refused == {"not_newer": len(items)}


def test_the_hub_reads_the_bodies_again_only_when_the_database_or_keys_changed(
    site: Site,
) -> None:
    site.publish()
    reads = []
    original = site.hub.refresh

    def counted() -> list[str]:
        reads.append(1)
        return original()

    site.hub.refresh = counted  # type: ignore[method-assign]
    site.publish()
    site.publish()
    assert reads == []
    site.hub_store.add_to_denylist("c" * 32, label="x", note="y", at=T0)
    site.publish()
    assert reads == [1]
    rotate_keys(site.hub_keys, at=T0 + timedelta(days=1))
    site.publish()
    assert reads == [1, 1]
    site.clock.advance(61)
    site.publish()  # the full look, once a minute
    assert reads == [1, 1, 1]


def test_the_hub_publishes_its_latest_documents_again_after_a_restart(site: Site) -> None:
    site.publish()
    again = HubDocuments(site.hub_store, site_id=SITE, keys_dir=site.hub_keys, clock=site.clock)
    items = again.publications(100)
    assert len(items) == len(DocumentKind)  # the same versions, for an empty broker
    assert site.hub_store.site_documents.published()["settings"].version == 1
