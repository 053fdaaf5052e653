"""The site pages of the admin web on a hub: every gate's status and counts,
the double entries after a partition, and the gate filter of the log and of
"who was inside"."""

from __future__ import annotations

from flask.testing import FlaskClient

from kiosk.clock import FakeClock
from kiosk.store import GateStatusRow, Store
from tests.conftest import AppWith
from tests.web import log_in, record


def hub_client(app_with: AppWith) -> tuple[FlaskClient, Store]:
    app = app_with({"site.hub": "127.0.0.1:8883", "gate.id": "hub"})
    client = app.test_client()
    log_in(client, "guard")
    return client, app.extensions["gatekiosk"].store


def test_the_site_page_lists_every_gate_with_its_state_backlog_camera_and_counts(
    app_with: AppWith, clock: FakeClock
) -> None:
    client, store = hub_client(app_with)
    now = clock.now()
    store.site_gates.save(GateStatusRow("gate-1", True, now, 7, True, "picamera2", now))
    store.site_gates.save(GateStatusRow("gate-2", False, now, 3, False, "no frames", now))
    record(store, clock, gate_id="gate-1")
    record(store, clock, gate_id="gate-1", decision="deny", reason="expired", subject_hash="b" * 32)
    page = client.get("/site/status").get_data(as_text=True)
    assert 'href="/site/status"' in page  # in the menu on a site
    row1 = page.split('id="gate-gate-1"')[1].split("</tr>")[0]
    row2 = page.split('id="gate-gate-2"')[1].split("</tr>")[0]
    assert "online" in row1
    assert "7" in row1
    assert "working" in row1
    assert "<td>1</td>\n        <td>1</td>" in row1
    assert "offline" in row2
    assert "fault" in row2
    assert "no frames" in row2


def test_a_double_entry_at_two_gates_is_listed_and_stays(
    app_with: AppWith, clock: FakeClock
) -> None:
    client, store = hub_client(app_with)
    record(store, clock, gate_id="gate-1")
    clock.advance(60)
    record(store, clock, gate_id="gate-2")
    for _ in range(2):
        page = client.get("/site/status").get_data(as_text=True)
        conflicts = page.split('id="conflicts"')[1]
        assert "gate-1" in conflicts
        assert "gate-2" in conflicts


def test_the_log_and_who_was_inside_filter_by_gate(app_with: AppWith, clock: FakeClock) -> None:
    client, store = hub_client(app_with)
    store.site_gates.save(GateStatusRow("gate-2", True, None, 0, None, None, clock.now()))
    record(store, clock, gate_id="gate-1", display_name="Trần Thị Một")
    record(store, clock, gate_id="gate-2", display_name="Lê Văn Hai", subject_hash="c" * 32)
    clock.advance(60)
    log = client.get("/log", query_string={"gate": "gate-2"}).get_data(as_text=True)
    assert "Lê Văn Hai" in log
    assert "Trần Thị Một" not in log
    assert '<option value="gate-2" selected>' in log
    inside = client.get("/inside", query_string={"gate": "gate-1"}).get_data(as_text=True)
    assert "Trần Thị Một" in inside
    assert "Lê Văn Hai" not in inside
    everyone = client.get("/inside").get_data(as_text=True)
    assert "Trần Thị Một" in everyone
    assert "Lê Văn Hai" in everyone


def test_a_gate_alone_shows_no_site_menu(guard: FlaskClient) -> None:
    assert 'href="/site/status"' not in guard.get("/").get_data(as_text=True)


def test_admit_once_on_the_hub_names_the_gate_and_that_gate_alone_takes_it(
    app_with: AppWith, clock: FakeClock
) -> None:
    client, store = hub_client(app_with)
    store.site_gates.save(GateStatusRow("gate-2", True, None, 0, None, None, clock.now()))
    form = client.get("/admit").get_data(as_text=True)
    assert '<option value="gate-2">' in form
    token = form.split('name="csrf_token" value="')[1].split('"')[0]
    response = client.post(
        "/admit", data={"reason": "quên thẻ", "gate": "gate-2", "csrf_token": token}
    )
    assert response.status_code == 302
    (request,) = store.site.admits_for_gates(now=clock.now(), max_age_s=30)
    assert request.gate_id == "gate-2"
    # The hub's own kiosk (gate "hub") leaves it for gate-2.
    assert store.pending_admits(now=clock.now(), max_age_s=30, gate_id="hub") == []
    refused = client.post("/admit", data={"reason": "x", "gate": "gate-9", "csrf_token": token})
    assert refused.status_code == 400


def test_admit_once_on_a_site_gate_names_this_gate(app_with: AppWith) -> None:
    app = app_with({"site.hub": "127.0.0.1:8883", "gate.id": "gate-7"})
    client = app.test_client()
    log_in(client, "guard")
    assert "Gate: gate-7" in client.get("/admit").get_data(as_text=True)


def test_admit_once_on_a_lone_gate_is_unchanged(guard: FlaskClient) -> None:
    assert 'id="admit-gate"' not in guard.get("/admit").get_data(as_text=True)
