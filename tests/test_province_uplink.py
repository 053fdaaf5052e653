"""``gatekiosk uplink`` against a real PostgreSQL: every event goes up exactly
once, a re-run sends nothing twice, a crash at any point loses and doubles
nothing, new events are queued by the trigger, the site's health arrives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from kiosk.clock import FakeClock
from kiosk.province.outbox import ProvinceOutbox
from kiosk.province.uplink import ProvinceSession, Uplink, UplinkSettings
from kiosk.store import Store
from tests.postgres_fixture import (  # noqa: F401
    HOST,
    PostgresServer,
    Province,
    postgres_fixture,
    province_fixture,
)
from tests.province_hub import hub_with_events, ingest, make_events, province_marks

NOW = datetime(2026, 2, 1, 3, 0, tzinfo=UTC)


def uplink_of(store: Store, dsn: str, batch: int = 1000) -> Uplink:
    return Uplink(
        ProvinceOutbox(store.connection),
        UplinkSettings(dsn=dsn, batch_size=batch),
        clock=FakeClock(NOW),
    )


def province_ids(province: Province, site_id: str) -> list[str]:
    return [
        str(row[0])
        for row in province.query("SELECT id FROM province.events WHERE site_id = %s", (site_id,))
    ]


def test_events_go_up_exactly_once_and_a_rerun_sends_nothing(
    province: Province, tmp_path: Path
) -> None:
    dsn = province.add_site("market-a")
    ids = hub_with_events(tmp_path / "hub.db", 3500)
    with Store.open(tmp_path / "hub.db") as store:
        stats = uplink_of(store, dsn).drain_once()
        assert (stats.sent, stats.inserted, stats.batches) == (3500, 3500, 4)
        assert sorted(province_ids(province, "market-a")) == sorted(ids)
        assert set(province_marks(tmp_path / "hub.db").values()) == {0}
        again = uplink_of(store, dsn).drain_once()
        assert (again.sent, again.inserted) == (0, 0)
    assert province.query("SELECT count(*), count(DISTINCT id) FROM province.events") == [
        (3500, 3500)
    ]


def test_the_province_receives_no_names_and_the_hubs_values(
    province: Province, tmp_path: Path
) -> None:
    dsn = province.add_site("market-a")
    events = make_events(3)
    with Store.open(tmp_path / "hub.db") as store:
        ingest(store, events)
        uplink_of(store, dsn).drain_once()
    rows = province.query(
        "SELECT id, at_utc, gate_id, seq, clock_synced, direction, decision, reason, "
        "subject_hash FROM province.events ORDER BY seq"
    )
    assert rows == [
        (e.id, e.at, e.gate_id, e.seq, True, e.direction, e.decision, e.reason, e.subject_hash)
        for e in events
    ]


def test_events_recorded_after_the_uplink_started_are_queued_too(
    province: Province, tmp_path: Path
) -> None:
    dsn = province.add_site("market-a")
    with Store.open(tmp_path / "hub.db") as store:
        ingest(store, make_events(10))
        uplink_of(store, dsn).drain_once()
        later = make_events(5, gate_id="gate-2")
        ingest(store, later)
        assert ProvinceOutbox(store.connection).count_pending() == 5
        stats = uplink_of(store, dsn).drain_once()
    assert (stats.sent, stats.inserted) == (5, 5)
    assert len(province_ids(province, "market-a")) == 15


def test_a_hub_without_a_province_marks_nothing(tmp_path: Path) -> None:
    hub_with_events(tmp_path / "hub.db", 20)
    assert set(province_marks(tmp_path / "hub.db").values()) == {0}


def test_a_failure_after_the_commit_sends_the_batch_again_harmlessly(
    province: Province, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = province.add_site("market-a")
    ids = hub_with_events(tmp_path / "hub.db", 2500)
    real_mark = ProvinceOutbox.mark_sent
    calls = {"n": 0}

    def crash_on_second(self: ProvinceOutbox, rowids: tuple[int, ...]) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("power cut between the province's commit and the hub's mark")
        return real_mark(self, rowids)

    with Store.open(tmp_path / "hub.db") as store:
        monkeypatch.setattr(ProvinceOutbox, "mark_sent", crash_on_second)
        with pytest.raises(RuntimeError, match="power cut"):
            uplink_of(store, dsn).drain_once()
        monkeypatch.setattr(ProvinceOutbox, "mark_sent", real_mark)
        assert ProvinceOutbox(store.connection).count_pending() == 1500
        stats = uplink_of(store, dsn).drain_once()
    assert (stats.sent, stats.inserted) == (1500, 500)  # 1000 were already there
    assert sorted(province_ids(province, "market-a")) == sorted(ids)


def test_a_failure_before_the_commit_leaves_nothing_at_the_province(
    province: Province, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = province.add_site("market-a")
    ids = hub_with_events(tmp_path / "hub.db", 1500)
    real_insert = ProvinceSession._insert
    calls = {"n": 0}

    def die_mid_batch(self: ProvinceSession, batch: object) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            self._conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return real_insert(self, batch)  # type: ignore[arg-type]

    with Store.open(tmp_path / "hub.db") as store:
        monkeypatch.setattr(ProvinceSession, "_insert", die_mid_batch)
        with pytest.raises(psycopg.OperationalError):
            uplink_of(store, dsn).drain_once()
        monkeypatch.setattr(ProvinceSession, "_insert", real_insert)
        assert len(province_ids(province, "market-a")) == 1000
        stats = uplink_of(store, dsn).drain_once()
    assert (stats.sent, stats.inserted) == (500, 500)
    assert sorted(province_ids(province, "market-a")) == sorted(ids)


def test_a_site_login_cannot_upload_as_another_site(province: Province, tmp_path: Path) -> None:
    province.add_site("market-a")
    dsn_b = province.add_site("market-b")
    hub_with_events(tmp_path / "hub.db", 10)
    with Store.open(tmp_path / "hub.db") as store:
        outbox = ProvinceOutbox(store.connection)
        outbox.enable(NOW)
        with psycopg.connect(dsn_b) as conn:
            session = ProvinceSession(conn, outbox, UplinkSettings(dsn=dsn_b).zone)
            session.site_id = "market-a"  # a hub lying about its site
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
                session.send_batch(100)
        assert outbox.count_pending() == 10
    assert province.query("SELECT count(*) FROM province.events") == [(0,)]


def test_the_sites_health_arrives_with_the_days_counts(province: Province, tmp_path: Path) -> None:
    dsn = province.add_site("market-a")
    # T0 is 2026-01-31 22:00 UTC: 2026-02-01 05:00 in Hanoi, the day of NOW (10:00 there).
    hub_with_events(tmp_path / "hub.db", 100, step_s=60)
    with Store.open(tmp_path / "hub.db") as store:
        up = Uplink(
            ProvinceOutbox(store.connection),
            UplinkSettings(dsn=dsn, batch_size=30, zone=ZoneInfo("Asia/Ho_Chi_Minh")),
            clock=FakeClock(NOW),
        )
        up.drain_once()
    (health,) = province.query(
        "SELECT day, allowed_today, denied_today, pending, hub_time FROM province.site_health"
    )
    assert health == (datetime(2026, 2, 1).date(), 90, 10, 0, NOW)
    (heard,) = province.query("SELECT last_heard IS NOT NULL FROM province.sites")
    assert heard == (True,)


def test_killing_the_uplink_process_loses_and_doubles_nothing(
    province: Province, tmp_path: Path
) -> None:
    dsn = province.add_site("market-a")
    hub = tmp_path / "gatekiosk.db"  # the database of gate.data_dir
    ids = hub_with_events(hub, 20000, step_s=0.5)
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[gate]\ndata_dir = "{tmp_path}"\n[uplink]\ndsn = "{dsn}"\nbatch = 500\n',
        encoding="utf-8",
    )
    with (tmp_path / "uplink.err").open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "kiosk.cli", "uplink", "--once", "--config", str(config)],
            env={**os.environ},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    deadline = time.monotonic() + 15
    while len(province_ids(province, "market-a")) < 2000:
        assert process.poll() is None, (tmp_path / "uplink.err").read_text()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    landed = len(province_ids(province, "market-a"))
    assert 0 < landed < 20000
    with Store.open(hub) as store:
        stats = uplink_of(store, dsn, batch=5000).drain_once()
    assert stats.inserted == 20000 - landed
    assert sorted(province_ids(province, "market-a")) == sorted(ids)
    assert set(province_marks(hub).values()) == {0}


def test_the_uplink_rides_out_a_postgres_crash_and_restart(
    province: Province, postgres: PostgresServer, tmp_path: Path
) -> None:
    dsn = province.add_site("market-a")
    hub = tmp_path / "hub.db"
    ids = hub_with_events(hub, 20000, step_s=0.5)
    settings = UplinkSettings(dsn=dsn, batch_size=500, idle_s=0.05, backoff_min_s=0.05)
    holder: dict[str, Uplink] = {}
    started = threading.Event()

    def run() -> None:
        with Store.open(hub) as store:
            holder["up"] = Uplink(ProvinceOutbox(store.connection), settings, clock=FakeClock(NOW))
            started.set()
            holder["up"].run()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        started.wait(10)
        _wait_until(lambda: len(province_ids(province, "market-a")) >= 1000)
        postgres.stop(immediate=True)  # like pg_ctl stop -m immediate: no clean shutdown
        postgres.start()
        _wait_until(lambda: set(province_marks(hub).values()) == {0})
    finally:
        if "up" in holder:
            holder["up"].stop()
        thread.join(15)
    assert not thread.is_alive()
    assert holder["up"].stats.failures >= 1
    assert sorted(province_ids(province, "market-a")) == sorted(ids)


def test_sigterm_stops_a_running_uplink_cleanly(province: Province, tmp_path: Path) -> None:
    dsn = province.add_site("market-a")
    hub = tmp_path / "gatekiosk.db"
    ids = hub_with_events(hub, 50)
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[gate]\ndata_dir = "{tmp_path}"\n[uplink]\ndsn = "{dsn}"\n', encoding="utf-8"
    )
    with (tmp_path / "uplink.err").open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "kiosk.cli", "uplink", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        _wait_until(lambda: len(province_ids(province, "market-a")) == 50)
        _wait_until(lambda: set(province_marks(hub).values()) == {0})
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0, (tmp_path / "uplink.err").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert sorted(province_ids(province, "market-a")) == sorted(ids)


def _wait_until(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_wrong_clocks_land_in_their_own_months(province: Province, tmp_path: Path) -> None:
    dsn = province.add_site("market-a")
    unsynced = make_events(2, start=datetime(1970, 1, 1, 0, 0, 5, tzinfo=UTC))
    ahead = make_events(2, gate_id="gate-2", start=datetime(2031, 7, 1, tzinfo=UTC))
    with Store.open(tmp_path / "hub.db") as store:
        ingest(store, unsynced)
        ingest(store, ahead)
        uplink_of(store, dsn).drain_once()
    rows = province.query(
        "SELECT tableoid::regclass::text, count(*) FROM province.events GROUP BY 1 ORDER BY 1"
    )
    assert rows == [("province.events_1970_01", 2), ("province.events_2031_07", 2)]


def test_purge_keeps_what_the_province_has_not_committed(
    province: Province, tmp_path: Path
) -> None:
    dsn = province.add_site("market-a")
    hub = tmp_path / "hub.db"
    ids = hub_with_events(hub, 30)
    with Store.open(hub) as store:
        ProvinceOutbox(store.connection).enable(NOW)
        assert store.events.purge_events_before(datetime(2030, 1, 1, tzinfo=UTC), limit=100) == 0
        uplink_of(store, dsn).drain_once()
        assert store.events.purge_events_before(datetime(2030, 1, 1, tzinfo=UTC), limit=100) == 30
    assert sorted(province_ids(province, "market-a")) == sorted(ids)


def test_the_cli_sets_up_a_province_and_uploads(province: Province, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from kiosk.cli import cli

    runner = CliRunner()
    assert runner.invoke(cli, ["province", "init", province.owner_dsn]).exit_code == 0
    role = f"{province.dbname}_cli"
    added = runner.invoke(
        cli,
        ["province", "add-site", province.owner_dsn, "market-c", "--name", "Chợ C", "--role", role],
    )
    assert added.exit_code == 0, added.output
    bad = runner.invoke(cli, ["province", "add-site", province.owner_dsn, "bad site!"])
    assert bad.exit_code == 1
    assert "site id" in bad.output
    hub_with_events(tmp_path / "gatekiosk.db", 7)
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[gate]\ndata_dir = "{tmp_path}"\n[uplink]\nhost = "{HOST}"\n'
        f'port = {province.server.port}\ndbname = "{province.dbname}"\nrole = "{role}"\n',
        encoding="utf-8",
    )
    sent = runner.invoke(cli, ["uplink", "--once", "--config", str(config)])
    assert sent.exit_code == 0, sent.output
    assert "sent 7, mới / new 7" in sent.output
    assert len(province_ids(province, "market-c")) == 7
    no_dsn = tmp_path / "alone.toml"
    no_dsn.write_text(f'[gate]\ndata_dir = "{tmp_path}"\n', encoding="utf-8")
    refused = runner.invoke(cli, ["uplink", "--once", "--config", str(no_dsn)])
    assert refused.exit_code == 1
    assert "uplink.host is empty" in refused.output


def test_several_hubs_uploading_a_new_month_at_once(province: Province, tmp_path: Path) -> None:
    sites = [f"market-{n}" for n in range(4)]
    dsns = {site: province.add_site(site) for site in sites}
    expected: dict[str, list[str]] = {}
    for site in sites:
        expected[site] = hub_with_events(tmp_path / f"{site}.db", 3000, step_s=2.0)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(sites))

    def upload(site: str) -> None:
        try:
            with Store.open(tmp_path / f"{site}.db") as store:
                barrier.wait(10)
                uplink_of(store, dsns[site], batch=500).drain_once()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(site,)) for site in sites]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    for site in sites:
        assert sorted(province_ids(province, site)) == sorted(expected[site])
