"""An xlsxwriter workbook that a killed process cannot leave behind.

See :mod:`kiosk.tempfiles` for why: a process killed with SIGKILL leaves
every named temporary file it was writing, and xlsxwriter writes several.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from typing import IO, Any
from zipfile import ZIP64_LIMIT, ZIP_DEFLATED, ZipFile, ZipInfo

import xlsxwriter
from xlsxwriter.packager import Packager
from xlsxwriter.worksheet import Worksheet

log = logging.getLogger(__name__)

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
