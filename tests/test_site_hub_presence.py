"""The hub's own presence, kept at ingestion: site-wide and the same whatever
order the gates' batches arrive in."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kiosk.store import Event, NewEvent, Store

SUBJECT = "ab" * 16
START = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)


def recorded(tmp_path: Path, gate_id: str, moves: list[tuple[int, str]]) -> list[Event]:
    """Events of one gate: (minute, direction) of one visitor, allowed."""
    with Store.open(tmp_path / f"{gate_id}.db", boot_id=f"boot-{gate_id}") as gate:
        return [
            gate.record(
                NewEvent(
                    gate_id=gate_id,
                    at=START + timedelta(minutes=minute),
                    utc_offset_min=420,
                    clock_synced=True,
                    direction=direction,
                    decision="allow",
                    reason="ok",
                    kind="cccd",
                    subject_hash=SUBJECT,
                    display_name="Nguyễn Văn A",
                    masked_id="0010******23",
                )
            )
            for minute, direction in moves
        ]


def test_in_at_one_gate_out_at_another_in_any_order(tmp_path: Path) -> None:
    entry_1 = recorded(tmp_path, "gate-1", [(0, "in")])
    exit_2 = recorded(tmp_path, "gate-2", [(5, "out")])
    entry_3 = recorded(tmp_path, "gate-3", [(9, "in")])
    batches = [("gate-1", entry_1), ("gate-2", exit_2), ("gate-3", entry_3)]
    for n, order in enumerate(itertools.permutations(batches)):
        with Store.open(tmp_path / f"hub-{n}.db", boot_id="hub") as hub:
            for gate_id, events in order:
                hub.site_log.ingest(gate_id, events)
                hub.site_log.ingest(gate_id, events)  # sent again: changes nothing
            inside = hub.inside(now=START + timedelta(minutes=10), expiry_h=12)
            assert [(p.subject_hash, p.gate_id) for p in inside] == [(SUBJECT, "gate-3")]
            assert hub.occupancy(now=START + timedelta(minutes=10), expiry_h=12) == 1


def test_an_exit_after_the_last_entry_leaves_nobody_inside(tmp_path: Path) -> None:
    events_1 = recorded(tmp_path, "gate-1", [(0, "in")])
    events_2 = recorded(tmp_path, "gate-2", [(3, "out")])
    with Store.open(tmp_path / "hub.db", boot_id="hub") as hub:
        hub.site_log.ingest("gate-2", events_2)
        hub.site_log.ingest("gate-1", events_1)
        assert hub.inside(now=START + timedelta(minutes=10), expiry_h=12) == []
