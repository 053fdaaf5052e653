"""`gatekiosk demo --gates 2 --province`: the site demo with a province on a
throwaway PostgreSQL; its web shows every site, the demo site's live gates
among them, and everything stops with the demo, the cluster included."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from kiosk.cli import cli
from kiosk.demo_postgres import PostgresMissing, postgres_bindir
from kiosk.demo_province import DEMO_SITE_ID, OTHER_SITES, SiteHistory

PROVINCE_LINE = re.compile(
    r"Trang cấp tỉnh / Province web: (?P<url>\S+)  user: (?P<user>\S+)  "
    r"password \(this run only\): (?P<password>\S+)"
)
HUB_LINE = re.compile(
    r"Admin page \(hub\): (?P<url>\S+)  user: (?P<user>\S+)  "
    r"password \(this run only\): (?P<password>\S+)"
)
CLUSTER_LINE = re.compile(r"throwaway PostgreSQL: 127\.0\.0\.1:\d+, (?P<folder>\S+) \(")
START_S = 180.0
"""The demo's start (initdb, history uploads) on a loaded two-core machine, at most."""


def row(page: str, table_row: str, site_id: str) -> str:
    """The ``<tr>`` of ``site_id`` in a sites or ratings table ('' if absent)."""
    found = re.search(rf'<tr class="{table_row}-[^"]+" data-site="{site_id}">.*?</tr>', page, re.S)
    return found.group(0) if found else ""


def tallies(site_row: str) -> int:
    return sum(int(n) for n in re.findall(r'<td class="tally \w+">(\d+)</td>', site_row))


def poll(condition: object, timeout_s: float) -> None:
    """Call ``condition`` until true; fail after ``timeout_s`` (real processes, real time)."""
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s"
        time.sleep(0.5)


def postgres_processes(folder: str) -> list[str]:
    """Processes whose command line names ``folder`` (the cluster's)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if proc.name.isdigit() and folder in cmdline:
            found.append(cmdline)
    return found


class Browser:
    """A client keeping the web's session cookie, over real HTTP."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path.lstrip("/"), timeout=30) as response:
            return str(response.read().decode())

    def log_in(self, user: str, password: str) -> str:
        page = self.get("login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token, page[:500]
        data = {"name": user, "password": password, "csrf_token": token.group(1)}
        with self.opener.open(
            self.base + "login", urllib.parse.urlencode(data).encode(), timeout=30
        ) as response:
            return str(response.read().decode())


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """The demo as a real process (stopped at the latest after 240 s), and
    its output lines read so far."""
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", os.getcwd())}
    command = [sys.executable, "-m", "kiosk.cli", "demo", "--gates", "2", "--province"]
    with (tmp_path / "demo.err").open("wb") as err:
        process = subprocess.Popen(
            [*command, "--seconds", "240", "--data-dir", str(tmp_path), "--web-port", "0"],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            text=True,
        )
    lines: list[str] = []
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        assert process.stdout is not None
        process.stdout.close()


def read_until(process: subprocess.Popen[str], lines: list[str], pattern: re.Pattern[str]) -> str:
    """Lines of the demo's output until one matches ``pattern`` (the demo flushes each)."""
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if pattern.search(line):
            return line
    raise AssertionError("the demo ended before printing it:\n" + "".join(lines))


@pytest.mark.slow
def test_demo_with_a_province_shows_every_site_with_the_live_gates_and_stops_clean(
    demo: tuple[subprocess.Popen[str], list[str]], tmp_path: Path
) -> None:
    process, lines = demo
    login = PROVINCE_LINE.search(read_until(process, lines, PROVINCE_LINE))
    assert login is not None
    cluster = CLUSTER_LINE.search(read_until(process, lines, CLUSTER_LINE))
    assert cluster is not None
    folder = cluster.group("folder")
    assert postgres_processes(folder)

    browser = Browser(login.group("url"))
    assert 'name="password"' in browser.get("/")  # the login page, before anything else
    sites = browser.log_in(login.group("user"), login.group("password"))

    def demo_site_counted() -> bool:
        nonlocal sites
        sites = browser.get("/")
        return tallies(row(sites, "site", DEMO_SITE_ID)) > 0

    poll(demo_site_counted, timeout_s=60)  # the gates' events, through hub and uplink
    assert 'class="site-scanning"' in row(sites, "site", DEMO_SITE_ID)
    assert row(sites, "site", "cho-ben-thanh")
    assert 'class="site-quiet"' in row(sites, "site", "may-tan-tao")
    assert 'class="site-never-heard"' in row(sites, "site", "cho-binh-tay")
    ratings = browser.get("/ratings")
    assert 'class="rating-current"' in row(ratings, "rating", "cho-ben-thanh")
    assert 'class="rating-stale"' in row(ratings, "rating", "may-tan-tao")
    assert 'class="rating-missing"' in row(ratings, "rating", DEMO_SITE_ID)
    # The demo hub's own web knows its province: the checklist is there to fill.
    hub_login = HUB_LINE.search("".join(lines))
    assert hub_login is not None
    hub = Browser(hub_login.group("url"))
    hub.log_in(hub_login.group("user"), hub_login.group("password"))
    assessment = hub.get("/site/assessment")
    assert 'id="not-configured"' not in assessment
    assert 'id="checklist"' in assessment

    process.send_signal(signal.SIGINT)  # Ctrl-C
    assert process.wait(timeout=90) == 0, (tmp_path / "demo.err").read_text()[-2000:]
    assert postgres_processes(folder) == []
    assert not Path(folder).exists()


def test_without_postgresql_the_demo_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("kiosk.demo_postgres.POSTGRES_BIN_DIRS", "/nonexistent/*/bin")
    with pytest.raises(PostgresMissing, match="sudo apt-get install postgresql"):
        postgres_bindir()
    result = CliRunner().invoke(
        cli, ["demo", "--gates", "1", "--province", "--data-dir", str(tmp_path), "--seconds", "1"]
    )
    assert result.exit_code == 1
    assert "Chưa cài PostgreSQL" in result.output
    assert "PostgreSQL (the province's database) is not installed" in result.output
    assert list(tmp_path.iterdir()) == []  # refused before anything was made


def test_province_without_gates_is_refused() -> None:
    result = CliRunner().invoke(cli, ["demo", "--province"])
    assert result.exit_code == 2
    assert "--province needs --gates N" in result.output


def test_simulated_history_stays_in_its_window_each_gate_numbered_in_time_order() -> None:
    zone = ZoneInfo("Asia/Ho_Chi_Minh")
    factory = next(site for site in OTHER_SITES if site.site_id == "may-tan-tao")
    history = SiteHistory(factory, zone)
    start = datetime(2026, 12, 3, tzinfo=zone)
    end = start + timedelta(days=4)
    events = history.between(start, end)
    later = history.between(end, end + timedelta(hours=8))
    assert events
    assert later
    assert all(start <= e.at < end for e in events)
    for gate in factory.gates:
        logged = [e for e in events + later if e.gate_id == gate]
        assert [e.seq for e in logged] == list(range(1, len(logged) + 1))
        assert [e.at for e in logged] == sorted(e.at for e in logged)
    refused = [e for e in events if e.decision == "deny"]
    assert refused
    assert all(e.direction == "in" for e in refused)
    assert len({e.id for e in events + later}) == len(events) + len(later)
