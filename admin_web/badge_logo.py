"""The site's optional logo on staff badges: a small PNG or JPEG in the data folder.

Kept as a file beside the database (``badge-logo``), not in it: it is the
site's, like its keys, and a backup of the folder keeps it. Only PNG and
JPEG are taken, recognised by their first bytes rather than by the file's
name or the browser's word, and at most :data:`LOGO_MAX_BYTES`; an SVG could
carry script, and anything else would not print the same everywhere. The
badge sheet inlines it as a ``data:`` URL, which the pages' CSP allows.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

from kiosk.tempfiles import AtomicOutput

log = logging.getLogger(__name__)

LOGO_FILE = "badge-logo"
LOGO_MAX_BYTES = 200 * 1024
"""A logo printed 1.5 cm tall needs far less; this keeps the badge sheet light."""

_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
}


class LogoError(ValueError):
    """An upload that is not a logo the badges can print; the text says why, in English."""


def image_type(data: bytes) -> str | None:
    """The MIME type of a PNG or JPEG, from its first bytes; None for anything else."""
    for signature, mimetype in _SIGNATURES.items():
        if data.startswith(signature):
            return mimetype
    return None


def check_logo(data: bytes) -> str:
    """The logo's MIME type; LogoError if it is empty, too large or not PNG/JPEG."""
    if not data:
        raise LogoError("empty")
    if len(data) > LOGO_MAX_BYTES:
        raise LogoError("too-large")
    mimetype = image_type(data)
    if mimetype is None:
        raise LogoError("not-an-image")
    return mimetype


def save_logo(data_dir: Path, data: bytes) -> None:
    """Check and keep ``data`` as the badges' logo, replacing any before, whole or not at all."""
    check_logo(data)
    with AtomicOutput(data_dir / LOGO_FILE) as output:
        output.file.write(data)
        output.commit()


def remove_logo(data_dir: Path) -> bool:
    """Remove the logo; False if there was none."""
    try:
        (data_dir / LOGO_FILE).unlink()
    except FileNotFoundError:
        return False
    return True


def logo_data_url(data_dir: Path) -> str | None:
    """The logo as a ``data:`` URL, or None without one (or with a file that is
    no longer a valid logo, which is logged and not printed)."""
    try:
        data = (data_dir / LOGO_FILE).read_bytes()
    except FileNotFoundError:
        return None
    try:
        mimetype = check_logo(data)
    except LogoError as exc:
        log.warning("the badge logo %s is not printed: %s", data_dir / LOGO_FILE, exc)
        return None
    return f"data:{mimetype};base64," + base64.b64encode(data).decode("ascii")
