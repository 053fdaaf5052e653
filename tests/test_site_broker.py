"""The hub's broker, for real: Mosquitto started with the configuration and
ACL kiosk.site.broker writes, clients with certificates kiosk.site.pki issues.

What these prove: a gate can publish only under its own topics and read
nothing of another gate but its presence; only certificates of the site's CA
connect; a revoked gate is shut out after a reload, even on a connection it
opened before; and a signed document goes down through the broker intact.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from kiosk.keys import init_keys, load_keyring, load_signing_key
from kiosk.site.documents import Document, DocumentKind, sign_document, verify_document
from kiosk.site.enrolment import revoke_gate
from tests.mosquitto_fixture import (  # noqa: F401  (fixtures: broker, clients, site)
    Clients,
    RunningBroker,
    broker_fixture,
    clients_fixture,
    site_fixture,
)
from tests.waiting import wait_until

NOT_AUTHORIZED = ReasonCode(PacketTypes.PUBACK, "Not authorized")


def test_a_gate_publishes_on_its_own_topic_and_the_hub_receives_it(clients: Clients) -> None:
    topics = clients.broker.site.topics
    hub = clients.hub()
    assert [code.value for code in hub.subscribe(topics.all_events)] == [1]
    gate = clients.gate("gate-1")

    reason = gate.publish(topics.gate_events("gate-1"), b"event 1")

    assert not reason.is_failure
    received = hub.wait_for_message(topics.gate_events("gate-1"))
    assert received.payload == b"event 1"


def test_a_gate_publishing_on_another_gates_topic_is_refused(clients: Clients) -> None:
    topics = clients.broker.site.topics
    hub = clients.hub()
    hub.subscribe(topics.everything)
    gate = clients.gate("gate-1")

    forged = gate.publish(topics.gate_events("gate-2"), b"forged")
    on_documents = gate.publish(topics.document("settings"), b"forged settings")
    to_other = gate.publish(topics.to_gate("gate-2"), b"forged ack")
    # The broker handles one client's publishes in order: once the hub has
    # this one, it would have had the forged ones before it.
    gate.publish(topics.gate_events("gate-1"), b"marker")
    hub.wait_for_message(topics.gate_events("gate-1"), b"marker")

    assert forged == NOT_AUTHORIZED
    assert on_documents == NOT_AUTHORIZED
    assert to_other == NOT_AUTHORIZED
    assert [message.payload for message in hub.messages] == [b"marker"]


def test_a_gate_cannot_read_another_gates_events(clients: Clients) -> None:
    topics = clients.broker.site.topics
    hub = clients.hub()
    hub.subscribe(topics.all_events)
    spy = clients.gate("gate-2")
    # Mosquitto 2.0 grants the subscription (its ACL file does not govern
    # subscribing) but checks read access before delivering each message.
    spy.subscribe(topics.gate_events("gate-1"))
    spy.subscribe(topics.all_events)
    spy.subscribe(topics.everything)
    spy.subscribe(topics.all_presence)
    gate = clients.gate("gate-1")

    gate.publish(topics.gate_events("gate-1"), b"private event")
    gate.publish(topics.gate_presence("gate-1"), b"presence")
    hub.wait_for_message(topics.gate_events("gate-1"), b"private event")
    # Delivered in order on the spy's one connection: the presence (which
    # it may read) comes after the event would have.
    spy.wait_for_message(topics.gate_presence("gate-1"), b"presence")

    assert all(message.payload != b"private event" for message in spy.messages)


def test_a_late_subscriber_gets_no_retained_message_of_another_gate(clients: Clients) -> None:
    topics = clients.broker.site.topics
    gate = clients.gate("gate-1")
    gate.publish(topics.gate_status("gate-1"), b"online", retain=True)
    gate.publish(topics.gate_presence("gate-1"), b"presence", retain=True)
    hub = clients.hub()
    hub.subscribe(topics.everything)
    hub.wait_for_message(topics.gate_status("gate-1"), b"online")  # both are retained

    spy = clients.gate("gate-2")
    spy.subscribe(topics.everything)
    # Retained messages are queued with the SUBACK; what the hub publishes
    # after it comes later on the same connection.
    hub.publish(topics.document("settings"), b"marker")
    spy.wait_for_message(topics.document("settings"), b"marker")

    assert [message.payload for message in spy.messages] == [b"presence", b"marker"]


def test_a_gate_cannot_take_over_another_gates_client_id(clients: Clients) -> None:
    topics = clients.broker.site.topics
    hub = clients.hub()
    hub.subscribe(topics.all_events)
    victim = clients.gate("gate-1", client_id="gate-1")

    clients.gate("gate-2", client_id="gate-1")

    # Had the broker taken the client id as given, it would have closed the
    # victim's connection before accepting the newcomer's.
    assert not victim.publish(topics.gate_events("gate-1"), b"still here").is_failure
    hub.wait_for_message(topics.gate_events("gate-1"), b"still here")
    assert victim.disconnected is None


def test_a_certificate_from_another_ca_cannot_connect(clients: Clients) -> None:
    rogue = clients.make(clients.broker.site.rogue)

    assert not rogue.connect()
    assert rogue.connack is None or rogue.connack.is_failure


def test_a_client_without_a_certificate_cannot_connect(clients: Clients) -> None:
    files = clients.broker.site.gates["gate-1"]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(files.ca))
    anonymous = clients.make(files, context=context)

    assert not anonymous.connect()


def test_a_revoked_gate_is_shut_out_after_the_broker_reloads(
    clients: Clients, broker: RunningBroker
) -> None:
    topics = broker.site.topics
    hub = clients.hub()
    hub.subscribe(topics.all_events)
    already_connected = clients.gate("gate-1")

    revoke_gate(broker.site.pki, "gate-1", now=datetime.now(UTC))
    broker.refresh_revocations()

    # The connection made before the revocation is not cut by the CRL (TLS is
    # checked at the handshake only) but by the ACL: nothing is allowed. The
    # reload is asynchronous: probe until the ACL refuses. This comes before
    # any fresh connection, which, under gate-1's name, would take its session.
    topic = topics.gate_events("gate-1")
    wait_until(lambda: already_connected.publish(topic, b"probe") == NOT_AUTHORIZED, timeout_s=15)
    assert already_connected.publish(topic, b"after") == NOT_AUTHORIZED
    # Fresh connections are refused at the handshake.
    wait_until(lambda: not clients.make(broker.site.gates["gate-1"]).connect(), timeout_s=15)
    # Mosquitto logs only "certificate verify failed", not why (and a moment
    # after it refused the handshake: the log is written by another stream).
    wait_until(lambda: "certificate verify failed" in broker.log_text(), timeout_s=15)
    # The other gates are unaffected.
    other = clients.gate("gate-2")
    assert not other.publish(topics.gate_events("gate-2"), b"fine").is_failure
    hub.wait_for_message(topics.gate_events("gate-2"), b"fine")
    assert all(message.payload != b"after" for message in hub.messages)


def test_a_signed_document_goes_down_retained_and_verifies_at_the_gate(
    clients: Clients, tmp_path: Path
) -> None:
    topics = clients.broker.site.topics
    now = datetime.now(UTC)
    init_keys(tmp_path / "keys", at=now)
    kid, private_key = load_signing_key(tmp_path / "keys")
    data = sign_document(
        DocumentKind.SETTINGS,
        topics.site_id,
        3,
        {"capacity": 300},
        issued_at=now,
        kid=kid,
        private_key=private_key,
    )
    hub = clients.hub()
    assert not hub.publish(topics.document("settings"), data, retain=True).is_failure

    # A gate connecting afterwards gets the retained document on subscribing.
    gate = clients.gate("gate-2")
    gate.subscribe(topics.all_documents)
    received = gate.wait_for_message(topics.document("settings"))

    assert received.retain
    result = verify_document(
        received.payload,
        keyring=load_keyring(tmp_path / "keys"),
        site_id=topics.site_id,
        kind=DocumentKind.SETTINGS,
        newer_than=2,
    )
    assert isinstance(result, Document)
    assert (result.version, result.body) == (3, {"capacity": 300})


@pytest.mark.parametrize("gate_id", ["gate-1", "gate-2"])
def test_each_gate_reads_only_what_the_hub_sends_to_it(clients: Clients, gate_id: str) -> None:
    topics = clients.broker.site.topics
    other_id = "gate-2" if gate_id == "gate-1" else "gate-1"
    gate = clients.gate(gate_id)
    gate.subscribe(f"{topics.site}/to/#")
    hub = clients.hub()

    hub.publish(topics.to_gate(other_id) + "/ack", b"for the other")
    hub.publish(topics.to_gate(gate_id) + "/ack", b"for me")
    gate.wait_for_message(topics.to_gate(gate_id) + "/ack", b"for me")

    assert [message.payload for message in gate.messages] == [b"for me"]
