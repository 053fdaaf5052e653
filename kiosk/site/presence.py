"""Site-wide presence over MQTT: this gate's entries and exits out, the others' in.

Every gate publishes its allowed entries and exits as *facts* on
``gk/<s>/gate/<g>/presence`` and subscribes to every gate's presence topic.
A fact carries only what anti-passback needs, as compact JSON::

    {"v":1,"id":"<event id>","gate":"g","subject":"<hash>","dir":"in",
     "at":"2026-01-05T01:00:00.000000Z","boot":"<boot id>","seq":7}

Beside facts, a gate publishes a *beat* on the same topic when it has had
nothing to say for ``beat_every_s`` (``{"v":1,"gate":"g","beat":"<utc>"}``):
hearing every gate of the site, itself included (its own messages come back
through the broker), is what keeps the site view fresh
(:meth:`~kiosk.store.site_presence.SitePresenceRepository.fresh_as_of`). A
gate that hears nobody, or that nobody hears, goes stale on every side.

Facts are folded into the store in the site's order key (see
:mod:`kiosk.store.site_presence`): arrival order and duplicates never change
presence. Anything malformed, hostile or sent on another gate's topic is
counted in :attr:`PresenceChannel.counts`, logged without its payload, and
refused; it never raises.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kiosk.clock import Clock
from kiosk.site import SiteError
from kiosk.site.channel import Publication
from kiosk.site.topics import Topics, is_valid_id
from kiosk.store import PresenceFact, Store
from kiosk.store.values import from_text, to_text

log = logging.getLogger(__name__)

VERSION = 1
MAX_PAYLOAD_BYTES = 1024
"""A fact is about 250 bytes; anything much larger is refused unread."""

MAX_SEQ = 2**63 - 1
_HEX_ID = re.compile(r"[0-9a-f]{32}")
_BOOT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_FACT_KEYS = frozenset({"v", "id", "gate", "subject", "dir", "at", "boot", "seq"})
_BEAT_KEYS = frozenset({"v", "gate", "beat"})


class MalformedPresence(SiteError):
    """A presence message this gate refuses; the message names the defect."""


@dataclass(frozen=True)
class Beat:
    """A gate saying it is there, at ``at_utc`` by its own clock."""

    gate_id: str
    at_utc: str


# ----------------------------------------------------------------- the format


def encode_fact(fact: PresenceFact) -> bytes:
    """The compact JSON of ``fact`` (UTF-8)."""
    return _compact(
        {
            "v": VERSION,
            "id": fact.event_id,
            "gate": fact.gate_id,
            "subject": fact.subject_hash,
            "dir": fact.direction,
            "at": fact.at_utc,
            "boot": fact.boot_id,
            "seq": fact.seq,
        }
    )


def encode_beat(gate_id: str, at: datetime) -> bytes:
    return _compact({"v": VERSION, "gate": gate_id, "beat": to_text(at)})


def decode(payload: bytes) -> PresenceFact | Beat:
    """A fact or a beat from ``payload``; raises :class:`MalformedPresence` for
    anything else (never another exception), whatever the bytes."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MalformedPresence(f"too large ({len(payload)} bytes)")
    try:
        document = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedPresence("not JSON") from exc
    if not isinstance(document, dict):
        raise MalformedPresence("not a JSON object")
    if document.get("v") != VERSION or isinstance(document.get("v"), bool):
        raise MalformedPresence("unknown version")
    keys = frozenset(document)
    gate = document.get("gate")
    if not isinstance(gate, str) or not is_valid_id(gate):
        raise MalformedPresence("bad gate id")
    if keys == _BEAT_KEYS:
        return Beat(gate_id=gate, at_utc=_time_text(document["beat"]))
    if keys != _FACT_KEYS:
        raise MalformedPresence("unexpected or missing fields")
    event_id, subject, direction = document["id"], document["subject"], document["dir"]
    boot, seq = document["boot"], document["seq"]
    if not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id):
        raise MalformedPresence("bad event id")
    if not isinstance(subject, str) or not _HEX_ID.fullmatch(subject):
        raise MalformedPresence("bad subject hash")
    if direction not in ("in", "out"):
        raise MalformedPresence("bad direction")
    if not isinstance(boot, str) or not _BOOT_ID.fullmatch(boot):
        raise MalformedPresence("bad boot id")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= MAX_SEQ:
        raise MalformedPresence("bad sequence number")
    return PresenceFact(
        event_id=event_id,
        gate_id=gate,
        subject_hash=subject,
        direction=direction,
        at_utc=_time_text(document["at"]),
        boot_id=boot,
        seq=seq,
    )


def _time_text(value: Any) -> str:
    """``value`` if it is a stored time in its one canonical spelling (so that
    text order stays time order), else MalformedPresence."""
    if not isinstance(value, str) or len(value) != len("2026-01-05T01:00:00.000000Z"):
        raise MalformedPresence("bad time")
    try:
        canonical = to_text(from_text(value))
    except (ValueError, OverflowError) as exc:
        raise MalformedPresence("bad time") from exc
    if canonical != value:
        raise MalformedPresence("bad time")
    return value


def _compact(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=True).encode("ascii")


# ----------------------------------------------------------------- the channel


@dataclass
class _InFlight:
    rowid: int
    sent_mono: float
    acked: bool = False


class PresenceChannel:
    """The presence channel of one gate's sync process (see
    :class:`~kiosk.site.channel.Channel`).

    ``expiry_h``: facts of events older than this are not published (the
    presence they made has expired). ``beat_every_s``: the longest silence
    before a beat; keep it well under ``site.stale_after_s``.
    ``resend_after_s``: a publication not acknowledged by then is offered
    again (a lost connection; receivers drop duplicates). The position up to
    which facts were acknowledged is kept in the database, so a restarted
    process resends only what was not.

    ``gap_s`` (pass ``site.stale_after_s``): a gate heard again after longer
    than this, or for the first time, may have missed this gate's facts (a
    partition, a broker that kept no session for it, a new or rebuilt gate),
    so they are offered again from when it was last heard (or from
    ``expiry_h`` ago). Receivers drop duplicates; nothing depends on the
    broker keeping messages for a gate that is away.
    """

    def __init__(
        self,
        store: Store,
        *,
        site_id: str,
        gate_id: str,
        clock: Clock,
        expiry_h: float,
        beat_every_s: float = 5.0,
        resend_after_s: float = 5.0,
        gap_s: float = 30.0,
    ) -> None:
        self._store = store
        self._topics = Topics(site_id)
        self._gate_id = gate_id
        self._own_topic = self._topics.gate_presence(gate_id)
        self._clock = clock
        self._expiry = timedelta(hours=expiry_h)
        self._beat_every_s = beat_every_s
        self._resend_after_s = resend_after_s
        self._gap_s = gap_s
        self._last_sent_mono: float | None = None
        self._in_flight: dict[str, _InFlight] = {}
        self.counts: Counter[str] = Counter()
        """Messages by what became of them: folded, duplicate, own, beat,
        malformed, wrong-topic, wrong-gate; and ``rewind``: facts offered
        again for a gate heard after a gap."""

    # -- in ---------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        return [self._topics.all_presence]

    def on_message(self, topic: str, payload: bytes) -> None:
        """Fold a fact, or note a beat; count and refuse anything else.

        Raises StoreError only (the database failed): the process decides
        what to do about it, the message is not taken as applied.
        """
        sender = self._sender(topic)
        if sender is None:
            self._refuse("wrong-topic", topic, "not a presence topic of this site")
            return
        try:
            message = decode(payload)
        except MalformedPresence as exc:
            self._refuse("malformed", topic, str(exc))
            return
        if message.gate_id != sender:
            self._refuse("wrong-gate", topic, "names another gate than its topic")
            return
        now = self._clock.now()
        if sender != self._gate_id:
            self._rewind_after_gap(sender, now)
        if isinstance(message, Beat):
            self._store.site_presence.fold([], heard=[sender], at=now)
            self.counts["beat"] += 1
            return
        if sender == self._gate_id:
            # Our own fact back from the broker: proof we hear the site.
            self._store.site_presence.fold([], heard=[sender], at=now)
            self.counts["own"] += 1
            return
        result = self._store.site_presence.fold([message], heard=[sender], at=now)
        found = {"folded": result.added, "duplicate": result.duplicate, "own": result.own}
        self.counts.update({what: n for what, n in found.items() if n})

    def _rewind_after_gap(self, sender: str, now: datetime) -> None:
        last = self._store.site_presence.last_heard().get(sender)
        if last is not None and (now - last).total_seconds() <= self._gap_s:
            return
        since = now - self._expiry if last is None else last - timedelta(seconds=self._gap_s)
        if self._store.site_presence.rewind_published(since):
            self._in_flight.clear()
            self.counts["rewind"] += 1
            log.info("heard gate %s after a gap: offering this gate's facts again", sender)

    def _sender(self, topic: str) -> str | None:
        prefix, suffix = f"{self._topics.site}/gate/", "/presence"
        if not (topic.startswith(prefix) and topic.endswith(suffix)):
            return None
        gate = topic[len(prefix) : -len(suffix)]
        return gate if is_valid_id(gate) else None

    def _refuse(self, what: str, topic: str, why: str) -> None:
        self.counts[what] += 1
        log.warning("refused a presence message on %.120r (%s): %s", topic, what, why)

    # -- out --------------------------------------------------------------

    def publications(self, limit: int) -> list[Publication]:
        """This gate's facts not yet acknowledged (oldest first, at most
        ``limit``, none already in flight unless overdue), then a beat if due."""
        mono = self._clock.monotonic()
        since = self._clock.now() - self._expiry
        waiting = self._store.site_presence.unpublished(
            since=since, limit=limit + len(self._in_flight)
        )
        items: list[Publication] = []
        for rowid, fact in waiting:
            if len(items) >= limit:
                break
            flight = self._in_flight.get(fact.event_id)
            if flight is not None and (
                flight.acked or mono - flight.sent_mono < self._resend_after_s
            ):
                continue
            self._in_flight[fact.event_id] = _InFlight(rowid, mono)
            items.append(Publication(self._own_topic, encode_fact(fact), key=fact.event_id))
        if items:
            self._last_sent_mono = mono
        elif limit > 0 and self._beat_due(mono):
            self._last_sent_mono = mono
            now = self._clock.now()
            beat = encode_beat(self._gate_id, now)
            items.append(Publication(self._own_topic, beat, key=f"beat:{to_text(now)}"))
        return items

    def _beat_due(self, mono: float) -> bool:
        return self._last_sent_mono is None or mono - self._last_sent_mono >= self._beat_every_s

    def published(self, items: list[Publication]) -> None:
        """The broker acknowledged ``items``: move the kept position past every
        fact acknowledged with nothing unacknowledged before it."""
        for item in items:
            flight = self._in_flight.get(item.key)
            if flight is not None:
                flight.acked = True
        ordered = sorted(self._in_flight.items(), key=lambda pair: pair[1].rowid)
        done = 0
        for key, flight in ordered:
            if not flight.acked:
                break
            done = flight.rowid
            del self._in_flight[key]
        if done:
            self._store.site_presence.mark_published(done)

    @property
    def in_flight(self) -> int:
        """Facts published and not yet acknowledged."""
        return sum(not flight.acked for flight in self._in_flight.values())
