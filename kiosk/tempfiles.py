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
* :class:`UnnamedTempWorkbook`: an xlsxwriter workbook in ``constant_memory``
  mode whose temporary files are all unnamed.

Where ``O_TMPFILE`` is missing (not Linux, or a file system without it),
both fall back to named files that are removed on every exit but a kill.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from zipfile import ZIP64_LIMIT, ZIP_DEFLATED, ZipFile, ZipInfo

import xlsxwriter
from xlsxwriter.packager import Packager
from xlsxwriter.worksheet import Worksheet

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


# --------------------------------------------------------------------------- XLSX

# Headroom for the XML around a worksheet's rows (columns, panes, filter): a few KiB.
_SHEET_XML_MARGIN = 64 * 1024 * 1024
# A fixed time for every part, as xlsxwriter's in-memory mode writes them.
_PART_TIME = (1980, 1, 1, 0, 0, 0)


class _UnnamedRowsWorksheet(Worksheet):
    """A worksheet whose ``constant_memory`` row store is an unnamed file.

    xlsxwriter keeps the rows of a ``constant_memory`` sheet in a
    ``mkstemp()`` file that it reopens and removes by name; this one keeps
    them in ``tempfile.TemporaryFile`` (``O_TMPFILE`` on Linux).
    """

    def _initialize(self, init_data: dict[str, Any]) -> None:
        # Built without constant_memory, xlsxwriter creates no named row file;
        # the unnamed one takes its place.
        super()._initialize({**init_data, "constant_memory": False})
        self.constant_memory = init_data["constant_memory"]
        if self.constant_memory:
            self.row_data_fh = tempfile.TemporaryFile(  # noqa: SIM115 - closed by the workbook
                mode="w+", encoding="utf-8", dir=init_data["tmpdir"]
            )
            self.row_data_filename = None
            self.fh = self.row_data_fh

    def _opt_reopen(self) -> None:
        if self.row_data_fh_closed:
            raise ValueError("the rows of a closed worksheet are gone (they had no name)")

    def _write_optimized_sheet_data(self) -> None:
        # xlsxwriter's own, less removing the row file by name.
        if self.dim_rowmin is None:
            self._xml_empty_tag("sheetData")
            return
        self._xml_start_tag("sheetData")
        self.row_data_fh.seek(0)
        shutil.copyfileobj(self.row_data_fh, self.fh, 65536)
        self.row_data_fh.close()
        self.row_data_fh_closed = True
        self._xml_end_tag("sheetData")

    def row_bytes(self) -> int:
        """Bytes of row XML kept so far (the sheet part is this plus a little)."""
        self.row_data_fh.flush()
        return os.fstat(self.row_data_fh.fileno()).st_size


class _PartWriter(io.StringIO):
    """Where xlsxwriter writes one XML part: straight into its zip entry, as UTF-8.

    A StringIO only so that xlsxwriter's XML writer takes it as a stream
    instead of a file name to open; nothing is kept in memory.
    """

    def __init__(self, entry: IO[bytes]) -> None:
        super().__init__()
        self._text = io.TextIOWrapper(entry, encoding="utf-8", newline="\n")

    def write(self, text: str) -> int:
        return self._text.write(text)

    def end(self) -> None:
        """Finish the zip entry (its size and checksum are written)."""
        self._text.close()


class _ZipStreamingPackager(Packager):
    """Writes each part of the package straight into the zip file.

    xlsxwriter's packager writes every part to a named temporary file (the
    worksheet's as big as its rows) and zips them afterwards; this one opens
    the zip entry first and lets the part's XML be compressed as it is
    written, so no file but the output exists.
    """

    def __init__(self, target: Any, *, allow_zip64: bool) -> None:
        super().__init__()
        self._zip = ZipFile(target, "w", compression=ZIP_DEFLATED, allowZip64=allow_zip64)
        self._allow_zip64 = allow_zip64
        self._part: _PartWriter | None = None

    def _filename(self, xml_filename: str) -> _PartWriter:
        self._end_part()
        info = ZipInfo(xml_filename, date_time=_PART_TIME)
        info.compress_type = ZIP_DEFLATED
        entry = self._zip.open(info, "w", force_zip64=self._needs_zip64(xml_filename))
        self._part = _PartWriter(entry)
        return self._part

    def _needs_zip64(self, xml_filename: str) -> bool:
        """A worksheet part whose rows could pass the zip's 2 GiB entry limit.

        Only then: Excel warns about ZIP64 records it did not need.
        """
        prefix, suffix = "xl/worksheets/sheet", ".xml"
        if not (self._allow_zip64 and xml_filename.startswith(prefix)):
            return False
        number = int(xml_filename[len(prefix) : -len(suffix)])
        sheets = [sheet for sheet in self.workbook.worksheets() if not sheet.is_chartsheet]
        sheet = sheets[number - 1]
        if not isinstance(sheet, _UnnamedRowsWorksheet) or not sheet.constant_memory:
            return True  # rows held in memory: their size is not known beforehand
        return bool(sheet.row_bytes() + _SHEET_XML_MARGIN > ZIP64_LIMIT)

    def _end_part(self) -> None:
        if self._part is not None:
            part, self._part = self._part, None
            part.end()

    def _create_package(self) -> list[Any]:
        try:
            copied = super()._create_package()
            self._end_part()
            if copied:  # images or a VBA project, which xlsxwriter copies from files
                raise ValueError("workbooks with images or macros are not supported here")
            self._zip.close()
        except BaseException:
            with contextlib.suppress(Exception):
                self._end_part()
            with contextlib.suppress(Exception):
                self._zip.close()
            raise
        return []  # nothing left for the workbook to add


class UnnamedTempWorkbook(xlsxwriter.Workbook):
    """An xlsxwriter ``Workbook`` that names no temporary file.

    For ``constant_memory`` mode only (required), where xlsxwriter keeps
    each sheet's rows in a named temporary file in ``tmpdir`` and, on
    :meth:`close`, writes every part of the package to more named files
    before zipping them: a process killed meanwhile leaves them all behind.
    Here the rows go to an unnamed file (:class:`_UnnamedRowsWorksheet`) and
    the parts straight into the zip (:class:`_ZipStreamingPackager`).
    Images and macros are not supported.

    It relies on xlsxwriter's override points (``worksheet_class``,
    ``_get_packager``) and on the internals of its packager and
    ``constant_memory`` rows (checked against xlsxwriter 3.2 to 3.3).
    """

    worksheet_class = _UnnamedRowsWorksheet

    def __init__(
        self, filename: str | os.PathLike[str] | IO[bytes], options: dict[str, Any]
    ) -> None:
        if not options.get("constant_memory") or options.get("in_memory"):
            raise ValueError("UnnamedTempWorkbook needs constant_memory (and not in_memory)")
        self._target = os.fspath(filename) if isinstance(filename, os.PathLike) else filename
        # The workbook zips its (here, no) part files into the file it is
        # given: a throwaway buffer. The packager writes the real package.
        super().__init__(io.BytesIO(), options)

    def _get_packager(self) -> _ZipStreamingPackager:
        return _ZipStreamingPackager(self._target, allow_zip64=self.allow_zip64)
