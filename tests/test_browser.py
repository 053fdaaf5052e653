"""End to end in a real browser: Debian's Chromium, driven by Playwright, against
``gatekiosk web`` started as a user starts it, while this process records
events into the same database as the kiosk does.

Covers logging in, the live dashboard (and that a hostile name stays text),
filtering the log, downloading both exports and reading them, the gate
screen following the kiosk's decisions, the Content Security Policy holding
on every page, and the language switch. Screenshots of the dashboard and of
the gate screen (allow and deny) are saved to $GATEKIOSK_ARTIFACTS
(default: artifacts/ in the project).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openpyxl
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from kiosk.export.labels import cell_words
from tests.browser_fixtures import (
    CHROMIUM,
    CHROMIUM_ARGS,
    MANAGER,
    MANAGER_PASSWORD,
    Gate,
    PageWatch,
    artifacts_dir,
    spread_over_today,
    start_gate,
)

UI_TIMEOUT_MS = 10_000
"""Pages, clicks, downloads: generous, CI machines are loaded."""
LIVE_TIMEOUT_MS = 5_000
"""The dashboard polls every 0.5 s: a new event shows within a few seconds."""
SCREEN_TIMEOUT_MS = 3_000
"""The gate screen polls every 0.4 s and must answer a visitor in about a second or
two; 3 s leaves room for a loaded machine without hiding a screen that lags."""

UTF8_BOM = b"\xef\xbb\xbf"
LOCAL_TIME_HEADER = "Giờ địa phương (Asia/Ho_Chi_Minh, UTC+07:00)"
"""The exports follow the page's language: Vietnamese unless the user chose English."""
HOSTILE_NAME = "<img src=x onerror=alert(1)>"

ALLOW_BG = "rgb(11, 122, 46)"
DENY_BG = "rgb(176, 16, 32)"
"""The gate screen's --allow-bg and --deny-bg (admin_web/static/display.css)."""

pytestmark = pytest.mark.browser  # Chromium through Playwright: not in make test-quick


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    driver = sync_playwright().start()
    yield driver
    driver.stop()


@pytest.fixture(scope="module")
def chromium(playwright_driver: Playwright) -> Iterator[Browser]:
    browser = playwright_driver.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    """A fresh data folder, a manager, ``gatekiosk web`` running, the kiosk's health fresh."""
    gate = start_gate(tmp_path / "data")
    try:
        gate.start_heartbeat()
        yield gate
    finally:
        gate.close()


@pytest.fixture
def watch() -> PageWatch:
    return PageWatch()


@pytest.fixture
def page(chromium: Browser, watch: PageWatch) -> Iterator[Page]:
    """A page in a fresh context: Vietnamese browser, the site's time zone, downloads on."""
    context = chromium.new_context(
        accept_downloads=True,
        locale="vi-VN",
        timezone_id="Asia/Ho_Chi_Minh",
        viewport={"width": 1280, "height": 900},
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    context.set_default_navigation_timeout(UI_TIMEOUT_MS)
    try:
        page = context.new_page()
        watch.attach(page)
        yield page
    finally:
        context.close()


# --------------------------------------------------------------------------- helpers


def log_in(page: Page, gate: Gate, password: str = MANAGER_PASSWORD) -> None:
    page.goto(gate.url + "login")
    page.locator("input[name=name]").fill(MANAGER)
    page.locator("input[name=password]").fill(password)
    page.locator("main form button[type=submit]").click()


def logged_in(page: Page, gate: Gate) -> None:
    log_in(page, gate)
    expect(page).to_have_url(gate.url, timeout=UI_TIMEOUT_MS)


def names_in_log(page: Page) -> list[str]:
    return [name.strip() for name in page.locator("table.log tbody td.name").all_inner_texts()]


def screenshot(page: Page, name: str) -> Path:
    path = artifacts_dir() / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    return path


def seed_day(gate: Gate) -> None:
    """A morning at the gate: entries, exits and refusals over the last few hours."""
    now = datetime.now(UTC)
    visitors = [
        ("Nguyễn Văn An", 3.0, 1.0),
        ("Trần Thị Bích", 2.5, None),
        ("Phạm Minh Đức", 2.0, 0.5),
        ("Hoàng Thị Thu Hà", 1.5, None),
        ("Võ Quốc Khánh", 1.0, None),
    ]
    for name, entered_h, exited_h in visitors:
        gate.record(name, at=spread_over_today(entered_h, now=now))
        if exited_h is not None:
            gate.record(
                name,
                at=spread_over_today(exited_h, now=now),
                direction="out",
                reason="ok-exit",
            )
    gate.record(
        "Lê Văn Cường",
        at=spread_over_today(2.2, now=now),
        decision="deny",
        reason="denylisted",
    )
    gate.record(
        None,
        at=spread_over_today(0.8, now=now),
        decision="deny",
        reason="unrecognised",
        kind="unrecognised",
        subject_hash=None,
        masked_id=None,
    )


def seed_log(gate: Gate) -> None:
    """Two allowed entries and two refusals, a minute apart, in the last few minutes."""
    now = datetime.now(UTC)
    gate.record("Nguyễn Văn An", at=now - timedelta(minutes=4))
    gate.record("Lê Văn Cường", at=now - timedelta(minutes=3), decision="deny", reason="denylisted")
    gate.record("Trần Thị Bích", at=now - timedelta(minutes=2))
    gate.record(
        "Đặng Thị Ngọc Ánh",
        at=now - timedelta(minutes=1),
        decision="deny",
        reason="kind-not-allowed",
        kind="pc-covid",
    )


# --------------------------------------------------------------------------- tests


def test_log_in_and_watch_the_live_feed(page: Page, gate: Gate, watch: PageWatch) -> None:
    seed_day(gate)

    page.goto(gate.url)
    expect(page).to_have_url(re.compile(r"/login\?next=/$"), timeout=UI_TIMEOUT_MS)

    log_in(page, gate, password="not the password")
    expect(page.locator("p.flash.error")).to_have_text(
        "Sai tên đăng nhập hoặc mật khẩu.", timeout=UI_TIMEOUT_MS
    )
    expect(page).to_have_url(gate.url + "login", timeout=UI_TIMEOUT_MS)
    expect(page.locator("#live-events")).to_have_count(0)

    log_in(page, gate)
    expect(page).to_have_url(gate.url, timeout=UI_TIMEOUT_MS)
    live = page.locator("#live-events tbody tr")
    expect(live).to_have_count(9, timeout=UI_TIMEOUT_MS)
    expect(page.locator("#entries")).to_have_text("5", timeout=UI_TIMEOUT_MS)
    expect(page.locator("#refused")).to_have_text("2", timeout=UI_TIMEOUT_MS)
    expect(page.locator(".charts svg")).to_have_count(2, timeout=UI_TIMEOUT_MS)

    # The kiosk admits someone while the page is open: the row appears, no reload.
    gate.record("Bùi Thị Xuân")
    newest = live.first
    expect(newest.locator("td").nth(3)).to_have_text("Bùi Thị Xuân", timeout=LIVE_TIMEOUT_MS)
    expect(newest).to_have_class(re.compile(r"\ballow\b"), timeout=LIVE_TIMEOUT_MS)
    expect(live).to_have_count(10, timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#entries")).to_have_text("6", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#occupancy")).to_have_text("4", timeout=LIVE_TIMEOUT_MS)

    # A name printed on a QR code is text, never markup, live or rendered.
    gate.record(HOSTILE_NAME, decision="deny", reason="unrecognised", kind="unrecognised")
    expect(live.first.locator("td").nth(3)).to_have_text(HOSTILE_NAME, timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#refused")).to_have_text("3", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("main img")).to_have_count(0)
    page.reload()
    expect(live.first.locator("td").nth(3)).to_have_text(HOSTILE_NAME, timeout=UI_TIMEOUT_MS)
    expect(page.locator("main img")).to_have_count(0)

    screenshot(page, "dashboard.png")
    watch.collect_csp_events(page)
    watch.assert_clean()


def test_dashboard_shows_a_camera_fault_as_it_happens(
    page: Page, gate: Gate, watch: PageWatch
) -> None:
    gate.start_heartbeat()
    logged_in(page, gate)
    state, camera = page.locator("#health-state"), page.locator("#health-camera")
    expect(state).to_have_attribute("data-fault", "", timeout=UI_TIMEOUT_MS)
    expect(state).to_have_class("good")
    ready = state.inner_text()

    # The camera cable is pulled while the page is open: no reload needed.
    gate.report(camera_ok=False, camera_detail="no frame for 1.0 s", fault="camera")
    expect(state).to_have_attribute("data-fault", "camera", timeout=LIVE_TIMEOUT_MS)
    expect(state).to_have_class("bad")
    expect(camera).to_have_text("synthetic (no frame for 1.0 s)", timeout=LIVE_TIMEOUT_MS)
    expect(camera).to_have_class("bad")
    live_text = state.inner_text()
    page.reload()  # what the page itself says, in the same words
    expect(state).to_have_text(live_text, timeout=UI_TIMEOUT_MS)
    assert live_text != ready

    gate.report()  # plugged back in
    expect(state).to_have_attribute("data-fault", "", timeout=LIVE_TIMEOUT_MS)
    expect(state).to_have_text(ready)
    expect(camera).to_have_class("good")
    watch.collect_csp_events(page)
    watch.assert_clean()


def test_log_filters_by_decision_and_text(page: Page, gate: Gate, watch: PageWatch) -> None:
    seed_log(gate)
    logged_in(page, gate)

    page.goto(gate.url + "log")
    rows = page.locator("table.log tbody tr")
    expect(rows).to_have_count(4, timeout=UI_TIMEOUT_MS)

    page.locator("select[name=decision]").select_option("deny")
    page.locator("form.filters button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"[?&]decision=deny\b"), timeout=UI_TIMEOUT_MS)
    expect(rows).to_have_count(2, timeout=UI_TIMEOUT_MS)
    assert sorted(names_in_log(page)) == ["Lê Văn Cường", "Đặng Thị Ngọc Ánh"]
    for index in range(2):
        expect(rows.nth(index)).to_have_class(re.compile(r"\bdeny\b"))

    # Search ignores case and diacritics, and keeps the decision filter.
    page.locator("input[name=q]").fill("cuong")
    page.locator("form.filters button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"[?&]q=cuong\b"), timeout=UI_TIMEOUT_MS)
    expect(rows).to_have_count(1, timeout=UI_TIMEOUT_MS)
    assert names_in_log(page) == ["Lê Văn Cường"]
    expect(page.locator("select[name=decision]")).to_have_value("deny")

    # Text alone finds the allowed one too.
    page.locator("select[name=decision]").select_option("")
    page.locator("input[name=q]").fill("nguyen van")
    page.locator("form.filters button[type=submit]").click()
    expect(rows).to_have_count(1, timeout=UI_TIMEOUT_MS)
    assert names_in_log(page) == ["Nguyễn Văn An"]

    watch.collect_csp_events(page)
    watch.assert_clean()


def test_download_exports_of_the_filtered_log(
    page: Page, gate: Gate, watch: PageWatch, tmp_path: Path
) -> None:
    seed_log(gate)
    logged_in(page, gate)
    page.goto(gate.url + "log")
    page.locator("select[name=decision]").select_option("deny")
    page.locator("form.filters button[type=submit]").click()
    expect(page.locator("table.log tbody tr")).to_have_count(2, timeout=UI_TIMEOUT_MS)

    with page.expect_download(timeout=UI_TIMEOUT_MS) as csv_download:
        page.locator("#download-csv").click()
    download = csv_download.value
    assert re.fullmatch(r"gatekiosk-\d{4}-\d{2}-\d{2}\.csv", download.suggested_filename)
    csv_path = tmp_path / download.suggested_filename
    download.save_as(csv_path)
    raw = csv_path.read_bytes()
    assert raw.startswith(UTF8_BOM)
    rows = list(csv.reader(io.StringIO(raw[len(UTF8_BOM) :].decode("utf-8"), newline="")))
    header, body = rows[0], rows[1:]
    assert header[0] == LOCAL_TIME_HEADER
    name_at, decision_at = header.index("Họ tên"), header.index("Quyết định")
    # Exactly what the page listed: the two refusals, their names intact.
    assert sorted(row[name_at] for row in body) == ["Lê Văn Cường", "Đặng Thị Ngọc Ánh"]
    assert {row[decision_at] for row in body} == {cell_words("vi").decision("deny")}
    assert "Nguyễn Văn An".encode() not in raw

    with page.expect_download(timeout=UI_TIMEOUT_MS) as xlsx_download:
        page.locator("#download-xlsx").click()
    download = xlsx_download.value
    assert re.fullmatch(r"gatekiosk-\d{4}-\d{2}-\d{2}\.xlsx", download.suggested_filename)
    xlsx_path = tmp_path / download.suggested_filename
    download.save_as(xlsx_path)
    workbook = openpyxl.load_workbook(xlsx_path)
    try:
        sheet = workbook.active
        assert sheet is not None
        cells = [list(row) for row in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()
    assert cells[0][0] == LOCAL_TIME_HEADER
    names = sorted(str(row[cells[0].index("Họ tên")]) for row in cells[1:])
    assert names == ["Lê Văn Cường", "Đặng Thị Ngọc Ánh"]

    watch.collect_csp_events(page)
    watch.assert_clean()


def test_gate_screen_follows_the_kiosk(page: Page, gate: Gate, watch: PageWatch) -> None:
    page.set_viewport_size({"width": 1024, "height": 600})  # the Pi's 7" touchscreen
    page.goto(gate.url + "display")  # from 127.0.0.1: no login needed
    body = page.locator("body")
    # The first poll has answered: the kiosk is healthy, nobody inside, the prompt shows.
    expect(page.locator("#occupancy")).to_have_text("0", timeout=UI_TIMEOUT_MS)
    expect(body).to_have_attribute("data-state", "idle", timeout=UI_TIMEOUT_MS)
    expect(page.locator("#idle .vi")).to_have_text("Đưa mã QR vào camera")
    expect(page.locator("#idle .vi")).to_be_visible()

    # A decision shows for 5 s: screenshot it first, then look closer.
    gate.record("Nguyễn Văn An")
    expect(body).to_have_attribute("data-state", "allow", timeout=SCREEN_TIMEOUT_MS)
    expect(page.locator("#name")).to_have_text("N. V. An", timeout=SCREEN_TIMEOUT_MS)
    expect(page.locator("#occupancy")).to_have_text("1", timeout=SCREEN_TIMEOUT_MS)
    expect(body).to_have_css("background-color", ALLOW_BG, timeout=SCREEN_TIMEOUT_MS)
    screenshot(page, "gate-screen-allow.png")
    assert body.get_attribute("data-state") == "allow", "the screenshot may show another state"
    expect(page.locator("#message-vi")).to_have_text("Mời vào")
    expect(page.locator("#message-en")).to_have_text("Welcome, please enter")
    expect(page.locator("#decision .direction .in")).to_be_visible()
    expect(page.locator("#decision .icon.yes")).to_be_visible()
    expect(page.locator("#idle")).to_be_hidden()
    assert "Nguyễn" not in body.inner_text()  # the queue sees initials only

    # The next decision replaces it at once: a refusal names the person by initials...
    gate.record("Lê Văn Cường", decision="deny", reason="antipassback")
    expect(body).to_have_attribute("data-state", "deny", timeout=SCREEN_TIMEOUT_MS)
    expect(page.locator("#name")).to_have_text("L. V. Cường", timeout=SCREEN_TIMEOUT_MS)
    # ...with no "VÀO · ENTRY" above the red cross: nobody enters.
    expect(page.locator("#decision .direction")).to_have_css("visibility", "hidden")

    # A denylist refusal, in front of the queue, shows no identity at all.
    gate.record("Lê Văn Cường", decision="deny", reason="denylisted")
    expect(page.locator("#message-vi")).to_have_text(
        "Không được phép vào. Vui lòng gặp bảo vệ", timeout=SCREEN_TIMEOUT_MS
    )
    expect(page.locator("#name")).to_be_hidden()
    assert "Cường" not in body.inner_text()
    expect(body).to_have_css("background-color", DENY_BG, timeout=SCREEN_TIMEOUT_MS)
    screenshot(page, "gate-screen-deny.png")
    assert body.get_attribute("data-state") == "deny", "the screenshot may show another state"
    expect(page.locator("#message-vi")).to_have_text("Không được phép vào. Vui lòng gặp bảo vệ")
    expect(page.locator("#message-en")).to_have_text("Entry not permitted. Please see the guard")
    expect(page.locator("#decision .icon.no")).to_be_visible()
    expect(page.locator("#decision .icon.yes")).to_be_hidden()

    watch.collect_csp_events(page)
    watch.assert_clean()


def test_gate_screen_shows_a_vaccine_passport_holders_identity(
    page: Page, gate: Gate, watch: PageWatch
) -> None:
    page.goto(gate.url + "display")
    body = page.locator("body")
    expect(body).to_have_attribute("data-state", "idle", timeout=UI_TIMEOUT_MS)

    # HC1: the guard compares the full name, Latin name and birth date with an ID card.
    gate.record(
        "Nguyễn Thị Mai",
        kind="hcert",
        masked_id=None,
        birth_date="1990-04-12",
        name_latin="NGUYEN THI MAI",
    )
    expect(body).to_have_attribute("data-state", "allow", timeout=SCREEN_TIMEOUT_MS)
    expect(page.locator("#name")).to_have_text("Nguyễn Thị Mai", timeout=SCREEN_TIMEOUT_MS)
    expect(page.locator("#identity")).to_have_text("NGUYEN THI MAI · 12/04/1990")
    expect(page.locator("#identity")).to_be_visible()

    # Any other kind: the masked name only, and no identity line.
    gate.record("Lê Văn Cường")
    expect(page.locator("#name")).to_have_text("L. V. Cường", timeout=SCREEN_TIMEOUT_MS)
    expect(page.locator("#identity")).to_be_hidden()

    watch.collect_csp_events(page)
    watch.assert_clean()


def test_content_security_policy_holds(page: Page, gate: Gate, watch: PageWatch) -> None:
    seed_day(gate)
    logged_in(page, gate)

    # Dashboard, with its charts and the live feed's script at work.
    gate.record("Trần Thị Bích", decision="deny", reason="denylisted")
    expect(page.locator("#live-events tbody tr").first.locator("td").nth(3)).to_have_text(
        "Trần Thị Bích", timeout=LIVE_TIMEOUT_MS
    )
    watch.collect_csp_events(page)

    page.goto(gate.url + "log?decision=deny")
    expect(page.locator("table.log tbody tr")).to_have_count(3, timeout=UI_TIMEOUT_MS)
    watch.collect_csp_events(page)

    page.goto(gate.url + "display")
    expect(page.locator("#occupancy")).to_have_text("3", timeout=UI_TIMEOUT_MS)
    gate.record("Võ Quốc Khánh", direction="out", reason="ok-exit")
    expect(page.locator("body")).to_have_attribute("data-state", "allow", timeout=SCREEN_TIMEOUT_MS)
    expect(page.locator("#occupancy")).to_have_text("2", timeout=SCREEN_TIMEOUT_MS)
    watch.collect_csp_events(page)

    assert watch.csp_violations == [], watch.csp_violations
    assert watch.page_errors == [], watch.page_errors
    # Chromium asks every site for /favicon.ico; the app has none (a 404, harmless).
    errors = [line for line in watch.console_errors if "/favicon.ico" not in line]
    assert errors == [], errors
    assert watch.dialogs == [], watch.dialogs


def test_language_switch(page: Page, gate: Gate, watch: PageWatch) -> None:
    logged_in(page, gate)
    html = page.locator("html")
    english = page.locator(".topbar .tools button[lang=en]")
    vietnamese = page.locator(".topbar .tools button[lang=vi]")
    nav = page.locator(".topbar nav a")
    expect(html).to_have_attribute("lang", "vi", timeout=UI_TIMEOUT_MS)
    expect(vietnamese).to_have_class(re.compile(r"\bcurrent\b"))
    expect(nav.first).to_have_text("Tổng quan")

    page.get_by_role("button", name="English").click()
    expect(html).to_have_attribute("lang", "en", timeout=UI_TIMEOUT_MS)
    expect(page).to_have_url(gate.url, timeout=UI_TIMEOUT_MS)
    expect(english).to_have_class(re.compile(r"\bcurrent\b"))
    expect(nav.first).to_have_text("Dashboard")
    expect(nav.nth(1)).to_have_text("Log")

    # The choice stays for the session, on every page.
    nav.nth(1).click()
    expect(page).to_have_url(gate.url + "log", timeout=UI_TIMEOUT_MS)
    expect(html).to_have_attribute("lang", "en")
    expect(page.locator("h1")).to_have_text("Log")

    page.get_by_role("button", name="Tiếng Việt").click()
    expect(html).to_have_attribute("lang", "vi", timeout=UI_TIMEOUT_MS)
    expect(page).to_have_url(gate.url + "log", timeout=UI_TIMEOUT_MS)
    expect(vietnamese).to_have_class(re.compile(r"\bcurrent\b"))
    expect(nav.first).to_have_text("Tổng quan")
    expect(page.locator("h1")).to_have_text("Nhật ký ra vào")

    watch.collect_csp_events(page)
    watch.assert_clean()
