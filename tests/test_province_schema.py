"""The province's PostgreSQL schema on a real server: row-level security per
site, a read role that writes nothing, monthly partitions, no names."""

from __future__ import annotations

from datetime import UTC, date, datetime

import psycopg
import pytest

from kiosk.province.setup import init_schema, partition_name
from tests.postgres_fixture import Province, postgres_fixture, province_fixture  # noqa: F401

_INSERT = (
    "INSERT INTO province.events (site_id, id, at_utc, utc_offset_min, gate_id, boot_id, seq, "
    "clock_synced, direction, decision, reason, kind, subject_hash, override) "
    "VALUES (%s, %s, %s, 420, 'gate-1', 'b', 1, true, 'in', 'allow', 'ok', 'cccd', NULL, false)"
)
AT = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


def insert(dsn: str, site_id: str, event_id: str, at: datetime = AT) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT province.ensure_month(%s)", (date(at.year, at.month, 1),))
        conn.execute(_INSERT, (site_id, event_id, at))


def test_init_is_safe_to_run_again(province: Province) -> None:
    init_schema(province.owner_dsn)
    init_schema(province.owner_dsn)
    assert province.query("SELECT count(*) FROM province.sites") == [(0,)]


def test_a_site_inserts_and_reads_its_own_rows_only(province: Province) -> None:
    a = province.add_site("market-a")
    b = province.add_site("market-b")
    insert(a, "market-a", "e-a")
    insert(b, "market-b", "e-b")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        insert(a, "market-b", "forged")
    with psycopg.connect(a) as conn:
        assert conn.execute("SELECT site_id, id FROM province.events").fetchall() == [
            ("market-a", "e-a")
        ]
        # Nor through a partition, nor by updating or deleting.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SELECT * FROM province.{partition_name(date(2026, 3, 1))}")
    with psycopg.connect(a) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM province.events")
    with psycopg.connect(a) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("UPDATE province.sites SET name = 'x'")
    assert province.query("SELECT site_id, id FROM province.events ORDER BY id") == [
        ("market-a", "e-a"),
        ("market-b", "e-b"),
    ]


def test_a_login_of_no_site_inserts_nothing(province: Province) -> None:
    province.add_site("market-a")
    with psycopg.connect(province.owner_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {province.dbname}_stray LOGIN IN ROLE province_site".encode())
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        insert(province.dsn(f"{province.dbname}_stray"), "market-a", "stray")


def test_the_read_role_reads_no_event_and_writes_only_audit_rows(province: Province) -> None:
    a = province.add_site("market-a")
    insert(a, "market-a", "e-a")
    reader = province.add_reader()
    with psycopg.connect(reader) as conn:
        assert conn.execute("SELECT id FROM province.sites").fetchall() == [("market-a",)]
        audit_id = conn.execute(
            "SELECT province.open_window('inspector-1', 'case 12', 'market-a', "
            "'2026-03-10 00:00+00', '2026-03-11 00:00+00', 'csv')"
        ).fetchone()
        assert audit_id is not None
    for statement in (
        "SELECT id FROM province.events",
        f"SELECT id FROM province.{partition_name(date(2026, 3, 1))}",
        _INSERT.replace("%s", "'market-a'", 1).replace("%s", "'x'", 1).replace("%s", "now()"),
        "DELETE FROM province.events",
        "UPDATE province.sites SET name = 'x'",
        "DELETE FROM province.audit",
        "UPDATE province.audit SET read_at = NULL",
        "INSERT INTO province.audit (actor, action) VALUES ('me', 'forged')",
        "SELECT * FROM province.claim_window(1)",
    ):
        with psycopg.connect(reader) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement.encode())
    assert province.query("SELECT actor, db_role, action, site_id, reason FROM province.audit") == [
        ("inspector-1", f"{province.dbname}_reader", "export-window", "market-a", "case 12")
    ]


def test_a_month_boundary_lands_rows_in_their_months_partitions(province: Province) -> None:
    a = province.add_site("market-a")
    insert(a, "market-a", "last-january", datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=UTC))
    insert(a, "market-a", "first-february", datetime(2026, 2, 1, 0, 0, tzinfo=UTC))
    rows = province.query(
        "SELECT id, tableoid::regclass::text FROM province.events ORDER BY at_utc"
    )
    assert rows == [
        ("last-january", "province.events_2026_01"),
        ("first-february", "province.events_2026_02"),
    ]


def test_the_province_holds_no_names_nor_id_numbers(province: Province) -> None:
    columns = {
        row[0]
        for row in province.query(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'province' AND table_name = 'events'"
        )
    }
    assert not columns & {"display_name", "masked_id", "id_number", "birth_date", "name_latin"}
    assert not columns & {"note", "actor"}


def test_hourly_counts_follow_the_rows_really_inserted(province: Province) -> None:
    a = province.add_site("market-a")
    insert(a, "market-a", "e-1")
    insert(a, "market-a", "e-2", AT.replace(minute=59))
    insert(a, "market-a", "e-3", AT.replace(hour=9))
    with psycopg.connect(a) as conn:
        # A resend: ON CONFLICT skips it, and the count stays.
        conn.execute(_INSERT + " ON CONFLICT DO NOTHING", ("market-a", "e-1", AT))
        conn.execute(_INSERT.replace("'in', 'allow'", "'out', 'deny'"), ("market-a", "e-4", AT))
    assert province.query(
        "SELECT site_id, hour, entries, exits, denied FROM province.hourly ORDER BY hour"
    ) == [
        ("market-a", AT, 2, 0, 1),
        ("market-a", AT.replace(hour=9), 1, 0, 0),
    ]


def test_a_site_rates_itself_only_on_a_published_checklist(province: Province) -> None:
    a = province.add_site("market-a")
    province.add_site("market-b")
    with psycopg.connect(province.owner_dsn) as conn:
        conn.execute(
            "INSERT INTO province.checklists (version, title, questions) VALUES "
            """(1, 'Bộ tiêu chí', '[{"id": "masks", "vi": "Đeo khẩu trang", "en": "Masks"}]')"""
        )
    rate = (
        "INSERT INTO province.assessments (site_id, id, checklist_version, made_at, answers, "
        "score) VALUES (%s, %s, %s, now(), '{\"masks\": true}', 100)"
    )
    with psycopg.connect(a) as conn:
        assert conn.execute("SELECT version FROM province.checklists").fetchall() == [(1,)]
        conn.execute(rate, ("market-a", "r-1", 1))
    with psycopg.connect(a) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(rate, ("market-b", "r-2", 1))
    with psycopg.connect(a) as conn, pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute(rate, ("market-a", "r-3", 2))
    with psycopg.connect(a) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(
            "INSERT INTO province.checklists (version, title, questions) VALUES (2, 'x', '[]')"
        )
    assert province.query("SELECT site_id, id FROM province.assessments") == [("market-a", "r-1")]
