"""``gatekiosk hub``: every gate's events into the site database, once each.

:class:`IngestChannel` subscribes to every gate's events. For each batch it
checks the message (strict decoding, :mod:`kiosk.site.uplink`) and that the
batch's gate is the gate of the topic it came on: the broker's ACL lets a
gate write only under its own topics, so a batch claiming another gate is a
gate lying about itself, refused and counted. Then it inserts the batch in
one transaction (:meth:`kiosk.store.outbox.SiteLog.ingest`, idempotent by
event id and by boot and sequence), commits, and only then publishes the
acknowledgement to ``gk/<site>/to/<gate>/ack``. A hub killed between the
commit and the acknowledgement gets the batch again and acknowledges it
without inserting anything.

Memory stays small whatever the backlog: the broker hands the hub at most
``max_inflight`` messages before the hub has handled them (see
:mod:`kiosk.site.link`), and nothing is kept once committed.

``gatekiosk hub resync --since TIME`` (:func:`request_resync`) asks gates to
send every event since TIME again: for a hub rebuilt after losing its disk.
The request is retained, so a gate offline at that moment obeys when it
comes back; a gate carries out each request once.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kiosk.clock import Clock
from kiosk.config import Settings
from kiosk.errors import GateError
from kiosk.site import SiteError
from kiosk.site.channel import Publication
from kiosk.site.enrolment import PkiPaths
from kiosk.site.files import PUBLIC_FILE_MODE, write_atomically
from kiosk.site.link import BrokerAddress, ChannelLoop
from kiosk.site.pki import client_ssl_context, identity_of, load_certificate
from kiosk.site.topics import HUB_IDENTITY, Topics, check_gate_id, is_valid_id
from kiosk.site.uplink import (
    Malformed,
    decode_batch,
    decode_status,
    encode_ack,
    encode_resync,
)
from kiosk.store import GateStatusRow, Store
from kiosk.store.outbox import SiteLog

log = logging.getLogger(__name__)

STATS_EVERY_S = 1.0


@dataclass
class HubStats:
    """What the hub did, for its log, the tests and the benchmark.

    ``latency_ms`` counts inserted events by the time from their recording
    at the gate to their commit here (wall clocks; on one machine, one
    clock), in buckets: 1 ms up to 1 s, 10 ms up to 10 s, 100 ms beyond.
    """

    batches: int = 0
    events_inserted: int = 0
    events_again: int = 0
    conflicting: int = 0
    impersonations: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[int, int] = field(default_factory=dict)

    def add_latency(self, ms: float) -> None:
        step = 1 if ms < 1000 else 10 if ms < 10_000 else 100
        bucket = max(0, int(ms) // step * step)
        self.latency_ms[bucket] = self.latency_ms.get(bucket, 0) + 1

    def as_json(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "events_inserted": self.events_inserted,
            "events_again": self.events_again,
            "conflicting": self.conflicting,
            "impersonations": self.impersonations,
            "malformed": dict(self.malformed),
            "latency_ms": {str(k): v for k, v in sorted(self.latency_ms.items())},
        }


class IngestChannel:
    """Batches from every gate in, acknowledgements out (after the commit)."""

    def __init__(self, *, site_log: SiteLog, topics: Topics, clock: Clock) -> None:
        self._site_log = site_log
        self._topics = topics
        self._clock = clock
        self._prefix = f"{topics.site}/gate/"
        self._acks: deque[Publication] = deque()
        self.stats = HubStats()

    def subscriptions(self) -> list[str]:
        return [self._topics.all_events]

    def on_message(self, topic: str, payload: bytes) -> None:
        topic_gate = topic[len(self._prefix) : -len("/events")]
        if not topic.startswith(self._prefix) or not is_valid_id(topic_gate):
            return
        started = self._clock.monotonic()
        batch = decode_batch(payload)
        if isinstance(batch, Malformed):
            count = self.stats.malformed.get(batch.problem, 0) + 1
            self.stats.malformed[batch.problem] = count
            log.warning(
                "refused a malformed batch from gate %s: %s (%s); %d so far",
                topic_gate,
                batch.problem,
                batch.detail,
                count,
            )
            return
        if batch.gate_id != topic_gate:
            self.stats.impersonations += 1
            log.warning(
                "refused a batch on gate %s's topic claiming to be gate %s's; %d so far",
                topic_gate,
                batch.gate_id,
                self.stats.impersonations,
            )
            return
        result = self._site_log.ingest(topic_gate, batch.events)  # committed on return
        committed_at = self._clock.now()
        self.stats.batches += 1
        self.stats.events_inserted += result.inserted
        self.stats.events_again += len(result.stored) - result.inserted
        self.stats.conflicting += len(result.conflicting)
        if result.inserted:
            fresh = set(result.stored)
            for event in batch.events:
                if event.id in fresh:
                    self.stats.add_latency((committed_at - event.at).total_seconds() * 1000)
        log.debug(
            "gate %s: %d event(s), %d new, committed in %.0f ms",
            topic_gate,
            len(batch.events),
            result.inserted,
            (self._clock.monotonic() - started) * 1000,
        )
        if result.stored:
            ack_topic = f"{self._topics.to_gate(topic_gate)}/ack"
            self._acks.append(Publication(ack_topic, encode_ack(result.stored), result.stored[0]))

    def publications(self, limit: int) -> list[Publication]:
        offers: list[Publication] = []
        while self._acks and len(offers) < limit:
            offers.append(self._acks.popleft())
        return offers

    def published(self, items: list[Publication]) -> None:
        """The broker has the acknowledgement; if it is lost, the gate sends again."""


class GateStatusChannel:
    """Every gate's retained status (and the broker's wills) into the site
    database's ``site_gates`` table, for the site dashboard. A status on one
    gate's topic naming another gate is refused and counted."""

    def __init__(self, *, store: Store, topics: Topics, clock: Clock) -> None:
        self._store = store
        self._topics = topics
        self._clock = clock
        self._prefix = f"{topics.site}/gate/"
        self.refused = 0

    def subscriptions(self) -> list[str]:
        return [f"{self._topics.site}/gate/+/status"]

    def on_message(self, topic: str, payload: bytes) -> None:
        topic_gate = topic[len(self._prefix) : -len("/status")]
        status = decode_status(payload)
        if isinstance(status, Malformed) or status.gate_id != topic_gate:
            self.refused += 1
            log.warning("refused a status message on gate %.40r's topic", topic_gate)
            return
        self._store.site_gates.save(
            GateStatusRow(
                gate_id=status.gate_id,
                online=status.online,
                status_at=status.at,
                backlog=status.backlog,
                camera_ok=status.camera_ok,
                camera_detail=status.camera_detail,
                received_at=self._clock.now(),
            )
        )

    def publications(self, limit: int) -> list[Publication]:
        return []

    def published(self, items: list[Publication]) -> None:
        """The hub publishes no status."""


@dataclass(frozen=True)
class HubFiles:
    """The hub's PKI (``<site.dir>/pki``, see :class:`kiosk.site.enrolment.PkiPaths`)."""

    pki: PkiPaths

    @classmethod
    def in_site_dir(cls, site_dir: Path) -> HubFiles:
        return cls(PkiPaths(site_dir / "pki"))

    def site_id(self) -> str:
        from cryptography.x509.oid import NameOID

        units = load_certificate(self.pki.ca_certificate).subject.get_attributes_for_oid(
            NameOID.ORGANIZATIONAL_UNIT_NAME
        )
        if len(units) != 1 or not isinstance(units[0].value, str):
            raise SiteError(f"{self.pki.ca_certificate} names no site")
        return units[0].value

    def gate_ids(self) -> list[str]:
        """Every enrolled gate (``pki/gates/*.pem``)."""
        if not self.pki.gates.is_dir():
            return []
        return sorted(identity_of(load_certificate(p)) for p in self.pki.gates.glob("*.pem"))

    def loop(
        self,
        address: BrokerAddress,
        *,
        channels: list[Any],
        clock: Clock,
        on_tick: Callable[[], None] | None = None,
    ) -> ChannelLoop:
        tls = client_ssl_context(
            self.pki.ca_certificate, self.pki.hub_certificate, self.pki.hub_key
        )
        return ChannelLoop(
            address=address,
            tls=tls,
            identity=HUB_IDENTITY,
            channels=channels,
            clock=clock,
            on_tick=on_tick,
        )


class StatsFile:
    """Writes the hub's stats as JSON to ``path`` at most every ``every_s`` (and on demand)."""

    def __init__(self, stats: HubStats, path: Path | None, *, clock: Clock) -> None:
        self._stats = stats
        self._path = path
        self._clock = clock
        self._last_mono: float | None = None

    def tick(self) -> None:
        now = self._clock.monotonic()
        if self._last_mono is None or now - self._last_mono >= STATS_EVERY_S:
            self.write()

    def write(self) -> None:
        self._last_mono = self._clock.monotonic()
        if self._path is None:
            return
        try:
            data = json.dumps(self._stats.as_json()).encode()
            write_atomically(self._path, data, PUBLIC_FILE_MODE)
        except (OSError, GateError) as exc:
            log.warning("could not write the hub's stats to %s: %s", self._path, exc)


def request_resync(
    loop: ChannelLoop,
    topics: Topics,
    gate_ids: Iterable[str],
    since: datetime,
    *,
    wait: Callable[[Callable[[], bool]], bool],
) -> list[str]:
    """Publish a retained resync request to each gate; the gates whose PUBACK came.

    ``wait(condition)`` polls until ``condition()`` or its deadline (False then).
    """
    request = uuid.uuid4().hex
    payload = encode_resync(request, since)
    if not wait(lambda: loop.connected):
        raise SiteError("could not reach the broker to ask the gates for their events")
    sent = []
    for gate_id in gate_ids:
        topic = f"{topics.to_gate(check_gate_id(gate_id))}/resync"
        info = loop.publish_now(Publication(topic, payload, request, retain=True))
        if wait(info.is_published):
            sent.append(gate_id)
    return sent


def hub_channels(settings: Settings, store: Store, topics: Topics, clock: Clock) -> list[Any]:
    """The hub's channels beside ingestion: the gates' status in, and the
    site's signed documents out (when the hub has its signing keys; without
    them the gates keep the documents they have, and the log says why).

    The hub's own presence needs no channel: ingestion keeps it site-wide
    (see :meth:`kiosk.store.outbox.SiteLog.ingest`).
    """
    from kiosk.keys import MANIFEST_NAME
    from kiosk.site.admits import HubAdmits
    from kiosk.site.downlink import HubDocuments

    channels: list[Any] = [
        GateStatusChannel(store=store, topics=topics, clock=clock),
        HubAdmits(store, topics=topics, clock=clock),
    ]
    if (settings.keys_dir / MANIFEST_NAME).exists():
        channels.append(
            HubDocuments(store, site_id=topics.site_id, keys_dir=settings.keys_dir, clock=clock)
        )
    else:
        log.warning(
            "no signing keys in %s: the site's documents are not published "
            "(gatekiosk keys init, or gatekiosk site init)",
            settings.keys_dir,
        )
    return channels
