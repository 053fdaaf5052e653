"""Fixtures every test file may use, and where the tests' files live.

Temporary files (``tmp_path``, and ``TMPDIR`` for the processes the tests
start) go to ``/dev/shm``, a RAM file system, unless ``TMPDIR`` or
``--basetemp`` says otherwise. The product commits every event with
``synchronous=FULL`` (an fsync per commit, 3 ms on this machine's disk and
far more when it is shared); the tests record thousands of events and prove
nothing by waiting for a disk, since a power cut cannot be tested. On a RAM
file system SQLite, WAL, ``O_TMPFILE`` and permissions behave the same, and
the suite takes a fraction of the time. The storage-fault tests mount their
own small tmpfs as before.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings

from kiosk.accounts import PasswordHashing
from kiosk.clock import FakeClock
from kiosk.store import Store
from tests.web import CHEAP_HASHING, AppWith, log_in, make_app

RAM_TMP = Path("/dev/shm")

# No per-example deadline (Hypothesis's default is 200 ms): timing is the
# benchmarks' job, and a busy machine must not fail a property. Example
# counts stay as each test sets them.
settings.register_profile("gatekiosk", deadline=None)
settings.load_profile("gatekiosk")


def pytest_configure(config: pytest.Config) -> None:
    if config.option.basetemp or "TMPDIR" in os.environ:
        return
    if RAM_TMP.is_dir() and os.access(RAM_TMP, os.W_OK | os.X_OK):
        os.environ["TMPDIR"] = str(RAM_TMP)  # for subprocesses too
        tempfile.tempdir = None  # gettempdir() reads TMPDIR again


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
