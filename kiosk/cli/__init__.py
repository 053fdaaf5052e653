"""The ``gatekiosk`` command: a thin click layer over the library.

Library errors become ``Error: ...`` and exit status 1 (in
:mod:`kiosk.cli.group`); nothing else is caught here. One module per family
of commands; each loads what it uses when it runs, so a command that touches
no image (``export``, ``user``, ``keys``, ``trust``, ``purge``,
``check --payload``) loads no OpenCV, zxing-cpp or picamera2.
"""

from __future__ import annotations

import os

import kiosk.cli.province_web  # noqa: F401  (gatekiosk province web)

# Importing the command modules registers their commands on the group.
from kiosk.cli import check, declare, gate, images, keys, log, province, site, site_admin, users  # noqa: F401
from kiosk.cli.group import cli

__all__ = ["cli", "main"]


def main() -> None:
    """The console script ``gatekiosk``."""
    # OpenCV prints a warning of its own on every failed camera open; the
    # camera module already reports the state once per change.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    cli(prog_name="gatekiosk")
