"""The managers' area (settings, denylist, users, audit) and the guards' admit once."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from admin_web.admin import _lockout_problem, normalise_id_number
from kiosk.clock import FakeClock
from kiosk.privacy import subject_hash
from kiosk.store import NewEvent, Store
from tests.web import csrf_token

HOSTILE = '<script>alert("x")</script>'
ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
ID_NUMBER = "079123456789"


def post(
    client: FlaskClient, path: str, data: Mapping[str, object] | None = None, **kw: Any
) -> TestResponse:
    """A POST with the client's CSRF token, as the pages' forms send it."""
    return client.post(path, data={"csrf_token": csrf_token(client, "/"), **(data or {})}, **kw)


def settings_form(**changes: object) -> dict[str, object]:
    """The settings form as the page fills it in, with ``changes`` (dots as __)."""
    form: dict[str, object] = {
        "gate.id": "gate-1",
        "gate.site_name": "",
        "codes.declaration_validity_h": "24",
        "gate.mode": "both",
        "gate.timezone": "Asia/Ho_Chi_Minh",
        "policy.capacity": "0",
        "policy.antipassback": "soft",
        "kinds": ["declaration", "staff-pass", "cccd", "pc-covid", "hcert"],
        "policy.presence_expiry_h": "12",
        "scan.hysteresis_s": "2",
        "pins.relay_pulse_ms": "1500",
        "privacy.retention_days": "21",
    }
    form.update({name.replace("__", "."): value for name, value in changes.items()})
    return form


def user_id(store: Store, name: str) -> int:
    user = store.user_by_name(name)
    assert user is not None
    return user.id


# --------------------------------------------------------------------------- who may do what

MANAGER_PAGES = ["/settings", "/denylist", "/users", "/audit"]
MANAGER_POSTS = [
    "/settings",
    "/denylist/add",
    "/denylist/remove",
    "/users/add",
    "/users/1/disable",
    "/users/1/enable",
    "/users/1/password",
]


@pytest.mark.parametrize("path", [*MANAGER_PAGES, "/admit"])
def test_anonymous_get_is_sent_to_login(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response.location.startswith(f"/login?next={path}")


@pytest.mark.parametrize("path", [*MANAGER_POSTS, "/admit"])
def test_anonymous_post_is_refused(client: FlaskClient, path: str) -> None:
    token = csrf_token(client, "/login")
    assert client.post(path, data={"csrf_token": token}).status_code == 401


def test_anonymous_admit_status_api_is_refused(client: FlaskClient) -> None:
    assert client.get("/api/admit/1").status_code == 401


@pytest.mark.parametrize("path", MANAGER_PAGES)
def test_guard_may_not_open_manager_pages(guard: FlaskClient, path: str) -> None:
    assert guard.get(path).status_code == 403


@pytest.mark.parametrize("path", MANAGER_POSTS)
def test_guard_may_not_post_to_manager_pages(guard: FlaskClient, path: str) -> None:
    assert post(guard, path).status_code == 403


@pytest.mark.parametrize("path", [*MANAGER_PAGES, "/admit"])
def test_manager_opens_every_page(manager: FlaskClient, path: str) -> None:
    response = manager.get(path)
    assert response.status_code == 200
    assert "Content-Security-Policy" in response.headers


def test_guard_opens_admit_once(guard: FlaskClient) -> None:
    assert guard.get("/admit").status_code == 200


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/settings", settings_form()),
        ("/denylist/add", {"id_number": ID_NUMBER, "label": "x", "note": "y"}),
        (
            "/users/add",
            {"name": "lan", "role": "guard", "password": "p" * 12, "password2": "p" * 12},
        ),
        ("/admit", {"reason": "delivery"}),
    ],
)
def test_post_without_csrf_token_is_refused(
    manager: FlaskClient, web_store: Store, path: str, data: dict[str, object]
) -> None:
    version = web_store.settings_version()
    response = manager.post(path, data=data)
    assert response.status_code == 400
    assert web_store.settings_version() == version
    assert web_store.denylist_entries() == []
    assert web_store.user_by_name("lan") is None
    assert web_store.admit_request(1) is None


# --------------------------------------------------------------------------- settings


def test_settings_page_shows_effective_values_and_help(manager: FlaskClient) -> None:
    page = manager.get("/settings").get_data(as_text=True)
    assert 'name="gate.id" value="gate-1"' in page
    assert "Most people inside at once; 0 for no limit." in page
    assert '<option value="both" selected>' in page
    assert 'name="kinds" value="cccd" checked' in page
    assert 'type="hidden" name="csrf_token"' in page


def test_saving_settings_bumps_the_version_and_stores_the_changes(
    manager: FlaskClient, web_store: Store
) -> None:
    version = web_store.settings_version()
    response = post(
        manager,
        "/settings",
        settings_form(
            policy__capacity="150",
            gate__mode="entry",
            kinds=["declaration", "staff-pass", "hcert"],
            scan__hysteresis_s="3.5",
        ),
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert "Saved. The gate applies the new settings within a few seconds." in response.get_data(
        as_text=True
    )
    assert web_store.settings_version() == version + 1
    assert web_store.site_settings() == {
        "policy.capacity": 150,
        "gate.mode": "entry",
        "policy.allowed_kinds": "declaration,staff-pass,hcert",
        "scan.hysteresis_s": 3.5,
    }
    page = manager.get("/settings").get_data(as_text=True)
    assert 'name="policy.capacity" type="number" value="150"' in page
    assert 'name="kinds" value="cccd" checked' not in page


def test_saving_settings_is_audited_with_old_and_new_values(
    manager: FlaskClient, web_store: Store
) -> None:
    post(manager, "/settings", settings_form(policy__capacity="80"))
    (entry,) = [e for e in web_store.audit_entries() if e.action == "settings"]
    assert entry.actor == "manager1"
    assert entry.detail == {"policy.capacity": {"old": 0, "new": 80}}


def test_unchanged_settings_save_nothing(manager: FlaskClient, web_store: Store) -> None:
    version = web_store.settings_version()
    response = post(manager, "/settings", settings_form(), follow_redirects=True)
    assert "Nothing changed." in response.get_data(as_text=True)
    assert web_store.settings_version() == version
    assert web_store.site_settings() == {}


def test_invalid_settings_show_every_problem_keep_the_values_and_save_nothing(
    manager: FlaskClient, web_store: Store
) -> None:
    version = web_store.settings_version()
    response = post(
        manager,
        "/settings",
        settings_form(
            policy__capacity="-1",
            gate__timezone="Mars/Olympus",
            gate__mode="entry",
            pins__relay_pulse_ms="fast",
        ),
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "-1 is below the minimum 0" in page
    assert "unknown time zone" in page
    assert "Enter a whole number." in page
    assert 'name="pins.relay_pulse_ms" type="number" value="fast"' in page
    assert 'value="Mars/Olympus"' in page
    assert 'name="policy.capacity" type="number" value="-1"' in page
    assert '<option value="entry" selected>' in page
    assert web_store.settings_version() == version
    assert web_store.site_settings() == {}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kinds": []}, "Accept at least one kind of code"),
        ({"scan__hysteresis_s": "nan"}, "Enter a number."),
        ({"pins__relay_pulse_ms": "fast"}, "Enter a whole number."),
        ({"policy__capacity": "1.5"}, "Enter a whole number."),
        ({"scan__hysteresis_s": "0"}, "0.0 is below the minimum 0.1"),
        ({"gate__id": "  "}, "must not be empty"),
        ({"gate__mode": "sideways"}, "is not one of entry, exit, both"),
    ],
)
def test_each_bad_setting_is_refused_with_a_message(
    manager: FlaskClient, web_store: Store, changes: dict[str, object], message: str
) -> None:
    response = post(manager, "/settings", settings_form(**changes))
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert web_store.site_settings() == {}


def test_hostile_gate_name_is_escaped(manager: FlaskClient) -> None:
    post(manager, "/settings", settings_form(gate__id=HOSTILE))
    page = manager.get("/settings").get_data(as_text=True)
    assert HOSTILE not in page
    assert ESCAPED in page


# --------------------------------------------------------------------------- denylist


def test_denylist_add_hashes_the_id_number_and_never_keeps_it(
    app: Flask, manager: FlaskClient, web_store: Store, tmp_path: Path
) -> None:
    response = post(
        manager,
        "/denylist/add",
        {"id_number": f" {ID_NUMBER} ", "label": "Trần Văn B", "note": "stole a forklift"},
        follow_redirects=True,
    )
    assert response.status_code == 200
    key = app.extensions["gatekiosk"].hash_key
    assert web_store.is_denylisted(subject_hash(key, f"person:{ID_NUMBER}"))
    page = response.get_data(as_text=True)
    assert "Trần Văn B" in page
    assert "stole a forklift" in page
    assert "05/01/2026 08:00:00" in page  # added at, in the site's time zone
    assert "manager1" in page
    assert ID_NUMBER not in page

    (entry,) = [e for e in web_store.audit_entries() if e.action == "denylist-add"]
    assert entry.detail["label"] == "Trần Văn B"
    assert ID_NUMBER not in repr(entry)
    for path in tmp_path.iterdir():
        if path.is_file():
            assert ID_NUMBER.encode() not in path.read_bytes(), path.name


def test_denylist_add_accepts_a_passport_number(app: Flask, manager: FlaskClient) -> None:
    post(manager, "/denylist/add", {"id_number": "c1234567", "label": "A", "note": "B"})
    key = app.extensions["gatekiosk"].hash_key
    assert app.extensions["gatekiosk"].store.is_denylisted(subject_hash(key, "pc-covid:C1234567"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("079123456789", "079123456789"),
        ("079 123 456 789", "079123456789"),
        ("123456789", "123456789"),
        ("c1234567", "C1234567"),
        ("12345678", None),  # 8 digits: neither CMND nor CCCD
        ("1234567890123", None),
        ("ABCDEFGH", None),  # no digit: a word, not a passport number
        ("B12<3456", None),
        ("", None),
    ],
)
def test_id_numbers_are_normalised_or_refused(text: str, expected: str | None) -> None:
    assert normalise_id_number(text) == expected


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"id_number": "12", "label": "A", "note": "B"}, "An ID number has 9 to 12 digits"),
        ({"id_number": "", "label": "A", "note": "B"}, "Enter the ID number."),
        ({"id_number": ID_NUMBER, "label": "", "note": "B"}, "Enter a label"),
        ({"id_number": ID_NUMBER, "label": "A", "note": " "}, "Enter a note"),
        ({"id_number": ID_NUMBER, "label": "A" * 101, "note": "B"}, "at most 100 characters"),
    ],
)
def test_denylist_add_refuses_bad_input_and_keeps_what_was_typed(
    manager: FlaskClient, web_store: Store, form: dict[str, str], message: str
) -> None:
    response = post(manager, "/denylist/add", form)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in page
    assert f'name="label" value="{form["label"]}"' in page
    assert web_store.denylist_entries() == []


def test_denylist_remove_lifts_the_denial_and_is_audited(
    app: Flask, manager: FlaskClient, web_store: Store
) -> None:
    post(manager, "/denylist/add", {"id_number": ID_NUMBER, "label": "Trần Văn B", "note": "n"})
    (entry,) = web_store.denylist_entries()
    response = post(
        manager, "/denylist/remove", {"subject": entry.subject_hash}, follow_redirects=True
    )
    assert "Removed Trần Văn B from the denylist." in response.get_data(as_text=True)
    assert web_store.denylist_entries() == []
    (removal,) = [e for e in web_store.audit_entries() if e.action == "denylist-remove"]
    assert removal.detail == {"label": "Trần Văn B"}


def test_denylist_remove_of_an_unknown_entry_says_so(manager: FlaskClient) -> None:
    response = post(manager, "/denylist/remove", {"subject": "0" * 32}, follow_redirects=True)
    assert "no longer on the denylist" in response.get_data(as_text=True)
    assert post(manager, "/denylist/remove", {"subject": "x"}).status_code == 400


def test_hostile_denylist_label_and_note_are_escaped(manager: FlaskClient) -> None:
    post(manager, "/denylist/add", {"id_number": ID_NUMBER, "label": HOSTILE, "note": HOSTILE})
    for path in ("/denylist", "/audit"):
        page = manager.get(path).get_data(as_text=True)
        assert HOSTILE not in page
        assert ESCAPED in page


# --------------------------------------------------------------------------- users


def test_users_page_lists_accounts(manager: FlaskClient) -> None:
    page = manager.get("/users").get_data(as_text=True)
    assert "manager1" in page
    assert "guard1" in page
    assert "05/01/2026 08:00:00" in page


def test_manager_adds_a_user_who_can_log_in(
    app: Flask, manager: FlaskClient, web_store: Store
) -> None:
    response = post(
        manager,
        "/users/add",
        {"name": "lan", "role": "guard", "password": "lan-pass-1234", "password2": "lan-pass-1234"},
        follow_redirects=True,
    )
    assert "Added lan." in response.get_data(as_text=True)
    added = web_store.user_by_name("lan")
    assert added is not None
    assert added.role == "guard"
    fresh = app.test_client()
    token = csrf_token(fresh)
    login = fresh.post(
        "/login", data={"name": "lan", "password": "lan-pass-1234", "csrf_token": token}
    )
    assert login.status_code == 302
    (entry,) = [e for e in web_store.audit_entries() if e.action == "user-add"]
    assert entry.detail == {"user": "lan", "role": "guard"}
    assert "lan-pass-1234" not in repr(web_store.audit_entries())


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": "lan", "password": "lan-pass-1234", "password2": "other-pass-1234"}, "differ"),
        ({"name": "lan", "password": "short", "password2": "short"}, "at least 10 characters"),
        ({"name": "l a n", "password": "lan-pass-1234", "password2": "lan-pass-1234"}, "2 to 40"),
        ({"name": "GUARD1", "password": "lan-pass-1234", "password2": "lan-pass-1234"}, "exists"),
    ],
)
def test_adding_a_user_refuses_bad_input_and_keeps_the_name(
    manager: FlaskClient, web_store: Store, form: dict[str, str], message: str
) -> None:
    response = post(manager, "/users/add", {"role": "manager", **form})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in page
    assert f'name="name" value="{form["name"]}"' in page
    assert '<option value="manager" selected>' in page
    assert form["password"] not in page
    assert len(web_store.users()) == 2


def test_a_disabled_users_session_stops_on_the_next_request(
    manager: FlaskClient, guard: FlaskClient, web_store: Store
) -> None:
    assert guard.get("/admit").status_code == 200
    guard_id = user_id(web_store, "guard1")
    response = post(manager, f"/users/{guard_id}/disable", follow_redirects=True)
    assert "guard1 is disabled and logged out." in response.get_data(as_text=True)
    assert guard.get("/admit").status_code == 302
    (entry,) = [e for e in web_store.audit_entries() if e.action == "user-disable"]
    assert entry.detail == {"user": "guard1"}

    post(manager, f"/users/{guard_id}/enable")
    user = web_store.user_by_id(guard_id)
    assert user is not None
    assert not user.disabled
    assert web_store.audit_entries()[0].action == "user-enable"


def test_a_manager_cannot_disable_themselves(manager: FlaskClient, web_store: Store) -> None:
    response = post(manager, f"/users/{user_id(web_store, 'manager1')}/disable")
    assert response.status_code == 400
    assert "You cannot disable your own account." in response.get_data(as_text=True)
    assert web_store.count_managers() == 1


def test_disabling_managers_always_leaves_one_enabled(
    app: Flask, manager: FlaskClient, web_store: Store
) -> None:
    post(
        manager,
        "/users/add",
        {
            "name": "boss",
            "role": "manager",
            "password": "boss-pass-1234",
            "password2": "boss-pass-1234",
        },
    )
    boss = app.test_client()
    token = csrf_token(boss)
    boss.post("/login", data={"name": "boss", "password": "boss-pass-1234", "csrf_token": token})
    assert post(boss, f"/users/{user_id(web_store, 'manager1')}/disable").status_code == 302
    assert web_store.count_managers() == 1
    assert post(boss, f"/users/{user_id(web_store, 'boss')}/disable").status_code == 400
    assert web_store.count_managers() == 1


def test_the_last_enabled_manager_cannot_be_disabled_by_anyone(
    app: Flask, web_store: Store
) -> None:
    manager1 = web_store.user_by_name("manager1")
    guard1 = web_store.user_by_name("guard1")
    assert manager1 is not None
    assert guard1 is not None
    with app.test_request_context("/", headers={"Accept-Language": "en"}):
        # Through the pages the acting manager is always a second one; this is
        # the rule that still holds if two managers disable each other at once.
        problem = _lockout_problem(guard1, manager1)
    assert problem == "manager1 is the last enabled manager; nobody could manage the site."


def test_reset_password_ends_the_users_sessions_and_the_new_one_works(
    app: Flask, manager: FlaskClient, guard: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    clock.advance(60)
    guard_id = user_id(web_store, "guard1")
    response = post(
        manager,
        f"/users/{guard_id}/password",
        {"password": "new-guard-pass-1", "password2": "new-guard-pass-1"},
        follow_redirects=True,
    )
    assert "The password of guard1 is changed" in response.get_data(as_text=True)
    assert guard.get("/admit").status_code == 302
    fresh = app.test_client()
    token = csrf_token(fresh)
    login = fresh.post(
        "/login", data={"name": "guard1", "password": "new-guard-pass-1", "csrf_token": token}
    )
    assert login.status_code == 302
    (entry,) = [e for e in web_store.audit_entries() if e.action == "user-password-reset"]
    assert entry.detail == {"user": "guard1"}
    assert "new-guard-pass-1" not in repr(web_store.audit_entries())


def test_a_manager_resetting_their_own_password_stays_logged_in(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    clock.advance(60)
    me = user_id(web_store, "manager1")
    post(
        manager,
        f"/users/{me}/password",
        {"password": "new-manager-pass", "password2": "new-manager-pass"},
    )
    assert manager.get("/users").status_code == 200


@pytest.mark.parametrize(
    ("password", "password2", "message"),
    [
        ("new-guard-pass-1", "new-guard-pass-2", "differ"),
        ("short", "short", "at least 10 characters"),
    ],
)
def test_reset_password_refuses_bad_passwords(
    manager: FlaskClient, web_store: Store, password: str, password2: str, message: str
) -> None:
    guard_id = user_id(web_store, "guard1")
    before = web_store.user_by_id(guard_id)
    response = post(
        manager, f"/users/{guard_id}/password", {"password": password, "password2": password2}
    )
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert web_store.user_by_id(guard_id) == before


def test_unknown_user_is_not_found(manager: FlaskClient) -> None:
    assert post(manager, "/users/999/disable").status_code == 404


def test_hostile_user_name_cannot_be_created_and_is_escaped(manager: FlaskClient) -> None:
    response = post(
        manager,
        "/users/add",
        {"name": HOSTILE, "role": "guard", "password": "x" * 12, "password2": "x" * 12},
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert HOSTILE not in page
    assert ESCAPED in page


# --------------------------------------------------------------------------- audit


def test_audit_page_shows_detail_as_text_with_local_time(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    web_store.audit(
        actor="manager1",
        action="export",
        detail={"format": "xlsx", "filter": {"kind": "cccd"}},
        at=clock.now(),
        row_count=42,
    )
    page = manager.get("/audit").get_data(as_text=True)
    assert "format: xlsx" in page
    assert "filter: {&#34;kind&#34;: &#34;cccd&#34;}" in page
    assert "<td>42</td>" in page
    assert "05/01/2026 08:00:00" in page


# --------------------------------------------------------------------------- admit once


def test_admit_files_a_pending_request_with_actor_and_reason(
    guard: FlaskClient, web_store: Store
) -> None:
    response = post(guard, "/admit", {"reason": "delivery driver", "name": "Phạm Thị C"})
    assert response.status_code == 302
    assert response.location == "/admit/1"
    admit = web_store.admit_request(1)
    assert admit is not None
    assert (admit.actor, admit.reason, admit.display_name, admit.status) == (
        "guard1",
        "delivery driver",
        "Phạm Thị C",
        "pending",
    )
    (entry,) = [e for e in web_store.audit_entries() if e.action == "admit"]
    assert entry.actor == "guard1"
    assert entry.detail["reason"] == "delivery driver"
    page = guard.get("/admit/1").get_data(as_text=True)
    assert "Waiting for the gate" in page
    assert 'data-url="/api/admit/1"' in page
    assert "admit.js" in page


def test_admit_without_a_name_stores_none(guard: FlaskClient, web_store: Store) -> None:
    post(guard, "/admit", {"reason": "delivery", "name": "  "})
    admit = web_store.admit_request(1)
    assert admit is not None
    assert admit.display_name is None


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"reason": "", "name": "Phạm Thị C"}, "Enter the reason"),
        ({"reason": "   ", "name": "Phạm Thị C"}, "Enter the reason"),
        ({"reason": "r" * 201, "name": "Phạm Thị C"}, "at most 200 characters"),
    ],
)
def test_admit_refuses_a_missing_or_long_reason_and_keeps_the_name(
    guard: FlaskClient, web_store: Store, form: dict[str, str], message: str
) -> None:
    response = post(guard, "/admit", form)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in page
    assert 'value="Phạm Thị C"' in page
    assert web_store.admit_request(1) is None


@pytest.mark.parametrize("name", ["\x00=1+1", "An\x00", "Lan\u200b", "=1+1", "\x1b[31mAn"])
def test_admit_refuses_a_name_with_control_characters_or_formula_signs(
    guard: FlaskClient, web_store: Store, name: str
) -> None:
    response = post(guard, "/admit", {"reason": "delivery", "name": name})
    assert response.status_code == 400
    assert "A name has letters and spaces only" in response.get_data(as_text=True)
    assert web_store.admit_request(1) is None


def test_admit_keeps_a_name_in_nfc_with_single_spaces(guard: FlaskClient, web_store: Store) -> None:
    post(guard, "/admit", {"reason": "delivery", "name": " Pha\u0323m   Thi\u0323 C "})
    admit = web_store.admit_request(1)
    assert admit is not None
    assert admit.display_name == "Phạm Thị C"


def test_admit_status_follows_the_request_until_done(
    guard: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    post(guard, "/admit", {"reason": "delivery"})
    assert guard.get("/api/admit/1").get_json()["status"] == "pending"
    (pending,) = web_store.pending_admits(now=clock.now(), max_age_s=30)
    web_store.record_admit(
        pending,
        NewEvent(
            gate_id="gate-1",
            at=clock.now(),
            utc_offset_min=420,
            clock_synced=True,
            direction="in",
            decision="allow",
            reason="manual",
            kind="manual",
            subject_hash=None,
            display_name=None,
            masked_id=None,
            override=True,
            actor="guard1",
            note="delivery",
        ),
    )
    answer = guard.get("/api/admit/1").get_json()
    assert answer["status"] == "done"
    assert "the gate opened" in answer["text"]


def test_a_request_the_kiosk_never_took_is_shown_expired(
    guard: FlaskClient, clock: FakeClock
) -> None:
    post(guard, "/admit", {"reason": "delivery"})
    clock.advance(60)
    assert guard.get("/api/admit/1").get_json()["status"] == "expired"
    assert "Check that the kiosk is running" in guard.get("/admit/1").get_data(as_text=True)


def test_a_guard_follows_only_their_own_requests(
    app: Flask, manager: FlaskClient, guard: FlaskClient, web_store: Store
) -> None:
    post(manager, "/admit", {"reason": "manager's guest"})
    assert guard.get("/api/admit/1").status_code == 404
    assert guard.get("/admit/1").status_code == 404
    post(guard, "/admit", {"reason": "delivery"})
    assert manager.get("/api/admit/2").status_code == 200
    assert guard.get("/api/admit/999").status_code == 404


def test_hostile_admit_reason_and_name_are_escaped(guard: FlaskClient) -> None:
    # A name with markup is refused (names are letters and spaces), and the
    # form shown again with it escaped; the free-text reason is kept, escaped.
    refused = post(guard, "/admit", {"reason": HOSTILE, "name": HOSTILE})
    assert refused.status_code == 400
    assert HOSTILE not in refused.get_data(as_text=True)
    assert ESCAPED in refused.get_data(as_text=True)
    post(guard, "/admit", {"reason": HOSTILE, "name": "Phạm Thị C"})
    page = guard.get("/admit/1").get_data(as_text=True)
    assert HOSTILE not in page
    assert ESCAPED in page
