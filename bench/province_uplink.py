"""How fast a hub's backlog goes up to the province: N events from a site
database to a real PostgreSQL (a temporary cluster on loopback), in events/s.

    PYTHONPATH=. python bench/province_uplink.py --events 600000 --batch 5000

Builds the hub's database first (not timed), then times ``Uplink.drain_once``:
reading the pending rows, COPY, INSERT ... ON CONFLICT DO NOTHING, COMMIT,
marking the rows sent at the hub. Run twice side by side on fresh clusters:
with fsync off (how the test clusters run) and with fsync on (a real
server's durability: every batch's COMMIT waits for its WAL on disk). The
hub's SQLite marks are written as ``gatekiosk uplink`` does.
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kiosk.clock import FakeClock
from kiosk.province.outbox import ProvinceOutbox
from kiosk.province.setup import SiteRole, add_site, init_schema
from kiosk.province.uplink import Uplink, UplinkSettings
from kiosk.store import Store
from tests.postgres_fixture import new_server
from tests.province_hub import hub_with_events

TARGET_PER_S = 20_000
"""The issue's target: a 30-day backlog of one site at >= 20,000 events/s."""


@dataclass(frozen=True)
class Run:
    """One drain of the whole backlog."""

    fsync: bool
    events: int
    batches: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.events / self.seconds


def drain(events: int, batch: int, *, fsync: bool) -> Run:
    """A fresh cluster (fsync as asked) and a fresh hub of ``events``; the drain timed."""
    server = new_server("gatekiosk-pg-bench-")
    server.options = (f"fsync={'on' if fsync else 'off'}", "synchronous_commit=on")
    root = server.data_dir.parent
    try:
        server.init()
        server.start()
        init_schema(server.dsn())
        add_site(server.dsn(), SiteRole("bench-site", "Bench", role_name="site_bench"))
        hub = Path(root) / "hub.db"
        hub_with_events(hub, events, step_s=4.0)
        with Store.open(hub) as store:
            store.connection.conn.execute("PRAGMA synchronous = NORMAL")
            uplink = Uplink(
                ProvinceOutbox(store.connection),
                UplinkSettings(dsn=server.dsn(user="site_bench"), batch_size=batch),
                clock=FakeClock(datetime.now(UTC)),
            )
            start = time.perf_counter()
            stats = uplink.drain_once()
            elapsed = time.perf_counter() - start
        return Run(fsync, stats.inserted, stats.batches, elapsed)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()
    runs = [drain(args.events, args.batch, fsync=fsync) for fsync in (False, True)]
    print(f"backlog of {args.events:,} events, batches of {args.batch}")
    print("| server | events | batches | seconds | events/s | target >= 20,000/s |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        met = "met" if run.per_s >= TARGET_PER_S else "MISSED"
        print(
            f"| fsync {'on' if run.fsync else 'off'} | {run.events:,} | {run.batches} | "
            f"{run.seconds:.2f} | {run.per_s:,.0f} | {met} |"
        )
    ratio = runs[1].seconds / runs[0].seconds
    print(f"fsync on takes {ratio:.2f}x the time of fsync off")


if __name__ == "__main__":
    main()
