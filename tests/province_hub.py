"""A site hub's database full of generated events, for the province tests."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kiosk.store import Store
from kiosk.store.values import Event

T0 = datetime(2026, 1, 31, 22, 0, tzinfo=UTC)


def make_events(
    count: int, *, gate_id: str = "gate-1", start: datetime = T0, step_s: float = 1.0
) -> list[Event]:
    """``count`` events of one gate (one boot), ``step_s`` seconds apart."""
    boot = uuid.uuid4().hex
    return [
        Event(
            id=uuid.uuid4().hex,
            boot_id=boot,
            seq=i + 1,
            gate_id=gate_id,
            at=start + timedelta(seconds=i * step_s),
            utc_offset_min=420,
            clock_synced=True,
            direction="in" if i % 2 == 0 else "out",
            decision="allow" if i % 10 else "deny",
            reason="ok" if i % 10 else "expired",
            kind="cccd",
            subject_hash=f"{i % 997:064x}",
            display_name="Nguyễn Văn A",
            masked_id="0010******23",
            id_number="001099012323",
            note="private note",
        )
        for i in range(count)
    ]


def ingest(store: Store, events: list[Event], *, chunk: int = 5000) -> None:
    """Take ``events`` into the hub's site database, as ``gatekiosk hub`` does."""
    for start in range(0, len(events), chunk):
        part = events[start : start + chunk]
        store.site_log.ingest(part[0].gate_id, part)


def hub_with_events(path: Path, count: int, **kwargs: object) -> list[str]:
    """A hub database at ``path`` with ``count`` events; their ids."""
    events = make_events(count, **kwargs)  # type: ignore[arg-type]
    with Store.open(path, boot_id="hub-boot") as store:
        ingest(store, events)
    return [e.id for e in events]


def province_marks(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT id, province_pending FROM events").fetchall())
