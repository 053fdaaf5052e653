"""A gate whose clock is wrong: events recorded before the clock was
synchronised are flagged everywhere a manager looks (the log, both exports,
the dashboard's live feed and health), and the log keeps the order things
happened in when the wall clock jumps backwards -- a Pi has no real-time
clock, and NTP steps it when it first synchronises."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import openpyxl
import pytest
from flask import Flask
from flask.testing import FlaskClient
from gpiozero.pins.mock import MockFactory

from gate_controller.gpio import GpiozeroSignals
from kiosk.camera import SyntheticSource
from kiosk.clock import FakeClock
from kiosk.codes import Registry, default_formats
from kiosk.decoder import ZxingDecoder
from kiosk.export import EXPORT_COLUMNS
from kiosk.policy import PolicyRules
from kiosk.samples import VISITOR_CCCD, VISITOR_PC_COVID, VISITOR_UNRECOGNISED
from kiosk.scanner import GateParts, GateSetup, Scanner
from kiosk.store import Store
from tests.test_scanner import KEY, PINS, SETTINGS, visit

JUMP_BACK = timedelta(hours=2)
CLOCK_COLUMN = [c.key for c in EXPORT_COLUMNS].index("clock_synced")
ID_COLUMN = [c.key for c in EXPORT_COLUMNS].index("event_id")


@pytest.fixture
def gate(app: Flask, web_store: Store, clock: FakeClock) -> Iterator[Scanner]:
    """A real gate recording into the web's database, on the web's fake clock."""
    gate_id = app.extensions["gatekiosk"].settings["gate.id"]
    factory = MockFactory()
    signals = GpiozeroSignals(PINS, pin_factory=factory)
    scanner = Scanner(
        parts=GateParts(
            SyntheticSource(
                visit(VISITOR_CCCD.payload, VISITOR_PC_COVID.payload, VISITOR_UNRECOGNISED.payload),
                clock=clock,
                fps=10.0,
                seed=5,
            ),
            ZxingDecoder(),
            signals,
            pin_backend="MockFactory",
        ),
        registry=Registry(default_formats()),
        store=web_store,
        clock=clock,
        setup=GateSetup(PolicyRules(), replace(SETTINGS, gate_id=gate_id)),
        hash_key=KEY,
    )
    yield scanner
    signals.close()
    factory.close()


@pytest.fixture
def recorded(gate: Scanner, clock: FakeClock, manager: FlaskClient) -> list[str]:
    """The gate boots unsynchronised and decides one visitor; then NTP steps
    the clock two hours back and it decides two more. The ids, in the order
    the gate decided them."""
    clock.is_synchronised = False
    ids: list[str] = []
    while not ids:
        ids += [o.event.id for o in gate.step() if o.event is not None]
    assert "Clock synchronised" in (dashboard := manager.get("/").get_data(as_text=True))
    assert _health_clock(dashboard) == "no"

    with clock._lock:
        clock.wall -= JUMP_BACK
    clock.is_synchronised = True
    while not gate.source.exhausted:
        ids += [o.event.id for o in gate.step() if o.event is not None]
    # More than the health interval passed since the jump: the kiosk has reported.
    assert _health_clock(manager.get("/").get_data(as_text=True)) == "yes"
    assert len(ids) == 3
    return ids


def _health_clock(dashboard: str) -> str:
    match = re.search(r"Clock synchronised</dt><dd class=\"\w+\">(\w+)</dd>", dashboard)
    assert match, "no clock line in the kiosk health"
    return match.group(1)


def test_the_wall_clock_really_went_backwards(recorded: list[str], web_store: Store) -> None:
    events = [web_store.event_by_id(i) for i in recorded]
    first, *later = [e for e in events if e is not None]
    assert all(e.at < first.at for e in later)
    assert [first.clock_synced, *(e.clock_synced for e in later)] == [False, True, True]


def test_log_page_lists_newest_first_by_sequence_and_flags_the_unsynchronised(
    recorded: list[str], manager: FlaskClient
) -> None:
    html = manager.get("/log").get_data(as_text=True)
    rows = re.findall(r"<tr class=\"(allow|deny)( unsynced)?\">.*?/log/([0-9a-f]{32})", html, re.S)
    assert [event_id for _, _, event_id in rows] == recorded[::-1]
    assert [bool(flag) for _, flag, _ in rows] == [False, False, True]


def test_live_feed_sends_events_in_the_order_decided_with_their_flag(
    recorded: list[str], manager: FlaskClient
) -> None:
    events = manager.get("/api/live?after=0").get_json()["events"]
    assert [e["id"] for e in events] == recorded
    assert [e["clock_synced"] for e in events] == [False, True, True]


def test_csv_export_keeps_the_order_decided_and_flags_the_unsynchronised(
    recorded: list[str], manager: FlaskClient
) -> None:
    data = manager.get("/export.csv").get_data()
    _header, *rows = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    assert [row[ID_COLUMN] for row in rows] == recorded
    assert [row[CLOCK_COLUMN] for row in rows] == ["FALSE", "TRUE", "TRUE"]


def test_xlsx_export_keeps_the_order_decided_and_flags_the_unsynchronised(
    recorded: list[str], manager: FlaskClient
) -> None:
    with manager.get("/export.xlsx") as response:
        workbook = openpyxl.load_workbook(io.BytesIO(response.get_data()))
    _header, *rows = workbook.active.iter_rows(values_only=True)
    assert [row[ID_COLUMN] for row in rows] == recorded
    assert [row[CLOCK_COLUMN] for row in rows] == [False, True, True]


def test_dashboard_counts_the_unsynchronised_events_and_links_to_them(
    recorded: list[str], manager: FlaskClient
) -> None:
    dashboard = manager.get("/").get_data(as_text=True)
    warning = re.search(r'<p [^>]*id="unsynced-events">(.*?)</p>', dashboard, re.S)
    assert warning, "no warning about unsynchronised events"
    assert "1 event in the log was recorded while the gate clock was not synchronised" in (
        warning.group(1)
    )
    link = re.search(r'href="([^"]+)"', warning.group(1))
    assert link, "no link to the unsynchronised events"
    assert link.group(1) == "/log?clock=unsynced"
    listed = manager.get(link.group(1)).get_data(as_text=True)
    assert re.findall(r'href="/log/([0-9a-f]{32})"', listed) == recorded[:1]
    synced = manager.get("/log?clock=synced").get_data(as_text=True)
    assert re.findall(r'href="/log/([0-9a-f]{32})"', synced) == recorded[:0:-1]
    # The filter carries into the downloads.
    assert 'href="/export.csv?clock=unsynced"' in listed
    data = manager.get("/export.csv?clock=unsynced").get_data().decode("utf-8-sig")
    _header, *rows = csv.reader(io.StringIO(data, newline=""))
    assert [row[ID_COLUMN] for row in rows] == recorded[:1]


def test_no_warning_when_every_event_had_a_synchronised_clock(manager: FlaskClient) -> None:
    assert 'id="unsynced-events"' not in manager.get("/").get_data(as_text=True)


def test_an_unknown_clock_state_is_reported_and_ignored(
    recorded: list[str], manager: FlaskClient
) -> None:
    listed = manager.get("/log?clock=sometimes").get_data(as_text=True)
    assert "Unknown clock state; it is ignored." in listed
    assert len(re.findall(r'href="/log/([0-9a-f]{32})"', listed)) == len(recorded)
