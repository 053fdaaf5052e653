"""Upload lag of many busy sites: how long after the hub received an event
the province has committed it.

    PYTHONPATH=. python -m bench.province_lag --sites 50 --rate 55.6 --duration-s 120

A busy market: a large wet market at its morning peak takes about 2,000
entries an hour through its gates, i.e. about 0.56 events/s. This benchmark
runs ``--sites`` simulated sites at 100 times that, 200,000 events/hour or
55.6 events/s each (50 sites: about 2,800 events/s, 10 million an hour,
into one PostgreSQL).

Each site is a hub database fed once a second with that second's events
(three gates' batches in turn), ingested as ``gatekiosk hub`` takes them
from gates (``SiteLog.ingest``), each event's time being when the hub
received it; and each site runs its own real ``gatekiosk uplink`` process
(processes, not threads: 50 of them, about 40 MB each), with its default
settings (batches of up to 5,000, a 5 s wait when nothing is pending). The
server is a temporary cluster on loopback (fsync off) with
``track_commit_timestamp`` on, so the lag of each event is exactly its
transaction's commit time at the province minus its receive time at the
hub (both clocks are this machine's). Feeding starts once every uplink has
reported to the province (start-up is not lag).

Reported: events, lag p50, p95, p99 and max; target p99 <= 60 s. Writes
bench/report-province-lag.md.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from kiosk.clock import SystemClock
from kiosk.province.setup import init_schema
from tests.postgres_fixture import Province, new_server
from tests.province_fleet import Feeder, Hub, events_at, wait_until

REPORT = Path(__file__).resolve().parent / "report-province-lag.md"
BUSY_MARKET_PER_HOUR = 2000
"""Entries an hour at a busy market's peak."""

_LAG_SQL = """
WITH lag AS (
    SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - at_utc)::float8 AS s
    FROM province.events)
SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY s),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY s),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY s), max(s)
FROM lag
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument(
        "--rate", type=float, default=BUSY_MARKET_PER_HOUR * 100 / 3600, help="events/s per site"
    )
    parser.add_argument("--duration-s", type=float, default=120.0)
    args = parser.parse_args()
    clock = SystemClock()
    server = new_server("gatekiosk-pg-lag-")
    server.options = (f"max_connections={args.sites + 20}", "track_commit_timestamp=on")
    work = Path(tempfile.mkdtemp(prefix="gatekiosk-province-lag-"))
    hubs: list[Hub] = []
    try:
        server.init()
        server.start()
        init_schema(server.dsn())
        province = Province(server, "postgres")
        hubs = [
            Hub.create(work / f"site-{n}", f"site-{n}", province.add_site(f"site-{n}"))
            for n in range(args.sites)
        ]
        for hub in hubs:
            hub.start()
        reported = lambda: province.query("SELECT count(*) FROM province.site_health", ())  # noqa: E731
        start_s = wait_until(lambda: reported() == [(args.sites,)], clock, timeout_s=600)
        per_tick = round(args.rate)
        limit = round(args.rate * args.duration_s)
        feeder = Feeder(
            hubs, per_tick=per_tick, tick_s=per_tick / args.rate, limit=limit, clock=clock
        )
        started = clock.monotonic()
        feeder.start()
        wait_until(lambda: feeder.fed >= limit * len(hubs), clock, timeout_s=args.duration_s * 5)
        fed_s = clock.monotonic() - started + per_tick / args.rate  # the last second's too
        feeder.finish()
        total = feeder.fed
        wait_until(lambda: events_at(province.query) >= total, clock, timeout_s=600)
        ((events, p50, p95, p99, worst),) = province.query(_LAG_SQL, ())
        figures = [float(str(v)) for v in (p50, p95, p99, worst)]
        report(args, int(str(events)), total, fed_s, start_s, figures)
    finally:
        for hub in hubs:
            hub.stop()
        server.stop()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def report(
    args: argparse.Namespace,
    events: int,
    fed: int,
    fed_s: float,
    start_s: float,
    lag: list[float],
) -> None:
    p50, p95, p99, worst = lag
    lines = [
        "# Province upload lag",
        "",
        f"{args.sites} sites, each at {args.rate:.1f} events/s (100 x a busy market's "
        f"{BUSY_MARKET_PER_HOUR:,} entries/hour), each with its own `gatekiosk uplink` process; "
        f"{fed:,} events fed in {fed_s:.0f} s ({fed / fed_s:,.0f} events/s in all; "
        f"asked for {args.sites * args.rate:,.0f}); the {args.sites} uplinks took {start_s:.0f} s "
        "to start and report (not counted).",
        "",
        "Lag: the province's commit time (track_commit_timestamp) minus the hub's receive time.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| events at the province | {events:,} |",
        f"| lag p50 (s) | {p50:.2f} |",
        f"| lag p95 (s) | {p95:.2f} |",
        f"| lag p99 (s) | {p99:.2f} |",
        f"| lag max (s) | {worst:.2f} |",
        "",
        f"Target p99 <= 60 s: {'met' if p99 <= 60 else 'NOT met'}.",
        "",
    ]
    text = "\n".join(lines)
    REPORT.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
