"""The log, an event's detail, who was inside, and the exports, through the web."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

import kiosk.export.csv
from admin_web.forms import parse_local
from kiosk.clock import FakeClock
from kiosk.errors import StoreError
from kiosk.export import EXPORT_COLUMNS
from kiosk.exporting import export_to_file
from kiosk.messages import message_for
from kiosk.store import Event, EventFilter, Store
from tests.web import csrf_token, record

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
DAY = datetime(2026, 1, 5, tzinfo=UTC)
"""2026-01-05 00:00 UTC, which is 07:00 in Ho Chi Minh City."""

EVENT_ID = [c.key for c in EXPORT_COLUMNS].index("event_id")


def page(response: TestResponse) -> str:
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def log_rows(html: str) -> list[str]:
    """The event rows of the log page's table."""
    body = html.split('<table class="events log">', 1)[1].split("</table>", 1)[0]
    return [row for row in re.findall(r"<tr class=.*?</tr>", body, re.S)]


def event_ids(html: str) -> list[str]:
    return re.findall(r'href="/log/([0-9a-f]{32})"', html)


def ids_of(store: Store, **criteria: str) -> set[str]:
    return {e.id for e in store.find_events(EventFilter(), limit=1000) if _matches(e, criteria)}


def _matches(event: Event, criteria: dict[str, str]) -> bool:
    return all(getattr(event, name) == value for name, value in criteria.items())


@pytest.fixture
def mixed_log(web_store: Store, clock: FakeClock) -> Store:
    """Six events of different directions, decisions, reasons, kinds and people."""
    people: list[dict[str, Any]] = [
        dict(display_name="Nguyễn Văn An", masked_id="********0123", subject_hash="a" * 32),
        dict(
            direction="out",
            display_name="Trần Thị Bình",
            masked_id="********4567",
            subject_hash="b" * 32,
            reason="ok-exit",
        ),
        dict(
            decision="deny",
            reason="denylisted",
            display_name="Lê Văn Cường",
            masked_id="********8901",
            subject_hash="c" * 32,
        ),
        dict(
            decision="deny",
            reason="unrecognised",
            kind="unrecognised",
            display_name=None,
            masked_id=None,
            subject_hash=None,
        ),
        dict(kind="pc-covid", display_name="Phạm Đức Dũng", masked_id="******1122"),
        dict(kind="staff-pass", display_name="Nguyen Van Anh", subject_hash="d" * 32),
    ]
    for fields in people:
        record(web_store, clock, **fields)
        clock.advance(60)
    return web_store


# --------------------------------------------------------------------------- the log


@pytest.mark.parametrize(
    ("query", "criteria"),
    [
        ("direction=out", {"direction": "out"}),
        ("direction=in", {"direction": "in"}),
        ("decision=deny", {"decision": "deny"}),
        ("reason=denylisted", {"reason": "denylisted"}),
        ("kind=pc-covid", {"kind": "pc-covid"}),
        ("kind=unrecognised&decision=deny", {"kind": "unrecognised"}),
    ],
)
def test_each_filter_narrows_the_log(
    manager: FlaskClient, mixed_log: Store, query: str, criteria: dict[str, str]
) -> None:
    html = page(manager.get(f"/log?{query}"))
    expected = ids_of(mixed_log, **criteria)
    assert expected
    assert set(event_ids(html)) == expected
    assert f"{len(expected)} event" in html


def test_search_ignores_case_and_diacritics(manager: FlaskClient, mixed_log: Store) -> None:
    html = page(manager.get("/log?q=nguyen+van"))
    rows = log_rows(html)
    assert len(rows) == 2
    assert any("Nguyễn Văn An" in row for row in rows)
    assert any("Nguyen Van Anh" in row for row in rows)

    with_marks = log_rows(page(manager.get("/log?q=Nguyễn+Văn+An")))
    assert len(with_marks) == 2  # "Nguyen Van Anh" contains "nguyen van an" too

    assert len(log_rows(page(manager.get("/log?q=duc+dung")))) == 1  # đ is searched as d


def test_search_finds_part_of_the_masked_id(manager: FlaskClient, mixed_log: Store) -> None:
    rows = log_rows(page(manager.get("/log?q=4567")))
    assert len(rows) == 1
    assert "Trần Thị Bình" in rows[0]


def test_reason_filter_offers_the_reasons_in_the_log(
    manager: FlaskClient, mixed_log: Store
) -> None:
    html = page(manager.get("/log"))
    select = html.split('name="reason"', 1)[1].split("</select>", 1)[0]
    offered = re.findall(r'<option value="([^"]+)"', select)
    assert offered == ["denylisted", "ok", "ok-exit", "unrecognised"]
    assert message_for("denylisted").en in select


def test_times_are_shown_and_filtered_in_the_site_time_zone(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    late = datetime(2026, 1, 5, 23, 30, tzinfo=UTC)  # 06:30 on the 6th in Vietnam
    record(web_store, clock, at=late, display_name="Late Arrival")
    record(web_store, clock, at=late - timedelta(hours=12), display_name="Earlier")

    html = page(manager.get("/log"))
    assert "06/01/2026 06:30:00" in html

    morning = log_rows(page(manager.get("/log?from=2026-01-06T06:00&to=2026-01-06T07:00")))
    assert len(morning) == 1
    assert "Late Arrival" in morning[0]
    # 23:00 to midnight local is 16:00 to 17:00 UTC: neither event.
    evening = page(manager.get("/log?from=2026-01-05T23:00&to=2026-01-06T00:00"))
    assert log_rows(evening) == []
    assert "No events match this filter." in evening


def test_the_end_of_the_range_is_exclusive(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock, at=datetime(2026, 1, 5, 3, 0, tzinfo=UTC))  # 10:00 local
    assert log_rows(page(manager.get("/log?from=2026-01-05T09:00&to=2026-01-05T10:00"))) == []
    assert len(log_rows(page(manager.get("/log?from=2026-01-05T10:00&to=2026-01-05T10:01")))) == 1


def test_local_datetime_input_is_read_in_the_site_zone() -> None:
    assert parse_local("2026-01-06T06:30", HCM) == datetime(2026, 1, 5, 23, 30, tzinfo=UTC)
    assert parse_local("2026-01-06T06:30:15", HCM) == datetime(2026, 1, 5, 23, 30, 15, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a local date"):
        parse_local("06/01/2026", HCM)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=yesterday", "The start date and time was not understood and is ignored."),
        ("to=2026-13-45T99:99", "The end date and time was not understood and is ignored."),
        (
            "from=2026-01-06T10:00&to=2026-01-06T09:00",
            "The start must be before the end; the time range is ignored.",
        ),
        ("direction=sideways", "Unknown direction; it is ignored."),
        ("decision=maybe", "Unknown decision; it is ignored."),
        ("kind=passport", "Unknown code kind; it is ignored."),
        ("reason=%3Cscript%3E", "Unknown reason code; it is ignored."),
    ],
)
def test_invalid_filter_gives_a_message_and_is_ignored(
    manager: FlaskClient, mixed_log: Store, query: str, message: str
) -> None:
    html = page(manager.get(f"/log?{query}"))
    assert message in html
    assert len(log_rows(html)) == 6  # the bad field is ignored, not the whole log


def test_pages_of_fifty_with_links_that_keep_the_filter(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    for n in range(120):
        record(web_store, clock, display_name=f"Visitor {n:03d}", direction="in")
        clock.advance(1)
    for _ in range(5):
        record(web_store, clock, direction="out")
        clock.advance(1)

    first = page(manager.get("/log?direction=in"))
    assert "120 events" in first
    assert "page 1 of 3" in first
    assert len(log_rows(first)) == 50
    assert "Visitor 119" in first  # newest first

    nav = first.split('<nav class="pages', 1)[1].split("</nav>", 1)[0]
    links = [href.replace("&amp;", "&") for href in re.findall(r'href="([^"]+)"', nav)]
    assert links
    for link in links:
        assert parse_qs(urlsplit(link).query)["direction"] == ["in"]
    assert "/log?page=2&direction=in" in links

    last = page(manager.get("/log?direction=in&page=3"))
    assert len(log_rows(last)) == 20
    assert "Visitor 000" in last
    assert len(log_rows(page(manager.get("/log?direction=in&page=99")))) == 20  # clamped
    assert len(log_rows(page(manager.get("/log?direction=in&page=zero")))) == 50


HOSTILE_NAMES = [
    "<script>alert(1)</script>",
    "\u202eevil\u202c name",
    '"><img src=x onerror=alert(1)>',
    "x" * 10_000,
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=["script", "rtl", "attribute", "10kb"])
def test_hostile_names_are_shown_as_text(
    manager: FlaskClient, web_store: Store, clock: FakeClock, name: str
) -> None:
    record(web_store, clock, display_name=name, masked_id=name[:40])
    clock.advance(60)
    (event,) = web_store.find_events(EventFilter(), limit=1)
    pages = [
        page(manager.get("/log")),
        page(manager.get(f"/log/{event.id}")),
        page(manager.get("/inside")),
    ]
    for html in pages:
        assert "<script>alert" not in html
        assert "<img src=x" not in html
        assert "<bdi>" in html  # bidi controls in a name stay inside its own element
    detail = pages[1]
    assert "&lt;" in detail if "<" in name else name in detail


def test_event_detail_shows_every_field(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(
        web_store,
        clock,
        at=datetime(2026, 1, 5, 23, 30, 15, 123456, tzinfo=UTC),
        id_number="001099012345",
        override=True,
        actor="guard1",
        note="Delivery driver",
        warning="antipassback",
        gate_id="gate-north",
    )
    (event,) = web_store.find_events(EventFilter(), limit=1)
    html = page(manager.get(f"/log/{event.id}"))
    for text in (
        "06/01/2026 06:30:15",
        "2026-01-05T23:30:15.123456Z",
        "+07:00",
        "boot-1",
        "gate-north",
        "001099012345",
        "guard1",
        "Delivery driver",
        message_for("antipassback").en,
        "antipassback",
        message_for("ok").en,
        "cccd",
        "Nguyễn Văn An",
        "********0123",
    ):
        assert text in html, text
    assert 'id="unsynced"' not in html


def test_guards_never_see_a_full_id_number(
    guard: FlaskClient, manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    """With privacy.store_full_id on the log keeps the number: managers see it,
    guards the masked ID only (issue 14, finding 8)."""
    record(web_store, clock, id_number="001099012345")
    (event,) = web_store.find_events(EventFilter(), limit=1)
    detail = page(guard.get(f"/log/{event.id}"))
    assert "********0123" in detail
    for path in (f"/log/{event.id}", "/log", "/inside", "/", "/api/live"):
        assert "001099012345" not in guard.get(path).get_data(as_text=True), path
    assert "001099012345" in page(manager.get(f"/log/{event.id}"))


def test_id_number_row_only_when_stored(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock)
    (event,) = web_store.find_events(EventFilter(), limit=1)
    assert "ID number" not in page(manager.get(f"/log/{event.id}"))


def test_unsynchronised_events_are_flagged(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock, clock_synced=False)
    (event,) = web_store.find_events(EventFilter(), limit=1)
    detail = page(manager.get(f"/log/{event.id}"))
    assert 'id="unsynced"' in detail
    assert "The gate clock was not synchronised" in detail
    (row,) = log_rows(page(manager.get("/log")))
    assert "unsynced" in row
    assert "unsynchronised" in row


def test_unknown_event_is_404(manager: FlaskClient) -> None:
    assert manager.get("/log/" + "0" * 32).status_code == 404


def test_guard_reads_the_log_without_downloads_or_denylist(
    guard: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock)
    (event,) = web_store.find_events(EventFilter(), limit=1)
    html = page(guard.get("/log"))
    assert len(log_rows(html)) == 1
    assert "/export.csv" not in html
    detail = page(guard.get(f"/log/{event.id}"))
    assert 'id="denylist"' not in detail
    assert f"/log/{event.id}/denylist" not in detail


def test_the_log_needs_a_login(client: FlaskClient) -> None:
    response = client.get("/log")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


# --------------------------------------------------------------------------- denylist from an event


@pytest.fixture
def one_event(web_store: Store, clock: FakeClock) -> Event:
    record(web_store, clock, display_name="Lê Văn Cường", subject_hash="c" * 32)
    (event,) = web_store.find_events(EventFilter(), limit=1)
    return event


def test_manager_adds_the_person_of_an_event_to_the_denylist(
    manager: FlaskClient, web_store: Store, one_event: Event
) -> None:
    path = f"/log/{one_event.id}"
    assert f'action="{path}/denylist"' in page(manager.get(path))
    token = csrf_token(manager, path)
    response = manager.post(
        f"{path}/denylist", data={"note": "Stole a pallet", "csrf_token": token}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == path
    assert web_store.is_denylisted("c" * 32)
    (entry,) = web_store.denylist_entries()
    assert (entry.label, entry.note, entry.added_by) == (
        "Lê Văn Cường",
        "Stole a pallet",
        "manager1",
    )
    audit = web_store.audit_entries(limit=1)[0]
    assert audit.action == "denylist-add"
    assert audit.actor == "manager1"
    assert audit.detail["event_id"] == one_event.id
    assert audit.detail["note"] == "Stole a pallet"
    html = page(manager.get(path))
    assert 'id="already-denied"' in html
    assert "Added to the denylist." in html


def test_denylist_needs_a_note(manager: FlaskClient, web_store: Store, one_event: Event) -> None:
    path = f"/log/{one_event.id}"
    token = csrf_token(manager, path)
    response = manager.post(f"{path}/denylist", data={"note": "  ", "csrf_token": token})
    assert response.status_code == 400
    assert "Write a note saying why this person is denied." in response.get_data(as_text=True)
    assert not web_store.is_denylisted("c" * 32)


def test_guard_may_not_add_to_the_denylist(
    guard: FlaskClient, web_store: Store, one_event: Event
) -> None:
    path = f"/log/{one_event.id}"
    token = csrf_token(guard, path)
    response = guard.post(f"{path}/denylist", data={"note": "no", "csrf_token": token})
    assert response.status_code == 403
    assert not web_store.is_denylisted("c" * 32)


def test_denylist_without_csrf_token_is_refused(
    manager: FlaskClient, web_store: Store, one_event: Event
) -> None:
    response = manager.post(f"/log/{one_event.id}/denylist", data={"note": "Stole a pallet"})
    assert response.status_code == 400
    assert not web_store.is_denylisted("c" * 32)


def test_event_of_nobody_cannot_be_denylisted(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock, subject_hash=None, decision="deny", reason="unrecognised")
    (event,) = web_store.find_events(EventFilter(), limit=1)
    path = f"/log/{event.id}"
    assert 'id="denylist"' not in page(manager.get(path))
    token = csrf_token(manager, path)
    response = manager.post(f"{path}/denylist", data={"note": "x", "csrf_token": token})
    assert response.status_code == 400
    assert web_store.denylist_entries() == []


# --------------------------------------------------------------------------- who was inside


def inside_names(html: str) -> dict[str, str]:
    """Name -> exit cell text, from the who-was-inside table."""
    body = html.split('<table class="events inside">', 1)[1].split("</table>", 1)[0]
    found = {}
    for row in re.findall(r"<tr>\s*<td>.*?</tr>", body, re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        name = re.sub(r"<[^>]+>", "", cells[2]).strip()
        found[name] = re.sub(r"<[^>]+>", "", cells[1]).strip()
    return found


def test_who_was_inside_lists_everyone_whose_stay_overlapped_the_window(
    guard: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    def visit(name: str, hash_char: str, entered: str, exited: str | None) -> None:
        fields = dict(display_name=name, subject_hash=hash_char * 32)
        record(web_store, clock, at=parse_local(entered, HCM), **fields)
        if exited:
            record(web_store, clock, at=parse_local(exited, HCM), direction="out", **fields)

    visit("Before And Into", "a", "2026-01-05T08:00", "2026-01-05T09:30")
    visit("Left Before", "b", "2026-01-05T07:00", "2026-01-05T08:30")
    visit("No Exit", "c", "2026-01-05T09:15", None)
    visit("Through", "d", "2026-01-05T08:00", "2026-01-05T12:00")
    visit("After", "e", "2026-01-05T11:00", "2026-01-05T11:30")
    visit("Left Later", "f", "2026-01-05T10:30", "2026-01-05T13:00")
    clock.wall = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)  # 15:00 local

    html = page(guard.get("/inside?from=2026-01-05T09:00&to=2026-01-05T11:00"))
    listed = inside_names(html)
    assert set(listed) == {"Before And Into", "No Exit", "Through", "Left Later"}
    assert listed["Before And Into"] == "05/01/2026 09:30"
    assert listed["No Exit"] == "no exit recorded"
    assert listed["Left Later"] == "05/01/2026 13:00"  # an exit after the window still shows
    assert "4 people" in html
    assert 'id="print-page"' in html
    assert "print.css" in html
    assert "print.js" in html


def test_who_was_inside_defaults_to_today_until_now(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    clock.wall = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)  # 10:00 local
    record(
        web_store,
        clock,
        at=parse_local("2026-01-04T20:00", HCM),
        display_name="Yesterday",
        subject_hash="y" * 32,
    )
    record(
        web_store,
        clock,
        at=parse_local("2026-01-04T21:00", HCM),
        direction="out",
        display_name="Yesterday",
        subject_hash="y" * 32,
    )
    record(web_store, clock, at=parse_local("2026-01-05T08:00", HCM), display_name="Today")
    html = page(manager.get("/inside"))
    assert set(inside_names(html)) == {"Today"}
    assert 'value="2026-01-05T00:00"' in html
    assert 'value="2026-01-05T10:00"' in html


def test_who_was_inside_with_a_bad_date_uses_the_default(
    guard: FlaskClient, clock: FakeClock
) -> None:
    html = page(guard.get("/inside?from=banana"))
    assert "The start date and time was not understood and is ignored." in html
    assert "Nobody was inside in this time." in html


# --------------------------------------------------------------------------- exports


def parse_csv(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_csv_export_holds_the_filtered_rows(
    manager: FlaskClient, mixed_log: Store, clock: FakeClock
) -> None:
    record(mixed_log, clock, display_name='=HYPERLINK("http://evil","x")', subject_hash="e" * 32)
    response = manager.get("/export.csv?direction=in&decision=allow")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.mimetype_params["charset"] == "utf-8"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="gatekiosk-2026-01-05.csv"'
    )
    header, *rows = parse_csv(response.get_data())
    assert header[0] == "Local time (Asia/Ho_Chi_Minh, UTC+07:00)"
    expected = ids_of(mixed_log, direction="in", decision="allow")
    assert {row[EVENT_ID] for row in rows} == expected
    assert all(row[3] == "in" and row[4] == "allow" for row in rows)
    names = [row[7] for row in rows]
    assert '\'=HYPERLINK("http://evil","x")' in names
    assert "Nguyễn Văn An" in names

    audit = mixed_log.audit_entries(limit=1)[0]
    assert (audit.actor, audit.action, audit.row_count) == ("manager1", "export", len(rows))
    assert audit.detail == {
        "direction": "in",
        "decision": "allow",
        "format": "csv",
        "complete": True,
    }


def test_csv_export_of_a_date_range_audits_the_range(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock, at=datetime(2026, 1, 5, 23, 30, tzinfo=UTC))
    record(web_store, clock, at=datetime(2026, 1, 5, 12, 0, tzinfo=UTC))
    response = manager.get("/export.csv?from=2026-01-06T00:00&to=2026-01-07T00:00")
    _header, *rows = parse_csv(response.get_data())
    assert [row[0] for row in rows] == ["2026-01-06 06:30:00"]
    audit = web_store.audit_entries(limit=1)[0]
    assert audit.row_count == 1
    assert audit.detail["start"] == "2026-01-05T17:00:00+00:00"
    assert audit.detail["end"] == "2026-01-06T17:00:00+00:00"


def test_interrupted_csv_download_is_audited_as_incomplete(
    manager: FlaskClient, web_store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kiosk.export.csv.CSV_CHUNK_CHARS", 1)  # one chunk per row
    monkeypatch.setattr("kiosk.export.csv._STORE_CSV_BATCH", 1)  # (one line from SQLite at a time)
    for _ in range(5):
        record(web_store, clock)
    response = manager.get("/export.csv")
    chunks = iter(cast(Iterator[bytes], response.response))
    received = [next(chunks), next(chunks)]
    response.close()  # the client went away
    assert len(parse_csv(b"".join(received))) == 3  # header and two rows
    audit = web_store.audit_entries(limit=1)[0]
    assert audit.action == "export"
    assert audit.detail["complete"] is False
    assert audit.row_count == 2


def test_xlsx_export_holds_the_filtered_rows(
    app: Flask, manager: FlaskClient, mixed_log: Store
) -> None:
    response = manager.get("/export.xlsx?decision=deny")
    assert response.status_code == 200
    assert response.mimetype == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert "gatekiosk-2026-01-05.xlsx" in response.headers["Content-Disposition"]
    body = response.get_data()
    response.close()  # as a WSGI server does: closes the sent file
    workbook = openpyxl.load_workbook(io.BytesIO(body))
    rows = list(workbook["Events"].iter_rows(values_only=True))
    workbook.close()
    header, *data = rows
    assert header[0] == "Local time (Asia/Ho_Chi_Minh, UTC+07:00)"
    assert {row[EVENT_ID] for row in data} == ids_of(mixed_log, decision="deny")
    assert all(row[4] == "deny" for row in data)
    audit = mixed_log.audit_entries(limit=1)[0]
    assert (audit.action, audit.row_count) == ("export", 2)
    assert audit.detail == {"decision": "deny", "format": "xlsx", "complete": True}
    data_dir: Path = app.extensions["gatekiosk"].settings.data_dir
    assert not list(data_dir.glob("*.xlsx")), "the temporary workbook is removed"


@pytest.mark.parametrize("path", ["/export.csv", "/export.xlsx"])
def test_guards_may_not_export(guard: FlaskClient, web_store: Store, path: str) -> None:
    assert guard.get(path).status_code == 403
    assert all(entry.action != "export" for entry in web_store.audit_entries())


def test_export_with_a_bad_filter_exports_nothing(manager: FlaskClient, mixed_log: Store) -> None:
    response = manager.get("/export.csv?from=2026-99-01T00:00&direction=in")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/log?")
    assert all(entry.action != "export" for entry in mixed_log.audit_entries())
    html = page(manager.get(response.headers["Location"]))
    assert "The start date and time was not understood and is ignored." in html


def test_log_page_download_links_carry_the_filter(manager: FlaskClient, mixed_log: Store) -> None:
    html = page(manager.get("/log?decision=deny&q=van"))
    for link_id in ("download-csv", "download-xlsx"):
        href = re.search(rf'href="([^"]+)" id="{link_id}"', html)
        assert href
        query = parse_qs(urlsplit(href.group(1).replace("&amp;", "&")).query)
        assert query == {"decision": ["deny"], "q": ["van"]}


# --------------------------------------------------------------------------- export_to_file


@pytest.fixture
def filled_store(web_store: Store, clock: FakeClock) -> Store:
    for n in range(3):
        record(web_store, clock, display_name=f"Person {n}", direction="in" if n else "out")
        clock.advance(60)
    return web_store


def test_export_to_file_writes_csv_and_audits(filled_store: Store, tmp_path: Path) -> None:
    target = tmp_path / "out" / "log.csv"
    target.parent.mkdir()
    at = datetime(2026, 1, 6, tzinfo=UTC)
    rows = export_to_file(
        filled_store,
        EventFilter(direction="in"),
        fmt="csv",
        path=target,
        tz=HCM,
        actor="cli:root",
        at=at,
    )
    assert rows == 2
    _header, *data = parse_csv(target.read_bytes())
    assert [row[7] for row in data] == ["Person 1", "Person 2"]  # oldest first
    assert [p.name for p in target.parent.iterdir()] == ["log.csv"]
    audit = filled_store.audit_entries(limit=1)[0]
    assert (audit.actor, audit.action, audit.row_count, audit.at) == (
        "cli:root",
        "export",
        2,
        at,
    )
    assert audit.detail == {"direction": "in", "format": "csv", "complete": True}


def test_export_to_file_writes_xlsx(filled_store: Store, tmp_path: Path) -> None:
    target = tmp_path / "log.xlsx"
    rows = export_to_file(
        filled_store, EventFilter(), fmt="xlsx", path=target, tz=HCM, actor="cli:x", at=DAY
    )
    assert rows == 3
    workbook = openpyxl.load_workbook(target)
    assert workbook["Events"].max_row == 4
    workbook.close()


def failing_after_one(real: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """``real``, but the disk fails after its first item."""

    def failing(*args: Any, **kwargs: Any) -> Iterator[Any]:
        items = cast(Generator[Any, None, None], real(*args, **kwargs))
        yield next(items)
        items.close()
        raise StoreError("disk I/O error")

    return failing


def test_failed_export_to_file_leaves_no_partial_file(
    filled_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "log.csv"
    target.write_bytes(b"the previous export")
    # The CSV is read through the store's fast path, the XLSX as events:
    # either fails after its first batch.
    monkeypatch.setattr(filled_store, "iter_events", failing_after_one(filled_store.iter_events))
    lines = failing_after_one(kiosk.export.csv.iter_export_lines)
    monkeypatch.setattr(kiosk.export.csv, "iter_export_lines", lines)
    with pytest.raises(StoreError):
        export_to_file(
            filled_store, EventFilter(), fmt="csv", path=target, tz=HCM, actor="cli:x", at=DAY
        )
    assert target.read_bytes() == b"the previous export"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".log")] == []
    assert all(entry.action != "export" for entry in filled_store.audit_entries())


def test_export_to_file_refuses_an_unknown_format(filled_store: Store, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format must be one of"):
        export_to_file(
            filled_store,
            EventFilter(),
            fmt="pdf",
            path=tmp_path / "x.pdf",
            tz=HCM,
            actor="cli:x",
            at=DAY,
        )
    assert list(tmp_path.glob("*x.pdf*")) == []


def test_event_detail_shows_the_hcert_holders_birth_date_and_latin_name(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(
        web_store,
        clock,
        kind="hcert",
        display_name="Nguyễn Thị Mai",
        masked_id=None,
        birth_date="1990-04-12",
        name_latin="NGUYEN<script>",
    )
    record(web_store, clock, subject_hash="b" * 32)
    cccd, hcert = sorted(web_store.find_events(EventFilter(), limit=2), key=lambda e: e.kind)
    html = page(manager.get(f"/log/{hcert.id}"))
    assert "Date of birth" in html
    assert "12/04/1990" in html  # as an ID card prints it
    assert "Name (Latin)" in html
    assert "NGUYEN&lt;script&gt;" in html
    assert "<script>" not in html
    other = page(manager.get(f"/log/{cccd.id}"))
    assert 'id="birth-date"' not in other
    assert 'id="name-latin"' not in other
