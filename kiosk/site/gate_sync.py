"""``gatekiosk sync``: the gate's link to its hub, a process of its own.

The kiosk never touches the network: it records each event with its "not yet
uploaded" mark (see :mod:`kiosk.store.outbox`) and this process, sharing the
database file, carries the marked events up:

- :class:`UplinkChannel` publishes pending events in batches (QoS 1), in
  log order, at most ``window`` batches awaiting the hub at once; it clears
  the marks only when the hub's acknowledgement arrives (the hub sends it
  after its commit; a PUBACK only means the broker has the message), and
  sends again whatever stays unacknowledged for ``ack_timeout_s``. It also
  obeys the hub's resync request (send everything since a time again);
- :class:`StatusChannel` publishes the gate's retained status ("online",
  with its backlog) at each connection and every ``every_s``; the broker
  publishes the will ("offline") when the gate vanishes.

A crash anywhere loses nothing: what is not acknowledged is still marked in
the database, and is sent again; the hub's insert is idempotent.

Files the gate keeps in ``site.dir`` (:class:`GateSiteFiles`): ``ca.pem``
(the site CA), ``gate.pem`` and ``gate.key`` (its certificate and key, from
``gatekiosk site join``) and ``resync-request`` (the last resync request
carried out, so a retained one is carried out once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kiosk.clock import Clock
from kiosk.config import Settings
from kiosk.site import SiteError
from kiosk.site.admits import GateAdmits
from kiosk.site.channel import Channel, Publication
from kiosk.site.downlink import GateDocuments
from kiosk.site.files import PUBLIC_FILE_MODE, write_atomically
from kiosk.site.join import GateSiteFiles
from kiosk.site.link import BrokerAddress, ChannelLoop
from kiosk.site.pki import client_ssl_context
from kiosk.site.presence import PresenceChannel
from kiosk.site.topics import Topics, check_gate_id
from kiosk.site.uplink import (
    GateStatus,
    Malformed,
    decode_ack,
    decode_resync,
    encode_batch,
    encode_status,
)
from kiosk.store import KioskHealth, Store
from kiosk.store.outbox import LogPosition, Outbox

log = logging.getLogger(__name__)

BATCH_EVENTS = 1000
BATCH_MAX_BYTES = 768 * 1024
"""Below the broker's largest packet (1 MiB) with room for long names."""
WINDOW_BATCHES = 8
ACK_TIMEOUT_S = 10.0
"""Seconds without any acknowledgement, while batches wait for one, before
sending them again. Measured from the last acknowledgement, not from each
batch: a hub busy with other gates' backlogs is slow, not gone."""
STATUS_EVERY_S = 10.0


@dataclass
class _InFlight:
    ids: set[str]
    sent_at_mono: float


@dataclass
class UplinkCounts:
    batches_sent: int = 0
    events_acknowledged: int = 0
    resends: int = 0
    malformed: int = 0
    resyncs: int = 0
    by_problem: dict[str, int] = field(default_factory=dict)


class UplinkChannel:
    """The gate's events going up, marked uploaded on the hub's acknowledgement only."""

    def __init__(
        self,
        *,
        outbox: Outbox,
        topics: Topics,
        gate_id: str,
        clock: Clock,
        resync_memory: Path | None = None,
        batch_events: int = BATCH_EVENTS,
        window: int = WINDOW_BATCHES,
        ack_timeout_s: float = ACK_TIMEOUT_S,
    ) -> None:
        self._outbox = outbox
        self._gate_id = check_gate_id(gate_id)
        self._events_topic = topics.gate_events(gate_id)
        self._ack_topic = f"{topics.to_gate(gate_id)}/ack"
        self._resync_topic = f"{topics.to_gate(gate_id)}/resync"
        self._clock = clock
        self._resync_memory = resync_memory
        self._batch_events = batch_events
        self._window = window
        self._ack_timeout_s = ack_timeout_s
        self._cursor: LogPosition | None = None
        self._inflight: dict[str, _InFlight] = {}
        self._progress_mono = clock.monotonic()
        self.counts = UplinkCounts()

    def subscriptions(self) -> list[str]:
        return [self._ack_topic, self._resync_topic]

    def publications(self, limit: int) -> list[Publication]:
        now = self._clock.monotonic()
        oldest = min((b.sent_at_mono for b in self._inflight.values()), default=now)
        if now - max(oldest, self._progress_mono) > self._ack_timeout_s:
            waiting = sum(len(b.ids) for b in self._inflight.values())
            log.warning(
                "the hub has not acknowledged %d event(s) within %.0f s; sending them again",
                waiting,
                self._ack_timeout_s,
            )
            self.counts.resends += 1
            self.rewind()
        offers: list[Publication] = []
        while len(offers) < limit and len(self._inflight) < self._window:
            batch = self._outbox.pending(limit=self._batch_events, after=self._cursor)
            if not batch.events:
                break
            events = batch.events
            payload = encode_batch(self._gate_id, events)
            while len(payload) > BATCH_MAX_BYTES and len(events) > 1:
                events = events[: len(events) // 2]
                payload = encode_batch(self._gate_id, events)
            self._cursor = batch.positions[len(events) - 1]
            key = events[0].id
            self._inflight[key] = _InFlight({e.id for e in events}, now)
            offers.append(Publication(self._events_topic, payload, key))
            self.counts.batches_sent += 1
        return offers

    def published(self, items: list[Publication]) -> None:
        """The broker has the batches; they stay marked until the hub acknowledges."""

    def on_message(self, topic: str, payload: bytes) -> None:
        if topic == self._ack_topic:
            self._on_ack(payload)
        elif topic == self._resync_topic:
            self._on_resync(payload)

    def rewind(self) -> None:
        """Forget what is in flight and read the pending events from the oldest again.

        After a timeout, a resync, or a new connection (a restarted broker
        kept nothing: it is never the queue).
        """
        self._inflight.clear()
        self._cursor = None
        self._progress_mono = self._clock.monotonic()

    def _refused(self, what: str, result: Malformed) -> None:
        self.counts.malformed += 1
        self.counts.by_problem[result.problem] = self.counts.by_problem.get(result.problem, 0) + 1
        log.warning(
            "ignored a malformed %s from the hub: %s (%s)", what, result.problem, result.detail
        )

    def _on_ack(self, payload: bytes) -> None:
        ack = decode_ack(payload)
        if isinstance(ack, Malformed):
            self._refused("acknowledgement", ack)
            return
        self.counts.events_acknowledged += self._outbox.mark_uploaded(ack.ids)
        self._outbox.checkpoint()
        self._progress_mono = self._clock.monotonic()
        acked = set(ack.ids)
        for key, batch in list(self._inflight.items()):
            batch.ids -= acked
            if not batch.ids:
                del self._inflight[key]
                log.debug(
                    "batch %s acknowledged after %.0f ms",
                    key[:8],
                    (self._progress_mono - batch.sent_at_mono) * 1000,
                )

    def _on_resync(self, payload: bytes) -> None:
        request = decode_resync(payload)
        if isinstance(request, Malformed):
            self._refused("resync request", request)
            return
        memory = self._resync_memory
        if memory is not None and memory.exists() and memory.read_text().strip() == request.request:
            return  # a retained request carried out already
        marked = self._outbox.mark_pending_since(request.since)
        if memory is not None:
            write_atomically(memory, request.request.encode(), PUBLIC_FILE_MODE)
        self.counts.resyncs += 1
        log.warning(
            "the hub asked for every event since %s again (request %s): %d more to send",
            request.since.isoformat(),
            request.request,
            marked,
        )
        self.rewind()


class StatusChannel:
    """The gate's retained status: at each connection and every ``every_s`` seconds."""

    def __init__(
        self,
        *,
        outbox: Outbox,
        topics: Topics,
        gate_id: str,
        clock: Clock,
        every_s: float,
        camera: Callable[[], KioskHealth | None] | None = None,
    ) -> None:
        self._outbox = outbox
        self._camera = camera
        self._topic = topics.gate_status(gate_id)
        self._gate_id = gate_id
        self._clock = clock
        self._every_s = every_s
        self._due_mono: float | None = None

    def will(self) -> Publication:
        payload = encode_status(GateStatus(self._gate_id, False, None, None))
        return Publication(self._topic, payload, "offline", retain=True)

    def connected(self) -> None:
        self._due_mono = self._clock.monotonic()

    def subscriptions(self) -> list[str]:
        return []

    def on_message(self, topic: str, payload: bytes) -> None:
        """Subscribes to nothing."""

    def publications(self, limit: int) -> list[Publication]:
        now = self._clock.monotonic()
        if limit < 1 or self._due_mono is None or now < self._due_mono:
            return []
        self._due_mono = now + self._every_s
        health = self._camera() if self._camera is not None else None
        status = GateStatus(
            self._gate_id,
            True,
            self._clock.now(),
            self._outbox.count_pending(),
            camera_ok=None if health is None else health.camera_ok,
            camera_detail=None if health is None else (health.camera_detail or health.camera)[:200],
        )
        return [Publication(self._topic, encode_status(status), "online", retain=True)]

    def published(self, items: list[Publication]) -> None:
        """Nothing to do."""


def build_sync(
    settings: Settings,
    *,
    outbox: Outbox,
    clock: Clock,
    extra_channels: tuple[Channel, ...] = (),
    on_tick: Callable[[], None] | None = None,
    ack_timeout_s: float = ACK_TIMEOUT_S,
    batch_events: int = BATCH_EVENTS,
    camera: Callable[[], KioskHealth | None] | None = None,
) -> tuple[ChannelLoop, UplinkChannel]:
    """The gate's sync loop from its settings and site files (the composition root).

    ``extra_channels``: the documents and presence channels
    (:func:`gate_channels`). ``camera`` reads the gate's health row, whose
    camera state the status carries to the hub's dashboard.
    """
    if not settings.in_site:
        raise SiteError("this gate belongs to no site: set site.hub (gatekiosk site join)")
    files = GateSiteFiles(settings.site_dir)
    gate_id = check_gate_id(str(settings["gate.id"]))
    if files.gate_id() != gate_id:
        raise SiteError(
            f"gate.id is {gate_id!r} but this gate's certificate names {files.gate_id()!r}"
        )
    topics = Topics(files.site_id())
    uplink = UplinkChannel(
        outbox=outbox,
        topics=topics,
        gate_id=gate_id,
        clock=clock,
        resync_memory=files.resync_request,
        ack_timeout_s=ack_timeout_s,
        batch_events=batch_events,
    )
    status = StatusChannel(
        outbox=outbox,
        topics=topics,
        gate_id=gate_id,
        clock=clock,
        every_s=STATUS_EVERY_S,
        camera=camera,
    )
    loop = ChannelLoop(
        address=BrokerAddress.parse(str(settings["site.hub"])),
        tls=client_ssl_context(files.ca_certificate, files.certificate, files.key),
        identity=gate_id,
        channels=[uplink, status, *extra_channels],
        clock=clock,
        will=status.will(),
        on_connected=lambda: _connected(status, uplink),
        on_tick=on_tick,
    )
    return loop, uplink


def _connected(status: StatusChannel, uplink: UplinkChannel) -> None:
    status.connected()
    uplink.rewind()  # a restarted broker kept nothing of what was in flight


def gate_channels(settings: Settings, store: Store, clock: Clock) -> tuple[Channel, ...]:
    """The gate's channels beside the uplink and status: the hub's signed
    documents down, and site-wide presence both ways."""
    if not settings.in_site:
        raise SiteError("this gate belongs to no site: set site.hub (gatekiosk site join)")
    files = GateSiteFiles(settings.site_dir)
    site_id = files.site_id()
    documents = GateDocuments(store, site_id=site_id, keys_dir=settings.keys_dir, clock=clock)
    presence = PresenceChannel(
        store,
        site_id=site_id,
        gate_id=check_gate_id(str(settings["gate.id"])),
        clock=clock,
        expiry_h=float(settings["policy.presence_expiry_h"]),
        gap_s=float(settings["site.stale_after_s"]),
    )
    admits = GateAdmits(store, topics=Topics(site_id), gate_id=presence_gate(settings), clock=clock)
    return (documents, presence, admits)


def presence_gate(settings: Settings) -> str:
    return check_gate_id(str(settings["gate.id"]))
