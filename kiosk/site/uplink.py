"""The messages of the up direction: batches of events, acknowledgements,
resync requests and a gate's status, as compact JSON (UTF-8, ``"v": 1``).

A batch carries every column the hub needs to recreate the gate's rows::

    {"v":1,"gate":"main-gate","events":[{"id":"3f…","boot_id":"…","seq":17,
      "gate_id":"main-gate","at_utc":"2026-01-05T01:00:00.000000Z",
      "utc_offset_min":420,"clock_synced":true,"direction":"in",
      "decision":"allow","reason":"ok","kind":"cccd","override":false, …}]}

Optional columns that are empty (NULL) are left out. The hub's acknowledgement
lists the ids it has committed: ``{"v":1,"ids":["3f…", …]}``.

``province_subject_hash`` (issue 18) is one more optional column of version
1: a gate without the province key, or older than it, leaves it out and the
hub stores NULL. A hub older than it refuses an event that carries it, so
upgrade the hub before turning ``privacy.province_key_file`` on at a gate.

Decoding is strict and total: anything that is not exactly a message of
this version (bad UTF-8 or JSON, a duplicate or unknown key, a wrong type,
a value out of range, an event of another gate) comes back as
:class:`Malformed` with a :class:`Problem`; the decoders raise nothing,
whatever the bytes. Receivers count and log a Malformed and apply nothing.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from kiosk.site.topics import is_valid_id
from kiosk.store.values import DECISIONS, DIRECTIONS, Event, from_text, to_text

VERSION = 1
MAX_PAYLOAD_BYTES = 1024 * 1024
"""The broker's own limit (``max_packet_size``); nothing larger is decoded."""
MAX_EVENTS_PER_BATCH = 5000
MAX_TEXT_CHARS = 65536
"""Longest text column accepted; a batch splits to stay under the packet limit."""
MAX_LABEL_CHARS = 200
_TOKEN = re.compile(r"[0-9A-Za-z_.:-]{1,64}")
_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_OFFSET_MIN = -24 * 60
_OFFSET_MAX = 24 * 60


_T = TypeVar("_T")


class Problem(enum.StrEnum):
    """Why a payload was refused (counted per reason by the receiver)."""

    TOO_LARGE = "too-large"
    NOT_JSON = "not-json"  # not UTF-8, not JSON, NaN, duplicate keys, too deep
    NOT_AN_OBJECT = "not-an-object"
    WRONG_VERSION = "wrong-version"
    BAD_FIELD = "bad-field"  # a key missing, unknown, of the wrong type or out of range
    WRONG_GATE = "wrong-gate"  # an event of another gate than the batch's


@dataclass(frozen=True)
class Malformed:
    """A refused payload: the reason and a short detail for the log (never the payload)."""

    problem: Problem
    detail: str


@dataclass(frozen=True)
class EventBatch:
    gate_id: str
    events: tuple[Event, ...]


@dataclass(frozen=True)
class Ack:
    """The hub committed these events (ids)."""

    ids: tuple[str, ...]


@dataclass(frozen=True)
class Resync:
    """Send again every event since ``since`` (a hub rebuilt after losing its disk).

    ``request`` names this request, so a gate handles a retained one once.
    """

    request: str
    since: datetime


@dataclass(frozen=True)
class GateStatus:
    """A gate's retained status: online (with its backlog) or offline (its will)."""

    gate_id: str
    online: bool
    at: datetime | None
    backlog: int | None
    camera_ok: bool | None = None
    """The camera by the gate's health row; None when the status does not say."""
    camera_detail: str | None = None


class _Refused(Exception):
    """Internal: carries a Malformed out of nested checks; never escapes this module."""

    def __init__(self, problem: Problem, detail: str) -> None:
        super().__init__(detail)
        self.malformed = Malformed(problem, detail)


# --- encoding ----------------------------------------------------------------


def _dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def event_fields(event: Event) -> dict[str, Any]:
    """The wire form of one event: its columns, empty optional ones left out."""
    fields: dict[str, Any] = {
        "id": event.id,
        "boot_id": event.boot_id,
        "seq": event.seq,
        "gate_id": event.gate_id,
        "at_utc": to_text(event.at),
        "utc_offset_min": event.utc_offset_min,
        "clock_synced": event.clock_synced,
        "direction": event.direction,
        "decision": event.decision,
        "reason": event.reason,
        "kind": event.kind,
        "override": event.override,
    }
    for name in _OPTIONAL_TEXT:
        value = getattr(event, name)
        if value is not None:
            fields[name] = value
    return fields


def encode_batch(gate_id: str, events: Sequence[Event]) -> bytes:
    return _dumps({"v": VERSION, "gate": gate_id, "events": [event_fields(e) for e in events]})


def encode_ack(ids: Sequence[str]) -> bytes:
    return _dumps({"v": VERSION, "ids": list(ids)})


def encode_resync(request: str, since: datetime) -> bytes:
    return _dumps({"v": VERSION, "request": request, "since": to_text(since)})


def encode_status(status: GateStatus) -> bytes:
    value: dict[str, Any] = {"v": VERSION, "gate": status.gate_id, "online": status.online}
    if status.at is not None:
        value["at"] = to_text(status.at)
    if status.backlog is not None:
        value["backlog"] = status.backlog
    if status.camera_ok is not None:
        value["camera_ok"] = status.camera_ok
    if status.camera_detail is not None:
        value["camera"] = status.camera_detail
    return _dumps(value)


# --- decoding ----------------------------------------------------------------


def decode_batch(payload: bytes) -> EventBatch | Malformed:
    """A batch of events, or why not. Every event must be the batch's gate's."""
    return _decode(payload, _batch)


def decode_ack(payload: bytes) -> Ack | Malformed:
    return _decode(payload, _ack)


def decode_resync(payload: bytes) -> Resync | Malformed:
    return _decode(payload, _resync)


def decode_status(payload: bytes) -> GateStatus | Malformed:
    return _decode(payload, _status)


def _decode(payload: bytes, build: Callable[[dict[str, Any]], _T]) -> _T | Malformed:
    try:
        return build(_object(payload))
    except _Refused as refused:
        return refused.malformed


def _object(payload: bytes) -> dict[str, Any]:
    if not isinstance(payload, bytes | bytearray):
        raise _Refused(Problem.NOT_JSON, "not bytes")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise _Refused(Problem.TOO_LARGE, f"{len(payload)} bytes")
    try:
        value = json.loads(
            bytes(payload).decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _Refused(Problem.NOT_JSON, type(exc).__name__) from None
    if not isinstance(value, dict):
        raise _Refused(Problem.NOT_AN_OBJECT, type(value).__name__)
    version = value.get("v")
    if type(version) is not int or version != VERSION:
        raise _Refused(Problem.WRONG_VERSION, f"v={version!r}"[:40])
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("duplicate key")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _keys(value: dict[str, Any], required: set[str], optional: set[str], where: str) -> None:
    missing = required - value.keys()
    unknown = value.keys() - required - optional
    if missing:
        raise _Refused(Problem.BAD_FIELD, f"{where}: missing {sorted(missing)[0]!r}")
    if unknown:
        raise _Refused(Problem.BAD_FIELD, f"{where}: unknown key {sorted(unknown)[0][:40]!r}")


def _batch(value: dict[str, Any]) -> EventBatch:
    _keys(value, {"v", "gate", "events"}, set(), "batch")
    gate_id = _gate_id(value["gate"], "gate")
    events = value["events"]
    if not isinstance(events, list) or not events:
        raise _Refused(Problem.BAD_FIELD, "events: not a non-empty list")
    if len(events) > MAX_EVENTS_PER_BATCH:
        raise _Refused(Problem.TOO_LARGE, f"{len(events)} events")
    decoded = tuple(_event(item, index) for index, item in enumerate(events))
    for index, event in enumerate(decoded):
        if event.gate_id != gate_id:
            raise _Refused(Problem.WRONG_GATE, f"events[{index}] is another gate's")
    return EventBatch(gate_id=gate_id, events=decoded)


_REQUIRED_EVENT = {
    "id",
    "boot_id",
    "seq",
    "gate_id",
    "at_utc",
    "utc_offset_min",
    "clock_synced",
    "direction",
    "decision",
    "reason",
    "kind",
    "override",
}
_OPTIONAL_TEXT = (
    "subject_hash",
    "display_name",
    "masked_id",
    "id_number",
    "warning",
    "actor",
    "note",
    "birth_date",
    "name_latin",
    "province_subject_hash",
)


def _event(item: Any, index: int) -> Event:
    where = f"events[{index}]"
    if not isinstance(item, dict):
        raise _Refused(Problem.BAD_FIELD, f"{where}: not an object")
    _keys(item, _REQUIRED_EVENT, set(_OPTIONAL_TEXT), where)
    optional = {name: _text(item.get(name), f"{where}.{name}", True) for name in _OPTIONAL_TEXT}
    return Event(
        id=_token(item["id"], f"{where}.id"),
        boot_id=_token(item["boot_id"], f"{where}.boot_id"),
        seq=_int(item["seq"], f"{where}.seq", 1, 2**62),
        gate_id=_gate_id(item["gate_id"], f"{where}.gate_id"),
        at=_at(item["at_utc"], f"{where}.at_utc"),
        utc_offset_min=_int(
            item["utc_offset_min"], f"{where}.utc_offset_min", _OFFSET_MIN, _OFFSET_MAX
        ),
        clock_synced=_bool(item["clock_synced"], f"{where}.clock_synced"),
        direction=_choice(item["direction"], DIRECTIONS, f"{where}.direction"),
        decision=_choice(item["decision"], DECISIONS, f"{where}.decision"),
        reason=_label(item["reason"], f"{where}.reason"),
        kind=_label(item["kind"], f"{where}.kind"),
        override=_bool(item["override"], f"{where}.override"),
        **optional,
    )


def _ack(value: dict[str, Any]) -> Ack:
    _keys(value, {"v", "ids"}, set(), "ack")
    ids = value["ids"]
    if not isinstance(ids, list) or len(ids) > MAX_EVENTS_PER_BATCH:
        raise _Refused(Problem.BAD_FIELD, "ids: not a list of at most one batch")
    return Ack(ids=tuple(_token(i, "ids[]") for i in ids))


def _resync(value: dict[str, Any]) -> Resync:
    _keys(value, {"v", "request", "since"}, set(), "resync")
    return Resync(request=_token(value["request"], "request"), since=_at(value["since"], "since"))


def _status(value: dict[str, Any]) -> GateStatus:
    _keys(value, {"v", "gate", "online"}, {"at", "backlog", "camera_ok", "camera"}, "status")
    at = value.get("at")
    backlog = value.get("backlog")
    camera_ok = value.get("camera_ok")
    return GateStatus(
        gate_id=_gate_id(value["gate"], "gate"),
        online=_bool(value["online"], "online"),
        at=None if at is None else _at(at, "at"),
        backlog=None if backlog is None else _int(backlog, "backlog", 0, 2**62),
        camera_ok=None if camera_ok is None else _bool(camera_ok, "camera_ok"),
        camera_detail=_text(value.get("camera"), "camera", optional=True),
    )


# --- fields ------------------------------------------------------------------


def _bad(where: str, what: str) -> _Refused:
    return _Refused(Problem.BAD_FIELD, f"{where}: {what}")


def _text(value: Any, where: str, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
        raise _bad(where, "not a text of reasonable length")
    return value


def _label(value: Any, where: str) -> str:
    """A reason or kind code: any short non-empty text (a newer gate may know more)."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_LABEL_CHARS:
        raise _bad(where, "not a short text")
    return value


def _token(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise _bad(where, "not a short id")
    return value


def _gate_id(value: Any, where: str) -> str:
    if not is_valid_id(value):
        raise _bad(where, "not a gate id")
    return str(value)


def _int(value: Any, where: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _bad(where, f"not an integer from {low} to {high}")
    return value


def _bool(value: Any, where: str) -> bool:
    if type(value) is not bool:
        raise _bad(where, "not true or false")
    return value


def _choice(value: Any, choices: Sequence[str], where: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _bad(where, f"not one of {', '.join(choices)}")
    return value


def _at(value: Any, where: str) -> datetime:
    if not isinstance(value, str) or not _AT.fullmatch(value):
        raise _bad(where, "not a UTC time like 2026-01-05T01:00:00.000000Z")
    try:
        return from_text(value)
    except ValueError:
        raise _bad(where, "not a valid date and time") from None
