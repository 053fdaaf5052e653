"""The declaration questions' form: rows as typed, checked, and turned into questions.

Kept apart from :mod:`admin_web.declare`, whose route shows and saves the
form: this is the rows' logic only (keys, order, texts, the kind of answer).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from flask_babel import gettext as _

from kiosk.declarations import Question

MAX_QUESTIONS = 8
QUESTION_MAX_CHARS = 200
KEY_MAX_CHARS = 24
_KEY = re.compile(r"[a-z0-9-]{1,24}")
"""A question key as signed codes carry it (kiosk.codes.sitecodes)."""


@dataclass
class QuestionRow:
    """One row of the questions form."""

    key: str = ""
    position: str = ""
    vi: str = ""
    en: str = ""
    refuse_on_yes: bool = True
    free_text: bool = False
    """An optional line of text rather than yes or no."""
    remove: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def blank(self) -> bool:
        return not self.vi.strip() and not self.en.strip()


def slug_key(text: str, taken: set[str]) -> str:
    """A new question key from its English text: lower-case ASCII words joined
    by dashes, at most 24 characters, unique among ``taken``."""
    folded = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    ascii_text = folded.encode("ascii", "ignore").decode("ascii").lower()
    words = re.findall(r"[a-z0-9]+", ascii_text)
    base = ""
    for word in words:
        candidate = f"{base}-{word}" if base else word
        if len(candidate) > KEY_MAX_CHARS - 3:  # room for a "-2" suffix
            break
        base = candidate
    base = base or (words[0][: KEY_MAX_CHARS - 3] if words else "question")
    key, number = base, 2
    while key in taken:
        key = f"{base}-{number}"
        number += 1
    return key


def rows_of(questions: Sequence[Question]) -> list[QuestionRow]:
    rows = [
        QuestionRow(
            key=q.key,
            position=str(i + 1),
            vi=q.vi,
            en=q.en,
            refuse_on_yes=q.refuse_on_yes,
            free_text=q.free_text,
        )
        for i, q in enumerate(questions)
    ]
    while len(rows) < MAX_QUESTIONS:
        rows.append(QuestionRow(position=str(len(rows) + 1), refuse_on_yes=True))
    return rows


def posted_rows(form: Mapping[str, str]) -> list[QuestionRow]:
    return [
        QuestionRow(
            key=form.get(f"key-{i}", "").strip(),
            position=form.get(f"position-{i}", "").strip(),
            vi=" ".join(form.get(f"vi-{i}", "").split()),
            en=" ".join(form.get(f"en-{i}", "").split()),
            refuse_on_yes=form.get(f"refuse-{i}") == "yes",
            free_text=form.get(f"answer-kind-{i}") == "text",
            remove=form.get(f"remove-{i}") == "yes",
        )
        for i in range(MAX_QUESTIONS)
    ]


def _text_problem(text: str) -> str | None:
    if not text:
        return _("Enter the question in both languages.")
    if len(text) > QUESTION_MAX_CHARS:
        return _("Use at most %(count)d characters.", count=QUESTION_MAX_CHARS)
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        return _("The text contains characters that cannot be shown.")
    return None


def questions_from_rows(
    rows: list[QuestionRow], current: Sequence[Question]
) -> tuple[list[Question] | None, list[str]]:
    """The questions the rows describe, in their order, or None and the
    problems (also noted on the rows). Existing questions keep their keys, so
    the record of declarations already made still reads right; new ones get
    a key from their English text."""
    general: list[str] = []
    kept = [(index, row) for index, row in enumerate(rows) if not row.remove and not row.blank]
    for _index, row in kept:
        for text in (row.vi, row.en):
            problem = _text_problem(text)
            if problem and problem not in row.problems:
                row.problems.append(problem)
    if not kept:
        general.append(_("Keep at least one question."))
    elif all(row.free_text for _index, row in kept):
        general.append(_("Keep at least one yes/no question: the gate decides on those."))

    def order(item: tuple[int, QuestionRow]) -> tuple[float, int]:
        index, row = item
        try:
            position = float(row.position)
        except ValueError:
            position = index + 1
        return (position if math.isfinite(position) else index + 1, index)

    kept.sort(key=order)
    known = {q.key for q in current}
    taken: set[str] = set()
    keys: list[str | None] = []
    for _index, row in kept:
        key = row.key if _KEY.fullmatch(row.key) and row.key in known else None
        if key is not None and key not in taken:
            taken.add(key)
            keys.append(key)
        else:
            keys.append(None)
    questions = []
    for (_index, row), key in zip(kept, keys, strict=True):
        if key is None:
            key = slug_key(row.en, taken | known)
            taken.add(key)
        questions.append(
            Question(
                key,
                row.vi,
                row.en,
                # A line of text refuses nobody; keep the default, not the box.
                refuse_on_yes=row.refuse_on_yes or row.free_text,
                free_text=row.free_text,
            )
        )
    if general or any(row.problems for _index, row in kept):
        return None, general
    return questions, general
