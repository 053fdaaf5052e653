"""The national personal QR of decision 1405/QĐ-BTTTT (PC-Covid and friends).

Pipe-separated text, unsigned::

    SoGiayTo|HoTen|NgaySinh|LoaiDinhDanh|QID|EXT

- SoGiayTo: the ID document number (CMND 9 digits, CCCD 12, or a passport
  number). Apps show it masked by default: the first 6 characters become
  ``*`` (``******123456``); the holder can switch to the full number.
- HoTen: the name, upper case, normally without diacritics, words separated
  by one space; some apps mask parts of it (``NGUYEN V** A*``).
- NgaySinh: ``YYYY-MM-DD``; masked by default with day and month as ``*``
  (``1990-**-**``).
- LoaiDinhDanh: ``0`` declared by the holder, ``1`` declared on their behalf.
- QID: an opaque string issued by the national QR platform.
- EXT: extensions (proxy's QID, gender, insurance card, phone number, ...).

Decisions on loose points: at least 5 fields are required (EXT may be
missing); everything from EXT on is ignored, because it holds phone and
insurance numbers the gate has no use for. The date field is what tells this
format from a CCCD (``YYYY-MM-DD`` against ``ddmmyyyy``), so a payload whose
third field is not date-shaped is "not this format" (None).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from kiosk.codes.base import (
    KIND_PC_COVID,
    MAX_AGE_YEARS,
    Credential,
    Identified,
    Rejection,
    birth_date_problem,
    decode_utf8,
    make_date,
    mask_id,
    normalise_name,
    payload_bytes,
)

MIN_FIELDS = 5

_DATE_SHAPE_RE = re.compile(rb"[0-9*]{4}-[0-9*]{2}-[0-9*]{2}")
_DATE_RE = re.compile(r"([0-9*]{4})-([0-9*]{2})-([0-9*]{2})")
# CMND, CCCD and passport numbers, any of them partly masked.
_ID_RE = re.compile(r"[A-Za-z0-9*]{6,20}")
# Opaque but printable: visible ASCII without spaces.
_QID_RE = re.compile(r"[!-~]{1,128}")
_DECLARED_FOR = {"0": "self", "1": "proxy"}


@dataclass(frozen=True)
class _BirthDate:
    """A checked date of birth; ``value`` is None when the code masks part of it."""

    value: date | None


def _reject(reason: str, detail: str) -> Rejection:
    return Rejection(KIND_PC_COVID, reason, detail)


def _birth_date(field: str, *, at: datetime) -> _BirthDate | str:
    """The date of birth, or an English reason it is unbelievable.

    A masked date keeps only the parts shown; those are still range-checked
    so that "2999-**-**" or "1990-13-**" are refused like any bad date.
    """
    match = _DATE_RE.fullmatch(field.strip())
    if match is None:
        return "date of birth is not YYYY-MM-DD"
    year_s, month_s, day_s = match.groups()
    if "*" not in field:
        born = make_date(int(year_s), int(month_s), int(day_s))
        if born is None:
            return "date of birth is not a real date"
        problem = birth_date_problem(born, at=at)
        return _BirthDate(born) if problem is None else problem
    if "*" not in year_s and not (at.year - MAX_AGE_YEARS <= int(year_s) <= at.year):
        return "year of birth is out of range"
    if "*" not in month_s and not 1 <= int(month_s) <= 12:
        return "month of birth is out of range"
    if "*" not in day_s and not 1 <= int(day_s) <= 31:
        return "day of birth is out of range"
    return _BirthDate(None)


class PcCovidFormat:
    """Parses the national personal QR. Identity only, unverified.

    ``subject_id`` is the QID when present: it stays the same whether the
    holder's app shows the ID masked or in full, so entry and exit match.
    Without a QID it is the ID field as given (possibly masked). ``id_number``
    is set only when the ID is shown in full; ``masked_id`` is always our own
    masking of it (last 4 kept), whatever the app revealed.
    """

    kind = KIND_PC_COVID

    def parse(self, raw: bytes, *, at: datetime) -> Identified | None:
        """See the class docstring; never raises."""
        raw = payload_bytes(raw)
        raw_fields = raw.split(b"|")
        if len(raw_fields) < 3 or _DATE_SHAPE_RE.fullmatch(raw_fields[2].strip()) is None:
            return None
        text = decode_utf8(raw)
        if text is None:
            return _reject("pccovid-bad-encoding", "payload is not valid UTF-8")
        fields = text.split("|")
        if len(fields) < MIN_FIELDS:
            return _reject(
                "pccovid-bad-fields", f"{len(fields)} fields, at least {MIN_FIELDS} needed"
            )

        id_field = fields[0].strip()
        qid = fields[4].strip()
        if _ID_RE.fullmatch(id_field) is None:
            return _reject("pccovid-bad-id", "ID is not 6-20 letters, digits or '*'")
        if qid and _QID_RE.fullmatch(qid) is None:
            return _reject("pccovid-bad-qid", "QID has spaces or non-printable characters")
        if not qid and set(id_field) == {"*"}:
            return _reject("pccovid-bad-id", "ID is fully masked and there is no QID")

        name = normalise_name(fields[1], allow_mask=True)
        if name is None:
            return _reject("pccovid-bad-name", "name is empty, too long or has invalid characters")

        born = _birth_date(fields[2], at=at)
        if isinstance(born, str):
            return _reject("pccovid-bad-birth-date", born)

        declared = fields[3].strip()
        attributes: tuple[tuple[str, str], ...] = ()
        if declared:
            declared_for = _DECLARED_FOR.get(declared)
            if declared_for is None:
                return _reject("pccovid-bad-fields", "declared-for is not 0 or 1")
            attributes = (("declared_for", declared_for),)

        return Credential(
            kind=KIND_PC_COVID,
            subject_id=qid or id_field,
            display_name=name,
            masked_id=mask_id(id_field),
            id_number=None if "*" in id_field else id_field,
            birth_date=born.value,
            verified=False,
            attributes=attributes,
        )
