"""The event store on real SQLite files: durability, ordering, presence, failure."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.errors import StoreError
from kiosk.export import iter_store_csv
from kiosk.store import MIGRATIONS, Event, EventFilter, KioskHealth, NewEvent, SiteCode, Store

T0 = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)  # 08:00 in Hanoi
BOOT_A = "boot-a"
BOOT_B = "boot-b"
ALICE = "a1" * 32
BOB = "b2" * 32


def scan(
    *,
    at: datetime = T0,
    direction: str = "in",
    decision: str = "allow",
    reason: str = "ok",
    subject_hash: str | None = ALICE,
    **overrides: object,
) -> NewEvent:
    event = NewEvent(
        gate_id="gate-1",
        at=at,
        utc_offset_min=420,
        clock_synced=True,
        direction=direction,
        decision=decision,
        reason=reason,
        kind="cccd",
        subject_hash=subject_hash,
        display_name="Nguyễn Văn A",
        masked_id="0010******23",
    )
    return replace(event, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "gate.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store.open(db_path, boot_id=BOOT_A) as opened:
        yield opened


@contextlib.contextmanager
def other_connection(path: Path, **kwargs: object) -> Iterator[sqlite3.Connection]:
    """A second, independent connection, as the admin web process would hold."""
    conn = sqlite3.connect(path, isolation_level=None, **kwargs)  # type: ignore[call-overload]
    try:
        yield conn
    finally:
        conn.close()


def count_rows(path: Path, table: str) -> int:
    with other_connection(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


# --------------------------------------------------------------------------- opening


def test_open_creates_parent_directory_and_file(db_path: Path) -> None:
    assert not db_path.parent.exists()
    with Store.open(db_path, boot_id=BOOT_A):
        assert db_path.is_file()


def test_open_sets_wal_full_sync_busy_timeout_and_foreign_keys(db_path: Path) -> None:
    with Store.open(db_path, boot_id=BOOT_A, busy_timeout_ms=1234) as store:
        conn = store.connection.conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 1234
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_wal_mode_is_persistent_in_the_file(store: Store, db_path: Path) -> None:
    with other_connection(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrations_are_recorded_in_order(store: Store) -> None:
    assert store.applied_migrations() == [name for name, _ in MIGRATIONS]


def test_reopening_applies_no_migration_twice(db_path: Path) -> None:
    Store.open(db_path, boot_id=BOOT_A).close()
    with other_connection(db_path) as conn:
        first = conn.execute("SELECT name, applied_at FROM migrations").fetchall()
    with Store.open(db_path, boot_id=BOOT_A) as store:
        assert store.applied_migrations() == [name for name, _ in MIGRATIONS]
        assert store.integrity_ok()
    with other_connection(db_path) as conn:
        assert conn.execute("SELECT name, applied_at FROM migrations").fetchall() == first


def test_schema_has_the_documented_tables_and_indexes(store: Store, db_path: Path) -> None:
    with other_connection(db_path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"events", "presence", "denylist", "kiosk_health", "settings_meta", "migrations"} <= (
        tables
    )
    assert {
        "idx_events_at_utc",
        "idx_events_subject_hash",
        "idx_events_decision_reason",
    } <= indexes


def test_schema_rejects_unknown_direction_and_decision(store: Store, db_path: Path) -> None:
    row = (
        "x",
        "gate-1",
        "2026-01-05T01:00:00.000000Z",
        420,
        BOOT_A,
        1,
        1,
        "sideways",
        "allow",
        "ok",
        "cccd",
    )
    sql = (
        "INSERT INTO events (id, gate_id, at_utc, utc_offset_min, boot_id, seq, clock_synced, "
        "direction, decision, reason, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    with other_connection(db_path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute(sql, row)
        bad_decision = (*row[:7], "in", "maybe", *row[9:])
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute(sql, bad_decision)


def test_new_event_refuses_naive_time_and_unknown_values() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        scan(at=datetime(2026, 1, 5, 8, 0))
    with pytest.raises(ValueError, match="direction"):
        scan(direction="sideways")
    with pytest.raises(ValueError, match="decision"):
        scan(decision="maybe")


def test_open_on_a_directory_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot"):
        Store.open(tmp_path, boot_id=BOOT_A)


# --------------------------------------------------------------------------- record


def test_record_numbers_events_per_boot(store: Store) -> None:
    seqs = [store.record(scan(at=T0 + timedelta(seconds=i))).seq for i in range(3)]
    assert seqs == [1, 2, 3]


def test_sequence_continues_after_reopen_within_one_boot(db_path: Path) -> None:
    with Store.open(db_path, boot_id=BOOT_A) as store:
        store.record(scan())
        store.record(scan())
    with Store.open(db_path, boot_id=BOOT_A) as store:
        assert store.record(scan()).seq == 3


def test_sequence_restarts_at_one_for_a_new_boot(db_path: Path) -> None:
    with Store.open(db_path, boot_id=BOOT_A) as store:
        store.record(scan())
        store.record(scan())
    with Store.open(db_path, boot_id=BOOT_B) as store:
        event = store.record(scan())
    assert (event.boot_id, event.seq) == (BOOT_B, 1)


def test_boot_id_defaults_to_the_kernels(db_path: Path) -> None:
    kernel = Path("/proc/sys/kernel/random/boot_id")
    with Store.open(db_path) as store:
        assert store.boot_id == kernel.read_text().strip()


def test_event_ids_are_unique(store: Store) -> None:
    ids = {store.record(scan()).id for _ in range(50)}
    assert len(ids) == 50


def test_recorded_event_carries_every_field(store: Store) -> None:
    new = scan(warning="antipassback", override=True, clock_synced=False, utc_offset_min=-300)
    event = store.record(new)
    assert isinstance(event, Event)
    assert event.at == T0
    assert (event.warning, event.override, event.clock_synced, event.utc_offset_min) == (
        "antipassback",
        True,
        False,
        -300,
    )
    assert store.recent_events(1) == [event]


def test_record_is_committed_and_visible_to_another_connection_on_return(
    store: Store, db_path: Path
) -> None:
    event = store.record(scan())
    with other_connection(db_path) as conn:
        row = conn.execute("SELECT boot_id, seq, at_utc FROM events WHERE id = ?", (event.id,))
        assert row.fetchone() == (BOOT_A, 1, "2026-01-05T01:00:00.000000Z")
    assert not store.connection.conn.in_transaction


def test_time_is_stored_as_fixed_width_utc_text(store: Store, db_path: Path) -> None:
    hanoi = T0.astimezone(datetime.fromisoformat("2026-01-05T08:00:00+07:00").tzinfo)
    store.record(scan(at=hanoi + timedelta(microseconds=7)))
    with other_connection(db_path) as conn:
        (at_utc,) = conn.execute("SELECT at_utc FROM events").fetchone()
    assert at_utc == "2026-01-05T01:00:00.000007Z"


def test_id_number_is_stored_only_when_given(store: Store, db_path: Path) -> None:
    store.record(scan())
    store.record(scan(id_number="001099012345"))
    with other_connection(db_path) as conn:
        rows = conn.execute("SELECT id_number FROM events ORDER BY seq").fetchall()
    assert rows == [(None,), ("001099012345",)]


def test_record_raises_store_error_while_another_process_holds_the_write_lock(
    db_path: Path,
) -> None:
    with Store.open(db_path, boot_id=BOOT_A, busy_timeout_ms=50) as store:
        store.record(scan())
        with other_connection(db_path) as web:
            web.execute("BEGIN IMMEDIATE")
            try:
                with pytest.raises(StoreError, match="locked") as raised:
                    store.record(scan(subject_hash=BOB))
            finally:
                web.execute("ROLLBACK")
        assert ALICE not in str(raised.value)
        assert not store.connection.conn.in_transaction
        assert count_rows(db_path, "events") == 1
        assert count_rows(db_path, "presence") == 1
        # The lock is gone: the store works again, and the failed attempt used no number.
        assert store.record(scan(subject_hash=BOB)).seq == 2


def test_failed_insert_rolls_back_and_leaves_nothing_half_written(
    store: Store, db_path: Path
) -> None:
    """A presence write that fails after the event insert must take the event with it."""
    with other_connection(db_path) as conn:
        conn.execute(
            "CREATE TRIGGER refuse_presence BEFORE INSERT ON presence "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    with pytest.raises(StoreError, match="disk on fire"):
        store.record(scan())
    assert not store.connection.conn.in_transaction
    assert count_rows(db_path, "events") == 0


def test_record_on_a_read_only_database_raises_store_error(db_path: Path) -> None:
    Store.open(db_path, boot_id=BOOT_A).close()
    with Store.open(db_path, boot_id=BOOT_A, read_only=True) as store:
        with pytest.raises(StoreError, match="readonly"):
            store.record(scan())
        assert store.recent_events() == []


def test_read_only_open_of_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database at"):
        Store.open(tmp_path / "absent.db", read_only=True)
    assert not (tmp_path / "absent.db").exists()


def test_store_error_after_close(db_path: Path) -> None:
    store = Store.open(db_path, boot_id=BOOT_A)
    store.close()
    store.close()
    with pytest.raises(StoreError):
        store.record(scan())


def test_two_stores_on_one_file_share_one_sequence_per_boot(db_path: Path) -> None:
    """The kiosk and the web (a guard's override) may both record within one boot."""
    with Store.open(db_path, boot_id=BOOT_A) as kiosk, Store.open(db_path, boot_id=BOOT_A) as web:
        seqs = [s.record(scan()).seq for s in (kiosk, web, kiosk, web)]
    assert seqs == [1, 2, 3, 4]


def test_threads_sharing_a_store_get_distinct_sequence_numbers(store: Store) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        events = list(pool.map(lambda i: store.record(scan(subject_hash=f"{i:064x}")), range(40)))
    assert sorted(e.seq for e in events) == list(range(1, 41))
    assert store.occupancy(now=T0, expiry_h=1) == 40


offsets = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=offsets
)


@settings(
    max_examples=25,
    deadline=None,
    # Each example opens its own uniquely named file, so sharing tmp_path is safe.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ats=st.lists(instants, min_size=1, max_size=8))
def test_stored_text_order_is_time_order(tmp_path: Path, ats: list[datetime]) -> None:
    path = tmp_path / f"{uuid.uuid4().hex}.db"
    with Store.open(path, boot_id=BOOT_A) as store:
        ids = {store.record(scan(at=at)).id: at for at in ats}
        found = store.events_between(min(ats), max(ats) + timedelta(microseconds=1))
    assert {e.id for e in found} == set(ids)  # the window's bounds compare as times
    with other_connection(path) as conn:
        by_text = [ids[row[0]] for row in conn.execute("SELECT id FROM events ORDER BY at_utc")]
    assert by_text == sorted(ats)


# --------------------------------------------------------------------------- presence


def test_allowed_entry_creates_presence(store: Store) -> None:
    event = store.record(scan())
    presence = store.presence_of(ALICE, now=T0, expiry_h=12)
    assert presence is not None
    assert (presence.entered_at, presence.event_id, presence.gate_id) == (T0, event.id, "gate-1")
    assert presence.masked_id == "0010******23"
    assert store.occupancy(now=T0, expiry_h=12) == 1


def test_second_entry_refreshes_presence_without_double_counting(store: Store) -> None:
    store.record(scan())
    later = store.record(scan(at=T0 + timedelta(hours=1), warning="antipassback"))
    presence = store.presence_of(ALICE, now=T0 + timedelta(hours=1), expiry_h=12)
    assert presence is not None
    assert presence.event_id == later.id
    assert store.occupancy(now=T0 + timedelta(hours=1), expiry_h=12) == 1


def test_allowed_exit_removes_presence(store: Store) -> None:
    store.record(scan())
    store.record(scan(subject_hash=BOB))
    store.record(scan(at=T0 + timedelta(minutes=5), direction="out"))
    assert store.presence_of(ALICE, now=T0, expiry_h=12) is None
    assert store.occupancy(now=T0, expiry_h=12) == 1


def test_denied_scans_leave_presence_untouched(store: Store) -> None:
    store.record(scan())
    store.record(scan(direction="out", decision="deny", reason="denylisted"))
    store.record(scan(subject_hash=BOB, decision="deny", reason="denylisted"))
    assert store.presence_of(ALICE, now=T0, expiry_h=12) is not None
    assert store.presence_of(BOB, now=T0, expiry_h=12) is None
    assert store.occupancy(now=T0, expiry_h=12) == 1


def test_unrecognised_codes_create_no_presence(store: Store) -> None:
    store.record(scan(subject_hash=None, kind="unrecognised", display_name=None, masked_id=None))
    assert store.occupancy(now=T0, expiry_h=12) == 0


def test_presence_older_than_expiry_counts_as_gone(store: Store) -> None:
    store.record(scan())
    store.record(scan(subject_hash=BOB, at=T0 + timedelta(hours=2)))
    at_expiry = T0 + timedelta(hours=12)
    just_after = at_expiry + timedelta(microseconds=1)
    assert store.presence_of(ALICE, now=at_expiry, expiry_h=12) is not None
    assert store.presence_of(ALICE, now=just_after, expiry_h=12) is None
    assert store.occupancy(now=at_expiry, expiry_h=12) == 2
    assert store.occupancy(now=just_after, expiry_h=12) == 1
    assert store.occupancy(now=just_after, expiry_h=0.5) == 0


# --------------------------------------------------------------------------- denylist


def test_denylist_add_and_remove(store: Store) -> None:
    assert not store.is_denylisted(ALICE)
    store.add_to_denylist(ALICE, label="A.", note="theft", at=T0)
    store.add_to_denylist(ALICE, label="A.", note="theft, twice", at=T0 + timedelta(days=1))
    assert store.is_denylisted(ALICE)
    assert not store.is_denylisted(BOB)
    assert store.remove_from_denylist(ALICE) is True
    assert store.remove_from_denylist(ALICE) is False
    assert not store.is_denylisted(ALICE)


# --------------------------------------------------------------------------- reading the log


def test_events_between_is_half_open_and_oldest_first(store: Store) -> None:
    # Recorded out of time order, as after a clock correction.
    late = store.record(scan(at=T0 + timedelta(hours=2)))
    first = store.record(scan(at=T0))
    middle = store.record(scan(at=T0 + timedelta(hours=1), direction="out"))
    same_instant = store.record(scan(at=T0 + timedelta(hours=1), subject_hash=BOB))
    store.record(scan(at=T0 - timedelta(microseconds=1)))

    found = store.events_between(T0, T0 + timedelta(hours=2))
    assert [e.id for e in found] == [first.id, middle.id, same_instant.id]
    assert late.id in [e.id for e in store.events_between(T0, T0 + timedelta(hours=3))]


def test_events_between_accepts_local_time_bounds(store: Store) -> None:
    event = store.record(scan())
    hanoi = datetime.fromisoformat("2026-01-05T08:00:00+07:00")
    assert store.events_between(hanoi, hanoi + timedelta(minutes=1)) == [event]


def test_recent_events_newest_first_and_limited(store: Store) -> None:
    events = [store.record(scan(at=T0 + timedelta(minutes=i))) for i in range(5)]
    assert store.recent_events(limit=3) == events[::-1][:3]
    assert store.recent_events() == events[::-1]


# --------------------------------------------------------------------------- health, settings


def health(**overrides: object) -> KioskHealth:
    value = KioskHealth(
        gate_id="gate-1",
        updated_at=T0,
        last_frame_at=T0 - timedelta(milliseconds=40),
        fps=12.5,
        camera="picamera2",
        camera_ok=True,
        camera_detail="640x480 YUV420",
        decoder="zxing-cpp",
        pin_backend="lgpio",
        clock_synced=True,
        fault=None,
    )
    return replace(value, **overrides)  # type: ignore[arg-type]


def test_health_roundtrip_and_upsert_one_row_per_gate(store: Store, db_path: Path) -> None:
    assert store.read_health("gate-1") is None
    store.write_health(health())
    later = health(
        updated_at=T0 + timedelta(seconds=5),
        last_frame_at=None,
        fps=0.0,
        camera_ok=False,
        camera_detail="no frames",
        fault="camera",
    )
    store.write_health(later)
    store.write_health(health(gate_id="gate-2"))
    assert store.read_health("gate-1") == later
    assert store.read_health("gate-2") == health(gate_id="gate-2")
    assert count_rows(db_path, "kiosk_health") == 2


def test_settings_version_starts_at_zero_and_bumps(store: Store, db_path: Path) -> None:
    assert store.settings_version() == 0
    assert store.bump_settings_version() == 1
    assert store.bump_settings_version() == 2
    with Store.open(db_path, boot_id=BOOT_B) as kiosk:
        assert kiosk.settings_version() == 2


def test_integrity_check_passes_on_a_fresh_file(store: Store) -> None:
    store.record(scan())
    assert store.integrity_ok()


def test_visit_that_began_in_the_window_keeps_its_exit_after_the_window(db_path: Path) -> None:
    window_start = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    window_end = datetime(2026, 1, 5, 4, 0, tzinfo=UTC)
    with Store.open(db_path, boot_id=BOOT_A) as store:
        store.record(scan(at=window_start + timedelta(hours=1), direction="in"))
        store.record(scan(at=window_end + timedelta(hours=1), direction="out"))
        store.record(
            scan(at=window_end + timedelta(minutes=5), direction="in", subject_hash="b" * 32)
        )

        [visit] = store.visits(window_start, window_end, expiry_h=12)

    assert visit.entered_at == window_start + timedelta(hours=1)
    assert visit.exited_at == window_end + timedelta(hours=1)


def _site_code(code_id: str, *, expires: datetime, kind: str = "declaration") -> SiteCode:
    return SiteCode(
        id=code_id,
        kind=kind,
        issued_at=T0,
        valid_from=T0,
        expires_at=expires,
        name="Nguyễn Văn An",
        phone="0912345678",
        organisation=None,
        answers={"fever": False},
        verdict="ok",
        issued_by="self",
    )


def test_issued_codes_are_kept_revoked_once_and_purged_after_expiry(db_path: Path) -> None:
    with Store.open(db_path, boot_id=BOOT_A) as store:
        store.save_site_code(_site_code("d1", expires=T0 + timedelta(days=1)))
        store.save_site_code(_site_code("d2", expires=T0 + timedelta(days=30)))

        assert store.site_code("d1") == _site_code("d1", expires=T0 + timedelta(days=1))
        assert not store.is_revoked("d1")
        assert store.revoke_site_code("d1", by="boss", at=T0)
        assert not store.revoke_site_code("d1", by="boss", at=T0)
        assert store.is_revoked("d1")
        assert not store.revoke_site_code("nope", by="boss", at=T0)
        now = T0 + timedelta(days=2)
        assert [c.id for c in store.site_codes("declaration", now=now)] == ["d2"]
        assert store.purge_site_codes_before(now, limit=10) == 1
        assert store.site_code("d1") is None


# --------------------------------------------------------------------------- HC1: identity


def test_hcert_identity_is_stored_and_read_back_everywhere(store: Store, db_path: Path) -> None:
    hcert = scan(kind="hcert", birth_date="1990-04-12", name_latin="NGUYEN THI MAI")
    recorded = store.record(hcert)
    plain = store.record(scan(at=T0 + timedelta(seconds=1), subject_hash=BOB))
    assert (recorded.birth_date, recorded.name_latin) == ("1990-04-12", "NGUYEN THI MAI")
    assert store.event_by_id(recorded.id) == recorded
    assert store.recent_events(2) == [plain, recorded]
    assert [e.birth_date for e in store.iter_events(EventFilter())] == ["1990-04-12", None]
    assert recorded.as_new() == hcert
    with other_connection(db_path) as conn:
        rows = conn.execute("SELECT birth_date, name_latin FROM events ORDER BY seq").fetchall()
    assert rows == [("1990-04-12", "NGUYEN THI MAI"), (None, None)]


def test_identity_migration_keeps_an_existing_log(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kiosk.store.migrations as store_module

    names = [name for name, _ in MIGRATIONS]
    before = MIGRATIONS[: names.index("0006_event_identity")]
    monkeypatch.setattr(store_module, "MIGRATIONS", before)
    Store.open(db_path, boot_id=BOOT_A).close()
    monkeypatch.undo()
    with other_connection(db_path) as conn:
        assert "birth_date" not in {row[1] for row in conn.execute("PRAGMA table_info(events)")}
        conn.execute(
            "INSERT INTO events (id, gate_id, at_utc, utc_offset_min, boot_id, seq, clock_synced, "
            "direction, decision, reason, kind) VALUES ('old', 'gate-1', "
            "'2026-01-05T00:00:00.000000Z', 420, 'boot-a', 1, 1, 'in', 'allow', 'ok', 'cccd')"
        )
    with Store.open(db_path, boot_id=BOOT_A) as migrated:
        assert migrated.applied_migrations() == [name for name, _ in MIGRATIONS]
        old = migrated.event_by_id("old")
        assert old is not None
        assert (old.birth_date, old.name_latin) == (None, None)
        event = migrated.record(scan(kind="hcert", birth_date="1990-04-12", name_latin="A B"))
        assert (event.seq, migrated.recent_events(1)) == (2, [event])


# --------------------------------------------------------------------------- order without a clock


def test_log_keeps_sequence_order_when_the_wall_clock_jumps_back(store: Store) -> None:
    # NTP (or a guard setting the date) steps the clock back an hour mid-shift.
    first = store.record(scan(at=T0, clock_synced=False))
    second = store.record(scan(at=T0 + timedelta(minutes=5), clock_synced=False))
    after_jump = store.record(scan(at=T0 - timedelta(hours=1), clock_synced=True))
    recorded = [first.id, second.id, after_jump.id]

    assert [e.id for e in store.recent_events(10)] == recorded[::-1]
    assert [e.id for e in store.find_events(EventFilter(), limit=10)] == recorded[::-1]
    assert [e.id for e in store.iter_events(EventFilter())] == recorded
    whole_day = (T0 - timedelta(hours=2), T0 + timedelta(hours=2))
    assert [e.id for e in store.events_between(*whole_day)] == recorded
    csv_text = b"".join(iter_store_csv(store, EventFilter(), tz=ZoneInfo("Asia/Ho_Chi_Minh")))
    assert [i for i in recorded if i in csv_text.decode()] == recorded
    assert sorted(recorded, key=csv_text.decode().index) == recorded


def test_a_later_boot_sorts_after_an_earlier_one_whatever_its_clock(db_path: Path) -> None:
    # A Pi without a real-time clock boots at the time it last saved, or 1970.
    with Store.open(db_path, boot_id=BOOT_B) as before_reboot:
        last_night = before_reboot.record(scan(at=T0))
    with Store.open(db_path, boot_id=BOOT_A) as after_reboot:
        stale_clock = after_reboot.record(scan(at=T0 - timedelta(days=300), clock_synced=False))
        synced = after_reboot.record(scan(at=T0 + timedelta(hours=1)))
        newest_first = [e.id for e in after_reboot.recent_events(10)]
        oldest_first = [e.id for e in after_reboot.iter_events(EventFilter())]
    assert newest_first == [synced.id, stale_clock.id, last_night.id]
    assert oldest_first == newest_first[::-1]
    # The boot id alone would have put boot-a first.
    assert BOOT_A < BOOT_B


def test_boot_order_migration_numbers_existing_boots_by_first_row(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kiosk.store.migrations as store_module

    names = [name for name, _ in MIGRATIONS]
    monkeypatch.setattr(store_module, "MIGRATIONS", MIGRATIONS[: names.index("0008_boot_order")])
    Store.open(db_path, boot_id=BOOT_A).close()
    monkeypatch.undo()
    rows = [  # boot-z first, then boot-a with an earlier clock: the file's order is the truth
        ("z1", "2026-01-05T03:00:00.000000Z", "boot-z", 1),
        ("z2", "2026-01-05T03:01:00.000000Z", "boot-z", 2),
        ("a1", "2025-02-01T00:00:00.000000Z", "boot-a", 1),
    ]
    with other_connection(db_path) as conn:
        conn.executemany(
            "INSERT INTO events (id, gate_id, at_utc, utc_offset_min, boot_id, seq, clock_synced, "
            "direction, decision, reason, kind) VALUES (?, 'gate-1', ?, 420, ?, ?, 0, 'in', "
            "'allow', 'ok', 'cccd')",
            rows,
        )
    with Store.open(db_path, boot_id=BOOT_A) as migrated:
        assert [e.id for e in migrated.iter_events(EventFilter())] == ["z1", "z2", "a1"]
        # The running boot continues its own sequence and sorts last.
        newer = migrated.record(scan(at=T0 - timedelta(days=400)))
        assert (newer.seq, migrated.recent_events(1)) == (2, [newer])


def test_a_time_range_with_a_decision_is_searched_by_time(store: Store) -> None:
    # SQLite has no statistics here; left to itself it picks the (decision,
    # reason) index and reads half of a large log for one day's refusals.
    where = EventFilter(start=T0, end=T0 + timedelta(days=1), decision="deny", direction="in")
    sql, params = where.sql()
    plan = " ".join(
        row[3]
        for row in store.connection.conn.execute(
            f"EXPLAIN QUERY PLAN SELECT id FROM events WHERE {sql}", params
        )
    )
    assert "idx_events_at_utc" in plan
    assert [e.id for e in store.find_events(where, limit=5)] == []
    refused = store.record(scan(decision="deny", reason="denylisted"))
    assert [e.id for e in store.find_events(where, limit=5)] == [refused.id]


# --------------------------------------------------------------------------- concurrent reads


def test_with_concurrent_reads_a_slow_read_does_not_hold_up_other_threads(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The web serves requests on several threads: one slow page (a query held
    # here inside SQLite) must not make every other request wait behind it.
    import kiosk.store.connection as store_module

    inside, release = threading.Event(), threading.Event()

    def held(value: str) -> str:
        inside.set()
        release.wait(timeout=120)
        return value

    add_functions = store_module.add_functions

    def with_held(conn: sqlite3.Connection) -> None:
        add_functions(conn)
        conn.create_function("held", 1, held)

    monkeypatch.setattr(store_module, "add_functions", with_held)
    with Store.open(db_path, boot_id=BOOT_A, concurrent_reads=True) as store:
        recorded = store.record(scan())
        slow = threading.Thread(
            target=store.connection.read, args=("hold", "SELECT held(id) FROM events", ())
        )
        slow.start()
        try:
            assert inside.wait(timeout=30)
            answers: list[list[Event]] = []
            other = threading.Thread(target=lambda: answers.append(store.recent_events(5)))
            other.start()
            other.join(timeout=10)  # a deadlock guard, not a timing: it ends at once or never
            finished_while_held = not other.is_alive()
            # Writes still work beside the held read (WAL).
            written = (
                store.record(scan(at=T0 + timedelta(seconds=1))) if finished_while_held else None
            )
        finally:
            release.set()
            slow.join()
            other.join()
        assert finished_while_held
        assert answers == [[recorded]]
        assert written is not None
        assert [e.id for e in store.recent_events(5)] == [written.id, recorded.id]


def test_without_concurrent_reads_one_connection_serves_every_thread(db_path: Path) -> None:
    with Store.open(db_path, boot_id=BOOT_A) as store:
        store.record(scan())
        threads = [threading.Thread(target=store.recent_events) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.connection.reader_conns == []  # type: ignore[attr-defined]  # the one shared connection did all
