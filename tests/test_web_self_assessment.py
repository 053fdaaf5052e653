"""The hub's self-assessment page: a manager answers the province's checklist
(which the uplink fetched), the rating is kept with its score and audited,
the uplink sends it once; guards cannot fill it; CSRF holds; the question
texts are escaped; without a province or a checklist the page says why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import Flask
from flask.testing import FlaskClient

from kiosk.clock import FakeClock
from kiosk.province.checklist import parse_checklist, publish_checklist
from kiosk.province.outbox import ProvinceOutbox
from kiosk.province.uplink import Uplink, UplinkSettings
from kiosk.store import Store
from kiosk.store.self_assessment import ChecklistQuestion, HubChecklist
from tests.conftest import AppWith
from tests.postgres_fixture import PostgresServer, Province, postgres_fixture, province_fixture  # noqa: F401
from tests.web import csrf_token, log_in

PAGE = "/site/assessment"
PUBLISHED = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
QUESTIONS = (
    ChecklistQuestion("sanitiser", "Có dung dịch sát khuẩn tay tại cổng", "Hand sanitiser"),
    ChecklistQuestion("qr-check", "Quét mã QR mọi người đến", "Every visitor's QR checked"),
    ChecklistQuestion("masks", "Đeo khẩu trang", "Masks worn"),
)
DSN = "host=province.invalid dbname=province user=site_market_a"


def hub_app(app_with: AppWith, dsn: str = DSN) -> tuple[Flask, Store]:
    app = app_with({"uplink.dsn": dsn, "site.hub": "127.0.0.1:8883", "gate.id": "hub"})
    return app, app.extensions["gatekiosk"].store


def client_as(app: Flask, role: str) -> FlaskClient:
    client = app.test_client()
    log_in(client, role)
    return client


def keep(store: Store, *questions: ChecklistQuestion, version: int = 1) -> None:
    store.self_assessment.keep_checklist(
        HubChecklist(
            version, "Tiêu chí / Criteria", questions or QUESTIONS, 30, PUBLISHED, PUBLISHED
        )
    )


def form(client: FlaskClient, version: int = 1, **answers: str) -> dict[str, str]:
    fields = {"csrf_token": csrf_token(client, PAGE), "version": str(version)}
    fields.update({f"q-{key.replace('_', '-')}": value for key, value in answers.items()})
    return fields


def test_a_manager_fills_the_checklist_and_the_uplink_sends_it_once(
    app_with: AppWith, province: Province, clock: FakeClock
) -> None:
    dsn = province.add_site("market-a")
    publish_checklist(
        province.owner_dsn,
        parse_checklist(
            {
                "title": "Tiêu chí an toàn / Safety criteria",
                "stale_after_days": 30,
                "questions": [{"id": q.id, "vi": q.vi, "en": q.en} for q in QUESTIONS],
            }
        ),
    )
    app, store = hub_app(app_with, dsn)

    def upload() -> None:
        Uplink(ProvinceOutbox(store.connection), UplinkSettings(dsn=dsn), clock=clock).drain_once()

    upload()  # the checklist comes down with the first connection
    manager = client_as(app, "manager")
    page = manager.get(PAGE).get_data(as_text=True)
    assert f'href="{PAGE}"' in page  # in the menu of a hub with a province
    assert "Tiêu chí an toàn / Safety criteria" in page
    row = page.split('id="q-sanitiser"')[1].split("</tr>")[0]
    assert row.index("Có dung dịch sát khuẩn tay tại cổng") < row.index("Hand sanitiser")
    response = manager.post(PAGE, data=form(manager, sanitiser="yes", qr_check="yes", masks="no"))
    assert response.status_code == 302
    page = manager.get(PAGE).get_data(as_text=True)
    assert "Saved: 67% of measures in place." in page
    (rating,) = store.self_assessment.assessments()
    assert (rating.score, rating.made_by, rating.made_at) == (67, "manager1", clock.now())
    assert rating.answers == {"sanitiser": True, "qr-check": True, "masks": False}
    listed = page.split(f'id="rating-{rating.id}"')[1].split("</tr>")[0]
    assert "67%" in listed
    assert "waiting to upload" in listed
    audit = store.audit_entries()[0]
    assert (audit.actor, audit.action) == ("manager1", "self-assessment")
    assert audit.detail == {"id": rating.id, "checklist_version": 1, "score": 67}

    upload()
    upload()
    assert province.query("SELECT site_id, id, score FROM province.assessments") == [
        ("market-a", rating.id, 67)
    ]
    listed = manager.get(PAGE).get_data(as_text=True).split(f'id="rating-{rating.id}"')[1]
    assert "sent" in listed.split("</tr>")[0]


def test_a_guard_can_neither_see_nor_fill_the_checklist(app_with: AppWith) -> None:
    app, store = hub_app(app_with)
    keep(store)
    guard = client_as(app, "guard")
    assert f'href="{PAGE}"' not in guard.get("/").get_data(as_text=True)
    assert guard.get(PAGE).status_code == 403
    token = csrf_token(guard, "/")
    answers = {"csrf_token": token, "version": "1", "q-sanitiser": "yes", "q-qr-check": "yes"}
    assert guard.post(PAGE, data={**answers, "q-masks": "yes"}).status_code == 403
    assert store.self_assessment.assessments() == []


def test_a_post_without_the_csrf_token_is_refused(app_with: AppWith) -> None:
    app, store = hub_app(app_with)
    keep(store)
    manager = client_as(app, "manager")
    fields = form(manager, sanitiser="yes", qr_check="yes", masks="yes")
    del fields["csrf_token"]
    assert manager.post(PAGE, data=fields).status_code == 400
    assert store.self_assessment.assessments() == []


def test_every_measure_must_be_answered_and_nothing_is_half_saved(app_with: AppWith) -> None:
    app, store = hub_app(app_with)
    keep(store)
    manager = client_as(app, "manager")
    response = manager.post(PAGE, data=form(manager, sanitiser="yes", masks="no"))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Answer yes or no for every measure." in page
    assert 'name="q-sanitiser" value="yes" required checked' in page  # what was typed stays
    assert store.self_assessment.assessments() == []


def test_a_form_for_an_older_checklist_is_refused_after_a_new_one_came(
    app_with: AppWith,
) -> None:
    app, store = hub_app(app_with)
    keep(store)
    manager = client_as(app, "manager")
    fields = form(manager, sanitiser="yes", qr_check="yes", masks="yes")
    keep(store, *QUESTIONS, version=2)
    response = manager.post(PAGE, data=fields)
    assert response.status_code == 409
    assert "The province sent a new checklist" in response.get_data(as_text=True)
    assert store.self_assessment.assessments() == []


def test_the_question_texts_are_escaped(app_with: AppWith) -> None:
    app, store = hub_app(app_with)
    keep(
        store,
        ChecklistQuestion("x", '<script>alert("vi")</script>', "<img src=x onerror=alert(1)>"),
    )
    page = client_as(app, "manager").get(PAGE).get_data(as_text=True)
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(&#34;vi&#34;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_before_the_first_checklist_the_page_says_how_one_arrives(app_with: AppWith) -> None:
    app, _ = hub_app(app_with)
    manager = client_as(app, "manager")
    page = manager.get(PAGE).get_data(as_text=True)
    assert 'id="no-checklist"' in page
    assert "gatekiosk uplink" in page
    response = manager.post(PAGE, data=form(manager))
    assert response.status_code == 409


def test_without_a_province_the_page_says_it_is_not_configured(
    app_with: AppWith, tmp_path: Path
) -> None:
    app = app_with()
    manager = client_as(app, "manager")
    page = manager.get("/").get_data(as_text=True)
    assert f'href="{PAGE}"' not in page  # a gate alone has no such page in its menu
    page = manager.get(PAGE).get_data(as_text=True)
    assert 'id="not-configured"' in page
    assert "[uplink]" in page
    assert manager.post(PAGE, data=form(manager)).status_code == 409


def test_the_page_says_until_when_the_latest_rating_counts(
    app_with: AppWith, clock: FakeClock
) -> None:
    app, store = hub_app(app_with)
    keep(store)
    manager = client_as(app, "manager")
    due = manager.get(PAGE).get_data(as_text=True).split('id="due"')[1].split("</p>")[0]
    assert "no rating of this version yet" in due
    fields = form(manager, sanitiser="yes", qr_check="no", masks="no")
    assert manager.post(PAGE, data=fields).status_code == 302
    until = (clock.now() + timedelta(days=30)).astimezone(ZoneInfo("Asia/Ho_Chi_Minh"))
    due = manager.get(PAGE).get_data(as_text=True).split('id="due"')[1].split("</p>")[0]
    assert f"counts until {until:%d/%m/%Y %H:%M}" in due
    clock.advance(31 * 86400)
    due = manager.get(PAGE).get_data(as_text=True).split('id="due"')[1].split("</p>")[0]
    assert f"went stale on {until:%d/%m/%Y %H:%M}" in due
    keep(store, *QUESTIONS, version=2)  # a new version: the old rating no longer counts
    due = manager.get(PAGE).get_data(as_text=True).split('id="due"')[1].split("</p>")[0]
    assert "no rating of this version yet" in due


def test_the_page_is_vietnamese_by_default(app_with: AppWith) -> None:
    app, store = hub_app(app_with)
    keep(store)
    manager = client_as(app, "manager")
    manager.environ_base.pop("HTTP_ACCEPT_LANGUAGE")
    page = manager.get(PAGE).get_data(as_text=True)
    assert "Tự đánh giá an toàn" in page
    assert "Lưu kết quả đánh giá" in page
