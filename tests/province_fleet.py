"""Several hubs, each with its real ``gatekiosk uplink`` process, fed events
as ``gatekiosk hub`` takes them from gates; and the books kept at the end:
every event at the province exactly once, the hourly counts equal to the
events'. Shared by tests/test_province_faults.py and the province benchmarks.

Example::

    hubs = [Hub.create(tmp_path / site, site, province.add_site(site)) for site in sites]
    for hub in hubs:
        hub.start()
    feeder = Feeder(hubs, per_tick=10, tick_s=0.05, limit=1500, clock=SystemClock())
    feeder.start()
    ...faults...
    feeder.finish()
    wait_until(lambda: all(hub.pending() == 0 for hub in hubs))
    assert books(province.query, hubs).clean
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from kiosk.clock import Clock, SystemClock
from kiosk.store import Store
from tests.province_hub import ingest, make_events

READY_LINE = "uploading to the province"
"""What ``gatekiosk uplink`` prints once its signal handlers are in place."""

Query = Callable[[str, tuple[object, ...]], list[tuple[object, ...]]]


@dataclass
class Hub:
    """One site's hub: its database (``folder/gatekiosk.db``), its configuration
    with ``[uplink]`` settings, and its ``gatekiosk uplink`` process."""

    site_id: str
    folder: Path
    config: Path
    ids: list[str] = field(default_factory=list)
    """Every event id ingested here, in order."""
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    """How many times :meth:`start` ran: as many ready lines are due in ``uplink.err``."""

    @classmethod
    def create(cls, folder: Path, site_id: str, dsn: str, *, batch: int = 500) -> Hub:
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "hub.toml"
        config.write_text(
            f'[gate]\ndata_dir = "{folder}"\n[uplink]\ndsn = "{dsn}"\nbatch = {batch}\n',
            encoding="utf-8",
        )
        with Store.open(folder / "gatekiosk.db", boot_id=f"hub-{site_id}"):
            pass
        return cls(site_id, folder, config)

    @property
    def db(self) -> Path:
        return self.folder / "gatekiosk.db"

    def start(self) -> None:
        """Start ``gatekiosk uplink`` (its errors appended to ``uplink.err``)."""
        with (self.folder / "uplink.err").open("ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kiosk.cli", "uplink", "--config", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self.starts += 1

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would; then reap it."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (after SIGCONT, in case it was stopped); its exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            # A process restarted a moment ago may still be importing, before
            # its SIGTERM handler exists: a stop then would be a kill.
            wait_until(self._ready_or_gone, SystemClock(), timeout_s=timeout_s)
            self.process.terminate()
            try:
                return self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return -9
        return int(self.process.returncode)

    def _ready_or_gone(self) -> bool:
        gone = self.process is None or self.process.poll() is not None
        return gone or self.errors().count(READY_LINE) >= self.starts

    def errors(self) -> str:
        path = self.folder / "uplink.err"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def pending(self) -> int:
        """Events the hub still has marked for the province."""
        with sqlite3.connect(self.db, timeout=30) as conn:
            return int(
                conn.execute("SELECT count(*) FROM events WHERE province_pending = 1").fetchone()[0]
            )


class Feeder:
    """A thread ingesting ``per_tick`` events into every hub each ``tick_s``
    seconds, until ``limit`` per hub or :meth:`finish`. Each chunk is one
    gate's batch, as the hub ingests it; each event's time is when it was
    ingested (by ``clock``): the hub's receive time."""

    def __init__(
        self,
        hubs: Sequence[Hub],
        *,
        per_tick: int,
        tick_s: float,
        limit: int,
        clock: Clock,
    ) -> None:
        self._hubs = hubs
        self._per_tick = per_tick
        self._tick_s = tick_s
        self._limit = limit
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        """Stop feeding and wait for the chunk in hand to be committed."""
        self._stop.set()
        self._thread.join(60)
        if self.error is not None:
            raise self.error

    @property
    def fed(self) -> int:
        return sum(len(hub.ids) for hub in self._hubs)

    def _run(self) -> None:
        stores = {
            hub.site_id: Store.open(hub.db, boot_id=f"hub-{hub.site_id}") for hub in self._hubs
        }
        try:
            gate = 0
            while not self._stop.is_set():
                started = self._clock.monotonic()
                for hub in self._hubs:
                    room = self._limit - len(hub.ids)
                    if room <= 0:
                        continue
                    events = make_events(
                        min(self._per_tick, room),
                        gate_id=f"gate-{gate % 3 + 1}",
                        start=self._clock.now(),
                        step_s=0.001,
                    )
                    ingest(stores[hub.site_id], events)
                    hub.ids.extend(e.id for e in events)
                gate += 1
                if all(len(hub.ids) >= self._limit for hub in self._hubs):
                    return
                rest = self._tick_s - (self._clock.monotonic() - started)
                if rest > 0:
                    self._stop.wait(rest)
        except BaseException as exc:  # re-raised by finish()
            self.error = exc
        finally:
            for store in stores.values():
                store.close()


@dataclass(frozen=True)
class Books:
    """The province's events against the hubs': lost, doubled, foreign; and
    the hourly counts the trigger kept against a count of the events."""

    sent: int
    at_province: int
    lost: int
    doubled: int
    foreign: int
    hourly_mismatches: int

    @property
    def clean(self) -> bool:
        return (self.lost, self.doubled, self.foreign, self.hourly_mismatches) == (0, 0, 0, 0)


def books(query: Query, hubs: Sequence[Hub]) -> Books:
    """Compare the province with the hubs (read as the database's owner)."""
    rows = query("SELECT site_id, id, count(*) FROM province.events GROUP BY 1, 2", ())
    held: dict[str, dict[str, int]] = {}
    for site_id, event_id, count in rows:
        held.setdefault(str(site_id), {})[str(event_id)] = int(str(count))
    lost = doubled = foreign = 0
    for hub in hubs:
        there = held.pop(hub.site_id, {})
        expected = set(hub.ids)
        lost += len(expected - set(there))
        foreign += len(set(there) - expected)
        doubled += sum(count - 1 for count in there.values())
    foreign += sum(len(ids) for ids in held.values())
    ((total, distinct),) = query(
        "SELECT count(*), count(DISTINCT (site_id, id)) FROM province.events", ()
    )
    doubled = max(doubled, int(str(total)) - int(str(distinct)))
    mismatches = query(
        """
        WITH counted AS (
            SELECT site_id,
                   date_trunc('hour', at_utc AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS hour,
                   count(*) FILTER (WHERE decision = 'allow' AND direction = 'in') AS entries,
                   count(*) FILTER (WHERE decision = 'allow' AND direction <> 'in') AS exits,
                   count(*) FILTER (WHERE decision <> 'allow') AS denied
            FROM province.events GROUP BY 1, 2)
        SELECT count(*) FROM counted c FULL JOIN province.hourly h USING (site_id, hour)
        WHERE c.entries IS DISTINCT FROM h.entries OR c.exits IS DISTINCT FROM h.exits
           OR c.denied IS DISTINCT FROM h.denied
        """,
        (),
    )
    return Books(
        sent=sum(len(hub.ids) for hub in hubs),
        at_province=int(str(total)),
        lost=lost,
        doubled=doubled,
        foreign=foreign,
        hourly_mismatches=int(str(mismatches[0][0])),
    )


def events_at(query: Query) -> int:
    """How many events the province holds, every site together."""
    return int(str(query("SELECT count(*) FROM province.events", ())[0][0]))


def wait_until(condition: Callable[[], bool], clock: Clock, timeout_s: float = 60.0) -> float:
    """Poll ``condition`` until true; seconds it took. AssertionError after ``timeout_s``."""
    start = clock.monotonic()
    while not condition():
        elapsed = clock.monotonic() - start
        assert elapsed < timeout_s, f"timed out after {timeout_s:g} s"
        clock.sleep(0.05)
    return clock.monotonic() - start


_IN_FLIGHT_SQL = (
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'gatekiosk uplink' "
    "AND state IN ('active', 'idle in transaction') AND (%s::text IS NULL OR usename = %s)"
)


def catch_batch_in_flight(
    dsn: str, clock: Clock, *, role: str | None = None, timeout_s: float = 15.0
) -> bool:
    """Poll the server until an uplink (``role``'s, or any) is inside a
    transaction: a batch being sent. True then, so that a fault injected at
    once lands mid-batch; False if none was seen before the deadline."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = clock.monotonic() + timeout_s
        while clock.monotonic() < deadline:
            row = conn.execute(_IN_FLIGHT_SQL, (role, role)).fetchone()
            if row is not None and int(row[0]) > 0:
                return True
            clock.sleep(0.001)
    return False
