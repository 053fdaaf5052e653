"""The province web on a real PostgreSQL: every site on the list, scanning or
quiet, today's counts from the rollup, a site's hourly chart, the ratings,
the audited window export, and what the web's reader login may not do."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from admin_web import create_province_app, province_export
from admin_web.province import ProvinceWeb
from kiosk.accounts import PasswordHashing, add_user
from kiosk.cli import cli
from kiosk.clock import FakeClock
from kiosk.config import load_settings
from kiosk.province import dashboard
from kiosk.province.dashboard import day_bounds
from kiosk.province.window_export import iter_window_csv
from kiosk.store import Store
from tests.postgres_fixture import Province, postgres_fixture, province_fixture  # noqa: F401
from tests.web import PASSWORDS, EnglishClient, csrf_token, log_in

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
HOSTILE_NAME = '<script>alert("x")</script> Chợ & Co'


def insert_events(
    province: Province,
    site_id: str,
    times: list[datetime],
    *,
    decision: str = "allow",
    direction: str = "in",
    received_at: datetime | None = None,
    prefix: str = "e",
) -> None:
    """Events as the owner inserts them: the hourly trigger counts them."""
    with psycopg.connect(province.owner_dsn) as conn:
        for at in {date(t.year, t.month, 1) for t in times}:
            conn.execute("SELECT province.ensure_month(%s)", (at,))
        rows = [
            (site_id, f"{prefix}-{site_id}-{decision}-{direction}-{i}", at, decision, direction)
            for i, at in enumerate(times)
        ]
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO province.events (site_id, id, at_utc, utc_offset_min, gate_id, "
                "boot_id, seq, clock_synced, direction, decision, reason, kind, subject_hash, "
                "override, received_at) VALUES (%s, %s, %s, 420, 'gate-1', 'boot', 1, true, "
                "%s, %s, 'ok', 'cccd', 'hash', false, coalesce(%s, now()))",
                [(s, i, a, dr, dc, received_at) for s, i, a, dc, dr in rows],
            )


def server_now(province: Province) -> datetime:
    value = province.query("SELECT now()")[0][0]
    assert isinstance(value, datetime)
    return value


@pytest.fixture
def reader_dsn(province: Province) -> str:
    return province.add_reader()


@pytest.fixture
def app(
    tmp_path: Path, province: Province, reader_dsn: str, password_hashing: PasswordHashing
) -> Iterator[Flask]:
    clock = FakeClock(server_now(province))
    settings = load_settings(
        overrides={"gate.data_dir": str(tmp_path), "province_web.dsn": reader_dsn}, env={}
    )
    store = Store.open(settings.db_path)
    app = create_province_app(
        settings,
        store=store,
        clock=clock,
        test_config={"TESTING": True},
        password_hashing=password_hashing,
    )
    app.test_client_class = EnglishClient
    for role, password in PASSWORDS.items():
        add_user(
            store,
            f"{role}1",
            role=role,
            password=password,
            at=clock.now(),
            hashing=password_hashing,
        )
    yield app
    store.close()


@pytest.fixture
def manager(app: Flask) -> FlaskClient:
    client = app.test_client()
    log_in(client, "manager")
    return client


def today_times(province: Province, count: int) -> list[datetime]:
    """``count`` times a few minutes ago, but within today in the province's zone."""
    now = server_now(province)
    start = day_bounds(now.astimezone(TZ).date(), TZ).start
    return [max(now - timedelta(minutes=5, seconds=i), start) for i in range(count)]


def row_of(page: str, site_id: str) -> str:
    match = re.search(
        rf'<tr class="site-[a-z-]+" data-site="{re.escape(site_id)}">.*?</tr>', page, re.S
    )
    assert match, f"no row for {site_id}"
    return match.group(0)


def test_the_site_list_shows_every_site_scanning_or_quiet_with_todays_counts(
    province: Province, manager: FlaskClient
) -> None:
    province.add_site("market-a")
    province.add_site("market-b")
    province.add_site("never")
    times = today_times(province, 3)
    insert_events(province, "market-a", times)
    insert_events(province, "market-a", times[:2], direction="out")
    insert_events(province, "market-a", times[:1], decision="deny")
    long_ago = server_now(province) - timedelta(hours=2)
    insert_events(province, "market-b", times[:1], received_at=long_ago)
    province.query(
        "UPDATE province.sites SET last_heard = %s WHERE id = 'market-b' RETURNING id",
        (long_ago,),
    )

    page = manager.get("/").get_data(as_text=True)

    a, b, never = row_of(page, "market-a"), row_of(page, "market-b"), row_of(page, "never")
    assert 'class="site-scanning"' in a
    assert re.findall(r'class="tally \w+">(\d+)<', a) == ["3", "2", "1"]
    assert 'class="site-quiet"' in b
    assert re.findall(r'class="tally \w+">(\d+)<', b) == ["1", "0", "0"]
    assert 'class="site-never-heard"' in never
    assert "Never heard from" in never
    assert re.findall(r'class="tally \w+">(\d+)<', never) == ["0", "0", "0"]
    assert 'id="sites-scanning">1 / 3<' in page
    assert 'id="entries">4<' in page
    site_page = manager.get("/sites/market-a").get_data(as_text=True)
    assert re.search(r"Last heard: \d\d/\d\d/\d{4} \d\d:\d\d<", site_page)
    assert "Last heard: —" in manager.get("/sites/never").get_data(as_text=True)


def test_each_sites_row_charts_its_events_per_local_hour_today(
    province: Province, manager: FlaskClient
) -> None:
    province.add_site("market-a")
    province.add_site("never")
    start = day_bounds(server_now(province).astimezone(TZ).date(), TZ).start
    at_7 = start + timedelta(hours=7, minutes=10)  # 07:10 in Viet Nam
    at_9 = start + timedelta(hours=9, minutes=59)
    insert_events(province, "market-a", [at_7, at_7 + timedelta(seconds=1)])
    insert_events(province, "market-a", [at_7 + timedelta(seconds=2)], decision="deny")
    insert_events(province, "market-a", [at_9], direction="out", prefix="x")
    insert_events(province, "market-a", [start - timedelta(minutes=1)], prefix="y")  # yesterday

    page = manager.get("/").get_data(as_text=True)

    bars = re.findall(
        r'<rect class="spark-bar"[^>]*><title>(\d\d:00)–\d\d:00: (\d+)</title>',
        row_of(page, "market-a"),
    )
    assert len(bars) == 24
    assert {hour: int(n) for hour, n in bars if n != "0"} == {"07:00": 3, "09:00": 1}
    flat = re.findall(r"<title>\d\d:00–\d\d:00: (\d+)</title>", row_of(page, "never"))
    assert flat == ["0"] * 24
    assert 'aria-label="market-a: events per hour today"' in page


def test_todays_counts_come_from_the_rollup_not_from_scanning_events(
    province: Province, reader_dsn: str
) -> None:
    province.add_site("market-a")
    insert_events(province, "market-a", [datetime(2026, 3, 10, 1, 30, tzinfo=UTC)] * 1)
    # The rollup alone is what is read: a row of it without events is counted.
    province.query(
        "INSERT INTO province.hourly VALUES ('market-a', '2026-03-10 02:00+00', 5, 0, 0) "
        "ON CONFLICT (site_id, hour) DO UPDATE SET entries = 5 RETURNING site_id"
    )
    with psycopg.connect(reader_dsn) as conn:
        listing = dashboard.site_list(conn, day_bounds(date(2026, 3, 10), TZ))
    assert listing.sites[0].today == dashboard.Counts(6, 0, 0)


def test_a_sites_day_chart_counts_each_local_hour(
    province: Province, manager: FlaskClient, reader_dsn: str
) -> None:
    province.add_site("market-a")
    eight = datetime(2026, 3, 10, 8, 0, tzinfo=TZ)
    insert_events(province, "market-a", [eight + timedelta(minutes=m) for m in (1, 20, 59)])
    insert_events(province, "market-a", [eight + timedelta(hours=1, minutes=5)], direction="out")
    insert_events(province, "market-a", [eight + timedelta(hours=1, minutes=6)], decision="deny")
    # The day before, local time (01:00 UTC on the 10th is 08:00 local): not on the 9th.
    insert_events(province, "market-a", [datetime(2026, 3, 9, 23, 0, tzinfo=TZ)], prefix="before")

    with psycopg.connect(reader_dsn) as conn:
        chart = dashboard.hourly_chart(conn, "market-a", day_bounds(date(2026, 3, 10), TZ))
    assert len(chart.entries) == 24
    assert chart.entries[8] == 3
    assert chart.exits[9] == 1
    assert chart.refused[9] == 1
    assert chart.total == dashboard.Counts(3, 1, 1)

    page = manager.get("/sites/market-a?day=2026-03-10").get_data(as_text=True)
    assert "<tr><td>08:00</td><td>3</td><td>0</td><td>0</td></tr>" in page
    assert "<tr><td>09:00</td><td>0</td><td>1</td><td>1</td></tr>" in page
    assert "<tr><td>23:00</td><td>0</td><td>0</td><td>0</td></tr>" in page
    assert "08:00–09:00 · Entries: 3" in page  # the chart's bar
    assert manager.get("/sites/nowhere").status_code == 404


def test_ratings_list_missing_and_stale_sites_first(
    province: Province, manager: FlaskClient
) -> None:
    for site in ("a-current", "b-old-version", "c-missing", "d-too-old"):
        province.add_site(site)
    now = server_now(province)
    province.query(
        "INSERT INTO province.checklists (version, title, questions, stale_after_days) VALUES "
        "(1, 'v1', '[]', 30), (2, 'v2', '[]', 30) RETURNING version"
    )
    province.query(
        "INSERT INTO province.assessments (site_id, id, checklist_version, made_at, answers, "
        "score) VALUES ('a-current', 'r1', 2, %s, '{}', 90), ('b-old-version', 'r2', 1, %s, "
        "'{}', 80), ('d-too-old', 'r3', 2, %s, '{}', 70), ('a-current', 'r0', 1, %s, '{}', 10) "
        "RETURNING id",
        (now - timedelta(days=1), now, now - timedelta(days=40), now - timedelta(days=50)),
    )

    page = manager.get("/ratings").get_data(as_text=True)

    order = re.findall(r'<tr class="rating-(\w+)" data-site="([^"]+)">', page)
    assert order == [
        ("missing", "c-missing"),
        ("stale", "b-old-version"),
        ("stale", "d-too-old"),
        ("current", "a-current"),
    ]
    assert 'class="score">90 %<' in page


def export(client: FlaskClient, **fields: str) -> tuple[int, bytes, str]:
    data = {
        "site": "market-a",
        "from": "2026-03-10T00:00",
        "to": "10/03/2026 23:59",
        "reason": "Ca bệnh F0 số 12",
        "format": "csv",
        "csrf_token": csrf_token(client, "/export"),
    }
    data.update(fields)
    with client.post("/export", data=data) as response:
        return response.status_code, response.get_data(), response.headers.get("Content-Type", "")


def audit_rows(province: Province) -> list[tuple[object, ...]]:
    return province.query(
        "SELECT actor, action, site_id, reason, detail->>'format', db_role FROM province.audit "
        "ORDER BY id"
    )


def test_a_window_export_holds_the_sites_events_and_is_audited_once(
    province: Province, manager: FlaskClient
) -> None:
    province.add_site("market-a")
    province.add_site("market-b")
    eight = datetime(2026, 3, 10, 8, 0, tzinfo=TZ)
    insert_events(province, "market-a", [eight + timedelta(minutes=m) for m in range(5)])
    insert_events(province, "market-a", [eight - timedelta(days=1)], prefix="outside")
    insert_events(province, "market-b", [eight], prefix="other")

    status, body, mimetype = export(manager)

    assert status == 200, body[:500]
    assert mimetype.startswith("text/csv")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0][0].startswith("Giờ địa phương (Asia/Ho_Chi_Minh, UTC+07:00) / Local time")
    assert rows[0][2] == "Khu / Site"
    assert [row[15] for row in rows[1:]] == [f"e-market-a-allow-in-{i}" for i in range(5)]
    assert {row[2] for row in rows[1:]} == {"market-a"}
    assert rows[1][0] == "2026-03-10 08:00:00"
    assert audit_rows(province) == [
        (
            "manager1",
            "export-window",
            "market-a",
            "Ca bệnh F0 số 12",
            "csv",
            f"{province.dbname}_reader",
        )
    ]

    status, body, mimetype = export(manager, format="xlsx", reason="Case 13")
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(body)) as workbook:
        sheet = workbook.read("xl/worksheets/sheet1.xml").decode()
    assert sheet.count("e-market-a-allow-in-") == 5
    assert "outside" not in sheet
    assert [row[3:5] for row in audit_rows(province)] == [
        ("Ca bệnh F0 số 12", "csv"),
        ("Case 13", "xlsx"),
    ]


def test_the_request_is_recorded_before_any_row_is_read(
    province: Province, manager: FlaskClient
) -> None:
    province.add_site("market-a")
    insert_events(province, "market-a", [datetime(2026, 3, 10, 1, 0, tzinfo=UTC)])
    data = {
        "site": "market-a",
        "from": "10/03/2026 00:00",
        "to": "11/03/2026 00:00",
        "reason": "Case 14",
        "csrf_token": csrf_token(manager, "/export"),
    }
    response = manager.post("/export", data=data, buffered=False)
    try:
        # Nothing of the body has been read yet: the audit row is committed already.
        assert [row[3] for row in audit_rows(province)] == ["Case 14"]
    finally:
        response.close()
    assert len(audit_rows(province)) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"reason": "   "}, "A reason is required."),
        ({"reason": "x" * 501}, "The reason is longer than 500 characters."),
        ({"from": "2026-03-11T00:00"}, "The start must be before the end."),
        ({"from": "2026-01-01T00:00"}, "The window is longer than 31 days."),
        ({"from": "yesterday"}, "The start was not understood"),
        ({"site": "market-z"}, "There is no such site."),
    ],
)
def test_a_request_without_a_reason_or_with_a_bad_window_reads_nothing(
    province: Province, manager: FlaskClient, fields: dict[str, str], message: str
) -> None:
    province.add_site("market-a")
    status, body, _ = export(manager, **fields)
    page = body.decode()
    assert status == 400
    assert message in page
    assert " / " in re.search(r'<ul class="problems"[^>]*>(.*?)</ul>', page, re.S).group(1)  # type: ignore[union-attr]
    assert audit_rows(province) == []


def test_the_databases_stricter_window_limit_wins_and_its_refusal_is_a_page(
    province: Province, manager: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    province.add_site("market-a")
    province.query("UPDATE province.export_policy SET window_max_days = 1 RETURNING 1")
    two_days = {"from": "2026-03-08T00:00"}
    status, body, _ = export(manager, **two_days)
    assert status == 400
    assert "The window is longer than 1 days." in body.decode()
    # Were the web to let it through, the database refuses it, with its own words.
    monkeypatch.setattr(province_export, "_max_days", lambda: 31)
    status, body, _ = export(manager, **two_days)
    assert status == 400
    page = body.decode()
    assert "Khoảng thời gian dài quá 1 ngày. / The window is longer than 1 days." in page
    assert audit_rows(province) == []


def test_only_managers_export_and_read_the_requests(province: Province, app: Flask) -> None:
    guard = app.test_client()
    log_in(guard, "guard")
    assert guard.get("/").status_code == 200
    assert guard.get("/export").status_code == 403
    assert guard.get("/requests").status_code == 403


def test_the_requests_page_shows_who_asked_and_why(
    province: Province, app: Flask, manager: FlaskClient
) -> None:
    province.add_site("market-a")
    assert export(manager, reason="Truy vết <b>ca 7</b>")[0] == 200
    page = manager.get("/requests").get_data(as_text=True)
    assert "manager1" in page
    assert "Truy vết &lt;b&gt;ca 7&lt;/b&gt;" in page
    assert "10/03/2026 00:00" in page
    # Its entries were read: the cell shows when, not "not read".
    read_cells = re.findall(r'<td class="read">(.*?)</td>', page, re.S)
    assert len(read_cells) == 1
    assert re.search(r"\d\d/\d\d/\d{4} \d\d:\d\d", read_cells[0])
    # A request audited but never read shows so.
    web: ProvinceWeb = app.extensions["gatekiosk_province"]
    with web.connect() as conn:
        dashboard.open_window(
            conn,
            dashboard.WindowRequest(
                actor="manager1",
                reason="Mở rồi bỏ",
                site_id="market-a",
                start=datetime(2026, 3, 10, tzinfo=UTC),
                end=datetime(2026, 3, 11, tzinfo=UTC),
                fmt="csv",
                zone="Asia/Ho_Chi_Minh",
            ),
        )
    page = manager.get("/requests").get_data(as_text=True)
    read_cells = re.findall(r'<td class="read">(.*?)</td>', page, re.S)
    assert len(read_cells) == 2
    assert "not read" in read_cells[0]


def test_the_webs_login_cannot_read_events_nor_write_events_sites_or_audit(
    province: Province, app: Flask, reader_dsn: str
) -> None:
    province.add_site("market-a")
    web: ProvinceWeb = app.extensions["gatekiosk_province"]
    assert web.dsn == reader_dsn
    statements = (
        "SELECT id FROM province.events",
        "INSERT INTO province.events (site_id, id, at_utc, utc_offset_min, gate_id, boot_id, "
        "seq, clock_synced, direction, decision, reason, kind, override) VALUES ('market-a', "
        "'forged', now(), 0, 'g', 'b', 1, true, 'in', 'allow', 'ok', 'cccd', false)",
        "UPDATE province.sites SET name = 'renamed'",
        "DELETE FROM province.audit",
        "UPDATE province.audit SET reason = ''",
        "INSERT INTO province.hourly VALUES ('market-a', now(), 1, 0, 0)",
    )
    for statement in statements:
        with web.connect() as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement.encode())
    assert province.query("SELECT name FROM province.sites") == [("Site market-a",)]


def test_a_site_name_with_html_is_shown_as_text(province: Province, manager: FlaskClient) -> None:
    province.add_site("market-a")
    province.query("UPDATE province.sites SET name = %s RETURNING id", (HOSTILE_NAME,))
    for path in ("/", "/sites/market-a", "/ratings", "/export"):
        page = manager.get(path).get_data(as_text=True)
        assert "<script>alert" not in page, path
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Chợ &amp; Co" in page, path


@pytest.mark.parametrize(
    "path",
    [
        "/log",
        "/export.csv",
        "/api/live",
        "/settings",
        "/users",
        "/display",
        "/site/gates",
        "/inside",
    ],
)
def test_province_mode_has_no_gate_pages(manager: FlaskClient, path: str) -> None:
    assert manager.get(path).status_code == 404


def test_login_leads_to_the_site_list(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/").headers["Location"].startswith("/login")
    token = csrf_token(client)
    response = client.post(
        "/login", data={"name": "manager1", "password": PASSWORDS["manager"], "csrf_token": token}
    )
    assert response.headers["Location"] == "/"
    page = client.get("/nowhere").get_data(as_text=True)
    assert 'id="way-back"' in page


def test_the_window_export_neutralises_formulas_and_keeps_bilingual_headers() -> None:
    event = dashboard.WindowEvent(
        site_id="market-a",
        id="e1",
        at=datetime(2026, 3, 10, 1, 0, tzinfo=UTC),
        utc_offset_min=420,
        gate_id='=HYPERLINK("http://evil","x")',
        boot_id="boot",
        seq=7,
        clock_synced=True,
        direction="in",
        decision="deny",
        reason="expired",
        kind="cccd",
        subject_hash="h",
        province_subject_hash=None,
        override=False,
        warning="@SUM(1)",
        received_at=datetime(2026, 3, 10, 1, 0, 5, tzinfo=UTC),
    )
    body = b"".join(iter_window_csv([event], tz=TZ, lang="vi"))
    assert body.startswith(b"\xef\xbb\xbf")
    header, row = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert header[3] == "Cổng / Gate"
    assert row[0] == "2026-03-10 08:00:00"
    assert row[3] == '\'=HYPERLINK("http://evil","x")'
    assert row[11] == "'@SUM(1)"
    assert row[4:6] == ["vào", "từ chối"]
    assert row[9] == ""


def test_province_web_refuses_to_start_without_a_reader_dsn(tmp_path: Path) -> None:
    config = tmp_path / "province.toml"
    config.write_text(f'[gate]\ndata_dir = "{tmp_path.as_posix()}"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["province", "web", "--config", str(config)])
    assert result.exit_code == 1
    assert "province_web.dsn is empty" in result.output


def test_a_site_is_scanning_only_when_heard_from_lately_with_events_today() -> None:
    now = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
    busy, idle = dashboard.Counts(1, 0, 0), dashboard.Counts()
    window = dashboard.SCANNING_WINDOW
    assert dashboard.site_state(now - window, busy, now=now) == dashboard.SCANNING
    assert dashboard.site_state(now - window - timedelta(seconds=1), busy, now=now) == (
        dashboard.QUIET
    )
    assert dashboard.site_state(now, idle, now=now) == dashboard.QUIET
    assert dashboard.site_state(None, busy, now=now) == dashboard.NEVER_HEARD
