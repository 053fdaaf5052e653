"""The data folder and the database are private even under umask 022 (issue 14,
finding 10): outside systemd (the demo, a laptop) the database and its WAL
must not be readable by the machine's other users."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from admin_web import create_app
from kiosk.accounts import add_user
from kiosk.clock import FakeClock
from kiosk.config import load_settings
from kiosk.store import Store


@pytest.fixture
def umask_022() -> Iterator[None]:
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_admin_web_creates_a_private_folder_database_and_wal(
    tmp_path, umask_022, password_hashing
):
    data = tmp_path / "new" / "gatekiosk-data"
    settings = load_settings(overrides={"gate.data_dir": str(data)}, env={})

    app = create_app(settings, clock=FakeClock())
    store: Store = app.extensions["gatekiosk"].store
    try:
        add_user(
            store,
            "manager1",
            role="manager",
            password="manager-pass-123",
            at=FakeClock().now(),
            hashing=password_hashing,
        )
        files = {p.name: mode(p) for p in data.iterdir()}
    finally:
        store.close()

    assert mode(data) == 0o700
    assert mode(data.parent) == 0o700  # created for it too
    assert files["gatekiosk.db"] == 0o600
    assert files["gatekiosk.db-wal"] == 0o600
    assert files["gatekiosk.db-shm"] == 0o600
    assert files["subject.key"] == 0o600
    assert files["web-secret.key"] == 0o600


def test_an_existing_folder_keeps_its_mode(tmp_path, umask_022):
    chosen = tmp_path / "chosen"
    chosen.mkdir(mode=0o755)
    with Store.open(chosen / "gate.db", boot_id="b") as store:
        store.audit(actor="t", action="test", detail={}, at=FakeClock().now())
        assert mode(chosen / "gate.db-wal") == 0o600
    assert mode(chosen) == 0o755
    assert mode(chosen / "gate.db") == 0o600
