"""On the hub: every gate's last status, as the gates' retained status
messages (and the broker's wills, "offline") said it.

The hub's process writes a row per status message; the site dashboard reads
them. "Last heard" is when the hub received the message (the hub's clock),
so a gate with a wrong clock still shows when it was last heard.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kiosk.store.connection import Connection
from kiosk.store.values import from_text, to_text


@dataclass(frozen=True)
class GateStatusRow:
    """One gate's status as the hub last received it.

    ``backlog``: events waiting at the gate to be uploaded (None with a
    will); ``camera_ok``/``camera_detail``: the gate's camera by its health
    row (None when the status did not say).
    """

    gate_id: str
    online: bool
    status_at: datetime | None
    backlog: int | None
    camera_ok: bool | None
    camera_detail: str | None
    received_at: datetime


class SiteGatesRepository:
    """The site_gates table, over the store's one connection."""

    def __init__(self, db: Connection) -> None:
        self._db = db

    def save(self, row: GateStatusRow) -> None:
        """Keep ``row`` as its gate's status. A will ("offline") keeps the
        last known backlog and camera: they are what the gate left."""
        with self._db.write("keep a gate's status") as conn:
            conn.execute(
                """
                INSERT INTO site_gates (gate_id, online, status_at_utc, backlog, camera_ok,
                    camera_detail, received_at_utc) VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (gate_id) DO UPDATE SET
                    online = excluded.online,
                    status_at_utc = coalesce(excluded.status_at_utc, status_at_utc),
                    backlog = coalesce(excluded.backlog, backlog),
                    camera_ok = coalesce(excluded.camera_ok, camera_ok),
                    camera_detail = coalesce(excluded.camera_detail, camera_detail),
                    received_at_utc = excluded.received_at_utc
                """,
                (
                    row.gate_id,
                    int(row.online),
                    None if row.status_at is None else to_text(row.status_at),
                    row.backlog,
                    None if row.camera_ok is None else int(row.camera_ok),
                    row.camera_detail,
                    to_text(row.received_at),
                ),
            )

    def all(self) -> list[GateStatusRow]:
        """Every gate's last status, by gate id."""
        rows = self._db.read(
            "read the gates' status",
            "SELECT gate_id, online, status_at_utc, backlog, camera_ok, camera_detail, "
            "received_at_utc FROM site_gates ORDER BY gate_id",
            (),
        )
        return [
            GateStatusRow(
                gate_id=str(gate_id),
                online=bool(online),
                status_at=None if status_at is None else from_text(status_at),
                backlog=None if backlog is None else int(backlog),
                camera_ok=None if camera_ok is None else bool(camera_ok),
                camera_detail=None if camera_detail is None else str(camera_detail),
                received_at=from_text(received_at),
            )
            for gate_id, online, status_at, backlog, camera_ok, camera_detail, received_at in rows
        ]

    def counts_since(self, since: datetime) -> dict[str, tuple[int, int]]:
        """Each gate's events since ``since``: (allowed, refused), by gate id."""
        rows = self._db.read(
            "count each gate's events",
            "SELECT gate_id, sum(decision = 'allow'), sum(decision <> 'allow') FROM events "
            "WHERE at_utc >= ? GROUP BY gate_id",
            (to_text(since),),
        )
        return {
            str(gate): (int(allowed or 0), int(refused or 0)) for gate, allowed, refused in rows
        }
