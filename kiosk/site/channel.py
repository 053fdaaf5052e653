"""What the site's processes are built from: channels of messages over one MQTT connection.

``gatekiosk sync`` (on a gate) and ``gatekiosk hub`` each own one MQTT
connection and run one loop; what travels over it comes from channels (the
events going up, documents coming down, presence between gates). The
process subscribes to every channel's topics, hands each received message to
the channel that asked for it, asks each channel what to publish when there
is room, and tells it when the broker has taken a publication (PUBACK).

Every call is made on the process's own loop thread, never on the MQTT
library's network thread, so a channel may use the database freely.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Publication:
    """One message to publish (QoS 1). ``key`` names it for its channel (a batch's
    first event id, a document's kind and version); the process never reads it."""

    topic: str
    payload: bytes
    key: str
    retain: bool = False


class Channel(Protocol):
    def subscriptions(self) -> list[str]:
        """Topic filters to subscribe to (QoS 1), at every (re)connection."""
        ...

    def on_message(self, topic: str, payload: bytes) -> None:
        """A message on one of this channel's subscriptions; may write the database."""
        ...

    def publications(self, limit: int) -> list[Publication]:
        """What to publish now, at most ``limit`` messages (may be empty)."""
        ...

    def published(self, items: list[Publication]) -> None:
        """The broker acknowledged these (PUBACK): not yet their receiver."""
        ...
