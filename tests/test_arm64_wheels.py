"""Every runtime dependency installs on a Raspberry Pi from a ready-made wheel.

A Pi runs arm64 (aarch64) Raspberry Pi OS: Bookworm has Python 3.11 and
glibc 2.36, Trixie Python 3.13 and glibc 2.41. install.sh pins numpy to the
one apt installed (python3-picamera2 is built against it), so pip must find
aarch64 wheels of everything else that accept that numpy. A dependency
without one would be compiled on the Pi for an hour, or fail to build.

pip resolves the same requirements for those targets with ``--dry-run``:
it reads PyPI's metadata, downloads no wheel and installs nothing (a few
seconds each). The whole install on arm64, under emulation, is
``make test-install-arm64``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# (Python, newest glibc of the release, numpy the release's python3-numpy gives)
TARGETS = {
    "bookworm": ("3.11", 36, "numpy==1.24.2"),
    "trixie": ("3.13", 41, "numpy>=2.2,<2.3"),
}


def runtime_requirements(numpy_pin: str) -> list[str]:
    """pyproject's dependencies, numpy replaced by the release's own."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [r for r in project["dependencies"] if not re.match(r"numpy\b", r)]
    return [*requirements, numpy_pin]


def platforms(newest_glibc_minor: int) -> list[str]:
    """Every manylinux tag a Pi with this glibc accepts, newest first."""
    tags = [f"manylinux_2_{minor}_aarch64" for minor in range(newest_glibc_minor, 16, -1)]
    return [*tags, "manylinux2014_aarch64"]


@pytest.mark.parametrize("release", sorted(TARGETS))
def test_every_dependency_has_an_aarch64_wheel(release: str, tmp_path: Path) -> None:
    python, glibc_minor, numpy_pin = TARGETS[release]
    report = tmp_path / "report.json"
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--only-binary=:all:",
        "--implementation=cp",
        f"--python-version={python}",
        *(f"--platform={tag}" for tag in platforms(glibc_minor)),
        f"--target={tmp_path / 'target'}",
        "--disable-pip-version-check",
        "--quiet",
        f"--report={report}",
        *runtime_requirements(numpy_pin),
    ]

    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    missing = re.findall(r"satisfies the requirement (\S+)", result.stderr)
    assert result.returncode == 0, (
        f"Raspberry Pi OS {release} (aarch64, Python {python}, glibc 2.{glibc_minor}, "
        f"{numpy_pin}): no wheel for {', '.join(missing) or 'some dependency'}; "
        "install.sh on a Pi would have to compile it. pip said:\n" + result.stderr[-2000:]
    )
    chosen = {
        item["metadata"]["name"].lower(): item["download_info"]["url"].rsplit("/", 1)[-1]
        for item in json.loads(report.read_text(encoding="utf-8"))["install"]
    }
    assert "opencv-python" in chosen
    for name, wheel in chosen.items():
        assert wheel.endswith(".whl"), f"{name}: {wheel} is not a wheel"
        assert wheel.endswith(("-any.whl", "aarch64.whl")), f"{name}: {wheel} is not for aarch64"
