"""The gate's decision: a pure function of what was read and what is known.

No clock, no database, no hardware: the scanner reads what the store knows
about the subject into a :class:`GateView` and passes it in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from kiosk.codes.base import (
    KIND_CCCD,
    KIND_DECLARATION,
    KIND_HCERT,
    KIND_PC_COVID,
    KIND_STAFF_PASS,
    REASON_REVOKED,
    Credential,
    Identified,
)
from kiosk.messages import Message, message_for

Mode = Literal["entry", "exit", "both"]
AntiPassback = Literal["off", "soft", "hard"]
Direction = Literal["in", "out"]
Verdict = Literal["allow", "deny"]

ALL_KINDS = frozenset({KIND_DECLARATION, KIND_STAFF_PASS, KIND_CCCD, KIND_PC_COVID, KIND_HCERT})


@dataclass(frozen=True)
class PolicyRules:
    mode: Mode = "both"
    antipassback: AntiPassback = "soft"
    capacity: int = 0
    """Most people inside at once; 0 means no limit."""
    allowed_kinds: frozenset[str] = ALL_KINDS
    """Code kinds the site accepts; identity-only kinds (cccd, pc-covid) are
    unsigned, so a site that wants only verified codes removes them."""


@dataclass(frozen=True)
class GateView:
    """What the store knows that the decision depends on.

    ``present_since`` is the subject's entry time when they are inside
    (presence already expired by the store's rule counts as not inside).
    ``revoked``: a manager revoked the code the site issued (by its
    ``code_id``; a replacement pass has another).
    """

    present_since: datetime | None = None
    occupancy: int = 0
    denylisted: bool = False
    revoked: bool = False


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    direction: Direction
    reason: str
    message: Message
    warning: str | None = None
    """A reason code for an allowed decision that a guard should notice."""

    @property
    def allowed(self) -> bool:
        return self.verdict == "allow"


def _allow(direction: Direction, reason: str, warning: str | None = None) -> Decision:
    message = message_for(warning) if warning else message_for(reason)
    return Decision("allow", direction, reason, message, warning)


def _deny(direction: Direction, reason: str) -> Decision:
    return Decision("deny", direction, reason, message_for(reason))


def decide(identified: Identified, *, rules: PolicyRules, view: GateView) -> Decision:
    """Allow or deny one presentation of one code.

    Exits are always allowed (and logged): nobody is held in. At a gate in
    mode ``both`` the direction follows presence: inside means leaving.
    """
    if not isinstance(identified, Credential):
        return _deny("out" if rules.mode == "exit" else "in", identified.reason)
    if view.revoked:
        # As good as a code that does not verify: refused whichever way it is held up.
        return _deny("out" if rules.mode == "exit" else "in", REASON_REVOKED)

    if rules.mode == "exit" or (rules.mode == "both" and view.present_since is not None):
        direction: Direction = "out"
    else:
        direction = "in"

    if identified.kind not in rules.allowed_kinds:
        return _deny(direction, "kind-not-allowed")
    if direction == "out":
        return _allow("out", "ok-exit")
    if view.denylisted:
        return _deny("in", "denylisted")
    if view.present_since is not None:
        # Only an entry-only gate gets here: the code is already inside.
        if rules.antipassback == "hard":
            return _deny("in", "antipassback")
        if rules.antipassback == "soft":
            return _allow("in", "ok", warning="antipassback")
        return _allow("in", "ok")
    if rules.capacity and view.occupancy >= rules.capacity:
        return _deny("in", "capacity-full")
    return _allow("in", "ok")
