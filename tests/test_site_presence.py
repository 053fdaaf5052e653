"""Site-wide presence: facts, folding, the channel, stale views and conflicts."""

from __future__ import annotations

import json
import random
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.clock import FakeClock
from kiosk.codes.base import Credential
from kiosk.messages import message_for
from kiosk.policy import (
    ANTIPASSBACK_STALE,
    ANTIPASSBACK_UNVERIFIED,
    CAPACITY_SHARE_USED,
    SITE_VIEW_STALE,
    GateView,
    PolicyRules,
    decide,
    stale_share_left,
)
from kiosk.site.presence import (
    Beat,
    MalformedPresence,
    PresenceChannel,
    decode,
    encode_beat,
    encode_fact,
)
from kiosk.site.topics import Topics
from kiosk.store import PresenceFact, Store
from kiosk.store.site_presence import SITE_OCCUPANCY_SQL
from kiosk.store.values import to_text
from tests.site_gates import EXPIRY_H, SITE_ID, LoopbackBroker, SimGate, hashed, site_truth

T0 = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)
TOPICS = Topics(SITE_ID)
CARD = Credential(kind="cccd", subject_id="079201000123", display_name="Nguyễn Văn An")


def fact(
    n: int = 1,
    *,
    gate: str = "gate-2",
    direction: str = "in",
    at: datetime = T0,
    seq: int = 1,
    event_id: str | None = None,
) -> PresenceFact:
    return PresenceFact(
        event_id=event_id or f"{gate}-{seq:04d}-{n:04d}",
        gate_id=gate,
        subject_hash=hashed(n),
        direction=direction,  # type: ignore[arg-type]
        at_utc=to_text(at),
        boot_id=f"{gate}-boot",
        seq=seq,
    )


def make_site(tmp_path: Path, ids: tuple[str, ...] = ("gate-1", "gate-2"), **rules: object):
    clock = FakeClock(wall=T0)
    gates = {
        g: SimGate(g, tmp_path, clock, PolicyRules(**rules))  # type: ignore[arg-type]
        for g in ids
    }
    broker = LoopbackBroker(gates)
    broker.pump()
    return clock, gates, broker


def step(clock: FakeClock, broker: LoopbackBroker, seconds: float = 10.0) -> None:
    """Time passes (longer than the gates' 5 s stale limit); the connected talk."""
    clock.advance(seconds)
    broker.pump()


# ----------------------------------------------------------------- the format


def test_a_fact_round_trips_as_compact_json():
    original = fact(7, direction="out", seq=42)
    payload = encode_fact(original)
    assert decode(payload) == original
    assert json.loads(payload) == {
        "v": 1,
        "id": original.event_id,
        "gate": "gate-2",
        "subject": hashed(7),
        "dir": "out",
        "at": "2026-01-05T01:00:00.000000Z",
        "boot": "gate-2-boot",
        "seq": 42,
    }
    assert b" " not in payload
    assert decode(encode_beat("gate-1", T0)) == Beat("gate-1", "2026-01-05T01:00:00.000000Z")


GOOD = json.loads(encode_fact(fact()))


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"v": 2}, "unknown version"),
        ({"v": True}, "unknown version"),
        ({"gate": "Gate 1"}, "bad gate id"),
        ({"gate": None}, "bad gate id"),
        ({"subject": "079201000123"}, "bad subject hash"),
        ({"dir": "sideways"}, "bad direction"),
        ({"at": "2026-01-05T01:00:00Z"}, "bad time"),
        ({"at": "2026-01-05T08:00:00.000000+07"}, "bad time"),
        ({"at": "2026-13-05T01:00:00.000000Z"}, "bad time"),
        ({"seq": 0}, "bad sequence number"),
        ({"seq": True}, "bad sequence number"),
        ({"seq": 2**64}, "bad sequence number"),
        ({"seq": "7"}, "bad sequence number"),
        ({"boot": "x" * 65}, "bad boot id"),
        ({"id": "../../etc"}, "bad event id"),
        ({"name": "Nguyễn Văn An"}, "unexpected or missing fields"),
    ],
)
def test_a_malformed_fact_is_refused_with_its_defect(change, why):
    with pytest.raises(MalformedPresence, match=why):
        decode(json.dumps(GOOD | change).encode())


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xff\xfe", b"[]", b"null", b'"v"', b"{" * 100_000, b"[" * 5000, b"{}" + b" " * 2000],
)
def test_garbage_is_refused(payload):
    with pytest.raises(MalformedPresence):
        decode(payload)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=300)
    | _JSON.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(st.sampled_from([*sorted(GOOD), "beat", "x"]), _JSON, max_size=9).map(
        lambda d: json.dumps(GOOD | d).encode()
    )
)
def test_decode_never_raises_anything_but_malformed(payload):
    try:
        message = decode(payload)
    except MalformedPresence:
        return
    assert isinstance(message, PresenceFact | Beat)
    if isinstance(message, PresenceFact):
        assert decode(encode_fact(message)) == message


# ----------------------------------------------------------------- the channel, in


def test_hostile_messages_are_counted_and_never_applied(tmp_path):
    clock = FakeClock(wall=T0)
    with Store.open(tmp_path / "gate.db", boot_id="b") as store:
        channel = PresenceChannel(
            store, site_id=SITE_ID, gate_id="gate-1", clock=clock, expiry_h=EXPIRY_H
        )
        good = encode_fact(fact(gate="gate-2"))
        channel.on_message(TOPICS.gate_presence("gate-3"), good)  # gate-2's fact on gate-3's topic
        channel.on_message("gk/other-site/gate/gate-2/presence", good)
        channel.on_message("gk/test-site/gate/+/presence", good)
        channel.on_message(TOPICS.gate_events("gate-2"), good)
        channel.on_message(TOPICS.gate_presence("gate-2"), b"\x00" * 5000)
        channel.on_message(TOPICS.gate_presence("gate-2"), b'{"v":1}')
        assert channel.counts == {"wrong-gate": 1, "wrong-topic": 3, "malformed": 2}
        assert store.site_presence.latest_remote(hashed(1)) is None
        assert store.site_presence.last_heard() == {}


def test_a_fact_from_another_gate_is_folded_once(tmp_path):
    clock = FakeClock(wall=T0)
    with Store.open(tmp_path / "gate.db", boot_id="b") as store:
        channel = PresenceChannel(
            store, site_id=SITE_ID, gate_id="gate-1", clock=clock, expiry_h=EXPIRY_H
        )
        for _ in range(3):
            channel.on_message(TOPICS.gate_presence("gate-2"), encode_fact(fact()))
        assert channel.counts == {"folded": 1, "duplicate": 2}
        presence = store.presence_of(hashed(1), now=T0, expiry_h=EXPIRY_H)
        assert presence is not None
        assert (presence.gate_id, presence.entered_at, presence.display_name) == (
            "gate-2",
            T0,
            None,
        )
        assert store.occupancy(now=T0, expiry_h=EXPIRY_H) == 1
        assert store.site_presence.last_heard() == {"gate-2": T0}


def test_an_entry_at_one_gate_makes_the_next_scan_at_another_an_exit(tmp_path):
    clock, gates, broker = make_site(tmp_path)
    a, b = gates["gate-1"], gates["gate-2"]
    decision, entry = a.scan(1)
    assert (decision.verdict, decision.direction, decision.warning) == ("allow", "in", None)
    step(clock, broker, 1)
    assert b.store.presence_of(hashed(1), now=clock.now(), expiry_h=EXPIRY_H).event_id == entry.id
    assert a.inside() == b.inside() == {(hashed(1), entry.id)}
    decision, _ = b.scan(1)
    assert (decision.verdict, decision.direction) == ("allow", "out")
    step(clock, broker, 1)
    for gate in gates.values():
        assert gate.inside() == set()
        assert gate.store.occupancy(now=clock.now(), expiry_h=EXPIRY_H) == 0
    decision, _ = a.scan(1)
    assert decision.direction == "in"  # gate-1 heard of the exit at gate-2


def test_a_gate_does_not_fold_its_own_facts_back(tmp_path):
    clock, gates, broker = make_site(tmp_path, ("gate-1",))
    gate = gates["gate-1"]
    _, entry = gate.scan(1)
    step(clock, broker, 1)
    assert gate.channel.counts["own"] >= 1
    assert gate.store.site_presence.latest_remote(hashed(1)) is None
    assert gate.inside() == {(hashed(1), entry.id)}
    assert gate.store.occupancy(now=clock.now(), expiry_h=EXPIRY_H) == 1


def _facts_strategy():
    one = st.tuples(
        st.integers(1, 4),  # subject
        st.sampled_from(["in", "out"]),
        st.integers(0, 5),  # minutes after T0 (ties on purpose)
        st.sampled_from(["gate-2", "gate-3", "gate-4"]),
    )
    return st.lists(one, min_size=1, max_size=20)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_facts_strategy(), st.randoms(use_true_random=False))
def test_arrival_order_and_duplicates_never_change_presence(raw, rng):
    facts = [
        fact(n, gate=gate, direction=d, at=T0 + timedelta(minutes=m), seq=i + 1)
        for i, (n, d, m, gate) in enumerate(raw)
    ]
    shuffled = facts + rng.sample(facts, k=len(facts) // 2)
    rng.shuffle(shuffled)
    now = T0 + timedelta(hours=1)
    with tempfile.TemporaryDirectory() as folder:
        answers = []
        for name, order in (("sorted", sorted(facts, key=lambda f: f.order_key)), ("x", shuffled)):
            with Store.open(Path(folder) / f"{name}.db", boot_id="local") as store:
                if name == "x":
                    for chunk in range(0, len(order), 3):
                        store.site_presence.fold(order[chunk : chunk + 3], at=now)
                else:
                    store.site_presence.fold(order, at=now)
                answers.append(
                    (
                        {(p.subject_hash, p.event_id) for p in store.inside(now=now, expiry_h=1)},
                        store.occupancy(now=now, expiry_h=1),
                        [store.presence_of(hashed(n), now=now, expiry_h=1) for n in range(1, 5)],
                    )
                )
    assert answers[0] == answers[1]
    latest = {}
    for f in sorted(facts, key=lambda f: f.order_key):
        latest[f.subject_hash] = f
    expected = {(s, f.event_id) for s, f in latest.items() if f.direction == "in"}
    assert answers[0][0] == expected


def test_the_later_of_a_local_event_and_a_remote_fact_decides(tmp_path):
    clock, gates, _ = make_site(tmp_path, ("gate-1",))
    gate = gates["gate-1"]
    clock.advance(60)
    _, entry = gate.scan(1)  # in at T0 + 60 s
    store, now = gate.store, clock.now()
    store.site_presence.fold([fact(1, direction="out", at=T0 + timedelta(seconds=30))], at=now)
    assert store.presence_of(hashed(1), now=now, expiry_h=EXPIRY_H).event_id == entry.id
    assert store.occupancy(now=now, expiry_h=EXPIRY_H) == 1
    store.site_presence.fold([fact(1, direction="out", at=now, seq=2)], at=now)
    assert store.presence_of(hashed(1), now=now, expiry_h=EXPIRY_H) is None
    assert store.occupancy(now=now, expiry_h=EXPIRY_H) == 0
    assert store.inside(now=now, expiry_h=EXPIRY_H) == []
    # A remote entry that expired counts as gone, as a local one does.
    store.site_presence.fold([fact(2, at=now - timedelta(hours=13), seq=3)], at=now)
    assert store.presence_of(hashed(2), now=now, expiry_h=EXPIRY_H) is None


def test_old_facts_go_with_retention(tmp_path):
    with Store.open(tmp_path / "gate.db", boot_id="b") as store:
        store.site_presence.fold([fact(1), fact(2, at=T0 + timedelta(days=2), seq=2)], at=T0)
        store.purge_events_before(T0 + timedelta(days=1), limit=1000)
        assert store.site_presence.latest_remote(hashed(1)) is None
        assert store.site_presence.latest_remote(hashed(2)) is not None


# ----------------------------------------------------------------- the channel, out


def test_only_acknowledged_facts_are_not_sent_again_after_a_restart(tmp_path):
    _, gates, _ = make_site(tmp_path, ("gate-1",))
    gate = gates["gate-1"]
    entries = [gate.scan(n)[1] for n in (1, 2, 3)]
    gate.scan(1)  # an exit: a fact too
    first = gate.channel.publications(2)
    assert [p.key for p in first] == [entries[0].id, entries[1].id]
    second = gate.channel.publications(2)  # not the two in flight
    assert [p.key for p in second][:1] == [entries[2].id]
    assert len(second) == 2
    gate.channel.published([first[0]])
    assert gate.channel.in_flight == 3
    gate.restart()
    again = gate.channel.publications(10)
    assert [p.key for p in again][:2] == [entries[1].id, entries[2].id]
    assert len(again) == 3
    assert all(p.topic == TOPICS.gate_presence("gate-1") for p in again)


def test_denials_and_codes_without_a_subject_are_not_published(tmp_path):
    _, gates, _ = make_site(tmp_path, ("gate-1",), capacity=1)
    gate = gates["gate-1"]
    gate.scan(1)
    decision, _ = gate.scan(2)
    assert decision.reason == "capacity-full"
    facts = [p for p in gate.channel.publications(10) if not p.key.startswith("beat:")]
    assert len(facts) == 1


def test_a_silent_gate_beats(tmp_path):
    clock, gates, _ = make_site(tmp_path, ("gate-1",))
    channel = gates["gate-1"].channel
    clock.advance(1)
    beats = channel.publications(10)
    assert [p.key for p in beats] == ["beat:2026-01-05T01:00:01.000000Z"]
    assert channel.publications(10) == []
    clock.advance(1)
    assert isinstance(decode(channel.publications(10)[0].payload), Beat)


# ----------------------------------------------------------------- stale views


def test_a_gate_that_never_heard_a_site_is_never_stale(tmp_path):
    clock = FakeClock(wall=T0)
    gate = SimGate("gate-1", tmp_path, clock, PolicyRules(capacity=1))
    clock.advance(3600)
    decision, _ = gate.scan(1)
    assert (decision.verdict, decision.warning) == ("allow", None)


def test_every_decision_on_a_stale_view_is_flagged_on_both_sides(tmp_path):
    clock, gates, broker = make_site(tmp_path)
    a, b = gates["gate-1"], gates["gate-2"]
    step(clock, broker)
    assert a.scan(1)[0].warning is None
    step(clock, broker)
    broker.cut.add("gate-2")
    step(clock, broker)
    for gate in (a, b):
        decision, event = gate.scan(9)
        assert decision.allowed
        assert decision.warning == event.warning == SITE_VIEW_STALE
        assert decision.message.en == "Welcome, please enter"  # the message stays the decision's
    exit_decision, _ = a.scan(1)
    assert (exit_decision.direction, exit_decision.warning) == ("out", SITE_VIEW_STALE)
    broker.cut.clear()
    step(clock, broker)
    assert a.scan(2)[0].warning is None
    assert b.scan(3)[0].warning is None


STALE = GateView(site_stale=True)
STALE_INSIDE = GateView(site_stale=True, present_since=T0, occupancy=1, occupancy_at_fresh=1)


@pytest.mark.parametrize(
    ("rules", "view", "expected"),
    [
        # (verdict, direction, reason, warning)
        (PolicyRules(mode="entry", antipassback="hard", antipassback_when_stale="local"),
         STALE_INSIDE, ("deny", "in", "antipassback", SITE_VIEW_STALE)),
        (PolicyRules(mode="entry", antipassback="soft", antipassback_when_stale="local"),
         STALE_INSIDE, ("allow", "in", "ok", ANTIPASSBACK_STALE)),
        (PolicyRules(mode="entry", antipassback="hard", antipassback_when_stale="soft"),
         STALE_INSIDE, ("allow", "in", "ok", ANTIPASSBACK_STALE)),
        (PolicyRules(mode="entry", antipassback="hard", antipassback_when_stale="soft"),
         STALE, ("allow", "in", "ok", SITE_VIEW_STALE)),
        (PolicyRules(mode="entry", antipassback="soft", antipassback_when_stale="deny"),
         STALE, ("deny", "in", ANTIPASSBACK_UNVERIFIED, SITE_VIEW_STALE)),
        (PolicyRules(mode="entry", antipassback="off", antipassback_when_stale="deny"),
         STALE_INSIDE, ("allow", "in", "ok", SITE_VIEW_STALE)),
        (PolicyRules(mode="both", antipassback="hard", antipassback_when_stale="deny"),
         STALE_INSIDE, ("allow", "out", "ok-exit", SITE_VIEW_STALE)),
        (PolicyRules(mode="exit", antipassback_when_stale="deny"),
         STALE, ("allow", "out", "ok-exit", SITE_VIEW_STALE)),
        (PolicyRules(mode="entry", antipassback="hard", antipassback_when_stale="deny"),
         GateView(present_since=T0), ("deny", "in", "antipassback", None)),
    ],
)  # fmt: skip
def test_antipassback_on_a_stale_view_follows_the_setting(rules, view, expected):
    decision = decide(CARD, rules=rules, view=view)
    assert (decision.verdict, decision.direction, decision.reason, decision.warning) == expected


@pytest.mark.parametrize(
    "reason", [ANTIPASSBACK_UNVERIFIED, CAPACITY_SHARE_USED, SITE_VIEW_STALE, ANTIPASSBACK_STALE]
)
def test_the_stale_reasons_have_their_own_bilingual_messages(reason):
    message = message_for(reason)
    assert message != message_for("no-such-reason")
    assert message.vi
    assert message.en
    assert message.vi != message.en


@pytest.mark.parametrize(
    ("capacity", "gates", "at_fresh", "since", "left"),
    [(10, 1, 0, 0, 10), (10, 2, 0, 0, 5), (10, 3, 1, 0, 3), (10, 3, 1, 3, 0), (4, 3, 2, 0, 0),
     (10, 2, 12, 0, 0), (10, 2, 4, 1, 2)],
)  # fmt: skip
def test_a_stale_entry_gate_has_its_share_of_the_headroom(capacity, gates, at_fresh, since, left):
    rules = PolicyRules(capacity=capacity, entry_gates=gates)
    view = GateView(site_stale=True, occupancy_at_fresh=at_fresh, entries_since_fresh=since)
    assert stale_share_left(rules, view) == left
    decision = decide(CARD, rules=rules, view=view)
    assert decision.allowed == (left > 0)
    if not decision.allowed and at_fresh < capacity:
        assert decision.reason == CAPACITY_SHARE_USED


def test_two_partitioned_gates_together_never_pass_the_capacity(tmp_path):
    clock, gates, broker = make_site(tmp_path, capacity=5, entry_gates=2)
    a, b = gates["gate-1"], gates["gate-2"]
    a.scan(1)
    step(clock, broker)
    broker.cut.add("gate-1")
    step(clock, broker)
    admitted = {"gate-1": 0, "gate-2": 0}
    for n in range(10, 20):
        for gate in (a, b):
            decision, _ = gate.scan(n * 10 + int(gate.gate_id[-1]))
            admitted[gate.gate_id] += decision.allowed
            clock.advance(1)
    assert admitted == {"gate-1": 2, "gate-2": 2}  # floor((5 - 1) / 2) each
    broker.cut.clear()
    step(clock, broker)
    assert a.store.occupancy(now=clock.now(), expiry_h=EXPIRY_H) == 5
    assert b.inside() == a.inside()


def test_a_double_entry_across_a_partition_is_kept_as_a_conflict(tmp_path):
    clock, gates, broker = make_site(tmp_path, mode="entry", antipassback="hard")
    a, b = gates["gate-1"], gates["gate-2"]
    broker.cut.add("gate-2")
    step(clock, broker)
    _, first = a.scan(1)
    clock.advance(60)
    _, second = b.scan(1)
    assert second.decision == "allow"  # gate-2 could not know
    _, other = a.scan(2)
    assert a.store.site_presence.conflicts(since=T0, expiry_h=EXPIRY_H) == []
    broker.cut.clear()
    step(clock, broker)
    for gate in (a, b):
        conflicts = gate.store.site_presence.conflicts(since=T0, expiry_h=EXPIRY_H)
        assert [(c.subject_hash, c.first_event_id, c.second_event_id) for c in conflicts] == [
            (hashed(1), first.id, second.id)
        ]
        assert (conflicts[0].first_gate_id, conflicts[0].second_gate_id) == ("gate-1", "gate-2")
    # Nothing was rewritten: both entries stand in the logs, flagged.
    assert a.store.event_by_id(first.id).warning == SITE_VIEW_STALE
    assert b.store.event_by_id(second.id).warning == SITE_VIEW_STALE
    assert a.inside() == b.inside() == {(hashed(1), second.id), (hashed(2), other.id)}


@pytest.mark.parametrize("persistent", [True, False])
def test_healing_delivers_in_any_order_with_duplicates_and_converges(tmp_path, persistent):
    clock, gates, broker = make_site(tmp_path, ("gate-1", "gate-2", "gate-3"))
    broker.persistent = persistent
    broker.cut.update({"gate-2", "gate-3"})
    step(clock, broker)
    for n in range(1, 30):
        gate = gates[f"gate-{n % 3 + 1}"]
        gate.scan(n % 7)
        clock.advance(3)
    broker.cut.clear()
    clock.advance(10)
    broker.pump(random.Random(7), duplicates=True)
    insides = [gate.inside() for gate in gates.values()]
    assert insides[0] == insides[1] == insides[2]
    assert insides[0] == site_truth(gates, now=clock.now())
    assert sum(gate.channel.counts["duplicate"] for gate in gates.values()) > 0
    assert all(gate.channel.counts["rewind"] for gate in gates.values())


def test_a_gate_taken_out_of_the_site_is_no_longer_waited_for(tmp_path):
    clock, gates, broker = make_site(tmp_path)
    a = gates["gate-1"]
    broker.cut.add("gate-2")
    step(clock, broker)
    assert a.scan(1)[0].warning == SITE_VIEW_STALE
    assert a.store.site_presence.forget_gate("gate-2")
    step(clock, broker)
    assert a.scan(2)[0].warning is None


def test_site_occupancy_reads_a_subjects_events_by_its_index(tmp_path):
    with Store.open(tmp_path / "gate.db", boot_id="b") as store:
        plan = " ".join(
            str(row[3])
            for row in store.connection.conn.execute(
                f"EXPLAIN QUERY PLAN {SITE_OCCUPANCY_SQL}", ("2026", "9999")
            )
        )
    assert "idx_events_subject_hash" in plan
    assert "idx_events_decision_reason" not in plan


def test_a_gate_heard_for_the_first_time_gets_the_presence_it_missed(tmp_path):
    clock, gates, broker = make_site(tmp_path, ("gate-1",))
    _, entry = gates["gate-1"].scan(1)
    step(clock, broker)
    newcomer = SimGate("gate-2", tmp_path, clock, PolicyRules())
    gates["gate-2"] = newcomer
    step(clock, broker)
    assert newcomer.inside() == {(hashed(1), entry.id)}
    assert newcomer.scan(1)[0].direction == "out"


@pytest.mark.parametrize(
    ("behind_s", "still_inside"),
    [
        (10, False),  # a skew shorter than the walk between gates: the exit sorts after
        (90, True),  # longer: the exit sorts first (documented); every gate agrees
    ],
)
def test_clock_skew_between_gates_never_splits_the_site(tmp_path, behind_s, still_inside):
    """Gate-2's clock runs ``behind_s`` behind gate-1's. A visitor enters at
    gate-1 and leaves 20 s later by gate-2: gate-2 knows them inside and
    decides an exit. The site's order is the recorded times', so a skew
    longer than the walk puts the exit first and the visitor stays "inside"
    until presence expires; whatever the skew, every gate gives the same
    answer as the merged log."""
    clocks = {
        "gate-1": FakeClock(wall=T0),
        "gate-2": FakeClock(wall=T0 - timedelta(seconds=behind_s)),
    }
    gates = {g: SimGate(g, tmp_path, clocks[g], PolicyRules()) for g in clocks}
    broker = LoopbackBroker(gates)

    def advance(seconds: float) -> None:
        for clock in clocks.values():
            clock.advance(seconds)
        broker.pump()

    advance(1)
    entry, _ = gates["gate-1"].scan(1)
    advance(20)
    leaving, _ = gates["gate-2"].scan(1)
    advance(10)

    assert (entry.direction, leaving.direction) == ("in", "out")
    truth = site_truth(gates, now=clocks["gate-1"].now())
    assert gates["gate-1"].inside() == gates["gate-2"].inside() == truth
    assert bool(truth) is still_inside
