"""A site on this machine for the sync tests and the chaos benchmark: the real
broker (:mod:`tests.mosquitto_fixture`), ``gatekiosk hub`` and ``gatekiosk
sync`` as real processes, real SQLite files, everything on loopback.

Events are recorded through the real :class:`~kiosk.store.Store`, each gate
with a boot id of its own (on one machine the kernel's would be shared).
Waiting is polling with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from kiosk.store import NewEvent, Store
from tests.mosquitto_fixture import HOST, RunningBroker, TestSite

WAIT_S = 60.0


def wait_until(condition: Callable[[], object], timeout_s: float = WAIT_S, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what or condition}")
        time.sleep(0.02)


def synthetic_event(gate_id: str, at: datetime, n: int) -> NewEvent:
    """A plausible event: entries and exits of a few people, some refusals."""
    return NewEvent(
        gate_id=gate_id,
        at=at,
        utc_offset_min=420,
        clock_synced=True,
        direction="in" if n % 2 == 0 else "out",
        decision="allow" if n % 7 else "deny",
        reason="ok" if n % 7 else "expired",
        kind="cccd",
        subject_hash=f"{n % 50:064x}",
        display_name="Nguyễn Văn A",
        masked_id="0010******23",
    )


class SiteRig:
    """The processes and files of a test site in ``folder``."""

    def __init__(self, folder: Path, site: TestSite, broker: RunningBroker) -> None:
        self.folder = folder
        self.site = site
        self.broker = broker
        self.hub_db = folder / "hub-data" / "gatekiosk.db"
        self.hub_stats = folder / "hub-stats.json"
        self.processes: list[subprocess.Popen[bytes]] = []

    # --- files ---------------------------------------------------------------

    def gate_data(self, gate_id: str) -> Path:
        return self.folder / f"{gate_id}-data"

    def gate_db(self, gate_id: str) -> Path:
        return self.gate_data(gate_id) / "gatekiosk.db"

    def gate_config(self, gate_id: str) -> Path:
        """The gate's settings, and its site files as `site join` leaves them."""
        data = self.gate_data(gate_id)
        site_dir = data / "site"
        site_dir.mkdir(parents=True, exist_ok=True)
        files = self.site.gates[gate_id]
        shutil.copy(files.ca, site_dir / "ca.pem")
        shutil.copy(files.certificate, site_dir / "gate.pem")
        shutil.copy(files.key, site_dir / "gate.key")
        os.chmod(site_dir / "gate.key", 0o600)
        path = self.folder / f"{gate_id}.toml"
        path.write_text(
            f'[gate]\nid = "{gate_id}"\ndata_dir = "{data}"\n'
            f'[site]\nhub = "{HOST}:{self.broker.port}"\ndir = "{site_dir}"\n'
        )
        return path

    def hub_config(self) -> Path:
        path = self.folder / "hub.toml"
        path.write_text(
            f'[gate]\nid = "hub"\ndata_dir = "{self.hub_db.parent}"\n'
            f'[site]\nhub = "{HOST}:{self.broker.port}"\ndir = "{self.folder}"\n'
        )
        return path

    # --- processes -----------------------------------------------------------

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log_file = (self.folder / log_name).open("ab")
        env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", os.getcwd())}
        process = subprocess.Popen(
            [sys.executable, "-m", "kiosk.cli", os.environ.get("SITE_LOG_LEVEL", "-v"), *args],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            env=env,
        )
        log_file.close()
        self.processes.append(process)
        return process

    def start_hub(self) -> subprocess.Popen[bytes]:
        config = self.hub_config()
        return self._spawn(
            ["hub", "--config", str(config), "--stats-file", str(self.hub_stats)], "hub.log"
        )

    def start_sync(self, gate_id: str, *, ack_timeout_s: float = 2.0) -> subprocess.Popen[bytes]:
        config = self.gate_config(gate_id)
        return self._spawn(
            ["sync", "--config", str(config), "--ack-timeout-s", str(ack_timeout_s)],
            f"sync-{gate_id}.log",
        )

    def resync(self, since: str) -> subprocess.CompletedProcess[bytes]:
        env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", os.getcwd())}
        command = [sys.executable, "-m", "kiosk.cli", "hub", "resync", "--since", since]
        return subprocess.run(
            [*command, "--config", str(self.hub_config())],
            capture_output=True,
            env=env,
            timeout=60,
            check=False,
        )

    def restart_broker(self, *, kill: bool = True) -> None:
        """SIGKILL the broker (or let it be) and start it again on the same port."""
        if kill:
            self.broker.process.kill()
        self.broker.process.wait()
        for _attempt in range(50):
            fresh = RunningBroker(self.broker.config, self.site, self.broker.log_path)
            if fresh.wait_until_accepting():
                self.broker = fresh
                return
            time.sleep(0.1)  # the port may linger a moment after a SIGKILL
        raise AssertionError("the broker would not start again")

    def log(self, name: str) -> str:
        path = self.folder / name
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        """SIGTERM every process started here (the broker too), then wait for them."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.broker.stop()  # a restarted one is ours to stop; the fixture's own is stopped again

    # --- events --------------------------------------------------------------

    def record(self, gate_id: str, count: int, *, per_transaction: int = 1) -> list[str]:
        """Record ``count`` events at the gate as its kiosk would; their ids."""
        ids: list[str] = []
        self.gate_data(gate_id).mkdir(parents=True, exist_ok=True)
        with Store.open(
            self.gate_db(gate_id), boot_id=f"boot-of-{gate_id}", mark_for_upload=True
        ) as store:
            now = datetime.now(UTC)
            for start in range(0, count, per_transaction):
                n = min(per_transaction, count - start)
                if per_transaction == 1:
                    ids.append(store.record(synthetic_event(gate_id, now, start)).id)
                    continue
                with store.connection.write("record a backlog") as conn:
                    for i in range(n):
                        event = synthetic_event(gate_id, now, start + i)
                        ids.append(store.events.insert(conn, event).id)
        return ids

    def gate_event_ids(self, gate_id: str) -> list[str]:
        return _ids(self.gate_db(gate_id), "SELECT id FROM events")

    def gate_pending(self, gate_id: str, *, up_to_rowid: int | None = None) -> int:
        """Events of the gate not yet acknowledged by the hub (those recorded up
        to ``up_to_rowid`` only: a backlog, while the kiosk keeps recording)."""
        sql = "SELECT id FROM events WHERE upload_pending = 1"
        if up_to_rowid is not None:
            sql += f" AND rowid <= {int(up_to_rowid)}"
        return len(_ids(self.gate_db(gate_id), sql))

    def gate_last_rowid(self, gate_id: str) -> int:
        """The gate's newest event's rowid (0 with none)."""
        rows = _ids(self.gate_db(gate_id), "SELECT coalesce(max(rowid), 0) FROM events")
        return int(rows[0]) if rows else 0

    def site_event_ids(self) -> list[str]:
        return _ids(self.hub_db, "SELECT id FROM events")

    def all_uploaded(self, gate_ids: list[str]) -> bool:
        site = set(self.site_event_ids())
        return all(
            set(self.gate_event_ids(g)) <= site and self.gate_pending(g) == 0 for g in gate_ids
        )


def _ids(path: Path, sql: str) -> list[str]:
    if not path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
            return [row[0] for row in conn.execute(sql)]
    except sqlite3.OperationalError:  # not created or migrated yet
        return []


def account(rig: SiteRig, gate_ids: list[str]) -> tuple[int, int, int]:
    """(recorded at the gates, lost, doubled) comparing ids at the gates and the site."""
    recorded: list[str] = []
    for gate_id in gate_ids:
        recorded += rig.gate_event_ids(gate_id)
    site = rig.site_event_ids()
    lost = len(set(recorded) - set(site))
    doubled = len(site) - len(set(site))
    return len(recorded), lost, doubled
