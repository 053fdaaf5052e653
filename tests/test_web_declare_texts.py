"""Free-text questions on the declaration (issue 15, item 17): managers add
them, visitors may answer them, the log's event page shows the answers."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from kiosk.clock import FakeClock
from kiosk.codes.base import KIND_DECLARATION
from kiosk.declarations import (
    DEFAULT_QUESTIONS,
    QUESTIONS_SETTING,
    TEXT_ANSWER_MAX_CHARS,
    Question,
    questions_from,
    questions_setting,
    verdict_of,
)
from kiosk.privacy import subject_hash
from kiosk.store import EventFilter, Store
from tests.test_web_declare import keys, question_form, submit  # noqa: F401 - fixture
from tests.web import record

VISITING = {"vi": "Anh/chị đến gặp ai?", "en": "Whom are you visiting?"}
PLATE = {"vi": "Biển số xe", "en": "Vehicle plate"}


def add_text_questions(manager: FlaskClient) -> None:
    rows = [
        {"key": q.key, "position": str(i + 1), "vi": q.vi, "en": q.en, "refuse": "yes"}
        for i, q in enumerate(DEFAULT_QUESTIONS)
    ]
    rows.append({"key": "", "position": "8", **VISITING, "answer-kind": "text"})
    rows.append({"key": "", "position": "9", **PLATE, "answer-kind": "text"})
    response = manager.post("/declarations/questions", data=question_form(manager, rows))
    assert response.status_code == 302, response.get_data(as_text=True)


def test_a_text_question_never_refuses_and_is_stored_apart() -> None:
    questions = (*DEFAULT_QUESTIONS, Question("plate", "Biển số", "Plate", free_text=True))
    answers = {q.key: False for q in DEFAULT_QUESTIONS}
    assert verdict_of(questions, answers) is None
    stored = questions_setting(questions)
    assert "free_text" not in stored[0]  # yes/no questions are stored as before
    assert stored[-1]["free_text"] is True
    assert questions_from({QUESTIONS_SETTING: stored}) == questions


def test_managers_add_text_questions_and_visitors_answer_them(
    manager: FlaskClient,
    client: FlaskClient,
    web_store: Store,
    keys: Path,  # noqa: F811
) -> None:
    add_text_questions(manager)
    stored = web_store.site_settings()[QUESTIONS_SETTING]
    assert [q.get("free_text", False) for q in stored] == [False, False, False, True, True]
    form = client.get("/declare").get_data(as_text=True)
    assert "Whom are you visiting?" in form
    assert f'maxlength="{TEXT_ANSWER_MAX_CHARS}"' in form

    status, page = submit(
        client,
        **{
            "answer-whom-are-you-visiting": "  Chị   Lan, phòng kế toán ",
            "answer-vehicle-plate": "",
        },
    )
    assert status == 200, page
    [code] = web_store.site_codes(KIND_DECLARATION, now=FakeClock().now())
    assert code.verdict == "ok"
    assert code.answers["whom-are-you-visiting"] == "Chị Lan, phòng kế toán"
    assert "vehicle-plate" not in code.answers  # an empty optional answer is not kept


def test_a_too_long_or_garbled_answer_is_refused_with_what_was_typed(
    manager: FlaskClient,
    client: FlaskClient,
    web_store: Store,
    keys: Path,  # noqa: F811
) -> None:
    add_text_questions(manager)
    status, page = submit(client, **{"answer-vehicle-plate": "x" * (TEXT_ANSWER_MAX_CHARS + 1)})
    assert status == 400
    assert f"Use at most {TEXT_ANSWER_MAX_CHARS} characters" in page
    status, page = submit(client, **{"answer-vehicle-plate": "51A\u202e123"})
    assert status == 400
    assert not web_store.site_codes(KIND_DECLARATION, now=FakeClock().now())


def test_only_text_questions_are_not_enough(manager: FlaskClient) -> None:
    rows = [
        {"key": q.key, "position": str(i + 1), "vi": q.vi, "en": q.en, "remove": "yes"}
        for i, q in enumerate(DEFAULT_QUESTIONS)
    ]
    rows.append({"key": "", "position": "8", **PLATE, "answer-kind": "text"})
    response = manager.post("/declarations/questions", data=question_form(manager, rows))
    assert response.status_code == 400
    assert "Keep at least one yes/no question" in response.get_data(as_text=True)


def test_the_event_page_shows_the_declarations_answers(
    app: Flask,
    manager: FlaskClient,
    client: FlaskClient,
    web_store: Store,
    clock: FakeClock,
    keys: Path,  # noqa: F811
) -> None:
    add_text_questions(manager)
    submit(
        client, **{"answer-whom-are-you-visiting": "Chị Lan", "answer-vehicle-plate": "51A-123.45"}
    )
    [code] = web_store.site_codes(KIND_DECLARATION, now=clock.now())
    hash_key = app.extensions["gatekiosk"].hash_key
    record(
        web_store,
        clock,
        kind=KIND_DECLARATION,
        subject_hash=subject_hash(hash_key, f"{KIND_DECLARATION}:{code.id}"),
        display_name=code.name,
        masked_id=None,
    )
    [event] = web_store.find_events(EventFilter(), limit=1)
    page = manager.get(f"/log/{event.id}").get_data(as_text=True)
    assert 'id="declaration-answers"' in page
    assert "Whom are you visiting?" in page
    assert "<bdi>Chị Lan</bdi>" in page
    assert "<bdi>51A-123.45</bdi>" in page
    assert code.phone
    assert code.phone not in page  # the record's phone stays on the managers' list


def test_an_event_of_another_code_shows_no_answers(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock)
    [event] = web_store.find_events(EventFilter(), limit=1)
    assert 'id="declaration-answers"' not in manager.get(f"/log/{event.id}").get_data(as_text=True)


def test_the_declarations_list_shows_the_text_answers(
    manager: FlaskClient,
    client: FlaskClient,
    keys: Path,  # noqa: F811
) -> None:
    add_text_questions(manager)
    submit(client, **{"answer-whom-are-you-visiting": "Chị Lan"})
    page = manager.get("/declarations").get_data(as_text=True)
    assert "Whom are you visiting?: <bdi>Chị Lan</bdi>" in page
