"""A site's window of events as CSV or Excel, for the authority (contact tracing).

The columns are the province's own (:data:`WINDOW_COLUMNS`): no name, no ID
number, since none left the site; headers Vietnamese first, English after.
Cells go through the site export's rules (:func:`kiosk.export.neutralise`
against formulas, the coded values in the chosen language's words,
:func:`kiosk.export.labels.cell_words`). Both writers consume the events one
at a time (a server-side cursor, :func:`kiosk.province.dashboard.iter_window`):
the CSV in chunks of about 64 KiB, the workbook in xlsxwriter's
``constant_memory`` mode into an unnamed temporary file.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import IO
from zoneinfo import ZoneInfo

from kiosk.export.columns import local_time_label, neutralise
from kiosk.export.csv import CSV_CHUNK_CHARS, UTF8_BOM
from kiosk.export.labels import CellWords, cell_words
from kiosk.province.dashboard import WindowEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowColumn:
    key: str
    vi: str
    en: str
    width_chars: float


WINDOW_COLUMNS: tuple[WindowColumn, ...] = (
    WindowColumn("local_time", "Giờ địa phương", "Local time", 20),
    WindowColumn("utc_time", "Giờ UTC", "UTC time", 29),
    WindowColumn("site", "Khu", "Site", 14),
    WindowColumn("gate", "Cổng", "Gate", 12),
    WindowColumn("direction", "Chiều", "Direction", 10),
    WindowColumn("decision", "Quyết định", "Decision", 10),
    WindowColumn("reason", "Lý do", "Reason", 22),
    WindowColumn("kind", "Loại mã", "Kind", 14),
    WindowColumn("subject_hash", "Mã người (theo khu)", "Subject hash (per site)", 34),
    WindowColumn("province_subject_hash", "Mã người (cấp tỉnh)", "Subject hash (province)", 34),
    WindowColumn("override", "Bảo vệ cho vào", "Override", 10),
    WindowColumn("warning", "Cảnh báo", "Warning", 22),
    WindowColumn("clock_synced", "Đồng hồ đã đồng bộ", "Clock synchronised", 18),
    WindowColumn("boot_id", "Mã lần khởi động", "Boot ID", 34),
    WindowColumn("seq", "Số thứ tự", "Sequence", 10),
    WindowColumn("event_id", "Mã sự kiện", "Event ID", 34),
    WindowColumn("received_at", "Giờ tỉnh nhận (UTC)", "Received (UTC)", 29),
)


def window_header(tz: ZoneInfo) -> list[str]:
    """Each column's header, ``Vietnamese / English``; the local time names the zone."""
    headers = []
    for column in WINDOW_COLUMNS:
        if column.key == "local_time":
            headers.append(f"{local_time_label(tz, 'vi')} / {local_time_label(tz, 'en')}")
        else:
            headers.append(f"{column.vi} / {column.en}")
    return headers


def _text(value: str | None) -> str:
    return "" if value is None else neutralise(value)


def window_row(event: WindowEvent, tz: ZoneInfo, words: CellWords) -> list[str]:
    """One event as text cells, in the order of :data:`WINDOW_COLUMNS`."""
    return [
        event.at.astimezone(tz).replace(tzinfo=None).isoformat(" ", "seconds"),
        event.at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z",
        _text(event.site_id),
        _text(event.gate_id),
        _text(words.direction(event.direction)),
        _text(words.decision(event.decision)),
        _text(words.reason(event.reason)),
        _text(words.kind(event.kind)),
        _text(event.subject_hash),
        _text(event.province_subject_hash),
        words.boolean(event.override),
        _text(event.warning),
        words.boolean(event.clock_synced),
        _text(event.boot_id),
        str(event.seq),
        _text(event.id),
        event.received_at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z",
    ]


def iter_window_csv(
    events: Iterable[WindowEvent], *, tz: ZoneInfo, lang: str = "vi"
) -> Iterator[bytes]:
    """The window as UTF-8 CSV (with a BOM, for Excel), in chunks of about
    :data:`~kiosk.export.CSV_CHUNK_CHARS` characters; the first holds the header."""
    words = cell_words(lang)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([neutralise(label) for label in window_header(tz)])
    first = True
    for event in events:
        writer.writerow(window_row(event, tz, words))
        if buffer.tell() >= CSV_CHUNK_CHARS:
            yield (UTF8_BOM if first else b"") + buffer.getvalue().encode()
            first = False
            buffer.seek(0)
            buffer.truncate()
    yield (UTF8_BOM if first else b"") + buffer.getvalue().encode()


def write_window_xlsx(
    events: Iterable[WindowEvent], out: IO[bytes], *, tz: ZoneInfo, lang: str = "vi"
) -> int:
    """The window as one Excel sheet written to ``out``; the number of rows.

    At most 1,048,575 events fit a sheet; the caller's window limit keeps
    a site's export well below that (a busy market: 30,000 events a day).
    """
    from kiosk.export.workbook import UnnamedTempWorkbook
    from kiosk.export.xlsx import EXCEL_MAX_ROWS

    words = cell_words(lang)
    workbook = UnnamedTempWorkbook(
        out,
        {
            "constant_memory": True,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
        },
    )
    sheet = workbook.add_worksheet("Events")
    sheet.freeze_panes(1, 0)
    bold = workbook.add_format({"bold": True})
    for col, (column, label) in enumerate(zip(WINDOW_COLUMNS, window_header(tz), strict=True)):
        sheet.set_column(col, col, column.width_chars)
        sheet.write_string(0, col, neutralise(label), bold)
    rows = 0
    for event in events:
        if rows + 1 >= EXCEL_MAX_ROWS:
            log.warning("a window export stopped at Excel's %d rows", EXCEL_MAX_ROWS)
            break
        rows += 1
        for col, cell in enumerate(window_row(event, tz, words)):
            sheet.write_string(rows, col, cell)
    workbook.close()
    return rows
