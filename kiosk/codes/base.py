"""What a payload turns into: a Credential or a Rejection, never an exception."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol

# Code kinds, as in DESIGN.md's table. Used identically in the database and UI.
KIND_DECLARATION = "declaration"
KIND_STAFF_PASS = "staff-pass"  # noqa: S105 -- a code kind, not a password
KIND_CCCD = "cccd"
KIND_PC_COVID = "pc-covid"
KIND_HCERT = "hcert"
KIND_UNRECOGNISED = "unrecognised"

REASON_REVOKED = "sitecode-revoked"
"""A code the site issued and a manager revoked. Revocation is not the codes'
business (they touch no database): the gate's view says it, the policy refuses."""


@dataclass(frozen=True)
class Credential:
    """A payload that parsed (and, for signed kinds, verified).

    ``subject_id`` is the most stable identifier the code carries (an ID
    number, a pass id); the store keeps only a keyed hash of it. ``id_number``
    is the full ID number when the code carries one; it is stored only when a
    manager turns that on. ``verified`` is True only when a signature was
    checked; identity-only kinds are unverified and allowed by policy.
    ``code_id`` is the id (hex) of a code the site issued (a declaration, a
    staff pass), which revocation refers to; None for codes from elsewhere.
    """

    kind: str
    subject_id: str
    display_name: str
    masked_id: str | None = None
    id_number: str | None = None
    birth_date: date | None = None
    verified: bool = False
    valid_until: datetime | None = None
    attributes: tuple[tuple[str, str], ...] = field(default=())
    code_id: str | None = None


@dataclass(frozen=True)
class Rejection:
    """A payload that cannot be trusted or understood.

    ``reason`` is a reason code (kebab-case, stable, see kiosk.messages);
    ``detail`` is a short English explanation for the log that never contains
    the payload itself or an ID number. ``display_name`` is the holder's
    name, only for a genuine code refused for what it says (its signature
    verified: expired, not yet valid, a refusing answer), so the guard
    knows whose it is; None for anything that could be forged.
    """

    kind: str
    reason: str
    detail: str = ""
    display_name: str | None = None


Identified = Credential | Rejection


class CodeFormat(Protocol):
    """One payload format. ``parse`` returns None when the payload is not of
    this format at all, so the registry can try the next one.

    ``at`` is the verification time (UTC, aware); formats without validity
    ignore it. Implementations must not raise on any input.
    """

    kind: str

    def parse(self, raw: bytes, *, at: datetime) -> Identified | None: ...


# --- Helpers shared by the text parsers -------------------------------------
# They live here, next to the contracts, because every identity-only format
# needs the same answers to the same questions: how to read the bytes, how to
# show an ID without revealing it, what a displayable name is, and what a
# believable date of birth is.

UTF8_BOM = b"\xef\xbb\xbf"

# A person older than this is a garbled or invented date, not a visitor.
MAX_AGE_YEARS = 130

# Longer than any real name; keeps a hostile code from flooding the screen.
MAX_NAME_CHARS = 100

# Punctuation that appears in real names ("O'Neil", "Lê-Anh", "Jr.").
_NAME_PUNCTUATION = frozenset("'-.")


def payload_bytes(raw: bytes) -> bytes:
    """The meaningful bytes of a payload: without a leading UTF-8 BOM and
    without surrounding ASCII whitespace.

    Some generators write a BOM and some scanners append CR/LF; neither is
    part of any field, and keeping them would make a valid code look invalid.
    """
    if raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM) :]
    return raw.strip(b" \t\r\n")


def decode_utf8(raw: bytes) -> str | None:
    """Strict UTF-8, or None: a payload that is not valid UTF-8 cannot be
    read faithfully, and guessing another encoding would invent a name."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def mask_id(value: str, *, keep: int = 4) -> str:
    """An ID for display: every character replaced by ``*`` except the last
    ``keep`` (4 by default, so "001090000123" shows as "********0123").

    Short values keep at most half their characters, so a masked value never
    reveals most of the original. The length is kept: a guard can tell a
    12-digit CCCD from a 9-digit CMND at a glance.
    """
    shown = min(keep, len(value) // 2)
    return "*" * (len(value) - shown) + value[len(value) - shown :]


def normalise_name(value: str, *, allow_mask: bool = False) -> str | None:
    """A name fit for the screen and the log, or None if there is none.

    NFC-normalised (Vietnamese names arrive in NFD from some phones), inner
    whitespace collapsed to single spaces, at most MAX_NAME_CHARS. Allowed:
    letters, combining marks, spaces, ``'-.`` and, with ``allow_mask``, the
    ``*`` that masked codes use; at least one letter is required. Control
    and format characters (including tabs and zero-width characters) make the
    whole name invalid rather than being silently dropped, because they mean
    the payload is garbled or crafted.
    """
    text = unicodedata.normalize("NFC", value)
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        return None
    text = " ".join(text.split())
    if not text or len(text) > MAX_NAME_CHARS:
        return None
    has_letter = False
    for ch in text:
        category = unicodedata.category(ch)
        if category.startswith("L"):
            has_letter = True
        elif not (
            category.startswith("M")
            or ch == " "
            or ch in _NAME_PUNCTUATION
            or (allow_mask and ch == "*")
        ):
            return None
    return text if has_letter else None


def birth_date_problem(born: date, *, at: datetime) -> str | None:
    """Why ``born`` cannot be a visitor's date of birth at time ``at``, or
    None when it can.

    One day of slack for the future: ``at`` is UTC while ID documents carry
    Vietnamese local dates (UTC+7).
    """
    today = at.date()
    if born > today + timedelta(days=1):
        return "date of birth is in the future"
    if born.year < today.year - MAX_AGE_YEARS:
        return f"date of birth is more than {MAX_AGE_YEARS} years ago"
    return None


def make_date(year: int, month: int, day: int) -> date | None:
    """The calendar date, or None when it does not exist (31 February)."""
    try:
        return date(year, month, day)
    except ValueError:
        return None
