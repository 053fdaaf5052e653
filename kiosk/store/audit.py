"""The audit log: who did what, when (exports, settings, users, denylist, codes).

A state change and its audit row are one transaction: a repository that
changes state calls :func:`insert_audit` inside its own write block.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from kiosk.errors import StoreError
from kiosk.store.connection import Connection
from kiosk.store.values import AuditEntry, AuditNote, from_text, to_text


class AuditRepository:
    """The audit table, over the store's one connection."""

    def __init__(self, db: Connection) -> None:
        self._db = db

    def audit(
        self,
        *,
        actor: str,
        action: str,
        detail: dict[str, Any],
        at: datetime,
        row_count: int | None = None,
    ) -> int:
        """Record who did what (exports, settings, users, denylist); the new row's id.

        The id is for :meth:`update_audit`: a long export is audited when it
        starts, so that a process killed midway still leaves its row.
        """
        with self._db.write("write the audit log") as conn:
            return insert_audit(
                conn, actor=actor, action=action, detail=detail, at=at, row_count=row_count
            )

    def update_audit(self, audit_id: int, *, detail: dict[str, Any], row_count: int | None) -> None:
        """Replace the detail and row count of the audit row ``audit_id`` (its actor,
        action and time stay): how an export audited at its start ends.

        Raises StoreError if there is no such row.
        """
        with self._db.write("update the audit log") as conn:
            cursor = conn.execute(
                "UPDATE audit SET detail = ?, row_count = ? WHERE id = ?",
                (json.dumps(detail, ensure_ascii=False), row_count, audit_id),
            )
            if cursor.rowcount != 1:
                raise StoreError(f"could not update the audit log: no entry {audit_id}")

    def audit_entries(self, *, limit: int = 200) -> list[AuditEntry]:
        rows = self._db.read(
            "read the audit log",
            "SELECT id, at_utc, actor, action, detail, row_count FROM audit "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            AuditEntry(int(r[0]), from_text(r[1]), r[2], r[3], json.loads(r[4]), r[5]) for r in rows
        ]


def insert_audit(
    conn: sqlite3.Connection,
    *,
    actor: str,
    action: str,
    detail: dict[str, Any],
    at: datetime,
    row_count: int | None = None,
) -> int:
    """Insert one audit row inside the caller's transaction; the new row's id."""
    cursor = conn.execute(
        "INSERT INTO audit (at_utc, actor, action, detail, row_count) VALUES (?, ?, ?, ?, ?)",
        (to_text(at), actor, action, json.dumps(detail, ensure_ascii=False), row_count),
    )
    return int(cursor.lastrowid or 0)


def write_audit(
    conn: sqlite3.Connection,
    note: AuditNote | None,
    *,
    row_count: int | None = None,
    **extra: Any,
) -> None:
    """Write ``note`` (if any) inside the caller's transaction, its detail
    completed with ``extra``: the audit half of a change and its audit row."""
    if note is not None:
        insert_audit(
            conn,
            actor=note.actor,
            action=note.action,
            detail={**note.detail, **extra},
            at=note.at,
            row_count=row_count,
        )
