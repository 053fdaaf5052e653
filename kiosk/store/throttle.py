"""One throttle for every limit on repeated requests: failed logins and declarations.

A key (``user:<name>``, ``ip:<address>``, ``declare:<address>``) counts hits;
each hit is one UPSERT, so the count survives a restart of the web process
and two requests at once cannot both miss it. What the count means (how long
to wait) is the caller's rule; the store only counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from kiosk.store.connection import Connection
from kiosk.store.values import ThrottleCount, from_text, to_text

_NEVER = "0000"
"""A window start no stored time is at or before: a count that never resets."""


class ThrottleRepository:
    """The throttle table, over the store's one connection."""

    def __init__(self, db: Connection) -> None:
        self._db = db

    def hit(self, keys: Sequence[str], *, at: datetime, window: timedelta | None = None) -> None:
        """Count one hit at ``at`` under each of ``keys``, in one statement.

        With a ``window``, a count whose first hit is ``window`` or more before
        ``at`` starts again at 1 from ``at``; without, counts only grow until
        :meth:`clear`.
        """
        if not keys:
            return
        now = to_text(at)
        window_start = _NEVER if window is None else to_text(at - window)
        rows = ", ".join("(?, 1, ?, ?)" for _ in keys)
        with self._db.write("count a request") as conn:
            conn.execute(
                f"INSERT INTO throttle (key, hits, first_at_utc, last_at_utc) VALUES {rows} "
                "ON CONFLICT (key) DO UPDATE SET "
                "hits = CASE WHEN first_at_utc <= ? THEN 1 ELSE hits + 1 END, "
                "first_at_utc = CASE WHEN first_at_utc <= ? "
                "THEN excluded.first_at_utc ELSE first_at_utc END, "
                "last_at_utc = excluded.last_at_utc",
                (*(v for key in keys for v in (key, now, now)), window_start, window_start),
            )

    def counts(self, keys: Sequence[str]) -> dict[str, ThrottleCount]:
        """The counts under ``keys`` that have any hits, by key."""
        if not keys:
            return {}
        rows = self._db.read(
            "read request counts",
            "SELECT key, hits, first_at_utc, last_at_utc FROM throttle "
            f"WHERE key IN ({', '.join('?' for _ in keys)})",
            tuple(keys),
        )
        return {r[0]: ThrottleCount(int(r[1]), from_text(r[2]), from_text(r[3])) for r in rows}

    def clear(self, keys: Sequence[str]) -> None:
        """Forget the counts under ``keys`` (a successful login)."""
        if not keys:
            return
        with self._db.write("clear request counts") as conn:
            conn.execute(
                f"DELETE FROM throttle WHERE key IN ({', '.join('?' for _ in keys)})", tuple(keys)
            )
