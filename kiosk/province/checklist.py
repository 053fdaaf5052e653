"""The province's self-assessment checklist: read, checked, published as a new version.

The authority writes the checklist as a TOML file (the format of the
settings files: comments allowed, Vietnamese text as is) and publishes it
with ``gatekiosk province checklist DSN FILE``. Each publish is a new
version (the greatest so far plus one); an old version is never edited,
since the ratings made on it name it. Hubs fetch the newest version through
``gatekiosk uplink`` (:mod:`kiosk.province.assessment`).

Example file (``deploy/province-checklist.toml`` is a fuller one)::

    title = "Tiêu chí an toàn / Safety criteria"
    stale_after_days = 30

    [[questions]]
    id = "sanitiser"
    vi = "Có dung dịch sát khuẩn tay tại cổng"
    en = "Hand sanitiser at the gate"
"""

from __future__ import annotations

import json
import logging
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg

from kiosk.errors import GateError

log = logging.getLogger(__name__)

QUESTION_ID = re.compile(r"[a-z0-9_-]{1,40}")
MAX_TEXT = 300
"""Characters, at most, in a title or a question's text."""
MAX_QUESTIONS = 50
MAX_STALE_AFTER_DAYS = 3650


class ChecklistError(GateError):
    """A checklist file that cannot be published; the message says what to fix."""


@dataclass(frozen=True)
class Question:
    """One measure the sites answer yes or no: its id, Vietnamese and English text."""

    id: str
    vi: str
    en: str


@dataclass(frozen=True)
class Checklist:
    """A checklist ready to publish. ``stale_after_days``: a site's rating
    older than this counts as stale on the province web."""

    title: str
    stale_after_days: int
    questions: tuple[Question, ...]

    def questions_json(self) -> str:
        """The questions as the province stores them: ``[{"id", "vi", "en"}, ...]``."""
        return json.dumps(
            [{"id": q.id, "vi": q.vi, "en": q.en} for q in self.questions], ensure_ascii=False
        )


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ChecklistError(f"{where}: thiếu hoặc không phải chuỗi ký tự / missing or not a text")
    text = value.strip()
    if len(text) > MAX_TEXT:
        raise ChecklistError(
            f"{where}: dài {len(text)} ký tự, tối đa {MAX_TEXT} / "
            f"{len(text)} characters long, at most {MAX_TEXT}"
        )
    return text


def _question(item: object, number: int) -> Question:
    where = f"questions[{number}]"
    if not isinstance(item, Mapping):
        raise ChecklistError(f"{where}: phải có id, vi, en / needs id, vi, en")
    unknown = sorted(set(item) - {"id", "vi", "en"})
    if unknown:
        raise ChecklistError(
            f"{where}: khóa không hợp lệ / unknown key(s): {', '.join(map(str, unknown))}"
        )
    question_id = item.get("id")
    if not isinstance(question_id, str) or not QUESTION_ID.fullmatch(question_id):
        raise ChecklistError(
            f"{where}.id {question_id!r}: 1-40 chữ thường, chữ số, '_' hoặc '-' / "
            "1 to 40 lower-case letters, digits, '_' or '-'"
        )
    return Question(
        question_id, _text(item.get("vi"), f"{where}.vi"), _text(item.get("en"), f"{where}.en")
    )


def parse_checklist(data: Mapping[str, object]) -> Checklist:
    """Check a checklist document: title, stale_after_days, 1-50 questions with
    unique ids. Raises :class:`ChecklistError` naming the first problem."""
    unknown = sorted(set(data) - {"title", "stale_after_days", "questions"})
    if unknown:
        raise ChecklistError(f"khóa không hợp lệ / unknown key(s): {', '.join(unknown)}")
    title = _text(data.get("title"), "title")
    stale = data.get("stale_after_days", 30)
    if (
        not isinstance(stale, int)
        or isinstance(stale, bool)
        or not 1 <= stale <= MAX_STALE_AFTER_DAYS
    ):
        raise ChecklistError(
            f"stale_after_days {stale!r}: số ngày từ 1 đến {MAX_STALE_AFTER_DAYS} / "
            f"a number of days from 1 to {MAX_STALE_AFTER_DAYS}"
        )
    items = data.get("questions")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_QUESTIONS:
        raise ChecklistError(
            f"questions: cần từ 1 đến {MAX_QUESTIONS} câu hỏi / "
            f"1 to {MAX_QUESTIONS} questions needed"
        )
    questions = tuple(_question(item, number) for number, item in enumerate(items, 1))
    seen: set[str] = set()
    for question in questions:
        if question.id in seen:
            raise ChecklistError(
                f"questions: id {question.id!r} bị trùng / id {question.id!r} used twice"
            )
        seen.add(question.id)
    return Checklist(title=title, stale_after_days=stale, questions=questions)


def load_checklist(path: Path) -> Checklist:
    """Read and check a TOML checklist file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ChecklistError(
            f"{path}: không đọc được tệp / cannot read the file: {exc.strerror}"
        ) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ChecklistError(f"{path}: không phải TOML hợp lệ / not valid TOML: {exc}") from exc
    return parse_checklist(data)


def publish_checklist(dsn: str, checklist: Checklist) -> int:
    """Publish ``checklist`` as the next version at the province; that version.

    Run as the schema's owner. The table is locked against other publishes
    for the transaction, so two at once get two versions, not an error.
    """
    with psycopg.connect(dsn) as conn:
        conn.execute("LOCK TABLE province.checklists IN SHARE ROW EXCLUSIVE MODE")
        row = conn.execute(
            "INSERT INTO province.checklists (version, title, questions, stale_after_days) "
            "SELECT coalesce(max(version), 0) + 1, %s, %s::jsonb, %s FROM province.checklists "
            "RETURNING version",
            (checklist.title, checklist.questions_json(), checklist.stale_after_days),
        ).fetchone()
    assert row is not None  # INSERT ... SELECT of an aggregate inserts one row
    version = int(row[0])
    log.info("checklist version %d published (%d questions)", version, len(checklist.questions))
    return version
