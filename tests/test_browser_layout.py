"""Every page at a phone's width (360x740) and a desktop's (1280x800), in a
real browser: a screenshot of each in $GATEKIOSK_ARTIFACTS (default:
artifacts/layout/), and a failure for text that does not fit its box.

"Does not fit" is measured, not eyeballed (:data:`LAYOUT_PROBE`):

* the page scrolls sideways (wide tables scroll inside their own box);
* an element's text overflows it (``scrollWidth > clientWidth`` on an element
  that neither scrolls nor is meant to clip);
* a box of fixed size (a badge) hides part of its content;
* a word of at most :data:`SHORT_WORD_CHARS` characters is broken across
  lines, as "Xó/a" on a button or a key id in a table cell was (a break
  after a hyphen or a slash is a line break, not a broken word). Longer
  words (addresses, pasted hashes) may break: that keeps them on screen.

The data is made long on purpose: long Vietnamese names, every kind of code,
refusals, a denylist entry, a trusted certificate, a staff pass, a declaration
with free-text answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, ViewportSize, expect, sync_playwright

from kiosk.keys import init_keys
from kiosk.store import TrustedRow
from kiosk.trust import certificate_from_der
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
    subject_hash,
)
from tests.test_web_trust import Signer

pytestmark = pytest.mark.browser

UI_TIMEOUT_MS = 10_000
VIEWPORTS: dict[str, ViewportSize] = {
    "phone": {"width": 360, "height": 740},
    "desktop": {"width": 1280, "height": 800},
}
SHORT_WORD_CHARS = 16
"""Words up to this long must stay whole: buttons, labels, key ids, dates."""

LONG_NAME = "Nguyễn Thị Phương Thảo Nguyên"
PAGES = (
    "login",
    "",
    "log",
    "log/EVENT",
    "inside",
    "admit",
    "declarations",
    "declarations/new",
    "declarations/questions",
    "declare",
    "poster",
    "passes",
    "passes/badges",
    "settings",
    "denylist",
    "trust",
    "users",
    "audit",
    "display",
    "no-such-page",
)
"""Paths under the gate's URL; EVENT stands for a declaration's event id."""

LAYOUT_PROBE = """
(shortWord) => {
  const problems = [];
  const doc = document.documentElement;
  const describe = (el) => {
    const id = el.id ? `#${el.id}` : "";
    const cls = el.classList.length ? "." + [...el.classList].join(".") : "";
    return `${el.tagName.toLowerCase()}${id}${cls} "${(el.innerText || "").trim().slice(0, 40)}"`;
  };
  const clips = (el) => {
    const style = getComputedStyle(el);
    return ["auto", "scroll", "hidden", "clip"].includes(style.overflowX);
  };
  const inScrollBox = (el) => {
    for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
      if (clips(up)) return true;
    }
    return false;
  };
  if (doc.scrollWidth > doc.clientWidth + 1) {
    // Name the elements that reach past the window (the deepest few), to fix.
    const past = [...document.body.querySelectorAll("*")].filter((el) =>
      el.getBoundingClientRect().right > doc.clientWidth + 1 && !inScrollBox(el)
      && ![...el.children].some((c) => c.getBoundingClientRect().right > doc.clientWidth + 1));
    problems.push(`the page scrolls sideways: ${doc.scrollWidth}px in ${doc.clientWidth}px, `
      + `past the edge: ${past.slice(0, 3).map(describe).join(", ")}`);
  }
  for (const el of document.body.querySelectorAll("*")) {
    const style = getComputedStyle(el);
    if (style.display === "none" || style.visibility === "hidden") continue;
    if (!el.offsetParent && style.position !== "fixed") continue;
    const replaced = ["SVG", "svg", "IMG", "SELECT", "OPTION", "INPUT", "TEXTAREA", "DATALIST"];
    if (replaced.includes(el.tagName)) continue;
    const ownText = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (ownText && el.clientWidth > 0 && !clips(el) && el.scrollWidth > el.clientWidth + 1) {
      const size = `${el.scrollWidth}px in ${el.clientWidth}px`;
      problems.push(`text overflows its box: ${describe(el)} (${size})`);
    }
    // A box that hides what does not fit (a badge of fixed size) must fit it;
    // a line clamp is a deliberate cut.
    if (["hidden", "clip"].includes(style.overflowY) && style.webkitLineClamp === "none"
        && el.clientHeight > 0 && el.scrollHeight > el.clientHeight + 1) {
      const size = `${el.scrollHeight}px in ${el.clientHeight}px`;
      problems.push(`content is cut off: ${describe(el)} (${size})`);
    }
  }
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || !parent.offsetParent) continue;
    if (getComputedStyle(parent).visibility === "hidden") continue;
    if (["OPTION", "SCRIPT", "STYLE", "TITLE"].includes(parent.tagName)) continue;
    const text = node.textContent;
    // A line may break after a hyphen or a slash ("vắc-/xin"): split there too.
    for (const match of text.matchAll(/[^\\s\\-\\/]+/g)) {
      const word = match[0];
      if (word.length < 2 || word.length > shortWord) continue;
      range.setStart(node, match.index);
      range.setEnd(node, match.index + word.length);
      const rects = [...range.getClientRects()].filter((r) => r.width > 0);
      const tops = new Set(rects.map((r) => Math.round(r.top)));
      if (tops.size > 1) {
        problems.push(`a short word breaks across lines: "${word}" in ${describe(parent)}`);
      }
    }
  }
  return problems;
}
"""


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    driver: Playwright = sync_playwright().start()
    browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()
    driver.stop()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, chromium: Browser) -> Iterator[dict[str, Any]]:
    """One running gate with a day of varied data, shared by every screenshot."""
    gate = start_gate(tmp_path_factory.mktemp("layout") / "data")
    try:
        gate.start_heartbeat()
        init_keys(gate.data_dir / "keys", at=datetime.now(UTC) - timedelta(minutes=5))
        seed(gate)
        context = chromium.new_context(locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh")
        context.set_default_timeout(UI_TIMEOUT_MS)
        page = context.new_page()
        log_in(page, gate)
        seed_through_pages(page, gate)
        context.close()
        event = gate.record(
            "Lê Văn Tám",
            kind="declaration",
            reason="sitecode-expired",
            decision="deny",
            masked_id=None,
        )
        yield {"gate": gate, "event_id": event.id}
    finally:
        gate.close()


def seed(gate: Gate) -> None:
    people: list[tuple[str | None, str, str, str, dict[str, Any]]] = [
        (LONG_NAME, "cccd", "allow", "ok", {}),
        ("Trần Văn Bình", "pc-covid", "deny", "denylisted", {}),
        ("Phạm Minh Châu", "staff-pass", "allow", "ok", {}),
        ("Hoàng Thị Dung", "hcert", "deny", "hcert-vaccination-incomplete", {}),
        ("Võ Quốc Khánh", "override", "allow", "override", {"override": True, "actor": MANAGER}),
        ("Đặng Thu Hà", "manual", "allow", "manual-admit", {"override": True, "actor": MANAGER}),
        (None, "unrecognised", "deny", "unrecognised", {"subject_hash": None, "masked_id": None}),
    ]
    for hours_ago, (name, kind, decision, reason, extra) in enumerate(people):
        gate.record(
            name,
            at=spread_over_today(hours_ago + 0.5),
            kind=kind,
            decision=decision,
            reason=reason,
            **extra,
        )
    gate.record(LONG_NAME, at=spread_over_today(0.2), direction="out", reason="ok-exit")
    gate.store.add_to_denylist(
        subject_hash("Trần Văn Bình"),
        label="Trần Văn Bình (người giao hàng cũ)",
        note="Gây rối ngày 12/11; quản lý Lan yêu cầu không cho vào",
        at=datetime.now(UTC),
        added_by=MANAGER,
    )
    signer = Signer(common_name="Bộ Y tế — Document Signer 2026")
    certificate = certificate_from_der(signer.der)
    gate.store.add_trusted_certificates(
        [
            TrustedRow(
                0,
                certificate.kid,
                certificate.country,
                certificate.subject,
                certificate.not_before,
                certificate.not_after,
                signer.der,
                datetime.now(UTC),
                MANAGER,
            )
        ],
        by=MANAGER,
        at=datetime.now(UTC),
    )


def seed_through_pages(page: Page, gate: Gate) -> None:
    """What managers do on the pages: a site name, a free-text question, a staff pass."""
    page.goto(gate.url + "settings")
    page.locator("input[name='gate.site_name']").fill("Nhà máy May Bình Dương")
    page.locator("form.settings button[type=submit]").click()
    page.goto(gate.url + "declarations/questions")
    page.locator("textarea[name=vi-3]").fill("Anh/chị đến gặp ai, ở bộ phận nào?")
    page.locator("textarea[name=en-3]").fill("Whom are you visiting, in which department?")
    page.locator("select[name=answer-kind-3]").select_option("text")
    page.locator("form.questions-form button[type=submit]").click()
    page.goto(gate.url + "passes")
    page.locator("input[name=name]").fill(LONG_NAME)
    page.locator("input[name=staff_id]").fill("NV-2026-00123")
    page.locator("input[name=organisation]").fill("Công ty TNHH May Mặc Xuất Khẩu Bình Dương")
    page.locator("form[action$='/passes/new'] button[type=submit]").click()
    expect(page.locator("table#passes")).to_contain_text("NV-2026-00123")


def log_in(page: Page, gate: Gate) -> None:
    page.goto(gate.url + "login")
    page.locator("input[name=name]").fill(MANAGER)
    page.locator("input[name=password]").fill(MANAGER_PASSWORD)
    page.locator("main form button[type=submit]").click()
    expect(page).to_have_url(gate.url)


# --------------------------------------------------------------------------- the test


def shoot(page: Page, name: str) -> Path:
    folder = artifacts_dir() / "layout"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_every_page_fits_its_width(
    chromium: Browser, seeded: dict[str, Any], viewport: str
) -> None:
    gate: Gate = seeded["gate"]
    context = chromium.new_context(
        locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh", viewport=VIEWPORTS[viewport]
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    watch = PageWatch()
    problems: list[str] = []
    try:
        page = context.new_page()
        watch.attach(page)
        shoot_public_form(page, gate, viewport, problems)
        log_in(page, gate)
        for path in PAGES:
            url = gate.url + path.replace("EVENT", seeded["event_id"])
            page.goto(url)
            page.wait_for_load_state("load")
            name = f"{viewport}-{re.sub(r'[^a-z0-9]+', '-', path) or 'dashboard'}"
            shoot(page, name)
            problems += [f"/{path} ({viewport}): {p}" for p in measure(page)]
    finally:
        context.close()
    assert problems == [], "\n".join(problems)
    watch.assert_clean()


def shoot_public_form(page: Page, gate: Gate, viewport: str, problems: list[str]) -> None:
    """The visitor's form and its result, before logging in, as a phone sees them."""
    page.goto(gate.url + "declare")
    shoot(page, f"{viewport}-declare-form")
    problems += [f"/declare ({viewport}): {p}" for p in measure(page)]
    page.locator("input[name=name]").fill(LONG_NAME)
    page.locator("input[name=phone]").fill("0912 345 678")
    for question in page.locator("fieldset.question").all():
        question.locator("input[value=no]").check()
    page.locator("input[name^=answer-whom]").fill("Chị Lan, phòng Kế toán tầng 3")
    page.locator("input[name=consent]").check()
    page.locator("form.declaration button[type=submit]").click()
    expect(page.locator("img#declaration-qr")).to_be_visible()
    shoot(page, f"{viewport}-declare-result")
    problems += [f"/declare result ({viewport}): {p}" for p in measure(page)]


def measure(page: Page) -> list[str]:
    found = page.evaluate(LAYOUT_PROBE, SHORT_WORD_CHARS)
    return [str(item) for item in found]


def test_the_phone_forms_questions_sit_inside_their_cards(
    chromium: Browser, seeded: dict[str, Any]
) -> None:
    """The question's heading inside the card's border, each radio beside its word."""
    gate: Gate = seeded["gate"]
    context = chromium.new_context(locale="vi-VN", viewport=VIEWPORTS["phone"])
    try:
        page = context.new_page()
        page.goto(gate.url + "declare")
        question = page.locator("fieldset.question").first
        card = question.bounding_box()
        heading = question.locator("legend").bounding_box()
        assert card is not None
        assert heading is not None
        assert heading["y"] >= card["y"] + 1, (heading, card)  # not straddling the top edge
        for choice in question.locator("label.choice").all():
            radio = choice.locator("input").bounding_box()
            label = choice.bounding_box()
            assert radio is not None
            assert label is not None
            # Beside the word: the radio's middle is the label's middle, give or take.
            radio_middle = radio["y"] + radio["height"] / 2
            assert abs(radio_middle - (label["y"] + label["height"] / 2)) < 4
    finally:
        context.close()


def test_trust_buttons_and_key_ids_stay_on_one_line(
    chromium: Browser, seeded: dict[str, Any]
) -> None:
    gate: Gate = seeded["gate"]
    context = chromium.new_context(locale="vi-VN", viewport=VIEWPORTS["phone"])
    try:
        page = context.new_page()
        log_in(page, gate)
        page.goto(gate.url + "trust")
        button = page.locator("#trusted button.danger").first
        expect(button).to_have_text("Xóa")
        for element in (button, page.locator("#trusted td code").first):
            height = element.evaluate("e => e.getClientRects().length")
            assert height == 1
            box = element.bounding_box()
            line = element.evaluate("e => parseFloat(getComputedStyle(e).lineHeight) || 20")
            assert box is not None
            assert box["height"] < 2 * line + 20  # one line (plus a button's padding)
    finally:
        context.close()
