"""The decision table: every rule of kiosk.policy.decide."""

from datetime import UTC, datetime

import pytest

from kiosk.codes.base import Credential, Rejection
from kiosk.policy import GateView, PolicyRules, decide

ENTERED = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
CARD = Credential(kind="cccd", subject_id="079201000123", display_name="Nguyễn Văn An")
PC = Credential(kind="pc-covid", subject_id="QR1", display_name="Trần Thị Bích Ngọc")
PASS = Credential(
    kind="staff-pass", subject_id="staff:NV-1", display_name="Lê Văn Nam", code_id="0a1b2c3d"
)
GARBAGE = Rejection(kind="unrecognised", reason="unrecognised")
BAD_CARD = Rejection(kind="cccd", reason="cccd-bad-date")

OUTSIDE = GateView()
INSIDE = GateView(present_since=ENTERED, occupancy=1)


@pytest.mark.parametrize(
    ("identified", "rules", "view", "expected"),
    [
        # (verdict, direction, reason, warning)
        (CARD, PolicyRules(), OUTSIDE, ("allow", "in", "ok", None)),
        (CARD, PolicyRules(), INSIDE, ("allow", "out", "ok-exit", None)),
        (CARD, PolicyRules(mode="entry"), INSIDE, ("allow", "in", "ok", "antipassback")),
        (
            CARD,
            PolicyRules(mode="entry", antipassback="hard"),
            INSIDE,
            ("deny", "in", "antipassback", None),
        ),
        (CARD, PolicyRules(mode="entry", antipassback="off"), INSIDE, ("allow", "in", "ok", None)),
        (CARD, PolicyRules(mode="exit"), OUTSIDE, ("allow", "out", "ok-exit", None)),
        (
            CARD,
            PolicyRules(mode="exit"),
            GateView(denylisted=True),
            ("allow", "out", "ok-exit", None),
        ),
        (CARD, PolicyRules(), GateView(denylisted=True), ("deny", "in", "denylisted", None)),
        (
            CARD,
            PolicyRules(capacity=10),
            GateView(occupancy=10),
            ("deny", "in", "capacity-full", None),
        ),
        (CARD, PolicyRules(capacity=10), GateView(occupancy=9), ("allow", "in", "ok", None)),
        (CARD, PolicyRules(capacity=0), GateView(occupancy=5000), ("allow", "in", "ok", None)),
        (
            PC,
            PolicyRules(allowed_kinds=frozenset({"cccd"})),
            OUTSIDE,
            ("deny", "in", "kind-not-allowed", None),
        ),
        (GARBAGE, PolicyRules(), OUTSIDE, ("deny", "in", "unrecognised", None)),
        (GARBAGE, PolicyRules(mode="exit"), OUTSIDE, ("deny", "out", "unrecognised", None)),
        (BAD_CARD, PolicyRules(), OUTSIDE, ("deny", "in", "cccd-bad-date", None)),
        # A revoked code is refused as a code that does not verify is: both ways.
        (PASS, PolicyRules(), GateView(revoked=True), ("deny", "in", "sitecode-revoked", None)),
        (PASS, PolicyRules(), INSIDE, ("allow", "out", "ok-exit", None)),
        (
            PASS,
            PolicyRules(),
            GateView(revoked=True, present_since=ENTERED),
            ("deny", "in", "sitecode-revoked", None),
        ),
        (
            PASS,
            PolicyRules(mode="exit"),
            GateView(revoked=True),
            ("deny", "out", "sitecode-revoked", None),
        ),
        (GARBAGE, PolicyRules(), GateView(revoked=True), ("deny", "in", "unrecognised", None)),
    ],
)
def test_decision_table(identified, rules, view, expected):
    decision = decide(identified, rules=rules, view=view)
    assert (decision.verdict, decision.direction, decision.reason, decision.warning) == expected


def test_every_decision_speaks_vietnamese_first_and_english():
    decision = decide(GARBAGE, rules=PolicyRules(), view=OUTSIDE)
    assert decision.message.vi == "Không nhận ra mã QR này"
    assert decision.message.en == "This QR code is not recognised"


def test_soft_antipassback_tells_the_visitor_why():
    decision = decide(CARD, rules=PolicyRules(mode="entry"), view=INSIDE)
    assert decision.allowed
    assert decision.message.en == "This code was used to enter and has not exited"


def test_unknown_parser_reason_falls_back_to_a_message_of_its_family():
    decision = decide(Rejection("cccd", "cccd-something-new"), rules=PolicyRules(), view=OUTSIDE)
    assert decision.message.vi == "Mã QR căn cước không hợp lệ"
    assert decision.message.en == "Invalid ID card QR code"
