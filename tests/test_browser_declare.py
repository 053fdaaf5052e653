"""The health declaration in a real browser, from filling in the form to a
code the gate accepts.

Debian's Chromium, driven by Playwright, plays a visitor's phone against
``gatekiosk web`` started as a user starts it (tests/browser_fixtures.py).
The site keys are made with :func:`kiosk.keys.init_keys`, as ``gatekiosk keys
init`` will. The QR on the result page, and the PNG the download link saves,
are read with the real zxing decoder and verified with the site's key ring,
as the gate does. A screenshot of the result is saved to $GATEKIOSK_ARTIFACTS.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from kiosk.camera import to_grey
from kiosk.codes.base import Credential, Rejection
from kiosk.codes.sitecodes import SiteCodeFormat
from kiosk.declarations import DEFAULT_QUESTIONS
from kiosk.decoder import ZxingDecoder
from kiosk.keys import init_keys, load_keyring
from tests.browser_fixtures import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Gate,
    PageWatch,
    artifacts_dir,
    start_gate,
)

UI_TIMEOUT_MS = 10_000
SITE_ID = "site-1"
"""The default ``gate.site_id``, which the config of browser_fixtures keeps."""
NAME = "Nguyễn Thị Minh Khai"
MIN_QR_CSS_PX = 280
"""The code must show at least this wide on a phone to scan from arm's length."""

pytestmark = pytest.mark.browser  # Chromium through Playwright: not in make test-quick


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    driver: Playwright = sync_playwright().start()
    try:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()
    finally:
        driver.stop()


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    """``gatekiosk web`` running over a fresh data folder that has site keys."""
    data_dir = tmp_path / "data"
    init_keys(data_dir / "keys", at=datetime.now(UTC))
    gate = start_gate(data_dir)
    try:
        yield gate
    finally:
        gate.close()


@pytest.fixture
def watch() -> PageWatch:
    return PageWatch()


@pytest.fixture
def phone(chromium: Browser, watch: PageWatch) -> Iterator[Page]:
    """A Vietnamese phone: small screen, touch, downloads on."""
    context = chromium.new_context(
        accept_downloads=True,
        locale="vi-VN",
        timezone_id="Asia/Ho_Chi_Minh",
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    context.set_default_navigation_timeout(UI_TIMEOUT_MS)
    try:
        page = context.new_page()
        watch.attach(page)
        yield page
    finally:
        context.close()


def read_png(png: bytes) -> bytes:
    grey = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    assert grey is not None, "not a PNG"
    [code] = ZxingDecoder().decode(to_grey(grey))
    return code.raw


def png_of(data_url: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix), data_url[:40]
    return base64.b64decode(data_url[len(prefix) :])


def verify(gate: Gate, raw: bytes) -> Credential | Rejection:
    parser = SiteCodeFormat(load_keyring(gate.data_dir / "keys"), SITE_ID)
    identified = parser.parse(raw, at=datetime.now(UTC))
    assert identified is not None, "not a site code"
    return identified


def fill_in(page: Page, *, name: str, phone: str, refusing: str | None = None) -> None:
    page.locator("#name").fill(name)
    page.locator("#phone").fill(phone)
    for question in DEFAULT_QUESTIONS:
        answer = "yes" if question.key == refusing else "no"
        page.locator(f'input[name="answer-{question.key}"][value="{answer}"]').check()


def test_a_visitor_declares_on_a_phone_and_gets_a_code_the_gate_accepts(
    phone: Page, gate: Gate, watch: PageWatch
) -> None:
    phone.goto(gate.url + "declare")
    expect(phone.locator("h1")).to_have_text("Khai báo y tế")
    expect(phone.locator("html")).to_have_attribute("lang", "vi")

    # A mistake first: no consent. Nothing typed is lost.
    fill_in(phone, name=NAME, phone="0912 345 678")
    phone.locator("button.submit").click()
    expect(phone.locator("#consent-problem")).to_be_visible()
    expect(phone.locator("#name")).to_have_value(NAME)
    expect(phone.locator('input[name="answer-symptoms"][value="no"]')).to_be_checked()

    phone.locator('input[name="consent"]').check()
    phone.locator("button.submit").click()
    qr = phone.locator("#declaration-qr")
    expect(qr).to_be_visible()
    expect(phone.locator("#declaration-result")).to_contain_text("Có hiệu lực đến")
    expect(phone.locator("#refused-notice")).to_have_count(0)

    box = qr.bounding_box()
    assert box is not None
    assert box["width"] >= MIN_QR_CSS_PX, box
    assert qr.evaluate("img => img.complete && img.naturalWidth") >= MIN_QR_CSS_PX

    src = qr.get_attribute("src")
    assert src is not None
    identified = verify(gate, read_png(png_of(src)))
    assert isinstance(identified, Credential), identified
    assert identified.kind == "declaration"
    assert identified.display_name == NAME

    # The download link saves the same code as a PNG file.
    with phone.expect_download() as download_info:
        phone.locator("#download-qr").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".png")
    saved = Path(download.path())
    assert read_png(saved.read_bytes()) == read_png(png_of(src))

    phone.screenshot(path=str(artifacts_dir() / "declare-result.png"), full_page=True)
    watch.collect_csp_events(phone)
    watch.assert_clean()


def test_a_refusing_answer_is_shown_and_refused(phone: Page, gate: Gate, watch: PageWatch) -> None:
    phone.goto(gate.url + "declare")
    fill_in(phone, name=NAME, phone="0912345678", refusing="symptoms")
    phone.locator('input[name="consent"]').check()
    phone.locator("button.submit").click()
    expect(phone.locator("#refused-notice")).to_contain_text("Vui lòng gặp bảo vệ")
    src = phone.locator("#declaration-qr").get_attribute("src")
    assert src is not None
    identified = verify(gate, read_png(png_of(src)))
    assert isinstance(identified, Rejection)
    assert identified.reason == "sitecode-refused-answers"
    watch.collect_csp_events(phone)
    watch.assert_clean()
