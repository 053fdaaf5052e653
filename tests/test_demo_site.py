"""`gatekiosk demo --gates 3`: a hub, its broker and three simulated gates on
this machine; every gate's events reach the hub's database."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.demo_site import MosquittoMissing, mosquitto_binary


def test_demo_with_three_gates_fills_the_hub_database_from_every_gate(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", os.getcwd())}
    command = [sys.executable, "-m", "kiosk.cli", "demo", "--gates", "3", "--seconds", "15"]
    result = subprocess.run(
        [*command, "--data-dir", str(tmp_path), "--web-port", "0"],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    output = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert "password (this run only): " in output
    assert "/site/status" in output
    (hub_db,) = tmp_path.glob("site-*/hub/gatekiosk.db")
    with sqlite3.connect(hub_db) as conn:
        gates = {row[0] for row in conn.execute("SELECT DISTINCT gate_id FROM events")}
        boots = {row[0] for row in conn.execute("SELECT DISTINCT boot_id FROM events")}
    assert gates == {"gate-1", "gate-2", "gate-3"}
    assert len(boots) == 3  # one boot id per gate, though they share the kernel's


def test_without_mosquitto_the_demo_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("kiosk.demo_site.MOSQUITTO_PATHS", "/nonexistent")
    with pytest.raises(MosquittoMissing, match="apt-get install mosquitto"):
        mosquitto_binary()
