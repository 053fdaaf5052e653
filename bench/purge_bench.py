"""The retention purge against the scan loop: a million events past retention
purged while the real loop scans at 30 fps.

Two runs on copies of one database, one after the other, in one process:

* **batched**, the kiosk's purge: the real :class:`~kiosk.scanner.Scanner`
  purges on its own (a minute after start, one batch per loop step, see
  :class:`~kiosk.site_business.RetentionPurge`);
* **single DELETE**, the purge as it was: the same loop, and after 10 s of
  scanning the old statements (``DELETE FROM events WHERE at_utc < ?``, then
  the same for issued codes) run once between two steps, as the old purge
  did inside a step.

The loop is the real one: :class:`~kiosk.camera.SyntheticSource` at 30 fps
on the system clock with a visitor every 3 s, the real decoder, a real
:class:`~kiosk.store.Store` (WAL, ``synchronous=FULL``), pins on gpiozero's
``MockFactory``. A pause of the loop is the time between two frames
processed, i.e. between two feeds of the service watchdog (the scanner's
``heartbeat`` hook); a step is one :meth:`Scanner.step`.

The database: ``bench.export_bench.populate``'s events (a year from
2025-01-01, so all past a 21-day retention) plus recent events that must be
kept. Each run checks that every old event went and every recent one stayed.

Usage: .venv/bin/python -m bench.purge_bench [--rows N] [--recent N]
Writes bench/report-purge.md and bench/report-purge.json. Several minutes
for a million rows; the figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from bench.export_bench import populate
from kiosk.site_business import (
    PURGE_BATCH_MIN_ROWS,
    PURGE_BATCH_ROWS,
    PURGE_BATCH_TARGET_S,
    PURGE_START_DELAY_S,
)
from kiosk.store import NewEvent, Store

HERE = Path(__file__).resolve().parent
REPORT_MD = HERE / "report-purge.md"
REPORT_JSON = HERE / "report-purge.json"
RETENTION_DAYS = 21
FPS = 30.0
OLD_PURGE_AFTER_S = 10.0
"""The single-DELETE run scans this long before the old purge."""
AFTER_PURGE_S = 3.0
"""Both runs scan this long after their purge ended."""
VISITOR_EVERY_S = 3.0
"""The synthetic camera shows a visitor's code this often."""
MAX_RUN_S = 3600.0
"""A batched run that has not finished by then is reported as unfinished."""


@dataclass
class Batch:
    """One purge statement the loop ran: when (monotonic s), how long, how many rows."""

    started: float
    took_ms: float
    rows: int
    limit: int
    table: str


class TimedStore(Store):
    """The real store, timing each purge batch the scanner asks for."""

    batches: list[Batch]

    def purge_events_before(self, cutoff: datetime, *, limit: int) -> int:
        return self._timed(
            "events",
            limit,
            lambda: super(TimedStore, self).purge_events_before(cutoff, limit=limit),
        )

    def purge_site_codes_before(self, cutoff: datetime, *, limit: int) -> int:
        return self._timed(
            "site_codes",
            limit,
            lambda: super(TimedStore, self).purge_site_codes_before(cutoff, limit=limit),
        )

    def _timed(self, table: str, limit: int, purge: Callable[[], int]) -> int:
        started = time.monotonic()
        rows = purge()
        took_ms = (time.monotonic() - started) * 1000
        self.batches.append(Batch(started, took_ms, rows, limit, table))
        return rows


@dataclass
class Loop:
    """What the loop did: each step's start and end, each frame processed, each decision."""

    steps: list[tuple[float, float]] = field(default_factory=list)
    beats: list[float] = field(default_factory=list)
    decisions: list[tuple[float, float]] = field(default_factory=list)
    """(monotonic s, latency ms from capture to decision)"""


def old_purge(store: Store, cutoff: datetime) -> tuple[int, int]:
    """The purge as it was before batching: one DELETE per table, each one
    transaction (what ``purge_events_before`` ran until this change)."""
    at = cutoff.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    conn = store._conn
    counts = []
    for sql in (
        "DELETE FROM events WHERE at_utc < ?",
        "DELETE FROM site_codes WHERE expires_at_utc < ?",
    ):
        conn.execute("BEGIN IMMEDIATE")
        counts.append(conn.execute(sql, (at,)).rowcount)
        conn.execute("COMMIT")
    return counts[0], counts[1]


def recent_event(at: datetime, i: int) -> NewEvent:
    return NewEvent(
        gate_id="gate-1",
        at=at,
        utc_offset_min=420,
        clock_synced=True,
        direction="in" if i % 2 == 0 else "out",
        decision="allow",
        reason="ok" if i % 2 == 0 else "ok-exit",
        kind="cccd",
        subject_hash=f"{i:032x}",
        display_name="Nguyễn Văn An",
        masked_id="********0123",
    )


def make_database(path: Path, rows: int, recent: int) -> None:
    """``rows`` events a year old or more, and ``recent`` within the last 20 days."""
    populate(path, rows, seed=3)
    now = datetime.now(UTC)
    with Store.open(path, boot_id="bench-recent") as store:
        for i in range(recent):
            store.record(recent_event(now - timedelta(days=20) * (i + 1) / (recent + 1), i))


def scan(
    db: Path,
    *,
    retention_days: int | None,
    until: Callable[[TimedStore, float], bool],
    between_steps: Callable[[TimedStore, float], None] | None = None,
) -> tuple[Loop, list[Batch]]:
    """Run the real loop on ``db`` until ``until(store, now)``; ``between_steps``
    is called first in each step (the single-DELETE run's purge)."""
    from gpiozero.pins.mock import MockFactory

    from gate_controller.gpio import GpiozeroSignals
    from gate_controller.pins import PinConfig
    from kiosk.camera import SyntheticSource
    from kiosk.clock import SystemClock
    from kiosk.codes import Registry, default_formats
    from kiosk.decoder import PipelineDecoder
    from kiosk.policy import PolicyRules
    from kiosk.scanner import GateParts, GateSetup, Outcome, ScanHooks, Scanner, ScanSettings
    from kiosk.synthetic import Scene

    schedule: list[Scene] = []
    for i in range(10):  # ten visitors, each 0.6 s in view, one every 3 s, over and over
        payload = (
            f"0792{i:08d}|025123456|Nguyễn Văn An|15031990|Nam|"
            "12 Lê Lợi, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh|01072021"
        )
        schedule += [Scene((), VISITOR_EVERY_S - 0.6), Scene((payload,), 0.6)]
    pins = PinConfig(
        green=17, red=27, buzzer=22, relay=23, button=24, status=25,
        relay_pulse_ms=100, light_ms=200,
    )  # fmt: skip
    clock = SystemClock()
    loop = Loop()

    def decided(outcome: Outcome) -> None:
        loop.decisions.append((time.monotonic(), outcome.latency_ms))

    factory = MockFactory()
    with (
        GpiozeroSignals(pins, pin_factory=factory) as signals,
        TimedStore.open(db, boot_id="bench") as store,
    ):
        assert isinstance(store, TimedStore)
        store.batches = []
        scanner = Scanner(
            parts=GateParts(
                SyntheticSource(schedule, clock=clock, fps=FPS, seed=5, loop=True),
                PipelineDecoder(),
                signals,
                pin_backend="MockFactory",
            ),
            registry=Registry(default_formats()),
            store=store,
            clock=clock,
            setup=GateSetup(
                PolicyRules(),
                ScanSettings(
                    gate_id="bench",
                    timezone=ZoneInfo("Asia/Ho_Chi_Minh"),
                    retention_days=retention_days,
                ),
            ),
            hash_key=b"k" * 32,
            hooks=ScanHooks(
                on_outcome=decided, heartbeat=lambda: loop.beats.append(time.monotonic())
            ),
        )
        while True:
            started = time.monotonic()
            if between_steps is not None:
                between_steps(store, started)  # first in a step, as the old purge was
            scanner.step()
            ended = time.monotonic()
            loop.steps.append((started, ended))
            if until(store, ended):
                break
        batches = list(store.batches)
    factory.close()
    return loop, batches


def purge_finished(store: TimedStore) -> float | None:
    """When the batched purge's last batch ended (monotonic s), or None yet."""
    last = store.batches[-1] if store.batches else None
    if last is None or last.table != "site_codes" or last.rows >= last.limit:
        return None
    return last.started + last.took_ms / 1000


def run_batched(db: Path) -> dict[str, Any]:
    first_step: list[float] = []

    def until(store: TimedStore, now: float) -> bool:
        first_step[:] = first_step or [now]
        ended = purge_finished(store)
        return (ended is not None and now - ended >= AFTER_PURGE_S) or now - first_step[
            0
        ] > MAX_RUN_S

    loop, batches = scan(db, retention_days=RETENTION_DAYS, until=until)
    if not batches:
        raise SystemExit("the batched run ended before its purge started")
    start = batches[0].started
    end = batches[-1].started + batches[-1].took_ms / 1000
    figures = window_figures(loop, start, end)
    events = [b for b in batches if b.table == "events"]
    limits = [b.limit for b in events]
    return {
        "finished": purge_finished_from(batches),
        "purge_s": end - start,
        "events_purged": sum(b.rows for b in events),
        "batches": len(batches),
        "batch_limit_median": statistics.median(limits),
        "batch_limit_min": min(limits),
        "batch_limit_max": max(limits),
        "batch_ms_median": statistics.median(b.took_ms for b in batches),
        "batch_ms_p99": float(np.percentile([b.took_ms for b in batches], 99)),
        "batch_ms_max": max(b.took_ms for b in batches),
        "baseline": window_figures(loop, loop.steps[0][0], start, within=True),
        **figures,
    }


def purge_finished_from(batches: list[Batch]) -> bool:
    last = batches[-1]
    return last.table == "site_codes" and last.rows < last.limit


def run_single_delete(db: Path) -> dict[str, Any]:
    done: dict[str, float] = {}
    first_step: list[float] = []

    def between_steps(store: TimedStore, now: float) -> None:
        first_step[:] = first_step or [now]
        if "start" in done or now - first_step[0] < OLD_PURGE_AFTER_S:
            return
        done["start"] = time.monotonic()
        events, codes = old_purge(store, datetime.now(UTC) - timedelta(days=RETENTION_DAYS))
        done["end"] = time.monotonic()
        done["events"], done["codes"] = events, codes

    def until(store: TimedStore, now: float) -> bool:
        return "end" in done and now - done["end"] >= AFTER_PURGE_S

    loop, _ = scan(db, retention_days=None, until=until, between_steps=between_steps)
    return {
        "finished": True,
        "purge_s": done["end"] - done["start"],
        "events_purged": int(done["events"]),
        "batches": 1,
        "baseline": window_figures(loop, loop.steps[0][0], done["start"], within=True),
        **window_figures(loop, done["start"], done["end"]),
    }


def window_figures(loop: Loop, start: float, end: float, *, within: bool = False) -> dict[str, Any]:
    """The loop's pauses and steps that overlap ``[start, end]`` (monotonic s),
    or (``within``: a baseline) that lie inside it."""

    def spans(a: float, b: float) -> bool:
        return start <= a and b <= end if within else b >= start and a <= end

    gaps = [
        (after - before) * 1000
        for before, after in zip(loop.beats, loop.beats[1:], strict=False)
        if spans(before, after)
    ]
    steps = [(e - s) * 1000 for s, e in loop.steps if spans(s, e)]
    decisions = [ms for at, ms in loop.decisions if start <= at <= end + 1]
    seconds = max(end - start, 1e-9)
    return {
        "window_s": end - start,
        "longest_pause_ms": max(gaps, default=float("nan")),
        "pause_p99_ms": float(np.percentile(gaps, 99)) if gaps else float("nan"),
        "step_median_ms": statistics.median(steps) if steps else float("nan"),
        "step_p99_ms": float(np.percentile(steps, 99)) if steps else float("nan"),
        "step_max_ms": max(steps, default=float("nan")),
        "frames_per_s": sum(1 for b in loop.beats if start <= b <= end) / seconds,
        "decisions": len(decisions),
        "decision_latency_max_ms": max(decisions, default=float("nan")),
    }


def check(db: Path, recent: int) -> dict[str, Any]:
    """Whether exactly the old events went: none older than the cutoff, every recent one left."""
    cutoff = (datetime.now(UTC) - timedelta(days=RETENTION_DAYS)).strftime("%Y-%m-%dT%H:%M:%S")
    with sqlite3.connect(db) as conn:
        old = conn.execute("SELECT count(*) FROM events WHERE at_utc < ?", (cutoff,)).fetchone()[0]
        kept = conn.execute(
            "SELECT count(*) FROM events WHERE gate_id = 'gate-1' AND at_utc >= ?", (cutoff,)
        ).fetchone()[0]
        integrity = conn.execute("PRAGMA quick_check").fetchone()[0]
    conn.close()
    return {"old_left": old, "recent_kept": kept, "recent": recent, "integrity": integrity}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="events past retention")
    parser.add_argument("--recent", type=int, default=500, help="events within retention")
    parser.add_argument(
        "--render", action="store_true", help="only write the .md again from the .json"
    )
    args = parser.parse_args()
    if args.render:
        report = json.loads(REPORT_JSON.read_text(encoding="utf-8"))
        REPORT_MD.write_text(render(report), encoding="utf-8")
        return
    load_before = os.getloadavg()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gk-purge-") as work:
        base = Path(work) / "base.db"
        print(f"populating {args.rows:,} events ...", flush=True)
        make_database(base, args.rows, args.recent)
        populate_s = time.monotonic() - began
        runs: dict[str, dict[str, Any]] = {}
        for name, run in (("batched", run_batched), ("single DELETE", run_single_delete)):
            db = Path(work) / f"{name.split()[0]}.db"
            shutil.copyfile(base, db)
            print(f"{name} run ...", flush=True)
            runs[name] = run(db)
            runs[name]["check"] = check(db, args.recent)
            print(json.dumps(runs[name], indent=1), flush=True)
            db.unlink()
            for suffix in ("-wal", "-shm"):
                db.with_name(db.name + suffix).unlink(missing_ok=True)
    report = {
        "rows": args.rows,
        "recent": args.recent,
        "fps": FPS,
        "retention_days": RETENTION_DAYS,
        "batch": {
            "most_rows": PURGE_BATCH_ROWS,
            "fewest_rows": PURGE_BATCH_MIN_ROWS,
            "target_ms": PURGE_BATCH_TARGET_S * 1000,
            "start_delay_s": PURGE_START_DELAY_S,
        },
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "populate_s": populate_s,
        "total_s": time.monotonic() - began,
        "runs": runs,
    }
    REPORT_JSON.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    REPORT_MD.write_text(render(report), encoding="utf-8")
    print(REPORT_MD.read_text(encoding="utf-8"))


def render(report: dict[str, Any]) -> str:
    runs = report["runs"]
    names = list(runs)

    def row(label: str, get: Callable[[dict[str, Any]], Any], fmt: str = "{:.0f}") -> str:
        return f"| {label} | " + " | ".join(fmt.format(get(runs[n])) for n in names) + " |"

    batch = report["batch"]
    lines = [
        "# The retention purge and the scan loop",
        "",
        f"{report['rows']:,} events past a {report['retention_days']}-day retention and "
        f"{report['recent']} recent ones, purged while the real scan loop runs at "
        f"{report['fps']:.0f} fps (synthetic camera, a visitor every 3 s, real decoder, "
        "real store with synchronous=FULL, MockFactory pins). Both runs in one process, "
        "one after the other, on copies of one database. A *pause* is the time between "
        "two frames processed, i.e. between two feeds of the service watchdog.",
        "",
        f"Machine: {report['machine']}; Python {report['python']}, SQLite {report['sqlite']}. "
        "The machine was shared with other jobs (load average "
        f"{report['load_before'][0]:.1f} before, {report['load_after'][0]:.1f} after, on "
        f"{os.cpu_count()} cores), its disk is not an SD card: the absolute figures are "
        "this machine's, the comparison is the point.",
        "",
        f"Batched: at most {batch['most_rows']} rows a batch, halved above "
        f"{batch['target_ms']:.0f} ms and doubled under half of it (never under "
        f"{batch['fewest_rows']}); one batch per loop step; the first purge "
        f"{batch['start_delay_s']:.0f} s after start.",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        row("finished", lambda r: "yes" if r["finished"] else "NO", "{}"),
        row("events purged", lambda r: r["events_purged"], "{:,}"),
        row("purge time, s", lambda r: r["purge_s"], "{:.1f}"),
        row("transactions", lambda r: r["batches"], "{:,}"),
        row("**longest loop pause during the purge, ms**", lambda r: r["longest_pause_ms"]),
        row("loop pause p99 during the purge, ms", lambda r: r["pause_p99_ms"]),
        row("step time median during the purge, ms", lambda r: r["step_median_ms"], "{:.1f}"),
        row("**step time p99 during the purge, ms**", lambda r: r["step_p99_ms"]),
        row("frames processed per s during the purge", lambda r: r["frames_per_s"], "{:.1f}"),
        row("visitors in view during the purge", lambda r: r["window_s"] / VISITOR_EVERY_S),
        row("decisions during the purge (and 1 s after)", lambda r: r["decisions"]),
        row("slowest decision, capture to decision, ms", lambda r: r["decision_latency_max_ms"]),
        row("longest loop pause before the purge, ms", lambda r: r["baseline"]["longest_pause_ms"]),
        row("step time p99 before the purge, ms", lambda r: r["baseline"]["step_p99_ms"]),
        row("frames processed per s before", lambda r: r["baseline"]["frames_per_s"], "{:.1f}"),
        row("old events left", lambda r: r["check"]["old_left"], "{:,}"),
        row(
            "recent events kept",
            lambda r: f"{r['check']['recent_kept']}/{r['check']['recent']}",
            "{}",
        ),
        row("integrity", lambda r: r["check"]["integrity"], "{}"),
    ]
    batched = runs.get("batched")
    if batched is not None:
        lines += [
            "",
            "Batched purge: batch limit median "
            f"{batched['batch_limit_median']:.0f} rows (from {batched['batch_limit_min']} to "
            f"{batched['batch_limit_max']}); a batch took {batched['batch_ms_median']:.1f} ms "
            f"median, {batched['batch_ms_p99']:.0f} ms p99, {batched['batch_ms_max']:.0f} ms at "
            "most.",
        ]
    single = runs.get("single DELETE")
    if batched is not None and single is not None:
        lines += [
            "",
            "Reading it:",
            "",
            f"* The single DELETE stops the loop for {single['longest_pause_ms'] / 1000:.0f} s: "
            "no frame, no decision, no watchdog feed. Under systemd (`WatchdogSec=10`) the "
            "kiosk is killed 10 s into it, the DELETE is rolled back, and the restarted "
            "kiosk starts the same purge again: the crash loop of issue 17. Visitors in "
            "front of the camera meanwhile are not seen at all.",
            "* Batched, the loop keeps scanning and deciding "
            f"({batched['decisions']} decisions for about "
            f"{batched['window_s'] / VISITOR_EVERY_S:.0f} visitors); its longest pause, "
            f"{batched['longest_pause_ms']:.0f} ms, compares with "
            f"{batched['baseline']['longest_pause_ms']:.0f} ms before the purge on this "
            "loaded machine. The tail is single slow batches (median "
            f"{batched['batch_ms_median']:.0f} ms, p99 {batched['batch_ms_p99']:.0f} ms): "
            "the machine (other jobs on 2 cores) and the disk (an fsync, a WAL checkpoint "
            "now and then); the sizing halves the batch after a slow one, it cannot "
            "shorten the one under way.",
            f"* The price: {batched['purge_s'] / single['purge_s']:.1f} times the total time "
            "and many more writes, since every batch commits with an fsync and writes "
            "again the random index pages (event id, subject) its rows touch. A million "
            "rows past retention is a one-off (retention shortened, or months without "
            "purging); a gate's hourly purge deletes an hour of events, one batch.",
            "* Not measured here: a Pi's SD card. There each row costs more; the batches "
            "shrink to keep near the time target, and the loop's pause is bounded by one "
            "small batch and the card's fsync.",
        ]
    lines += [
        "",
        f"Populating took {report['populate_s']:.0f} s; the whole run {report['total_s']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
