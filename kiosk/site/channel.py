"""The shape of the sync process's parts: each channel subscribes, receives,
and says what to publish; the process owns the one MQTT connection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Publication:
    topic: str
    payload: bytes
    key: str
    retain: bool = False


class Channel(Protocol):
    def subscriptions(self) -> list[str]: ...  # topic filters to subscribe (QoS 1)
    def on_message(self, topic: str, payload: bytes) -> None: ...  # on the sync thread
    def publications(self, limit: int) -> list[Publication]: ...  # what to publish now
    def published(self, items: list[Publication]) -> None: ...  # the broker acknowledged these
