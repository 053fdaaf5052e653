"""What the sync process on a gate (and the hub's) is built from: channels.

Each channel says what it subscribes to, takes the messages that arrive,
and says what to publish; the process owns the MQTT connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Channel(Protocol):
    # topic filters to subscribe (QoS 1)
    def subscriptions(self) -> list[str]: ...

    # called on the sync thread; may write the DB
    def on_message(self, topic: str, payload: bytes) -> None: ...

    # what to publish now (may be empty)
    def publications(self, limit: int) -> list[Publication]: ...

    # broker acknowledged these (PUBACK)
    def published(self, items: list[Publication]) -> None: ...


@dataclass(frozen=True)
class Publication:
    topic: str
    payload: bytes
    key: str
    retain: bool = False
