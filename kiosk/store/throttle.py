"""One throttle for every limit on repeated requests: failed logins and declarations.

A key (``ip:<address>``, ``acct:<name>@<address>``, ``declare:<address>``)
counts hits. Each hit is one UPSERT that also takes the decision: it counts
the hit only if the key is not blocked now, computed in SQL from the stored
count and times against the caller's :class:`ThrottleRule`, and RETURNING
says whether it did. Forty requests at once therefore get exactly as many
admissions as the rule allows, never a few more between a check and a count;
the count survives a restart of the web process.

The table stays small: keys are bounded (:data:`MAX_KEY_CHARS`), a hit that
creates a row first deletes rows nobody has hit for :data:`KEEP` (longer
than any wait or window) and then, past ``max_rows``, the least recently hit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from kiosk.store.connection import Connection
from kiosk.store.values import ThrottleCount, from_text, to_text

MAX_KEY_CHARS = 120
"""Longest key stored: a prefix, a 40-character user name and an IPv6 address fit."""
KEEP = timedelta(days=1)
"""Rows whose last hit is older than this are deleted: no rule waits this long."""
MAX_ROWS = 10_000
"""The table's cap (about a megabyte); past it the least recently hit rows go first."""
ADDRESS_MAX_CHARS = 64
"""An address longer than this (never a real IP address) is cut to this length."""


@dataclass(frozen=True)
class ThrottleRule:
    """When a key refuses its next hit.

    ``waits`` are steps ``(hits, wait)`` in increasing order of both: once a
    key has counted ``hits`` hits, a hit sooner than ``wait`` after its last
    counted hit is refused (and not counted). With a ``window``, a count whose
    first hit is ``window`` or more ago starts again at 1, so a key is never
    blocked past its window's end.
    """

    waits: tuple[tuple[int, timedelta], ...]
    window: timedelta | None = None

    def __post_init__(self) -> None:
        hits = [h for h, _ in self.waits]
        waits = [w for _, w in self.waits]
        if not self.waits or hits[0] < 1 or hits != sorted(set(hits)) or waits != sorted(waits):
            raise ValueError("throttle waits must grow with hits, from at least 1 hit")
        if max(waits[-1], self.window or timedelta(0)) > KEEP:
            raise ValueError("no throttle wait or window may outlast the rows kept")

    def retry_after(self, count: ThrottleCount, now: datetime) -> timedelta:
        """How long until ``count``'s key admits a hit again (zero: now)."""
        if self.window is not None and count.first_at <= now - self.window:
            return timedelta(0)
        remaining = timedelta(0)
        for hits, wait in self.waits:
            if count.hits >= hits:
                remaining = max(remaining, count.last_at + wait - now)
        if self.window is not None:
            remaining = min(remaining, count.first_at + self.window - now)
        return max(remaining, timedelta(0))


@dataclass(frozen=True)
class ThrottleVerdict:
    """Whether a hit was admitted (and counted under every key), else how long to wait."""

    admitted: bool
    retry_after: timedelta = timedelta(0)


def bounded_address(address: str | None) -> str:
    """A client address as a key part: never empty, never long."""
    return (address or "?")[:ADDRESS_MAX_CHARS]


@dataclass(frozen=True)
class LoginKeys:
    """A login's keys: per address, and per account at that address.

    Never per account alone, so a guesser elsewhere cannot lock the owner out.
    """

    address: str
    account: str | None
    """None for an invalid user name: nothing of it is stored."""

    @property
    def all(self) -> list[str]:
        return [self.address] + ([] if self.account is None else [self.account])


def login_keys(name: str | None, address: str | None) -> LoginKeys:
    """The keys of a login by ``name`` (a valid user name, or None) from ``address``."""
    at = bounded_address(address)
    return LoginKeys(f"ip:{at}", None if name is None else f"acct:{name.casefold()}@{at}")


def forget_account(conn: sqlite3.Connection, user_id: int) -> None:
    """Delete an account's login counts, and those of the addresses it was
    counted at, in the caller's transaction: a lockout never outlasts a reset."""
    prefix = "'acct:' || lower(u.name) || '@'"
    of_account = (
        f"FROM throttle AS t JOIN users AS u ON u.id = ? "
        f"WHERE substr(t.key, 1, length({prefix})) = {prefix}"
    )
    conn.execute(
        "DELETE FROM throttle WHERE key IN "
        f"(SELECT 'ip:' || substr(t.key, instr(t.key, '@') + 1) {of_account})",
        (user_id,),
    )
    conn.execute(f"DELETE FROM throttle WHERE key IN (SELECT t.key {of_account})", (user_id,))


class ThrottleRepository:
    """The throttle table, over the store's one connection."""

    def __init__(self, db: Connection, *, max_rows: int = MAX_ROWS) -> None:
        self._db = db
        self._max_rows = max_rows

    def admit(self, keys: Sequence[str], rule: ThrottleRule, *, at: datetime) -> ThrottleVerdict:
        """Count one hit at ``at`` under every key, unless one of them is blocked.

        One UPSERT counts each key that ``rule`` does not block now and
        RETURNING names them; if any key was blocked, the transaction rolls
        back to before it, so a refused hit counts nowhere.
        """
        keys = list(dict.fromkeys(keys))
        if not keys or any(len(key) > MAX_KEY_CHARS for key in keys):
            raise ValueError(f"a throttle hit needs keys of at most {MAX_KEY_CHARS} characters")
        now = to_text(at)
        window_start = "0000" if rule.window is None else to_text(at - rule.window)
        steps = " OR ".join("(hits >= ? AND last_at_utc > ?)" for _ in rule.waits)
        step_params = [v for hits, wait in rule.waits for v in (hits, to_text(at - wait))]
        fresh = "first_at_utc <= ?"  # the window has passed: the count restarts
        rows = ", ".join("(?, 1, ?, ?)" for _ in keys)
        with self._db.write("count a request") as conn:
            conn.execute("SAVEPOINT throttle_hit")
            counted = conn.execute(
                f"INSERT INTO throttle (key, hits, first_at_utc, last_at_utc) VALUES {rows} "
                "ON CONFLICT (key) DO UPDATE SET "
                f"hits = CASE WHEN {fresh} THEN 1 ELSE hits + 1 END, "
                f"first_at_utc = CASE WHEN {fresh} THEN excluded.first_at_utc "
                "ELSE first_at_utc END, "
                "last_at_utc = excluded.last_at_utc "
                f"WHERE {fresh} OR NOT ({steps}) "
                "RETURNING hits",
                (
                    *(v for key in keys for v in (key, now, now)),
                    window_start,
                    window_start,
                    window_start,
                    *step_params,
                ),
            ).fetchall()
            if len(counted) < len(keys):
                conn.execute("ROLLBACK TO throttle_hit")
                conn.execute("RELEASE throttle_hit")
                stored = self._counts(conn, keys)
                waits = [rule.retry_after(count, at) for count in stored.values()]
                return ThrottleVerdict(False, max(waits, default=timedelta(0)))
            conn.execute("RELEASE throttle_hit")
            if any(hits == 1 for (hits,) in counted):
                self._trim(conn, at)
        return ThrottleVerdict(True)

    def _trim(self, conn: sqlite3.Connection, at: datetime) -> None:
        """Delete rows unhit for :data:`KEEP`, then the least recently hit past the cap.

        Run only when a hit created a row (the only way the table grows), so
        the scan of at most ``max_rows`` small rows is not paid on every hit.
        """
        conn.execute("DELETE FROM throttle WHERE last_at_utc < ?", (to_text(at - KEEP),))
        conn.execute(
            "DELETE FROM throttle WHERE key IN (SELECT key FROM throttle "
            "ORDER BY last_at_utc, key LIMIT max(0, (SELECT count(*) FROM throttle) - ?))",
            (self._max_rows,),
        )

    def refund(self, keys: Sequence[str]) -> None:
        """Take back one admitted hit under each key (it turned out not to count:
        a form with mistakes, a successful login's per-address hit)."""
        if not keys:
            return
        marks = ", ".join("?" for _ in keys)
        with self._db.write("take back a counted request") as conn:
            conn.execute(f"DELETE FROM throttle WHERE hits <= 1 AND key IN ({marks})", tuple(keys))
            conn.execute(f"UPDATE throttle SET hits = hits - 1 WHERE key IN ({marks})", tuple(keys))

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

    @staticmethod
    def _counts(conn: sqlite3.Connection, keys: Sequence[str]) -> dict[str, ThrottleCount]:
        rows = conn.execute(
            "SELECT key, hits, first_at_utc, last_at_utc FROM throttle "
            f"WHERE key IN ({', '.join('?' for _ in keys)})",
            tuple(keys),
        ).fetchall()
        return {r[0]: ThrottleCount(int(r[1]), from_text(r[2]), from_text(r[3])) for r in rows}

    def clear(self, keys: Sequence[str]) -> None:
        """Forget the counts under ``keys`` (a successful login's own account key)."""
        if not keys:
            return
        with self._db.write("clear request counts") as conn:
            conn.execute(
                f"DELETE FROM throttle WHERE key IN ({', '.join('?' for _ in keys)})", tuple(keys)
            )
