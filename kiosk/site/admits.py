"""A guard's "admit once" made on the hub's web, carried to the gate it names.

The hub's web stores the request with its gate (``admit_requests.gate_id``).
:class:`HubAdmits` (in ``gatekiosk hub``) publishes each pending one, QoS 1,
on ``gk/<site>/to/<gate>/admit``, which only the hub may write and only that
gate may read (the broker's ACL); :class:`GateAdmits` (in ``gatekiosk sync``)
keeps it in the gate's database, once by the hub's id, and the kiosk admits
as it does for a request made on its own web. A request older than
:data:`kiosk.admits.ADMIT_MAX_AGE_S` is neither sent nor taken: the visitor
has gone. Payload, compact JSON::

    {"v":1,"id":"<hub request id>","actor":"guard1","reason":"...","name":null,
     "at":"2026-01-05T01:00:00.000000Z"}

The request's status on the hub's page stays "waiting" until it expires;
the admission itself reaches the hub's log with the other events.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from kiosk.admits import ADMIT_MAX_AGE_S
from kiosk.clock import Clock
from kiosk.errors import GateError
from kiosk.site.channel import Publication
from kiosk.site.topics import Topics, check_gate_id
from kiosk.store import Store
from kiosk.store.values import from_text, to_text

log = logging.getLogger(__name__)

VERSION = 1
MAX_PAYLOAD_BYTES = 2048
MAX_TEXT = 500


def encode_admit(request_id: int, actor: str, reason: str, name: str | None, at: datetime) -> bytes:
    body = {"v": VERSION, "id": str(request_id), "actor": actor, "reason": reason, "name": name}
    body["at"] = to_text(at)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_admit(payload: bytes) -> dict[str, Any] | None:
    """The request's fields, or None for anything malformed."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        body = json.loads(payload.decode("utf-8"))
        at = from_text(body["at"])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None
    if (
        not isinstance(body, dict)
        or body.get("v") != VERSION
        or set(body) != {"v", "id", "actor", "reason", "name", "at"}
    ):
        return None
    texts = (body["id"], body["actor"], body["reason"])
    if not all(isinstance(t, str) and 0 < len(t) <= MAX_TEXT for t in texts):
        return None
    if body["name"] is not None and not (
        isinstance(body["name"], str) and len(body["name"]) <= MAX_TEXT
    ):
        return None
    return {**body, "at": at}


class HubAdmits:
    """The hub's side: pending requests naming a gate, out to that gate."""

    def __init__(self, store: Store, *, topics: Topics, clock: Clock) -> None:
        self._store = store
        self._topics = topics
        self._clock = clock
        self._sent: set[str] = set()

    def subscriptions(self) -> list[str]:
        return []

    def on_message(self, topic: str, payload: bytes) -> None:
        """Subscribes to nothing."""

    def publications(self, limit: int) -> list[Publication]:
        requests = self._store.site.admits_for_gates(
            now=self._clock.now(), max_age_s=ADMIT_MAX_AGE_S
        )
        offers: list[Publication] = []
        for request in requests:
            key = f"admit:{request.id}"
            if key in self._sent or request.gate_id is None or len(offers) >= limit:
                continue
            payload = encode_admit(
                request.id,
                request.actor,
                request.reason,
                request.display_name,
                request.requested_at,
            )
            topic = f"{self._topics.to_gate(check_gate_id(request.gate_id))}/admit"
            offers.append(Publication(topic, payload, key))
            self._sent.add(key)  # offered; forgotten again if the broker does not take it
        return offers

    def published(self, items: list[Publication]) -> None:
        """The broker has them; the gate takes each once."""


class GateAdmits:
    """The gate's side: the hub's requests for this gate into its database."""

    def __init__(self, store: Store, *, topics: Topics, gate_id: str, clock: Clock) -> None:
        self._store = store
        self._topic = f"{topics.to_gate(gate_id)}/admit"
        self._clock = clock
        self.refused = 0

    def subscriptions(self) -> list[str]:
        return [self._topic]

    def on_message(self, topic: str, payload: bytes) -> None:
        body = decode_admit(payload)
        if body is None:
            self.refused += 1
            log.warning("refused a malformed admit request from the hub")
            return
        if self._clock.now() - body["at"] > timedelta(seconds=ADMIT_MAX_AGE_S):
            return  # the visitor has gone
        try:
            self._store.site.receive_admit(
                remote_id=f"hub:{body['id']}",
                actor=body["actor"],
                reason=body["reason"],
                display_name=body["name"],
                at=body["at"],
            )
        except GateError as exc:
            log.error("could not keep the hub's admit request: %s", exc)

    def publications(self, limit: int) -> list[Publication]:
        return []

    def published(self, items: list[Publication]) -> None:
        """A gate publishes no requests."""
