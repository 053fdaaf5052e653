"""Issue 14, findings 3, 4 and 7 in the store: the throttle's UPSERT decides,
its keys are bounded, old rows go, the table is capped, a reset forgets.

Real SQLite files in ``tmp_path``; a fake time passed to every hit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kiosk.accounts import add_user, reset_password
from kiosk.store import Store, ThrottleCount, ThrottleRule
from kiosk.store.throttle import KEEP, MAX_KEY_CHARS, ThrottleRepository, login_keys
from kiosk.store.values import to_text
from tests.web import CHEAP_HASHING

T0 = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)
S = timedelta(seconds=1)
LOGINS = ThrottleRule(
    waits=(
        (5, 30 * S),
        (6, 60 * S),
        (7, 120 * S),
        (8, 240 * S),
        (9, 480 * S),
        (10, 900 * S),
    )
)
"""The login page's rule (5 free, then 30 s doubling to 15 min)."""
COUNT_ONLY = ThrottleRule(waits=((1_000_000, timedelta(0)),))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "gate.db", boot_id="boot-a") as opened:
        yield opened


def rows(store: Store) -> list[tuple[str, int]]:
    return [
        (str(key), int(hits))
        for key, hits in store.connection.conn.execute(
            "SELECT key, hits FROM throttle ORDER BY key"
        )
    ]


# ----------------------------------------------------------------------------- 7. atomic


def test_a_blocked_hit_is_refused_by_the_upsert_and_counted_nowhere(store: Store) -> None:
    keys = ["ip:10.0.0.5", "acct:an@10.0.0.5"]
    for i in range(5):
        assert store.throttle_admit(keys, LOGINS, at=T0 + i * S).admitted
    refused = store.throttle_admit([*keys, "acct:binh@10.0.0.5"], LOGINS, at=T0 + 10 * S)
    assert refused.admitted is False
    assert refused.retry_after == 24 * S  # 30 s after the 5th hit, at T0 + 4 s
    # All or nothing: the key that was not blocked did not count either.
    assert rows(store) == [("acct:an@10.0.0.5", 5), ("ip:10.0.0.5", 5)]


def test_the_wait_doubles_from_the_last_counted_hit_to_fifteen_minutes(store: Store) -> None:
    key = ["ip:10.0.0.5"]
    at = T0
    for _ in range(5):
        assert store.throttle_admit(key, LOGINS, at=at).admitted
    waits = []
    for _ in range(8):
        refused = store.throttle_admit(key, LOGINS, at=at + S)
        assert not refused.admitted
        waits.append(refused.retry_after + S)
        at += refused.retry_after + S
        assert store.throttle_admit(key, LOGINS, at=at).admitted
    assert [w.total_seconds() for w in waits] == [30, 60, 120, 240, 480, 900, 900, 900]


def test_parallel_hits_on_separate_connections_admit_exactly_the_free_ones(
    tmp_path: Path,
) -> None:
    """Four connections (as four processes would have), ten threads each: the
    decision is the statement's, so no two hits both see a free slot."""
    path = tmp_path / "gate.db"
    stores = [Store.open(path, boot_id="boot-a") for _ in range(4)]
    admitted: list[bool] = []
    start = threading.Barrier(40)

    def hit(store: Store) -> None:
        start.wait(timeout=30)
        verdict = store.throttle_admit(["ip:10.0.0.5"], LOGINS, at=T0)
        admitted.append(verdict.admitted)

    threads = [threading.Thread(target=hit, args=(stores[i % 4],)) for i in range(40)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sum(admitted) == 5
        assert len(admitted) == 40
        assert rows(stores[0]) == [("ip:10.0.0.5", 5)]
    finally:
        for opened in stores:
            opened.close()


def test_a_windowed_limit_admits_the_limit_per_window(store: Store) -> None:
    hourly = ThrottleRule(waits=((3, timedelta(hours=1)),), window=timedelta(hours=1))
    key = ["declare:10.0.0.9"]
    assert [store.throttle_admit(key, hourly, at=T0 + i * S).admitted for i in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    later = store.throttle_admit(key, hourly, at=T0 + timedelta(minutes=20))
    assert later.retry_after == timedelta(minutes=40)  # from the window's first hit
    assert store.throttle_admit(key, hourly, at=T0 + timedelta(hours=1)).admitted


def test_a_refund_takes_back_one_hit_and_the_last_one_deletes_the_row(store: Store) -> None:
    store.throttle_admit(["ip:a", "ip:b"], COUNT_ONLY, at=T0)
    store.throttle_admit(["ip:a"], COUNT_ONLY, at=T0 + S)
    store.throttle_refund(["ip:a", "ip:b"])
    assert store.throttle_counts(["ip:a", "ip:b"]) == {"ip:a": ThrottleCount(1, T0, T0 + S)}


# ----------------------------------------------------------------------------- 4. bounded


def test_rows_nobody_hit_for_a_day_are_deleted_when_a_row_is_added(store: Store) -> None:
    store.throttle_admit(["ip:old", "ip:recent"], COUNT_ONLY, at=T0)
    store.throttle_admit(["ip:recent"], COUNT_ONLY, at=T0 + KEEP)
    assert rows(store) == [("ip:old", 1), ("ip:recent", 2)]  # no row added: no purge
    store.throttle_admit(["ip:new"], COUNT_ONLY, at=T0 + KEEP + S)
    assert rows(store) == [("ip:new", 1), ("ip:recent", 2)]


def test_the_table_is_capped_and_the_least_recently_hit_go_first(store: Store) -> None:
    capped = ThrottleRepository(store.connection, max_rows=3)
    for i in range(6):
        capped.admit([f"ip:10.0.0.{i}"], COUNT_ONLY, at=T0 + i * S)
    capped.admit(["ip:10.0.0.3"], COUNT_ONLY, at=T0 + 10 * S)  # hit again: now the newest
    capped.admit(["ip:10.0.0.9"], COUNT_ONLY, at=T0 + 11 * S)
    assert [key for key, _ in rows(store)] == ["ip:10.0.0.3", "ip:10.0.0.5", "ip:10.0.0.9"]


def fill(store: Store, n: int) -> None:
    """``n`` rows ``ip:<i>``, the i-th last hit at T0 + i s."""
    with store.connection.write("fill") as conn:
        conn.executemany(
            "INSERT INTO throttle (key, hits, first_at_utc, last_at_utc) VALUES (?, 1, ?, ?)",
            [(f"ip:{i}", to_text(T0 + i * S), to_text(T0 + i * S)) for i in range(n)],
        )


def test_the_store_caps_the_table_at_ten_thousand_rows(store: Store) -> None:
    fill(store, 10_000)
    for i in range(20):
        store.throttle_admit([f"ip:new-{i}"], COUNT_ONLY, at=T0 + timedelta(hours=3))
    (count,) = store.connection.conn.execute("SELECT count(*) FROM throttle").fetchone()
    assert count == 10_000
    keys = dict(rows(store))
    assert "ip:19" not in keys  # the twenty least recently hit went
    assert "ip:20" in keys
    assert "ip:new-19" in keys


def test_a_long_key_is_refused_and_a_long_address_is_cut(store: Store) -> None:
    with pytest.raises(ValueError, match="at most 120 characters"):
        store.throttle_admit(["ip:" + "x" * MAX_KEY_CHARS], COUNT_ONLY, at=T0)
    assert rows(store) == []
    keys = login_keys("an", "x" * 2_000_000).all
    assert max(len(key) for key in keys) <= MAX_KEY_CHARS
    assert login_keys(None, "10.0.0.5").all == ["ip:10.0.0.5"]  # an invalid name: address only


# ----------------------------------------------------------------------------- 3. reset


def test_a_new_password_forgets_the_accounts_lockout_in_its_transaction(store: Store) -> None:
    user = add_user(
        store, "an_le", role="guard", password="old-password-1", at=T0, hashing=CHEAP_HASHING
    )
    for _ in range(6):
        store.throttle_admit(login_keys("AN_LE", "10.0.0.5").all, COUNT_ONLY, at=T0)
        store.throttle_admit(login_keys("an_le", "10.0.0.6").all, COUNT_ONLY, at=T0)
    store.throttle_admit(login_keys("anxle", "10.0.0.7").all, COUNT_ONLY, at=T0)  # not LIKE's "_"
    store.throttle_admit(login_keys("binh", "10.0.0.8").all, COUNT_ONLY, at=T0)
    statements: list[str] = []
    store.connection.conn.set_trace_callback(statements.append)
    reset_password(store, user, "new-password-1", at=T0 + S, hashing=CHEAP_HASHING)
    store.connection.conn.set_trace_callback(None)
    assert rows(store) == [
        ("acct:anxle@10.0.0.7", 1),
        ("acct:binh@10.0.0.8", 1),
        ("ip:10.0.0.7", 1),
        ("ip:10.0.0.8", 1),
    ]
    verbs = [s.split()[0] for s in statements]
    assert verbs == ["BEGIN", "UPDATE", "DELETE", "DELETE", "COMMIT"]
