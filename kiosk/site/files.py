"""Writing the site's files so that a reader never sees half of one.

Certificates, keys, the revocation list and the broker's configuration are
all read by other processes (Mosquitto reads its files again on SIGHUP), so
each is written to a hidden temporary file in the same folder, flushed to
disk and renamed over the old one: a reader sees the old file or the new
one. The temporary file is created with its final mode, so a private key is
never readable by others, not even for a moment.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from kiosk.site import SiteError

PRIVATE_FILE_MODE = 0o600  # private keys
PUBLIC_FILE_MODE = 0o644  # certificates, the revocation list, the broker's config
PRIVATE_DIR_MODE = 0o700
PUBLIC_DIR_MODE = 0o755


def ensure_dir(path: Path, mode: int) -> None:
    """Create ``path`` (and parents) and give it ``mode`` whatever the umask."""
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        os.chmod(path, mode)
    except OSError as exc:
        raise SiteError(f"cannot create {path}: {exc.strerror}") from None


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Put ``data`` at ``path`` with ``mode``: whole, on disk, or not at all."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), mode)  # the umask may have removed bits
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
    except OSError as exc:
        raise SiteError(f"cannot write {path}: {exc.strerror}") from None


def _fsync_dir(path: Path) -> None:
    """Make the rename durable: after a power cut the new file is there."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
