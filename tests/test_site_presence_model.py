"""A stateful property test of site-wide presence against a simple model.

Random scans at three gates, partitions (a gate stops hearing the others and
they stop hearing it), heals (what was queued delivered in random order, with
duplicates; with or without a broker that kept messages for the gate that
was away) and restarts (a new boot, a new sync process; the database
stays). The model is every gate's log merged in the site's order key:

- capacity is never exceeded by who is inside by that merged log, at any
  moment, with the gates deciding alone under partitions (the share rule);
- a decision is flagged stale exactly when some gate is cut off;
- once every gate hears every other again, every gate's presence is the
  model's.

Time: each scan comes 10 s after the step before, longer than the gates'
5 s ``stale_after_s``, so a gate notices a partition before its next scan.
``GATEKIOSK_MODEL_EXAMPLES`` runs more examples (default: a bounded run
for ``make test``).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from kiosk.clock import FakeClock
from kiosk.policy import STALE_WARNINGS, PolicyRules
from tests.site_gates import EXPIRY_H, LoopbackBroker, SimGate, hashed, site_truth

GATE_IDS = ("gate-1", "gate-2", "gate-3")
CAPACITY = 4
PEOPLE = 10
STEP_S = 10.0
FAST_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None


class Site(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # On tmpfs where there is one: thousands of fsynced commits per run.
        self.folder = Path(tempfile.mkdtemp(prefix="gk-site-model-", dir=FAST_DIR))
        self.clock = FakeClock()
        self.gates: dict[str, SimGate] = {}
        self.broker = LoopbackBroker(self.gates)
        self.rng = random.Random(0)
        self.stale_scans = 0

    @initialize(
        stale_mode=st.sampled_from(["local", "soft", "deny"]),
        antipassback=st.sampled_from(["off", "soft", "hard"]),
        seed=st.integers(0, 2**32),
        persistent=st.booleans(),
    )
    def build(self, stale_mode: str, antipassback: str, seed: int, persistent: bool) -> None:
        rules = PolicyRules(
            mode="both",
            antipassback=antipassback,  # type: ignore[arg-type]
            capacity=CAPACITY,
            antipassback_when_stale=stale_mode,  # type: ignore[arg-type]
            entry_gates=len(GATE_IDS),
        )
        self.rng = random.Random(seed)
        self.broker.persistent = persistent
        for gate_id in GATE_IDS:
            self.gates[gate_id] = SimGate(gate_id, self.folder, self.clock, rules)
        self.broker.pump()

    @rule(gate=st.sampled_from(GATE_IDS), person=st.integers(0, PEOPLE - 1))
    def scan(self, gate: str, person: int) -> None:
        self.clock.advance(STEP_S)
        self.broker.pump(self.rng)
        decision, event = self.gates[gate].scan(person)
        stale = bool(self.broker.cut)
        assert (decision.warning in STALE_WARNINGS) == stale, (decision, self.broker.cut)
        assert event.warning == decision.warning
        self.stale_scans += stale

    @rule(
        gates=st.lists(st.sampled_from(GATE_IDS), min_size=2, max_size=6),
        people=st.lists(st.integers(0, PEOPLE - 1), min_size=6, max_size=6, unique=True),
    )
    def a_crowd(self, gates: list[str], people: list[int]) -> None:
        """Several people at several gates, one after another: where a
        capacity or a share is used up."""
        for gate, person in zip(gates, people, strict=False):
            self.scan(gate, person)

    @precondition(lambda self: len(self.broker.cut) < len(GATE_IDS))
    @rule(gate=st.sampled_from(GATE_IDS))
    def partition(self, gate: str) -> None:
        self.broker.cut.add(gate)

    @precondition(lambda self: bool(self.broker.cut))
    @rule(data=st.data())
    def heal_one(self, data: st.DataObject) -> None:
        gate = data.draw(st.sampled_from(sorted(self.broker.cut)))
        self.broker.cut.discard(gate)
        self.clock.advance(STEP_S)
        self.broker.pump(self.rng, duplicates=True)

    @precondition(lambda self: bool(self.broker.cut))
    @rule()
    def heal_all(self) -> None:
        self.broker.cut.clear()
        self.clock.advance(STEP_S)
        self.broker.pump(self.rng, duplicates=True)
        truth = site_truth(self.gates, now=self.clock.now())
        for gate in self.gates.values():
            assert gate.inside() == truth, gate.gate_id
            now = self.clock.now()
            assert gate.store.occupancy(now=now, expiry_h=EXPIRY_H) == len(truth)
        for person in range(PEOPLE):
            answers = {
                gate.gate_id: gate.store.presence_of(
                    hashed(person), now=self.clock.now(), expiry_h=EXPIRY_H
                )
                for gate in self.gates.values()
            }
            entered = {p.event_id if p else None for p in answers.values()}
            assert len(entered) == 1, answers

    @rule(gate=st.sampled_from(GATE_IDS))
    def restart(self, gate: str) -> None:
        self.gates[gate].restart()

    @invariant()
    def capacity_is_never_exceeded(self) -> None:
        if self.gates:
            assert len(site_truth(self.gates, now=self.clock.now())) <= CAPACITY

    @invariant()
    def connected_gates_agree(self) -> None:
        """Gates that hear each other (and were not cut since their last
        delivery) see the same presence after a delivery round."""
        if not self.gates or self.broker.cut:
            return
        self.broker.pump(self.rng)
        insides = {frozenset(gate.inside()) for gate in self.gates.values()}
        assert len(insides) == 1

    def teardown(self) -> None:
        for gate in self.gates.values():
            gate.store.close()
        shutil.rmtree(self.folder, ignore_errors=True)


TestSiteModel = Site.TestCase
TestSiteModel.settings = settings(
    max_examples=int(os.environ.get("GATEKIOSK_MODEL_EXAMPLES", "30")),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
