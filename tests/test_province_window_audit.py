"""The audit of a site's window is the database's rule, not the web's habit:
the reader login reads no event but through ``province.open_window`` (checked,
audited, committed) and ``province.window_rows`` (exactly that request, once,
by the login that made it, while it is fresh). On a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from kiosk.province import dashboard
from kiosk.province.dashboard import WindowRefused, WindowRequest
from kiosk.province.setup import init_schema, partition_name
from tests.postgres_fixture import Province, postgres_fixture, province_fixture  # noqa: F401

AT = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
MARCH = partition_name(date(2026, 3, 1))


def insert_events(province: Province, site_id: str, count: int, *, start: datetime = AT) -> None:
    """``count`` events a minute apart from ``start``, as the owner inserts them."""
    with psycopg.connect(province.owner_dsn) as conn:
        conn.execute("SELECT province.ensure_month(%s)", (start.date().replace(day=1),))
        conn.execute(
            "INSERT INTO province.events (site_id, id, at_utc, utc_offset_min, gate_id, boot_id, "
            "seq, clock_synced, direction, decision, reason, kind, subject_hash, override) "
            "SELECT %s, 'e-' || %s || '-' || g, %s + g * interval '1 minute', 420, 'gate-1', "
            "'boot', g, true, 'in', 'allow', 'ok', 'cccd', 'hash', false "
            "FROM generate_series(0, %s - 1) AS g",
            (site_id, site_id, start, count),
        )


def ask(
    site_id: str = "market-a",
    *,
    reason: str = "Ca bệnh F0 số 12",
    start: datetime = AT,
    end: datetime = AT + timedelta(hours=2),
    actor: str = "inspector-1",
    fmt: str = "csv",
) -> WindowRequest:
    return WindowRequest(actor, reason, site_id, start, end, fmt, "Asia/Ho_Chi_Minh")


def read_all(dsn: str, audit_id: int) -> list[dashboard.WindowEvent]:
    with psycopg.connect(dsn) as conn:
        return list(dashboard.iter_window(conn, audit_id))


def audit_rows(province: Province) -> list[tuple[object, ...]]:
    return province.query(
        "SELECT actor, db_role, action, site_id, reason, detail->>'format', read_at IS NOT NULL "
        "FROM province.audit ORDER BY id"
    )


@pytest.fixture
def reader(province: Province) -> str:
    province.add_site("market-a")
    province.add_site("market-b")
    insert_events(province, "market-a", 180)
    insert_events(province, "market-b", 5)
    return province.add_reader()


def test_the_readers_plain_select_of_events_or_a_partition_is_refused(
    province: Province, reader: str
) -> None:
    for statement in (
        "SELECT count(*) FROM province.events",
        f"SELECT count(*) FROM province.{MARCH}",
        "COPY province.events TO STDOUT",
        "SELECT * FROM province.claim_window(1)",
    ):
        with psycopg.connect(reader) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement.encode())
    assert audit_rows(province) == []


def test_an_audited_read_returns_exactly_its_window_and_leaves_one_audit_row(
    province: Province, reader: str
) -> None:
    with psycopg.connect(reader) as conn:
        audit_id = dashboard.open_window(conn, ask())
    events = read_all(reader, audit_id)
    assert [e.id for e in events] == [f"e-market-a-{i}" for i in range(120)]
    assert events[0].at == AT
    assert {e.site_id for e in events} == {"market-a"}
    role = f"{province.dbname}_reader"
    assert audit_rows(province) == [
        ("inspector-1", role, "export-window", "market-a", "Ca bệnh F0 số 12", "csv", True)
    ]
    (detail,) = province.query("SELECT detail FROM province.audit")
    assert isinstance(detail[0], dict)
    window = (datetime.fromisoformat(detail[0]["from"]), datetime.fromisoformat(detail[0]["to"]))
    assert window == (AT, AT + timedelta(hours=2))
    assert detail[0]["zone"] == "Asia/Ho_Chi_Minh"


def test_a_read_without_a_committed_request_of_this_login_is_refused(
    province: Province, reader: str
) -> None:
    with psycopg.connect(reader) as conn:
        mine = dashboard.open_window(conn, ask())
    with psycopg.connect(province.owner_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {province.dbname}_other LOGIN IN ROLE province_reader".encode())
    stranger = province.dsn(f"{province.dbname}_other")
    with pytest.raises(WindowRefused, match="No window request 999 of this login"):
        read_all(reader, 999)
    with pytest.raises(WindowRefused, match=f"No window request {mine} of this login"):
        read_all(stranger, mine)
    with psycopg.connect(reader) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT (w).* FROM (SELECT province.window_rows(NULL) AS w) AS r")
    # The stranger's refusal read nothing and claimed nothing: the owner still reads it.
    assert len(read_all(reader, mine)) == 120


def test_a_request_is_read_once(province: Province, reader: str) -> None:
    with psycopg.connect(reader) as conn:
        audit_id = dashboard.open_window(conn, ask())
    assert len(read_all(reader, audit_id)) == 120
    with pytest.raises(WindowRefused, match="was read already; ask again"):
        read_all(reader, audit_id)
    assert len(audit_rows(province)) == 1


def test_an_empty_window_is_claimed_and_a_bad_id_refused_even_with_no_event_at_all(
    province: Province,
) -> None:
    # No event and no month partition: the plan of the read scans nothing,
    # and still the claim is made (read once) and a stranger's id refused.
    province.add_site("market-a")
    reader = province.add_reader()
    with psycopg.connect(reader) as conn:
        audit_id = dashboard.open_window(conn, ask())
    with pytest.raises(WindowRefused, match="No window request 999 of this login"):
        read_all(reader, 999)
    assert read_all(reader, audit_id) == []
    assert [row[-1] for row in audit_rows(province)] == [True]
    with pytest.raises(WindowRefused, match="was read already; ask again"):
        read_all(reader, audit_id)


def test_a_request_older_than_the_policy_is_refused(province: Province, reader: str) -> None:
    with psycopg.connect(reader) as conn:
        audit_id = dashboard.open_window(conn, ask())
    province.query("UPDATE province.audit SET at = now() - interval '11 minutes' RETURNING id")
    with pytest.raises(WindowRefused, match=f"Request {audit_id} is older than 10 minutes"):
        read_all(reader, audit_id)
    province.query("UPDATE province.export_policy SET request_ttl_min = 15 RETURNING 1")
    assert len(read_all(reader, audit_id)) == 120


def test_rows_never_leave_before_their_audit_row_is_committed(
    province: Province, reader: str
) -> None:
    """Audit and read in one transaction, then roll back: the audit row would
    vanish with the rows already sent, so the read is refused."""
    with psycopg.connect(reader) as conn:
        with conn.transaction(force_rollback=True):
            audit_id = conn.execute(
                "SELECT province.open_window('x', 'why', 'market-a', %s, %s, 'csv')",
                (AT, AT + timedelta(hours=1)),
            ).fetchone()
            assert audit_id is not None
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not committed"):
                conn.execute(
                    "SELECT (w).* FROM (SELECT province.window_rows(%s) AS w) AS r", audit_id
                ).fetchall()
        # Nor from within a savepoint of the audit's transaction.
        with conn.transaction(force_rollback=True):
            audit_id = conn.execute(
                "SELECT province.open_window('x', 'why', 'market-a', %s, %s, 'csv')",
                (AT, AT + timedelta(hours=1)),
            ).fetchone()
            assert audit_id is not None
            with (
                pytest.raises(psycopg.errors.InsufficientPrivilege, match="not committed"),
                conn.transaction(),
            ):
                conn.execute("SELECT * FROM province.window_rows(%s)", audit_id).fetchall()
    assert audit_rows(province) == []


@pytest.mark.parametrize(
    ("wanted", "message"),
    [
        (ask(reason="   "), "A reason is required."),
        (ask(reason="x" * 501), "The reason is longer than 500 characters."),
        (ask(end=AT), "The start must be before the end."),
        (ask(end=AT + timedelta(days=31, seconds=1)), "The window is longer than 31 days."),
        (ask(fmt="pdf"), "The format must be CSV or Excel."),
        (ask("market-z"), "There is no such site."),
        (ask(actor=" "), "The requester is required"),
    ],
)
def test_the_database_refuses_a_bad_request_in_both_languages_and_records_nothing(
    province: Province, reader: str, wanted: WindowRequest, message: str
) -> None:
    with psycopg.connect(reader) as conn, pytest.raises(WindowRefused) as refused:
        dashboard.open_window(conn, wanted)
    assert message in str(refused.value)
    assert " / " in str(refused.value)
    cause = refused.value.__cause__
    assert isinstance(cause, psycopg.Error)
    assert cause.sqlstate == ("P0002" if wanted.site_id == "market-z" else "22023")
    assert audit_rows(province) == []


def test_the_owner_sets_the_longest_window_and_init_keeps_it(
    province: Province, reader: str
) -> None:
    forty_days = ask(end=AT + timedelta(days=40))
    with psycopg.connect(reader) as conn:
        assert dashboard.window_max_days(conn) == 31
        with pytest.raises(WindowRefused, match="longer than 31 days"):
            dashboard.open_window(conn, forty_days)
    province.query("UPDATE province.export_policy SET window_max_days = 62 RETURNING 1")
    init_schema(province.owner_dsn)
    with psycopg.connect(reader) as conn:
        assert dashboard.window_max_days(conn) == 62
        assert dashboard.open_window(conn, forty_days) > 0


def test_a_window_streams_through_a_server_side_cursor_without_a_temporary_file(
    province: Province, reader: str
) -> None:
    """A window (20,000 events, about 1.8 MB) larger than work_mem (1 MB):
    gathered first (``FROM province.window_rows``) it spills to a temporary
    file; the select-list form the web uses hands rows over as a batch is
    fetched (each FETCH's 500 rows fit in work_mem)."""
    province.add_site("market-c")
    insert_events(province, "market-c", 20_000, start=datetime(2026, 4, 1, tzinfo=UTC))
    april = ask(
        "market-c", start=datetime(2026, 4, 1, tzinfo=UTC), end=datetime(2026, 4, 30, tzinfo=UTC)
    )

    def temp_files_of(query: str) -> int:
        with psycopg.connect(reader) as conn:
            audit_id = dashboard.open_window(conn, april)
            conn.execute("SET work_mem = '1MB'")
            conn.commit()
            before = temp_files(conn)
            with conn.cursor(name="probe") as cursor:
                cursor.itersize = 500
                cursor.execute(query, (audit_id,))
                assert sum(1 for _ in cursor) == 20_000
            conn.commit()
            return temp_files(conn) - before

    assert temp_files_of(dashboard.WINDOW_QUERY) == 0
    assert temp_files_of("SELECT * FROM province.window_rows(%s)") > 0


def temp_files(conn: psycopg.Connection[Any]) -> int:
    """This database's temporary files so far, this session's own included."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.commit()
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT temp_files FROM pg_stat_database WHERE datname = current_database()"
    ).fetchone()
    conn.commit()
    assert row is not None
    return int(row[0])


def test_init_takes_back_what_older_versions_granted_the_reader(province: Province) -> None:
    province.add_site("market-a")
    (now,) = province.query("SELECT now()")
    assert isinstance(now[0], datetime)
    insert_events(province, "market-a", 3, start=now[0] - timedelta(hours=1))
    this_month = partition_name(now[0].date().replace(day=1))
    reader = province.add_reader()
    with psycopg.connect(province.owner_dsn) as conn:  # as the schema of before left it
        conn.execute("GRANT SELECT ON province.events TO province_reader")
        conn.execute(f"GRANT SELECT ON province.{this_month} TO province_reader, PUBLIC".encode())
        conn.execute(
            "CREATE POLICY reader_reads_all ON province.events FOR SELECT TO province_reader "
            "USING (true)"
        )
        conn.execute(
            "CREATE FUNCTION province.audit_request(p_actor text, p_action text, p_site text, "
            "p_reason text, p_detail jsonb) RETURNS bigint LANGUAGE sql SECURITY DEFINER "
            "AS $$ SELECT 1::bigint $$"
        )
        conn.execute("UPDATE province.sites SET last_heard = NULL")
    with psycopg.connect(reader) as conn:
        assert conn.execute("SELECT count(*) FROM province.events").fetchone() == (3,)

    init_schema(province.owner_dsn)
    init_schema(province.owner_dsn)

    for statement in (
        "SELECT count(*) FROM province.events",
        f"SELECT 1 FROM province.{this_month}",
    ):
        with psycopg.connect(reader) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement.encode())
    with psycopg.connect(reader) as conn, pytest.raises(psycopg.errors.UndefinedFunction):
        conn.execute("SELECT province.audit_request('me', 'forged', NULL, '', '{}')")
    assert province.query(
        "SELECT count(*) FROM pg_policies WHERE schemaname = 'province' "
        "AND 'province_reader' = ANY(roles)"
    ) == [(1,)]  # reader_reads_all_ratings only
    # A site heard from before the trigger kept last_heard: filled from its recent events.
    (heard,) = province.query("SELECT last_heard FROM province.sites")
    assert heard[0] is not None


def test_inserting_events_marks_the_site_heard_by_the_servers_clock(province: Province) -> None:
    site = province.add_site("market-a")
    province.add_site("market-b")
    with psycopg.connect(site) as conn:
        conn.execute("SELECT province.ensure_month('2026-03-01')")
        conn.execute(
            "INSERT INTO province.events (site_id, id, at_utc, utc_offset_min, gate_id, boot_id, "
            "seq, clock_synced, direction, decision, reason, kind, override, received_at) VALUES "
            "('market-a', 'e-1', %s, 420, 'g', 'b', 1, true, 'in', 'allow', 'ok', 'cccd', false, "
            "now() + interval '1 day')",
            (AT,),
        )
        now = conn.execute("SELECT now()").fetchone()
    assert province.query("SELECT id, last_heard FROM province.sites ORDER BY id") == [
        ("market-a", now[0] if now else None),  # a received_at in the future counts as now
        ("market-b", None),
    ]
