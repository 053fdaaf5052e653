"""The province key (issue 18): off by default, and then nothing of it exists
anywhere; on, the same person gets a different subject hash at each site but
one ``province_subject_hash`` at the province.

The whole path is real: the gate built by the composition root from its
settings (synthetic camera, real decoder, MockFactory pins, a real SQLite
file), its outbox read and sent in the sync's wire format, the hub's
ingest into its own SQLite file, and ``gatekiosk uplink`` into a real
PostgreSQL (tests/postgres_fixture.py).
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import sqlite3
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from gpiozero.pins.mock import MockFactory

from kiosk.camera import SyntheticSource
from kiosk.clock import FakeClock
from kiosk.compose import build_gate
from kiosk.config import Settings, load_settings
from kiosk.errors import ConfigError
from kiosk.privacy import KEY_BYTES, load_or_create_key, load_province_key, subject_hash
from kiosk.province.outbox import ProvinceOutbox
from kiosk.province.uplink import Uplink, UplinkSettings
from kiosk.samples import VISITOR_CCCD
from kiosk.site.uplink import EventBatch, decode_batch, encode_batch
from kiosk.store import Store
from kiosk.synthetic import Scene
from tests.postgres_fixture import PostgresServer, Province, postgres_fixture, province_fixture  # noqa: F401
from tests.test_scanner import relay_energised
from tests.waiting import wait_until
from tests.web import record

PERSON = "person:079201000123"
"""The subject of :data:`VISITOR_CCCD` (a chip ID card with its full number)."""


def write_key(path: Path, key: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(key)
    os.chmod(path, mode)
    return path


def gate_settings(data_dir: Path, gate_id: str, **values: Any) -> Settings:
    """A gate of a site (its events marked for the hub), with simulated pins."""
    return load_settings(
        overrides={
            "gate.data_dir": str(data_dir),
            "gate.id": gate_id,
            "gate.mode": "both",
            "site.hub": "hub.local:8883",
            "pins.backend": "mock",
            "pins.relay_pulse_ms": 50,
            "pins.light_ms": 100,
            **values,
        },
        env={},
    )


@pytest.fixture
def scan() -> Iterator[Callable[[Settings, FakeClock], None]]:
    """Shows :data:`VISITOR_CCCD` once to a gate built from settings, as
    ``gatekiosk run`` builds it, and lets it decide and record."""
    with ExitStack() as stack:

        def show(settings: Settings, clock: FakeClock) -> None:
            factory = MockFactory()
            stack.callback(factory.close)
            scenes = [Scene((), 0.5), Scene((VISITOR_CCCD.payload,), 2.0), Scene((), 3.0)]
            source = SyntheticSource(scenes, clock=clock, fps=10.0, seed=3)
            with build_gate(
                settings, clock=clock, pin_factory=factory, source=source, live=False
            ) as gate:
                outcomes = []
                while not gate.scanner.source.exhausted:
                    for outcome in gate.scanner.step():
                        outcomes.append(outcome)
                        wait_until(lambda: not relay_energised(factory))
            assert [(o.decision.verdict, o.decision.reason) for o in outcomes] == [("allow", "ok")]

        yield show


def sync_to_hub(gate: Settings, hub_db: Path) -> None:
    """The gate's pending events through the sync's wire format into the hub's database."""
    with Store.open(gate.db_path, boot_id="sync") as store, Store.open(hub_db) as hub:
        pending = store.outbox.pending(limit=100)
        batch = decode_batch(encode_batch(gate["gate.id"], pending.events))
        assert isinstance(batch, EventBatch)
        ingested = hub.site_log.ingest(batch.gate_id, batch.events)
        store.outbox.mark_uploaded(ingested.stored)
    assert ingested.inserted == len(pending.events) > 0


def uplink(hub_db: Path, dsn: str, clock: FakeClock) -> None:
    with Store.open(hub_db) as hub:
        stats = Uplink(
            ProvinceOutbox(hub.connection), UplinkSettings(dsn=dsn), clock=clock
        ).drain_once()
    assert stats.sent > 0


def column(db: Path, name: str) -> list[object]:
    with closing(sqlite3.connect(db)) as conn:
        return [row[0] for row in conn.execute(f"SELECT {name} FROM events ORDER BY rowid")]


def two_sites(
    tmp_path: Path,
    province: Province,
    scan: Callable[[Settings, FakeClock], None],
    **values: Any,
) -> tuple[list[Settings], list[Path]]:
    """One gate and one hub at each of two sites, the visitor scanned at both,
    everything sent up to the province."""
    clock = FakeClock()
    gates, hubs = [], []
    for site in ("market-a", "market-b"):
        gate = gate_settings(tmp_path / site / "gate", f"{site}-gate", **values)
        hub_db = tmp_path / site / "hub.db"
        scan(gate, clock)
        sync_to_hub(gate, hub_db)
        uplink(hub_db, province.add_site(site), clock)
        gates.append(gate)
        hubs.append(hub_db)
        clock.advance(600)
    return gates, hubs


def test_off_by_default_and_then_null_at_the_gate_the_hub_and_the_province(
    tmp_path: Path, province: Province, scan: Callable[[Settings, FakeClock], None]
) -> None:
    assert load_settings(env={})["privacy.province_key_file"] == ""
    gates, hubs = two_sites(tmp_path, province, scan)
    for gate, hub_db in zip(gates, hubs, strict=True):
        assert gate.province_key_path is None
        assert column(gate.db_path, "province_subject_hash") == [None]
        assert column(hub_db, "province_subject_hash") == [None]
        assert column(hub_db, "subject_hash") != [None]
    rows = province.query(
        "SELECT site_id, subject_hash IS NOT NULL, province_subject_hash "
        "FROM province.events ORDER BY site_id"
    )
    assert rows == [("market-a", True, None), ("market-b", True, None)]


def test_with_the_province_key_one_person_is_one_hash_at_the_province_not_at_the_sites(
    tmp_path: Path,
    province: Province,
    scan: Callable[[Settings, FakeClock], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    province_key = secrets.token_bytes(KEY_BYTES)
    key_file = write_key(tmp_path / "province.key", province_key)
    caplog.set_level(logging.DEBUG)

    setting = {"privacy.province_key_file": str(key_file)}
    gates, hubs = two_sites(tmp_path, province, scan, **setting)

    site_keys = [load_or_create_key(gate.key_path) for gate in gates]
    assert site_keys[0] != site_keys[1]  # one subject key per site
    expected = subject_hash(province_key, PERSON)
    for gate, hub_db, site_key in zip(gates, hubs, site_keys, strict=True):
        assert column(gate.db_path, "province_subject_hash") == [expected]
        assert column(hub_db, "province_subject_hash") == [expected]
        assert column(hub_db, "subject_hash") == [subject_hash(site_key, PERSON)]
    rows = province.query(
        "SELECT site_id, subject_hash, province_subject_hash FROM province.events ORDER BY site_id"
    )
    assert [row[0] for row in rows] == ["market-a", "market-b"]
    assert rows[0][1] != rows[1][1]  # the sites' hashes do not meet...
    assert rows[0][2] == rows[1][2] == expected  # ...the province's do
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert expected not in logged
    assert province_key.hex() not in logged


def test_a_relative_key_file_is_inside_the_data_folder(tmp_path: Path) -> None:
    settings = gate_settings(tmp_path, "g", **{"privacy.province_key_file": "province.key"})
    assert settings.province_key_path == tmp_path / "province.key"


# -- the sync's wire format -------------------------------------------------------------


def old_gate_batch(**extra: object) -> bytes:
    """A batch as a gate older than the province key sends it (no such field)."""
    event = {
        "id": "e" * 32,
        "boot_id": "b" * 32,
        "seq": 1,
        "gate_id": "old-gate",
        "at_utc": "2026-01-05T01:00:00.000000Z",
        "utc_offset_min": 420,
        "clock_synced": True,
        "direction": "in",
        "decision": "allow",
        "reason": "ok",
        "kind": "cccd",
        "override": False,
        "subject_hash": "a" * 32,
        **extra,
    }
    return json.dumps({"v": 1, "gate": "old-gate", "events": [event]}).encode()


def test_a_batch_from_a_gate_without_the_field_is_taken_with_null(tmp_path: Path) -> None:
    batch = decode_batch(old_gate_batch())
    assert isinstance(batch, EventBatch)
    assert batch.events[0].province_subject_hash is None
    with Store.open(tmp_path / "hub.db") as hub:
        assert hub.site_log.ingest(batch.gate_id, batch.events).inserted == 1
    assert column(tmp_path / "hub.db", "province_subject_hash") == [None]


def test_the_field_travels_in_the_batch_and_is_left_out_when_empty() -> None:
    batch = decode_batch(old_gate_batch(province_subject_hash="c" * 32))
    assert isinstance(batch, EventBatch)
    (event,) = batch.events
    assert event.province_subject_hash == "c" * 32
    assert b'"province_subject_hash":"' + b"c" * 32 in encode_batch("old-gate", [event])
    without = decode_batch(old_gate_batch())
    assert isinstance(without, EventBatch)
    assert b"province_subject_hash" not in encode_batch("old-gate", without.events)


def test_a_province_hash_that_is_not_text_is_refused() -> None:
    refused = decode_batch(old_gate_batch(province_subject_hash=42))
    assert not isinstance(refused, EventBatch)
    assert "province_subject_hash" in refused.detail


# -- the key file -------------------------------------------------------------------------


def test_a_missing_key_file_is_a_clear_error_in_both_languages(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_province_key(tmp_path / "province.key")
    message = str(error.value)
    assert "privacy.province_key_file" in message
    assert "không có tệp khóa cấp tỉnh" in message
    assert "the province key file is missing" in message
    assert str(tmp_path / "province.key") in message


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    key = secrets.token_bytes(KEY_BYTES)
    path = write_key(tmp_path / "province.key", key, mode=0o644)
    with pytest.raises(ConfigError, match="chmod 600") as error:
        load_province_key(path)
    assert key.hex() not in str(error.value)


def test_a_short_key_file_is_refused(tmp_path: Path) -> None:
    path = write_key(tmp_path / "province.key", b"short")
    with pytest.raises(ConfigError, match="too short"):
        load_province_key(path)


def test_an_unreadable_key_file_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "province.key"
    folder.mkdir(mode=0o700)  # a folder where the file should be: cannot be read as one
    with pytest.raises(ConfigError, match="cannot read the province key file"):
        load_province_key(folder)


def test_a_gate_with_the_setting_and_no_key_file_does_not_start(tmp_path: Path) -> None:
    settings = gate_settings(tmp_path, "g", **{"privacy.province_key_file": "province.key"})
    factory = MockFactory()
    try:
        with (
            pytest.raises(ConfigError, match="the province key file is missing"),
            build_gate(settings, clock=FakeClock(), pin_factory=factory, live=False),
        ):
            pass
    finally:
        factory.close()
    assert not (tmp_path / "province.key").exists()  # never made up by the gate


# -- never on a page or in an export --------------------------------------------------------


def test_the_province_hash_is_on_no_page_and_in_no_export(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    hashed = "9f" * 16
    record(web_store, clock, province_subject_hash=hashed)
    (event,) = web_store.recent_events()
    assert event.province_subject_hash == hashed  # stored, and read back with the event
    for path in (f"/log/{event.id}", "/log", "/inside", "/", "/api/live", "/export.csv"):
        response = manager.get(path)
        body = response.get_data(as_text=True)
        response.close()
        assert response.status_code == 200, path
        assert hashed not in body, path
    workbook = manager.get("/export.xlsx")
    data = workbook.get_data()
    workbook.close()
    assert workbook.status_code == 200
    with zipfile.ZipFile(io.BytesIO(data)) as sheets:
        for name in sheets.namelist():
            assert hashed.encode() not in sheets.read(name), name
