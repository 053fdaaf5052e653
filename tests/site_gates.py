"""Simulated gates of one site for the presence tests: each a real store in
``tmp_path`` deciding as the scanner does (view, decide, record), with its
presence channel; and an in-memory broker with partitions, which delivers
what was queued for a gate in any order and with duplicates when asked.

Nothing here sleeps: a shared :class:`~kiosk.clock.FakeClock` moves when the
test says so.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from kiosk.clock import FakeClock
from kiosk.codes.base import Credential
from kiosk.gate_view import gate_view
from kiosk.policy import Decision, PolicyRules, decide
from kiosk.privacy import subject_hash
from kiosk.site.presence import PresenceChannel
from kiosk.store import Event, NewEvent, Store
from kiosk.store.values import to_text

SITE_ID = "test-site"
HASH_KEY = b"site-hash-key-of-the-test-site!!"
EXPIRY_H = 12.0


def person(n: int) -> Credential:
    """A visitor with a chip ID card (identity only)."""
    return Credential(kind="cccd", subject_id=f"0792010{n:05d}", display_name=f"Khách {n}")


def hashed(n: int) -> str:
    return subject_hash(HASH_KEY, f"person:{person(n).subject_id}")


@dataclass
class SimGate:
    """One gate: its database, its rules, its presence channel."""

    gate_id: str
    folder: Path
    clock: FakeClock
    rules: PolicyRules
    stale_after_s: float = 5.0
    beat_every_s: float = 1.0
    boots: int = 0
    store: Store = field(init=False)
    channel: PresenceChannel = field(init=False)

    def __post_init__(self) -> None:
        self._open()

    def _open(self) -> None:
        self.boots += 1
        self.store = Store.open(
            self.folder / f"{self.gate_id}.db", boot_id=f"{self.gate_id}-boot-{self.boots}"
        )
        self.channel = PresenceChannel(
            self.store,
            site_id=SITE_ID,
            gate_id=self.gate_id,
            clock=self.clock,
            expiry_h=EXPIRY_H,
            beat_every_s=self.beat_every_s,
            gap_s=self.stale_after_s,
        )

    def restart(self) -> None:
        """The machine restarts: a new boot, a new sync process; the database stays."""
        self.store.close()
        self._open()

    def scan(self, n: int) -> tuple[Decision, Event]:
        """Person ``n`` shows their code: view, decide, record, as the scanner does."""
        at = self.clock.now()
        credential = person(n)
        subject = hashed(n)
        view = gate_view(
            self.store,
            credential,
            subject,
            at=at,
            expiry_h=EXPIRY_H,
            stale_after_s=self.stale_after_s,
        )
        decision = decide(credential, rules=self.rules, view=view)
        event = self.store.record(
            NewEvent(
                gate_id=self.gate_id,
                at=at,
                utc_offset_min=420,
                clock_synced=True,
                direction=decision.direction,
                decision=decision.verdict,
                reason=decision.reason,
                kind=credential.kind,
                subject_hash=subject,
                display_name=credential.display_name,
                masked_id=None,
                warning=decision.warning,
            )
        )
        return decision, event

    def inside(self) -> set[tuple[str, str]]:
        """Who this gate believes inside: (subject hash, entry event id)."""
        now = self.clock.now()
        return {(p.subject_hash, p.event_id) for p in self.store.inside(now=now, expiry_h=EXPIRY_H)}


@dataclass
class LoopbackBroker:
    """QoS 1 in memory: what a connected gate publishes is acknowledged and
    queued for every gate (itself included); a gate receives its queue only
    while connected. Without ``persistent`` sessions, what is published while
    a gate is cut off is lost for it (the broker keeps nothing for it)."""

    gates: dict[str, SimGate]
    cut: set[str] = field(default_factory=set)
    persistent: bool = True
    queues: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)

    def connected(self) -> list[str]:
        return [g for g in sorted(self.gates) if g not in self.cut]

    def pump(self, rng: random.Random | None = None, *, duplicates: bool = False) -> None:
        """Publish what connected gates have to say and deliver every
        connected gate's queue; ``rng`` shuffles each delivery (and with
        ``duplicates`` sends some messages twice)."""
        for _ in range(3):
            for gate_id in self.connected():
                channel = self.gates[gate_id].channel
                while items := channel.publications(100):
                    for item in items:
                        for receiver in self.gates:
                            if self.persistent or receiver not in self.cut:
                                queue = self.queues.setdefault(receiver, [])
                                queue.append((item.topic, item.payload))
                    channel.published(items)
                    if all(item.key.startswith("beat:") for item in items):
                        break
            for gate_id in self.connected():
                batch = self.queues.pop(gate_id, [])
                if rng is not None:
                    if duplicates:
                        batch = batch + [m for m in batch if rng.random() < 0.3]
                    rng.shuffle(batch)
                for topic, payload in batch:
                    self.gates[gate_id].channel.on_message(topic, payload)


def site_truth(gates: dict[str, SimGate], *, now: datetime) -> set[tuple[str, str]]:
    """Who is inside by every gate's log merged in the site's order key: the
    model the gates must converge to (subject hash, entry event id)."""
    merged: list[tuple[tuple[str, str, str, int, str], Event]] = []
    for gate in gates.values():
        for event in gate.store.events_between(
            now - timedelta(hours=EXPIRY_H), now + timedelta(seconds=1)
        ):
            if event.decision == "allow" and event.subject_hash is not None:
                key = (to_text(event.at), event.gate_id, event.boot_id, event.seq, event.id)
                merged.append((key, event))
    latest: dict[str, Event] = {}
    for _, event in sorted(merged, key=lambda pair: pair[0]):
        assert event.subject_hash is not None
        latest[event.subject_hash] = event
    return {(s, e.id) for s, e in latest.items() if e.direction == "in"}
