"""The deploy artifacts: shell scripts, systemd units, the backup script, the
installer's options and the configuration it writes.

These run real tools (shellcheck, systemd-analyze, sqlite3, bash) on the real
files; a missing tool is a failure with the command that installs it, never a
skip. The full install into a Debian root is deploy/test-install.sh (root,
network, minutes), not part of this suite.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

from kiosk.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
INSTALL = DEPLOY / "install.sh"
BACKUP = DEPLOY / "gatekiosk-backup.sh"
SCREEN = DEPLOY / "gatekiosk-screen.sh"
SERVICES = [
    "gatekiosk-kiosk.service",
    "gatekiosk-web.service",
    "gatekiosk-maintenance.service",
    "gatekiosk-sync.service",
    "gatekiosk-hub.service",
]
UNITS = [*SERVICES, "gatekiosk-maintenance.timer", "gatekiosk-broker.service"]
SCRIPTS = sorted(p.name for p in DEPLOY.glob("*.sh"))
# The scripts that run on the gate (dev-bootstrap.sh is POSIX sh for `make`).
BASH_SCRIPTS = [s for s in SCRIPTS if s != "dev-bootstrap.sh"]
CONFIG = "/etc/gatekiosk/gatekiosk.toml"

APT_HINTS = {
    "shellcheck": "shellcheck",
    "systemd-analyze": "systemd",
    "sqlite3": "sqlite3",
    "bash": "bash",
    "setpriv": "util-linux",
}


def tool(name: str) -> str:
    """The path of a command the tests need, or a failure saying how to get it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is needed by tests/test_deploy.py: "
            f"sudo apt-get install -y {APT_HINTS.get(name, name)}"
        )
    return path


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        env=None if env is None else {**os.environ, **env},
        timeout=60,
        check=False,
    )


def directives(unit: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file as {section: [(key, value), ...]}, keeping repeated keys in order."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for raw in (DEPLOY / unit).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: str, section: str, key: str) -> list[str]:
    return [v for k, v in directives(unit).get(section, []) if k == key]


def one(unit: str, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"{unit}: [{section}] {key}= appears {len(found)} times"
    return found[0]


# -- shell scripts -------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS)
def test_shell_script_passes_shellcheck(script: str) -> None:
    result = run(tool("shellcheck"), "--norc", "--severity=style", DEPLOY / script)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", BASH_SCRIPTS)
def test_shell_script_parses_and_is_executable_with_strict_mode(script: str) -> None:
    path = DEPLOY / script
    result = run(tool("bash"), "-n", path)
    assert result.returncode == 0, result.stderr
    assert path.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#!/bin/bash\n")
    assert "\nset -euo pipefail\n" in text


def test_install_help_lists_every_option_without_root() -> None:
    result = run(tool("bash"), INSTALL, "--help")
    assert result.returncode == 0, result.stderr
    for option in (
        "--source DIR",
        "--with-screen",
        "--screen-user NAME",
        "--no-start",
        "--uninstall",
        "--purge-data",
        "--print-config",
    ):
        assert option in result.stdout


def test_install_refuses_unknown_options() -> None:
    result = run(tool("bash"), INSTALL, "--frobnicate")
    assert result.returncode == 1
    assert "unknown option '--frobnicate'" in result.stderr


def test_install_refuses_purge_data_without_uninstall() -> None:
    result = run(tool("bash"), INSTALL, "--purge-data")
    assert result.returncode == 1
    assert "--purge-data only goes with --uninstall" in result.stderr


def test_install_stops_with_a_message_when_not_root() -> None:
    command = [tool("bash"), str(INSTALL), "--no-start"]
    if os.geteuid() == 0:
        command = [tool("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "run as root" in result.stderr
    assert result.stdout == ""


def test_installed_config_is_valid_and_points_at_the_system_folders(tmp_path: Path) -> None:
    result = run(tool("bash"), INSTALL, "--print-config")
    assert result.returncode == 0, result.stderr
    written = tmp_path / "gatekiosk.toml"
    written.write_text(result.stdout, encoding="utf-8")

    settings = load_settings(written, env={})

    assert settings["gate.data_dir"] == "/var/lib/gatekiosk"
    assert settings["camera.source"] in {"picamera2", "v4l2"}
    assert settings["pins.backend"] in {"auto", "mock"}
    shipped = load_settings(DEPLOY / "gatekiosk.toml", env={})
    changed = {k for k in shipped.values if shipped[k] != settings[k]}
    assert changed <= {"gate.data_dir", "camera.source", "pins.backend"}


def test_installer_pins_numpy_to_apts_and_checks_picamera2_imports() -> None:
    text = INSTALL.read_text(encoding="utf-8")
    assert "--system-site-packages" in text
    assert "numpy==$numpy_version" in text
    assert "--constraint" in text
    assert "import picamera2" in text
    assert "python3-picamera2" in text
    assert "apt-cache policy" in text


# -- systemd units -------------------------------------------------------------


@pytest.fixture
def units_with_stub_programs(tmp_path: Path) -> Path:
    """The units, with /opt/gatekiosk/ moved under tmp_path where stubs stand in
    for the installed programs (systemd-analyze verify checks they are executable)."""
    opt = tmp_path / "opt" / "gatekiosk"
    for program in ("venv/bin/gatekiosk", "bin/gatekiosk-backup"):
        stub = opt / program
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n", encoding="utf-8")
        stub.chmod(0o755)
    units = tmp_path / "units"
    units.mkdir()
    for unit in UNITS:
        text = (DEPLOY / unit).read_text(encoding="utf-8")
        (units / unit).write_text(text.replace("/opt/gatekiosk/", f"{opt}/"), encoding="utf-8")
    return units


def verify(units: Path, names: list[str]) -> list[str]:
    """systemd-analyze verify's complaints about these unit files."""
    result = run(tool("systemd-analyze"), "verify", "--man=no", *(units / n for n in names))
    output = (result.stdout + result.stderr).splitlines()
    complaints = [line for line in output if any(n.split(".")[0] in line for n in names)]
    if result.returncode != 0:
        complaints.append(f"exit status {result.returncode}: {result.stderr.strip()}")
    return complaints


def test_units_pass_systemd_analyze_verify(units_with_stub_programs: Path) -> None:
    assert verify(units_with_stub_programs, UNITS) == []


def test_systemd_analyze_verify_would_catch_a_bad_directive(
    units_with_stub_programs: Path,
) -> None:
    broken = units_with_stub_programs / "gatekiosk-web.service"
    broken.write_text(
        broken.read_text(encoding="utf-8").replace("ProtectHome=yes", "ProtectHome=maybe"),
        encoding="utf-8",
    )
    assert any("maybe" in line for line in verify(units_with_stub_programs, UNITS))


@pytest.mark.parametrize(("service", "max_exposure"), [(s, 2.5) for s in SERVICES])
def test_services_keep_systemds_exposure_score_low(
    units_with_stub_programs: Path, service: str, max_exposure: float
) -> None:
    result = run(
        tool("systemd-analyze"),
        "security",
        "--offline=true",
        f"--threshold={round(max_exposure * 10)}",
        "--no-pager",
        units_with_stub_programs / service,
    )
    assert result.returncode == 0, result.stdout[-400:] + result.stderr


KIOSK_HARDENING = {
    "Type": "notify",
    "NotifyAccess": "main",
    "WatchdogSec": "10",
    "Restart": "on-failure",
    "RestartSec": "2",
    "User": "gatekiosk",
    "SupplementaryGroups": "gpio video",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "NoNewPrivileges": "yes",
    "ReadWritePaths": "/var/lib/gatekiosk",
    "DevicePolicy": "closed",
    "WorkingDirectory": "/var/lib/gatekiosk",
    "ExecStart": f"/opt/gatekiosk/venv/bin/gatekiosk run --config {CONFIG}",
}


@pytest.mark.parametrize(("key", "expected"), sorted(KIOSK_HARDENING.items()))
def test_kiosk_unit_sets(key: str, expected: str) -> None:
    assert one("gatekiosk-kiosk.service", "Service", key) == expected


def test_kiosk_unit_allows_only_camera_and_gpio_devices() -> None:
    allowed = values("gatekiosk-kiosk.service", "Service", "DeviceAllow")
    assert sorted(allowed) == [
        "char-dma_heap rw",
        "char-gpiochip rw",
        "char-media rw",
        "char-video4linux rw",
    ]
    assert values("gatekiosk-kiosk.service", "Service", "PrivateDevices") == []


def test_web_unit_has_no_device_access() -> None:
    assert values("gatekiosk-web.service", "Service", "DeviceAllow") == []
    assert one("gatekiosk-web.service", "Service", "PrivateDevices") == "yes"
    assert one("gatekiosk-web.service", "Service", "DevicePolicy") == "closed"
    assert one("gatekiosk-web.service", "Service", "ExecStart") == (
        f"/opt/gatekiosk/venv/bin/gatekiosk web --config {CONFIG}"
    )
    assert one("gatekiosk-web.service", "Service", "Restart") == "on-failure"


@pytest.mark.parametrize("service", SERVICES)
def test_service_runs_as_gatekiosk_and_writes_only_its_data(service: str) -> None:
    assert one(service, "Service", "User") == "gatekiosk"
    assert one(service, "Service", "ReadWritePaths") == "/var/lib/gatekiosk"
    for key, expected in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
    ]:
        assert one(service, "Service", key) == expected, key


@pytest.mark.parametrize("service", SERVICES)
def test_service_can_read_whether_the_clock_is_synchronised(service: str) -> None:
    """kiosk.clock asks adjtimex(); ProtectClock=yes and a bare @system-service
    filter make even that read fail with EPERM, and every event would say
    "clock not synchronised"."""
    assert values(service, "Service", "ProtectClock") == []
    assert one(service, "Service", "SystemCallFilter").split() == ["@system-service", "@clock"]
    assert one(service, "Service", "CapabilityBoundingSet") == ""  # so no CAP_SYS_TIME


@pytest.mark.parametrize("unit", UNITS)
def test_unit_waits_for_neither_network_nor_time_sync(unit: str) -> None:
    for section, entries in directives(unit).items():
        for key, value in entries:
            if key in {"After", "Wants", "Requires", "BindsTo", "Requisite"}:
                assert "network" not in value, f"[{section}] {key}={value}"
                assert "time-sync" not in value, f"[{section}] {key}={value}"
                assert "time-set" not in value, f"[{section}] {key}={value}"


def test_long_running_services_never_stop_restarting() -> None:
    for service in ("gatekiosk-kiosk.service", "gatekiosk-web.service"):
        assert one(service, "Unit", "StartLimitIntervalSec") == "0"
        assert one(service, "Install", "WantedBy") == "multi-user.target"


def test_maintenance_purges_then_backs_up_daily() -> None:
    unit = "gatekiosk-maintenance.service"
    assert one(unit, "Service", "Type") == "oneshot"
    assert values(unit, "Service", "ExecStart") == [
        f"/opt/gatekiosk/venv/bin/gatekiosk purge --config {CONFIG}",
        "/opt/gatekiosk/bin/gatekiosk-backup",
    ]
    assert one(unit, "Service", "PrivateDevices") == "yes"
    timer = "gatekiosk-maintenance.timer"
    assert one(timer, "Timer", "OnCalendar") == "*-*-* 03:15:00"
    assert one(timer, "Timer", "Persistent") == "yes"
    assert one(timer, "Install", "WantedBy") == "timers.target"


def test_installer_installs_and_uninstalls_every_unit() -> None:
    text = INSTALL.read_text(encoding="utf-8")
    for unit in UNITS:
        assert f"    {unit}\n" in text
        assert (DEPLOY / unit).is_file()


# -- the backup script -------------------------------------------------------


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "gatekiosk.db"
    path.parent.mkdir()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, who TEXT)")
        db.executemany("INSERT INTO events (who) VALUES (?)", [("an",), ("binh",), ("chi",)])
    db.close()
    return path


def back_up(database: Path, backup_dir: Path, day: str) -> subprocess.CompletedProcess[str]:
    tool("sqlite3")
    return run(
        tool("bash"),
        BACKUP,
        env={
            "GATEKIOSK_DB": str(database),
            "GATEKIOSK_BACKUP_DIR": str(backup_dir),
            "GATEKIOSK_BACKUP_DATE": day,
        },
    )


def rows_in(path: Path) -> list[str]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return [row[0] for row in db.execute("SELECT who FROM events ORDER BY id")]
    finally:
        db.close()


def test_backup_uses_vacuum_into_never_a_file_copy() -> None:
    text = BACKUP.read_text(encoding="utf-8")
    assert "VACUUM INTO" in text
    assert not any(word in text for word in ("cp ", "rsync", "dd ", "cat "))


def test_backup_is_a_whole_private_database(database: Path, tmp_path: Path) -> None:
    backups = tmp_path / "backup"
    result = back_up(database, backups, "2026-11-01")
    assert result.returncode == 0, result.stderr

    copy = backups / "gatekiosk-2026-11-01.db"
    assert rows_in(copy) == ["an", "binh", "chi"]
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE(backups.stat().st_mode) == 0o700
    assert sorted(p.name for p in backups.iterdir()) == ["gatekiosk-2026-11-01.db"]


def test_backup_is_consistent_while_a_writer_holds_a_transaction(
    database: Path, tmp_path: Path
) -> None:
    writer = sqlite3.connect(database, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO events (who) VALUES ('dung')")
        result = back_up(database, tmp_path / "backup", "2026-11-01")
        writer.execute("COMMIT")
    finally:
        writer.close()
    assert result.returncode == 0, result.stderr
    assert rows_in(tmp_path / "backup" / "gatekiosk-2026-11-01.db") == ["an", "binh", "chi"]


def test_backup_again_on_the_same_day_replaces_that_days_file(
    database: Path, tmp_path: Path
) -> None:
    backups = tmp_path / "backup"
    assert back_up(database, backups, "2026-11-01").returncode == 0
    with sqlite3.connect(database) as db:
        db.execute("INSERT INTO events (who) VALUES ('dung')")
    db.close()
    result = back_up(database, backups, "2026-11-01")
    assert result.returncode == 0, result.stderr
    assert rows_in(backups / "gatekiosk-2026-11-01.db") == ["an", "binh", "chi", "dung"]
    assert len(list(backups.iterdir())) == 1


def test_eighth_daily_backup_deletes_the_oldest(database: Path, tmp_path: Path) -> None:
    backups = tmp_path / "backup"
    days = [f"2026-11-0{n}" for n in range(1, 9)]
    for day in days[:7]:
        assert back_up(database, backups, day).returncode == 0
    assert len(list(backups.glob("gatekiosk-*.db"))) == 7

    result = back_up(database, backups, days[7])

    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in backups.iterdir()) == [f"gatekiosk-{d}.db" for d in days[1:]]
    assert f"removed {backups}/gatekiosk-2026-11-01.db" in result.stdout


def test_backup_of_a_missing_database_fails_with_a_message(tmp_path: Path) -> None:
    result = back_up(tmp_path / "nope.db", tmp_path / "backup", "2026-11-01")
    assert result.returncode == 1
    assert "no database at" in result.stderr
    assert not (tmp_path / "nope.db").exists()


# -- the gate screen -----------------------------------------------------------


def test_screen_waits_for_the_web_and_restarts_chromium(tmp_path: Path) -> None:
    """With stub curl and browser: the browser gets the kiosk flags and the
    display URL, and is started again after it exits."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "curl").write_text('#!/bin/sh\necho curl >>"$CALLS"\n', encoding="utf-8")
    (bin_dir / "chromium").write_text(
        "#!/bin/sh\n"
        'echo "chromium $*" >>"$CALLS"\n'
        # The second start ends the test: stop the wrapper's loop.
        'if [ "$(grep -c ^chromium "$CALLS")" -ge 2 ]; then kill "$PPID"; fi\n'
        "exit 1\n",
        encoding="utf-8",
    )
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CALLS": str(calls),
        "GATEKIOSK_SCREEN_RESTART_S": "0",
        "DISPLAY": "",
        "WAYLAND_DISPLAY": "",
    }

    result = run(tool("bash"), SCREEN, env=env)

    assert result.returncode != 0  # ended by the stub's kill
    lines = calls.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "curl", "the browser started before the web answered"
    starts = [line for line in lines if line.startswith("chromium")]
    assert len(starts) == 2
    for flag in (
        "--kiosk",
        "--noerrdialogs",
        "--disable-infobars",
        "--incognito",
        "--check-for-update-interval=31536000",
        "--disable-features=Translate",
    ):
        assert flag in starts[0].split()
    assert starts[0].endswith(" http://127.0.0.1:8080/display")
    assert "restarting" in result.stderr


@pytest.mark.parametrize("service", ["gatekiosk-sync.service", "gatekiosk-hub.service"])
def test_site_services_are_watched_and_reach_no_device(service: str) -> None:
    command = service.removeprefix("gatekiosk-").removesuffix(".service")
    assert one(service, "Service", "ExecStart") == (
        f"/opt/gatekiosk/venv/bin/gatekiosk {command} --config {CONFIG}"
    )
    assert one(service, "Service", "Type") == "notify"
    assert one(service, "Service", "WatchdogSec") == "30"
    assert one(service, "Service", "PrivateDevices") == "yes"
    assert one(service, "Unit", "StartLimitIntervalSec") == "0"


def test_broker_runs_the_site_config_as_gatekiosk_and_writes_nothing(
    units_with_stub_programs: Path,
) -> None:
    unit = "gatekiosk-broker.service"
    assert one(unit, "Service", "ExecStart") == (
        "/usr/sbin/mosquitto -c /var/lib/gatekiosk/site/broker/mosquitto.conf"
    )
    assert one(unit, "Service", "User") == "gatekiosk"
    assert values(unit, "Service", "ReadWritePaths") == []
    for key, expected in [
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("PrivateDevices", "yes"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ]:
        assert one(unit, "Service", key) == expected, key
    result = run(
        tool("systemd-analyze"),
        "security",
        "--offline=true",
        "--threshold=25",
        "--no-pager",
        units_with_stub_programs / unit,
    )
    assert result.returncode == 0, result.stdout[-400:] + result.stderr
