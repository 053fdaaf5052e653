"""The province web in a real browser, served by ``gatekiosk province web``
over a real PostgreSQL: every page at a phone's and a desktop's width fits
(the layout test's probe), and a manager exports a site's window through
the form, which the requests page then lists with the reason."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.browser_fixtures import (
    CHROMIUM,
    CHROMIUM_ARGS,
    GATEKIOSK,
    MANAGER,
    MANAGER_PASSWORD,
    SERVER_START_TIMEOUT_S,
    PageWatch,
    _answers,
    _environment,
    _free_port,
    add_manager,
    stop_process,
)
from tests.postgres_fixture import Province, postgres_fixture, province_fixture  # noqa: F401
from tests.test_browser_layout import UI_TIMEOUT_MS, VIEWPORTS, measure, shoot

pytestmark = pytest.mark.browser

LONG_NAME = "Chợ đầu mối nông sản thực phẩm Bình Điền <b>Quận 8</b>"
PAGES = ("", "sites/market-a", "ratings", "export", "requests", "no-such-page", "log")


@dataclass
class ProvinceWeb:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path


def seed(province: Province) -> None:
    """Three sites: one busy today with a long name, one quiet, one never heard from."""
    for site in ("market-a", "market-b", "never-heard"):
        province.add_site(site)
    province.query(
        "UPDATE province.sites SET name = %s WHERE id = 'market-a' RETURNING id", (LONG_NAME,)
    )
    province.query(
        "UPDATE province.sites SET last_heard = now() - interval '2 hours' "
        "WHERE id = 'market-b' RETURNING id"
    )
    now = datetime.now(UTC)
    with psycopg.connect(province.owner_dsn) as conn:
        for month in {date(now.year, now.month, 1), date(2026, 3, 1)}:
            conn.execute("SELECT province.ensure_month(%s)", (month,))
        for i in range(40):
            at = now - timedelta(minutes=i) if i < 20 else datetime(2026, 3, 10, 1, i, tzinfo=UTC)
            conn.execute(
                "INSERT INTO province.events (site_id, id, at_utc, utc_offset_min, gate_id, "
                "boot_id, seq, clock_synced, direction, decision, reason, kind, subject_hash, "
                "override) VALUES ('market-a', %s, %s, 420, 'gate-1', 'boot', %s, true, %s, %s, "
                "'ok', 'cccd', 'hash', false)",
                (f"ev-{i}", at, i, "in" if i % 3 else "out", "deny" if i % 7 == 0 else "allow"),
            )
        conn.execute(
            "INSERT INTO province.checklists (version, title, questions) VALUES (1, 'v1', '[]')"
        )
        conn.execute(
            "INSERT INTO province.assessments (site_id, id, checklist_version, made_at, answers, "
            "score) VALUES ('market-a', 'r1', 1, now(), '{}', 85)"
        )


def start(data_dir: Path, reader_dsn: str) -> ProvinceWeb:
    data_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = data_dir / "province.toml"
    config.write_text(
        f'[gate]\ndata_dir = "{data_dir.as_posix()}"\n\n[web]\nport = {port}\n\n'
        f'[province_web]\ndsn = "{reader_dsn}"\n',
        encoding="utf-8",
    )
    add_manager(config)
    log_path = data_dir / "province-web.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(GATEKIOSK), "province", "web", "--config", str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=_environment(),
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while process.poll() is None and time.monotonic() < deadline:
        if _answers(url + "login"):
            return ProvinceWeb(url, process, log_path)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.05)
    stop_process(process)
    raise AssertionError(log_path.read_text(encoding="utf-8", errors="replace"))


@pytest.fixture
def served(tmp_path: Path, province: Province) -> Iterator[ProvinceWeb]:
    seed(province)
    web = start(tmp_path / "data", province.add_reader())
    try:
        yield web
    finally:
        stop_process(web.process)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    driver: Playwright = sync_playwright().start()
    browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()
    driver.stop()


def log_in(page: Page, web: ProvinceWeb) -> None:
    page.goto(web.url + "login")
    page.locator("input[name=name]").fill(MANAGER)
    page.locator("input[name=password]").fill(MANAGER_PASSWORD)
    page.locator("main form button[type=submit]").click()
    expect(page).to_have_url(web.url)


def test_province_pages_fit_and_a_window_export_is_recorded(
    chromium: Browser, served: ProvinceWeb, province: Province
) -> None:
    problems: list[str] = []
    watch = PageWatch()
    for viewport, size in VIEWPORTS.items():
        context = chromium.new_context(
            locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh", viewport=size, accept_downloads=True
        )
        context.set_default_timeout(UI_TIMEOUT_MS)
        try:
            page = context.new_page()
            watch.attach(page)
            log_in(page, served)
            expect(page.locator("tr[data-site=market-a] td.state")).to_have_text("Đang quét")
            expect(page.locator("tr[data-site=market-b] td.state")).to_have_text("Im lặng")
            expect(page.locator("tr[data-site=never-heard] td.state")).to_have_text(
                "Chưa từng liên lạc"
            )
            for path in PAGES:
                response = page.goto(served.url + path)
                assert response is not None
                if path in ("no-such-page", "log"):
                    assert response.status == 404, path
                shoot(page, f"province-{viewport}-{path.replace('/', '-') or 'sites'}")
                problems += [f"/{path} ({viewport}): {p}" for p in measure(page)]
            if viewport == "desktop":
                export_through_the_form(page, served)
        finally:
            context.close()
    assert problems == [], "\n".join(problems)
    watch.assert_clean()
    assert province.query("SELECT actor, action, site_id, reason FROM province.audit") == [
        (MANAGER, "export-window", "market-a", "Truy vết ca F0 số 12")
    ]


def export_through_the_form(page: Page, web: ProvinceWeb) -> None:
    page.goto(web.url + "export")
    page.locator("select[name=site]").select_option("market-a")
    page.locator("input[name=from]").fill("2026-03-10T00:00")
    page.locator("input[name=to]").fill("2026-03-11T00:00")
    # Without a reason the browser itself refuses (required); the server's
    # refusal of an empty reason is tested in tests/test_province_web.py.
    page.locator("textarea[name=reason]").fill("Truy vết ca F0 số 12")
    with page.expect_download() as info:
        page.locator("#export-submit").click()
    download: Any = info.value
    text = Path(download.path()).read_text(encoding="utf-8-sig")
    assert text.count("\n") == 21  # the header and the 20 events of 10/03/2026
    page.goto(web.url + "requests")
    expect(page.locator("#requests")).to_contain_text("Truy vết ca F0 số 12")
