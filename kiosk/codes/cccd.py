"""The QR code on the Vietnamese chip ID card (căn cước công dân, CCCD).

The card's QR holds pipe-separated UTF-8 text, unsigned::

    ID|old ID|name|DOB ddmmyyyy|gender|address|issue date ddmmyyyy

for example ``001090000123|123456789|NGUYỄN VĂN A|01011990|Nam|Hà Nội|15042021``.
Variants seen in the wild, all accepted:

- the old-ID field empty (``ID||name|...``): the holder never had a 9-digit CMND;
- a 6-field layout without the old-ID field (``ID|name|DOB|gender|address|issue``),
  told apart by field 2 being a name rather than digits or nothing;
- extra trailing fields on newer cards, which are ignored.

Only what the gate needs is kept: ID, name, date of birth and gender. The
address is read past, never stored (privacy: keep the minimum). The issue date
is checked for sanity but not kept.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime

from kiosk.codes.base import (
    KIND_CCCD,
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

# ASCII digits only: Python's \d and str.isdigit() also accept Arabic-Indic
# and superscript digits, which int() then rejects or misreads.
_ID_RE = re.compile(r"[0-9]{12}")
_LEADING_ID_RE = re.compile(rb"[0-9]{9,12}")
_DIGITS_RE = re.compile(r"[0-9]*")
_DDMMYYYY_RE = re.compile(r"([0-9]{2})([0-9]{2})([0-9]{4})")
# The PC-Covid personal QR puts a YYYY-MM-DD date (digits or `*`) third; such
# a payload belongs to kiosk.codes.pccovid even when it starts with an ID.
_PC_COVID_DATE_RE = re.compile(rb"[0-9*]{4}-[0-9*]{2}-[0-9*]{2}")

# Gender words as printed on cards and as some readers transliterate or
# translate them, after NFC and casefold -> the language-neutral value kept.
_GENDERS = {
    "nam": "male",
    "nữ": "female",
    "nu": "female",
    "male": "male",
    "female": "female",
}


@dataclass(frozen=True)
class _Layout:
    """Where each kept field sits in one of the two known layouts."""

    name: int
    birth_date: int
    gender: int
    issue_date: int
    min_fields: int


_WITH_OLD_ID = _Layout(name=2, birth_date=3, gender=4, issue_date=6, min_fields=7)
_WITHOUT_OLD_ID = _Layout(name=1, birth_date=2, gender=3, issue_date=5, min_fields=6)


def _reject(reason: str, detail: str) -> Rejection:
    return Rejection(KIND_CCCD, reason, detail)


def _ddmmyyyy(field: str) -> date | None:
    match = _DDMMYYYY_RE.fullmatch(field.strip())
    if match is None:
        return None
    day, month, year = (int(group) for group in match.groups())
    return make_date(year, month, day)


def _claims(raw: bytes) -> bool:
    """Whether the payload is plausibly a CCCD at all (decided on bytes, so a
    CCCD with a broken byte in the name is still recognised as one)."""
    fields = raw.split(b"|")
    if len(fields) < 2 or _LEADING_ID_RE.fullmatch(fields[0].strip()) is None:
        return False
    return not (len(fields) > 2 and _PC_COVID_DATE_RE.fullmatch(fields[2].strip()))


class CccdFormat:
    """Parses the chip ID card QR. Identity only: the code is unsigned, so the
    credential is unverified and site policy decides whether it admits.

    Returns None when the payload has no pipes or does not start with 9-12
    digits (not a CCCD; let the next format try), a Rejection with a
    ``cccd-*`` reason when it is a CCCD that fails a check, else a Credential.

    >>> from datetime import UTC, datetime
    >>> raw = "001090000123||NGUYỄN VĂN A|01011990|Nam|Hà Nội|15042021".encode()
    >>> CccdFormat().parse(raw, at=datetime(2024, 1, 1, tzinfo=UTC)).masked_id
    '********0123'
    """

    kind = KIND_CCCD

    def parse(self, raw: bytes, *, at: datetime) -> Identified | None:
        """See the class docstring; never raises."""
        raw = payload_bytes(raw)
        if not _claims(raw):
            return None
        text = decode_utf8(raw)
        if text is None:
            return _reject("cccd-bad-encoding", "payload is not valid UTF-8")
        fields = text.split("|")

        id_number = fields[0].strip()
        if _ID_RE.fullmatch(id_number) is None:
            return _reject("cccd-bad-id", f"ID number has {len(id_number)} digits, not 12")

        second = fields[1].strip()
        layout = _WITH_OLD_ID if _DIGITS_RE.fullmatch(second) else _WITHOUT_OLD_ID
        if len(fields) < layout.min_fields:
            return _reject(
                "cccd-bad-fields",
                f"{len(fields)} fields, this layout needs at least {layout.min_fields}",
            )

        name = normalise_name(fields[layout.name])
        if name is None:
            return _reject("cccd-bad-name", "name is empty, too long or has invalid characters")

        born = _ddmmyyyy(fields[layout.birth_date])
        if born is None:
            return _reject("cccd-bad-birth-date", "date of birth is not a real ddmmyyyy date")
        problem = birth_date_problem(born, at=at)
        if problem is not None:
            return _reject("cccd-bad-birth-date", problem)

        gender_word = unicodedata.normalize("NFC", fields[layout.gender].strip()).casefold()
        gender = _GENDERS.get(gender_word)
        if gender is None:
            return _reject("cccd-bad-gender", "gender is not Nam/Nữ (or Male/Female)")

        issued = _ddmmyyyy(fields[layout.issue_date])
        if issued is None:
            return _reject("cccd-bad-issue-date", "issue date is not a real ddmmyyyy date")
        if issued < born:
            return _reject("cccd-bad-issue-date", "issue date is before the date of birth")

        return Credential(
            kind=KIND_CCCD,
            subject_id=id_number,
            display_name=name,
            masked_id=mask_id(id_number),
            id_number=id_number,
            birth_date=born,
            verified=False,
            attributes=(("gender", gender),),
        )
