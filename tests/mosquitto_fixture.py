"""A real Mosquitto broker for tests: a test site's PKI, its configuration,
the process on a free loopback port, and MQTT 5 clients that record what
they see.

Everything runs on 127.0.0.1 with files under ``tmp_path``. Waiting is
always "poll until true or a deadline passes", never a fixed sleep: the
machine is shared and slow at times, so deadlines are generous and a
passing run takes milliseconds per wait.

Use the fixtures in a test module with::

    from tests.mosquitto_fixture import (  # noqa: F401  (fixtures: broker, clients, site)
        broker_fixture, clients_fixture, site_fixture,
    )
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from kiosk.site.broker import BrokerConfig, reload_broker, write_broker_files
from kiosk.site.enrolment import PkiPaths, blocked_gate_ids, enrol_gate, init_site_pki
from kiosk.site.pki import (
    client_ssl_context,
    create_ca,
    issue_gate_certificate,
    new_private_key,
    write_certificate,
    write_private_key,
)
from kiosk.site.topics import Topics

SITE_ID = "test-site"
GATES = ("gate-1", "gate-2")
HOST = "127.0.0.1"
# The fixture's clock: certificates are made "now" so that the broker (which
# checks validity against the real clock) accepts them.
WAIT_S = 15.0
_POLL_S = 0.01


def mosquitto_binary() -> str:
    """Debian's broker (``apt-get install mosquitto``; ``make test`` installs it)."""
    found = shutil.which("mosquitto", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if found is None:
        pytest.fail("mosquitto is not installed: run `sudo apt-get install mosquitto`")
    return found


@dataclass(frozen=True)
class ClientFiles:
    """What one MQTT client presents: its certificate and key, and the CA it trusts."""

    ca: Path
    certificate: Path
    key: Path

    def ssl_context(self) -> ssl.SSLContext:
        return client_ssl_context(self.ca, self.certificate, self.key)


@dataclass(frozen=True)
class TestSite:
    """A site's PKI in ``tmp_path``: the hub, two enrolled gates, and a rogue
    client whose certificate comes from another CA but names ``gate-1``."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    pki: PkiPaths
    topics: Topics
    hub: ClientFiles
    gates: dict[str, ClientFiles]
    rogue: ClientFiles


def make_site(folder: Path, *, now: datetime) -> TestSite:
    pki = PkiPaths(folder / "pki")
    init_site_pki(pki, SITE_ID, ["localhost", HOST], now=now)
    gates = {}
    for gate_id in GATES:
        key = new_private_key()
        key_path = folder / "gates" / f"{gate_id}.key"
        key_path.parent.mkdir(exist_ok=True)
        write_private_key(key_path, key)
        enrol_gate(pki, gate_id, key.public_key(), now=now)
        gates[gate_id] = ClientFiles(pki.ca_certificate, pki.gate_certificate(gate_id), key_path)
    other_ca = create_ca(SITE_ID, now=now)
    rogue_key = new_private_key()
    rogue_cert = issue_gate_certificate(other_ca, "gate-1", rogue_key.public_key(), now=now)
    write_private_key(folder / "rogue.key", rogue_key)
    write_certificate(folder / "rogue.pem", rogue_cert)
    return TestSite(
        pki=pki,
        topics=Topics(SITE_ID),
        hub=ClientFiles(pki.ca_certificate, pki.hub_certificate, pki.hub_key),
        gates=gates,
        rogue=ClientFiles(pki.ca_certificate, folder / "rogue.pem", folder / "rogue.key"),
    )


class RunningBroker:
    """A ``mosquitto -c <config>`` process of the test site."""

    def __init__(self, config: BrokerConfig, site: TestSite, log_path: Path) -> None:
        self.config = config
        self.site = site
        self.log_path = log_path
        # The log goes to stderr, which C leaves unbuffered: the file is
        # complete whenever a test reads it (Mosquitto's own "log_dest file"
        # is buffered).
        with log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [mosquitto_binary(), "-c", str(config.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )

    @property
    def port(self) -> int:
        return self.config.port

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_until_accepting(self, timeout_s: float = WAIT_S) -> bool:
        """Poll TLS handshakes (as the hub) until one succeeds; False if the
        process exits first (for example, the port was taken meanwhile)."""
        context = self.site.hub.ssl_context()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with (
                    socket.create_connection((HOST, self.port), timeout=2) as raw,
                    context.wrap_socket(raw, server_hostname=HOST),
                ):
                    return True
            except OSError:
                time.sleep(_POLL_S)
        raise AssertionError(
            f"the broker did not accept TLS within {timeout_s} s:\n{self.log_text()}"
        )

    def refresh_revocations(self) -> None:
        """Rewrite the ACL with the revoked gates and reload the broker (SIGHUP)."""
        write_broker_files(self.config, blocked_gates=blocked_gate_ids(self.site.pki))
        reload_broker(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def start_broker(site: TestSite, folder: Path) -> RunningBroker:
    """Write the broker's files with :mod:`kiosk.site.broker` and start it on
    a free port; retried on a new port if another process took the first."""
    base = BrokerConfig.for_site(
        folder / "broker",
        site.pki,
        SITE_ID,
        bind_address=HOST,
        log_dest="stderr",
        # As root, Mosquitto would switch to the "mosquitto" user, who cannot
        # read tmp_path; naming the current user keeps it as it is.
        run_as_user=pwd.getpwuid(os.getuid()).pw_name,
    )
    for _attempt in range(5):
        config = replace(base, port=free_port())
        write_broker_files(config, blocked_gates=blocked_gate_ids(site.pki))
        broker = RunningBroker(config, site, folder / "mosquitto.log")
        if broker.wait_until_accepting():
            return broker
        broker.stop()
    raise AssertionError(f"the broker would not start:\n{broker.log_text()}")


@pytest.fixture(name="site")
def site_fixture(tmp_path: Path) -> TestSite:
    return make_site(tmp_path, now=datetime.now(UTC))


@pytest.fixture(name="broker")
def broker_fixture(site: TestSite, tmp_path: Path) -> Iterator[RunningBroker]:
    running = start_broker(site, tmp_path)
    yield running
    running.stop()


# --- clients -----------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


class Client:
    """An MQTT 5 client (paho-mqtt 2, callback API version 2) over the site's TLS.

    Every call waits for the broker's answer (CONNACK, SUBACK, PUBACK) and
    returns its reason codes; received messages are kept in order.
    """

    def __init__(
        self,
        broker: RunningBroker,
        files: ClientFiles,
        *,
        client_id: str = "",
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.broker = broker
        self.files = files
        self._mqtt = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        self._mqtt.tls_set_context(context or files.ssl_context())
        self._changed = threading.Condition()
        self.connack: ReasonCode | None = None
        self.disconnected: ReasonCode | None = None
        self.messages: list[Received] = []
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._pubacks: dict[int, ReasonCode] = {}
        self._mqtt.on_connect = self._on_connect
        self._mqtt.on_disconnect = self._on_disconnect
        self._mqtt.on_message = self._on_message
        self._mqtt.on_subscribe = self._on_subscribe
        self._mqtt.on_publish = self._on_publish

    # Callbacks run on paho's network thread.

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._changed:
            self.connack = reason_code
            self._changed.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._changed:
            self.disconnected = reason_code
            self._changed.notify_all()

    def _on_message(self, client, userdata, message) -> None:
        with self._changed:
            self.messages.append(Received(message.topic, bytes(message.payload), message.retain))
            self._changed.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._changed:
            self._subacks[mid] = list(reason_codes)
            self._changed.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._changed:
            self._pubacks[mid] = reason_code
            self._changed.notify_all()

    def wait_for(self, condition: Callable[[], object], timeout_s: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"condition not met within {timeout_s} s; broker log:\n"
                        + self.broker.log_text()[-3000:]
                    )
                self._changed.wait(remaining)

    def connect(self) -> bool:
        """Whether the broker accepted the connection (CONNACK success).

        A refused TLS handshake surfaces either here (TLS 1.2: during the
        handshake) or as a disconnection before any CONNACK (TLS 1.3: the
        server checks the client's certificate after the client considers
        the handshake done).
        """
        properties = Properties(mqtt.PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 0  # the broker keeps no state for us
        try:
            self._mqtt.connect(HOST, self.broker.port, keepalive=30, properties=properties)
        except (OSError, ssl.SSLError):
            return False
        self._mqtt.loop_start()
        self.wait_for(lambda: self.connack is not None or self.disconnected is not None)
        return self.connack is not None and not self.connack.is_failure

    def subscribe(self, topic: str, qos: int = 1) -> list[ReasonCode]:
        result, mid = self._mqtt.subscribe(topic, qos=qos)
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert mid is not None
        self.wait_for(lambda: mid in self._subacks)
        return self._subacks[mid]

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> ReasonCode:
        """Publish with QoS 1 and return the PUBACK's reason code."""
        info = self._mqtt.publish(topic, payload, qos=qos, retain=retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, info.rc
        self.wait_for(lambda: info.mid in self._pubacks or self.disconnected is not None)
        return self._pubacks.get(info.mid, ReasonCode(mqtt.PacketTypes.PUBACK, "Unspecified error"))

    def wait_for_message(self, topic: str, payload: bytes | None = None) -> Received:
        def found() -> Received | None:
            for message in self.messages:
                if message.topic == topic and (payload is None or message.payload == payload):
                    return message
            return None

        self.wait_for(found)
        result = found()
        assert result is not None
        return result

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._mqtt.disconnect()
        self._mqtt.loop_stop()


class Clients:
    """Makes connected clients of the test site and closes them all at the end."""

    def __init__(self, broker: RunningBroker) -> None:
        self.broker = broker
        self._made: list[Client] = []

    def make(
        self, files: ClientFiles, *, client_id: str = "", context: ssl.SSLContext | None = None
    ) -> Client:
        """A client, not yet connected (``context`` replaces the one ``files`` make)."""
        client = Client(self.broker, files, client_id=client_id, context=context)
        self._made.append(client)
        return client

    def connected(self, files: ClientFiles, *, client_id: str = "") -> Client:
        client = self.make(files, client_id=client_id)
        assert client.connect(), f"could not connect:\n{self.broker.log_text()[-3000:]}"
        return client

    def hub(self) -> Client:
        return self.connected(self.broker.site.hub)

    def gate(self, gate_id: str, *, client_id: str = "") -> Client:
        return self.connected(self.broker.site.gates[gate_id], client_id=client_id)

    def close_all(self) -> None:
        for client in self._made:
            client.close()


@pytest.fixture(name="clients")
def clients_fixture(broker: RunningBroker) -> Iterator[Clients]:
    made = Clients(broker)
    yield made
    made.close_all()
