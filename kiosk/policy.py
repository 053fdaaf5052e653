"""The gate's decision: a pure function of what was read and what is known.

No clock, no database, no hardware: the scanner reads what the store knows
about the subject into a :class:`GateView` and passes it in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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
StaleAntiPassback = Literal["local", "soft", "deny"]
Direction = Literal["in", "out"]
Verdict = Literal["allow", "deny"]

ALL_KINDS = frozenset({KIND_DECLARATION, KIND_STAFF_PASS, KIND_CCCD, KIND_PC_COVID, KIND_HCERT})

SITE_VIEW_STALE = "site-view-stale"
"""The warning every decision on a stale site view carries (kept in the log)."""
ANTIPASSBACK_STALE = "antipassback-stale"
"""The warning of an entry allowed, on a stale site view, to someone this gate believes inside."""
ANTIPASSBACK_UNVERIFIED = "antipassback-unverified"
"""An entry refused because anti-passback cannot be checked site-wide (``deny`` when stale)."""
CAPACITY_SHARE_USED = "capacity-share-used"
"""An entry refused because, on a stale site view, this gate admitted its share of the headroom."""
STALE_WARNINGS = frozenset({SITE_VIEW_STALE, ANTIPASSBACK_STALE})


@dataclass(frozen=True)
class PolicyRules:
    mode: Mode = "both"
    antipassback: AntiPassback = "soft"
    capacity: int = 0
    """Most people inside at once; 0 means no limit."""
    allowed_kinds: frozenset[str] = ALL_KINDS
    """Code kinds the site accepts; identity-only kinds (cccd, pc-covid) are
    unsigned, so a site that wants only verified codes removes them."""
    antipassback_when_stale: StaleAntiPassback = "soft"
    """Anti-passback while the site view is stale: ``local`` decides on what
    this gate knows, ``soft`` allows and warns, ``deny`` refuses entries."""
    entry_gates: int = 1
    """How many gates of the site admit entries: under a stale site view each
    may admit only this share of the headroom it last knew."""


@dataclass(frozen=True)
class GateView:
    """What the store knows that the decision depends on.

    ``present_since`` is the subject's entry time when they are inside
    (presence already expired by the store's rule counts as not inside).
    ``revoked``: a manager revoked the code the site issued (by its
    ``code_id``; a replacement pass has another).

    ``site_stale``: this gate has not heard every gate of its site for longer
    than ``site.stale_after_s``, so presence and occupancy are what it knew
    then plus its own events. ``occupancy_at_fresh`` is the occupancy it knew
    at that moment (its own entries since left out) and
    ``entries_since_fresh`` the entries it admitted since: the capacity share
    is counted from them. A gate not in a site is never stale.
    """

    present_since: datetime | None = None
    occupancy: int = 0
    denylisted: bool = False
    revoked: bool = False
    site_stale: bool = False
    occupancy_at_fresh: int = 0
    entries_since_fresh: int = 0


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
    mode ``both`` the direction follows presence: inside means leaving. A
    decision on a stale site view carries a warning that says so
    (:data:`STALE_WARNINGS`); its message stays the decision's own.
    """
    decision = _decide(identified, rules=rules, view=view)
    if not view.site_stale:
        return decision
    warning = ANTIPASSBACK_STALE if decision.warning == "antipassback" else SITE_VIEW_STALE
    return replace(decision, warning=warning)


def stale_share_left(rules: PolicyRules, view: GateView) -> int:
    """How many more entries this gate may admit on its stale site view: its
    share of the headroom it last knew, less the entries it admitted since.

    Each of ``rules.entry_gates`` gates admits at most
    ``floor((capacity - occupancy_at_fresh) / entry_gates)``, so together
    they never pass the capacity while none hears the others.
    """
    headroom = max(0, rules.capacity - view.occupancy_at_fresh)
    return headroom // max(1, rules.entry_gates) - view.entries_since_fresh


def _decide(identified: Identified, *, rules: PolicyRules, view: GateView) -> Decision:
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
    antipassback = rules.antipassback
    if view.site_stale and antipassback != "off":
        if rules.antipassback_when_stale == "deny":
            # Whether they are inside by another gate cannot be known now.
            return _deny("in", ANTIPASSBACK_UNVERIFIED)
        if rules.antipassback_when_stale == "soft":
            antipassback = "soft"
    if view.present_since is not None:
        # Only an entry-only gate gets here: the code is already inside.
        if antipassback == "hard":
            return _deny("in", "antipassback")
        if antipassback == "soft":
            return _allow("in", "ok", warning="antipassback")
        return _allow("in", "ok")
    if rules.capacity and view.occupancy >= rules.capacity:
        return _deny("in", "capacity-full")
    if rules.capacity and view.site_stale and stale_share_left(rules, view) <= 0:
        return _deny("in", CAPACITY_SHARE_USED)
    return _allow("in", "ok")
