"""How fast a hub's backlog goes up to the province: N events from a site
database to a real PostgreSQL (a temporary cluster on loopback), in events/s.

    PYTHONPATH=. python bench/province_uplink.py --events 100000 --batch 5000

Builds the hub's database first (not timed), then times ``Uplink.drain_once``:
reading the pending rows, COPY, INSERT ... ON CONFLICT DO NOTHING, COMMIT,
marking the rows sent at the hub. The cluster runs with fsync off (a test
cluster); the hub's SQLite marks are written as ``gatekiosk uplink`` does.
"""

from __future__ import annotations

import argparse
import shutil
import time
from datetime import UTC, datetime

from kiosk.clock import FakeClock
from kiosk.province.outbox import ProvinceOutbox
from kiosk.province.setup import SiteRole, add_site, init_schema
from kiosk.province.uplink import Uplink, UplinkSettings
from kiosk.store import Store
from tests.postgres_fixture import new_server
from tests.province_hub import hub_with_events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()
    server = new_server("gatekiosk-pg-bench-")
    root = server.data_dir.parent
    try:
        server.init()
        server.start()
        init_schema(server.dsn())
        add_site(server.dsn(), SiteRole("bench-site", "Bench", role_name="site_bench"))
        hub = root / "hub.db"
        hub_with_events(hub, args.events, step_s=4.0)
        with Store.open(hub) as store:
            store.connection.conn.execute("PRAGMA synchronous = NORMAL")
            uplink = Uplink(
                ProvinceOutbox(store.connection),
                UplinkSettings(dsn=server.dsn(user="site_bench"), batch_size=args.batch),
                clock=FakeClock(datetime.now(UTC)),
            )
            start = time.perf_counter()
            stats = uplink.drain_once()
            elapsed = time.perf_counter() - start
        print(
            f"{stats.inserted} events in {elapsed:.2f} s: {stats.inserted / elapsed:,.0f} events/s "
            f"(batches of {args.batch}, {stats.batches} batches)"
        )
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
