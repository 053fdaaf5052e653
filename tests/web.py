"""Fixtures' building blocks for the admin web tests: a real app over a real
SQLite file, users of each role, and a logged-in client."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from admin_web import create_app
from kiosk.accounts import PasswordHashing, add_user
from kiosk.clock import FakeClock
from kiosk.config import load_settings
from kiosk.store import NewEvent, Store

PASSWORDS = {"manager": "manager-pass-123", "guard": "guard-pass-1234"}

CHEAP_HASHING = PasswordHashing("scrypt:128:8:1")
"""scrypt at 1/256 of the product's cost (well under a millisecond a hash
instead of 0.15-1.4 s): the same code path and hash format, for tests only.
Tests take it through the ``password_hashing`` fixture."""


AppWith = Callable[..., Flask]
"""``app_with(overrides=None, *, csrf=True)``: the ``app_with`` fixture's builder."""


class EnglishClient(FlaskClient):
    """The test client as a browser that asks for English.

    The web tests read the pages' English source strings. The Vietnamese
    default, and the catalog behind it, are tested in tests/test_i18n.py,
    whose clients ask for no language.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"


def make_app(
    tmp_path: Path,
    *,
    clock: FakeClock,
    hashing: PasswordHashing,
    csrf: bool = True,
    **overrides: Any,
) -> Flask:
    """The app over a new database in ``tmp_path`` with a manager and a guard
    (:data:`PASSWORDS`); ``hashing`` is the ``password_hashing`` fixture."""
    settings = load_settings(overrides={"gate.data_dir": str(tmp_path), **overrides}, env={})
    store = Store.open(settings.db_path, boot_id="boot-1")
    app = create_app(
        settings,
        store=store,
        clock=clock,
        test_config={"TESTING": True, "WTF_CSRF_ENABLED": csrf},
        password_hashing=hashing,
    )
    app.test_client_class = EnglishClient
    for role, password in PASSWORDS.items():
        add_user(store, f"{role}1", role=role, password=password, at=clock.now(), hashing=hashing)
    return app


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def log_in(client: FlaskClient, role: str) -> None:
    token = csrf_token(client)
    response = client.post(
        "/login",
        data={"name": f"{role}1", "password": PASSWORDS[role], "csrf_token": token},
    )
    assert response.status_code == 302, response.get_data(as_text=True)


def record(store: Store, clock: FakeClock, **fields: Any) -> None:
    """Record one event as the kiosk would; fields override a plain allowed entry."""
    values: dict[str, Any] = {
        "gate_id": "gate-1",
        "at": clock.now(),
        "utc_offset_min": 420,
        "clock_synced": True,
        "direction": "in",
        "decision": "allow",
        "reason": "ok",
        "kind": "cccd",
        "subject_hash": "a" * 32,
        "display_name": "Nguyễn Văn An",
        "masked_id": "********0123",
    }
    values.update(fields)
    store.record(NewEvent(**values))
