from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from kiosk.accounts import PasswordHashing
from kiosk.clock import FakeClock
from kiosk.store import Store
from tests.web import CHEAP_HASHING, AppWith, log_in, make_app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def password_hashing() -> PasswordHashing:
    """Cheap scrypt for the accounts tests make: the product's cost (0.15-1.4 s
    a hash on this machine) would be most of the suite's time. The product
    never defaults to it (kiosk.accounts.SCRYPT)."""
    return CHEAP_HASHING


@pytest.fixture
def app_with(
    tmp_path: Path, clock: FakeClock, password_hashing: PasswordHashing
) -> Iterator[AppWith]:
    """Build the test app with settings other than the defaults:
    ``app_with({"policy.capacity": 120})``. Its store is closed at the end."""
    made: list[Flask] = []

    def build(overrides: Mapping[str, Any] | None = None, *, csrf: bool = True) -> Flask:
        assert not made, "one app per test: they would share tmp_path's database"
        app = make_app(
            tmp_path, clock=clock, hashing=password_hashing, csrf=csrf, **dict(overrides or {})
        )
        made.append(app)
        return app

    yield build
    for app in made:
        app.extensions["gatekiosk"].store.close()


@pytest.fixture
def app(app_with: AppWith) -> Flask:
    return app_with()


@pytest.fixture
def web_store(app: Flask) -> Store:
    store: Store = app.extensions["gatekiosk"].store
    return store


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def manager(app: Flask) -> FlaskClient:
    client = app.test_client()
    log_in(client, "manager")
    return client


@pytest.fixture
def guard(app: Flask) -> FlaskClient:
    client = app.test_client()
    log_in(client, "guard")
    return client
