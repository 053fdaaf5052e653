"""The health declaration on the web: the public form, the guard's desk, the
poster, the managers' list and the questions.

Codes are read back as the gate reads them: the result page's PNG decoded
with the real zxing decoder, the payload verified with the site's key ring.
"""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from admin_web.declare import poster_url_problem
from admin_web.question_rows import slug_key
from kiosk.camera import to_grey
from kiosk.clock import FakeClock
from kiosk.codes.base import Credential, Identified, Rejection
from kiosk.codes.sitecodes import SiteCodeFormat
from kiosk.declarations import DEFAULT_QUESTIONS, QUESTIONS_SETTING, Question
from kiosk.decoder import ZxingDecoder
from kiosk.gate_view import is_revoked
from kiosk.keys import init_keys, load_keyring
from kiosk.policy import Decision, GateView, PolicyRules, decide
from kiosk.store import Store
from tests.web import AppWith, csrf_token

SITE_ID = "site-1"
NAME = "Nguyễn Văn An"
PHONE = "0912 345 678"


# ----------------------------------------------------------------------------- helpers


def keys_dir(app: Flask) -> Path:
    folder: Path = app.extensions["gatekiosk"].settings.keys_dir
    return folder


def answers(value: str = "no", **overrides: str) -> dict[str, str]:
    """Form fields answering every default question ``value`` (no: healthy)."""
    fields = {f"answer-{q.key}": value for q in DEFAULT_QUESTIONS}
    fields.update({f"answer-{key}": v for key, v in overrides.items()})
    return fields


def declaration(**overrides: str | None) -> dict[str, str]:
    """A complete, healthy declaration; a None override leaves the field out."""
    fields: dict[str, str | None] = {
        "name": NAME,
        "phone": PHONE,
        "consent": "yes",
        **answers(),
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


def submit(
    client: FlaskClient, path: str = "/declare", /, **overrides: str | None
) -> tuple[int, str]:
    data = declaration(**overrides)
    data["csrf_token"] = csrf_token(client, path)
    response = client.post(path, data=data)
    return response.status_code, response.get_data(as_text=True)


def image_src(page: str, element_id: str) -> str:
    match = re.search(rf'<img[^>]*id="{element_id}"[^>]*src="([^"]+)"', page) or re.search(
        rf'<img[^>]*src="([^"]+)"[^>]*id="{element_id}"', page
    )
    assert match, f"no <img id={element_id}>"
    return match.group(1)


def decode_data_url(url: str) -> bytes:
    """The payload of the QR code in a ``data:image/png;base64`` URL, read by zxing."""
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix), url[:40]
    png = np.frombuffer(base64.b64decode(url[len(prefix) :]), dtype=np.uint8)
    grey = cv2.imdecode(png, cv2.IMREAD_GRAYSCALE)
    assert grey is not None, "not a PNG"
    assert grey.shape[1] >= 280, "the PNG is too small for a phone"
    [code] = ZxingDecoder().decode(to_grey(grey))
    return code.raw


def read_code(app: Flask, store: Store, clock: FakeClock, raw: bytes) -> Identified:
    """What the gate's codes make of ``raw`` now (revocation is the gate's view)."""
    parser = SiteCodeFormat(load_keyring(keys_dir(app)), SITE_ID)
    identified = parser.parse(raw, at=clock.now())
    assert identified is not None
    return identified


def gate_decides(app: Flask, store: Store, clock: FakeClock, raw: bytes) -> Decision:
    """What the gate decides about ``raw`` now, revocations read from ``store``."""
    identified = read_code(app, store, clock, raw)
    credential = identified if isinstance(identified, Credential) else None
    view = GateView(revoked=is_revoked(store, credential))
    return decide(identified, rules=PolicyRules(), view=view)


def code_id_of(store: Store) -> str:
    [code] = store.site_codes("declaration", now=FakeClock().now())
    return code.id


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def keys(app: Flask, clock: FakeClock) -> Path:
    init_keys(keys_dir(app), at=clock.now())
    return keys_dir(app)


@pytest.fixture
def visitor(client: FlaskClient) -> FlaskClient:
    """A phone that asks for no language (Vietnamese by default)."""
    client.environ_base.pop("HTTP_ACCEPT_LANGUAGE", None)
    return client


# ----------------------------------------------------------------------------- the public form


def test_the_form_is_vietnamese_by_default(visitor: FlaskClient) -> None:
    response = visitor.get("/declare")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert '<html lang="vi">' in page
    assert "Khai báo y tế" in page
    for question in DEFAULT_QUESTIONS:
        assert question.vi in page
        assert question.en not in page
    assert "Health declaration" not in page


def test_the_form_is_english_when_the_phone_asks(client: FlaskClient) -> None:
    page = client.get("/declare").get_data(as_text=True)
    assert '<html lang="en">' in page
    assert "Health declaration" in page
    for question in DEFAULT_QUESTIONS:
        assert question.en in page
        assert question.vi not in page


def test_the_form_needs_no_login_and_asks_no_id_number(client: FlaskClient) -> None:
    page = client.get("/declare").get_data(as_text=True)
    assert 'name="name"' in page
    assert 'name="phone"' in page
    assert "id_number" not in page
    assert "No ID card number is asked for." in page


def test_no_answer_is_chosen_in_advance(client: FlaskClient) -> None:
    page = client.get("/declare").get_data(as_text=True)
    assert page.count('type="radio"') == 2 * len(DEFAULT_QUESTIONS)
    assert " checked" not in page


def test_the_consent_notice_says_what_why_how_long_and_who(
    app_with: AppWith, clock: FakeClock
) -> None:
    app = app_with({"privacy.retention_days": 30})
    try:
        page = app.test_client().get("/declare").get_data(as_text=True)
    finally:
        app.extensions["gatekiosk"].store.close()
    assert "your name, phone number and answers" in page
    assert "contact tracing" in page
    assert "30 days after the declaration expires" in page
    assert "the site's managers" in page
    assert 'name="consent"' in page


def test_a_declaration_gives_a_signed_code_the_gate_accepts(
    app: Flask, client: FlaskClient, web_store: Store, clock: FakeClock, keys: Path
) -> None:
    status, page = submit(client)
    assert status == 200, page
    # 01:00 UTC is 08:00 in Ho Chi Minh City; valid for 24 hours.
    assert "Valid until 06/01/2026 08:00" in page
    assert "will refuse" not in page
    src = image_src(page, "declaration-qr")
    assert re.search(rf'href="{re.escape(src)}" download="declaration-[0-9-]+\.png"', page)

    identified = read_code(app, web_store, clock, decode_data_url(src))
    assert isinstance(identified, Credential)
    assert identified.kind == "declaration"
    assert identified.display_name == NAME
    [record] = web_store.site_codes("declaration", now=clock.now())
    assert record.issued_by == "self"
    assert record.phone == "0912345678"
    assert record.answers == {q.key: False for q in DEFAULT_QUESTIONS}
    assert record.text is None  # the visitor holds the code; the site does not
    assert dict(identified.attributes)["code_id"] == record.id


def test_the_code_has_no_route_of_its_own(
    client: FlaskClient, web_store: Store, keys: Path
) -> None:
    submit(client)
    code_id = code_id_of(web_store)
    for path in (f"/declare/{code_id}.png", f"/declare/{code_id}", f"/declarations/{code_id}"):
        assert client.get(path).status_code in (404, 405), path


def test_a_refusing_answer_warns_and_the_gate_refuses(
    app: Flask, client: FlaskClient, web_store: Store, clock: FakeClock, keys: Path
) -> None:
    status, page = submit(client, **{"answer-contact": "yes"})
    assert status == 200
    assert 'id="refused-notice"' in page
    assert "The gate will refuse entry with this code." in page
    assert "Please see the guard." in page
    identified = read_code(
        app, web_store, clock, decode_data_url(image_src(page, "declaration-qr"))
    )
    assert isinstance(identified, Rejection)
    assert identified.reason == "sitecode-refused-answers"
    assert "contact" in identified.detail


def test_problems_keep_what_was_typed(client: FlaskClient, web_store: Store, keys: Path) -> None:
    status, page = submit(client, phone="12ab", **{"answer-area": None})
    assert status == 400
    assert "A phone number has 9 to 15 digits" in page
    assert "Answer yes or no." in page
    assert f'value="{NAME}"' in page
    assert 'value="12ab"' in page
    # The answers given stay chosen.
    assert re.search(r'name="answer-symptoms" value="no" required checked', page)
    assert web_store.site_codes("declaration", now=FakeClock().now()) == []


def test_a_bad_name_is_refused(client: FlaskClient, keys: Path) -> None:
    status, page = submit(client, name="Nguyễn 123")
    assert status == 400
    assert "A name has letters and spaces only" in page
    status, page = submit(client, name="   ")
    assert status == 400
    assert "Enter your full name." in page


def test_without_consent_no_code_is_made(client: FlaskClient, web_store: Store, keys: Path) -> None:
    status, page = submit(client, consent=None)
    assert status == 400
    assert "Tick the box to agree" in page
    assert "declaration-qr" not in page
    assert web_store.site_codes("declaration", now=FakeClock().now()) == []


def test_a_hostile_name_stays_text(client: FlaskClient, keys: Path) -> None:
    hostile = '<script>alert("x")</script>'
    status, page = submit(client, name=hostile, phone='"><img src=x>')
    assert status == 400
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "<img src=x>" not in page


def test_an_apostrophe_in_a_name_is_escaped_on_the_result(client: FlaskClient, keys: Path) -> None:
    status, page = submit(client, name="Mary O'Neil")
    assert status == 200
    assert "Mary O&#39;Neil" in page


def test_without_site_keys_the_visitor_is_told_to_see_the_guard(
    client: FlaskClient, web_store: Store
) -> None:
    status, page = submit(client)
    assert status == 400
    assert "This site has not set up its keys yet" in page
    assert "Please tell the guard." in page
    assert f'value="{NAME}"' in page
    assert web_store.site_codes("declaration", now=FakeClock().now()) == []


def test_the_form_needs_its_csrf_token(client: FlaskClient, keys: Path) -> None:
    client.get("/declare")
    response = client.post("/declare", data=declaration())
    assert response.status_code == 400
    assert "declaration-qr" not in response.get_data(as_text=True)


def test_declarations_per_hour_are_limited_per_address(app_with: AppWith, clock: FakeClock) -> None:
    app = app_with({"codes.declarations_per_hour": 2})
    init_keys(keys_dir(app), at=clock.now())
    try:
        phone = app.test_client()
        other = app.test_client()
        other.environ_base["REMOTE_ADDR"] = "192.168.1.77"
        # Mistakes do not count; declarations made do.
        assert submit(phone, consent=None)[0] == 400
        assert submit(phone)[0] == 200
        clock.advance(600)
        assert submit(phone)[0] == 200
        status, page = submit(phone)
        assert status == 429
        assert "Too many declarations from this device: at most 2 an hour." in page
        assert "Try again in 50 minutes" in page
        assert submit(other)[0] == 200
        clock.advance(50 * 60)
        assert submit(phone)[0] == 200
    finally:
        app.extensions["gatekiosk"].store.close()


def test_the_rate_limit_message_is_vietnamese_too(app_with: AppWith, clock: FakeClock) -> None:
    app = app_with({"codes.declarations_per_hour": 1})
    init_keys(keys_dir(app), at=clock.now())
    try:
        phone = app.test_client()
        phone.environ_base.pop("HTTP_ACCEPT_LANGUAGE", None)
        assert submit(phone)[0] == 200
        status, page = submit(phone)
        assert status == 429
        assert "Quá nhiều tờ khai từ thiết bị này" in page
    finally:
        app.extensions["gatekiosk"].store.close()


def test_the_page_loads_no_inline_script_or_style(client: FlaskClient, keys: Path) -> None:
    pages = [client.get("/declare").get_data(as_text=True), submit(client)[1]]
    for page in pages:
        assert "<script>" not in page
        assert "<style" not in page
        assert " style=" not in page
    response = client.get("/declare")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_the_site_name_heads_the_page(app_with: AppWith, clock: FakeClock) -> None:
    app = app_with({"gate.site_name": "Chợ Bến Thành"})
    try:
        page = app.test_client().get("/declare").get_data(as_text=True)
    finally:
        app.extensions["gatekiosk"].store.close()
    assert "Chợ Bến Thành" in page


# ----------------------------------------------------------------------------- the desk


def test_the_guards_desk_issues_in_the_guards_name(
    app: Flask, guard: FlaskClient, web_store: Store, clock: FakeClock, keys: Path
) -> None:
    page = guard.get("/declarations/new").get_data(as_text=True)
    assert "Visitor's full name" in page
    status, page = submit(guard, "/declarations/new", name="Lê Thị Hoa")
    assert status == 200, page
    assert 'id="print-page"' in page
    identified = read_code(
        app, web_store, clock, decode_data_url(image_src(page, "declaration-qr"))
    )
    assert isinstance(identified, Credential)
    assert identified.display_name == "Lê Thị Hoa"
    [record] = web_store.site_codes("declaration", now=clock.now())
    assert record.issued_by == "guard1"
    [entry, *_] = web_store.audit_entries()
    assert (entry.actor, entry.action) == ("guard1", "declaration")


def test_the_desk_is_not_rate_limited(app_with: AppWith, clock: FakeClock) -> None:
    app = app_with({"codes.declarations_per_hour": 1})
    init_keys(keys_dir(app), at=clock.now())
    try:
        from tests.web import log_in

        desk = app.test_client()
        log_in(desk, "guard")
        for _ in range(3):
            assert submit(desk, "/declarations/new")[0] == 200
    finally:
        app.extensions["gatekiosk"].store.close()


def test_the_desk_needs_a_login(client: FlaskClient) -> None:
    response = client.get("/declarations/new")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


# ----------------------------------------------------------------------------- the poster


def test_the_poster_shows_the_forms_address_as_a_qr(guard: FlaskClient) -> None:
    page = guard.get("/poster").get_data(as_text=True)
    assert "Quét mã để khai báo y tế" in page
    assert "Scan to fill in your health declaration" in page
    assert decode_data_url(image_src(page, "poster-qr")) == b"http://localhost/declare"
    assert "only works on this machine" in page


def test_the_poster_takes_the_lan_address(guard: FlaskClient) -> None:
    url = "http://192.168.1.20:8080/declare"
    page = guard.get("/poster", query_string={"url": url}).get_data(as_text=True)
    assert decode_data_url(image_src(page, "poster-qr")) == url.encode()
    assert "only works on this machine" not in page


def test_the_poster_refuses_an_address_that_is_not_http(guard: FlaskClient) -> None:
    page = guard.get("/poster", query_string={"url": "javascript:alert(1)"}).get_data(as_text=True)
    assert "starts with http:// or https://" in page
    assert decode_data_url(image_src(page, "poster-qr")) == b"http://localhost/declare"


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://gate.example.vn/declare", True),
        ("http://10.0.0.5/declare", True),
        ("ftp://10.0.0.5/declare", False),
        ("http:///declare", False),
        ("http://a b/", False),
        ("http://host:99999/", False),
        ("data:text/html,hi", False),
    ],
)
def test_poster_addresses(app: Flask, url: str, ok: bool) -> None:
    with app.test_request_context("/"):
        assert (poster_url_problem(url) is None) == ok


def test_the_poster_is_for_staff(client: FlaskClient) -> None:
    assert client.get("/poster").status_code == 302


# ----------------------------------------------------------------------------- the list


def test_managers_see_phone_numbers_and_guards_do_not(
    manager: FlaskClient, guard: FlaskClient, client: FlaskClient, keys: Path
) -> None:
    submit(client)
    managers_page = manager.get("/declarations").get_data(as_text=True)
    assert NAME in managers_page
    assert "0912345678" in managers_page
    assert "Revoke" in managers_page
    guards_page = guard.get("/declarations").get_data(as_text=True)
    assert NAME in guards_page
    assert "0912345678" not in guards_page
    assert "Phone numbers are visible to managers only." in guards_page
    assert "Revoke" not in guards_page
    assert client.get("/declarations").status_code == 302


def test_a_revoked_declaration_is_refused_at_the_gate(
    app: Flask,
    manager: FlaskClient,
    guard: FlaskClient,
    client: FlaskClient,
    web_store: Store,
    clock: FakeClock,
    keys: Path,
) -> None:
    _status, page = submit(client)
    raw = decode_data_url(image_src(page, "declaration-qr"))
    code_id = code_id_of(web_store)
    path = f"/declarations/{code_id}/revoke"
    assert guard.post(path, data={"csrf_token": csrf_token(guard, "/")}).status_code == 403
    assert manager.post(path).status_code == 400  # no CSRF token
    response = manager.post(path, data={"csrf_token": csrf_token(manager, "/")})
    assert response.status_code == 302
    assert isinstance(read_code(app, web_store, clock, raw), Credential)  # as signed
    decision = gate_decides(app, web_store, clock, raw)
    assert not decision.allowed
    assert decision.reason == "sitecode-revoked"
    [entry, *_] = web_store.audit_entries()
    assert (entry.actor, entry.action, entry.detail["code"]) == ("manager1", "revoke", code_id)
    assert "revoked by manager1" in manager.get("/declarations").get_data(as_text=True)


def test_expired_declarations_are_listed_on_request(
    manager: FlaskClient, client: FlaskClient, clock: FakeClock, keys: Path
) -> None:
    submit(client)
    clock.advance(timedelta(hours=25).total_seconds())
    assert NAME not in manager.get("/declarations").get_data(as_text=True)
    page = manager.get("/declarations?all=1").get_data(as_text=True)
    assert NAME in page
    assert "expired" in page


# ----------------------------------------------------------------------------- questions


def question_form(client: FlaskClient, rows: list[dict[str, str]]) -> dict[str, str]:
    data = {"csrf_token": csrf_token(client, "/")}
    for i, row in enumerate(rows):
        for name, value in row.items():
            data[f"{name}-{i}"] = value
    return data


def test_managers_edit_the_questions_and_the_form_follows(
    app: Flask,
    manager: FlaskClient,
    client: FlaskClient,
    web_store: Store,
    clock: FakeClock,
    keys: Path,
) -> None:
    page = manager.get("/declarations/questions").get_data(as_text=True)
    assert DEFAULT_QUESTIONS[0].en in page
    rows = [
        # The contact question first, its key kept; the others removed.
        {
            "key": "contact",
            "position": "1",
            "vi": "Tiếp xúc F0?",
            "en": "Contact?",
            "refuse": "yes",
        },
        {"key": "symptoms", "position": "2", "vi": "x", "en": "y", "remove": "yes"},
        # A new question that refuses entry on a "no".
        {"key": "", "position": "2", "vi": "Đã tiêm vắc xin?", "en": "Are you vaccinated?"},
    ]
    response = manager.post("/declarations/questions", data=question_form(manager, rows))
    assert response.status_code == 302, response.get_data(as_text=True)
    stored = web_store.site_settings()[QUESTIONS_SETTING]
    assert [q["key"] for q in stored] == ["contact", "are-you-vaccinated"]
    assert stored[1]["refuse_on_yes"] is False
    [entry, *_] = web_store.audit_entries()
    assert (entry.actor, entry.action) == ("manager1", "questions")

    form = client.get("/declare").get_data(as_text=True)
    assert "Are you vaccinated?" in form
    assert "Contact?" in form
    assert DEFAULT_QUESTIONS[0].en not in form
    fields = {"answer-contact": "no", "answer-are-you-vaccinated": "no"}
    data = {"name": NAME, "phone": PHONE, "consent": "yes", **fields}
    data["csrf_token"] = csrf_token(client, "/declare")
    page = client.post("/declare", data=data).get_data(as_text=True)
    assert 'id="refused-notice"' in page
    identified = read_code(
        app, web_store, clock, decode_data_url(image_src(page, "declaration-qr"))
    )
    assert isinstance(identified, Rejection)
    assert identified.reason == "sitecode-refused-answers"
    assert "are-you-vaccinated" in identified.detail

    data["answer-are-you-vaccinated"] = "yes"
    data["csrf_token"] = csrf_token(client, "/declare")
    page = client.post("/declare", data=data).get_data(as_text=True)
    identified = read_code(
        app, web_store, clock, decode_data_url(image_src(page, "declaration-qr"))
    )
    assert isinstance(identified, Credential)


def test_a_half_written_question_is_not_saved(manager: FlaskClient, web_store: Store) -> None:
    rows = [
        {"key": "symptoms", "position": "1", "vi": DEFAULT_QUESTIONS[0].vi, "en": ""},
    ]
    response = manager.post("/declarations/questions", data=question_form(manager, rows))
    assert response.status_code == 400
    assert "Enter the question in both languages." in response.get_data(as_text=True)
    assert QUESTIONS_SETTING not in web_store.site_settings()


def test_at_least_one_question_stays(manager: FlaskClient, web_store: Store) -> None:
    rows = [{"key": q.key, "vi": q.vi, "en": q.en, "remove": "yes"} for q in DEFAULT_QUESTIONS]
    response = manager.post("/declarations/questions", data=question_form(manager, rows))
    assert response.status_code == 400
    assert "Keep at least one question." in response.get_data(as_text=True)


def test_a_forged_key_does_not_take_over_another(manager: FlaskClient, web_store: Store) -> None:
    rows = [
        {"key": "symptoms", "position": "1", "vi": "A", "en": "Fever?", "refuse": "yes"},
        {"key": "symptoms", "position": "2", "vi": "B", "en": "Cough?", "refuse": "yes"},
        {"key": "<bad>", "position": "3", "vi": "C", "en": "Rash?", "refuse": "yes"},
    ]
    response = manager.post("/declarations/questions", data=question_form(manager, rows))
    assert response.status_code == 302
    keys = [q["key"] for q in web_store.site_settings()[QUESTIONS_SETTING]]
    assert keys == ["symptoms", "cough", "rash"]


def test_the_questions_are_for_managers(guard: FlaskClient) -> None:
    assert guard.get("/declarations/questions").status_code == 403


def test_slug_keys_are_short_and_unique() -> None:
    text = "In the last 14 days, have you had a fever?"
    key = slug_key(text, set())
    assert len(key) <= 24
    assert re.fullmatch(r"[a-z0-9-]+", key)
    assert slug_key(text, {key}) == f"{key}-2"
    assert slug_key("Đã tiêm?", set()) == "da-tiem"
    assert slug_key("???", set()) == "question"


def test_saving_the_same_questions_changes_nothing(manager: FlaskClient, web_store: Store) -> None:
    rows = [
        {"key": q.key, "position": str(i + 1), "vi": q.vi, "en": q.en, "refuse": "yes"}
        for i, q in enumerate(DEFAULT_QUESTIONS)
    ]
    response = manager.post("/declarations/questions", data=question_form(manager, rows))
    assert response.status_code == 302
    assert QUESTIONS_SETTING not in web_store.site_settings()
    assert Question("symptoms", "a", "b") != DEFAULT_QUESTIONS[0]
