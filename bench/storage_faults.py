"""Storage faults on the real clock: how long a visitor and a guard wait, and
how soon the overrides kept during a fault reach the database.

Runs :mod:`tests.storage_fault_scenario` (a real Scanner, real decoder, real
SQLite file, MockFactory pins) on the system clock with the kiosk's busy
timeout, for each fault kind, several times; the disk-full and read-only
kinds under ``unshare -rm`` (a private mount namespace with a small tmpfs).
Also runs the long lock once with the old 5 s busy timeout, for comparison,
and times the write transactions a web or CLI process holds the lock for.

Figures, per kind (milliseconds, real time):

* normal decision: frame capture to signal, before the fault;
* refused decision: frame capture to the red light, during the fault;
* override to open door: button pressed to relay energised, during the fault;
* back to recorded: fault removed to both waiting overrides committed;
* back to cleared: fault removed to the fault pattern switched off;
* longest step: the longest loop step during the fault, the gap the service
  watchdog (10 s) sees between heartbeats.

Usage: .venv/bin/python -m bench.storage_faults [--runs N]
Writes bench/report-storage-faults.md and bench/report-storage-faults.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.export_bench import populate
from kiosk.site_business import PURGE_BATCH_ROWS
from kiosk.store import KIOSK_BUSY_TIMEOUT_MS, NewEvent, Store

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REPORT_MD = HERE / "report-storage-faults.md"
REPORT_JSON = HERE / "report-storage-faults.json"


def run_scenario(kind: str, busy_ms: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"gk-{kind}-") as tmp:
        command = [sys.executable, "-m", "tests.storage_fault_scenario", kind, tmp]
        command += ["--clock", "system", "--busy-ms", str(busy_ms)]
        if kind != "locked":
            unshare = shutil.which("unshare")
            if unshare is None:
                raise SystemExit("unshare is missing: install util-linux")
            command = [unshare, "-rm", *command]
            command += ["--outer-mount-ns", os.readlink("/proc/self/ns/mnt")]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{kind} scenario failed:\n{done.stderr[-3000:]}")
        report: dict[str, Any] = json.loads(done.stdout)
    if report["waiting_after_recovery"] or report["integrity"] != ["ok"]:
        raise SystemExit(f"{kind} scenario did not recover: {report}")
    return report


def figures(report: dict[str, Any]) -> dict[str, float]:
    # On the real clock a code held up through several blocked steps may leave
    # the presentation filter's window and be decided again: the first counts.
    refused = report["refused"][0]
    return {
        "normal_decision_ms": statistics.median(report["normal"]["latency_ms"]),
        "refused_decision_ms": refused["latency_ms"],
        "override_open_ms": max(report["override_open_ms"]),
        "back_to_recorded_ms": report["recorded_after_ms"],
        "back_to_cleared_ms": report["cleared_after_ms"],
        "longest_step_ms": report["longest_step_ms_while_failing"],
    }


HOLD_ROWS = 100_000
"""Events in the database the write transactions are timed on: a year of a
busy gate's log (bench/export_bench.py's generator, about 270 a day)."""


def lock_hold_times(runs: int) -> dict[str, float]:
    """Median ms a write transaction holds the lock, on this machine's disk:
    what the kiosk's busy timeout must absorb without calling it a fault."""
    held: dict[str, list[float]] = {"record an event": [], "save settings": [], "purge": []}
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with tempfile.TemporaryDirectory(prefix="gk-hold-", dir=REPO) as tmp:
        path = Path(tmp) / "g.db"
        populate(path, HOLD_ROWS, seed=1)
        with Store.open(path, boot_id="bench") as store:
            for run in range(runs):
                t0 = time.perf_counter()
                store.record(event(start + timedelta(days=400)))
                held["record an event"].append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                store.save_site_settings({"gate.id": f"g{run}"}, by="bench", at=start)
                held["save settings"].append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()  # the purge's largest batch (of a week's 1,900 events)
                store.purge_events_before(
                    start + timedelta(days=7 * (run + 1)), limit=PURGE_BATCH_ROWS
                )
                held["purge"].append((time.perf_counter() - t0) * 1000)
    return {name: statistics.median(times) for name, times in held.items()}


def event(at: datetime) -> NewEvent:
    return NewEvent(
        gate_id="g",
        at=at,
        utc_offset_min=420,
        clock_synced=True,
        direction="in",
        decision="allow",
        reason="ok",
        kind="cccd",
        subject_hash=None,
        display_name=None,
        masked_id=None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows: dict[str, list[dict[str, float]]] = {}
    for kind in ("locked", "disk-full", "read-only"):
        rows[f"{kind} ({KIOSK_BUSY_TIMEOUT_MS} ms)"] = [
            figures(run_scenario(kind, KIOSK_BUSY_TIMEOUT_MS)) for _ in range(args.runs)
        ]
        print(kind, rows[f"{kind} ({KIOSK_BUSY_TIMEOUT_MS} ms)"], flush=True)
    rows["locked (5000 ms, the old default)"] = [figures(run_scenario("locked", 5000))]
    holds = lock_hold_times(args.runs)
    names = list(next(iter(rows.values()))[0])
    lines = [
        "# Storage faults: waits and recovery",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs; `python -m bench.storage_faults "
        f"--runs {args.runs}`; the real clock, the scenario of tests/storage_fault_scenario.py. "
        "Medians of the runs (max in brackets), milliseconds.",
        "",
        "| fault (kiosk busy timeout) | runs | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for label, runs in rows.items():
        cells = [
            f"{statistics.median(r[n] for r in runs):.0f} [{max(r[n] for r in runs):.0f}]"
            for n in names
        ]
        lines.append(f"| {label} | {len(runs)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Write transactions holding the lock (median ms of {args.runs}; {HOLD_ROWS:,} events; "
        f"purge: its largest batch, {PURGE_BATCH_ROWS} events; "
        "this machine's disk, not an SD card):",
        "",
        "| write | ms |",
        "|---|---:|",
        *(f"| {name} | {ms:.1f} |" for name, ms in holds.items()),
        "",
    ]
    REPORT_MD.write_text("\n".join(lines), encoding="utf-8")
    REPORT_JSON.write_text(json.dumps({"scenarios": rows, "lock_hold_ms": holds}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
