"""The Excel (XLSX) export, in bounded memory, on as many sheets as the rows need."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from datetime import UTC
from typing import IO, Any
from zoneinfo import ZoneInfo

from kiosk.export.columns import EXPORT_COLUMNS, header_row, neutralise
from kiosk.export.labels import CellWords, cell_words
from kiosk.export.workbook import UnnamedTempWorkbook
from kiosk.store import Event

log = logging.getLogger(__name__)

# Excel's hard limit of rows per worksheet, the header row included.
EXCEL_MAX_ROWS = 1_048_576

_SHEET_NAME = "Events"

_TEXT_COLUMNS = frozenset({"masked_id", "id_number"})


# --------------------------------------------------------------------------- XLSX


class _Sheets:
    """Worksheets of one export, opened as rows need them: "Events", "Events 2", ..."""

    def __init__(
        self, workbook: Any, *, tz: ZoneInfo, max_rows_per_sheet: int, words: CellWords
    ) -> None:
        self._workbook = workbook
        self.words = words
        self._header = [neutralise(label) for label in header_row(tz, words.lang)]
        self._bold = workbook.add_format({"bold": True})
        # Text cells: an ID number typed over in Excel stays text (leading zeros kept).
        self.text_format = workbook.add_format({"num_format": "@"})
        self.datetime_format = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        self._max_rows = max_rows_per_sheet
        self.count = 0
        self.sheet: Any = None
        self.row = 0
        self.truncated_cells = 0

    def next_row(self) -> int:
        """The row index to write the next event to, opening a new sheet when one is full."""
        if self.sheet is None or self.row + 1 >= self._max_rows:
            self._open()
        self.row += 1
        return self.row

    def _open(self) -> None:
        self._close_current()
        self.count += 1
        name = _SHEET_NAME if self.count == 1 else f"{_SHEET_NAME} {self.count}"
        sheet = self._workbook.add_worksheet(name)
        for col, column in enumerate(EXPORT_COLUMNS):
            text = self.text_format if column.key in _TEXT_COLUMNS else None
            sheet.set_column(col, col, column.width_chars, text)
        sheet.freeze_panes(1, 0)
        for col, label in enumerate(self._header):
            sheet.write_string(0, col, label, self._bold)
        self.sheet = sheet
        self.row = 0

    def finish(self) -> None:
        """Open the first sheet if no event did (a header-only export), and close the last."""
        if self.sheet is None:
            self._open()
        self._close_current()

    def _close_current(self) -> None:
        # The filter covers the rows written, so it can only be set once they are known.
        if self.sheet is not None:
            self.sheet.autofilter(0, 0, self.row, len(EXPORT_COLUMNS) - 1)


def write_xlsx(
    events: Iterable[Event],
    path_or_file: str | os.PathLike[str] | IO[bytes],
    *,
    tz: ZoneInfo,
    max_rows_per_sheet: int = EXCEL_MAX_ROWS,
    tmpdir: str | os.PathLike[str] | None = None,
    lang: str = "en",
) -> int:
    """Write ``events`` as an Excel workbook; return the number of data rows.

    Headers and coded cells are in ``lang`` ("vi" or "en", see
    :mod:`kiosk.export.labels`); in "vi" the booleans are written as the
    words ``CÓ``/``KHÔNG``. The ID-number columns are text columns, so
    Excel keeps an ID's leading zeros even when a cell is typed over.

    Bounded memory: xlsxwriter runs in ``constant_memory`` mode, where each
    row goes to a temporary file once the next starts (strings are stored
    in-line rather than in a shared table). The temporary file, about
    1 KiB per event, goes to ``tmpdir`` (default: the system's): on a Pi whose
    ``/tmp`` is a RAM-backed tmpfs, pass a directory on the SD card. It has
    no name (:class:`~kiosk.export.workbook.UnnamedTempWorkbook`), so a process
    killed mid-export leaves nothing in ``tmpdir``.

    Cells: local time is a real Excel date-time (naive, in ``tz``, formatted
    ``yyyy-mm-dd hh:mm:ss``), the UTC time is ISO 8601 text, the sequence a
    number, override and clock-synchronised booleans, everything else text
    passed through :func:`neutralise`. Strings are never turned into formulas,
    links or numbers (xlsxwriter's ``strings_to_*`` options are off, and every
    text cell is written with ``write_string``): the apostrophe added by
    neutralise() is for the other tools that read the file. Text longer than
    Excel's 32,767-character cell limit is truncated by xlsxwriter (counted
    in the log).

    A worksheet holds at most ``max_rows_per_sheet`` rows, header included
    (Excel's limit, 1,048,576, by default): further events continue on
    sheets "Events 2", "Events 3", ..., each with its own header, rather
    than being dropped or failing a long export at the end.

    If ``events`` raises (say, the database fails half-way), the exception
    propagates and a file at ``path_or_file`` is removed; a stream passed in
    is left to the caller, holding an incomplete workbook.
    """
    if max_rows_per_sheet < 2:
        raise ValueError(f"max_rows_per_sheet must be at least 2, not {max_rows_per_sheet}")
    target = os.fspath(path_or_file) if isinstance(path_or_file, os.PathLike) else path_or_file
    options: dict[str, Any] = {
        "constant_memory": True,
        "strings_to_formulas": False,
        "strings_to_urls": False,
        "strings_to_numbers": False,
        # Above about 4 million events the sheet XML passes 4 GiB and needs ZIP64.
        "use_zip64": True,
    }
    if tmpdir is not None:
        options["tmpdir"] = os.fspath(tmpdir)
    workbook = UnnamedTempWorkbook(target, options)
    try:
        sheets = _Sheets(
            workbook, tz=tz, max_rows_per_sheet=max_rows_per_sheet, words=cell_words(lang)
        )
        rows = 0
        for event in events:
            _write_xlsx_row(sheets, event, tz)
            rows += 1
        sheets.finish()
    except BaseException:
        # Close to release the temporary files, then remove the file: a
        # truncated log that opens cleanly would be worse than none.
        with contextlib.suppress(Exception):
            workbook.close()
        if isinstance(target, str):
            with contextlib.suppress(OSError):
                os.unlink(target)
        raise
    workbook.close()
    if sheets.truncated_cells:
        log.warning("%d cells longer than Excel's limit were truncated", sheets.truncated_cells)
    log.info("exported %d events as XLSX on %d sheets", rows, sheets.count)
    return rows


def _write_xlsx_row(sheets: _Sheets, event: Event, tz: ZoneInfo) -> None:
    """Write one event, in column order (constant_memory mode needs rows written left to right)."""
    row = sheets.next_row()
    sheet = sheets.sheet
    at_utc = event.at.astimezone(UTC).replace(tzinfo=None)
    sheet.write_datetime(
        row, 0, event.at.astimezone(tz).replace(tzinfo=None), sheets.datetime_format
    )
    sheet.write_string(row, 1, at_utc.isoformat(timespec="microseconds") + "Z")
    words = sheets.words
    texts: tuple[tuple[int, str | None], ...] = (
        (2, event.gate_id),
        (3, event.direction and words.direction(event.direction)),
        (4, event.decision and words.decision(event.decision)),
        (5, event.reason and words.reason(event.reason)),
        (6, event.kind and words.kind(event.kind)),
        (7, event.display_name),
    )
    _write_texts(sheets, row, texts)
    ids = ((8, event.masked_id), (9, event.id_number))
    _write_texts(sheets, row, ids, sheets.text_format)
    _write_flag(sheets, row, 10, event.override)
    _write_texts(sheets, row, ((11, event.warning),))
    _write_flag(sheets, row, 12, event.clock_synced)
    _write_texts(sheets, row, ((13, event.boot_id),))
    sheet.write_number(row, 14, event.seq)
    _write_texts(sheets, row, ((15, event.id),))
    _write_texts(sheets, row, ((16, event.birth_date), (17, event.name_latin)))
    _write_texts(sheets, row, ((18, event.actor), (19, event.note)))


def _write_flag(sheets: _Sheets, row: int, col: int, value: bool) -> None:
    """A boolean: Excel's own in English, the language's word otherwise."""
    if sheets.words.lang == "en":
        sheets.sheet.write_boolean(row, col, value)
    else:
        sheets.sheet.write_string(row, col, sheets.words.boolean(value))


def _write_texts(
    sheets: _Sheets, row: int, cells: tuple[tuple[int, str | None], ...], cell_format: Any = None
) -> None:
    """Write text cells, neutralised; None and "" stay blank (no cell at all)."""
    sheet = sheets.sheet
    for col, value in cells:
        # -2: xlsxwriter truncated a string past Excel's 32,767-character limit.
        if value and sheet.write_string(row, col, neutralise(value), cell_format) == -2:
            sheets.truncated_cells += 1
