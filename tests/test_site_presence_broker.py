"""Site presence end to end: two gates' databases, their presence channels,
and a real Mosquitto broker on loopback (TLS, the site's ACL).

The sync process is S1's; here a minimal paho loop per gate does its part
for one channel: subscribe, feed messages in, publish what the channel
offers with QoS 1, report the PUBACKs. The gates' databases are real files
(fsynced commits), as on a Pi.
"""

from __future__ import annotations

import contextlib
import queue
import statistics
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from kiosk.clock import SystemClock
from kiosk.gate_view import gate_view
from kiosk.policy import SITE_VIEW_STALE, PolicyRules, decide
from kiosk.site.channel import Publication
from kiosk.site.presence import PresenceChannel, decode
from kiosk.store import NewEvent, PresenceFact, Store
from tests.mosquitto_fixture import (  # noqa: F401  (fixtures: broker, site)
    HOST,
    WAIT_S,
    ClientFiles,
    RunningBroker,
    TestSite,
    broker_fixture,
    site_fixture,
)
from tests.site_gates import EXPIRY_H, SITE_ID, hashed, person

FACTS = 100
STALE_S = 1.0


class MiniSync:
    """One gate's sync loop for one channel, on a thread of its own."""

    def __init__(
        self, broker: RunningBroker, files: ClientFiles, gate_id: str, channel: PresenceChannel
    ) -> None:
        self.channel = channel
        self.folded_at: dict[str, float] = {}
        """Fact event id -> when this gate had folded it (monotonic s)."""
        self._broker = broker
        self._inbox: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        self._acked: set[int] = set()
        self._pending: dict[int, Publication] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self._mqtt = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=gate_id, protocol=mqtt.MQTTv5
        )
        self._mqtt.tls_set_context(files.ssl_context())
        self._mqtt.on_connect = self._on_connect
        self._mqtt.on_subscribe = lambda *args: self._subscribed.set()
        self._mqtt.on_message = self._on_message
        self._mqtt.on_publish = self._on_publish
        self._thread = threading.Thread(target=self._run, name=f"sync-{gate_id}", daemon=True)

    def __enter__(self) -> MiniSync:
        self._mqtt.connect(HOST, self._broker.port, keepalive=30)
        self._mqtt.loop_start()
        assert self._subscribed.wait(WAIT_S), self._broker.log_text()[-2000:]
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(WAIT_S)
        with contextlib.suppress(Exception):
            self._mqtt.disconnect()
        self._mqtt.loop_stop()

    # paho's network thread

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        for topic in self.channel.subscriptions():
            client.subscribe(topic, qos=1)

    def _on_message(self, client, userdata, message) -> None:
        self._inbox.put((message.topic, bytes(message.payload)))
        self._wake.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acked.add(mid)
        self._wake.set()

    # the sync thread: the only one that touches the channel

    def _run(self) -> None:
        while not self._stop.is_set():
            while not self._inbox.empty():
                topic, payload = self._inbox.get()
                self.channel.on_message(topic, payload)
                message = decode(payload)
                if isinstance(message, PresenceFact):
                    with self._changed:
                        self.folded_at.setdefault(message.event_id, time.monotonic())
                        self._changed.notify_all()
            done = [mid for mid in list(self._pending) if mid in self._acked]
            if done:
                self.channel.published([self._pending.pop(mid) for mid in done])
            if not self._pending:
                for item in self.channel.publications(50):
                    info = self._mqtt.publish(item.topic, item.payload, qos=1, retain=item.retain)
                    self._pending[info.mid] = item
            self._wake.wait(0.01)
            self._wake.clear()

    def wait_folded(self, event_id: str) -> float:
        deadline = time.monotonic() + WAIT_S
        with self._changed:
            while event_id not in self.folded_at:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"{event_id} never reached this gate"
                self._changed.wait(remaining)
            return self.folded_at[event_id]


def _record_entry(store: Store, gate_id: str, n: int, clock: SystemClock):
    return store.record(
        NewEvent(
            gate_id=gate_id,
            at=clock.now(),
            utc_offset_min=420,
            clock_synced=True,
            direction="in",
            decision="allow",
            reason="ok",
            kind="cccd",
            subject_hash=hashed(n),
            display_name=person(n).display_name,
            masked_id=None,
        )
    )


def test_an_entry_at_one_gate_is_an_exit_at_the_other_within_a_bound(
    site: TestSite, broker: RunningBroker, tmp_path: Path
):
    clock = SystemClock()
    stores = {g: Store.open(tmp_path / f"{g}.db", boot_id=f"{g}-boot") for g in site.gates}
    channels = {
        g: PresenceChannel(stores[g], site_id=SITE_ID, gate_id=g, clock=clock, expiry_h=EXPIRY_H)
        for g in site.gates
    }
    with (
        MiniSync(broker, site.gates["gate-1"], "gate-1", channels["gate-1"]) as sync_a,
        MiniSync(broker, site.gates["gate-2"], "gate-2", channels["gate-2"]) as sync_b,
    ):
        a, b = stores["gate-1"], stores["gate-2"]
        latencies_ms = []
        for n in range(FACTS):
            entry = _record_entry(a, "gate-1", n, clock)
            recorded = time.monotonic()
            latencies_ms.append((sync_b.wait_folded(entry.id) - recorded) * 1000)
            if n == 0:
                view = gate_view(
                    b, person(0), hashed(0), at=clock.now(), expiry_h=EXPIRY_H, stale_after_s=30
                )
                decision = decide(person(0), rules=PolicyRules(), view=view)
                assert (decision.verdict, decision.direction) == ("allow", "out")
                assert decision.warning is None  # gate-2 hears the site

        assert b.occupancy(now=clock.now(), expiry_h=EXPIRY_H) == FACTS
        assert {p.event_id for p in b.inside(now=clock.now(), expiry_h=EXPIRY_H)} == {
            p.event_id for p in a.inside(now=clock.now(), expiry_h=EXPIRY_H)
        }
        assert sync_a.channel.counts["malformed"] == sync_b.channel.counts["malformed"] == 0
        assert sync_b.channel.counts["folded"] == FACTS
        assert set(b.site_presence.last_heard()) == {"gate-1", "gate-2"}

    for store in stores.values():
        store.close()
    ordered = sorted(latencies_ms)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * len(ordered)) - 1)]
    print(f"\ngate-to-gate presence latency over {FACTS} facts: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    # Not a timed assert (the machine is shared): a bound that only a broken
    # path would miss. The figure is reported; the target is p99 <= 300 ms.
    assert p99 < WAIT_S * 1000


def _wait_until(condition, what: str) -> None:
    """Poll ``condition`` (the gates work on their own threads) until true or WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT_S} s: {what}"
        pause.wait(0.02)


def test_a_partition_is_flagged_and_its_double_entry_kept_after_the_heal(
    site: TestSite, broker: RunningBroker, tmp_path: Path
):
    clock = SystemClock()
    rules = PolicyRules(mode="entry", antipassback="hard", antipassback_when_stale="local")
    stores = {g: Store.open(tmp_path / f"{g}.db", boot_id=f"{g}-boot") for g in site.gates}

    def channel(gate_id: str) -> PresenceChannel:
        return PresenceChannel(
            stores[gate_id],
            site_id=SITE_ID,
            gate_id=gate_id,
            clock=clock,
            expiry_h=EXPIRY_H,
            beat_every_s=0.1,
            gap_s=STALE_S,
        )

    def scan(gate_id: str, n: int):
        store = stores[gate_id]
        at = clock.now()
        view = gate_view(
            store, person(n), hashed(n), at=at, expiry_h=EXPIRY_H, stale_after_s=STALE_S
        )
        decision = decide(person(n), rules=rules, view=view)
        event = store.record(
            NewEvent(
                gate_id=gate_id,
                at=at,
                utc_offset_min=420,
                clock_synced=True,
                direction=decision.direction,
                decision=decision.verdict,
                reason=decision.reason,
                kind="cccd",
                subject_hash=hashed(n),
                display_name=None,
                masked_id=None,
                warning=decision.warning,
            )
        )
        return decision, event

    def stale(gate_id: str) -> bool:
        return gate_view(
            stores[gate_id], None, None, at=clock.now(), expiry_h=EXPIRY_H, stale_after_s=STALE_S
        ).site_stale

    a = stores["gate-1"]
    with MiniSync(broker, site.gates["gate-1"], "gate-1", channel("gate-1")):
        with MiniSync(broker, site.gates["gate-2"], "gate-2", channel("gate-2")):
            _wait_until(
                lambda: set(a.site_presence.last_heard()) == {"gate-1", "gate-2"},
                "gate-1 hears both gates",
            )
            _wait_until(lambda: not stale("gate-1") and not stale("gate-2"), "a fresh view")
        # gate-2's sync process is gone: a partition.
        _wait_until(lambda: stale("gate-1") and stale("gate-2"), "both views stale")
        first_decision, first = scan("gate-1", 1)
        second_decision, second = scan("gate-2", 1)  # gate-2 cannot know
        assert first_decision.warning == second_decision.warning == SITE_VIEW_STALE
        assert second_decision.allowed
        with MiniSync(broker, site.gates["gate-2"], "gate-2", channel("gate-2")):
            _wait_until(
                lambda: all(
                    len(s.site_presence.conflicts(since=first.at, expiry_h=EXPIRY_H)) == 1
                    for s in stores.values()
                ),
                "both gates see the double entry",
            )
            _wait_until(lambda: not stale("gate-1") and not stale("gate-2"), "fresh again")
    for store in stores.values():
        (conflict,) = store.site_presence.conflicts(since=first.at, expiry_h=EXPIRY_H)
        assert (conflict.first_event_id, conflict.second_event_id) == (first.id, second.id)
        inside = store.inside(now=clock.now(), expiry_h=EXPIRY_H)
        assert [p.event_id for p in inside] == [second.id]
        store.close()
