"""Streaming exports of the event log: CSV and Excel (XLSX).

Managers export the log to read it in a spreadsheet, and for contact tracing.
Two properties matter more than looks:

* **Bounded memory.** A busy site writes a million events between purges; a
  Raspberry Pi must export them without holding them. Both writers take any
  iterable of :class:`~kiosk.store.Event` and consume it one event at a time:
  the CSV writer keeps one chunk (about 64 KiB) of text, the XLSX writer runs
  xlsxwriter in ``constant_memory`` mode, which flushes each row to a
  temporary file as soon as the next one starts.
* **Hostile text stays text.** Names come from QR payloads that anyone can
  print. Every text cell goes through :func:`neutralise`, so a spreadsheet
  never runs a name like ``=HYPERLINK("http://evil","x")`` as a formula.

The columns are :data:`EXPORT_COLUMNS`, the same in both formats. Local time
is shown in the site's time zone (``tz``), which the header names; the UTC
column is the stored time, exact to the microsecond, as ISO 8601 text.

Example::

    with Store.open(path, read_only=True) as store, open("log.csv", "wb") as out:
        write_csv(store.events_between(start, end), out, tz=ZoneInfo("Asia/Ho_Chi_Minh"))

For a whole log straight from the database, :func:`write_store_csv` and
:func:`iter_store_csv` write the same bytes several times faster: SQLite
formats the cells and Python builds no :class:`Event` per row.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any
from zoneinfo import ZoneInfo

from kiosk.store import Event, EventFilter, Store
from kiosk.tempfiles import UnnamedTempWorkbook

log = logging.getLogger(__name__)

# Excel's hard limit of rows per worksheet, the header row included.
EXCEL_MAX_ROWS = 1_048_576

# CSV text is handed out (or written) in chunks of about this many characters:
# big enough that a streaming HTTP response is not dominated by per-chunk
# overhead, small enough to be irrelevant to memory.
CSV_CHUNK_CHARS = 64 * 1024

UTF8_BOM = b"\xef\xbb\xbf"

# Years probed to decide whether a zone keeps one UTC offset (see local_time_label).
_OFFSET_PROBE_YEARS = range(2000, 2050)

_SHEET_NAME = "Events"

# Zone names that already say the offset; "UTC, UTC+00:00" would only stutter.
_UTC_NAMES = frozenset({"UTC", "ETC/UTC", "UCT", "ETC/UCT", "ZULU", "ETC/ZULU"})


@dataclass(frozen=True)
class ExportColumn:
    """One column of an export: a stable key, its English header, its XLSX width.

    ``width_chars`` is the Excel column width, in characters of the default font.
    """

    key: str
    label: str
    width_chars: float


EXPORT_COLUMNS: tuple[ExportColumn, ...] = (
    # The local-time label is completed with the zone by local_time_label().
    ExportColumn("local_time", "Local time", 20),
    ExportColumn("utc_time", "UTC time", 29),
    ExportColumn("gate", "Gate", 12),
    ExportColumn("direction", "Direction", 10),
    ExportColumn("decision", "Decision", 10),
    ExportColumn("reason", "Reason", 22),
    ExportColumn("kind", "Kind", 14),
    ExportColumn("name", "Name", 30),
    ExportColumn("masked_id", "Masked ID", 16),
    ExportColumn("id_number", "ID number", 16),
    ExportColumn("override", "Override", 10),
    ExportColumn("warning", "Warning", 22),
    ExportColumn("clock_synced", "Clock synchronised", 18),
    ExportColumn("boot_id", "Boot ID", 34),
    ExportColumn("seq", "Sequence", 10),
    ExportColumn("event_id", "Event ID", 34),
    # HC1: certificates only (empty for every other kind); last, so the
    # columns before them keep their places in existing spreadsheets.
    ExportColumn("birth_date", "Date of birth", 14),
    ExportColumn("name_latin", "Name (Latin)", 30),
)

# --------------------------------------------------------------------------- neutralise

# Characters that make a spreadsheet treat a cell as a formula (OWASP's list,
# plus the full-width forms that East Asian input methods produce and that
# some spreadsheet apps fold to ASCII on entry).
_FORMULA_STARTS = frozenset("=+-@＝＋－＠")
# OWASP also lists tab and CR as dangerous first characters; so is every control character.


def neutralise(cell: str) -> str:
    """Return ``cell`` with a leading apostrophe if a spreadsheet could run it as a formula.

    The rule (OWASP "CSV injection", extended): prefix ``'`` when

    * the first character is a control character (tab, carriage return,
      NUL and the rest of Unicode category Cc), or
    * the first character that is neither whitespace, a control character
      nor an invisible format character (Unicode category Cf: zero-width
      space, byte-order mark, bidi overrides such as U+202E) is one of
      ``= + - @`` or their full-width forms ``＝ ＋ － ＠``.

    Skipping them matters because spreadsheet apps trim or drop them on
    import (LibreOffice drops a leading NUL), after which the formula
    character is first. Everything else is returned unchanged, so ordinary
    names cost one character test. The trade-off: genuine text such as
    ``-2`` or ``+84 90...`` is shown with the apostrophe; a reader cannot
    tell an original leading apostrophe from an added one.
    """
    if not cell:
        return cell
    first = cell[0]
    if first.isalnum():  # The common case: a name, a code, a hex id.
        return cell
    if unicodedata.category(first) == "Cc":
        return "'" + cell
    for char in cell:
        if char in _FORMULA_STARTS:
            return "'" + cell
        if not (char.isspace() or unicodedata.category(char) in ("Cc", "Cf")):
            return cell
    return cell


# --------------------------------------------------------------------------- headers


def local_time_label(tz: ZoneInfo) -> str:
    """The local-time header, naming the zone: ``Local time (Asia/Ho_Chi_Minh, UTC+07:00)``.

    The offset is named only when the zone keeps one offset all year, in
    every year from 2000 to 2049 (tzdata's rules as installed); a zone with
    daylight saving time, or whose offset changed in that span, is named
    without an offset (``Local time (Europe/London)``), since no one offset
    would be true of every row.
    """
    name = tz.key if tz.key else str(tz)
    offsets = {
        datetime(year, month, 1, 12, tzinfo=UTC).astimezone(tz).utcoffset()
        for year in _OFFSET_PROBE_YEARS
        for month in (1, 4, 7, 10)
    }
    if len(offsets) != 1:
        return f"Local time ({name})"
    (offset,) = offsets
    assert offset is not None  # A ZoneInfo always has an offset for an aware datetime.
    if name.upper() in _UTC_NAMES:
        return "Local time (UTC)"
    total_min = int(offset.total_seconds()) // 60
    sign = "+" if total_min >= 0 else "-"
    hours, minutes = divmod(abs(total_min), 60)
    return f"Local time ({name}, UTC{sign}{hours:02d}:{minutes:02d})"


def header_row(tz: ZoneInfo) -> list[str]:
    """The header labels of :data:`EXPORT_COLUMNS`, in order, the local-time one naming ``tz``."""
    return [
        local_time_label(tz) if column.key == "local_time" else column.label
        for column in EXPORT_COLUMNS
    ]


# --------------------------------------------------------------------------- CSV


def _text(value: str | None) -> str:
    return "" if value is None else neutralise(value)


def _csv_row(event: Event, tz: ZoneInfo) -> list[str]:
    """One event as CSV fields, in the order of EXPORT_COLUMNS."""
    at_utc = event.at.astimezone(UTC).replace(tzinfo=None)
    local = event.at.astimezone(tz).replace(tzinfo=None)
    return [
        local.isoformat(" ", "seconds"),
        at_utc.isoformat(timespec="microseconds") + "Z",
        _text(event.gate_id),
        _text(event.direction),
        _text(event.decision),
        _text(event.reason),
        _text(event.kind),
        _text(event.display_name),
        _text(event.masked_id),
        _text(event.id_number),
        # TRUE/FALSE: what Excel shows for the XLSX export's booleans, and parses back as such.
        "TRUE" if event.override else "FALSE",
        _text(event.warning),
        "TRUE" if event.clock_synced else "FALSE",
        _text(event.boot_id),
        str(event.seq),
        _text(event.id),
        _text(event.birth_date),
        _text(event.name_latin),
    ]


class _CsvChunks:
    """A CSV writer over a text buffer that hands out encoded chunks of about
    CSV_CHUNK_CHARS; the first chunk starts with the BOM and the header row."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        self.writer.writerow([neutralise(label) for label in header_row(tz)])
        self._prefix = UTF8_BOM

    def _take(self) -> bytes:
        # errors="replace": a lone surrogate (impossible from SQLite, possible from a
        # hand-made Event) costs one character, not the whole export.
        chunk = self._prefix + self.buffer.getvalue().encode("utf-8", "replace")
        self._prefix = b""
        self.buffer.seek(0)
        self.buffer.truncate()
        return chunk

    def full_chunk(self) -> bytes | None:
        return self._take() if self.buffer.tell() >= CSV_CHUNK_CHARS else None

    def last_chunk(self) -> bytes | None:
        return self._take() if self.buffer.tell() or self._prefix else None


CountedChunks = Iterator[tuple[bytes, int]]
"""CSV chunks, each with the number of data rows in it and in every chunk before it.

A chunk holds whole rows only, and at least the header comes out, so the
count beside the last chunk is the export's number of rows; beside any chunk,
it is exactly the rows handed out with it and before it (what an audit of a
download cut short counts)."""


def _csv_chunks(events: Iterable[Event], tz: ZoneInfo) -> CountedChunks:
    """Encoded CSV chunks (the first starts with the BOM), counted (see :data:`CountedChunks`)."""
    out = _CsvChunks(tz)
    rows = 0
    for event in events:
        out.writer.writerow(_csv_row(event, tz))
        rows += 1
        if chunk := out.full_chunk():
            yield chunk, rows
    if chunk := out.last_chunk():
        yield chunk, rows


def _write_chunks(chunks: CountedChunks, out: IO[bytes]) -> int:
    """Write the chunks to ``out``; the number of data rows."""
    rows = 0
    for chunk, rows in chunks:  # noqa: B007 - the last count is the total
        out.write(chunk)
    log.info("exported %d events as CSV", rows)
    return rows


def iter_csv(events: Iterable[Event], *, tz: ZoneInfo) -> Iterator[bytes]:
    """The CSV export as byte chunks of about 64 KiB, for a streaming HTTP response.

    Lazy: ``events`` is consumed only as chunks are taken, so a Flask
    ``Response(iter_csv(...))`` never holds more than one chunk. The format is
    that of :func:`write_csv`. Example::

        return Response(iter_csv(events, tz=tz), mimetype="text/csv")
    """
    return (chunk for chunk, _ in _csv_chunks(events, tz))


def write_csv(events: Iterable[Event], out: IO[bytes], *, tz: ZoneInfo) -> int:
    """Write ``events`` to the binary stream ``out`` as CSV; return the number of data rows.

    The format is chosen for Excel, which is what managers open it with:
    UTF-8 with a byte-order mark (without it Excel reads Vietnamese names as
    Windows-1252 mojibake), comma-separated, fields quoted only when needed,
    CRLF line ends, a header row first. ``out`` is binary because the
    encoding and line ends are part of the format, not the caller's choice.
    Every text cell is passed through :func:`neutralise`. If ``events``
    raises, the exception propagates and ``out`` holds a partial export,
    which the caller discards.
    """
    return _write_chunks(_csv_chunks(events, tz), out)


# --------------------------------------------------------------------------- CSV from the store

# Lines the store-backed CSV export takes from SQLite at a time (about 50 KiB).
_STORE_CSV_BATCH = 256

# The span in which the store-backed export lets SQLite shift UTC to local time,
# when the zone keeps one offset all through it (checked day by day).
_FIXED_SPAN_YEARS = (2000, 2050)


def fixed_offset_span(tz: ZoneInfo) -> tuple[int, tuple[str, str]] | None:
    """``(offset_min, (start, end))`` if ``tz`` keeps one whole-minute offset from
    UTC at noon and midnight of every day in 2000-2049, else None.

    ``start`` and ``end`` are UTC texts in the store's format, so that a row's
    ``at_utc`` text compares with them. Stricter than :func:`local_time_label`
    (which probes four days a year), because here every row's local time
    depends on it: outside the span, or for any other zone, local time is
    computed in Python exactly as :func:`write_csv` does.
    """
    first, end = (datetime(year, 1, 1, tzinfo=UTC) for year in _FIXED_SPAN_YEARS)
    offset = first.astimezone(tz).utcoffset()
    if offset is None or offset % timedelta(minutes=1):
        return None
    at = first
    half_day = timedelta(hours=12)
    while at < end:
        if at.astimezone(tz).utcoffset() != offset:
            return None
        at += half_day
    span = (first.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), end.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    return offset // timedelta(minutes=1), span


# What Store.iter_export_lines joins cells with.
_SEPARATOR = "\x1f"
# A cell (after the first) that neutralise() might change: one that does not start
# with an ASCII letter or digit or a letter of Latin-1, Latin Extended-A/B or Latin
# Extended Additional (Vietnamese: Đ, Ấ...), ranges with no space, format character
# or formula sign. Empty cells are fine, the last one of a line too (the newline
# after it is the batch's join, not a cell).
_MAYBE_FORMULA = re.compile("\x1f[^\x1f\n0-9A-Za-z\u00c0-\u024f\u1e00-\u1eff]")


def _unusable_lines(lines: list[str | None]) -> list[int]:
    """Positions of the lines from SQLite that are not CSV lines once separators
    become commas: missing, no local time, not one cell per column, a cell to
    quote or to neutralise.

    The whole batch is tested at once (a handful of scans in C); only a batch
    that fails is looked at line by line.
    """
    if None not in lines and _block_usable("\n".join(lines), len(lines)):  # type: ignore[arg-type]
        return []
    return [i for i, line in enumerate(lines) if line is None or not _block_usable(line, 1)]


def _block_usable(block: str, count: int) -> bool:
    return (
        block.count("\n") == count - 1
        and block.count(_SEPARATOR) == count * (len(EXPORT_COLUMNS) - 1)
        and "," not in block
        and '"' not in block
        and "\r" not in block
        and not block.startswith(_SEPARATOR)  # no local time
        and "\n" + _SEPARATOR not in block
        and _MAYBE_FORMULA.search(block) is None
    )


def _store_csv_chunks(store: Store, where: EventFilter, tz: ZoneInfo) -> CountedChunks:
    """The bytes of :func:`_csv_chunks` for the store's events, from lines SQLite formatted;
    counted the same way (see :data:`CountedChunks`)."""
    fixed = fixed_offset_span(tz)
    if fixed is None:  # a zone with daylight saving time: local time is Python's to compute
        yield from _csv_chunks(store.iter_events(where), tz)
        return
    batches = store.iter_export_lines(
        where,
        unusable=_unusable_lines,
        local_offset_min=fixed[0],
        local_span=fixed[1],
        batch=_STORE_CSV_BATCH,
    )
    out = _CsvChunks(tz)
    count = 0
    for batch in batches:
        count += len(batch)
        run: list[str] = []  # consecutive lines from SQLite
        for line in batch:
            if isinstance(line, str):
                run.append(line)
                continue
            _write_lines(out.buffer, run)
            run = []
            out.writer.writerow(_csv_row(line, tz))
        _write_lines(out.buffer, run)
        if chunk := out.full_chunk():
            yield chunk, count
    if chunk := out.last_chunk():
        yield chunk, count


def _write_lines(buffer: io.StringIO, lines: list[str]) -> None:
    if lines:
        buffer.write("\r\n".join(lines).replace(_SEPARATOR, ","))
        buffer.write("\r\n")


def iter_store_csv(store: Store, where: EventFilter, *, tz: ZoneInfo) -> Iterator[bytes]:
    """The CSV export of the events ``where`` selects, as byte chunks, straight from the store.

    Byte for byte what :func:`iter_csv` gives for ``store.iter_events(where)``
    (the chunk boundaries may differ), several times faster: SQLite formats
    the cells (local time too, when the zone keeps one offset; see
    :func:`fixed_offset_span`) and only rows with a cell that could need
    neutralising pass through :func:`neutralise`. Lazy, like :func:`iter_csv`.
    """
    return (chunk for chunk, _ in _store_csv_chunks(store, where, tz))


def iter_store_csv_counted(store: Store, where: EventFilter, *, tz: ZoneInfo) -> CountedChunks:
    """The chunks of :func:`iter_store_csv`, each with the number of data rows in it
    and in the chunks before it (:data:`CountedChunks`): for a streamed download
    whose audit must say how many rows left, even when it is cut short.

    Example::

        for chunk, rows in iter_store_csv_counted(store, where, tz=tz):
            send(chunk)  # ``rows`` rows have now been sent
    """
    return _store_csv_chunks(store, where, tz)


def write_store_csv(store: Store, where: EventFilter, out: IO[bytes], *, tz: ZoneInfo) -> int:
    """Write the CSV export of the events ``where`` selects to ``out``; return the rows.

    The bytes are those of :func:`write_csv` for ``store.iter_events(where)``;
    see :func:`iter_store_csv` for why it is faster.
    """
    return _write_chunks(_store_csv_chunks(store, where, tz), out)


# --------------------------------------------------------------------------- XLSX


class _Sheets:
    """Worksheets of one export, opened as rows need them: "Events", "Events 2", ..."""

    def __init__(self, workbook: Any, *, tz: ZoneInfo, max_rows_per_sheet: int) -> None:
        self._workbook = workbook
        self._header = [neutralise(label) for label in header_row(tz)]
        self._bold = workbook.add_format({"bold": True})
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
            sheet.set_column(col, col, column.width_chars)
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
) -> int:
    """Write ``events`` as an Excel workbook; return the number of data rows.

    Bounded memory: xlsxwriter runs in ``constant_memory`` mode, where each
    row goes to a temporary file once the next starts (strings are stored
    in-line rather than in a shared table). The temporary file, about
    1 KiB per event, goes to ``tmpdir`` (default: the system's): on a Pi whose
    ``/tmp`` is a RAM-backed tmpfs, pass a directory on the SD card. It has
    no name (:class:`~kiosk.tempfiles.UnnamedTempWorkbook`), so a process
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
        sheets = _Sheets(workbook, tz=tz, max_rows_per_sheet=max_rows_per_sheet)
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
    texts: tuple[tuple[int, str | None], ...] = (
        (2, event.gate_id),
        (3, event.direction),
        (4, event.decision),
        (5, event.reason),
        (6, event.kind),
        (7, event.display_name),
        (8, event.masked_id),
        (9, event.id_number),
    )
    _write_texts(sheets, row, texts)
    sheet.write_boolean(row, 10, event.override)
    _write_texts(sheets, row, ((11, event.warning),))
    sheet.write_boolean(row, 12, event.clock_synced)
    _write_texts(sheets, row, ((13, event.boot_id),))
    sheet.write_number(row, 14, event.seq)
    _write_texts(sheets, row, ((15, event.id),))
    _write_texts(sheets, row, ((16, event.birth_date), (17, event.name_latin)))


def _write_texts(sheets: _Sheets, row: int, cells: tuple[tuple[int, str | None], ...]) -> None:
    """Write text cells, neutralised; None and "" stay blank (no cell at all)."""
    sheet = sheets.sheet
    for col, value in cells:
        # -2: xlsxwriter truncated a string past Excel's 32,767-character limit.
        if value and sheet.write_string(row, col, neutralise(value)) == -2:
            sheets.truncated_cells += 1
