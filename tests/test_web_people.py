"""The pages as people read them (issue 15): words instead of codes, one date
format, the product's own error pages, and people counted once."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from flask.testing import FlaskClient

from kiosk.clock import FakeClock
from kiosk.exporting import export_to_file
from kiosk.store import EventFilter, Store
from tests.test_i18n import speaking, text
from tests.web import record


def visible(html: str) -> str:
    """The page's text without tags and attributes (a tooltip is not what people read)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]*>", " ", html))


# ----------------------------------------------------------------------------- item 9


def test_log_shows_kinds_and_reasons_in_words_with_codes_in_tooltips(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock, kind="pc-covid", decision="deny", reason="denylisted")
    page = text(speaking(manager, None), "/log")
    words = visible(page)
    assert "Mã QR cá nhân (PC-Covid)" in words
    assert "Không được phép vào" in words
    assert "pc-covid" not in words
    assert "denylisted" not in words
    assert 'title="pc-covid"' in page  # the code is still there for support
    assert 'title="denylisted"' in page


def test_override_and_manual_read_as_one_word(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock, kind="override", reason="override", override=True)
    record(web_store, clock, kind="manual", reason="manual-admit", override=True)
    words = visible(text(speaking(manager, None), "/log?kind=override"))
    assert "Bảo vệ cho vào" in words
    both = visible(text(speaking(manager, None), "/log"))
    rows = re.findall(r"Bảo vệ cho vào Bảo vệ cho phép vào", both)
    assert len(rows) == 2  # the same kind word, then the same reason, for both


def test_dashboard_refusals_show_words_not_codes(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock, decision="deny", reason="sitecode-expired")
    page = text(speaking(manager, None), "/")
    assert "Mã đã hết hạn" in visible(page)
    assert "sitecode-expired" not in visible(page)
    assert 'title="sitecode-expired"' in page


def test_audit_shows_actions_and_details_in_words_and_local_time(
    manager: FlaskClient, web_store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    where = EventFilter(
        start=datetime(2026, 1, 5, 1, 0, tzinfo=UTC), end=datetime(2026, 1, 6, 1, 0, tzinfo=UTC)
    )
    export_to_file(
        web_store,
        where,
        fmt="csv",
        path=tmp_path / "out.csv",
        tz=ZoneInfo("Asia/Ho_Chi_Minh"),
        actor="cli:root",
        at=clock.now(),
    )
    page = text(speaking(manager, None), "/audit")
    words = visible(page)
    assert "Xuất nhật ký" in words
    assert "Định dạng: CSV" in words
    assert "Đầy đủ: có" in words
    assert "Từ: 05/01/2026 08:00:00" in words  # 01:00 UTC in Ho Chi Minh City
    for raw in ("format: csv", "complete: true", "2026-01-05T01:00"):
        assert raw not in words
    assert 'title="export"' in page


def test_settings_change_reads_label_old_and_new(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    web_store.audit(
        actor="boss",
        action="settings",
        detail={"policy.capacity": {"old": 0, "new": 80}},
        at=clock.now(),
    )
    words = visible(text(speaking(manager, "en"), "/audit"))
    assert "Changed settings" in words
    assert "Capacity: 0 → 80" in words


# ----------------------------------------------------------------------------- item 12


def test_settings_labels_are_words_and_kinds_have_no_comma_hint(manager: FlaskClient) -> None:
    page = text(speaking(manager, None), "/settings")
    words = visible(page)
    assert "gate.id" not in words
    assert 'title="gate.id"' in page
    assert "dấu phẩy" not in words
    assert "entry (vào)" not in words
    for path in ("/", "/inside"):
        assert "trong trong" not in visible(text(manager, path))


# ----------------------------------------------------------------------------- item 13


def test_dates_read_day_month_year_in_24_hours(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock, at=datetime(2026, 1, 5, 13, 5, tzinfo=UTC))
    for language in (None, "en"):
        words = visible(text(speaking(manager, language), "/log"))
        assert "05/01/2026 20:05:00" in words
        assert "2026-01-05" not in words
        assert " PM" not in words


def test_date_pickers_follow_the_page_language(manager: FlaskClient) -> None:
    for language, code in ((None, "vi"), ("en", "en")):
        page = text(speaking(manager, language), "/log")
        pickers = re.findall(r'<input type="datetime-local"[^>]*>', page)
        assert pickers
        assert all(f'lang="{code}"' in picker for picker in pickers)


# ----------------------------------------------------------------------------- item 11


def test_not_found_is_the_products_page_in_vietnamese_with_a_way_back(
    manager: FlaskClient,
) -> None:
    response = speaking(manager, None).get("/no-such-page")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "Không tìm thấy trang" in page
    assert re.search(r'<a href="/" id="way-back">', page)
    assert "Nhật ký" in page  # the menu is there
    assert "Not Found" not in page


def test_forbidden_is_the_products_page_for_a_guard(guard: FlaskClient) -> None:
    response = speaking(guard, "en").get("/settings")
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "Not allowed" in page
    assert "Back to the dashboard" in page
    assert "Forbidden" not in page


def test_not_found_before_login_leads_to_the_login_page(client: FlaskClient) -> None:
    response = speaking(client, "en").get("/no-such-page")
    assert response.status_code == 404
    assert "Go to the login page" in response.get_data(as_text=True)


def test_the_api_keeps_its_small_error_answers(manager: FlaskClient) -> None:
    response = manager.get("/api/no-such-thing")
    assert response.status_code == 404
    assert "Page not found" not in response.get_data(as_text=True)


# ----------------------------------------------------------------------------- item 16

HCM = ZoneInfo("Asia/Ho_Chi_Minh")


def test_who_was_inside_counts_a_person_with_two_stays_once(
    guard: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    person = {"display_name": "Nguyễn Văn An", "subject_hash": "p" * 32}
    for hour, direction in ((8, "in"), (9, "out"), (10, "in"), (11, "out")):
        at = datetime(2026, 1, 5, hour, 0, tzinfo=HCM)
        record(web_store, clock, at=at, direction=direction, **person)
    html = text(guard, "/inside?from=2026-01-05T07:00&to=2026-01-05T12:00")
    assert "1 person" in html
    assert html.count("Nguyễn Văn An") == 1
    assert "05/01/2026 08:00" in html
    assert "05/01/2026 10:00" in html  # both stays are listed in the one row
    assert 'id="same-person-help"' in html


def test_a_declaration_and_an_id_card_are_two_people_marked_same_name(
    guard: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    at = datetime(2026, 1, 5, 8, 0, tzinfo=HCM)
    record(
        web_store,
        clock,
        at=at,
        kind="declaration",
        subject_hash="d" * 32,
        display_name="Nguyen Van An",
        masked_id=None,
    )
    record(
        web_store, clock, at=at, kind="cccd", subject_hash="c" * 32, display_name="Nguyễn Văn An"
    )
    record(
        web_store, clock, at=at, kind="cccd", subject_hash="e" * 32, display_name="Trần Thị Bình"
    )
    html = text(guard, "/inside?from=2026-01-05T07:00&to=2026-01-05T12:00")
    assert "3 people" in html
    assert html.count("(same name)") == 2


def test_occupancy_chart_counts_overlapping_stays_of_one_person_once() -> None:
    from datetime import timedelta

    from admin_web.dashboard import occupancy_points
    from kiosk.store import Visit

    start = datetime(2026, 1, 5, 0, 0, tzinfo=HCM)

    def stay(subject: str, enter_h: int, exit_h: int) -> Visit:
        return Visit(
            subject,
            None,
            None,
            start + timedelta(hours=enter_h),
            start + timedelta(hours=exit_h),
            f"{subject}{enter_h}",
        )

    points = occupancy_points(
        [stay("a", 8, 12), stay("a", 9, 10), stay("b", 9, 11)],
        start,
        start + timedelta(hours=13),
        timedelta(hours=12),
    )
    assert max(count for _hour, count in points) == 2
    assert points[-1] == (13.0, 0)
