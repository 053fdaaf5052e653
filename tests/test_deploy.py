"""The deploy artifacts: shell scripts, systemd units, the backup script, the
installer's options and the configuration it writes.

These run real tools (shellcheck, systemd-analyze, sqlite3, bash) on the real
files; a missing tool is a failure with the command that installs it, never a
skip. The full install into a Debian root is deploy/test-install.sh (root,
network, minutes), not part of this suite.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
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
    "gatekiosk-uplink.service",
    "gatekiosk-province-web.service",
]
# Runs before the kiosk, as no one (DynamicUser=), reading only /proc/devices and /dev.
DEVICES_UNIT = "gatekiosk-devices.service"
UNITS = [*SERVICES, DEVICES_UNIT, "gatekiosk-maintenance.timer", "gatekiosk-broker.service"]
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
        "--simulated-pins",
        "--uninstall",
        "--purge-data",
        "--print-config",
        "--province",
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


@pytest.mark.parametrize(
    "other",
    [["--hub"], ["--join", "10.0.0.2", "--token", "t", "--ca", "ab:cd"], ["--with-screen"]],
)
def test_install_refuses_a_province_server_that_is_also_a_gate(other: list[str]) -> None:
    for args in (["--province", *other], [*other, "--province"]):
        result = run(tool("bash"), INSTALL, *args)
        assert result.returncode == 1, args
        assert "--province makes the province's server, not a gate" in result.stderr
        assert "--hub, --join or --with-screen" in result.stderr
        assert result.stdout == ""


def test_province_config_is_valid_and_reads_the_database_as_the_installers_reader(
    tmp_path: Path,
) -> None:
    result = run(tool("bash"), INSTALL, "--print-config", "--province")
    assert result.returncode == 0, result.stderr
    written = tmp_path / "province.toml"
    written.write_text(result.stdout, encoding="utf-8")

    settings = load_settings(written, env={})

    assert settings["province_web.dsn"] == "host=localhost dbname=province user=province_web"
    assert settings["gate.data_dir"] == "/var/lib/gatekiosk"
    assert settings["web.host"] == "127.0.0.1"
    assert settings["web.port"] == 8080
    assert "province-web.pgpass" in result.stdout  # where the password is, never the password
    assert "password" not in settings["province_web.dsn"]
    # No camera, no pins: nothing of a gate's is detected or written.
    assert "[camera]" not in result.stdout
    assert "[pins]" not in result.stdout


def test_install_stops_with_a_message_when_not_root() -> None:
    # As root the script runs as nobody, who may not be able to enter the
    # folder holding this checkout (root's home, a mktemp -d folder): it runs
    # from a copy in a folder anyone can read, started from there.
    with tempfile.TemporaryDirectory(prefix="gatekiosk-install-") as tmp:
        folder = Path(tmp)
        folder.chmod(0o755)
        script = folder / "install.sh"
        shutil.copyfile(INSTALL, script)
        script.chmod(0o755)
        command = [tool("bash"), str(script), "--no-start"]
        if os.geteuid() == 0:
            setpriv = [tool("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups"]
            command = [*setpriv, *command]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=60, check=False, cwd=folder
        )
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
    assert changed <= {"gate.data_dir", "camera.source", "camera.device", "pins.backend"}


# -- which camera, which pins --------------------------------------------------

DETECT = DEPLOY / "gatekiosk-detect-camera.sh"


class FakeSysfs:
    """A /sys and /dev with the video4linux nodes a Pi shows for its cameras."""

    def __init__(self, root: Path) -> None:
        self.sys = root / "sys"
        self.dev = root / "dev"
        (self.sys / "class" / "video4linux").mkdir(parents=True)
        (self.dev / "v4l" / "by-id").mkdir(parents=True)
        for bus, driver in [("usb", "uvcvideo"), ("platform", "rp1-cfe"), ("i2c", "imx708")]:
            (self.sys / "bus" / bus / "drivers" / driver).mkdir(parents=True)

    def node(self, name: str, *, bus: str, driver: str, index: int = 0, label: str = "") -> None:
        device = self.sys / "devices" / bus / name
        device.mkdir(parents=True)
        (device / "driver").symlink_to(self.sys / "bus" / bus / "drivers" / driver)
        (device / "subsystem").symlink_to(self.sys / "bus" / bus)
        node = self.sys / "class" / "video4linux" / name
        node.mkdir()
        (node / "device").symlink_to(device)
        (node / "index").write_text(f"{index}\n", encoding="utf-8")
        (node / "name").write_text(f"{label or name}\n", encoding="utf-8")

    def webcam(self, first: int, by_id: str | None = None) -> None:
        self.node(f"video{first}", bus="usb", driver="uvcvideo", index=0)
        self.node(f"video{first + 1}", bus="usb", driver="uvcvideo", index=1)
        if by_id:
            (self.dev / "v4l" / "by-id" / by_id).symlink_to(f"../../video{first}")

    def camera_module(self) -> None:
        for n in range(8):  # rp1-cfe's nodes, as on a Pi 5
            self.node(f"video{n}", bus="platform", driver="rp1-cfe")
        self.node("v4l-subdev0", bus="platform", driver="rp1-cfe", label="csi2")
        self.node("v4l-subdev2", bus="i2c", driver="imx708", label="imx708")

    def detect(self, path: str = "/usr/bin:/bin") -> tuple[str, str]:
        result = run(
            tool("bash"),
            DETECT,
            env={"GATEKIOSK_SYSFS": str(self.sys), "GATEKIOSK_DEV": str(self.dev), "PATH": path},
        )
        assert result.returncode == 0, result.stderr
        return result.stdout, result.stderr


@pytest.fixture
def sysfs(tmp_path: Path) -> FakeSysfs:
    return FakeSysfs(tmp_path)


def test_no_camera_is_reported_as_none(sysfs: FakeSysfs) -> None:
    out, err = sysfs.detect()
    assert out == "none\t\n"
    assert "no camera found" in err


def test_a_usb_webcam_is_read_through_v4l2_by_its_stable_name(sysfs: FakeSysfs) -> None:
    sysfs.node("video10", bus="platform", driver="rp1-cfe")  # not a webcam
    sysfs.webcam(19, by_id="usb-046d_HD_Pro_Webcam_C920-video-index0")
    out, _ = sysfs.detect()
    assert out == "v4l2\t/dev/v4l/by-id/usb-046d_HD_Pro_Webcam_C920-video-index0\n"


def test_a_webcam_without_a_by_id_link_is_named_by_its_picture_node(sysfs: FakeSysfs) -> None:
    sysfs.webcam(2)  # video2 pictures, video3 metadata
    out, _ = sysfs.detect()
    assert out == "v4l2\t/dev/video2\n"


def test_a_camera_module_is_read_through_picamera2(sysfs: FakeSysfs) -> None:
    sysfs.camera_module()
    out, err = sysfs.detect()
    assert out == "picamera2\t0\n"
    assert "imx708" in err


def test_a_camera_module_wins_over_a_webcam(sysfs: FakeSysfs) -> None:
    sysfs.camera_module()
    sysfs.webcam(20)
    out, err = sysfs.detect()
    assert out == "picamera2\t0\n"
    assert "/dev/video20" in err


def test_libcameras_list_tells_a_camera_module_from_a_webcam(
    sysfs: FakeSysfs, tmp_path: Path
) -> None:
    """rpicam-hello lists webcams too; only a camera on an I2C bus is a Camera Module."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    listing = tmp_path / "listing"
    stub = bin_dir / "rpicam-hello"
    stub.write_text(f'#!/bin/sh\ncat "{listing}"\n', encoding="utf-8")
    stub.chmod(0o755)
    sysfs.webcam(0)
    listing.write_text(
        "Available cameras\n-----------------\n"
        "0 : 'HD Pro Webcam C920' [640x480] "
        "(/base/scb/pcie@7d500000/pci@0,0/usb@0,0-1:1.0-046d:082d)\n",
        encoding="utf-8",
    )
    assert sysfs.detect(f"{bin_dir}:/usr/bin:/bin")[0] == "v4l2\t/dev/video0\n"

    listing.write_text(
        "Available cameras\n-----------------\n"
        "0 : imx708_wide [4608x2592 10-bit RGGB] (/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a)\n"
        "    Modes: 'SRGGB10_CSI2P' : 1536x864 [120.13 fps - (768, 432)/3072x1728 crop]\n",
        encoding="utf-8",
    )
    out, err = sysfs.detect(f"{bin_dir}:/usr/bin:/bin")
    assert out == "picamera2\t0\n"
    assert "imx708_wide" in err


def print_config(
    *args: str, model: str | None = None, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    env = {"GATEKIOSK_SYSFS": str(tmp_path / "no-sys"), "GATEKIOSK_DEV": str(tmp_path / "no-dev")}
    if model is not None:
        model_file = tmp_path / "model"
        model_file.write_bytes(model.encode() + b"\0")
        env["GATEKIOSK_MODEL_FILE"] = str(model_file)
    else:
        env["GATEKIOSK_MODEL_FILE"] = str(tmp_path / "no-model")
    return run(tool("bash"), INSTALL, "--print-config", *args, env=env)


def test_installer_writes_the_detected_webcam_into_the_config(
    sysfs: FakeSysfs, tmp_path: Path
) -> None:
    sysfs.webcam(4, by_id="usb-Logitech_C270-video-index0")
    result = run(
        tool("bash"),
        INSTALL,
        "--print-config",
        env={
            "GATEKIOSK_SYSFS": str(sysfs.sys),
            "GATEKIOSK_DEV": str(sysfs.dev),
            "GATEKIOSK_MODEL_FILE": str(tmp_path / "no-model"),
        },
    )
    assert result.returncode == 0, result.stderr
    written = tmp_path / "gatekiosk.toml"
    written.write_text(result.stdout, encoding="utf-8")
    settings = load_settings(written, env={})
    assert settings["camera.source"] == "v4l2"
    assert settings["camera.device"] == "/dev/v4l/by-id/usb-Logitech_C270-video-index0"
    assert '# camera.source is "v4l2": a USB webcam is attached' in result.stdout


def test_installer_on_a_pi_without_lgpio_refuses(tmp_path: Path) -> None:
    result = print_config(model="Raspberry Pi 5 Model B Rev 1.0", tmp_path=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "this is a Raspberry Pi 5 Model B Rev 1.0, but" in result.stderr
    assert "cannot import lgpio" in result.stderr
    assert "--simulated-pins" in result.stderr


def test_installer_on_a_pi_simulates_pins_only_when_told(tmp_path: Path) -> None:
    result = print_config(
        "--simulated-pins", model="Raspberry Pi 4 Model B Rev 1.5", tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert '\nbackend = "mock"\n' in result.stdout
    assert "THE DOOR NEVER OPENS" in result.stdout
    assert "the door never opens" in result.stderr


def test_installer_on_a_pi_with_lgpio_drives_real_pins(tmp_path: Path) -> None:
    python = tmp_path / "python-with-lgpio"
    python.write_text('#!/bin/sh\n[ "$1 $2" = "-c import lgpio" ]\n', encoding="utf-8")
    python.chmod(0o755)
    (tmp_path / "model").write_bytes(b"Raspberry Pi 4 Model B Rev 1.5\0")
    result = run(
        tool("bash"),
        INSTALL,
        "--print-config",
        env={
            "GATEKIOSK_SYSFS": str(tmp_path / "no-sys"),
            "GATEKIOSK_MODEL_FILE": str(tmp_path / "model"),
            "GATEKIOSK_SYSTEM_PYTHON": str(python),
        },
    )
    assert result.returncode == 0, result.stderr
    assert '\nbackend = "auto"\n' in result.stdout


def test_installer_elsewhere_simulates_pins_without_being_told(tmp_path: Path) -> None:
    result = print_config(model="QEMU Virtual Machine", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '\nbackend = "mock"\n' in result.stdout  # no python3-lgpio on a build machine
    assert "lgpio is not installed (not Raspberry Pi OS)" in result.stdout


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
    for program in ("venv/bin/gatekiosk", "bin/gatekiosk-backup", "bin/gatekiosk-wait-devices"):
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


@pytest.mark.parametrize(
    ("service", "max_exposure"), [*((s, 2.5) for s in SERVICES), (DEVICES_UNIT, 1.5)]
)
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


def test_kiosk_starts_after_the_camera_and_gpio_drivers_but_not_only_with_them() -> None:
    assert one("gatekiosk-kiosk.service", "Unit", "After") == DEVICES_UNIT
    assert one("gatekiosk-kiosk.service", "Unit", "Wants") == DEVICES_UNIT
    assert values("gatekiosk-kiosk.service", "Unit", "Requires") == []
    assert one(DEVICES_UNIT, "Unit", "After").split() == [
        "systemd-modules-load.service",
        "systemd-udev-trigger.service",
    ]
    assert one(DEVICES_UNIT, "Service", "Type") == "oneshot"
    assert one(DEVICES_UNIT, "Service", "ExecStart") == (
        "/opt/gatekiosk/bin/gatekiosk-wait-devices --timeout-s 30"
    )
    assert one(DEVICES_UNIT, "Service", "DynamicUser") == "yes"
    assert values(DEVICES_UNIT, "Service", "DeviceAllow") == []
    assert "Install" not in directives(DEVICES_UNIT)  # only ever pulled in by the kiosk


WAIT = DEPLOY / "gatekiosk-wait-devices.sh"
PROC_DEVICES = """Character devices:
  1 mem
  4 tty
 {gpio}
 {video}
 {media}
Block devices:
  8 sd
 {block_video}
"""


def wait_for_devices(
    tmp_path: Path, *, nodes: list[str], timeout_s: str = "0", **majors: str
) -> subprocess.CompletedProcess[str]:
    """The script over a fake /proc/devices and /dev; its ``sleep`` calls are
    recorded in ``tmp_path/sleeps`` (a stub first on PATH that still sleeps)."""
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    sleep = stubs / "sleep"
    sleep.write_text(
        f'#!/bin/sh\necho "$1" >> "{tmp_path / "sleeps"}"\nexec {tool("sleep")} "$@"\n',
        encoding="utf-8",
    )
    sleep.chmod(0o755)
    proc = tmp_path / "devices"
    fields = {"gpio": "", "video": "", "media": "", "block_video": "", **majors}
    proc.write_text(PROC_DEVICES.format(**fields), encoding="utf-8")
    dev = tmp_path / "dev"
    dev.mkdir(exist_ok=True)
    for node in nodes:
        (dev / node).touch()
    return run(
        tool("bash"),
        WAIT,
        "--timeout-s",
        timeout_s,
        env={
            "GATEKIOSK_PROC_DEVICES": str(proc),
            "GATEKIOSK_DEV": str(dev),
            "PATH": f"{stubs}:{os.environ['PATH']}",
        },
    )


def test_wait_for_devices_returns_at_once_when_the_drivers_are_there(tmp_path: Path) -> None:
    result = wait_for_devices(
        tmp_path,
        nodes=["video0", "gpiochip0"],
        timeout_s="30",
        gpio="254 gpiochip",
        video="81 video4linux",
        media="238 media",
    )
    assert result.returncode == 0, result.stderr
    # At once: it never waited. (Its "after N s" counts whole seconds of the
    # wall clock, so a second may tick over on a busy machine.)
    assert not (tmp_path / "sleeps").exists()
    assert re.search(r"camera and GPIO drivers ready after [01] s", result.stdout)
    assert result.stderr == ""


def test_wait_for_devices_gives_up_saying_what_is_missing(tmp_path: Path) -> None:
    """videodev not loaded: no class, no node. A block device of that name does not count."""
    result = wait_for_devices(
        tmp_path, nodes=["gpiochip0"], gpio="254 gpiochip", block_video="81 video4linux"
    )
    assert result.returncode == 0  # the gate starts anyway
    assert "still missing after 0 s: char-video4linux char-media /dev/video*;" in result.stderr
    assert "starting the kiosk without them" in result.stderr


def test_web_unit_has_no_device_access() -> None:
    assert values("gatekiosk-web.service", "Service", "DeviceAllow") == []
    assert one("gatekiosk-web.service", "Service", "PrivateDevices") == "yes"
    assert one("gatekiosk-web.service", "Service", "DevicePolicy") == "closed"
    assert one("gatekiosk-web.service", "Service", "ExecStart") == (
        f"/opt/gatekiosk/venv/bin/gatekiosk web --config {CONFIG}"
    )
    assert one("gatekiosk-web.service", "Service", "Restart") == "on-failure"


def test_province_web_unit_is_copied_but_never_enabled_by_the_installer() -> None:
    unit = "gatekiosk-province-web.service"
    assert one(unit, "Service", "ExecStart") == (
        "/opt/gatekiosk/venv/bin/gatekiosk province web --config /etc/gatekiosk/province.toml"
    )
    assert values(unit, "Service", "DeviceAllow") == []
    assert one(unit, "Service", "PrivateDevices") == "yes"
    assert one(unit, "Service", "Restart") == "on-failure"
    assert one(unit, "Unit", "StartLimitIntervalSec") == "0"
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    assert "Environment=PGPASSFILE=/etc/gatekiosk/province-web.pgpass\n" in (
        DEPLOY / unit
    ).read_text(encoding="utf-8")
    # Copied with the other units; enabled only by install.sh --province
    # (install_province_web, tests/test_install_province.py), never on a gate or hub.
    text = INSTALL.read_text(encoding="utf-8")
    assert f"    {unit}\n" in text
    assert "readonly PROVINCE_WEB_UNIT=gatekiosk-province-web.service\n" in text
    before, province_section = text.split("\n# -- the province's server (--province)", 1)
    gate_paths = before + province_section.split("\n# -- uninstall", 1)[1]
    assert "province-web" not in "".join(
        line for line in gate_paths.splitlines() if "systemctl enable" in line or "restart" in line
    )
    assert "PROVINCE_WEB_UNIT" not in "".join(
        line for line in gate_paths.splitlines() if "systemctl enable" in line or "restart" in line
    )


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


def test_screen_is_turned_on_again_and_again_not_once(tmp_path: Path) -> None:
    """On Wayland, wlopm --on runs every GATEKIOSK_SCREEN_KEEP_ON_S while the browser runs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "curl").write_text("#!/bin/sh\n", encoding="utf-8")
    (bin_dir / "wlopm").write_text('#!/bin/sh\necho "wlopm $*" >>"$CALLS"\n', encoding="utf-8")
    (bin_dir / "chromium").write_text(
        "#!/bin/sh\n"
        # Stay up until the screen was turned on three times, then stop the wrapper.
        ': >>"$CALLS"\n'
        'while [ "$(grep -c ^wlopm "$CALLS")" -lt 3 ]; do sleep 0.05; done\n'
        'kill "$PPID"\n',
        encoding="utf-8",
    )
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CALLS": str(calls),
        "GATEKIOSK_SCREEN_KEEP_ON_S": "0.1",
        "WAYLAND_DISPLAY": "wayland-0",
        "DISPLAY": "",
    }

    result = run(tool("bash"), SCREEN, env=env)

    assert result.returncode != 0  # ended by the stub's kill
    lines = calls.read_text(encoding="utf-8").splitlines()
    assert lines[:3] == ["wlopm --on *"] * 3


# -- the gate screen in the desktop session -------------------------------------

SCREEN_SETUP = DEPLOY / "gatekiosk-screen-setup.sh"
SCREEN_LINE = "/opt/gatekiosk/bin/gatekiosk-screen &"
SWAYIDLE = "swayidle -w timeout 600 'wlopm --off \\*' resume 'wlopm --on \\*' &"


@pytest.fixture
def desktop(tmp_path: Path) -> Path:
    """A Raspberry Pi OS /etc with labwc's system autostart, and an empty home."""
    etc = tmp_path / "etc"
    (etc / "xdg" / "labwc").mkdir(parents=True)
    (etc / "xdg" / "labwc" / "autostart").write_text(
        "/usr/bin/lwrespawn /usr/bin/wf-panel-pi &\n/usr/bin/kanshi &\n", encoding="utf-8"
    )
    (tmp_path / "home").mkdir()
    return tmp_path


def screen_setup(desktop: Path, action: str) -> subprocess.CompletedProcess[str]:
    return run(
        tool("bash"),
        SCREEN_SETUP,
        action,
        desktop / "home",
        env={"GATEKIOSK_ETC": str(desktop / "etc"), "PATH": "/usr/bin:/bin"},
    )


def test_screen_setup_adds_to_labwcs_merged_autostart_without_copying_the_system_one(
    desktop: Path,
) -> None:
    result = screen_setup(desktop, "add")
    assert result.returncode == 0, result.stderr
    autostart = desktop / "home" / ".config" / "labwc" / "autostart"
    # labwc -m merges this with /etc/xdg/labwc/autostart: the panel is not repeated here.
    assert autostart.read_text(encoding="utf-8") == SCREEN_LINE + "\n"
    assert screen_setup(desktop, "add").returncode == 0
    assert autostart.read_text(encoding="utf-8") == SCREEN_LINE + "\n"


def test_screen_setup_turns_raspi_configs_blanking_off_and_remove_restores_it(
    desktop: Path,
) -> None:
    autostart = desktop / "home" / ".config" / "labwc" / "autostart"
    autostart.parent.mkdir(parents=True)
    autostart.write_text(f"{SWAYIDLE}\nsome-tool &\n", encoding="utf-8")

    result = screen_setup(desktop, "add")

    assert result.returncode == 0, result.stderr
    lines = autostart.read_text(encoding="utf-8").splitlines()
    assert lines == [
        f"# gatekiosk: no blanking on the gate screen: {SWAYIDLE}",
        "some-tool &",
        SCREEN_LINE,
    ]
    assert "swayidle) turned off" in result.stdout

    assert screen_setup(desktop, "remove").returncode == 0
    assert autostart.read_text(encoding="utf-8").splitlines() == [SWAYIDLE, "some-tool &"]


def test_screen_setup_remove_deletes_a_file_it_alone_filled(desktop: Path) -> None:
    assert screen_setup(desktop, "add").returncode == 0
    assert screen_setup(desktop, "remove").returncode == 0
    assert not (desktop / "home" / ".config" / "labwc" / "autostart").exists()


def test_screen_setup_warns_of_blanking_it_cannot_remove(desktop: Path) -> None:
    system = desktop / "etc" / "xdg" / "labwc" / "autostart"
    system.write_text(system.read_text(encoding="utf-8") + SWAYIDLE + "\n", encoding="utf-8")
    result = screen_setup(desktop, "add")
    assert result.returncode == 0
    assert f"{system} starts swayidle" in result.stderr


def test_screen_setup_keeps_wayfire_from_blanking(desktop: Path) -> None:
    ini = desktop / "home" / ".config" / "wayfire.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(
        "[core]\nplugins = autostart idle\n\n[idle]\ndpms_timeout = 600\n\n"
        "[autostart]\npanel = wf-panel-pi\n",
        encoding="utf-8",
    )
    assert screen_setup(desktop, "add").returncode == 0
    assert screen_setup(desktop, "add").returncode == 0
    text = ini.read_text(encoding="utf-8")
    assert "[idle]\ndpms_timeout = -1\nscreensaver_timeout = -1\n" in text
    assert "600" not in text
    assert "[autostart]\ngatekiosk_screen = /opt/gatekiosk/bin/gatekiosk-screen\n" in text
    assert text.count("gatekiosk_screen") == 1

    assert screen_setup(desktop, "remove").returncode == 0
    assert "gatekiosk" not in ini.read_text(encoding="utf-8")
    assert "panel = wf-panel-pi" in ini.read_text(encoding="utf-8")


def test_screen_setup_starts_lxde_from_a_copy_of_the_system_autostart(desktop: Path) -> None:
    system = desktop / "etc" / "xdg" / "lxsession" / "LXDE-pi" / "autostart"
    system.parent.mkdir(parents=True)
    system.write_text("@lxpanel --profile LXDE-pi\n", encoding="utf-8")
    assert screen_setup(desktop, "add").returncode == 0
    user = desktop / "home" / ".config" / "lxsession" / "LXDE-pi" / "autostart"
    assert user.read_text(encoding="utf-8").splitlines() == [
        "@lxpanel --profile LXDE-pi",
        "@/opt/gatekiosk/bin/gatekiosk-screen",
    ]


def test_installer_sets_up_the_screen_users_session_not_sudo_users() -> None:
    text = INSTALL.read_text(encoding="utf-8")
    assert "raspi-config nonint" not in text
    assert "pgrep" not in text
    assert 'as_user "$user" env HOME="$home" "$PREFIX/bin/gatekiosk-screen-setup" add' in text


def test_arm64_install_test_is_a_make_target_kept_out_of_ci() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "\ntest-install-arm64:\n\tbash deploy/test-install-arm64.sh\n" in makefile
    assert "arm64" not in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    wrapper = (DEPLOY / "test-install-arm64.sh").read_text(encoding="utf-8")
    assert "suites=(bookworm trixie)" in wrapper
    assert '"$here/test-install.sh" --arch arm64 --suite "$suite" --cli' in wrapper
    for package in ("python3-picamera2", "libcamera", "python3-lgpio"):
        assert package in wrapper, f"the wrapper does not say that {package} is missing"


@pytest.mark.parametrize(
    "service", ["gatekiosk-sync.service", "gatekiosk-hub.service", "gatekiosk-uplink.service"]
)
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


def test_uplink_starts_after_the_hub_and_only_where_a_province_is_set() -> None:
    """After the hub (its database made and migrated), never pulling it in; the
    installer enables it only for [uplink] settings, never with the kiosk's units."""
    unit = "gatekiosk-uplink.service"
    assert one(unit, "Unit", "After") == "gatekiosk-hub.service"
    assert values(unit, "Unit", "Wants") == values(unit, "Unit", "Requires") == []
    text = INSTALL.read_text(encoding="utf-8")
    always = next(line for line in text.splitlines() if "systemctl enable gatekiosk-kiosk" in line)
    assert unit not in always
    function = text.split("\ninstall_uplink() {", 1)[1].split("\n}\n", 1)[0]
    assert "uplink_configured(settings.values)" in function
    assert function.index("sys.exit(3)") < function.index(f"systemctl enable {unit}")
    assert "    install_uplink\n" in text


def install_uplink(tmp_path: Path, config: str, *, enabled_before: bool = False) -> tuple[int, str]:
    """install.sh's install_uplink, run alone with a stub systemctl (its calls
    printed) over ``config``; the exit status and the output."""
    text = INSTALL.read_text(encoding="utf-8")
    function = "install_uplink() {" + text.split("\ninstall_uplink() {", 1)[1].split("\n}\n")[0]
    venv = Path(sys.prefix)  # this virtualenv, as /opt/gatekiosk/venv
    conf = tmp_path / "gatekiosk.toml"
    conf.write_text(f'[gate]\ndata_dir = "{tmp_path}"\n' + config, encoding="utf-8")
    script = f"""set -euo pipefail
VENV={venv}
CONF={conf}
start=no
say() {{ echo "say: $*"; }}
warn() {{ echo "warn: $*"; }}
die() {{ echo "die: $*"; exit 1; }}
as_service_user() {{ "$@"; }}
systemctl() {{
    echo "systemctl $*"
    [[ $1 != is-enabled ]] || {"true" if enabled_before else "false"}
}}
{function}
}}
install_uplink
"""
    result = run(tool("bash"), "-c", script)
    return result.returncode, result.stdout + result.stderr


def test_installer_enables_the_uplink_only_with_uplink_settings(tmp_path: Path) -> None:
    status, output = install_uplink(tmp_path, "")
    assert status == 0, output
    assert "systemctl enable" not in output


def test_installer_enables_the_uplink_for_a_hub_pointed_at_its_province(tmp_path: Path) -> None:
    status, output = install_uplink(tmp_path, '[uplink]\nhost = "127.0.0.1"\nrole = "site_a"\n')
    assert status == 0, output
    assert "systemctl enable gatekiosk-uplink.service" in output
    assert "uplink to host=127.0.0.1 port=5432 dbname=province user=site_a" in output


def test_installer_stops_on_uplink_settings_without_a_ca(tmp_path: Path) -> None:
    status, output = install_uplink(tmp_path, '[uplink]\nhost = "10.0.0.5"\nrole = "site_a"\n')
    assert status == 1
    assert "uplink.ca_file is empty" in output
    assert "systemctl enable" not in output


def test_installer_disables_an_uplink_whose_settings_were_removed(tmp_path: Path) -> None:
    status, output = install_uplink(tmp_path, "", enabled_before=True)
    assert status == 0, output
    assert "systemctl disable gatekiosk-uplink.service" in output
