"""The data folder and the database file, private whatever the umask.

Under systemd the units set a umask, but outside it (the demo, a manager
trying the gate on a laptop) the umask is usually 022: a database created
then, and its WAL, would be readable by every user of the machine, with
names, dates of birth and, if turned on, ID numbers. So a data folder we
create is 0700, and the database file is created 0600 before SQLite opens
it; SQLite gives its ``-wal`` and ``-shm`` files the database's mode.

Folders and files that already exist keep their mode: the folder may be one
the user chose (their home, a mount point), and a changed mode on an
existing install could lock out a backup that reads it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents with mode 0700. Raises OSError."""
    missing: list[Path] = []
    at = path
    while not at.exists() and at != at.parent:
        missing.append(at)
        at = at.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first
            folder.mkdir(mode=PRIVATE_DIR_MODE)
            os.chmod(folder, PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask
    path.mkdir(exist_ok=True)  # FileExistsError when a file stands where the folder goes


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 in a private folder (see
    :func:`ensure_private_dir`), unless it exists. Raises OSError."""
    ensure_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)
