"""Crash safety: SIGKILL the kiosk at random moments, and the web in the middle of exports.

``python -m bench.crash_harness --kills 200`` (``make crash``) writes
``bench/report-crash.md`` and ``bench/report-crash.json``;
``tests/test_crash_safety.py`` runs the same code with a few kills.

**The kiosk.** A real gate (``bench/crash_child.py``: the composition root,
a real SQLite file, the real decoder, gpiozero's MockFactory pins, a
synthetic camera presenting allowed and refused codes back to back) runs
while one admin web process (``gatekiosk web``) serves the same database to
a reader thread polling the live feed, the dashboard, the log page and
exports. The harness kills the kiosk with SIGKILL ``--kills`` times, each
time at a moment drawn from a seeded RNG in one of four ways:

* ``startup``: 0-0.6 s after the process starts (imports, opening the
  database, building the gate);
* ``random``: 0-``max_delay_s`` after the gate reports it is built;
* ``in-record``: at once or 0-2 ms after the scanner asked the store to
  record an event (a record takes about 1 ms: before, in or just after it);
* ``in-commit``: at once or 0-0.5 ms after that record's ``COMMIT`` began
  (writing and syncing the WAL);
* ``after-signal``: 0-50 ms after a decision was signalled (relay pulse,
  lights and buzzer running).

The child reports on a pipe, as they happen, each record asked and
committed, each signal *before* it reaches the pins, and each outcome (see
``bench/crash_child.py``). After each kill the harness checks, from outside:

* ``PRAGMA integrity_check`` is ``ok`` and ``foreign_key_check`` is empty;
* no duplicate event ids, no duplicate ``(boot_id, seq)``;
* every signalled decision has its event row, exactly once; every allow
  signal followed a committed allow row (record before signal);
* the rows of that life are exactly the commits it reported, plus at most
  the one it was committing when killed;
* when the kiosk comes back, its relay output is de-energised before the
  first frame (the pin is left at the energised level before each start);
* the web reader saw no error, and neither process logged a traceback.

**The web, killed mid-export.** On a database of ``--rows`` generated
events, the harness downloads CSV and XLSX exports from ``gatekiosk web``
(with ``TMPDIR`` pointed at a folder of its own) and kills the web process
with SIGKILL while the workbook is being built (by the web's worker process,
``kiosk.export_worker``) or once the first bytes arrived; and kills
``gatekiosk export -o FILE`` (the command-line export) at random moments.
After each kill: no file left in the data folder (beyond SQLite's own
``-wal``/``-shm``), its subfolders, or the process's temp folder; the
database's integrity; every export audit row whole; a killed download that
had reached the web left exactly one audit row, still incomplete unless the
web had handed out the whole export (then with all its rows); no export
worker of the killed web still running 10 s later; the target of a killed
command-line export either absent, still the old file, or the complete new
one. The web is then started again for the next kill, and at the end serves
a complete CSV and XLSX export.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import platform
import random
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REPORT_MD = HERE / "report-crash.md"
REPORT_JSON = HERE / "report-crash.json"

MANAGER = "crash-manager"
KILL_MODES = ("startup", "random", "in-record", "in-commit", "after-signal")
KILL_WEIGHTS = (1, 3, 2, 2, 2)
WAIT_LINE_S = 20.0
"""The longest wait for the kiosk to reach a kill moment (a decision takes about 1 s)."""
SQLITE_OWN = ("-wal", "-shm", "-journal")
WORKER_GONE_S = 10.0
"""How long the web's export workers may outlive it (they should go at once)."""

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gatekiosk_argv(*args: str) -> list[str]:
    """The ``gatekiosk`` command as installed, run by this interpreter."""
    return [sys.executable, "-c", "from kiosk.cli import main; main()", *args]


class Child:
    """A child process whose stdout lines are collected, with their arrival time,
    by a thread; stderr goes to a file."""

    def __init__(self, argv: list[str], *, env: dict[str, str], cwd: Path, stderr: Path) -> None:
        self.started = time.monotonic()
        with stderr.open("ab") as err:
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=err, env=env, cwd=cwd, bufsize=0
            )
        self._cond = threading.Condition()
        self._raw: list[tuple[float, bytes]] = []
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self._raw.append((time.monotonic(), raw))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def lines(self) -> list[dict[str, Any]]:
        """The complete JSON lines so far (a line cut by the kill is not one)."""
        with self._cond:
            raws = [raw for _, raw in self._raw]
        out = []
        for raw in raws:
            if raw.endswith(b"\n"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(raw))
        return out

    def text_lines(self) -> list[str]:
        with self._cond:
            return [raw.decode("utf-8", "replace") for _, raw in self._raw]

    def wait_line(
        self, predicate: Callable[[dict[str, Any]], bool], *, count: int = 1, timeout_s: float
    ) -> bool:
        """Wait until ``count`` JSON lines satisfy ``predicate``; False on timeout or exit."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                seen = 0
                for _, raw in self._raw:
                    if raw.endswith(b"\n"):
                        try:
                            line = json.loads(raw)
                        except ValueError:
                            continue
                        if isinstance(line, dict) and predicate(line):
                            seen += 1
                if seen >= count:
                    return True
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))

    def wait_text(self, pattern: str, *, timeout_s: float) -> re.Match[str] | None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for _, raw in self._raw:
                    match = re.search(pattern, raw.decode("utf-8", "replace"))
                    if match:
                        return match
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    return None
                self._cond.wait(min(left, 0.5))

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> int:
        """SIGKILL (if still running), reap, and read what it wrote; the exit status."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        return self._reap()

    def terminate(self, timeout_s: float = 20.0) -> int:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return self._reap()

    def _reap(self) -> int:
        code = self.proc.wait()
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


def tracebacks_in(path: Path) -> int:
    if not path.exists():
        return 0
    return path.read_text(encoding="utf-8", errors="replace").count("Traceback (most recent")


# --------------------------------------------------------------------------- the database


def database_problems(db: Path) -> tuple[list[str], dict[str, int]]:
    """Integrity, foreign keys and duplicates of ``db``; (problems, counts)."""
    problems = []
    conn = sqlite3.connect(db, timeout=30)
    try:
        integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if integrity != ["ok"]:
            problems.append(f"integrity_check: {integrity[:5]}")
        foreign = conn.execute("PRAGMA foreign_key_check").fetchall()
        if foreign:
            problems.append(f"foreign_key_check: {foreign[:5]}")
        (events, ids, pairs) = conn.execute(
            "SELECT count(*), count(DISTINCT id), "
            "(SELECT count(*) FROM (SELECT DISTINCT boot_id, seq FROM events)) FROM events"
        ).fetchone()
        if ids != events:
            problems.append(f"duplicate event ids: {events - ids}")
        if pairs != events:
            problems.append(f"duplicate (boot_id, seq): {events - pairs}")
    finally:
        conn.close()
    return problems, {
        "integrity_failures": int(integrity != ["ok"]),
        "duplicates": (events - ids) + (events - pairs),
        "events": events,
    }


def max_seq(db: Path, boot_id: str) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        (seq,) = conn.execute(
            "SELECT coalesce(max(seq), 0) FROM events WHERE boot_id = ?", (boot_id,)
        ).fetchone()
    finally:
        conn.close()
    return int(seq)


def life_rows(db: Path, boot_id: str, after_seq: int) -> list[tuple[str, int, str]]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return [
            (str(r[0]), int(r[1]), str(r[2]))
            for r in conn.execute(
                "SELECT id, seq, decision FROM events WHERE boot_id = ? AND seq > ? ORDER BY seq",
                (boot_id, after_seq),
            )
        ]
    finally:
        conn.close()


def count_ids(db: Path, ids: Iterable[str]) -> Counter[str]:
    wanted = list(ids)
    conn = sqlite3.connect(db, timeout=30)
    try:
        found: Counter[str] = Counter()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for (event_id,) in conn.execute(f"SELECT id FROM events WHERE id IN ({marks})", chunk):
                found[str(event_id)] += 1
    finally:
        conn.close()
    return found


# --------------------------------------------------------------------------- one life


@dataclass
class Life:
    """What one kiosk process reported, and what the database holds of it."""

    number: int
    mode: str
    started: bool = False
    relay_energised_at_start: bool | None = None
    relay_states: list[bool] = field(default_factory=list)
    committed: list[str] = field(default_factory=list)
    signalled: list[str] = field(default_factory=list)
    """Ids of the committed rows each signal followed."""
    allow_signals: int = 0
    deny_signals: int = 0
    store_fault_denials: int = 0
    in_flight: str | None = None
    """The decision of a record asked for but not reported committed at the kill."""
    in_flight_committed: bool | None = None
    in_commit: bool = False
    """The kill came after the in-flight record's COMMIT began."""
    committed_not_signalled: bool = False
    problems: list[str] = field(default_factory=list)


def read_life(life: Life, lines: list[dict[str, Any]]) -> None:
    """Follow the child's report: record -> recorded|record-failed -> signal -> outcome."""
    pending: str | None = None  # a record asked for, not yet answered
    committing = False  # its COMMIT began
    last: tuple[str, str | None, str | None] | None = None  # ("recorded", id, decision) ...
    for line in lines:
        kind = line.get("t")
        if kind == "start":
            life.started = True
            life.relay_energised_at_start = bool(line["relay_energised"])
            life.relay_states = list(line["relay_states"])
        elif kind == "record":
            if pending is not None:
                life.problems.append("a record began before the previous one answered")
            pending, last, committing = str(line["decision"]), None, False
        elif kind == "commit":
            committing = True
        elif kind == "recorded":
            if pending is None:
                life.problems.append("a commit reported without its record")
            life.committed.append(str(line["id"]))
            pending, last = None, ("recorded", str(line["id"]), str(line["decision"]))
        elif kind == "record-failed":
            pending, last = None, ("failed", None, None)
        elif kind == "signal":
            signalled = str(line["signal"])
            if signalled == "allow":
                life.allow_signals += 1
            else:
                life.deny_signals += 1
            if last is None:
                life.problems.append(f"{signalled} signalled with no record before it")
            elif last[0] == "failed":
                if signalled == "allow":
                    life.problems.append("allow signalled after the store failed")
                life.store_fault_denials += 1
            else:
                _, event_id, decision = last
                if decision != signalled:
                    life.problems.append(f"{signalled} signalled for a {decision} row")
                assert event_id is not None
                life.signalled.append(event_id)
            last = None
    life.in_flight = pending
    life.in_commit = pending is not None and committing
    life.committed_not_signalled = last is not None and last[0] == "recorded"


def check_life(life: Life, db: Path, boot_id: str, seq_before: int) -> None:
    """Compare what the life reported with the rows the database holds of it."""
    rows = life_rows(db, boot_id, seq_before)
    in_db = Counter(event_id for event_id, _, _ in rows)
    found = count_ids(db, life.signalled + life.committed)
    for event_id in life.signalled:
        if found[event_id] != 1:
            life.problems.append(f"signalled decision has {found[event_id]} rows (want 1)")
    for event_id in life.committed:
        if found[event_id] != 1:
            life.problems.append(f"committed row found {found[event_id]} times (want 1)")
    extra = [row for row in rows if row[0] not in set(life.committed)]
    if life.in_flight is not None:
        if len(extra) > 1:
            life.problems.append(f"{len(extra)} rows beyond the reported commits (want <= 1)")
        elif extra:
            life.in_flight_committed = True
            if extra[0][2] != life.in_flight:
                life.problems.append("the row committed at the kill is not the decision asked")
        else:
            life.in_flight_committed = False
    elif extra:
        life.problems.append(f"{len(extra)} rows nobody reported committing")
    if any(count != 1 for count in in_db.values()):
        life.problems.append("an event id appears twice in this life")


# --------------------------------------------------------------------------- the web


class WebSession:
    """A browser's worth of urllib: cookies, a login with its CSRF token."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

    def open(
        self, path: str, *, data: dict[str, str] | None = None, timeout_s: float = 30.0
    ) -> Any:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body)
        request.add_header("Accept-Language", "en")
        return self.opener.open(request, timeout=timeout_s)

    def get(self, path: str, *, timeout_s: float = 30.0) -> tuple[int, bytes, Any]:
        try:
            with self.open(path, timeout_s=timeout_s) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers

    def log_in(self, name: str, password: str) -> None:
        status, page, _ = self.get("/login")
        match = re.search(rb'name="csrf-token" content="([^"]+)"', page)
        if status != 200 or match is None:
            raise RuntimeError(f"no login page (HTTP {status})")
        with self.open(
            "/login",
            data={"name": name, "password": password, "csrf_token": match.group(1).decode()},
        ) as response:
            landed = response.geturl()
            response.read()
        if "/login" in urllib.parse.urlsplit(landed).path:
            raise RuntimeError("login refused")


def make_manager(db: Path, password: str) -> None:
    from kiosk.accounts import add_user
    from kiosk.store import Store

    with Store.open(db) as store:
        if store.user_by_name(MANAGER) is None:
            add_user(store, MANAGER, role="manager", password=password, at=datetime.now(UTC))


def start_web(data_dir: Path, *, tmp_dir: Path, stderr: Path, code_root: Path) -> tuple[Child, str]:
    """``gatekiosk web`` on a free port; (process, base URL)."""
    port = free_port()
    env = child_env(code_root, tmp_dir)
    env["GATEKIOSK_GATE__DATA_DIR"] = str(data_dir)
    env["GATEKIOSK_WEB__PORT"] = str(port)
    child = Child(gatekiosk_argv("web"), env=env, cwd=code_root, stderr=stderr)
    match = child.wait_text(r"admin web at (http://\S+)", timeout_s=60)
    if match is None:
        child.kill()
        raise RuntimeError(f"gatekiosk web did not start; see {stderr}")
    base = match.group(1)
    # Listening is announced just before serving: wait for an answer.
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "login", timeout=5) as response:
                response.read()
            break
        except OSError:
            if time.monotonic() > deadline or not child.running:
                child.kill()
                raise RuntimeError(f"gatekiosk web does not answer; see {stderr}") from None
            time.sleep(0.05)
    return child, base


def child_env(code_root: Path, tmp_dir: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEKIOSK_")}
    env["PYTHONPATH"] = str(code_root)
    env["PYTHONUNBUFFERED"] = "1"
    env["OPENCV_LOG_LEVEL"] = "ERROR"
    if tmp_dir is not None:
        env["TMPDIR"] = str(tmp_dir)
    return env


class WebReader(threading.Thread):
    """Reads the web as the dashboard and a manager do, counting every failure."""

    PAUSE_S = 0.1

    def __init__(self, base: str, password: str) -> None:
        super().__init__(name="web-reader", daemon=True)
        self.session = WebSession(base)
        self.password = password
        self.stop = threading.Event()
        self.requests: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []
        self.live_ids: Counter[str] = Counter()
        """Each event id the live feed delivered, and how often."""

    def run(self) -> None:
        try:
            self.session.log_in(MANAGER, self.password)
        except Exception as exc:  # counted: the harness reports it
            self._error("login", repr(exc))
            return
        cursor: int | None = None
        turn = 0
        while not self.stop.is_set():
            turn += 1
            cursor = self._live(cursor)
            if turn % 5 == 0:
                self._page("/log", b'class="events log"')
            if turn % 7 == 0:
                self._page("/", b"<html")
            if turn % 20 == 0:
                self._page("/export.csv", b"\xef\xbb\xbf")
            if turn % 60 == 0:
                self._xlsx()
            self.stop.wait(self.PAUSE_S)
        # Stopped: take what the feed still holds, so it can be compared with the log.
        for _ in range(1000):
            before = sum(self.live_ids.values())
            cursor = self._live(cursor)
            if sum(self.live_ids.values()) == before:
                break

    def _error(self, what: str, detail: str) -> None:
        self.errors[what] += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(f"{what}: {detail}")

    def _fetch(self, what: str, path: str) -> tuple[int, bytes] | None:
        self.requests[what] += 1
        try:
            status, body, _ = self.session.get(path)
        except Exception as exc:  # counted
            self._error(what, repr(exc))
            return None
        if status != 200:
            self._error(what, f"HTTP {status}")
            return None
        return status, body

    def _live(self, cursor: int | None) -> int | None:
        path = "/api/live" if cursor is None else f"/api/live?after={cursor}"
        got = self._fetch("live", path)
        if got is None:
            return cursor
        try:
            data = json.loads(got[1])
            self.live_ids.update(str(event["id"]) for event in data["events"])
            return int(data["cursor"])
        except (ValueError, KeyError, TypeError) as exc:
            self._error("live", f"bad JSON: {exc!r}")
            return cursor

    def _page(self, path: str, marker: bytes) -> None:
        got = self._fetch(path, path)
        if got is not None and marker not in got[1]:
            self._error(path, "unexpected body")

    def _xlsx(self) -> None:
        got = self._fetch("/export.xlsx", "/export.xlsx")
        if got is None:
            return
        try:
            with zipfile.ZipFile(io.BytesIO(got[1])) as book:
                if book.testzip() is not None or "xl/worksheets/sheet1.xml" not in book.namelist():
                    self._error("/export.xlsx", "broken workbook")
        except zipfile.BadZipFile as exc:
            self._error("/export.xlsx", repr(exc))


# --------------------------------------------------------------------------- kiosk kills


@dataclass
class KioskRun:
    kills: int = 0
    modes: Counter[str] = field(default_factory=Counter)
    lives: list[Life] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    integrity_failures: int = 0
    duplicates: int = 0
    relay_on_restart: int = 0
    starts_checked: int = 0
    waits_timed_out: int = 0
    events: int = 0
    clean_stop: bool | None = None
    relay_after_stop: bool | None = None
    kiosk_tracebacks: int = 0
    web_tracebacks: int = 0
    web_requests: int = 0
    web_errors: int = 0
    web_error_samples: list[str] = field(default_factory=list)
    web_live_events: int = 0
    live_feed_mismatches: int | None = None
    wall_s: float = 0.0

    def figures(self) -> dict[str, Any]:
        lives = self.lives
        in_flight = [life for life in lives if life.in_flight is not None]
        return {
            "kills": self.kills,
            "kill_modes": dict(self.modes),
            "kills_survived": sum(1 for life in lives if life.mode != "stop" and not life.problems),
            "signalled_decisions_checked": sum(len(life.signalled) for life in lives),
            "allow_signals": sum(life.allow_signals for life in lives),
            "deny_signals": sum(life.deny_signals for life in lives),
            "store_fault_denials": sum(life.store_fault_denials for life in lives),
            "commits_checked": sum(len(life.committed) for life in lives),
            "kills_mid_record": len(in_flight),
            "kills_mid_record_committed": sum(1 for life in in_flight if life.in_flight_committed),
            "kills_mid_record_rolled_back": sum(
                1 for life in in_flight if life.in_flight_committed is False
            ),
            "kills_in_commit": sum(1 for life in in_flight if life.in_commit),
            "kills_in_commit_committed": sum(
                1 for life in in_flight if life.in_commit and life.in_flight_committed
            ),
            "kills_between_commit_and_signal": sum(
                1 for life in lives if life.committed_not_signalled
            ),
            "events": self.events,
            "duplicates": self.duplicates,
            "integrity_failures": self.integrity_failures,
            "relay_on_restart": self.relay_on_restart,
            "starts_checked": self.starts_checked,
            "waits_timed_out": self.waits_timed_out,
            "clean_stop_at_end": self.clean_stop,
            "relay_energised_after_stop": self.relay_after_stop,
            "kiosk_tracebacks": self.kiosk_tracebacks,
            "web_tracebacks": self.web_tracebacks,
            "web_requests": self.web_requests,
            "web_errors": self.web_errors,
            "web_error_samples": self.web_error_samples,
            "web_live_events_seen": self.web_live_events,
            "live_feed_mismatches": self.live_feed_mismatches,
            "problems": self.problems,
            "wall_s": round(self.wall_s, 1),
        }


def run_kiosk_kills(
    work: Path,
    *,
    kills: int,
    seed: int = 2021,
    max_delay_s: float = 2.5,
    with_web: bool = True,
    log: Log = _quiet,
) -> KioskRun:
    """Kill the kiosk ``kills`` times while the web reads; check after each kill."""
    from kiosk.store import Store, current_boot_id

    started = time.monotonic()
    rng = random.Random(seed)
    data = work / "kiosk-site"
    data.mkdir(parents=True, exist_ok=True)
    db = data / "gatekiosk.db"
    kiosk_err = work / "kiosk.stderr"
    web_err = work / "web.stderr"
    password = secrets.token_urlsafe(12)
    Store.open(db).close()
    make_manager(db, password)
    boot_id = current_boot_id()
    run = KioskRun()
    web: Child | None = None
    reader: WebReader | None = None
    if with_web:
        web, base = start_web(
            data, tmp_dir=_mkdir(work / "web-tmp"), stderr=web_err, code_root=REPO
        )
        reader = WebReader(base, password)
        reader.start()
    env = child_env(REPO, _mkdir(work / "kiosk-tmp"))
    argv = [sys.executable, "-m", "bench.crash_child", "--data-dir", str(data)]
    try:
        for number in range(1, kills + 2):  # the last life is stopped, not killed
            last = number == kills + 1
            mode = "stop" if last else rng.choices(KILL_MODES, KILL_WEIGHTS)[0]
            seq_before = max_seq(db, boot_id)
            child = Child([*argv, "--life", str(number)], env=env, cwd=REPO, stderr=kiosk_err)
            life = Life(number, mode)
            timed_out = not _reach_kill_moment(child, mode, rng, max_delay_s)
            if last:
                code = child.terminate()
                run.clean_stop = code == 0
                stopped = [line for line in child.lines() if line.get("t") == "stopped"]
                run.relay_after_stop = bool(stopped[0]["relay_energised"]) if stopped else None
            else:
                child.kill()
                run.kills += 1
                run.modes[mode] += 1
                run.waits_timed_out += int(timed_out)
            read_life(life, child.lines())
            check_life(life, db, boot_id, seq_before)
            if life.started:
                run.starts_checked += 1
                if life.relay_energised_at_start:
                    run.relay_on_restart += 1
                    life.problems.append("relay energised when the kiosk came back")
            problems, counts = database_problems(db)
            life.problems += problems
            run.integrity_failures += counts["integrity_failures"]
            run.duplicates = max(run.duplicates, counts["duplicates"])
            run.events = counts["events"]
            run.lives.append(life)
            for problem in life.problems:
                run.problems.append(f"life {number} ({mode}): {problem}")
            log(
                f"kill {number}/{kills} {mode:<12} committed={len(life.committed):<3} "
                f"signalled={len(life.signalled):<3} in-flight={life.in_flight or '-':<5} "
                f"events={run.events} problems={len(life.problems)}"
                if not last
                else f"stopped: clean={run.clean_stop} relay after stop={run.relay_after_stop}"
            )
    finally:
        if reader is not None:
            reader.stop.set()
            reader.join(60)
            run.web_requests = sum(reader.requests.values())
            run.web_errors = sum(reader.errors.values())
            run.web_error_samples = reader.error_samples
            run.web_live_events = sum(reader.live_ids.values())
            _compare_live_feed(run, reader.live_ids, db)
        if web is not None and web.terminate() not in (0, -signal.SIGTERM):
            run.problems.append("the web did not stop cleanly on SIGTERM")
    run.kiosk_tracebacks = tracebacks_in(kiosk_err)
    run.web_tracebacks = tracebacks_in(web_err)
    if run.kiosk_tracebacks:
        run.problems.append(f"{run.kiosk_tracebacks} tracebacks in {kiosk_err}")
    if run.web_tracebacks:
        run.problems.append(f"{run.web_tracebacks} tracebacks in {web_err}")
    if run.web_errors:
        run.problems.append(f"{run.web_errors} web reader errors")
    if run.clean_stop is False:
        run.problems.append("the last kiosk did not stop cleanly on SIGTERM")
    if run.relay_after_stop:
        run.problems.append("relay energised after the kiosk stopped")
    run.wall_s = time.monotonic() - started
    return run


def _compare_live_feed(run: KioskRun, seen: Counter[str], db: Path) -> None:
    """The live feed, read while the kiosk was being killed, delivered every
    event of the log exactly once (the reader started before the first)."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        logged = {str(row[0]) for row in conn.execute("SELECT id FROM events")}
    finally:
        conn.close()
    twice = sum(1 for count in seen.values() if count > 1)
    missed = len(logged - set(seen))
    unknown = len(set(seen) - logged)
    run.live_feed_mismatches = twice + missed + unknown
    if twice or missed or unknown:
        run.problems.append(
            f"live feed: {twice} events delivered twice, {missed} never, {unknown} not in the log"
        )


def _reach_kill_moment(child: Child, mode: str, rng: random.Random, max_delay_s: float) -> bool:
    """Wait for the moment ``mode`` kills at; False if the kiosk never got there."""
    if mode == "startup":
        time.sleep(rng.uniform(0.0, 0.6))
        return True
    if not child.wait_line(lambda line: line.get("t") == "start", timeout_s=WAIT_LINE_S):
        return False
    if mode in ("random", "stop"):
        time.sleep(rng.uniform(0.0, max_delay_s))
        return True
    nth = rng.randint(1, 3)
    if mode == "in-commit":
        reached = child.wait_line(
            lambda line: line.get("t") == "commit", count=nth, timeout_s=WAIT_LINE_S
        )
        if rng.random() < 0.5:
            time.sleep(rng.uniform(0.0, 0.0005))
        return reached
    if mode == "in-record":
        reached = child.wait_line(
            lambda line: line.get("t") == "record", count=nth, timeout_s=WAIT_LINE_S
        )
        # A commit takes about a millisecond here: half the kills go at once.
        if rng.random() < 0.5:
            time.sleep(rng.uniform(0.0, 0.002))
        return reached
    reached = child.wait_line(
        lambda line: line.get("t") == "signal", count=nth, timeout_s=WAIT_LINE_S
    )
    time.sleep(rng.uniform(0.0, 0.05))
    return reached


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- export kills


@dataclass
class ExportKill:
    where: str  # "web" or "cli"
    fmt: str
    moment: str
    landed: str = ""
    """What the kill interrupted: building, sending, writing, or nothing (already done)."""
    leftovers: list[str] = field(default_factory=list)
    audit_rows: int = 0
    workers_at_kill: int = 0
    """The web's child processes (export workers) running when it was killed."""
    workers_left: int = 0
    """Those still running WORKER_GONE_S after the kill."""
    problems: list[str] = field(default_factory=list)


@dataclass
class ExportRun:
    rows: int = 0
    kills: list[ExportKill] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    calibration_xlsx_s: float = 0.0
    calibration_csv_s: float = 0.0
    cli_xlsx_s: float = 0.0
    write_fraction: float = 0.9
    """Kills aimed at a write land in this first part of its expected remaining time."""
    cli_csv_s: float = 0.0
    final_exports_ok: bool | None = None
    web_tracebacks: int = 0
    wall_s: float = 0.0

    def figures(self) -> dict[str, Any]:
        def of(where: str) -> list[ExportKill]:
            return [kill for kill in self.kills if kill.where == where]

        return {
            "rows": self.rows,
            "web_kills": len(of("web")),
            "web_kills_landed": dict(Counter(f"{k.fmt} {k.landed}" for k in of("web"))),
            "cli_kills": len(of("cli")),
            "cli_kills_landed": dict(Counter(f"{k.fmt} {k.landed}" for k in of("cli"))),
            "leftover_files": sum(len(kill.leftovers) for kill in self.kills),
            "leftover_samples": [name for kill in self.kills for name in kill.leftovers][:20],
            "kills_with_problems": sum(1 for kill in self.kills if kill.problems),
            "audit_rows_of_killed_web_exports": dict(
                Counter(f"{k.fmt} {k.landed}: {k.audit_rows}" for k in of("web"))
            ),
            "csv_killed_while_sending": sum(
                1 for k in of("web") if k.fmt == "csv" and k.landed == "sending"
            ),
            "csv_killed_while_sending_audited": sum(
                1 for k in of("web") if k.fmt == "csv" and k.landed == "sending" and k.audit_rows
            ),
            "export_workers_at_kills": sum(k.workers_at_kill for k in of("web")),
            "export_workers_outliving_the_web": sum(k.workers_left for k in of("web")),
            "calibration_xlsx_s": round(self.calibration_xlsx_s, 2),
            "calibration_csv_s": round(self.calibration_csv_s, 2),
            "cli_xlsx_s": round(self.cli_xlsx_s, 2),
            "cli_csv_s": round(self.cli_csv_s, 2),
            "final_exports_ok": self.final_exports_ok,
            "web_tracebacks": self.web_tracebacks,
            "problems": self.problems,
            "wall_s": round(self.wall_s, 1),
        }


def snapshot(folder: Path) -> set[str]:
    """Every file and folder under ``folder``, relative."""
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def new_files(before: set[str], folder: Path) -> list[str]:
    return sorted(name for name in snapshot(folder) - before if not name.endswith(SQLITE_OWN))


def export_audit(db: Path) -> list[tuple[int, Any, Any]]:
    """(id, detail, row_count) of every export audit row; detail None if not JSON."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        rows = conn.execute(
            "SELECT id, detail, row_count FROM audit WHERE action = 'export' ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    out = []
    for row_id, detail, row_count in rows:
        try:
            parsed = json.loads(detail)
        except ValueError:
            parsed = None
        out.append((int(row_id), parsed, row_count))
    return out


def audit_problems(rows: list[tuple[int, Any, Any]]) -> list[str]:
    problems = []
    for row_id, detail, row_count in rows:
        if (
            not isinstance(detail, dict)
            or detail.get("format") not in ("csv", "xlsx")
            or not isinstance(detail.get("complete"), bool)
            or not isinstance(row_count, int)
            or row_count < 0
        ):
            problems.append(f"audit row {row_id} is not whole: {detail!r}, {row_count!r}")
    return problems


def run_export_kills(
    work: Path,
    *,
    rows: int,
    web_kills: int,
    cli_kills: int,
    seed: int = 2021,
    code_root: Path = REPO,
    write_fraction: float = 0.9,
    log: Log = _quiet,
) -> ExportRun:
    """Kill the web mid-export ``web_kills`` times and the CLI export ``cli_kills`` times."""
    from bench.export_bench import populate

    started = time.monotonic()
    rng = random.Random(seed)
    run = ExportRun(rows=rows, write_fraction=write_fraction)
    data = _mkdir(work / "export-site")
    tmp = _mkdir(work / "export-tmp")
    db = data / "gatekiosk.db"
    web_err = work / "export-web.stderr"
    password = secrets.token_urlsafe(12)
    populate(db, rows, seed=seed)
    make_manager(db, password)

    web, base = start_web(data, tmp_dir=tmp, stderr=web_err, code_root=code_root)
    try:
        session = WebSession(base)
        session.log_in(MANAGER, password)
        run.calibration_csv_s = _timed_export(session, "/export.csv", run, rows)
        run.calibration_xlsx_s = _timed_export(session, "/export.xlsx", run, rows)
        log(
            f"exports of {rows} events: csv {run.calibration_csv_s:.1f} s, "
            f"xlsx {run.calibration_xlsx_s:.1f} s"
        )
        web_plan = [
            ("xlsx", "building"),
            ("csv", "first-bytes"),
            ("xlsx", "building"),
            ("xlsx", "first-bytes"),
            ("csv", "random"),
        ]
        for number in range(web_kills):
            fmt, moment = web_plan[number % len(web_plan)]
            before_files = snapshot(data)
            before_audit = export_audit(db)
            kill = ExportKill("web", fmt, moment)
            kill.landed = _kill_web_export(web, session, kill, rng, run, [data, tmp])
            kill.leftovers = new_files(before_files, data) + [
                f"TMPDIR/{name}" for name in sorted(snapshot(tmp))
            ]
            _check_after_export_kill(kill, db, before_audit)
            _check_web_kill_audit(kill, db, before_audit, rows)
            run.kills.append(kill)
            log(
                f"web kill {number + 1}/{web_kills}: {fmt} {moment} -> {kill.landed}, "
                f"leftovers={len(kill.leftovers)} audit rows={kill.audit_rows} "
                f"problems={len(kill.problems)}"
            )
            web, base = start_web(data, tmp_dir=tmp, stderr=web_err, code_root=code_root)
            session = WebSession(base)
            session.log_in(MANAGER, password)
        run.final_exports_ok = _final_exports(session, rows, run)
    finally:
        web.terminate()
    run.web_tracebacks = tracebacks_in(web_err)
    if run.web_tracebacks:
        run.problems.append(f"{run.web_tracebacks} tracebacks in {web_err}")

    out = _mkdir(work / "export-out")
    run.cli_csv_s = _time_cli_export(data, tmp, out, "csv", run, code_root, work)
    run.cli_xlsx_s = _time_cli_export(data, tmp, out, "xlsx", run, code_root, work)
    log(
        f"gatekiosk export of {rows} events: csv {run.cli_csv_s:.1f} s, xlsx {run.cli_xlsx_s:.1f} s"
    )
    cli_plan = [
        ("xlsx", False, True),
        ("csv", True, True),
        ("xlsx", True, False),
        ("csv", False, False),
    ]
    for number in range(cli_kills):
        fmt, replace, writing = cli_plan[number % len(cli_plan)]
        kill = _kill_cli_export(
            data, tmp, out, fmt, rng, run, code_root, work, db, replace=replace, writing=writing
        )
        run.kills.append(kill)
        log(
            f"cli kill {number + 1}/{cli_kills}: {fmt} {kill.moment} -> {kill.landed}, "
            f"leftovers={len(kill.leftovers)} problems={len(kill.problems)}"
        )

    for kill in run.kills:
        for problem in kill.problems:
            run.problems.append(f"{kill.where} {kill.fmt} {kill.moment}: {problem}")
        for name in kill.leftovers:
            run.problems.append(f"{kill.where} {kill.fmt} {kill.moment}: left {name}")
    run.wall_s = time.monotonic() - started
    return run


def _timed_export(session: WebSession, path: str, run: ExportRun, rows: int) -> float:
    start = time.monotonic()
    status, body, _ = session.get(path, timeout_s=600)
    elapsed = time.monotonic() - start
    problem = _export_body_problem(path, status, body, rows)
    if problem:
        run.problems.append(f"calibration {path}: {problem}")
    return elapsed


def _export_body_problem(path: str, status: int, body: bytes, rows: int) -> str | None:
    if status != 200:
        return f"HTTP {status}"
    if path.endswith(".csv"):
        lines = body.count(b"\r\n")
        return None if lines == rows + 1 else f"{lines} CSV lines, want {rows + 1}"
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as book:
            if book.testzip() is not None:
                return "broken workbook"
            sheet = book.read("xl/worksheets/sheet1.xml")
    except (zipfile.BadZipFile, KeyError) as exc:
        return repr(exc)
    count = sheet.count(b"<row ")
    return None if count == rows + 1 else f"{count} XLSX rows, want {rows + 1}"


def open_files(pid: int, folders: Iterable[Path]) -> list[str]:
    """The files ``pid`` has open under ``folders``, SQLite's own excepted: what a
    kill now would interrupt (an unnamed file shows as ``/folder/#inode (deleted)``)."""
    prefixes = tuple(str(folder.resolve()) + os.sep for folder in folders)
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(entry.path)
                name = target.removesuffix(" (deleted)")
                if name.startswith(prefixes) and not name.endswith((".db", *SQLITE_OWN)):
                    found.append(target)
    return found


def wait_open_files(pid: int, folders: list[Path], *, timeout_s: float) -> bool:
    """Poll until ``pid`` has a file open under ``folders`` (see :func:`open_files`)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if open_files(pid, folders):
            return True
        time.sleep(0.005)
    return False


def child_processes(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of every process whose parent is ``pid``, from /proc."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = _proc_stat(int(entry.name))
                if int(fields[1]) == pid:
                    found.append((int(entry.name), fields[19]))
    return found


def _proc_stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name: [0] is the state, [1] the
    parent, [19] the start time (fields 3, 4 and 22 of proc(5))."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def still_running(processes: list[tuple[int, str]], *, timeout_s: float) -> list[int]:
    """Poll until none of ``processes`` runs (gone, or a zombie nobody reaps);
    the pids still running after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        running = []
        for pid, started in processes:
            with contextlib.suppress(OSError, IndexError):
                fields = _proc_stat(pid)
                if fields[19] == started and fields[0] not in ("Z", "X"):
                    running.append(pid)
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.01)


def _kill_web_export(
    web: Child,
    session: WebSession,
    kill: ExportKill,
    rng: random.Random,
    run: ExportRun,
    folders: list[Path],
) -> str:
    """Start a download and SIGKILL the web at ``kill.moment``; what the kill
    interrupted. Counts the web's export workers running then, and those that
    outlive it by WORKER_GONE_S (killed then, and reported)."""
    fmt, moment = kill.fmt, kill.moment
    path = f"/export.{fmt}"
    state = {"headers": False, "done": False}

    def download() -> None:
        with (
            contextlib.suppress(OSError, http.client.HTTPException),
            session.open(path, timeout_s=600) as response,
        ):
            state["headers"] = True
            while response.read(65536):
                pass
            state["done"] = True

    if moment == "first-bytes":
        cut = False
        with session.open(path, timeout_s=600) as response:
            first = response.read(1)
            _kill_web_and_workers(web, kill)
            try:
                response.read()  # a body cut short raises (chunked or Content-Length)
            except (OSError, http.client.HTTPException):
                cut = True
        if not first:
            return "no bytes"
        return "sending" if cut else "after the download"  # all sent before the kill
    estimate = run.calibration_xlsx_s if fmt == "xlsx" else run.calibration_csv_s
    thread = threading.Thread(target=download, daemon=True)
    thread.start()
    if moment == "building":  # once the workbook's file is open, at a random point
        waited = time.monotonic()
        wait_open_files(web.proc.pid, folders, timeout_s=30)
        left = estimate - (time.monotonic() - waited)
        time.sleep(rng.uniform(0.0, max(0.05, run.write_fraction * left)))
    else:
        time.sleep(rng.uniform(0.05, max(0.1, estimate * 0.9)))
    sent = bool(state["headers"])
    building = bool(open_files(web.proc.pid, folders))
    _kill_web_and_workers(web, kill)
    thread.join(30)
    if state["done"]:
        return "after the download"
    if sent:
        return "sending"
    return "building (temporary file open)" if building else "before building"


def _kill_web_and_workers(web: Child, kill: ExportKill) -> None:
    """SIGKILL the web; its workers must end with it (kiosk.export_worker)."""
    workers = child_processes(web.proc.pid)
    web.kill()
    kill.workers_at_kill = len(workers)
    left = still_running(workers, timeout_s=WORKER_GONE_S)
    kill.workers_left = len(left)
    for pid in left:
        kill.problems.append(f"export worker {pid} still ran {WORKER_GONE_S:.0f} s after the web")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _check_web_kill_audit(
    kill: ExportKill, db: Path, before_audit: list[tuple[int, Any, Any]], rows: int
) -> None:
    """A download that reached the web left one audit row from its start: still
    incomplete, unless the web had handed out the whole export."""
    known = {row_id for row_id, _, _ in before_audit}
    new = [row for row in export_audit(db) if row[0] not in known]
    if kill.landed == "before building" and not new:
        return  # killed before the request reached the export
    if len(new) != 1:
        kill.problems.append(f"the killed download left {len(new)} audit rows, not 1")
        return
    _, detail, row_count = new[0]
    if not isinstance(detail, dict) or detail.get("format") != kill.fmt:
        kill.problems.append(f"the killed download's audit row is not a {kill.fmt}: {detail!r}")
    elif detail.get("complete") is True and row_count != rows:
        kill.problems.append(f"audited complete with {row_count} rows, not {rows}")
    elif not isinstance(row_count, int) or not 0 <= row_count <= rows:
        kill.problems.append(f"audited with {row_count!r} rows of {rows}")
    elif kill.landed.startswith("building") and detail.get("complete") is not False:
        kill.problems.append("a workbook killed while building was audited complete")


def _check_after_export_kill(kill: ExportKill, db: Path, before_audit: list[Any]) -> None:
    problems, _ = database_problems(db)
    kill.problems += problems
    audit = export_audit(db)
    kill.problems += audit_problems(audit)
    kill.audit_rows = len(audit) - len(before_audit)


def _final_exports(session: WebSession, rows: int, run: ExportRun) -> bool:
    ok = True
    for path in ("/export.csv", "/export.xlsx"):
        status, body, _ = session.get(path, timeout_s=600)
        problem = _export_body_problem(path, status, body, rows)
        if problem:
            run.problems.append(f"final {path} after the kills: {problem}")
            ok = False
    return ok


def _cli_export(
    data: Path, tmp: Path, target: Path, fmt: str, code_root: Path, work: Path
) -> Child:
    env = child_env(code_root, tmp)
    env["GATEKIOSK_GATE__DATA_DIR"] = str(data)
    return Child(
        gatekiosk_argv("export", "--format", fmt, "-o", str(target)),
        env=env,
        cwd=code_root,
        stderr=work / "export-cli.stderr",
    )


def _time_cli_export(
    data: Path, tmp: Path, out: Path, fmt: str, run: ExportRun, code_root: Path, work: Path
) -> float:
    """A complete ``gatekiosk export``: its wall time, and a check of the file."""
    target = out / f"full.{fmt}"
    started = time.monotonic()
    child = _cli_export(data, tmp, target, fmt, code_root, work)
    code = child.proc.wait()
    child.kill()
    elapsed = time.monotonic() - started
    if code != 0 or not target.exists():
        run.problems.append(f"gatekiosk export --format {fmt} failed ({code})")
    else:
        problem = _export_body_problem(f"x.{fmt}", 200, target.read_bytes(), run.rows)
        if problem:
            run.problems.append(f"gatekiosk export --format {fmt}: {problem}")
        target.unlink()
    return elapsed


def _kill_cli_export(
    data: Path,
    tmp: Path,
    out: Path,
    fmt: str,
    rng: random.Random,
    run: ExportRun,
    code_root: Path,
    work: Path,
    db: Path,
    *,
    replace: bool,
    writing: bool,
) -> ExportKill:
    """``gatekiosk export`` killed at a random moment; the target is old, new or absent."""
    moment = "writing" if writing else "random"
    kill = ExportKill("cli", fmt, f"{'replacing' if replace else 'new file'}, {moment}")
    for path in out.iterdir():
        path.unlink()
    target = out / f"log.{fmt}"
    old = b"the previous export\r\n"
    if replace:
        target.write_bytes(old)
    before_files = snapshot(data)
    before_audit = export_audit(db)
    child = _cli_export(data, tmp, target, fmt, code_root, work)
    estimate = run.cli_xlsx_s if fmt == "xlsx" else run.cli_csv_s
    if kill.moment.endswith("writing"):  # once the export's file is open, at a random point
        waited = time.monotonic()
        wait_open_files(child.proc.pid, [out, tmp], timeout_s=30)
        left = estimate - (time.monotonic() - waited)
        time.sleep(rng.uniform(0.0, max(0.05, run.write_fraction * left)))
    else:
        time.sleep(rng.uniform(0.05, 1.0) * estimate)
    was_writing = bool(open_files(child.proc.pid, [out, tmp, data]))
    finished = not child.running
    code = child.kill()
    if finished and code == 0:
        kill.landed = "after it finished"
    else:
        kill.landed = "writing (export file open)" if was_writing else "starting"
    names = sorted(path.name for path in out.iterdir())
    kill.leftovers = [f"out/{name}" for name in names if name != target.name]
    kill.leftovers += new_files(before_files, data)
    kill.leftovers += [f"TMPDIR/{name}" for name in sorted(snapshot(tmp))]
    if target.exists():
        body = target.read_bytes()
        if body != old:
            problem = _export_body_problem(f"x.{fmt}", 200, body, run.rows)
            if problem:
                kill.problems.append(f"the target holds a partial export: {problem}")
    elif replace:
        kill.problems.append("the previous export is gone")
    _check_after_export_kill(kill, db, before_audit)
    return kill


# --------------------------------------------------------------------------- report


def render(report: dict[str, Any]) -> str:
    k, e = report["kiosk"], report["export"]
    lines = [
        "# Crash safety",
        "",
        f"{report['when']}, {report['machine']}; seed {report['seed']}; "
        f"total wall time {report['wall_s']:.0f} s.",
        "",
        "## The kiosk killed with SIGKILL while the web reads",
        "",
        "| figure | value |",
        "|---|---:|",
    ]
    for key in (
        "kills",
        "kills_survived",
        "signalled_decisions_checked",
        "allow_signals",
        "deny_signals",
        "store_fault_denials",
        "commits_checked",
        "kills_mid_record",
        "kills_mid_record_committed",
        "kills_mid_record_rolled_back",
        "kills_in_commit",
        "kills_in_commit_committed",
        "kills_between_commit_and_signal",
        "events",
        "duplicates",
        "integrity_failures",
        "relay_on_restart",
        "starts_checked",
        "waits_timed_out",
        "kiosk_tracebacks",
        "web_requests",
        "web_errors",
        "web_live_events_seen",
        "live_feed_mismatches",
        "web_tracebacks",
        "wall_s",
    ):
        lines.append(f"| {key.replace('_', ' ')} | {k[key]} |")
    lines += [
        f"| kill moments | {', '.join(f'{m}: {n}' for m, n in sorted(k['kill_modes'].items()))} |",
        f"| clean stop at the end, relay after it | {k['clean_stop_at_end']}, "
        f"{'energised' if k['relay_energised_after_stop'] else 'off'} |",
        "",
        f"## The web and the command-line export killed mid-export ({e['rows']:,} events)",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| web kills | {e['web_kills']} |",
        f"| what they interrupted | {_pairs(e['web_kills_landed'])} |",
        f"| export audit rows the killed downloads left | "
        f"{_pairs(e['audit_rows_of_killed_web_exports'])} |",
        f"| export workers running at the kills, still running {WORKER_GONE_S:.0f} s later | "
        f"{e['export_workers_at_kills']}, {e['export_workers_outliving_the_web']} |",
        f"| command-line export kills | {e['cli_kills']} |",
        f"| what they interrupted | {_pairs(e['cli_kills_landed'])} |",
        f"| files left behind | {e['leftover_files']} |",
        f"| complete exports served after the kills | {e['final_exports_ok']} |",
        f"| web tracebacks | {e['web_tracebacks']} |",
        f"| full download time: CSV, XLSX (s) | {e['calibration_csv_s']}, "
        f"{e['calibration_xlsx_s']} |",
        f"| full `gatekiosk export` time: CSV, XLSX (s) | {e['cli_csv_s']}, {e['cli_xlsx_s']} |",
        f"| wall time (s) | {e['wall_s']} |",
        "",
    ]
    if e["csv_killed_while_sending"] > e["csv_killed_while_sending_audited"]:
        lines += [
            "Note: of the CSV downloads killed while rows were being sent, "
            f"{e['csv_killed_while_sending_audited']} of {e['csv_killed_while_sending']} left an "
            "audit row, although every web export is audited when it starts.",
            "",
        ]
    lines += [
        "## Problems",
        "",
    ]
    problems = k["problems"] + e["problems"]
    lines += [f"- {p}" for p in problems] or ["None."]
    return "\n".join(lines) + "\n"


def _pairs(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{key}: {value}" for key, value in sorted(mapping.items())) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200, help="SIGKILLs of the kiosk")
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument(
        "--max-delay",
        type=float,
        default=2.5,
        help="longest random delay before a kill, after the gate is built (s)",
    )
    parser.add_argument("--rows", type=int, default=50_000, help="events for the export kills")
    parser.add_argument("--web-kills", type=int, default=24)
    parser.add_argument("--cli-kills", type=int, default=8)
    parser.add_argument(
        "--code-root",
        type=Path,
        default=REPO,
        help="run the web and CLI children from this checkout (to compare)",
    )
    parser.add_argument("--work", type=Path, help="keep the work files here (default: temporary)")
    parser.add_argument("--no-report", action="store_true", help="print, do not write reports")
    args = parser.parse_args()

    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if args.work:
            work = _mkdir(args.work)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crash-")))
        kiosk = run_kiosk_kills(
            work, kills=args.kills, seed=args.seed, max_delay_s=args.max_delay, log=print
        )
        export = run_export_kills(
            work,
            rows=args.rows,
            web_kills=args.web_kills,
            cli_kills=args.cli_kills,
            seed=args.seed,
            code_root=args.code_root,
            log=print,
        )
    report = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}",
        "seed": args.seed,
        "wall_s": time.monotonic() - started,
        "kiosk": kiosk.figures(),
        "export": export.figures(),
    }
    text = render(report)
    if not args.no_report:
        REPORT_JSON.write_text(
            json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        REPORT_MD.write_text(text, encoding="utf-8")
    print(text)
    if kiosk.problems or export.problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
