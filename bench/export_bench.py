"""Time and peak memory of exporting the event log, next to SQLite's own CSV export.

Builds a temporary database with N events through the real schema
(``kiosk.store.Store.open``), then runs three exports of the same rows, each
in its own process so that peak memory is that task's alone:

(a) the ``sqlite3`` shell: ``sqlite3 -csv -header DB "SELECT ..." > file``,
    the floor for "rows out of SQLite into a CSV file";
(b) our CSV through Events (``kiosk.export.write_csv`` over ``Store.iter_events``);
(b') our CSV straight from the store (``kiosk.export.write_store_csv``), the
     same bytes with the cells formatted by SQLite;
(c) our XLSX (``kiosk.export.write_xlsx``);

plus "read Events only", which iterates and builds the events of (b) and (c)
and writes nothing: the part of their time that is not the export itself.

(b) and (c) stream: they iterate over a sqlite3 cursor and build one
:class:`~kiosk.store.Event` per row. Time is wall-clock from process start to
exit (what a manager waits), peak memory is the process's maximum resident
set size as GNU time (``/usr/bin/time``, Debian package ``time``) reports it;
both include interpreter start-up.

Results go to stdout as a Markdown table and to ``bench/report-export.json``.

Usage: .venv/bin/python bench/export_bench.py [--rows N] [--dir DIR] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from kiosk.export import write_csv, write_store_csv, write_xlsx
from kiosk.store import LOG_ORDER, Event, EventFilter, Store

REPORT_PATH = Path(__file__).resolve().parent / "report-export.json"
SQLITE_SHELL = "/usr/bin/sqlite3"
GNU_TIME = "/usr/bin/time"
SHELL_TASK = "sqlite3 shell CSV"
SITE_TZ = "Asia/Ho_Chi_Minh"

# The same query for every exporter: the log's order (kiosk.store.LOG_ORDER).
COLUMNS = (
    "id, boot_id, seq, gate_id, at_utc, utc_offset_min, clock_synced, direction, decision, "
    "reason, kind, subject_hash, display_name, masked_id, id_number, override, warning"
)
QUERY = f"SELECT {COLUMNS} FROM events ORDER BY {LOG_ORDER}"

FAMILY = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi")
MIDDLE = ("Văn", "Thị", "Hữu", "Đức", "Thành", "Minh", "Ngọc", "Thu", "Quang", "Xuân")
GIVEN = (
    *("Anh", "Ánh", "Bảo", "Châu", "Dũng", "Giang", "Hà", "Hùng", "Hương", "Khánh", "Linh"),
    *("Long", "Mai", "Nam", "Nga", "Phúc", "Quân", "Sơn", "Thảo", "Trang", "Tuấn", "Tuyết"),
)
# (kind, relative frequency)
KINDS = (
    ("cccd", 45),
    ("staff-pass", 30),
    ("declaration", 15),
    ("pc-covid", 5),
    ("hcert", 2),
    ("unrecognised", 3),
)
DENY_REASONS = (
    *("denylisted", "capacity-full", "kind-not-allowed", "antipassback"),
    *("cccd-bad-id", "pccovid-bad-fields", "parser-error"),
)
GATES = ("gate-1", "gate-2", "market-east")
EVENTS_PER_BOOT = 20_000
PEOPLE = 5_000


# --------------------------------------------------------------------------- the database


def populate(path: Path, rows: int, *, seed: int) -> None:
    """Create the database with the project's schema and ``rows`` events, in one transaction.

    Times start on 2025-01-01 UTC and advance by random (exponential) gaps
    averaging one year / ``rows``, so they are already in time order.
    """
    rng = random.Random(seed)
    people = [_person(rng, i) for i in range(PEOPLE)]
    kinds = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    mean_gap_s = 365 * 86400 / rows

    def events() -> Iterator[tuple[Any, ...]]:
        at = datetime(2025, 1, 1, tzinfo=UTC)
        boot_id = ""
        for i in range(rows):
            if i % EVENTS_PER_BOOT == 0:
                boot_id = uuid_hex(rng)
            at += timedelta(seconds=rng.expovariate(1 / mean_gap_s))
            name, masked_id, id_number, subject_hash = rng.choice(people)
            kind = rng.choices(kinds, weights)[0]
            unknown = kind == "unrecognised"
            deny = unknown or rng.random() < 0.08
            direction = "in" if rng.random() < 0.55 else "out"
            if unknown:
                reason = "unrecognised"
            elif deny:
                reason = rng.choice(DENY_REASONS)
            else:
                reason = "ok" if direction == "in" else "ok-exit"
            synced = rng.random() < 0.98
            yield (  # In the order of COLUMNS.
                uuid_hex(rng),
                boot_id,
                i % EVENTS_PER_BOOT + 1,
                rng.choice(GATES),
                at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                420,
                int(synced),
                direction,
                "deny" if deny else "allow",
                reason,
                kind,
                None if unknown else subject_hash,
                None if unknown else name,
                None if unknown else masked_id,
                None if unknown else id_number,
                int(rng.random() < 0.01),
                None if synced else "clock-unsynced",
            )

    with Store.open(path, boot_id="bench") as store:
        # Bulk load straight through the store's connection: one transaction, one fsync.
        conn = store._conn
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(f"INSERT INTO events ({COLUMNS}) VALUES ({', '.join('?' * 17)})", events())
        conn.execute("COMMIT")


def uuid_hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def _person(rng: random.Random, i: int) -> tuple[str, str, str | None, str]:
    name = unicodedata.normalize(
        "NFC", f"{rng.choice(FAMILY)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}"
    )
    number = f"0{rng.randrange(1, 97):02d}{rng.randrange(0, 10**9):09d}"
    stored = number if rng.random() < 0.1 else None  # Most sites keep no full ID numbers.
    return name, f"{number[:4]}****{number[-4:]}", stored, f"{rng.getrandbits(256):064x}"


# --------------------------------------------------------------------------- children


def iter_events(db: Path) -> Iterator[Event]:
    """Events of ``db`` in export order, streamed by the store's own query."""
    with Store.open(db, read_only=True) as store:
        yield from store.iter_events(EventFilter())


def run_child(task: str, db: Path, out: Path, tmpdir: Path) -> None:
    """Export in this (child) process and print the in-process seconds and rows as JSON."""
    tz = ZoneInfo(SITE_TZ)
    start = time.perf_counter()
    if task == "read":  # The floor of (b) and (c): rows to Events, no output.
        rows = sum(1 for _ in iter_events(db))
        out.touch()
    elif task == "csv":
        with out.open("wb") as stream:
            rows = write_csv(iter_events(db), stream, tz=tz)
    elif task == "fast-csv":
        with Store.open(db, read_only=True) as store, out.open("wb") as stream:
            rows = write_store_csv(store, EventFilter(), stream, tz=tz)
    else:
        rows = write_xlsx(iter_events(db), out, tz=tz, tmpdir=tmpdir)
    print(json.dumps({"rows": rows, "export_s": time.perf_counter() - start}))


# --------------------------------------------------------------------------- measuring


@dataclass
class Result:
    task: str
    wall_s: float
    peak_rss_mb: float
    output_mb: float
    export_s: float | None = None
    rows: int | None = None


def measure(task: str, argv: list[str], out: Path) -> Result:
    """Run ``argv`` alone and measure it; the shell's stdout goes to ``out``.

    Peak memory comes from GNU time (``%M``, the command's maximum RSS). It is
    not taken from this process's ``wait4``: a child started by fork or vfork
    inherits this (larger) process's RSS, and Linux keeps that high-water mark
    across exec, so a small program like the sqlite3 shell would be charged
    for the Python that launched it. GNU time is a small C program, so the
    command it forks starts from almost nothing.
    """
    usage_file = out.with_suffix(".usage")
    command = [GNU_TIME, "-f", "%M", "-o", str(usage_file), *argv]
    start = time.perf_counter()
    if task == SHELL_TASK:
        with out.open("wb") as stdout:
            completed = subprocess.run(command, stdout=stdout, check=False)
    else:
        completed = subprocess.run(command, stdout=subprocess.PIPE, check=False)
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"{task} failed with exit code {completed.returncode}")
    peak_kib = int(usage_file.read_text(encoding="ascii").split()[-1])
    result = Result(task, wall, peak_kib / 1024, out.stat().st_size / 1e6)
    if completed.stdout:
        info = json.loads(completed.stdout)  # One short JSON line from run_child.
        result.export_s, result.rows = info["export_s"], info["rows"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="events in the database")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument(
        "--child", choices=("read", "csv", "fast-csv", "xlsx"), help=argparse.SUPPRESS
    )
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        run_child(args.child, args.db, args.out, args.out.parent)
        return

    report = run_export_bench(args.rows, seed=args.seed, work_parent=args.dir)
    REPORT_PATH.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(render(report))


TASK_CSV = "our CSV (Events)"
TASK_FAST_CSV = "our CSV (store fast path)"


def run_export_bench(
    rows: int, *, seed: int = 2021, work_parent: Path | None = None
) -> dict[str, Any]:
    """Populate a database with ``rows`` events and time every exporter on it, each alone.

    Also checks that the fast CSV path wrote the same bytes as the Events path.
    """
    with tempfile.TemporaryDirectory(prefix="export-bench-", dir=work_parent) as work_dir:
        work = Path(work_dir)
        db = work / "events.db"
        start = time.perf_counter()
        populate(db, rows, seed=seed)
        populate_s = time.perf_counter() - start
        print(f"database: {rows:,} events in {populate_s:.1f} s", file=sys.stderr)

        me = [sys.executable, str(Path(__file__).resolve())]
        tasks = (
            (SHELL_TASK, [SQLITE_SHELL, "-csv", "-header", str(db), QUERY], "shell.csv"),
            ("read Events only", [*me, "--child", "read", "--db", str(db)], "read.none"),
            (TASK_CSV, [*me, "--child", "csv", "--db", str(db)], "ours.csv"),
            (TASK_FAST_CSV, [*me, "--child", "fast-csv", "--db", str(db)], "fast.csv"),
            ("our XLSX", [*me, "--child", "xlsx", "--db", str(db)], "ours.xlsx"),
        )
        results = []
        for task, argv, name in tasks:
            out = work / name
            if task != SHELL_TASK:
                argv = [*argv, "--out", str(out)]
            print(f"running {task} ...", file=sys.stderr)
            results.append(measure(task, argv, out))
            if name not in ("ours.csv", "fast.csv"):
                out.unlink()
        same_bytes = _same_file(work / "ours.csv", work / "fast.csv")

    by_task = {r.task: r for r in results}
    shell = by_task[SHELL_TASK]
    return {
        "rows": rows,
        "populate_s": populate_s,
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        ),
        "sqlite_shell": subprocess.run(
            [SQLITE_SHELL, "--version"], capture_output=True, text=True, check=True
        ).stdout.split()[0],
        "results": [asdict(r) for r in results],
        "csv_time_ratio_ours_to_shell": by_task[TASK_CSV].wall_s / shell.wall_s,
        "fast_csv_time_ratio_to_shell": by_task[TASK_FAST_CSV].wall_s / shell.wall_s,
        "fast_csv_same_bytes_as_events_csv": same_bytes,
    }


def _same_file(a: Path, b: Path) -> bool:
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            chunk_a, chunk_b = fa.read(1 << 20), fb.read(1 << 20)
            if chunk_a != chunk_b:
                return False
            if not chunk_a:
                return True


def render(report: dict[str, Any]) -> str:
    lines = [
        f"Export of {report['rows']:,} events ({report['machine']}, "
        f"sqlite3 {report['sqlite_shell']})",
        "",
        "| task | wall time (s) | in-process (s) | peak RSS (MB) | output (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        export = "" if r["export_s"] is None else f"{r['export_s']:.2f}"
        lines.append(
            f"| {r['task']} | {r['wall_s']:.2f} | {export} | "
            f"{r['peak_rss_mb']:.0f} | {r['output_mb']:.0f} |"
        )
    lines += [
        "",
        f"Our CSV time / shell CSV time: {report['csv_time_ratio_ours_to_shell']:.1f}x "
        f"(Events path), {report['fast_csv_time_ratio_to_shell']:.2f}x (store fast path; "
        f"same bytes: {report['fast_csv_same_bytes_as_events_csv']})",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
