"""Issue 14, findings 3, 4 and 7 at the login page (Flask's test client; the
races themselves are in tests/test_throttle_server.py, through waitress)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from admin_web import create_app
from kiosk.accounts import add_user
from kiosk.cli import cli
from kiosk.clock import FakeClock
from kiosk.config import load_settings
from kiosk.store import Store
from kiosk.store.throttle import MAX_KEY_CHARS
from tests.web import CHEAP_HASHING, PASSWORDS, csrf_token, log_in

ATTACKER = {"REMOTE_ADDR": "203.0.113.66"}
OWNER = {"REMOTE_ADDR": "192.168.1.50"}


def login(client: FlaskClient, name: str, password: str, at: dict[str, str]) -> TestResponse:
    token = csrf_token(client)
    return client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": token},
        environ_base=at,
    )


def throttle_rows(store: Store) -> dict[str, int]:
    return dict(store.connection.conn.execute("SELECT key, hits FROM throttle").fetchall())


def test_a_guesser_elsewhere_never_locks_the_owner_out(app: Flask, clock: FakeClock) -> None:
    attacker, owner = app.test_client(), app.test_client()
    for _ in range(5):
        assert login(attacker, "manager1", "wrong-password", ATTACKER).status_code == 401
    for _ in range(10):  # one guess every 15 minutes, for hours
        clock.advance(15 * 60)
        assert login(attacker, "manager1", "wrong-password", ATTACKER).status_code == 401
        assert login(attacker, "manager1", "wrong-password", ATTACKER).status_code == 429
    assert login(owner, "manager1", PASSWORDS["manager"], OWNER).status_code == 302
    assert owner.get("/", environ_base=OWNER).status_code == 200


def test_a_name_is_validated_before_anything_of_it_is_stored(app: Flask) -> None:
    store: Store = app.extensions["gatekiosk"].store
    client = app.test_client()
    huge = "N" * (2 * 1024 * 1024 - 200)  # as long as the request limit lets through
    assert login(client, huge, "wrong-password", ATTACKER).status_code == 401
    assert login(client, "bad name; DROP", "wrong-password", ATTACKER).status_code == 401
    assert throttle_rows(store) == {"ip:203.0.113.66": 2}
    store.connection.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert b"NNNNNNNN" not in Path(store.path).read_bytes()
    # A valid name is counted per account at this address, bounded too.
    assert login(client, "x" * 40, "wrong-password", ATTACKER).status_code == 401
    assert throttle_rows(store) == {"ip:203.0.113.66": 3, f"acct:{'x' * 40}@203.0.113.66": 1}
    assert all(len(key) <= MAX_KEY_CHARS for key in throttle_rows(store))


def test_the_attackers_own_logins_do_not_free_its_failures(app: Flask) -> None:
    """Failures at other names, interleaved with the attacker's own good
    logins, stay counted per address: a success takes back only its own hit."""
    client = app.test_client()
    statuses = []
    for i in range(4):
        statuses.append(login(client, f"guess{i}", "wrong-password", ATTACKER).status_code)
        statuses.append(login(client, "guard1", PASSWORDS["guard"], ATTACKER).status_code)
    statuses.append(login(client, "guess9", "wrong-password", ATTACKER).status_code)
    statuses.append(login(client, "guess10", "wrong-password", ATTACKER).status_code)
    assert statuses == [401, 302] * 4 + [401, 429]


def test_a_success_forgets_the_accounts_misses_at_that_address(app: Flask) -> None:
    store: Store = app.extensions["gatekiosk"].store
    client = app.test_client()
    for _ in range(3):
        login(client, "guard1", "wrong-password", OWNER)
    assert login(client, "guard1", PASSWORDS["guard"], OWNER).status_code == 302
    assert throttle_rows(store) == {"ip:192.168.1.50": 3}


def test_a_password_reset_on_the_web_ends_the_lockout(app: Flask, clock: FakeClock) -> None:
    guard = app.test_client()
    for _ in range(8):
        login(guard, "guard1", "forgotten-pass", OWNER)
    assert login(guard, "guard1", PASSWORDS["guard"], OWNER).status_code == 429

    manager = app.test_client()
    log_in(manager, "manager")
    store: Store = app.extensions["gatekiosk"].store
    target = store.user_by_name("guard1")
    assert target is not None
    reset = manager.post(
        f"/users/{target.id}/password",
        data={
            "password": "brand-new-pass-1",
            "password2": "brand-new-pass-1",
            "csrf_token": csrf_token(manager, "/users"),
        },
    )
    assert reset.status_code in (200, 302), reset.status_code
    assert login(guard, "guard1", "brand-new-pass-1", OWNER).status_code == 302


def test_user_reset_password_ends_the_lockout(tmp_path: Path, clock: FakeClock) -> None:
    config = tmp_path / "gate.toml"
    config.write_text(f'[gate]\ndata_dir = "{tmp_path}"\n')
    settings = load_settings(overrides={"gate.data_dir": str(tmp_path)}, env={})
    store = Store.open(settings.db_path, boot_id="boot-1")
    try:
        add_user(
            store,
            "lan",
            role="guard",
            password="forgotten-123",
            at=clock.now(),
            hashing=CHEAP_HASHING,
        )
        app = create_app(
            settings,
            store=store,
            clock=clock,
            password_hashing=CHEAP_HASHING,
            test_config={"TESTING": True, "WTF_CSRF_ENABLED": False},
        )
        client = app.test_client()

        def post(password: str) -> Any:
            data = {"name": "lan", "password": password}
            return client.post("/login", data=data, environ_base=OWNER).status_code

        assert [post("not-it-at-all") for _ in range(6)] == [401] * 5 + [429]
        result = CliRunner().invoke(
            cli,
            ["user", "reset-password", "lan", "--password-stdin", "--config", str(config)],
            input="remembered-123\n",
        )
        assert result.exit_code == 0, result.output
        assert post("remembered-123") == 302
    finally:
        store.close()
