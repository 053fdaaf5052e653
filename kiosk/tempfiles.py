"""Temporary files that a killed process cannot leave behind.

A process killed with SIGKILL (systemd's last resort, the OOM killer, a
watchdog) runs no ``finally`` and no ``atexit``: every named temporary file
it was writing stays on the disk, and a half-written export of a million
events is about a gigabyte on a Raspberry Pi's SD card. A file opened with
Linux's ``O_TMPFILE`` has no name: the kernel frees it when its last
descriptor closes, however the process ends (after a power cut, the file
system reclaims the orphan at the next mount).

* :class:`AtomicOutput`: a file written unnamed and linked in at its path
  only once it is complete and on disk, for exports written to a file;
* :class:`kiosk.export.workbook.UnnamedTempWorkbook`: an xlsxwriter workbook
  in ``constant_memory`` mode whose temporary files are all unnamed (kept
  with the export, so that commands that write no workbook load no
  xlsxwriter).

Where ``O_TMPFILE`` is missing (not Linux, or a file system without it),
both fall back to named files that are removed on every exit but a kill.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO

log = logging.getLogger(__name__)

_PROC_FD = Path("/proc/self/fd")
# O_TMPFILE refused by the file system (or an old kernel reading it as O_DIRECTORY).
_NO_TMPFILE_ERRNOS = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})


def _open_unnamed(folder: Path) -> int | None:
    """A descriptor of a new unnamed read-write file (mode 0600) in ``folder``
    that can later be linked in; None where ``O_TMPFILE`` or ``/proc`` is missing."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not _PROC_FD.is_dir():
        return None
    try:
        # Without O_EXCL, so that linkat() may give the file a name once complete.
        return os.open(folder, flag | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno in _NO_TMPFILE_ERRNOS:
            return None
        raise


class AtomicOutput:
    """A file that appears at ``target`` complete and on disk, or not at all.

    The bytes go to an unnamed file in ``target``'s folder (mode 0600: the
    exports hold personal data); :meth:`commit` flushes and fsyncs it, then
    links it in at ``target`` (``linkat`` through ``/proc/self/fd``),
    replacing an existing file atomically. Leaving the ``with`` block
    without :meth:`commit` discards it, and so does a kill at any moment:
    the folder then holds the old ``target`` or none, never a part of the
    new one. Two windows remain, each two system calls wide: replacing an
    existing ``target`` links the complete file under a hidden
    ``.NAME.*.part`` name and renames it over ``target``; and where
    ``O_TMPFILE`` is missing, the whole file is written to such a name
    (removed on errors, not on a kill).

    With ``replace=False``, :meth:`commit` never replaces: it raises
    ``FileExistsError`` if ``target`` exists (another process made it
    first), which suits a file that must be created once, whole.

    Example::

        with AtomicOutput(Path("log.csv")) as output:
            output.file.write(data)
            output.commit()
    """

    def __init__(self, target: Path, *, replace: bool = True) -> None:
        self.target = target
        self.replace = replace
        self.folder = target.parent
        self._part: Path | None = None
        descriptor = _open_unnamed(self.folder)
        if descriptor is None:
            log.debug("no unnamed files in %s: writing a hidden .part file", self.folder)
            descriptor, name = tempfile.mkstemp(
                dir=self.folder, prefix=f".{target.name}.", suffix=".part"
            )
            self._part = Path(name)
        self.file: IO[bytes] = os.fdopen(descriptor, "w+b")
        self._done = False

    @property
    def unnamed(self) -> bool:
        """True when no name exists for the file until :meth:`commit`."""
        return self._part is None

    def __enter__(self) -> AtomicOutput:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._done:
            self.discard()

    def commit(self) -> None:
        """Flush and fsync the file, put it at ``target``, fsync the folder.

        Raises ``FileExistsError`` if ``target`` exists and ``replace`` is
        False (leaving the ``with`` block then discards the file)."""
        self.file.flush()
        os.fsync(self.file.fileno())
        if self._part is None:
            self._link_in()
        elif self.replace:
            os.replace(self._part, self.target)
            self._part = None
        else:
            os.link(self._part, self.target)  # never replaces
            os.unlink(self._part)
            self._part = None
        self._done = True
        self.file.close()
        _fsync_folder(self.folder)

    def discard(self) -> None:
        """Forget the file (nothing to remove when it was unnamed). Idempotent."""
        self._done = True
        self.file.close()
        if self._part is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._part)
            self._part = None

    def _link_in(self) -> None:
        source = str(_PROC_FD / str(self.file.fileno()))
        folder = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            # A folder descriptor makes CPython (before 3.13) call linkat() with
            # AT_SYMLINK_FOLLOW, which links the file /proc points at; without
            # one it calls link(), which fails on /proc's link (EXDEV).
            try:
                os.link(source, self.target.name, dst_dir_fd=folder, follow_symlinks=True)
                return
            except FileExistsError:
                if not self.replace:
                    raise
            # linkat() never replaces: link under a hidden name, then rename over.
            hidden = f".{self.target.name}.{secrets.token_hex(6)}.part"
            os.link(source, hidden, dst_dir_fd=folder, follow_symlinks=True)
            try:
                os.replace(hidden, self.target.name, src_dir_fd=folder, dst_dir_fd=folder)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(hidden, dir_fd=folder)
                raise
        finally:
            os.close(folder)


def _fsync_folder(folder: Path) -> None:
    """Make a new name durable (POSIX); a no-op where folders cannot be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
