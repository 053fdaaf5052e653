from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from kiosk.clock import FakeClock
from kiosk.store import Store
from tests.web import log_in, make_app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(tmp_path: Path, clock: FakeClock) -> Iterator[Flask]:
    app = make_app(tmp_path, clock=clock)
    yield app
    app.extensions["gatekiosk"].store.close()


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
