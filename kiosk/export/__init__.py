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

from typing import TYPE_CHECKING, Any

from kiosk.export.columns import (
    EXPORT_COLUMNS,
    ExportBatch,
    ExportColumn,
    header_row,
    iter_export_lines,
    local_time_label,
    neutralise,
)
from kiosk.export.csv import (
    CSV_CHUNK_CHARS,
    UTF8_BOM,
    CountedChunks,
    fixed_offset_span,
    iter_csv,
    iter_store_csv,
    iter_store_csv_counted,
    write_csv,
    write_store_csv,
)

if TYPE_CHECKING:
    from kiosk.export.xlsx import EXCEL_MAX_ROWS, write_xlsx


def __getattr__(name: str) -> Any:
    """The XLSX writer, loaded (with xlsxwriter) only by what writes a workbook."""
    if name in ("EXCEL_MAX_ROWS", "write_xlsx"):
        from kiosk.export import xlsx

        return getattr(xlsx, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CSV_CHUNK_CHARS",
    "EXCEL_MAX_ROWS",
    "EXPORT_COLUMNS",
    "UTF8_BOM",
    "CountedChunks",
    "ExportBatch",
    "ExportColumn",
    "fixed_offset_span",
    "header_row",
    "iter_csv",
    "iter_export_lines",
    "iter_store_csv",
    "iter_store_csv_counted",
    "local_time_label",
    "neutralise",
    "write_csv",
    "write_store_csv",
    "write_xlsx",
]
