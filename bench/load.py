"""Everything at once: the gate at 30 fps, 50 live dashboards and a million-row export.

Issue 6, item 7 ("Load"). Every part runs in a process of its own, as on the Pi,
sharing nothing but one SQLite file in a temporary folder:

* **The database** holds ``--rows`` events first (``bench.export_bench.populate``:
  a year of a busy site's traffic, about 2,700 events a day, moved in time so that
  it ends a minute ago, so the dashboard's "today" holds a real day's rows). The
  retention setting is raised to ten years so that the kiosk's purge keeps them.
  Two accounts, a manager and a guard, are made with the store API.
* **The kiosk** is this module's ``--kiosk-child``: the gate built by the
  composition root (``kiosk.compose.build_gate``, live as under ``gatekiosk
  run``: settings, guards' admissions, retention and keys are polled), the
  configured pipeline decoder, pins on gpiozero's MockFactory (``pins.backend =
  "mock"``), and the synthetic camera at ``--fps`` in real time. After a
  ``--lead-s`` of nobody, visitor *k* holds up a chip ID card (CCCD) with its own
  ID number for ``--show-s`` seconds, then nobody for ``--gap-s``, and so on.
* **The admin web** is ``gatekiosk web --config ...`` (waitress) on a free port.
* **This process** runs ``--clients`` dashboard clients, each in a thread with
  its own keep-alive HTTP connection and session (half log in as the manager,
  half as the guard). Each loads the dashboard, then polls ``/api/live?after=``
  every ``--poll-s`` after the previous answer, as ``admin_web/static/live.js``
  does, and loads the dashboard page again every ``--page-every-s`` (at a random
  phase). The live cursor is carried across page loads, so every client's live
  feed can be checked for gaps and repeats. One more client, a manager, waits
  ``baseline_s`` then downloads the whole log through the web: CSV
  (``/export.csv``, streamed), then XLSX (``/export.xlsx``) unless ``--no-xlsx``.

The load lasts ``--duration`` seconds or until the exports are done, whichever is
later. Then the kiosk is stopped in a gap between visitors (SIGTERM; it finishes
the frame in hand), every client polls until its feed is drained, and the web
stops.

Accounting. A presentation is *shown* when all its frames were due before the
kiosk stopped. Each is identified by its ID number: the kiosk's keyed hash of it
(``subject_hash``) is computed here with the kiosk's key and looked for in the
events the kiosk's gate recorded. Per shown presentation: its frames that reached
the scanner, whether the decoder read it in any of them, and how many events hold
it. *Lost* = read but not recorded; *duplicated* = recorded more than once; also
counted: never read, events that match no presentation, and the kiosk's outcomes
(its ``on_outcome`` callback, one JSON line each) against the rows in the database.
Each dashboard client's live feed must hold every event recorded after its first
cursor exactly once, in order.

Figures: the gate's decision latency (``Outcome.latency_ms``, from the capture of
the frame that was read to the signal) and from the first frame that showed the
code to the signal (adds the frames dropped or not read before it); achieved
camera fps and frames decoded; per endpoint, client-side response times (request
sent to the last byte read, median, p99, max), count and errors, also split by
whether an export was running; each export's rows, bytes, time to first byte and
total time, and the audit log's row count for it; the CPU seconds of each process
and of everything else on the machine (``/proc/stat``) during the run.

Usage: .venv/bin/python -m bench.load [--duration S] [--rows N] [--clients N] [--no-xlsx]
Writes bench/report-load.md and bench/report-load.json (``--report-dir`` to change).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import itertools
import json
import logging
import math
import os
import platform
import random
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REPORT_NAME = "report-load"

GATE_ID = "load-gate"
SEED = 2021
PASSWORD = "load-bench-password"
ACCOUNTS = (("load-manager", "manager"), ("load-guard", "guard"))
MANAGER = ACCOUNTS[0][0]

SCHEDULE_SLACK_S = 3600.0
"""The camera's schedule runs this much past ``--duration``, for exports that overrun."""
EXPORT_TIMEOUT_S = 1800.0
"""A download not finished in this long is an error (the load stops waiting for it)."""
STOP_TIMEOUT_S = 30.0
HTTP_TIMEOUT_S = 60.0
CHUNK_BYTES = 1 << 16

ENDPOINT_LOGIN_PAGE = "GET /login"
ENDPOINT_LOGIN = "POST /login"
ENDPOINT_DASHBOARD = "GET / (dashboard)"
ENDPOINT_LIVE = "GET /api/live"
ENDPOINT_CSV = "GET /export.csv"
ENDPOINT_XLSX = "GET /export.xlsx"
WINDOW_NONE = "no export running"
WINDOW_CSV = "during the CSV export"
WINDOW_XLSX = "during the XLSX export"


class LoadError(Exception):
    """The load run could not be set up or carried out."""


@dataclass(frozen=True)
class LoadConfig:
    """One run's sizes; the defaults are the issue's."""

    duration_s: float = 180.0
    rows: int = 1_000_000
    clients: int = 50
    fps: float = 30.0
    lead_s: float = 2.0
    show_s: float = 1.5
    gap_s: float = 1.5
    poll_s: float = 0.5
    page_every_s: float = 60.0
    baseline_s: float = 15.0
    """Seconds of load before the exports start: a window with no export."""
    csv: bool = True
    xlsx: bool = True
    seed: int = SEED


# --------------------------------------------------------------------------- the visitors


@dataclass(frozen=True)
class Plan:
    """The synthetic camera's schedule: nobody for ``lead_s``, then visitor k
    (k = 0 .. count-1) shows a distinct CCCD for ``show_s``, then nobody for ``gap_s``."""

    fps: float
    lead_s: float
    show_s: float
    gap_s: float
    count: int
    seed: int

    @property
    def period_s(self) -> float:
        return self.show_s + self.gap_s

    @staticmethod
    def id_number(k: int) -> str:
        return f"0792{k:08d}"

    def payload(self, k: int) -> str:
        return (
            f"{self.id_number(k)}|025123456|Nguyễn Văn An|15031990|Nam|"
            "12 Lê Lợi, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh|01072021"
        )

    def schedule(self) -> list[Any]:
        from kiosk.synthetic import Scene

        scenes = [Scene((), self.lead_s)]
        for k in range(self.count):
            scenes += [Scene((self.payload(k),), self.show_s), Scene((), self.gap_s)]
        return scenes

    def first_frame(self, k: int) -> int:
        """The first frame that shows visitor k (the source's own scene arithmetic)."""
        return math.ceil((self.lead_s + k * self.period_s) * self.fps - 1e-6)

    def presentation_of(self, frame_index: int) -> int | None:
        """The visitor in frame ``frame_index``, None for nobody."""
        t_s = frame_index / self.fps + 1e-9
        if t_s < self.lead_s:
            return None
        k, into_s = divmod(t_s - self.lead_s, self.period_s)
        if k >= self.count or into_s >= self.show_s:
            return None
        return int(k)

    def complete_before(self, frame_index: int) -> int:
        """How many visitors had left the view by frame ``frame_index``."""
        t_s = frame_index / self.fps + 1e-9
        done = math.floor((t_s - self.lead_s - self.show_s) / self.period_s) + 1
        return max(0, min(self.count, done))


# --------------------------------------------------------------------------- the kiosk process


class PlannedSource:
    """The synthetic camera, counting what it delivers, and the graceful stop:
    once ``stopping`` is set, the first frame with nobody in view sets ``stop``."""

    def __init__(self, inner: Any, plan: Plan, stopping: threading.Event, stop: threading.Event):
        self.inner = inner
        self.plan = plan
        self.stopping = stopping
        self.stop = stop
        self.frames = 0
        self.first_index: int | None = None
        self.last_index: int | None = None
        self.frames_per_visitor: collections.Counter[int] = collections.Counter()
        self.first_mono: float | None = None
        self.last_mono: float | None = None
        self.age_ms: list[float] = []
        """Per frame, from its capture time (when it was due) to its hand-over to the
        scanner: rendering it, and any lag of a loop that fell behind."""

    @property
    def state(self) -> Any:
        return self.inner.state

    @property
    def exhausted(self) -> bool:
        return bool(self.inner.exhausted)

    def read(self, timeout_s: float) -> Any:
        frame = self.inner.read(timeout_s)
        if frame is None:
            return None
        self.age_ms.append((time.monotonic() - frame.captured_mono) * 1000)
        self.frames += 1
        if self.first_index is None:
            self.first_index, self.first_mono = frame.index, frame.captured_mono
        self.last_index, self.last_mono = frame.index, frame.captured_mono
        k = self.plan.presentation_of(frame.index)
        if k is not None:
            self.frames_per_visitor[k] += 1
        elif self.stopping.is_set():
            self.stop.set()  # between visitors: everyone before this frame has been seen
        return frame

    def close(self) -> None:
        self.inner.close()


class CountingDecoder:
    """The configured decoder, timed per frame, noting which visitors it read."""

    def __init__(self, inner: Any, source: PlannedSource, plan: Plan):
        self.inner = inner
        self.name = inner.name
        self.source = source
        self.plan = plan
        self.decode_ms: list[float] = []
        self.frames_with_code = 0
        self.frames_read = 0
        self.read: set[int] = set()

    def decode(self, grey: Any) -> Any:
        start = time.perf_counter()
        codes = self.inner.decode(grey)
        self.decode_ms.append((time.perf_counter() - start) * 1000)
        index = self.source.last_index
        k = self.plan.presentation_of(index) if index is not None else None
        if k is not None:
            self.frames_with_code += 1
            expected = self.plan.payload(k).encode("utf-8")
            if any(code.raw == expected for code in codes):
                self.frames_read += 1
                self.read.add(k)
        return codes


class TimedStore:
    """The gate's store, timing each event recorded (the commit and its fsync, and
    any wait for the write lock); everything else passes straight through."""

    def __init__(self, inner: Any):
        self._inner = inner
        self.record_ms: list[float] = []

    def record(self, event: Any) -> Any:
        start = time.perf_counter()
        try:
            return self._inner.record(event)
        finally:
            self.record_ms.append((time.perf_counter() - start) * 1000)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def kiosk_child(work: Path) -> None:
    """The kiosk process: scan until SIGTERM (then stop between visitors) or the
    schedule ends; write ``outcomes.jsonl`` as it goes and ``kiosk.json`` at the end."""
    from kiosk.camera import SyntheticSource
    from kiosk.clock import SystemClock
    from kiosk.compose import build_gate
    from kiosk.config import load_settings
    from kiosk.decoder import make_decoder

    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    plan = Plan(**json.loads((work / "plan.json").read_text(encoding="utf-8")))
    settings = load_settings(work / "gatekiosk.toml", env={})
    clock = SystemClock()
    stop, stopping = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.set())
    source = PlannedSource(
        SyntheticSource(
            plan.schedule(),
            clock=clock,
            size=(settings["camera.width"], settings["camera.height"]),
            fps=plan.fps,
            seed=plan.seed,
        ),
        plan,
        stopping,
        stop,
    )
    decoder = CountingDecoder(make_decoder(settings["decoder.backend"]), source, plan)
    outcomes_file = (work / "outcomes.jsonl").open("w", encoding="utf-8")
    store: TimedStore | None = None

    def on_outcome(outcome: Any) -> None:
        event = outcome.event
        index = outcome.frame_index
        k = plan.presentation_of(index) if index is not None else None
        glass_ms = None
        if k is not None:
            glass_ms = (index - plan.first_frame(k)) * 1000 / plan.fps + outcome.latency_ms
        line = {
            "frame_index": index,
            "visitor": k,
            "event_id": event.id if event is not None else None,
            "decision": outcome.decision.verdict,
            "reason": outcome.decision.reason,
            "latency_ms": outcome.latency_ms,
            "glass_ms": glass_ms,
            "signal_mono": time.monotonic(),
            # Where the time went, for the frame that was read: capture to hand-over,
            # decoding, recording; the rest is identifying, deciding, the signal.
            "age_ms": source.age_ms[-1],
            "decode_ms": decoder.decode_ms[-1],
            "record_ms": store.record_ms[-1] if store is not None and store.record_ms else None,
        }
        outcomes_file.write(json.dumps(line) + "\n")
        outcomes_file.flush()

    started = time.monotonic()
    with build_gate(
        settings, clock=clock, source=source, decoder=decoder, on_outcome=on_outcome
    ) as gate:
        scanner: Any = gate.scanner  # the timing proxy stands in for the Store
        store = TimedStore(scanner.store)
        scanner.store = store
        (work / "kiosk.ready").touch()
        gate.scanner.run(stop)
    outcomes_file.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    if source.exhausted:
        complete = plan.count
    elif source.last_index is None:
        complete = 0
    else:
        complete = plan.complete_before(source.last_index)
    summary = {
        "run_s": time.monotonic() - started,
        "frames_delivered": source.frames,
        "first_index": source.first_index,
        "last_index": source.last_index,
        "camera_s": (source.last_mono - source.first_mono)
        if source.first_mono is not None and source.last_mono is not None
        else 0.0,
        "exhausted": source.exhausted,
        "complete_visitors": complete,
        "frames_per_visitor": {str(k): n for k, n in source.frames_per_visitor.items()},
        "visitors_read": sorted(decoder.read),
        "frames_with_code": decoder.frames_with_code,
        "frames_code_read": decoder.frames_read,
        "decode_ms": decoder.decode_ms,
        "frame_age_ms": source.age_ms,
        "record_ms": store.record_ms if store is not None else [],
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "max_rss_mb": usage.ru_maxrss / 1024,
        "decoder": decoder.name,
    }
    (work / "kiosk.json").write_text(json.dumps(summary), encoding="utf-8")


# --------------------------------------------------------------------------- the database


def write_config(work: Path, *, fps: float, port: int) -> Path:
    """The site's settings file, shared by the kiosk and the web (as on the Pi)."""
    data_dir = work / "data"
    text = "\n".join(
        [
            "[gate]",
            f"id = {json.dumps(GATE_ID)}",
            'mode = "both"',
            'timezone = "Asia/Ho_Chi_Minh"',
            f"data_dir = {json.dumps(str(data_dir))}",
            "[camera]",
            'source = "synthetic"',
            f"fps = {float(fps)}",
            "[pins]",
            'backend = "mock"',
            "[privacy]",
            "retention_days = 3650",
            "[web]",
            'host = "127.0.0.1"',
            f"port = {port}",
            "",
        ]
    )
    path = work / "gatekiosk.toml"
    path.write_text(text, encoding="utf-8")
    return path


def prepare_database(settings: Any, rows: int, *, seed: int) -> dict[str, Any]:
    """``rows`` events ending a minute ago, the accounts, the subject-hash key."""
    from bench.export_bench import populate
    from kiosk.accounts import add_user
    from kiosk.privacy import load_or_create_key
    from kiosk.store import Store

    db = settings.db_path
    start = time.perf_counter()
    populate(db, rows, seed=seed)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        (newest,) = conn.execute("SELECT max(at_utc) FROM events").fetchone()
        shift_s = 0
        if newest is not None:
            target = datetime.now(UTC) - timedelta(minutes=1)
            shift_s = int((target - datetime.fromisoformat(newest)).total_seconds())
            conn.execute("BEGIN IMMEDIATE")
            # Whole seconds: the text keeps its microseconds and its fixed width.
            conn.execute(
                "UPDATE events SET at_utc = strftime('%Y-%m-%dT%H:%M:%S', at_utc, ?) "
                "|| substr(at_utc, 20)",
                (f"{shift_s:+d} seconds",),
            )
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        oldest, newest = conn.execute("SELECT min(at_utc), max(at_utc) FROM events").fetchone()
    finally:
        conn.close()
    now = datetime.now(UTC)
    with Store.open(db, boot_id="load-bench") as store:
        for name, role in ACCOUNTS:
            add_user(store, name, role=role, password=PASSWORD, at=now)
    load_or_create_key(settings.key_path)
    return {
        "rows": rows,
        "oldest_utc": oldest,
        "newest_utc": newest,
        "prepare_s": time.perf_counter() - start,
        "db_mb": db.stat().st_size / 1e6,
    }


# --------------------------------------------------------------------------- HTTP clients


@dataclass(frozen=True)
class Sample:
    endpoint: str
    start_s: float
    """Seconds since the recorder's origin."""
    ms: float
    status: int
    """0 when the request failed without an HTTP status."""
    error: str = ""


class Recorder:
    """Every request's timing, from every thread."""

    def __init__(self) -> None:
        self.origin = time.perf_counter()
        self.origin_mono = time.monotonic()
        """The same moment on the monotonic clock that every process shares (Linux)."""
        self._lock = threading.Lock()
        self.samples: list[Sample] = []

    def now_s(self) -> float:
        return time.perf_counter() - self.origin

    def add(self, sample: Sample) -> None:
        with self._lock:
            self.samples.append(sample)


@dataclass
class Reply:
    status: int
    body: bytes = b""
    ms: float = 0.0
    ttfb_ms: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400 and not self.error


class HttpClient:
    """One browser tab: one keep-alive connection, its own cookies."""

    def __init__(self, port: int, recorder: Recorder, *, timeout_s: float = HTTP_TIMEOUT_S):
        self.port = port
        self.recorder = recorder
        self.timeout_s = timeout_s
        self.cookies: dict[str, str] = {}
        self.reconnects = 0
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method: str,
        path: str,
        endpoint: str,
        *,
        form: dict[str, str] | None = None,
        sink: Callable[[bytes], None] | None = None,
    ) -> Reply:
        """Send one request and read the whole answer (into ``sink`` if given).

        A keep-alive connection the server closed while idle is opened again
        once, as a browser does, and counted in ``reconnects``.
        """
        for attempt in (0, 1):
            fresh = self._conn is None
            if self._conn is None:
                self._conn = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=self.timeout_s
                )
            start_s = self.recorder.now_s()
            start = time.perf_counter()
            try:
                reply = self._send(self._conn, method, path, form, sink, start)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if attempt == 0 and not fresh and sink is None:
                    self.reconnects += 1
                    continue
                reply = Reply(0, ms=(time.perf_counter() - start) * 1000, error=repr(exc))
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                reply = Reply(0, ms=(time.perf_counter() - start) * 1000, error=repr(exc))
            self.recorder.add(Sample(endpoint, start_s, reply.ms, reply.status, reply.error))
            return reply
        raise AssertionError("unreachable")

    def _send(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        path: str,
        form: dict[str, str] | None,
        sink: Callable[[bytes], None] | None,
        start: float,
    ) -> Reply:
        headers = {"Accept-Encoding": "identity", "Accept-Language": "vi"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        ttfb_ms = (time.perf_counter() - start) * 1000
        self._take_cookies(response.msg.get_all("Set-Cookie") or [])
        if sink is None:
            data = response.read()
        else:
            data = b""
            while chunk := response.read(CHUNK_BYTES):
                sink(chunk)
        if response.will_close:
            self.close()
        return Reply(response.status, data, (time.perf_counter() - start) * 1000, ttfb_ms)

    def _take_cookies(self, headers: Iterable[str]) -> None:
        for header in headers:
            first, _, attributes = header.partition(";")
            name, _, value = first.strip().partition("=")
            expired = "max-age=0" in attributes.lower() or "1970" in attributes
            if expired or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    def log_in(self, name: str, password: str) -> None:
        page = self.request("GET", "/login", ENDPOINT_LOGIN_PAGE)
        match = re.search(rb'name="csrf-token" content="([^"]+)"', page.body)
        if not page.ok or match is None:
            raise LoadError(f"no login page: {page.status} {page.error}")
        token = match.group(1).decode("ascii")
        reply = self.request(
            "POST",
            "/login",
            ENDPOINT_LOGIN,
            form={"name": name, "password": password, "csrf_token": token, "next": ""},
        )
        if reply.status != 302:
            raise LoadError(f"login as {name} answered {reply.status} {reply.error}")


_CURSOR = re.compile(rb'id="live-events" data-cursor="(\d+)"')


@dataclass
class ClientResult:
    """One dashboard client's live feed, to check for gaps and repeats."""

    index: int
    account: str
    initial_cursor: int | None = None
    final_cursor: int | None = None
    received: list[tuple[int, str]] = field(default_factory=list)
    """(cursor, event id) of every event the live feed delivered, in order."""
    error: str = ""
    reconnects: int = 0


def dashboard_client(
    result: ClientResult,
    *,
    port: int,
    config: LoadConfig,
    recorder: Recorder,
    ready: threading.Event,
    go: threading.Event,
    stop: threading.Event,
) -> None:
    """Log in, load the dashboard, then poll the live feed until ``stop``, then drain it."""
    client = HttpClient(port, recorder)
    rng = random.Random(config.seed * 1000 + result.index)
    try:
        client.log_in(result.account, PASSWORD)
        page = client.request("GET", "/", ENDPOINT_DASHBOARD)
        match = _CURSOR.search(page.body)
        if not page.ok or match is None:
            raise LoadError(f"dashboard answered {page.status} {page.error}")
        cursor = int(match.group(1))
        result.initial_cursor = cursor
    except LoadError as exc:
        result.error = str(exc)
        ready.set()
        client.close()
        return
    ready.set()
    go.wait()
    next_page_s = recorder.now_s() + rng.uniform(0, config.page_every_s)

    def poll() -> int:
        """One poll; the number of events it delivered (-1 on failure)."""
        nonlocal cursor
        reply = client.request("GET", f"/api/live?after={cursor}", ENDPOINT_LIVE)
        if not reply.ok:
            return -1
        data = json.loads(reply.body)
        for event in data["events"]:
            result.received.append((int(event["cursor"]), str(event["id"])))
        cursor = int(data["cursor"])
        return len(data["events"])

    # Spread the clients' first polls over one interval, as page loads would be.
    stop.wait(rng.uniform(0, config.poll_s))
    while not stop.is_set():
        poll()
        if recorder.now_s() >= next_page_s:
            client.request("GET", "/", ENDPOINT_DASHBOARD)
            next_page_s += config.page_every_s
        stop.wait(config.poll_s)
    # The kiosk has stopped: take what is left in the feed.
    for _ in range(1000):
        delivered = poll()
        if delivered == 0:
            break
    result.final_cursor = cursor
    result.reconnects = client.reconnects
    client.close()


@dataclass
class ExportResult:
    fmt: str
    start_s: float = 0.0
    end_s: float = 0.0
    status: int = 0
    bytes: int = 0
    rows: int | None = None
    ttfb_s: float = 0.0
    total_s: float = 0.0
    error: str = ""
    check: str = ""


def exporter(
    results: list[ExportResult],
    *,
    port: int,
    config: LoadConfig,
    recorder: Recorder,
    work: Path,
    ready: threading.Event,
    go: threading.Event,
    done: threading.Event,
) -> None:
    """A manager downloading the whole log: CSV, then XLSX."""
    client = HttpClient(port, recorder, timeout_s=EXPORT_TIMEOUT_S)
    try:
        client.log_in(MANAGER, PASSWORD)
    except LoadError as exc:
        results.append(ExportResult("login", error=str(exc)))
        client.close()
        ready.set()
        done.set()
        return
    ready.set()
    go.wait()
    time.sleep(config.baseline_s)
    try:
        if config.csv:
            results.append(_download_csv(client, recorder))
        if config.xlsx:
            results.append(_download_xlsx(client, recorder, work / "export.xlsx"))
    finally:
        client.close()
        done.set()


def _download_csv(client: HttpClient, recorder: Recorder) -> ExportResult:
    result = ExportResult("csv", start_s=recorder.now_s())
    newlines = 0

    def sink(chunk: bytes) -> None:
        nonlocal newlines
        result.bytes += len(chunk)
        newlines += chunk.count(b"\n")

    reply = client.request("GET", "/export.csv", ENDPOINT_CSV, sink=sink)
    result.end_s = recorder.now_s()
    result.status, result.error = reply.status, reply.error
    result.ttfb_s, result.total_s = reply.ttfb_ms / 1000, reply.ms / 1000
    # One line per event after the header (no field of these rows holds a line break).
    result.rows = newlines - 1 if reply.ok else None
    return result


def _download_xlsx(client: HttpClient, recorder: Recorder, path: Path) -> ExportResult:
    result = ExportResult("xlsx", start_s=recorder.now_s())
    with path.open("wb") as out:

        def sink(chunk: bytes) -> None:
            result.bytes += len(chunk)
            out.write(chunk)

        reply = client.request("GET", "/export.xlsx", ENDPOINT_XLSX, sink=sink)
    result.end_s = recorder.now_s()
    result.status, result.error = reply.status, reply.error
    result.ttfb_s, result.total_s = reply.ttfb_ms / 1000, reply.ms / 1000
    return result


def count_xlsx_rows(path: Path) -> int:
    """Data rows in every worksheet of a workbook (header rows not counted)."""
    rows = 0
    with zipfile.ZipFile(path) as workbook:
        sheets = [n for n in workbook.namelist() if n.startswith("xl/worksheets/sheet")]
        for name in sheets:
            count, tail = 0, b""
            with workbook.open(name) as sheet:
                while chunk := sheet.read(1 << 20):
                    data = tail + chunk
                    count += data.count(b"<row ")
                    tail = data[-4:]
            rows += count - 1
    return rows


# --------------------------------------------------------------------------- processes


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    total = sum(values[:8])  # guest time is already in user
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


def git_state() -> str:
    """The commit the code was run from, and whether the working tree differed from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown"
    changed = git("status", "--porcelain", "--untracked-files=no")
    return f"{commit} (working tree modified)" if changed else commit


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env() -> dict[str, str]:
    """This environment without GATEKIOSK_ overrides: the config file decides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEKIOSK_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def gatekiosk_command() -> list[str]:
    script = Path(sys.executable).parent / "gatekiosk"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from kiosk.cli import main; main()"]


def start_web(config_path: Path, work: Path) -> subprocess.Popen[bytes]:
    with (work / "web.out").open("wb") as out, (work / "web.log").open("wb") as err:
        return subprocess.Popen(
            [*gatekiosk_command(), "web", "--config", str(config_path)],
            stdout=out,
            stderr=err,
            cwd=ROOT,
            env=child_env(),
        )


def start_kiosk(work: Path) -> subprocess.Popen[bytes]:
    with (work / "kiosk.log").open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.load", "--kiosk-child", str(work)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=ROOT,
            env=child_env(),
        )


def wait_for(what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while not ready():
        if proc.poll() is not None:
            raise LoadError(f"the {what} exited with status {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise LoadError(f"the {what} was not ready within 120 s")
        time.sleep(0.1)


def web_answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/login")
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def stop_process(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then wait; SIGKILL if it does not end in time (reported as -9)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -9


def log_problems(path: Path, limit: int = 20) -> list[str]:
    """Lines of a process's log at ERROR or above, and tracebacks."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    found = [
        line for line in lines if " ERROR " in line or " CRITICAL " in line or "Traceback" in line
    ]
    return found[:limit]


# --------------------------------------------------------------------------- accounting


@dataclass(frozen=True)
class Accounting:
    shown: int
    reached_scanner: int
    read: int
    recorded: int
    never_reached: list[int]
    not_read: list[int]
    lost: list[int]
    duplicated: dict[int, int]
    unexpected_events: int
    events: int


def account_presentations(
    *,
    shown: int,
    frames_per_visitor: dict[int, int],
    visitors_read: set[int],
    event_visitors: Sequence[int | None],
) -> Accounting:
    """Shown presentations against the events recorded for them.

    ``event_visitors`` holds, per event the kiosk's gate recorded, the visitor
    its subject hash belongs to (None: none of the presentations).
    """
    per_visitor = collections.Counter(k for k in event_visitors if k is not None)
    unexpected = sum(1 for k in event_visitors if k is None or k >= shown)
    visitors = range(shown)
    return Accounting(
        shown=shown,
        reached_scanner=sum(1 for k in visitors if frames_per_visitor.get(k, 0) > 0),
        read=sum(1 for k in visitors if k in visitors_read),
        recorded=sum(1 for k in visitors if per_visitor[k] > 0),
        never_reached=[k for k in visitors if frames_per_visitor.get(k, 0) == 0],
        not_read=[k for k in visitors if frames_per_visitor.get(k, 0) and k not in visitors_read],
        lost=[k for k in visitors if k in visitors_read and per_visitor[k] == 0],
        duplicated={k: n for k, n in per_visitor.items() if n > 1},
        unexpected_events=unexpected,
        events=len(event_visitors),
    )


@dataclass(frozen=True)
class FeedCheck:
    expected: int
    delivered: int
    missing: int
    repeated: int
    out_of_order: int
    foreign: int


def check_feed(
    received: Sequence[tuple[int, str]],
    *,
    initial_cursor: int,
    final_cursor: int,
    log: Sequence[tuple[int, str]],
) -> FeedCheck:
    """One client's live feed against the log's (rowid, event id) pairs: every event
    recorded after the client's first cursor, up to its last, exactly once, in order."""
    expected = {event_id for rowid, event_id in log if initial_cursor < rowid <= final_cursor}
    ids = [event_id for _, event_id in received]
    counts = collections.Counter(ids)
    cursors = [cursor for cursor, _ in received]
    return FeedCheck(
        expected=len(expected),
        delivered=len(ids),
        missing=len(expected - set(ids)),
        repeated=sum(n - 1 for n in counts.values() if n > 1),
        out_of_order=sum(1 for a, b in itertools.pairwise(cursors) if b <= a),
        foreign=len(set(ids) - expected),
    )


def stats(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "median": None, "p99": None, "max": None}
    array = np.asarray(values, dtype=float)
    return {
        "count": len(values),
        "median": float(np.median(array)),
        "p99": float(np.percentile(array, 99)),
        "max": float(array.max()),
    }


def endpoint_table(samples: Sequence[Sample], *, since_s: float = -math.inf) -> dict[str, Any]:
    by_endpoint: dict[str, list[Sample]] = collections.defaultdict(list)
    for sample in samples:
        if sample.start_s >= since_s:
            by_endpoint[sample.endpoint].append(sample)
    table = {}
    for endpoint, group in sorted(by_endpoint.items()):
        good = [s.ms for s in group if 200 <= s.status < 400 and not s.error]
        errors = [s for s in group if not (200 <= s.status < 400) or s.error]
        table[endpoint] = {
            **stats(good),
            "requests": len(group),
            "errors": len(errors),
            "error_examples": sorted({f"{s.status} {s.error}".strip() for s in errors})[:5],
        }
    return table


def window_of(start_s: float, exports: Sequence[ExportResult]) -> str:
    for export in exports:
        if export.fmt in ("csv", "xlsx") and export.start_s <= start_s < export.end_s:
            return WINDOW_CSV if export.fmt == "csv" else WINDOW_XLSX
    return WINDOW_NONE


def live_beside_pages(samples: Sequence[Sample]) -> dict[str, Any]:
    """``/api/live`` times split by whether the poll overlapped a dashboard page being
    served: the web shares one database connection between its threads."""
    pages = sorted(
        (s.start_s, s.start_s + s.ms / 1000) for s in samples if s.endpoint == ENDPOINT_DASHBOARD
    )
    beside: list[float] = []
    alone: list[float] = []
    for s in samples:
        if s.endpoint != ENDPOINT_LIVE or s.error or not 200 <= s.status < 400:
            continue
        end_s = s.start_s + s.ms / 1000
        overlaps = any(start < end_s and s.start_s < stop for start, stop in pages)
        (beside if overlaps else alone).append(s.ms)
    return {"while a dashboard page was served": stats(beside), "otherwise": stats(alone)}


# --------------------------------------------------------------------------- the run


def run_load(config: LoadConfig, work: Path) -> dict[str, Any]:
    """Set up, run the load, take everything down, and return the report's data."""
    from kiosk.config import load_settings
    from kiosk.privacy import load_or_create_key, subject_hash

    port = free_port()
    config_path = write_config(work, fps=config.fps, port=port)
    settings = load_settings(config_path, env={})
    print(f"database: {config.rows:,} events ...", file=sys.stderr)
    database = prepare_database(settings, config.rows, seed=config.seed)
    plan = Plan(
        fps=config.fps,
        lead_s=config.lead_s,
        show_s=config.show_s,
        gap_s=config.gap_s,
        count=math.ceil((config.duration_s + SCHEDULE_SLACK_S) / (config.show_s + config.gap_s)),
        seed=config.seed,
    )
    (work / "plan.json").write_text(json.dumps(asdict(plan)), encoding="utf-8")
    key = load_or_create_key(settings.key_path)
    visitor_of_hash = {
        subject_hash(key, f"person:{plan.id_number(k)}"): k for k in range(plan.count)
    }

    environment = {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "git": git_state(),
    }
    print("starting the web and the kiosk ...", file=sys.stderr)
    web = start_web(config_path, work)
    kiosk: subprocess.Popen[bytes] | None = None
    recorder = Recorder()
    stop, go, export_done = threading.Event(), threading.Event(), threading.Event()
    threads: list[threading.Thread] = []
    clients: list[ClientResult] = []
    exports: list[ExportResult] = []
    try:
        wait_for("admin web", lambda: web_answers(port), web)
        kiosk = start_kiosk(work)
        wait_for("kiosk", (work / "kiosk.ready").exists, kiosk)
        readies = []
        for i in range(config.clients):
            result = ClientResult(i, ACCOUNTS[i % 2][0])
            clients.append(result)
            ready = threading.Event()
            readies.append(ready)
            threads.append(
                threading.Thread(
                    target=dashboard_client,
                    args=(result,),
                    kwargs={
                        "port": port,
                        "config": config,
                        "recorder": recorder,
                        "ready": ready,
                        "go": go,
                        "stop": stop,
                    },
                    name=f"client-{i}",
                    daemon=True,
                )
            )
        export_ready = threading.Event()
        readies.append(export_ready)
        export_thread = threading.Thread(
            target=exporter,
            args=(exports,),
            kwargs={
                "port": port,
                "config": config,
                "recorder": recorder,
                "work": work,
                "ready": export_ready,
                "go": go,
                "done": export_done,
            },
            name="exporter",
            daemon=True,
        )
        threads.append(export_thread)
        for thread in threads:
            thread.start()
        for ready in readies:
            ready.wait(timeout=300)
        failed_logins = [c.error for c in clients if c.error]
        if failed_logins:
            raise LoadError(f"{len(failed_logins)} clients could not start: {failed_logins[0]}")
        print(f"load: {config.clients} clients, exports, kiosk ...", file=sys.stderr)
        cpu_before = {"web": cpu_seconds(web.pid), "kiosk": cpu_seconds(kiosk.pid)}
        own_before = resource.getrusage(resource.RUSAGE_SELF)
        busy_before, total_before = machine_busy_s()
        load_start_s = recorder.now_s()
        go.set()
        deadline = time.monotonic() + config.duration_s
        while time.monotonic() < deadline or not export_done.is_set():
            if kiosk.poll() is not None or web.poll() is not None:
                break  # reported below
            if time.monotonic() > deadline + EXPORT_TIMEOUT_S:
                break
            time.sleep(0.2)
        load_s = recorder.now_s() - load_start_s
        cpu_after = {
            name: cpu_seconds(proc.pid) if proc.poll() is None else math.nan
            for name, proc in (("web", web), ("kiosk", kiosk))
        }
        own_after = resource.getrusage(resource.RUSAGE_SELF)
        busy_after, total_after = machine_busy_s()
        print("stopping the kiosk ...", file=sys.stderr)
        kiosk_status = stop_process(kiosk)
        stop.set()
        for thread in threads:
            thread.join(timeout=EXPORT_TIMEOUT_S if thread is export_thread else 120)
    finally:
        stop.set()
        go.set()
        if kiosk is not None and kiosk.poll() is None:
            stop_process(kiosk)
        web_status = stop_process(web)
    environment["load_average_end"] = os.getloadavg()

    # ---------------------------------------------------------------- what happened
    summary = json.loads((work / "kiosk.json").read_text(encoding="utf-8"))
    outcomes = [
        json.loads(line)
        for line in (work / "outcomes.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    conn = sqlite3.connect(f"{settings.db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        kiosk_rows = conn.execute(
            "SELECT rowid, id, subject_hash FROM events WHERE gate_id = ? ORDER BY rowid",
            (GATE_ID,),
        ).fetchall()
        all_after = conn.execute(
            "SELECT rowid, id FROM events WHERE rowid > ? ORDER BY rowid",
            (min((c.initial_cursor or 0) for c in clients) if clients else 0,),
        ).fetchall()
        audits = conn.execute(
            "SELECT actor, detail, row_count FROM audit WHERE action = 'export' ORDER BY id"
        ).fetchall()
        total_events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()

    accounting = account_presentations(
        shown=int(summary["complete_visitors"]),
        frames_per_visitor={int(k): n for k, n in summary["frames_per_visitor"].items()},
        visitors_read=set(summary["visitors_read"]),
        event_visitors=[visitor_of_hash.get(h) for _, _, h in kiosk_rows],
    )
    db_ids = {event_id for _, event_id, _ in kiosk_rows}
    outcome_ids = [o["event_id"] for o in outcomes if o["event_id"] is not None]
    outcomes_check = {
        "outcomes": len(outcomes),
        "without_event": sum(1 for o in outcomes if o["event_id"] is None),
        "not_in_database": len(set(outcome_ids) - db_ids),
        "in_database_without_outcome": len(db_ids - set(outcome_ids)),
        "decisions": dict(collections.Counter(f"{o['decision']} {o['reason']}" for o in outcomes)),
    }
    log_pairs = [(int(rowid), str(event_id)) for rowid, event_id in all_after]
    feeds = []
    for client in clients:
        if client.initial_cursor is None or client.final_cursor is None:
            continue
        feeds.append(
            check_feed(
                client.received,
                initial_cursor=client.initial_cursor,
                final_cursor=client.final_cursor,
                log=log_pairs,
            )
        )
    feed_summary = {
        "clients_checked": len(feeds),
        "events_expected": sum(f.expected for f in feeds),
        "events_delivered": sum(f.delivered for f in feeds),
        "missing": sum(f.missing for f in feeds),
        "repeated": sum(f.repeated for f in feeds),
        "out_of_order": sum(f.out_of_order for f in feeds),
        "foreign": sum(f.foreign for f in feeds),
        "reconnects": sum(c.reconnects for c in clients),
    }

    for export in exports:
        audit = [
            row_count
            for _, detail, row_count in audits
            if json.loads(detail)["format"] == export.fmt
        ]
        audited = audit[0] if audit else None
        if export.fmt == "xlsx" and export.status == 200:
            export.rows = count_xlsx_rows(work / "export.xlsx")
        low, high = config.rows, config.rows + len(kiosk_rows)
        export.check = (
            f"audited rows {audited}; rows received {export.rows}; "
            f"expected {low:,} to {high:,} (the generated rows plus the kiosk's so far)"
        )
        if export.rows is None or audited != export.rows or not low <= export.rows <= high:
            export.error = export.error or "row count does not match"
    (work / "export.xlsx").unlink(missing_ok=True)

    latency = [o["latency_ms"] for o in outcomes if o["visitor"] is not None]
    glass = [o["glass_ms"] for o in outcomes if o["glass_ms"] is not None]
    frames_due = (
        summary["last_index"] - summary["first_index"] + 1
        if summary["last_index"] is not None
        else 0
    )
    samples = [s for s in recorder.samples if s.start_s >= load_start_s]
    windows: dict[str, Any] = {}
    gate_windows: dict[str, Any] = {}
    for name in (WINDOW_NONE, WINDOW_CSV, WINDOW_XLSX):
        chosen = [s for s in samples if window_of(s.start_s, exports) == name]
        if chosen:
            windows[name] = endpoint_table(chosen)
        decided = [
            o["latency_ms"]
            for o in outcomes
            if o["visitor"] is not None
            and window_of(o["signal_mono"] - recorder.origin_mono, exports) == name
        ]
        if decided:
            gate_windows[name] = stats(decided)
    own_cpu = (own_after.ru_utime + own_after.ru_stime) - (
        own_before.ru_utime + own_before.ru_stime
    )
    cpu = {
        "web_s": cpu_after["web"] - cpu_before["web"],
        "kiosk_s": cpu_after["kiosk"] - cpu_before["kiosk"],
        "load_generator_s": own_cpu,
        "machine_busy_s": busy_after - busy_before,
        "machine_total_s": total_after - total_before,
    }
    ours = cpu["web_s"] + cpu["kiosk_s"] + own_cpu
    cpu["others_s"] = max(0.0, cpu["machine_busy_s"] - ours) if not math.isnan(ours) else math.nan
    return {
        "environment": environment,
        "config": asdict(config),
        "database": {**database, "events_after_run": total_events},
        "load_s": load_s,
        "accounting": asdict(accounting),
        "outcomes": outcomes_check,
        "live_feed": feed_summary,
        "gate": {
            "decision_latency_ms": stats(latency),
            "glass_to_signal_ms": stats(glass),
            "decision_latency_ms_by_window": gate_windows,
            "camera_fps_target": config.fps,
            "camera_fps_achieved": (summary["frames_delivered"] - 1) / summary["camera_s"]
            if summary["camera_s"] > 0
            else 0.0,
            "frames_due": frames_due,
            "frames_delivered": summary["frames_delivered"],
            "frames_dropped": frames_due - summary["frames_delivered"],
            "frames_decoded": len(summary["decode_ms"]),
            "decode_ms": stats(summary["decode_ms"]),
            "frame_age_ms": stats(summary["frame_age_ms"]),
            "record_ms": stats(summary["record_ms"]),
            "slowest_decisions": sorted(
                (
                    {k: o[k] for k in ("latency_ms", "age_ms", "decode_ms", "record_ms")}
                    for o in outcomes
                    if o["visitor"] is not None
                ),
                key=lambda o: -o["latency_ms"],
            )[:5],
            "frames_with_code": summary["frames_with_code"],
            "frames_code_read": summary["frames_code_read"],
            "decoder": summary["decoder"],
            "kiosk_run_s": summary["run_s"],
            "kiosk_max_rss_mb": summary["max_rss_mb"],
        },
        "endpoints": endpoint_table(samples),
        "endpoints_by_window": windows,
        "live_beside_pages_no_export": live_beside_pages(
            [s for s in samples if window_of(s.start_s, exports) == WINDOW_NONE]
        ),
        "login_phase": endpoint_table([s for s in recorder.samples if s.start_s < load_start_s]),
        "live_polls_per_s": sum(1 for s in samples if s.endpoint == ENDPOINT_LIVE) / load_s
        if load_s > 0
        else 0.0,
        "exports": [asdict(e) for e in exports],
        "cpu": cpu,
        "processes": {
            "kiosk_exit": kiosk_status,
            "web_exit": web_status,
            "kiosk_log_problems": log_problems(work / "kiosk.log"),
            "web_log_problems": log_problems(work / "web.log"),
        },
    }


# --------------------------------------------------------------------------- the report


def problems(report: dict[str, Any]) -> list[str]:
    """What went wrong, in words; empty for a clean run."""
    found = []
    acc = report["accounting"]
    if acc["lost"]:
        found.append(f"{len(acc['lost'])} presentations read but not recorded: {acc['lost'][:10]}")
    if acc["duplicated"]:
        found.append(f"presentations recorded more than once: {acc['duplicated']}")
    if acc["unexpected_events"]:
        found.append(f"{acc['unexpected_events']} events match no shown presentation")
    if acc["not_read"]:
        found.append(f"{len(acc['not_read'])} presentations never read: {acc['not_read'][:10]}")
    if acc["never_reached"]:
        found.append(f"{len(acc['never_reached'])} presentations had no frame reach the scanner")
    out = report["outcomes"]
    for name in ("without_event", "not_in_database", "in_database_without_outcome"):
        if out[name]:
            found.append(f"kiosk outcomes vs database: {name.replace('_', ' ')} = {out[name]}")
    feed = report["live_feed"]
    for name in ("missing", "repeated", "out_of_order", "foreign"):
        if feed[name]:
            found.append(f"live feed: {feed[name]} events {name.replace('_', ' ')}")
    for endpoint, row in report["endpoints"].items():
        if row["errors"]:
            found.append(f"{endpoint}: {row['errors']} errors, e.g. {row['error_examples']}")
    for export in report["exports"]:
        if export["error"]:
            found.append(f"{export['fmt']} export: {export['error']} ({export['check']})")
    processes = report["processes"]
    if processes["kiosk_exit"] != 0:
        found.append(f"kiosk exited with status {processes['kiosk_exit']}")
    for name in ("kiosk_log_problems", "web_log_problems"):
        found += [f"{name.split('_')[0]} log: {line}" for line in processes[name]]
    return found


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def render(report: dict[str, Any]) -> str:
    env, cfg, gate = report["environment"], report["config"], report["gate"]
    acc, feed, cpu = report["accounting"], report["live_feed"], report["cpu"]
    machine_share = cpu["others_s"] / cpu["machine_total_s"] if cpu["machine_total_s"] else 0.0
    load_s = max(report["load_s"], 1e-9)
    out = [
        "# gatekiosk load benchmark",
        "",
        f"Run {env['date_utc']} on {env['machine']} with {env['cpus']} CPUs, Python "
        f"{env['python']}, SQLite {env['sqlite']}, code at {env['git']}; load average at start "
        f"{', '.join(f'{v:.2f}' for v in env['load_average_start'])}, at end "
        f"{', '.join(f'{v:.2f}' for v in env['load_average_end'])}. Command: "
        f"`{report['command']}`. Set-up and method: the docstring of `bench/load.py`.",
        "",
        f"All at once for {report['load_s']:.0f} s: the kiosk process scanning the synthetic "
        f"camera at {cfg['fps']:.0f} fps (a new visitor every {cfg['show_s'] + cfg['gap_s']:g} s, "
        f"each in view {cfg['show_s']:g} s), {cfg['clients']} logged-in dashboard clients "
        f"polling `/api/live` every {cfg['poll_s']:g} s and reloading the dashboard every "
        f"{cfg['page_every_s']:g} s, and a manager downloading the whole log "
        f"({report['database']['rows']:,} events plus the kiosk's) through the web"
        + (" as CSV then XLSX" if cfg["xlsx"] else " as CSV")
        + f", starting after {cfg['baseline_s']:g} s.",
        "",
        f"Other processes on the machine used {cpu['others_s']:.0f} CPU-seconds "
        f"({machine_share:.0%} of its {env['cpus']} CPUs' time) during the run; this run's "
        f"web used {cpu['web_s']:.0f} ({cpu['web_s'] / load_s:.0%} of one CPU), the kiosk "
        f"{cpu['kiosk_s']:.0f} ({cpu['kiosk_s'] / load_s:.0%}), the clients "
        f"{cpu['load_generator_s']:.0f} ({cpu['load_generator_s'] / load_s:.0%}).",
        "",
        "## Events: none lost, none duplicated?",
        "",
        "| presentations shown | reached the scanner | read | recorded | lost (read, not "
        "recorded) | duplicated | never read | events matching nothing |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {acc['shown']} | {acc['reached_scanner']} | {acc['read']} | {acc['recorded']} | "
        f"{len(acc['lost'])} | {len(acc['duplicated'])} | {len(acc['not_read'])} | "
        f"{acc['unexpected_events']} |",
        "",
        f"Kiosk outcomes: {report['outcomes']['outcomes']} "
        f"({', '.join(f'{k}: {v}' for k, v in report['outcomes']['decisions'].items())}); "
        f"without an event {report['outcomes']['without_event']}, not in the database "
        f"{report['outcomes']['not_in_database']}, in the database without an outcome "
        f"{report['outcomes']['in_database_without_outcome']}.",
        "",
        f"Live feed: {feed['clients_checked']} clients, {feed['events_delivered']} events "
        f"delivered of {feed['events_expected']} expected (each client: every event "
        f"recorded after its first cursor); missing {feed['missing']}, repeated "
        f"{feed['repeated']}, out of order {feed['out_of_order']}, foreign {feed['foreign']}; "
        f"keep-alive reconnects {feed['reconnects']}.",
        "",
        "## The gate",
        "",
        "| | median | p99 | max | n |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, key in (
        ("decision latency, capture of the frame read to signal (ms)", "decision_latency_ms"),
        ("first frame showing the code to signal (ms)", "glass_to_signal_ms"),
        ("decode time per frame (ms)", "decode_ms"),
        ("frame capture to hand-over to the scanner, per frame (ms)", "frame_age_ms"),
        ("recording an event: commit with fsync (ms)", "record_ms"),
    ):
        s = gate[key]
        out.append(
            f"| {label} | {_ms(s['median'])} | {_ms(s['p99'])} | {_ms(s['max'])} | {s['count']} |"
        )
    read_rate = (
        gate["frames_code_read"] / gate["frames_with_code"] if gate["frames_with_code"] else 0
    )
    out += [
        "",
        f"Camera: {gate['camera_fps_achieved']:.1f} fps achieved of "
        f"{gate['camera_fps_target']:.0f} "
        f"({gate['frames_delivered']:,} frames delivered of {gate['frames_due']:,} due, "
        f"{gate['frames_dropped']:,} dropped because the loop was busy); "
        f"{gate['frames_decoded']:,} frames decoded ({gate['decoder']}); the code read in "
        f"{gate['frames_code_read']:,} of the {gate['frames_with_code']:,} decoded frames "
        f"showing one ({read_rate:.1%}). The synthetic camera renders each frame in the "
        "kiosk's own loop, so its cost is in these figures (a real camera's is not). The gate "
        "alone, on an idle machine: `make bench`, section 3 of bench/report.md.",
        "",
        "The slowest decisions, where the time went (ms): "
        + "; ".join(
            f"{o['latency_ms']:.0f} = frame hand-over {o['age_ms']:.0f} + decode "
            f"{o['decode_ms']:.0f} + record {o['record_ms'] or 0:.0f} + the rest "
            f"{o['latency_ms'] - o['age_ms'] - o['decode_ms'] - (o['record_ms'] or 0):.0f}"
            for o in gate["slowest_decisions"]
        )
        + ".",
        "",
        "Decision latency by what the web was doing (ms):",
        "",
        "| window | median | p99 | max | n |",
        "|---|---:|---:|---:|---:|",
    ]
    for window, s in gate["decision_latency_ms_by_window"].items():
        out.append(
            f"| {window} | {_ms(s['median'])} | {_ms(s['p99'])} | {_ms(s['max'])} | {s['count']} |"
        )
    out += [
        "",
        "## The web (client-side: request sent to last byte read, ms)",
        "",
        "| endpoint | requests | errors | median | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for endpoint, row in report["endpoints"].items():
        if endpoint in (ENDPOINT_CSV, ENDPOINT_XLSX):
            continue
        out.append(
            f"| {endpoint} | {row['requests']} | {row['errors']} | {_ms(row['median'])} | "
            f"{_ms(row['p99'])} | {_ms(row['max'])} |"
        )
    out += [
        "",
        f"`/api/live` answered {report['live_polls_per_s']:.1f} polls per second in all.",
        "",
        "By what else was running:",
        "",
        "| window | endpoint | requests | errors | median | p99 | max |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for window, table in report["endpoints_by_window"].items():
        for endpoint in (ENDPOINT_LIVE, ENDPOINT_DASHBOARD):
            row = table.get(endpoint)
            if row:
                out.append(
                    f"| {window} | {endpoint} | {row['requests']} | {row['errors']} | "
                    f"{_ms(row['median'])} | {_ms(row['p99'])} | {_ms(row['max'])} |"
                )
    out += [
        "",
        "`/api/live` with no export running, by whether a dashboard page was being served "
        "at the same time:",
        "",
        "| | median | p99 | max | n |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, s in report["live_beside_pages_no_export"].items():
        out.append(
            f"| {label} | {_ms(s['median'])} | {_ms(s['p99'])} | {_ms(s['max'])} | {s['count']} |"
        )
    out += [
        "",
        "## Exports through the web, under the load",
        "",
        "| format | status | rows | MB | first byte (s) | total (s) | check |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for e in report["exports"]:
        rows = "–" if e["rows"] is None else f"{e['rows']:,}"
        out.append(
            f"| {e['fmt']} | {e['status']} | {rows} | {e['bytes'] / 1e6:.0f} | "
            f"{e['ttfb_s']:.1f} | {e['total_s']:.1f} | {e['check']} |"
        )
    found = report["problems"]
    out += ["", "## Problems", ""]
    out += [f"- {p}" for p in found] if found else ["None found."]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = LoadConfig()
    parser.add_argument("--duration", type=float, default=defaults.duration_s, help="seconds")
    parser.add_argument("--rows", type=int, default=defaults.rows, help="events in the database")
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--fps", type=float, default=defaults.fps)
    parser.add_argument("--show-s", type=float, default=defaults.show_s)
    parser.add_argument("--gap-s", type=float, default=defaults.gap_s)
    parser.add_argument("--poll-s", type=float, default=defaults.poll_s)
    parser.add_argument("--page-every-s", type=float, default=defaults.page_every_s)
    parser.add_argument("--baseline-s", type=float, default=defaults.baseline_s)
    parser.add_argument("--no-csv", action="store_true")
    parser.add_argument("--no-xlsx", action="store_true")
    parser.add_argument("--dir", type=Path, help="parent of the work folder (default: temp)")
    parser.add_argument("--report-dir", type=Path, default=HERE)
    parser.add_argument("--kiosk-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kiosk_child:
        kiosk_child(args.kiosk_child)
        return
    config = LoadConfig(
        duration_s=args.duration,
        rows=args.rows,
        clients=args.clients,
        fps=args.fps,
        show_s=args.show_s,
        gap_s=args.gap_s,
        poll_s=args.poll_s,
        page_every_s=args.page_every_s,
        baseline_s=args.baseline_s,
        csv=not args.no_csv,
        xlsx=not args.no_xlsx,
    )
    with tempfile.TemporaryDirectory(prefix="load-bench-", dir=args.dir) as work:
        report = run_load(config, Path(work))
    report["command"] = "python -m bench.load " + " ".join(sys.argv[1:])
    report["problems"] = problems(report)
    text = render(report)
    args.report_dir.mkdir(parents=True, exist_ok=True)
    (args.report_dir / f"{REPORT_NAME}.json").write_text(
        json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8"
    )
    (args.report_dir / f"{REPORT_NAME}.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main()
