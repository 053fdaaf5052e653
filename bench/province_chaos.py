"""The province through its faults: PostgreSQL crashed and hubs' uplinks
killed while events keep arriving; then every event counted.

    PYTHONPATH=. python -m bench.province_chaos --hubs 4 --rate 50 --pg-crashes 20 --hub-kills 20

A temporary PostgreSQL cluster on loopback (fsync off, a test cluster), the
province schema, ``--hubs`` site hubs each with its real ``gatekiosk
uplink`` process (batches of ``--batch``), and a feeder taking ``--rate``
events/s into every hub's database as ``gatekiosk hub`` takes them from
gates. Each hub starts with ``--backlog`` events waiting (days offline).
Faults come in a shuffled order, ``--gap-s`` seconds apart (with jitter),
each injected the moment a batch is seen in flight (polling
``pg_stat_activity``, up to 10 s, else anyway; the report counts the hits):
the server stopped like ``pg_ctl stop -m immediate`` (SIGQUIT, no clean
shutdown) and started again, or one hub's uplink SIGKILLed (a power cut)
and started again, every third kill after a SIGSTOP of a few seconds.
Then the feeder stops and the catch-up is timed: until every hub's marks
are cleared and the province holds every event.

Reported: events sent, lost, doubled, foreign (another site's rows), hourly
counts that differ from the events', and the catch-up time. Target: 0 lost
and 0 doubled through 20 crashes and 20 kills. Writes
bench/report-province-chaos.md.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import tempfile
from datetime import timedelta
from pathlib import Path

from kiosk.clock import SystemClock
from kiosk.province.setup import init_schema
from kiosk.store import Store
from tests.postgres_fixture import Province, new_server
from tests.province_fleet import (
    Books,
    Feeder,
    Hub,
    books,
    catch_batch_in_flight,
    events_at,
    wait_until,
)
from tests.province_hub import ingest, make_events

REPORT = Path(__file__).resolve().parent / "report-province-chaos.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hubs", type=int, default=4)
    parser.add_argument("--rate", type=int, default=50, help="events/s into each hub")
    parser.add_argument("--pg-crashes", type=int, default=20)
    parser.add_argument("--hub-kills", type=int, default=20)
    parser.add_argument("--gap-s", type=float, default=2.0, help="seconds between faults")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument(
        "--backlog", type=int, default=50_000, help="events waiting at each hub at the start"
    )
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()
    clock = SystemClock()
    chance = random.Random(args.seed)  # fault timing, not secrets
    server = new_server("gatekiosk-pg-chaos-")
    work = Path(tempfile.mkdtemp(prefix="gatekiosk-province-chaos-"))
    hubs: list[Hub] = []
    try:
        server.init()
        server.start()
        init_schema(server.dsn())
        province = Province(server, "postgres")
        hubs = [
            Hub.create(
                work / f"site-{n}", f"site-{n}", province.add_site(f"site-{n}"), batch=args.batch
            )
            for n in range(args.hubs)
        ]
        hub_roles = {hub.site_id: f"postgres_{hub.site_id}".replace("-", "_") for hub in hubs}
        for hub in hubs:  # offline for a while: the uplinks start busy
            with Store.open(hub.db) as store:
                events = make_events(args.backlog, start=clock.now() - timedelta(days=3), step_s=5)
                ingest(store, events)
                hub.ids.extend(e.id for e in events)
        for hub in hubs:
            hub.start()
        feeder = Feeder(
            hubs, per_tick=max(1, args.rate // 10), tick_s=0.1, limit=10**9, clock=clock
        )
        feeder.start()
        started = clock.monotonic()
        faults = ["pg"] * args.pg_crashes + ["hub"] * args.hub_kills
        chance.shuffle(faults)
        kills = in_flight = hub_in_flight = 0
        for fault in faults:
            clock.sleep(args.gap_s * chance.uniform(0.5, 1.5))
            if fault == "pg":
                in_flight += catch_batch_in_flight(server.dsn(), clock, timeout_s=10)
                server.stop(immediate=True)
                server.start()
                continue
            hub = chance.choice(hubs)
            kills += 1
            hub_in_flight += catch_batch_in_flight(
                server.dsn(), clock, role=hub_roles[hub.site_id], timeout_s=10
            )
            if kills % 3 == 0:
                hub.signal(signal.SIGSTOP)
                clock.sleep(chance.uniform(0.5, 3.0))
            hub.kill()
            hub.start()
        chaos_s = clock.monotonic() - started
        feeder.finish()
        fed = feeder.fed
        catch_up_s = wait_until(
            lambda: all(h.pending() == 0 for h in hubs) and events_at(province.query) >= fed,
            clock,
            timeout_s=600,
        )
        result = books(province.query, hubs)
        report(args, result, chaos_s, catch_up_s, (in_flight, hub_in_flight))
    finally:
        for hub in hubs:
            hub.stop()
        server.stop()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def report(
    args: argparse.Namespace,
    result: Books,
    chaos_s: float,
    catch_up_s: float,
    in_flight: tuple[int, int],
) -> None:
    lines = [
        "# Province chaos",
        "",
        f"{args.hubs} hubs, each fed {args.rate} events/s and running its own `gatekiosk uplink` "
        f"process (batches of {args.batch}); {args.pg_crashes} PostgreSQL crashes (SIGQUIT, "
        f"like `pg_ctl stop -m immediate`, then a restart) and {args.hub_kills} uplink SIGKILLs "
        f"(every third after a SIGSTOP), about {args.gap_s:g} s apart, over {chaos_s:.0f} s. "
        f"Each hub starts with {args.backlog:,} events waiting (three days offline), so the "
        "uplinks are busy when the faults begin.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| events sent by the hubs | {result.sent:,} |",
        f"| events at the province | {result.at_province:,} |",
        f"| lost | {result.lost} |",
        f"| doubled | {result.doubled} |",
        f"| another site's rows | {result.foreign} |",
        f"| hourly counts differing from the events | {result.hourly_mismatches} |",
        f"| crashes that caught a batch in flight | {in_flight[0]} of {args.pg_crashes} |",
        f"| uplink kills that caught its batch in flight | {in_flight[1]} of {args.hub_kills} |",
        f"| catch-up after the last fault (s) | {catch_up_s:.1f} |",
        "",
        f"Target: 0 lost, 0 doubled: {'met' if result.clean else 'NOT met'}.",
        "",
    ]
    text = "\n".join(lines)
    REPORT.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
