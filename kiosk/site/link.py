"""One MQTT 5 connection over the site's TLS, and the loop that runs channels over it.

Both site processes (``gatekiosk sync`` on a gate, ``gatekiosk hub``) are a
:class:`ChannelLoop`: paho-mqtt's network thread keeps the connection
(reconnecting with a growing delay) and only *queues* what happens; the
loop, on the process's own thread, hands received messages to the channels,
publishes what they offer while the connection is up, and tells them of
each PUBACK. So a channel's database work never runs on the network thread,
and the network never blocks a database transaction.

Received messages are acknowledged to the broker (PUBACK) only after the
channel has handled them (paho's ``manual_ack``): a hub that is busy
committing makes the broker hold further messages (its ``max_inflight``)
instead of growing a queue in the hub's memory.

paho-mqtt 2 API used: ``Client(CallbackAPIVersion.VERSION2, protocol=MQTTv5,
manual_ack=True)``, ``tls_set_context``, ``will_set``, ``reconnect_delay_set``,
``max_inflight_messages_set``, ``connect_async`` + ``loop_start`` (which
retries the first connection too), ``publish`` returning an
``MQTTMessageInfo`` whose ``mid`` the PUBACK callback names.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from kiosk.clock import Clock
from kiosk.errors import GateError
from kiosk.site import SiteError
from kiosk.site.channel import Channel, Publication

log = logging.getLogger(__name__)

KEEPALIVE_S = 30
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
POLL_S = 0.05
"""How long the loop waits for news before asking the channels again (seconds):
the gate's new events wait at most this long before they go up."""
MAX_INFLIGHT = 20
"""QoS 1 publications waiting for their PUBACK, per connection."""


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> BrokerAddress:
        """``host:port`` (``site.hub``); ``[::1]:8883`` for an IPv6 address."""
        host, _, port = text.strip().rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SiteError(f"{text!r} is not host:port of the hub's broker (e.g. hub.local:8883)")
        return cls(host, int(port))


@dataclass
class LinkCounts:
    """What the loop saw, for logs and tests."""

    connections: int = 0
    disconnections: int = 0
    received: int = 0
    published: int = 0
    refused_publications: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class ChannelLoop:
    """Runs ``channels`` over one connection to ``address`` until :meth:`stop`.

    ``identity`` is the client id (the broker replaces it by the
    certificate's name anyway). ``will``: published by the broker if this
    client vanishes (a gate's "offline" status). ``on_connected``: called on
    the loop thread after each (re)connection and subscription.
    ``on_tick``: called once per turn of the loop (systemd's watchdog).
    """

    def __init__(
        self,
        *,
        address: BrokerAddress,
        tls: ssl.SSLContext,
        identity: str,
        channels: Sequence[Channel],
        clock: Clock,
        will: Publication | None = None,
        on_connected: Callable[[], None] | None = None,
        on_tick: Callable[[], None] | None = None,
        max_inflight: int = MAX_INFLIGHT,
        poll_s: float = POLL_S,
    ) -> None:
        self._address = address
        self._channels = list(channels)
        self._clock = clock
        self._on_connected = on_connected
        self._on_tick = on_tick
        self._max_inflight = max_inflight
        self._poll_s = poll_s
        self._news: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._connected = False
        self._inflight: dict[int, tuple[Channel, Publication]] = {}
        self.counts = LinkCounts()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=identity,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self._client.tls_set_context(tls)
        self._client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self._client.max_inflight_messages_set(max_inflight)
        self._has_will = will is not None
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=1, retain=will.retain)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._client.on_subscribe = self._on_subscribe
        self._awaiting_subacks: set[int] = set()

    # --- paho's network thread: queue only ---------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._news.put(("connect", reason))

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._news.put(("disconnect", reason))

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._news.put(("message", message.topic, bytes(message.payload), message.mid, message.qos))

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._news.put(("puback", mid, reason))

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self._news.put(("suback", mid))

    # --- the loop thread -----------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to return (safe from a signal handler or another thread)."""
        self._stop.set()
        self._news.put(("wake",))

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def subscribed(self) -> bool:
        """Connected, and the broker has confirmed every subscription."""
        return self._connected and not self._awaiting_subacks

    def publish_now(self, publication: Publication) -> mqtt.MQTTMessageInfo:
        """Publish outside any channel (a one-shot command); QoS 1."""
        return self._client.publish(
            publication.topic, publication.payload, qos=1, retain=publication.retain
        )

    def run(self) -> None:
        """Connect and run the channels until :meth:`stop`; then disconnect cleanly."""
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 0  # the databases are the queues, not the broker
        self._client.connect_async(
            self._address.host,
            self._address.port,
            keepalive=KEEPALIVE_S,
            clean_start=True,
            properties=properties,
        )
        self._client.loop_start()
        try:
            while not self._stop.is_set():
                self._turn()
        finally:
            # With a will, leave saying so (MQTT 5 reason 0x04): the broker
            # publishes it, so a gate stopped on purpose shows "offline" too.
            reason = None
            if self._has_will:
                reason = ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")
            self._client.disconnect(reasoncode=reason)
            self._client.loop_stop()

    def _turn(self) -> None:
        """Handle what happened, one item at a time, and after each received
        message publish what the channels offer: the hub's acknowledgement of
        a batch goes out before the next batch is handled, and a gate refills
        its window as soon as an acknowledgement frees a place."""
        try:
            news = self._news.get(timeout=self._poll_s)
        except queue.Empty:
            news = None
        handled = 0
        while news is not None and handled < 1000:  # the watchdog between floods
            self._handle(news)
            handled += 1
            if news[0] == "message" and self._connected:
                self._publish_offers()
            try:
                news = self._news.get_nowait()
            except queue.Empty:
                news = None
        if news is not None:
            self._handle(news)
        if self._connected and not self._stop.is_set():
            self._publish_offers()
        if self._on_tick is not None:
            self._on_tick()

    def _handle(self, news: tuple[Any, ...]) -> None:
        kind = news[0]
        if kind == "connect":
            reason = news[1]
            if reason.is_failure:
                log.warning("the broker refused the connection: %s", reason)
                return
            self._connected = True
            self.counts.connections += 1
            # paho sends again what was in flight; their PUBACKs no longer
            # count against the room, so a lost one never stalls the loop.
            self._inflight.clear()
            log.info("connected to the broker %s:%d", self._address.host, self._address.port)
            self._awaiting_subacks.clear()
            for channel in self._channels:
                for topic in channel.subscriptions():
                    _, mid = self._client.subscribe(topic, qos=1)
                    if mid is not None:
                        self._awaiting_subacks.add(mid)
            if self._on_connected is not None:
                self._on_connected()
        elif kind == "disconnect":
            if self._connected:
                self.counts.disconnections += 1
                log.warning("lost the broker (%s); reconnecting", news[1])
            self._connected = False
        elif kind == "message":
            _, topic, payload, mid, qos = news
            self.counts.received += 1
            for channel in self._channels:
                if any(mqtt.topic_matches_sub(f, topic) for f in channel.subscriptions()):
                    with _reported("handle a message on " + topic):
                        channel.on_message(topic, payload)
                    break
            if qos > 0:
                self._client.ack(mid, qos)
        elif kind == "suback":
            self._awaiting_subacks.discard(news[1])
        elif kind == "puback":
            _, mid, reason = news
            sent = self._inflight.pop(mid, None)
            if sent is None:
                return
            channel, publication = sent
            if reason is not None and reason.is_failure:
                self.counts.refused_publications += 1
                log.error("the broker refused a publication on %s: %s", publication.topic, reason)
                return
            self.counts.published += 1
            with _reported("note a publication"):
                channel.published([publication])

    def _publish_offers(self) -> None:
        """Ask each channel for one publication at a time while there is room,
        so the first is on the wire while the next is being prepared."""
        for channel in self._channels:
            while len(self._inflight) < self._max_inflight:
                offers: list[Publication] = []
                with _reported("ask what to publish"):
                    offers = channel.publications(1)
                if not offers:
                    break
                for publication in offers:
                    info = self.publish_now(publication)
                    if info.rc != mqtt.MQTT_ERR_SUCCESS:
                        # Not connected after all: the channel offers it again later.
                        log.info("could not publish on %s (%s)", publication.topic, info.rc)
                        return
                    self._inflight[info.mid] = (channel, publication)


@contextlib.contextmanager
def _reported(action: str) -> Iterator[None]:
    """A channel's GateError (the database busy or failing) is logged and the
    loop goes on: what was not done is done again (the gate re-sends what
    the hub did not acknowledge). Anything else is a bug and stops the process."""
    try:
        yield
    except GateError as exc:
        log.error("could not %s: %s", action, exc)
