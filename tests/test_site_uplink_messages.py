"""The up direction's messages: batches and acknowledgements round-trip exactly;
anything else is refused with a typed reason, and decoding never raises."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.site.uplink import (
    MAX_PAYLOAD_BYTES,
    Ack,
    EventBatch,
    GateStatus,
    Malformed,
    Problem,
    Resync,
    decode_ack,
    decode_batch,
    decode_resync,
    decode_status,
    encode_ack,
    encode_batch,
    encode_resync,
    encode_status,
)
from kiosk.store import Event

T0 = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)


def event(**overrides: Any) -> Event:
    fields: dict[str, Any] = {
        "id": "0f" * 16,
        "boot_id": "6d1c1e2a-6b43-4b6e-9d7e-3d0f5d6f8a11",
        "seq": 17,
        "gate_id": "main-gate",
        "at": T0,
        "utc_offset_min": 420,
        "clock_synced": True,
        "direction": "in",
        "decision": "allow",
        "reason": "ok",
        "kind": "cccd",
        "subject_hash": "a1" * 32,
        "display_name": "Nguyễn Văn A",
        "masked_id": "0010******23",
    }
    fields.update(overrides)
    return Event(**fields)


texts = st.none() | st.text(max_size=40)
events = st.builds(
    Event,
    id=st.uuids().map(lambda u: u.hex),
    boot_id=st.from_regex(r"[0-9a-z-]{1,36}", fullmatch=True),
    seq=st.integers(1, 2**40),
    gate_id=st.just("main-gate"),
    at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    utc_offset_min=st.integers(-720, 840),
    clock_synced=st.booleans(),
    direction=st.sampled_from(["in", "out"]),
    decision=st.sampled_from(["allow", "deny"]),
    reason=st.sampled_from(["ok", "expired", "denylisted", "store-fault"]),
    kind=st.sampled_from(["cccd", "hcert", "declaration"]),
    subject_hash=texts,
    display_name=texts,
    masked_id=texts,
    id_number=texts,
    override=st.booleans(),
    warning=texts,
    actor=texts,
    note=texts,
    birth_date=texts,
    name_latin=texts,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(events, min_size=1, max_size=5))
def test_a_batch_comes_back_exactly_as_it_went(batch: list[Event]) -> None:
    assert decode_batch(encode_batch("main-gate", batch)) == EventBatch("main-gate", tuple(batch))


def test_the_batch_is_compact_json_with_the_event_columns() -> None:
    payload = encode_batch("main-gate", [event()])
    value = json.loads(payload)
    assert b" " not in payload.replace("Nguyễn Văn A".encode(), b"")
    assert value["v"] == 1
    assert value["gate"] == "main-gate"
    assert value["events"][0]["at_utc"] == "2026-01-05T01:00:00.000000Z"
    assert value["events"][0]["utc_offset_min"] == 420
    assert "id_number" not in value["events"][0]  # empty columns are left out


def test_acks_resyncs_and_statuses_round_trip() -> None:
    assert decode_ack(encode_ack(["ab", "cd"])) == Ack(("ab", "cd"))
    assert decode_resync(encode_resync("r1", T0)) == Resync("r1", T0)
    status = GateStatus("main-gate", True, T0, 12)
    assert decode_status(encode_status(status)) == status
    offline = GateStatus("main-gate", False, None, None)
    assert decode_status(encode_status(offline)) == offline


def batch_value() -> dict[str, Any]:
    return json.loads(encode_batch("main-gate", [event()]))


def refusal(value: Any) -> Problem:
    result = decode_batch(json.dumps(value).encode())
    assert isinstance(result, Malformed), result
    return result.problem


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda v: v.update(v=2), Problem.WRONG_VERSION),
        (lambda v: v.update(v=True), Problem.WRONG_VERSION),
        (lambda v: v.pop("v"), Problem.WRONG_VERSION),
        (lambda v: v.update(extra=1), Problem.BAD_FIELD),
        (lambda v: v.update(gate="Main Gate"), Problem.BAD_FIELD),
        (lambda v: v.update(events=[]), Problem.BAD_FIELD),
        (lambda v: v["events"][0].pop("seq"), Problem.BAD_FIELD),
        (lambda v: v["events"][0].update(seq=0), Problem.BAD_FIELD),
        (lambda v: v["events"][0].update(seq=True), Problem.BAD_FIELD),
        (lambda v: v["events"][0].update(seq=1.5), Problem.BAD_FIELD),
        (lambda v: v["events"][0].update(clock_synced=1), Problem.BAD_FIELD),
        (lambda v: v["events"][0].update(direction="up"), Problem.BAD_FIELD),
        (lambda v: v["events"][0].update(at_utc="2026-01-05 01:00"), Problem.BAD_FIELD),
        (lambda v: v["events"][0].update(at_utc="2026-13-45T01:00:00.000000Z"), Problem.BAD_FIELD),
        (lambda v: v["events"][0].update(utc_offset_min=100000), Problem.BAD_FIELD),
        (lambda v: v["events"][0].update(id="a b"), Problem.BAD_FIELD),
        (lambda v: v["events"][0].update(display_name=5), Problem.BAD_FIELD),
        (lambda v: v["events"][0].update(reason=""), Problem.BAD_FIELD),
        (lambda v: v["events"][0].update(surprise="x"), Problem.BAD_FIELD),
        (lambda v: v["events"][0].update(gate_id="other-gate"), Problem.WRONG_GATE),
    ],
)
def test_a_wrong_batch_is_refused_with_its_reason(change: Any, problem: Problem) -> None:
    value = batch_value()
    change(value)
    assert refusal(value) == problem


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"", Problem.NOT_JSON),
        (b"\xff\xfe", Problem.NOT_JSON),
        (b"[1, 2]", Problem.NOT_AN_OBJECT),
        (b'{"v": NaN}', Problem.NOT_JSON),
        (b'{"v": 1, "v": 1}', Problem.NOT_JSON),
        (b"[" * 100_000, Problem.NOT_JSON),
        (b" " * (MAX_PAYLOAD_BYTES + 1), Problem.TOO_LARGE),
    ],
)
def test_what_is_not_json_is_refused(payload: bytes, problem: Problem) -> None:
    for decode in (decode_batch, decode_ack, decode_resync, decode_status):
        result = decode(payload)
        assert isinstance(result, Malformed)
        assert result.problem == problem


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_decoding_any_bytes_never_raises(payload: bytes) -> None:
    for decode in (decode_batch, decode_ack, decode_resync, decode_status):
        decode(payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_batch_with_any_field_replaced_is_decoded_or_refused_never_raised(
    data: st.DataObject,
) -> None:
    value = batch_value()
    target = data.draw(st.sampled_from(["top", "event"]))
    holder = value if target == "top" else value["events"][0]
    key = data.draw(st.sampled_from(sorted(holder)) | st.text(max_size=8))
    holder[key] = data.draw(json_values)
    result = decode_batch(json.dumps(value).encode())
    assert isinstance(result, EventBatch | Malformed)


def test_a_time_with_an_offset_is_not_utc_text() -> None:
    value = batch_value()
    value["events"][0]["at_utc"] = (T0 + timedelta(hours=7)).isoformat()
    assert refusal(value) == Problem.BAD_FIELD
