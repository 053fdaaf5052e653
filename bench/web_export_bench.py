"""The web's exports of a big log, timed, with live dashboards polling beside them.

``python -m bench.web_export_bench [--rows N] [--dir DIR] [--code-root PATH]``

Runs ``gatekiosk web`` (waitress, a process of its own, from ``--code-root``:
another checkout of the code, say ``git archive HEAD``, measures that version)
on a database of ``--rows`` generated events (``bench.export_bench.populate``;
kept in ``--dir`` and reused by later runs with the same ``--dir`` and
``--rows``), logs in as a manager and, while ``--live-clients`` clients poll
``/api/live?after=`` every 0.5 s after their previous answer (as the dashboard
does), waits ``--baseline-s``, then downloads ``/export.csv`` and then
``/export.xlsx``, one after the other.

Figures: per export, the time to the first byte and to the last, the bytes and
rows received (checked against the database), and the CPU seconds of the web
process and of the children it waited for (the XLSX worker) during it;
per window (no export, during the CSV, during the XLSX), the live polls'
client-side time, request sent to last byte read: median, p99, max. The machine
may be shared: the load average at the start and end is printed with them.

Prints a Markdown summary; ``--json PATH`` also writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sqlite3
import threading
import time
import urllib.error
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.crash_harness import (
    MANAGER,
    REPO,
    WebSession,
    _export_body_problem,
    make_manager,
    start_web,
)

POLL_S = 0.5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Export:
    fmt: str
    status: int = 0
    first_byte_s: float = 0.0
    total_s: float = 0.0
    bytes: int = 0
    problem: str | None = None
    web_cpu_s: float = 0.0
    children_cpu_s: float = 0.0
    start_mono: float = 0.0
    end_mono: float = 0.0


class Poller(threading.Thread):
    """A dashboard's live feed: polls ``/api/live?after=`` every POLL_S after each answer."""

    def __init__(self, base: str, password: str, stop: threading.Event) -> None:
        super().__init__(daemon=True, name="live-poller")
        self.base, self.password, self.stop = base, password, stop
        self.samples: list[tuple[float, float]] = []
        """(start, seconds) of each poll."""
        self.errors = 0

    def run(self) -> None:
        session = WebSession(self.base)
        session.log_in(MANAGER, self.password)
        cursor: int | None = None
        while not self.stop.is_set():
            path = "/api/live" if cursor is None else f"/api/live?after={cursor}"
            start = time.monotonic()
            try:
                status, body, _ = session.get(path, timeout_s=60)
            except OSError:
                self.errors += 1
                status, body = 0, b""
            self.samples.append((start, time.monotonic() - start))
            if status == 200:
                cursor = int(json.loads(body)["cursor"])
            else:
                self.errors += 1
            self.stop.wait(POLL_S)


def cpu_s(pid: int) -> tuple[float, float]:
    """(own, waited-for children's) CPU seconds of ``pid``, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # Fields 14-17 (utime, stime, cutime, cstime) are 12-15 after the ")".
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime) / CLOCK_TICKS, (cutime + cstime) / CLOCK_TICKS


def download(session: WebSession, fmt: str, pid: int, rows: int) -> Export:
    export = Export(fmt)
    own, children = cpu_s(pid)
    export.start_mono = time.monotonic()
    body = bytearray()
    try:
        with session.open(f"/export.{fmt}", timeout_s=1200) as response:
            export.status = response.status
            first = response.read(1)
            export.first_byte_s = time.monotonic() - export.start_mono
            body += first
            while chunk := response.read(1 << 20):
                body += chunk
    except urllib.error.HTTPError as exc:
        export.status = exc.code
    export.end_mono = time.monotonic()
    export.total_s = export.end_mono - export.start_mono
    export.bytes = len(body)
    own_after, children_after = cpu_s(pid)
    export.web_cpu_s = own_after - own
    export.children_cpu_s = children_after - children
    export.problem = _export_body_problem(f"/export.{fmt}", export.status, bytes(body), rows)
    return export


def stats(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "median": None, "p99": None, "max": None}
    array = np.asarray(values, dtype=float) * 1000  # as bench.load computes them
    return {
        "n": len(values),
        "median": round(float(np.median(array)), 1),
        "p99": round(float(np.percentile(array, 99)), 1),
        "max": round(float(array.max()), 1),
    }


def count_events(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.export_bench import populate

    work = args.dir.resolve()
    data = work / f"site-{args.rows}"
    data.mkdir(parents=True, exist_ok=True)
    tmp = work / "tmp"
    tmp.mkdir(exist_ok=True)
    db = data / "gatekiosk.db"
    if not db.exists():
        populate(db, args.rows, seed=args.seed)
    rows = count_events(db)
    password = secrets.token_urlsafe(12)
    # A fresh password each run: the manager is made once, its password reset.
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM users WHERE name = ?", (MANAGER,))
    conn.close()
    make_manager(db, password)

    load_start = os.getloadavg()
    web, base = start_web(
        data, tmp_dir=tmp, stderr=work / "web.stderr", code_root=args.code_root.resolve()
    )
    stop = threading.Event()
    pollers = [Poller(base, password, stop) for _ in range(args.live_clients)]
    try:
        for poller in pollers:
            poller.start()
        session = WebSession(base)
        session.log_in(MANAGER, password)
        baseline_start = time.monotonic()
        time.sleep(args.baseline_s)
        baseline_end = time.monotonic()
        exports = []
        for fmt in args.formats:
            export = download(session, fmt, web.proc.pid, rows)
            exports.append(export)
            print(f"{fmt}: {export.total_s:.1f} s, {export.bytes:,} bytes", flush=True)
        stop.set()
        for poller in pollers:
            poller.join(60)
    finally:
        stop.set()
        web.terminate()
    load_end = os.getloadavg()

    samples = [sample for poller in pollers for sample in poller.samples]
    windows = {"no export": [s for at, s in samples if baseline_start <= at < baseline_end]}
    for export in exports:
        windows[f"during the {export.fmt.upper()} export"] = [
            s for at, s in samples if export.start_mono <= at < export.end_mono
        ]
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "code_root": str(args.code_root.resolve()),
        "rows": rows,
        "load_average_start": [round(v, 2) for v in load_start],
        "load_average_end": [round(v, 2) for v in load_end],
        "live_clients": args.live_clients,
        "poll_errors": sum(poller.errors for poller in pollers),
        "exports": [
            {k: v for k, v in asdict(e).items() if not k.endswith("_mono")} for e in exports
        ],
        "live_ms": {name: stats(values) for name, values in windows.items()},
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        f"Code: {report['code_root']}; {report['rows']:,} events; {report['machine']}; "
        f"load average {report['load_average_start']} at start, "
        f"{report['load_average_end']} at end.",
        "",
        "| export | status | MB | first byte (s) | total (s) | web CPU (s) "
        "| worker CPU (s) | check |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for e in report["exports"]:
        lines.append(
            f"| {e['fmt']} | {e['status']} | {e['bytes'] / 1e6:.0f} | {e['first_byte_s']:.1f} "
            f"| {e['total_s']:.1f} | {e['web_cpu_s']:.1f} | {e['children_cpu_s']:.1f} "
            f"| {e['problem'] or 'ok'} |"
        )
    lines += [
        "",
        f"`/api/live`, {report['live_clients']} clients polling every {POLL_S} s "
        f"(errors: {report['poll_errors']}), ms:",
        "",
        "| window | n | median | p99 | max |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in report["live_ms"].items():
        lines.append(f"| {name} | {s['n']} | {s['median']} | {s['p99']} | {s['max']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="events in the database")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/gatekiosk-web-export-bench"))
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--code-root", type=Path, default=REPO, help="the code to run the web")
    parser.add_argument("--live-clients", type=int, default=10)
    parser.add_argument("--baseline-s", type=float, default=10.0)
    parser.add_argument("--formats", nargs="+", default=["csv", "xlsx"], choices=["csv", "xlsx"])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    report = run(args)
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
