"""The load benchmark's harness (bench/load.py), small: its accounting catches
lost, duplicated and missing events, and a short real run (kiosk process, web
process, a few dashboard clients, a small export) accounts for every
presentation and every live-feed event exactly once.

No timing is asserted: the figures belong to ``python -m bench.load``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load import (
    ENDPOINT_CSV,
    ENDPOINT_DASHBOARD,
    ENDPOINT_LIVE,
    ENDPOINT_XLSX,
    LoadConfig,
    Plan,
    account_presentations,
    check_feed,
    problems,
    render,
    run_load,
)
from kiosk.camera import SyntheticSource
from kiosk.clock import FakeClock
from kiosk.decoder import PipelineDecoder


def test_accounting_tells_lost_duplicated_unread_and_stray_events_apart() -> None:
    accounting = account_presentations(
        shown=5,
        frames_per_visitor={0: 40, 1: 40, 2: 40, 3: 40},
        visitors_read={0, 1, 2},
        # Visitor 0 recorded twice, 1 once, 2 never; one event of nobody, one of a
        # visitor not yet shown when the kiosk stopped.
        event_visitors=[0, 1, 0, None, 6],
    )

    assert accounting.lost == [2]
    assert accounting.duplicated == {0: 2}
    assert accounting.not_read == [3]
    assert accounting.never_reached == [4]
    assert accounting.unexpected_events == 2
    assert (accounting.shown, accounting.read, accounting.recorded) == (5, 3, 2)


def test_feed_check_finds_gaps_repeats_and_disorder() -> None:
    log = [(10, "a"), (11, "b"), (12, "c"), (13, "d"), (14, "e")]

    clean = check_feed(
        [(11, "b"), (12, "c"), (13, "d")], initial_cursor=10, final_cursor=13, log=log
    )
    broken = check_feed(
        [(11, "b"), (13, "d"), (11, "b"), (10, "a")], initial_cursor=10, final_cursor=14, log=log
    )

    assert (clean.expected, clean.delivered, clean.missing, clean.repeated) == (3, 3, 0, 0)
    assert (clean.out_of_order, clean.foreign) == (0, 0)
    assert broken.missing == 2  # c and e
    assert broken.repeated == 1
    assert broken.out_of_order == 2
    assert broken.foreign == 1  # a was recorded before the client's first cursor


def test_plan_matches_what_the_synthetic_camera_shows() -> None:
    plan = Plan(fps=30.0, lead_s=0.5, show_s=1.0, gap_s=1.0, count=3, seed=3)
    source = SyntheticSource(plan.schedule(), clock=FakeClock(), fps=plan.fps, seed=plan.seed)
    decoder = PipelineDecoder()

    for k in range(plan.count):
        first = plan.first_frame(k)
        assert plan.presentation_of(first - 1) is None
        assert plan.presentation_of(first) == k
        assert [c.raw for c in decoder.decode(source.render(first))] == [
            plan.payload(k).encode("utf-8")
        ]
        assert decoder.decode(source.render(first - 1)) == []
        assert plan.complete_before(first) == k
        assert plan.complete_before(first + int(plan.show_s * plan.fps)) == k + 1


@pytest.mark.slow
def test_short_load_run_records_each_presentation_once_and_feeds_each_event_once(
    tmp_path: Path,
) -> None:
    config = LoadConfig(
        duration_s=6.0,
        rows=2_000,
        clients=3,
        lead_s=0.5,
        show_s=1.0,
        gap_s=1.0,
        page_every_s=2.0,
        baseline_s=0.5,
    )

    report = run_load(config, tmp_path)
    report["problems"] = problems(report)
    report["command"] = "pytest"

    assert report["problems"] == []
    assert "None found." in render(report)
    accounting = report["accounting"]
    assert accounting["shown"] >= 2
    assert accounting["recorded"] == accounting["shown"] == accounting["events"]
    assert report["outcomes"]["outcomes"] == accounting["events"]
    feed = report["live_feed"]
    assert feed["clients_checked"] == 3
    assert feed["events_delivered"] == feed["events_expected"] > 0
    exports = {e["fmt"]: e for e in report["exports"]}
    assert set(exports) == {"csv", "xlsx"}
    for export in exports.values():
        assert export["status"] == 200
        assert config.rows <= export["rows"] <= config.rows + accounting["events"]
    assert {ENDPOINT_LIVE, ENDPOINT_DASHBOARD, ENDPOINT_CSV, ENDPOINT_XLSX} <= set(
        report["endpoints"]
    )
    assert report["gate"]["decision_latency_ms"]["count"] == accounting["shown"]
