"""On a gate that is a site member, the settings, denylist and trust pages
are read only, with a note pointing to the hub: the hub's documents would
overwrite a change made here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from kiosk.accounts import PasswordHashing
from kiosk.clock import FakeClock
from tests.web import csrf_token, log_in, make_app

NOTE = "This gate belongs to a site"
SITE_MEMBER: dict[str, Any] = {"site.hub": "hub.local:8883"}
HUB_SETTINGS: dict[str, Any] = {"site.hub": "localhost:8883"}


@pytest.fixture
def member(tmp_path: Path, password_hashing: PasswordHashing) -> Flask:
    return make_app(tmp_path, clock=FakeClock(), hashing=password_hashing, **SITE_MEMBER)


def test_a_site_gates_pages_show_read_only_with_a_note(member: Flask) -> None:
    client = member.test_client()
    log_in(client, "manager")
    settings = client.get("/settings").get_data(as_text=True)
    assert NOTE in settings
    assert "hub.local:8883" in settings
    assert '<fieldset class="plain" disabled>' in settings
    denylist = client.get("/denylist").get_data(as_text=True)
    assert NOTE in denylist
    assert "/denylist/add" not in denylist
    trust = client.get("/trust").get_data(as_text=True)
    assert NOTE in trust
    assert "/trust/import" not in trust


def test_changes_on_a_site_gates_own_page_are_refused(member: Flask) -> None:
    client = member.test_client()
    log_in(client, "manager")
    token = csrf_token(client, "/settings")
    store = member.extensions["gatekiosk"].store
    refused = client.post("/settings", data={"csrf_token": token, "policy.capacity": "3"})
    assert refused.status_code == 403
    assert NOTE in refused.get_data(as_text=True)
    assert "policy.capacity" not in store.site_settings()
    added = client.post(
        "/denylist/add",
        data={"csrf_token": token, "id_number": "001099012345", "label": "x", "note": "y"},
    )
    assert added.status_code == 403
    assert store.denylist_entries() == []
    assert client.post("/trust/remove", data={"csrf_token": token, "kid": "x"}).status_code == 403


def test_a_standalone_gate_and_the_hub_keep_their_pages_editable(
    tmp_path: Path, password_hashing: PasswordHashing
) -> None:
    standalone = make_app(tmp_path / "alone", clock=FakeClock(), hashing=password_hashing)
    hub = make_app(
        tmp_path / "hub",
        clock=FakeClock(),
        hashing=password_hashing,
        **HUB_SETTINGS,
    )
    (tmp_path / "hub" / "site").mkdir()
    (tmp_path / "hub" / "site" / "hub.json").write_text("{}")
    for app in (standalone, hub):
        client = app.test_client()
        log_in(client, "manager")
        page = client.get("/denylist").get_data(as_text=True)
        assert NOTE not in page
        assert "/denylist/add" in page
