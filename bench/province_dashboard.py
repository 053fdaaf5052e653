"""How fast the province dashboard answers over 10 million events, on a real
PostgreSQL (a temporary cluster on loopback, fsync off as a test cluster).

    PYTHONPATH=. python -m bench.province_dashboard --events 10000000 --sites 200

1. Fills the province as its owner: INSERT ... SELECT FROM generate_series
   into ``province.events`` in chunks, so the statement trigger keeps
   ``province.hourly`` as it does for the hubs' uploads; the rate is timed.
   Events are spread evenly over ``--days`` days up to now, over ``--sites``
   sites (a tenth of them refusals); a few sites are never heard from.
2. Times the dashboard's queries (:mod:`kiosk.province.dashboard`) through a
   ``province_reader`` login, ``--runs`` times each: the home page's site
   list with today's counts, one site's day chart, the ratings list. Beside
   each, the same answer computed from ``province.events`` directly (what
   the rollup saves): today's counts per site, and the site's day by hour
   (as the owner: the reader login may not read events).
3. Times the pages themselves, rendered by the province web (Flask's test
   client over the same reader login, a manager logged in): the home page
   and a site's day, ``--runs`` times each.
4. Reports p50/p95 in ms and writes bench/report-province-dashboard.md.
   Target: dashboard p95 <= 1 s over 10M events.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from admin_web import create_province_app
from kiosk.accounts import add_user
from kiosk.clock import SystemClock
from kiosk.config import load_settings
from kiosk.province import dashboard
from kiosk.province.setup import add_reader, init_schema
from kiosk.store import Store
from tests.postgres_fixture import new_server
from tests.web import CHEAP_HASHING, PASSWORDS, log_in

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
REPORT = Path(__file__).with_name("report-province-dashboard.md")

_FILL = """
INSERT INTO province.events (site_id, id, at_utc, utc_offset_min, gate_id, boot_id, seq,
    clock_synced, direction, decision, reason, kind, subject_hash, override, received_at)
SELECT 'site-' || lpad((g %% %(sites)s)::text, 4, '0'), 'ev-' || g,
       %(start)s::timestamptz + make_interval(secs => g * %(step_s)s), 420, 'gate-1', 'boot', g,
       true, CASE WHEN g %% 2 = 0 THEN 'in' ELSE 'out' END,
       CASE WHEN g %% 10 = 0 THEN 'deny' ELSE 'allow' END,
       CASE WHEN g %% 10 = 0 THEN 'expired' ELSE 'ok' END, 'cccd', md5(g::text), false,
       %(start)s::timestamptz + make_interval(secs => g * %(step_s)s)
FROM generate_series(%(first)s, %(last)s) AS g
"""

_RAW_TODAY = """
SELECT s.id, count(e.id) FILTER (WHERE e.decision = 'allow' AND e.direction = 'in'),
       count(e.id) FILTER (WHERE e.decision = 'allow' AND e.direction <> 'in'),
       count(e.id) FILTER (WHERE e.decision <> 'allow')
FROM province.sites s LEFT JOIN province.events e
  ON e.site_id = s.id AND e.at_utc >= %s AND e.at_utc < %s
GROUP BY s.id ORDER BY s.id
"""

_RAW_DAY = """
SELECT date_trunc('hour', at_utc), count(*) FILTER (WHERE decision = 'allow' AND direction = 'in'),
       count(*) FILTER (WHERE decision = 'allow' AND direction <> 'in'),
       count(*) FILTER (WHERE decision <> 'allow')
FROM province.events WHERE site_id = %s AND at_utc >= %s AND at_utc < %s GROUP BY 1
"""


def percentiles(times_s: list[float]) -> tuple[float, float]:
    """(p50, p95) in ms."""
    ordered = sorted(times_s)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return statistics.median(ordered) * 1000, cut[94] * 1000


def timed(call: Callable[[], Any], runs: int) -> tuple[float, float]:
    call()  # warm: plans and pages
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return percentiles(times)


def fill(dsn: str, *, events: int, sites: int, days: int, chunk: int) -> tuple[float, datetime]:
    """Insert ``events`` as the owner; the seconds it took and the first event's time."""
    now = datetime.now(UTC)
    start = now - timedelta(days=days)
    step_s = days * 86400 / events
    with psycopg.connect(dsn, autocommit=True) as conn:
        month = date(start.year, start.month, 1)
        while month <= now.date():
            conn.execute("SELECT province.ensure_month(%s)", (month,))
            month = (month + timedelta(days=32)).replace(day=1)
        began = time.perf_counter()
        for first in range(0, events, chunk):
            last = min(events, first + chunk) - 1
            t0 = time.perf_counter()
            conn.execute(
                _FILL,
                {
                    "sites": sites,
                    "start": start,
                    "step_s": step_s,
                    "first": first,
                    "last": last,
                },
            )
            chunk_rate = (last - first + 1) / (time.perf_counter() - t0)
            print(f"  {last + 1:>11,} events, chunk {chunk_rate:,.0f}/s", flush=True)
        elapsed = time.perf_counter() - began
        conn.execute("ANALYZE")
    return elapsed, start


def prepare_sites(dsn: str, sites: int, never: int) -> None:
    """``sites`` sites with data, ``never`` more never heard from, checklists and ratings."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO province.sites (id, name, role_name, last_heard) "
            "SELECT 'site-' || lpad(g::text, 4, '0'), 'Chợ số ' || g, 'bench_site_' || g, "
            "CASE WHEN g < %s THEN now() - (g %% 30) * interval '1 minute' END "
            "FROM generate_series(0, %s) AS g",
            (sites, sites + never - 1),
        )
        conn.execute(
            "INSERT INTO province.checklists (version, title, questions) VALUES "
            "(1, 'v1', '[]'), (2, 'v2', '[]')"
        )
        conn.execute(
            "INSERT INTO province.assessments (site_id, id, checklist_version, made_at, answers, "
            "score) SELECT s.id, s.id || '-' || n, 1 + (n %% 2), now() - n * interval '9 days', "
            "'{}', 50 + n FROM province.sites s, generate_series(0, 5) AS n "
            "WHERE s.id < 'site-' || lpad(%s::text, 4, '0')",
            (sites * 3 // 4,),
        )


def page_timings(
    root: Path, reader_dsn: str, site_id: str, day: dashboard.Day, runs: int
) -> list[tuple[str, tuple[float, float]]]:
    """The province web's pages, rendered for a logged-in manager, ``runs`` times each."""
    data_dir = root / "web"
    data_dir.mkdir()
    settings = load_settings(
        overrides={"gate.data_dir": str(data_dir), "province_web.dsn": reader_dsn}, env={}
    )
    clock = SystemClock()
    with Store.open(settings.db_path) as store:
        add_user(
            store,
            "manager1",
            role="manager",
            password=PASSWORDS["manager"],
            at=clock.now(),
            hashing=CHEAP_HASHING,
        )
        app = create_province_app(
            settings, store=store, clock=clock, password_hashing=CHEAP_HASHING
        )
        client = app.test_client()
        log_in(client, "manager")

        def page(path: str) -> None:
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)
            response.get_data()

        day_path = f"/sites/{site_id}?day={day.day.isoformat()}"
        page("/")
        page(day_path)
        return [
            ("page GET / (every site, rendered)", timed(lambda: page("/"), runs)),
            ("page GET a site's day (rendered)", timed(lambda: page(day_path), runs)),
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--sites", type=int, default=200)
    parser.add_argument("--never", type=int, default=10, help="sites never heard from")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=500_000)
    args = parser.parse_args()
    server = new_server("gatekiosk-pg-dash-")
    root = server.data_dir.parent
    try:
        server.init()
        server.start()
        owner = server.dsn()
        init_schema(owner)
        prepare_sites(owner, args.sites, args.never)
        add_reader(owner, "bench_reader", None)
        print(f"filling {args.events:,} events over {args.sites} sites, {args.days} days:")
        fill_s, _ = fill(
            owner, events=args.events, sites=args.sites, days=args.days, chunk=args.chunk
        )
        rate = args.events / fill_s
        print(f"filled in {fill_s:.1f} s: {rate:,.0f} events/s (the hourly trigger included)")
        # The reader may not read events (schema.sql): the raw comparisons run as the owner.
        with (
            psycopg.connect(server.dsn(user="bench_reader")) as conn,
            psycopg.connect(owner, autocommit=True) as owner_conn,
        ):
            conn.autocommit = True
            day = dashboard.day_bounds(datetime.now(UTC).astimezone(TZ).date(), TZ)
            busy = "site-0001"
            rollup_rows = conn.execute("SELECT count(*) FROM province.hourly").fetchone()
            listing = dashboard.site_list(conn, day)
            chart = dashboard.hourly_chart(conn, busy, day)
            raw_chart = owner_conn.execute(_RAW_DAY, (busy, day.start, day.end)).fetchall()
            assert sum(r[1] for r in raw_chart) == chart.total.entries, "rollup != raw"
            pages = page_timings(root, server.dsn(user="bench_reader"), busy, day, args.runs)
            results = [
                (
                    "home: site list, state, today's counts",
                    timed(lambda: dashboard.site_list(conn, day), args.runs),
                    timed(
                        lambda: owner_conn.execute(_RAW_TODAY, (day.start, day.end)).fetchall(),
                        args.runs,
                    ),
                ),
                (
                    "a site's day chart (24 hours)",
                    timed(lambda: dashboard.hourly_chart(conn, busy, day), args.runs),
                    timed(
                        lambda: owner_conn.execute(_RAW_DAY, (busy, day.start, day.end)).fetchall(),
                        args.runs,
                    ),
                ),
                (
                    "self-assessment ratings list",
                    timed(lambda: dashboard.ratings(conn), args.runs),
                    None,
                ),
                *((name, timing, None) for name, timing in pages),
            ]
        scanning = sum(1 for s in listing.sites if s.state == dashboard.SCANNING)
        lines = [
            "# Province dashboard over a filled province",
            "",
            f"{args.events:,} events, {args.sites} sites with events + {args.never} never heard "
            f"from, {args.days} days; {rollup_rows[0] if rollup_rows else 0:,} rollup rows "
            f"(province.hourly). Each query {args.runs} times through a province_reader login.",
            "",
            f"Fill (owner, INSERT ... SELECT generate_series, hourly trigger on): {fill_s:.1f} s, "
            f"{rate:,.0f} events/s.",
            "",
            f"Site list today: {len(listing.sites)} sites, {scanning} scanning; province totals "
            f"{dashboard.totals(listing.sites)}.",
            "",
            "| query | dashboard p50 ms | dashboard p95 ms | raw events p50 ms | raw p95 ms "
            "| raw/rollup (p50) |",
            "|---|---|---|---|---|---|",
        ]
        for name, (p50, p95), raw in results:
            if raw is None:
                lines.append(f"| {name} | {p50:.1f} | {p95:.1f} | – | – | – |")
            else:
                lines.append(
                    f"| {name} | {p50:.1f} | {p95:.1f} | {raw[0]:.1f} | {raw[1]:.1f} | "
                    f"{raw[0] / p50:.1f}× |"
                )
        worst = max(p95 for _, (_, p95), _ in results)
        lines += [
            "",
            f"Worst dashboard p95: {worst:.1f} ms (target ≤ 1000 ms): "
            f"{'met' if worst <= 1000 else 'NOT met'}.",
            "",
        ]
        text = "\n".join(lines)
        print(text)
        REPORT.write_text(text, encoding="utf-8")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
