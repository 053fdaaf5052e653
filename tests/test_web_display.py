"""The gate screen: who may open it, what its state reports, and that the
page itself carries no event data and no inline code."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from kiosk.clock import FakeClock
from kiosk.store import KioskHealth, Store
from tests.web import AppWith, log_in, record

LAN = {"REMOTE_ADDR": "192.168.1.50"}
TOKEN = "s3cret-display-token-for-tests"


@pytest.fixture
def token_app(app_with: AppWith) -> Flask:
    return app_with({"web.display_token": TOKEN})


def healthy(store: Store, clock: FakeClock, *, fault: str | None = None) -> None:
    store.write_health(
        KioskHealth(
            gate_id="gate-1",
            updated_at=clock.now(),
            last_frame_at=clock.now(),
            fps=15.0,
            camera="synthetic",
            camera_ok=fault is None,
            camera_detail="",
            decoder="zxing",
            pin_backend="mock",
            clock_synced=True,
            fault=fault,
        )
    )


def state(client: FlaskClient, query: str = "") -> dict[str, Any]:
    response = client.get(f"/display/state{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    data: dict[str, Any] = response.get_json()
    return data


# --------------------------------------------------------------- who may see it


def test_screen_on_this_machine_opens_without_login(client: FlaskClient) -> None:
    page = client.get("/display")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Đưa mã QR vào camera" in text
    assert "Hold your QR code to the camera" in text
    assert client.get("/display/state").status_code == 200


def test_screen_over_ipv6_loopback_opens(client: FlaskClient) -> None:
    assert client.get("/display", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


def test_lan_screen_without_token_is_refused_in_both_languages(client: FlaskClient) -> None:
    for path in ("/display", "/display/state", "/display/state?after=0"):
        response = client.get(path, environ_base=LAN)
        assert response.status_code == 403
    text = client.get("/display", environ_base=LAN).get_data(as_text=True)
    assert "Không được phép" in text
    assert "Not allowed" in text


def test_lan_screen_with_the_display_token_opens(token_app: Flask) -> None:
    client = token_app.test_client()
    page = client.get(f"/display?token={TOKEN}", environ_base=LAN)
    assert page.status_code == 200
    # The page hands the token to its script, which carries it on every poll.
    assert f'data-token="{TOKEN}"' in page.get_data(as_text=True)
    response = client.get(f"/display/state?after=0&token={TOKEN}", environ_base=LAN)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "query", ["", "?token=", "?token=s3cret", "?token=s3cret-token-2", "?token=s3cret-tokén"]
)
def test_lan_screen_with_a_wrong_or_empty_token_is_refused(token_app: Flask, query: str) -> None:
    client = token_app.test_client()
    assert client.get(f"/display{query}", environ_base=LAN).status_code == 403
    assert client.get(f"/display/state{query}", environ_base=LAN).status_code == 403


@pytest.mark.parametrize("query", ["?token=", "?token=anything"])
def test_no_token_opens_the_screen_when_the_setting_is_empty(
    client: FlaskClient, query: str
) -> None:
    assert client.get(f"/display{query}", environ_base=LAN).status_code == 403
    assert client.get(f"/display/state{query}", environ_base=LAN).status_code == 403


def test_logged_in_lan_user_sees_the_screen(guard: FlaskClient) -> None:
    assert guard.get("/display", environ_base=LAN).status_code == 200
    assert guard.get("/display/state", environ_base=LAN).status_code == 200


def test_logged_in_users_page_does_not_reveal_the_token(token_app: Flask) -> None:
    client = token_app.test_client()
    log_in(client, "guard")
    page = client.get("/display", environ_base=LAN).get_data(as_text=True)
    assert TOKEN not in page


def test_forwarded_for_header_is_not_trusted(client: FlaskClient) -> None:
    spoofed = {"X-Forwarded-For": "127.0.0.1"}
    assert client.get("/display", environ_base=LAN, headers=spoofed).status_code == 403


def test_request_through_a_proxy_on_this_machine_is_not_local(client: FlaskClient) -> None:
    # A TLS proxy on the Pi connects from loopback on behalf of LAN clients.
    proxied = {"X-Forwarded-For": "192.168.1.50"}
    assert client.get("/display", headers=proxied).status_code == 403


# --------------------------------------------------------------- what the state says


def test_state_reports_a_recorded_decision_in_both_languages(
    client: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    before = state(client)
    assert before["event"] is None
    record(web_store, clock)
    data = state(client, f"?after={before['cursor']}")
    event = data["event"]
    assert event["decision"] == "allow"
    assert event["direction"] == "in"
    assert event["masked_name"] == "N. V. An"
    assert event["reason"] == "ok"
    assert event["message"] == {"vi": "Mời vào", "en": "Welcome, please enter"}
    assert event["warning"] is None
    assert data["occupancy"] == 1
    assert data["capacity"] == 0
    assert data["cursor"] > before["cursor"]


def test_state_shows_the_queue_no_full_name_and_no_id(
    client: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock)
    body = client.get("/display/state").get_data(as_text=True)
    assert "Nguyễn Văn An" not in body
    assert "0123" not in body
    assert "cccd" not in body


def test_state_reports_nothing_new_after_its_own_cursor(
    client: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock)
    first = state(client, "?after=0")
    assert first["event"] is not None
    again = state(client, f"?after={first['cursor']}")
    assert again["event"] is None
    assert again["cursor"] == first["cursor"]


def test_state_reports_the_newest_of_several_decisions(
    client: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock)
    clock.advance(0.2)
    record(web_store, clock, decision="deny", reason="antipassback", display_name="Lê Văn Tám")
    event = state(client, "?after=0")["event"]
    assert event["decision"] == "deny"
    assert event["masked_name"] == "L. V. Tám"
    assert event["message"]["vi"] == "Mã này đã được dùng để vào và chưa ra"


def test_denylist_refusal_shows_no_identity_to_the_queue(
    client: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock, decision="deny", reason="denylisted", display_name="Lê Văn Tám")
    event = state(client, "?after=0")["event"]
    assert event["decision"] == "deny"
    assert event["masked_name"] == ""
    assert event["identity"] is None
    assert "Tám" not in json.dumps(event, ensure_ascii=False)
    assert event["message"]["vi"] == "Không được phép vào. Vui lòng gặp bảo vệ"
    assert event["message"]["en"] == "Entry not permitted. Please see the guard"


def test_exit_is_reported_with_its_goodbye(
    client: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock, direction="out", reason="ok-exit")
    event = state(client)["event"]
    assert event["direction"] == "out"
    assert event["message"] == {"vi": "Tạm biệt, hẹn gặp lại", "en": "Goodbye, see you again"}


def test_allowed_with_a_warning_carries_the_warning_message(
    client: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock, warning="antipassback")
    event = state(client)["event"]
    assert event["decision"] == "allow"
    assert event["warning"]["vi"] == "Mã này đã được dùng để vào và chưa ra"
    assert event["warning"]["en"] == "This code was used to enter and has not exited"


def test_decision_older_than_the_window_is_not_reported(
    client: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock)
    clock.advance(9)
    assert state(client, "?after=0")["event"] is not None
    clock.advance(2)
    data = state(client, "?after=0")
    assert data["event"] is None
    assert data["cursor"] == web_store.latest_cursor()


def test_screen_follows_a_cursor_from_another_log(
    client: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock)
    data = state(client, "?after=999")
    assert data["event"] is None
    assert data["cursor"] == web_store.latest_cursor()


@pytest.mark.parametrize("after", ["abc", "-5", ""])
def test_odd_cursor_is_read_as_the_start(
    client: FlaskClient, web_store: Store, clock: FakeClock, after: str
) -> None:
    record(web_store, clock)
    assert state(client, f"?after={after}")["event"] is not None


def test_occupancy_comes_with_the_capacity(app_with: AppWith, clock: FakeClock) -> None:
    app = app_with({"policy.capacity": 120})
    try:
        store = app.extensions["gatekiosk"].store
        record(store, clock)
        record(store, clock, subject_hash="b" * 32, display_name="Trần Thị Bích")
        data = state(app.test_client())
        assert (data["occupancy"], data["capacity"]) == (2, 120)
    finally:
        app.extensions["gatekiosk"].store.close()


def test_hostile_name_comes_through_as_plain_text(
    client: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock, display_name='Trần "</script><img/src=x/onerror=alert(1)>')
    event = state(client)["event"]
    assert event["masked_name"] == 'T. "</script><img/src=x/onerror=alert(1)>'
    assert client.get("/display/state").mimetype == "application/json"


# --------------------------------------------------------------- faults


def test_fault_when_the_kiosk_never_reported(client: FlaskClient) -> None:
    assert state(client)["fault"] is True


def test_no_fault_while_the_kiosk_reports_healthy(
    client: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    healthy(web_store, clock)
    clock.advance(10)
    assert state(client)["fault"] is False


def test_fault_when_the_kiosk_stopped_reporting(
    client: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    healthy(web_store, clock)
    clock.advance(16)
    assert state(client)["fault"] is True


def test_fault_when_the_kiosk_reports_one(
    client: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    healthy(web_store, clock, fault="camera")
    assert state(client)["fault"] is True


# --------------------------------------------------------------- the page


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def page_tags(client: FlaskClient) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(client.get("/display").get_data(as_text=True))
    return parser.tags


def test_page_has_no_inline_script_or_style(client: FlaskClient) -> None:
    tags = page_tags(client)
    scripts = [attrs for tag, attrs in tags if tag == "script"]
    assert scripts
    assert all(attrs.get("src") for attrs in scripts)
    assert not [tag for tag, _ in tags if tag == "style"]
    assert not [tag for tag, attrs in tags if "style" in attrs]
    assert not [name for _, attrs in tags for name in attrs if name.startswith("on")]


def test_page_is_standalone_and_uses_only_local_assets(client: FlaskClient) -> None:
    tags = page_tags(client)
    assert not [tag for tag, _ in tags if tag in ("nav", "form", "a")]
    assets = [
        attrs.get("src") or attrs.get("href") for tag, attrs in tags if tag in ("script", "link")
    ]
    # The empty favicon stops the browser asking for /favicon.ico; it loads nothing.
    assets.remove("data:,")
    assert len(assets) == 2
    for url in assets:
        assert url is not None
        assert url.startswith("/static/display.")
        response = client.get(url, environ_base=LAN)
        assert response.status_code == 200
        response.close()


def test_page_carries_no_event_data(
    client: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock, display_name="Nguyễn <b>Văn</b> An")
    text = client.get("/display").get_data(as_text=True)
    assert "N. V. An" not in text
    assert "<b>" not in text
    assert "Mời vào" not in text


def test_page_stays_vietnamese_first_in_english_admin_language(client: FlaskClient) -> None:
    with client.session_transaction() as session:
        session["lang"] = "en"
    text = client.get("/display").get_data(as_text=True)
    assert text.index("Đưa mã QR vào camera") < text.index("Hold your QR code to the camera")
    assert "Đang ở trong" in text


# --------------------------------------------------------------- HC1: identity for the guard


def test_hcert_decision_shows_the_full_name_latin_name_and_birth_date(
    client: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(
        web_store,
        clock,
        kind="hcert",
        display_name="Nguyễn Thị Mai",
        masked_id=None,
        birth_date="1990-04-12",
        name_latin="NGUYEN THI MAI",
    )
    event = state(client)["event"]
    assert event["identity"] == {
        "name": "Nguyễn Thị Mai",
        "name_latin": "NGUYEN THI MAI",
        "birth_date": "12/04/1990",
    }
    assert event["masked_name"] == "N. T. Mai"


def test_cccd_decision_keeps_the_masked_name_only(
    client: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock, kind="cccd", birth_date="1990-03-15", name_latin="NGUYEN VAN AN")
    event = state(client)["event"]
    assert event["identity"] is None
    assert event["masked_name"] == "N. V. An"
    body = client.get("/display/state").get_data(as_text=True)
    assert "Nguyễn Văn An" not in body
    assert "1990" not in body
    assert "NGUYEN" not in body
