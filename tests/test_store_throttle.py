"""The one throttle (failed logins, declarations) on real SQLite files."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import kiosk.store.migrations as migrations
from kiosk.store import MIGRATIONS, Store, ThrottleCount, ThrottleRule

T0 = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
COUNT_ONLY = ThrottleRule(waits=((1_000_000, timedelta(0)),))
"""A rule that never blocks: the hits are only counted."""


def hourly(limit: int) -> ThrottleRule:
    return ThrottleRule(waits=((limit, HOUR),), window=HOUR)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "gate.db", boot_id="boot-a") as opened:
        yield opened


def test_a_hit_is_one_upsert_for_all_its_keys(store: Store) -> None:
    store.throttle_admit(["acct:an@10.0.0.5", "ip:10.0.0.5"], COUNT_ONLY, at=T0)
    statements: list[str] = []
    store.connection.conn.set_trace_callback(statements.append)
    store.throttle_admit(["acct:an@10.0.0.5", "ip:10.0.0.5"], COUNT_ONLY, at=T0)
    store.connection.conn.set_trace_callback(None)
    assert [s.split()[0] for s in statements] == [
        "BEGIN",
        "SAVEPOINT",
        "INSERT",
        "RELEASE",
        "COMMIT",
    ]
    assert "ON CONFLICT" in statements[2]
    assert "RETURNING" in statements[2]


def test_hits_count_up_per_key_until_cleared(store: Store) -> None:
    store.throttle_admit(["user:an", "ip:a"], COUNT_ONLY, at=T0)
    store.throttle_admit(["user:an", "ip:b"], COUNT_ONLY, at=T0 + timedelta(minutes=1))
    counts = store.throttle_counts(["user:an", "ip:a", "ip:b", "ip:c"])
    assert counts == {
        "user:an": ThrottleCount(2, T0, T0 + timedelta(minutes=1)),
        "ip:a": ThrottleCount(1, T0, T0),
        "ip:b": ThrottleCount(1, T0 + timedelta(minutes=1), T0 + timedelta(minutes=1)),
    }
    # Without a window a count never restarts by itself while it is kept.
    store.throttle_admit(["user:an"], COUNT_ONLY, at=T0 + timedelta(hours=23))
    assert store.throttle_counts(["user:an"])["user:an"].hits == 3
    store.throttle_clear(["user:an", "ip:a"])
    assert set(store.throttle_counts(["user:an", "ip:a", "ip:b"])) == {"ip:b"}


def test_a_windowed_count_restarts_once_its_window_has_passed(store: Store) -> None:
    key = ["declare:10.0.0.5"]
    assert store.throttle_admit(key, hourly(2), at=T0).admitted
    assert store.throttle_admit(key, hourly(2), at=T0 + timedelta(minutes=59)).admitted
    assert store.throttle_counts(key)[key[0]] == ThrottleCount(2, T0, T0 + timedelta(minutes=59))
    # exactly one window later, even at the limit
    assert store.throttle_admit(key, hourly(2), at=T0 + HOUR).admitted
    assert store.throttle_counts(key)[key[0]] == ThrottleCount(1, T0 + HOUR, T0 + HOUR)


def test_the_throttle_migration_carries_counts_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gate.db"
    names = [name for name, _ in MIGRATIONS]
    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS[: names.index("0009_throttle")])
    Store.open(path, boot_id="boot-a").close()
    monkeypatch.undo()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executemany(
            "INSERT INTO login_failures (key, failures, last_at_utc) VALUES (?, ?, ?)",
            [
                ("user:an", 6, "2026-01-05T01:05:00.000000Z"),
                ("ip:10.0.0.5", 7, "2026-01-05T01:06:00.000000Z"),
                ("declare:10.0.0.9", 3, "2026-01-05T01:30:00.000000Z"),
                ("declare-since:10.0.0.9", 1, "2026-01-05T01:10:00.000000Z"),
            ],
        )
    finally:
        conn.close()
    with Store.open(path, boot_id="boot-a") as store:
        keys = ["user:an", "ip:10.0.0.5", "declare:10.0.0.9", "declare-since:10.0.0.9"]
        assert store.throttle_counts(keys) == {
            "user:an": ThrottleCount(6, T0 + timedelta(minutes=5), T0 + timedelta(minutes=5)),
            "ip:10.0.0.5": ThrottleCount(7, T0 + timedelta(minutes=6), T0 + timedelta(minutes=6)),
            "declare:10.0.0.9": ThrottleCount(
                3, T0 + timedelta(minutes=10), T0 + timedelta(minutes=30)
            ),
        }
        tables = {
            row[0]
            for row in store.connection.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
        }
    assert "login_failures" not in tables
