"""The province survives its faults, against a real PostgreSQL and real
``gatekiosk uplink`` processes: the server crashed (``pg_ctl stop -m
immediate``) and restarted mid-batch while hubs keep receiving events,
uplinks SIGKILLed, SIGSTOPped and SIGCONTed; hubs whose clocks are hours
or days off; a hub offline for a month. At the end every event is at the
province exactly once, the hubs' marks are all cleared, and the hourly
counts equal the events' (the trigger counts only rows really inserted).

Light on purpose (it runs in ``make test`` on shared cores): a few faults,
a few thousand events; no timing assertions, every wait a poll with a
deadline. ``make province-chaos`` is the heavy version.
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kiosk.clock import FakeClock, SystemClock
from kiosk.province.outbox import ProvinceOutbox
from kiosk.province.setup import month_of, partition_name
from kiosk.province.uplink import Uplink, UplinkSettings
from kiosk.store import Store
from tests.postgres_fixture import (  # noqa: F401
    PostgresServer,
    Province,
    postgres_fixture,
    province_fixture,
)
from tests.province_fleet import Feeder, Hub, books, catch_batch_in_flight, wait_until
from tests.province_hub import ingest, make_events

CLOCK = SystemClock()


def count(province: Province, site_id: str | None = None) -> int:
    if site_id is None:
        return int(str(province.query("SELECT count(*) FROM province.events")[0][0]))
    rows = province.query("SELECT count(*) FROM province.events WHERE site_id = %s", (site_id,))
    return int(str(rows[0][0]))


def server_now(province: Province) -> datetime:
    (row,) = province.query("SELECT now()")
    assert isinstance(row[0], datetime)
    return row[0]


def in_flight(province: Province, site_id: str | None = None) -> bool:
    """Wait until an uplink (``site_id``'s, or any) is inside a transaction."""
    role = f"{province.dbname}_{site_id}".replace("-", "_") if site_id else None
    return catch_batch_in_flight(province.owner_dsn, CLOCK, role=role, timeout_s=60)


def progressed(province: Province, by: int, site_id: str | None = None) -> None:
    """Wait until ``by`` more events are at the province: a batch is in flight."""
    target = count(province, site_id) + by
    wait_until(lambda: count(province, site_id) >= target, CLOCK, timeout_s=60)


@pytest.mark.slow
def test_postgres_crashes_and_uplink_kills_lose_and_double_nothing(
    province: Province, postgres: PostgresServer, tmp_path: Path
) -> None:
    hubs = [
        Hub.create(tmp_path / site, site, province.add_site(site), batch=100)
        for site in ("market-1", "market-2", "mall-3")
    ]
    for hub in hubs:  # a backlog, so the first batches are busy
        with Store.open(hub.db) as store:
            events = make_events(600, start=CLOCK.now() - timedelta(hours=2))
            ingest(store, events)
            hub.ids.extend(e.id for e in events)
    feeder = Feeder(hubs, per_tick=5, tick_s=0.1, limit=2000, clock=CLOCK)
    for hub in hubs:
        hub.start()
    feeder.start()
    try:
        for _ in range(2):  # the server crashes mid-batch, and comes back
            progressed(province, 50)
            assert in_flight(province)
            postgres.stop(immediate=True)
            postgres.start()
        assert in_flight(province, "market-1")
        hubs[0].kill()  # a power cut at the hub, mid-batch
        hubs[0].start()
        assert in_flight(province, "market-2")
        hubs[1].signal(signal.SIGSTOP)  # frozen mid-batch...
        progressed(province, 50, "mall-3")
        postgres.stop(immediate=True)  # ...while the server dies under it
        postgres.start()
        hubs[1].signal(signal.SIGCONT)
        for _ in range(2):
            progressed(province, 20, "mall-3")
            assert in_flight(province, "mall-3")
            hubs[2].kill()
            hubs[2].start()
        wait_until(lambda: feeder.fed == 3 * 2000, CLOCK, timeout_s=120)  # events kept coming
        feeder.finish()
        wait_until(
            lambda: all(hub.pending() == 0 for hub in hubs) and count(province) >= feeder.fed,
            CLOCK,
            timeout_s=180,
        )
    finally:
        statuses = [hub.stop() for hub in hubs]
        feeder.finish()
    assert statuses == [0, 0, 0], [hub.errors()[-2000:] for hub in hubs]
    assert all("retrying" in hub.errors() for hub in hubs)  # each lost the server, came back
    result = books(province.query, hubs)
    assert result.sent == 3 * 2000
    assert (result.lost, result.doubled, result.foreign) == (0, 0, 0)
    assert result.hourly_mismatches == 0
    for hub in hubs:
        ids = province.query("SELECT id FROM province.events WHERE site_id = %s", (hub.site_id,))
        assert sorted(str(row[0]) for row in ids) == sorted(hub.ids)
    assert province.query("SELECT count(*), count(DISTINCT id) FROM province.events") == [
        (3 * 2000, 3 * 2000)
    ]
    (hourly,) = province.query(
        "SELECT sum(entries + exits + denied)::bigint FROM province.hourly", ()
    )
    assert hourly == (3 * 2000,)


def test_hubs_with_wrong_clocks_land_in_their_months_and_are_heard_by_the_servers_clock(
    province: Province, tmp_path: Path
) -> None:
    now = CLOCK.now()
    skews = {"behind-40-days": timedelta(days=-40), "ahead-7-hours": timedelta(hours=7)}
    sent: dict[str, list[datetime]] = {}
    before = server_now(province)
    for site, skew in skews.items():
        dsn = province.add_site(site)
        hub_clock = FakeClock(now + skew)
        events = make_events(120, start=hub_clock.now() - timedelta(hours=1), step_s=30)
        with Store.open(tmp_path / f"{site}.db") as store:
            ingest(store, events)
            Uplink(
                ProvinceOutbox(store.connection),
                UplinkSettings(dsn=dsn, batch_size=50),
                clock=hub_clock,
            ).drain_once()
        sent[site] = [e.at for e in events]
        (hub_time,) = province.query(
            "SELECT hub_time FROM province.site_health WHERE site_id = %s", (site,)
        )
        assert hub_time == (hub_clock.now(),)  # the hub's clock, as it said
    after = server_now(province)
    for site, times in sent.items():
        expected: dict[str, int] = {}
        for at in times:
            name = f"province.{partition_name(month_of(at.astimezone(UTC)))}"
            expected[name] = expected.get(name, 0) + 1
        rows = province.query(
            "SELECT tableoid::regclass::text, count(*) FROM province.events "
            "WHERE site_id = %s GROUP BY 1",
            (site,),
        )
        assert {str(name): int(str(n)) for name, n in rows} == expected
        (heard,) = province.query("SELECT last_heard FROM province.sites WHERE id = %s", (site,))
        heard_at = heard[0]
        assert isinstance(heard_at, datetime)
        assert before <= heard_at <= after  # the server's clock, not the hub's
    assert books(province.query, []).hourly_mismatches == 0


@pytest.mark.slow
def test_a_hub_offline_for_a_month_catches_up(province: Province, tmp_path: Path) -> None:
    dsn = province.add_site("market-far")
    hub = Hub.create(tmp_path / "hub", "market-far", "host=127.0.0.1 port=1 dbname=x user=y")
    start = CLOCK.now() - timedelta(days=30)
    with Store.open(hub.db) as store:  # 30 days of events, one every 13 min
        events = make_events(3300, start=start, step_s=30 * 86400 / 3300)
        ingest(store, events)
        hub.ids.extend(e.id for e in events)
    hub.start()  # the province out of reach: everything waits, marked
    try:
        wait_until(lambda: "retrying" in hub.errors(), CLOCK, timeout_s=60)
        assert hub.pending() == 3300
    finally:
        assert hub.stop() == 0
    assert count(province) == 0
    hub.config.write_text(
        hub.config.read_text(encoding="utf-8").replace(
            "host=127.0.0.1 port=1 dbname=x user=y", dsn
        ),
        encoding="utf-8",
    )
    hub.start()  # the line is back
    try:
        wait_until(lambda: hub.pending() == 0, CLOCK, timeout_s=120)
        wait_until(
            lambda: province.query("SELECT pending FROM province.site_health") == [(0,)],
            CLOCK,
            timeout_s=60,
        )
    finally:
        assert hub.stop() == 0
    result = books(province.query, [hub])
    assert (result.at_province, result.lost, result.doubled) == (3300, 0, 0)
    assert result.hourly_mismatches == 0
    months = province.query(
        "SELECT count(DISTINCT tableoid) FROM province.events WHERE site_id = 'market-far'"
    )
    assert months[0][0] == len({month_of(e.at) for e in events})
