"""The store's values: what goes into the log and what comes out of it.

Frozen dataclasses only, plus the text form of times every table uses.
Times are stored as fixed-width ISO-8601 UTC text with microseconds and a
``Z`` (``2026-01-05T01:00:00.000000Z``): text order is time order, so range
queries and indexes work on the column as it is, and a human reading the file
with ``sqlite3`` sees a real time.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

DIRECTIONS = ("in", "out")
DECISIONS = ("allow", "deny")

LOG_ORDER = "boot_ordinal, seq"
"""The order events happened in, whatever the wall clock said: boots in the
order the database first saw them, then the per-boot sequence. Times are
filtered on, never sorted on (a Pi has no real-time clock)."""
LOG_ORDER_NEWEST_FIRST = "boot_ordinal DESC, seq DESC"

# Fixed width: every stored time has exactly this shape, so text order = time order.
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

# UTC offsets in use on Earth run from UTC-12:00 to UTC+14:00.
_MIN_OFFSET_MIN = -12 * 60
_MAX_OFFSET_MIN = 14 * 60


def require_aware(value: datetime, name: str) -> None:
    """Refuse a naive datetime: stored times must be instants, not wall-clock readings."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def to_text(value: datetime) -> str:
    """A datetime as fixed-width UTC text, so text order is time order."""
    require_aware(value, "datetime")
    return value.astimezone(UTC).strftime(_TIME_FORMAT)


def from_text(text: str) -> datetime:
    """A stored time back as an aware UTC datetime."""
    # fromisoformat reads the fixed-width "...Z" form ~60x faster than strptime,
    # which matters when a million rows are exported.
    return datetime.fromisoformat(text)


def expiry_cutoff(now: datetime, expiry_h: float) -> str:
    """The stored time before which a presence counts as gone (``expiry_h`` hours)."""
    return to_text(now - timedelta(hours=expiry_h))


def like_escape(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern with ``ESCAPE '\\'``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class NewEvent:
    """A decision about to be recorded: what the scanner knows before the store.

    ``at`` is aware UTC; ``utc_offset_min`` is the site's local offset at that
    instant, so the log can show local time without guessing past DST rules.
    ``subject_hash`` is the keyed hash (hex) that matches one person across
    scans, ``None`` for codes that identify nobody. ``id_number`` is set only
    when the site chose to store full ID numbers; by default it is ``None``.
    """

    gate_id: str
    at: datetime
    utc_offset_min: int
    clock_synced: bool
    direction: str
    decision: str
    reason: str
    kind: str
    subject_hash: str | None
    display_name: str | None
    masked_id: str | None
    id_number: str | None = None
    override: bool = False
    warning: str | None = None
    actor: str | None = None
    """The guard or manager who admitted someone by hand."""
    note: str | None = None
    """The reason a guard gave for a manual admission."""
    birth_date: str | None = None
    """The date of birth (ISO ``YYYY-MM-DD``) of a verified HC1: certificate's
    holder, so a guard can compare it with an ID card; None for other kinds."""
    name_latin: str | None = None
    """The transliterated (ICAO, Latin) name of an HC1: certificate's holder."""
    province_subject_hash: str | None = None
    """The same subject hashed with the province-wide key, only when the
    site turned it on (``privacy.province_key_file``); an internal join key
    for the province, never shown on a page, exported or logged."""

    def __post_init__(self) -> None:
        # Fail at construction, in the caller's code, rather than as a CHECK
        # constraint at the gate, where it would look like a storage failure.
        require_aware(self.at, "at")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, not {self.direction!r}")
        if self.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, not {self.decision!r}")
        if not _MIN_OFFSET_MIN <= self.utc_offset_min <= _MAX_OFFSET_MIN:
            raise ValueError(f"utc_offset_min out of range: {self.utc_offset_min}")


@dataclass(frozen=True, kw_only=True)
class Event(NewEvent):
    """A recorded event: a :class:`NewEvent` plus where it sits in the log.

    ``id`` is a random uuid4 hex, unique across gates and boots; it carries no
    time, because the clock it would carry may be wrong (a Pi has no RTC).
    Order that survives a wrong clock is the boot, then ``seq`` (see
    :data:`LOG_ORDER`): ``seq`` counts 1, 2, 3 ... within one boot of the
    machine, across process restarts.
    """

    id: str
    boot_id: str
    seq: int

    def __post_init__(self) -> None:
        # Checked once, as a NewEvent, before it was recorded; a million rows
        # read back for an export are not checked again.
        pass

    @classmethod
    def of(cls, new: NewEvent, *, id: str, boot_id: str, seq: int) -> Event:
        """``new`` as recorded with this identity."""
        fields = {f.name: getattr(new, f.name) for f in dataclasses.fields(NewEvent)}
        return cls(id=id, boot_id=boot_id, seq=seq, **fields)

    def as_new(self) -> NewEvent:
        """The event's content, to record a follow-up (e.g. a guard's override)."""
        return NewEvent(**{f.name: getattr(self, f.name) for f in dataclasses.fields(NewEvent)})


@dataclass(frozen=True)
class Presence:
    """Someone believed inside: their latest allowed entry with no exit since."""

    subject_hash: str
    display_name: str | None
    masked_id: str | None
    entered_at: datetime
    event_id: str
    gate_id: str


@dataclass(frozen=True)
class KioskHealth:
    """What the kiosk last reported about itself, for the admin web's status page.

    ``fps`` is frames per second actually processed; ``fault`` is a short code
    of the fault the gate is signalling, ``None`` when healthy.
    """

    gate_id: str
    updated_at: datetime
    last_frame_at: datetime | None
    fps: float
    camera: str
    camera_ok: bool
    camera_detail: str
    decoder: str
    pin_backend: str
    clock_synced: bool
    fault: str | None


def search_fold(text: str) -> str:
    """Text folded for search: no case, no diacritics, đ as d.

    So a guard typing "nguyen van an" finds "Nguyễn Văn An".
    """
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.casefold()


@dataclass(frozen=True)
class EventFilter:
    """Which events a log page or an export covers; every field optional.

    ``start`` is inclusive and ``end`` exclusive (aware datetimes). ``text``
    matches part of the name or of the masked ID, ignoring case and
    diacritics.
    """

    start: datetime | None = None
    end: datetime | None = None
    direction: str | None = None
    decision: str | None = None
    reason: str | None = None
    kind: str | None = None
    text: str | None = None
    clock_synced: bool | None = None
    """Only events recorded with (True) or without (False) a synchronised clock."""
    gate_id: str | None = None
    """Only one gate's events (a site's log holds every gate's)."""

    def sql(self) -> tuple[str, tuple[Any, ...]]:
        """A WHERE clause and its parameters; values are always bound, never inlined."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.start is not None:
            clauses.append("at_utc >= ?")
            params.append(to_text(self.start))
        if self.end is not None:
            clauses.append("at_utc < ?")
            params.append(to_text(self.end))
        # Within a time range, the range is the selective term: "+decision"
        # keeps SQLite (which has no statistics) from choosing the
        # (decision, reason) index and scanning half the log instead.
        timed = self.start is not None or self.end is not None
        for column in ("direction", "decision", "reason", "kind", "gate_id"):
            value = getattr(self, column)
            if value:
                plain = "+" if timed and column == "decision" else ""
                clauses.append(f"{plain}{column} = ?")
                params.append(value)
        if self.clock_synced is not None:
            # A literal, not a parameter, so SQLite can use the partial index
            # of unsynchronised events (idx_events_unsynced).
            clauses.append(f"clock_synced = {int(self.clock_synced)}")
        if self.text and self.text.strip():
            pattern = "%" + like_escape(search_fold(self.text.strip())) + "%"
            clauses.append(
                "(fold(coalesce(display_name, '')) LIKE ? ESCAPE '\\' "
                "OR fold(coalesce(masked_id, '')) LIKE ? ESCAPE '\\')"
            )
            params += [pattern, pattern]
        return (" AND ".join(clauses) or "1"), tuple(params)

    def as_dict(self) -> dict[str, str]:
        """The filter as plain text, for the audit log."""
        return {
            f.name: (v.isoformat() if isinstance(v, datetime) else str(v))
            for f in dataclasses.fields(self)
            if (v := getattr(self, f.name)) not in (None, "")
        }


@dataclass(frozen=True)
class Tally:
    entries: int
    exits: int
    refusals: dict[str, int]
    """Refused scans by reason code."""

    @property
    def refused(self) -> int:
        return sum(self.refusals.values())


@dataclass(frozen=True)
class Visit:
    """One stay inside: from an allowed entry to the next allowed exit."""

    subject_hash: str
    display_name: str | None
    masked_id: str | None
    entered_at: datetime
    exited_at: datetime | None
    """None when no exit was recorded (the presence expired or is still open)."""
    entry_event_id: str
    gate_id: str = ""
    """The gate the entry was made at (a site's log has several)."""

    @classmethod
    def of(cls, entry: Event, exited_at: datetime | None) -> Visit:
        assert entry.subject_hash is not None
        return cls(
            entry.subject_hash,
            entry.display_name,
            entry.masked_id,
            entry.at,
            exited_at,
            entry.id,
            entry.gate_id,
        )


@dataclass(frozen=True)
class DenylistEntry:
    subject_hash: str
    label: str
    note: str
    added_at: datetime
    added_by: str | None


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    password_hash: str
    disabled: bool
    created_at: datetime
    password_changed_at: datetime
    session_epoch: int = 0
    """Sessions carry the epoch they began in; logging out bumps it, so a
    cookie copied before the logout no longer works."""


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]
    row_count: int | None


@dataclass(frozen=True)
class AdmitRequest:
    id: int
    requested_at: datetime
    actor: str
    reason: str
    display_name: str | None
    status: str
    gate_id: str | None = None
    """The gate to open; None for the gate whose database this is."""


@dataclass(frozen=True)
class TrustedRow:
    """A trusted signing certificate as stored (see kiosk.trust for its meaning)."""

    id: int
    kid: bytes
    country: str
    subject: str
    not_before: datetime
    not_after: datetime
    der: bytes
    added_at: datetime
    added_by: str


@dataclass(frozen=True)
class SiteCode:
    """A declaration or staff pass as the site keeps it (the QR holds a signed copy)."""

    id: str
    kind: str
    issued_at: datetime
    valid_from: datetime
    expires_at: datetime
    name: str
    phone: str | None
    organisation: str | None
    answers: dict[str, Any]
    verdict: str
    issued_by: str
    """"self" for a visitor's own declaration, else the user who issued it."""
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    text: str | None = None
    """The signed ``GK1:`` text, kept for staff passes only (to print badges
    again); a visitor keeps their own declaration's code."""


@dataclass(frozen=True)
class ThrottleCount:
    """Hits counted under one throttle key (failed logins, declarations).

    ``first_at`` is when the current count began (the window's start, for a
    windowed limit); ``last_at`` the latest hit.
    """

    hits: int
    first_at: datetime
    last_at: datetime


@dataclass(frozen=True)
class AuditNote:
    """An audit row to write in the same transaction as the change it records.

    A store method that takes one writes it only if the change happened, and
    may add to ``detail`` what only the transaction knows (its docstring says
    what), so the log never holds a change without its row or the reverse.
    """

    actor: str
    action: str
    detail: dict[str, Any]
    at: datetime
