"""Issuing the site's signed codes: health declarations and staff passes.

One place for the web form, the guard's desk and ``gatekiosk declare``: the
questions and which answers refuse entry, the validity, signing with the
site key, and the record the site keeps (with the phone number, which the
code itself never carries).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kiosk.codes.base import KIND_DECLARATION, KIND_STAFF_PASS, normalise_name
from kiosk.codes.sitecodes import SiteCodeClaims, issue_code, new_code_id
from kiosk.errors import GateError
from kiosk.keys import load_signing_key
from kiosk.store import AuditNote, SiteCode, Store

QUESTIONS_SETTING = "declaration.questions"
"""Where the site's questions live among the settings managers change on the web."""

MAX_PASS_DAYS = 366
_PHONE = re.compile(r"^\+?[0-9][0-9 .-]{7,18}[0-9]$")


class DeclarationError(GateError):
    """A declaration or pass cannot be issued as asked; the message says why."""


TEXT_ANSWER_MAX_CHARS = 100
"""The longest free-text answer (whom a visitor comes to see, their company,
a vehicle plate): enough for those, short enough for a log line."""


@dataclass(frozen=True)
class Question:
    """A question of the declaration.

    A yes/no health question by default: ``refuse_on_yes`` says whether a
    "yes" refuses entry. With ``free_text`` it is an optional line the
    visitor may fill in (whom they visit, their company, a vehicle plate),
    kept with the record and never refusing entry nor signed into the code.
    """

    key: str
    vi: str
    en: str
    refuse_on_yes: bool = True
    free_text: bool = False


DEFAULT_QUESTIONS: tuple[Question, ...] = (
    Question(
        "symptoms",
        "Trong 14 ngày qua, anh/chị có bị sốt, ho hoặc khó thở không?",
        "In the last 14 days, have you had a fever, a cough or shortness of breath?",
    ),
    Question(
        "contact",
        "Trong 14 ngày qua, anh/chị có tiếp xúc với người mắc bệnh đã được xác nhận không?",
        "In the last 14 days, have you been in contact with a confirmed case?",
    ),
    Question(
        "area",
        "Anh/chị có đến từ khu vực mà cơ sở này chỉ định (vùng dịch) không?",
        "Have you arrived from an area this site designates (an outbreak area)?",
    ),
)


def questions_from(site_settings: Mapping[str, Any]) -> tuple[Question, ...]:
    """The site's questions: the managers' version if they edited them, else the defaults."""
    stored = site_settings.get(QUESTIONS_SETTING)
    if not stored:
        return DEFAULT_QUESTIONS
    try:
        return tuple(Question(**item) for item in stored)
    except (TypeError, ValueError):
        return DEFAULT_QUESTIONS


def questions_setting(questions: Sequence[Question]) -> list[dict[str, Any]]:
    """Questions as stored in the site settings (JSON); ``free_text`` only
    where set, so yes/no questions are stored as before it existed."""
    stored = []
    for question in questions:
        item = asdict(question)
        if not question.free_text:
            del item["free_text"]
        stored.append(item)
    return stored


def verdict_of(questions: Sequence[Question], answers: Mapping[str, bool]) -> str | None:
    """The key of the first answer that refuses entry, or None when all are fine.

    A question left unanswered counts as the refusing answer: a form that
    was tampered with must not pass as healthy.
    """
    for question in questions:
        if question.free_text:
            continue  # a line of text never refuses entry
        answer = answers.get(question.key)
        if answer is None or answer == question.refuse_on_yes:
            return question.key
    return None


def clean_text_answer(text: str) -> str:
    """A free-text answer as kept: spaces collapsed, at most
    :data:`TEXT_ANSWER_MAX_CHARS`, no control or format characters (which
    would garble the log, or reorder what a reader sees); DeclarationError
    otherwise. Empty is fine: these questions are optional."""
    cleaned = " ".join(text.split())
    if len(cleaned) > TEXT_ANSWER_MAX_CHARS:
        raise DeclarationError(f"an answer has at most {TEXT_ANSWER_MAX_CHARS} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in cleaned):
        raise DeclarationError("an answer must not contain control characters")
    return cleaned


def clean_phone(phone: str) -> str:
    text = phone.strip()
    if not _PHONE.match(text):
        raise DeclarationError("the phone number must have 9 to 15 digits")
    return re.sub(r"[ .-]", "", text)


def clean_name(name: str) -> str:
    cleaned = normalise_name(name)
    if cleaned is None:
        raise DeclarationError("the name must be letters and spaces, up to 100 characters")
    return cleaned


@dataclass(frozen=True)
class Issued:
    record: SiteCode
    text: str
    """The ``GK1:`` payload to put in the QR code."""


def issue_declaration(
    store: Store,
    keys_folder: Path,
    *,
    site_id: str,
    name: str,
    phone: str,
    answers: Mapping[str, bool],
    questions: Sequence[Question],
    validity: timedelta,
    at: datetime,
    issued_by: str,
    audit: AuditNote | None = None,
    texts: Mapping[str, str] | None = None,
) -> Issued:
    """Sign a declaration and keep its record; a refusing answer is signed too,
    so the gate can tell the visitor why (and the guard can decide). ``audit``,
    completed with the code's id and verdict, is written with the record.

    ``texts`` answers the free-text questions (by key); they are kept in the
    record's answers, beside the yes/no ones, and not signed into the code.
    """
    cleaned_name = clean_name(name)
    cleaned_phone = clean_phone(phone)
    written: dict[str, str] = {}
    for question in questions:
        if question.free_text and (
            answer := clean_text_answer((texts or {}).get(question.key, ""))
        ):
            written[question.key] = answer
    refused = verdict_of(questions, answers)
    kid, private_key = load_signing_key(keys_folder)
    code_id = new_code_id()
    claims = SiteCodeClaims(
        kind=KIND_DECLARATION,
        site_id=site_id,
        code_id=code_id,
        name=cleaned_name,
        issued_at=at,
        expires_at=at + validity,
        refused_answer=refused,
    )
    text = issue_code(claims, private_key, kid)
    record = SiteCode(
        id=code_id.hex(),
        kind=KIND_DECLARATION,
        issued_at=at,
        valid_from=at,
        expires_at=at + validity,
        name=cleaned_name,
        phone=cleaned_phone,
        organisation=None,
        answers={q.key: answers.get(q.key) for q in questions if not q.free_text} | written,
        verdict="refuse" if refused else "ok",
        issued_by=issued_by,
    )
    if audit is not None:
        audit = replace(audit, detail={**audit.detail, "verdict": record.verdict})
    store.save_site_code(record, audit=audit)
    return Issued(record, text)


def issue_staff_pass(
    store: Store,
    keys_folder: Path,
    *,
    site_id: str,
    name: str,
    staff_id: str,
    organisation: str | None,
    valid_from: datetime,
    valid_until: datetime,
    at: datetime,
    issued_by: str,
    audit: AuditNote | None = None,
) -> Issued:
    """Sign a staff pass valid for up to a year and keep its record (and
    ``audit``, completed with the code's id and the holder's name, in the
    same transaction)."""
    cleaned_name = clean_name(name)
    if valid_until <= valid_from:
        raise DeclarationError("a pass must end after it starts")
    if valid_until - valid_from > timedelta(days=MAX_PASS_DAYS):
        raise DeclarationError("a pass is valid for a year at most")
    kid, private_key = load_signing_key(keys_folder)
    code_id = new_code_id()
    try:
        claims = SiteCodeClaims(
            kind=KIND_STAFF_PASS,
            site_id=site_id,
            code_id=code_id,
            name=cleaned_name,
            issued_at=at,
            expires_at=valid_until,
            not_before=valid_from,
            staff_id=staff_id.strip(),
            organisation=(organisation or "").strip() or None,
        )
    except ValueError as exc:
        raise DeclarationError(str(exc)) from exc
    text = issue_code(claims, private_key, kid)
    record = SiteCode(
        id=code_id.hex(),
        kind=KIND_STAFF_PASS,
        issued_at=at,
        valid_from=valid_from,
        expires_at=valid_until,
        name=cleaned_name,
        phone=None,
        organisation=claims.organisation,
        answers={"staff_id": claims.staff_id},
        verdict="ok",
        issued_by=issued_by,
        text=text,  # kept so badge sheets can be printed again
    )
    if audit is not None:
        audit = replace(audit, detail={**audit.detail, "name": record.name})
    store.save_site_code(record, audit=audit)
    return Issued(record, text)
