"""The CSV export: from Events, or straight from the store with SQLite formatting the cells.

The format is chosen for Excel (see :func:`write_csv`); the store-backed
path (:func:`write_store_csv`) writes the same bytes several times faster.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import IO
from zoneinfo import ZoneInfo

from kiosk.export.columns import (
    EXPORT_COLUMNS,
    LINE_SEPARATOR,
    ExportBatch,
    header_row,
    iter_export_lines,
    neutralise,
)
from kiosk.export.labels import CellWords, cell_words
from kiosk.store import Event, EventFilter, Store

log = logging.getLogger(__name__)


# CSV text is handed out (or written) in chunks of about this many characters:
# big enough that a streaming HTTP response is not dominated by per-chunk
# overhead, small enough to be irrelevant to memory.
CSV_CHUNK_CHARS = 64 * 1024

UTF8_BOM = b"\xef\xbb\xbf"


# --------------------------------------------------------------------------- CSV


def _text(value: str | None) -> str:
    return "" if value is None else neutralise(value)


def _csv_row(event: Event, tz: ZoneInfo, words: CellWords) -> list[str]:
    """One event as CSV fields, in the order of EXPORT_COLUMNS, coded cells in ``words``."""
    at_utc = event.at.astimezone(UTC).replace(tzinfo=None)
    local = event.at.astimezone(tz).replace(tzinfo=None)
    return [
        local.isoformat(" ", "seconds"),
        at_utc.isoformat(timespec="microseconds") + "Z",
        _text(event.gate_id),
        _text(event.direction and words.direction(event.direction)),
        _text(event.decision and words.decision(event.decision)),
        _text(event.reason and words.reason(event.reason)),
        _text(event.kind and words.kind(event.kind)),
        _text(event.display_name),
        _text(event.masked_id),
        _text(event.id_number),
        # TRUE/FALSE: what Excel shows for the XLSX export's booleans, and parses back as such.
        words.boolean(event.override),
        _text(event.warning),
        words.boolean(event.clock_synced),
        _text(event.boot_id),
        str(event.seq),
        _text(event.id),
        _text(event.birth_date),
        _text(event.name_latin),
        _text(event.actor),
        _text(event.note),
    ]


class _CsvChunks:
    """A CSV writer over a text buffer that hands out encoded chunks of about
    CSV_CHUNK_CHARS; the first chunk starts with the BOM and the header row."""

    def __init__(self, tz: ZoneInfo, lang: str) -> None:
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        self.writer.writerow([neutralise(label) for label in header_row(tz, lang)])
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


def _csv_chunks(events: Iterable[Event], tz: ZoneInfo, lang: str) -> CountedChunks:
    """Encoded CSV chunks (the first starts with the BOM), counted (see :data:`CountedChunks`)."""
    words = cell_words(lang)
    out = _CsvChunks(tz, lang)
    rows = 0
    for event in events:
        out.writer.writerow(_csv_row(event, tz, words))
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


def iter_csv(events: Iterable[Event], *, tz: ZoneInfo, lang: str = "en") -> Iterator[bytes]:
    """The CSV export as byte chunks of about 64 KiB, for a streaming HTTP response.

    Lazy: ``events`` is consumed only as chunks are taken, so a Flask
    ``Response(iter_csv(...))`` never holds more than one chunk. The format is
    that of :func:`write_csv`. Example::

        return Response(iter_csv(events, tz=tz), mimetype="text/csv")
    """
    return (chunk for chunk, _ in _csv_chunks(events, tz, lang))


def write_csv(events: Iterable[Event], out: IO[bytes], *, tz: ZoneInfo, lang: str = "en") -> int:
    """Write ``events`` to the binary stream ``out`` as CSV; return the number of data rows.

    The format is chosen for Excel, which is what managers open it with:
    UTF-8 with a byte-order mark (without it Excel reads Vietnamese names as
    Windows-1252 mojibake), comma-separated, fields quoted only when needed,
    CRLF line ends, a header row first. ``out`` is binary because the
    encoding and line ends are part of the format, not the caller's choice.
    Headers and coded cells are in ``lang`` ("vi" or "en", see
    :mod:`kiosk.export.labels`). Every text cell is passed through
    :func:`neutralise`. If ``events``
    raises, the exception propagates and ``out`` holds a partial export,
    which the caller discards.
    """
    return _write_chunks(_csv_chunks(events, tz, lang), out)


# --------------------------------------------------------------------------- CSV from the store

# Lines the store-backed CSV export takes from SQLite at a time: one chunk of about
# 100 KiB for a download (the fewer round trips, the less Python per line).
_STORE_CSV_BATCH = 512

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


# A cell (after the first) that neutralise() might change: one that does not start
# with an ASCII letter or digit or a letter of Latin-1, Latin Extended-A/B or Latin
# Extended Additional (Vietnamese: Đ, Ấ...), ranges with no space, format character
# or formula sign. Empty cells are fine, the last one of a line too (the newline
# after it is the batch's join, not a cell).
_MAYBE_FORMULA = re.compile("\x1f[^\x1f\n0-9A-Za-z\u00c0-\u024f\u1e00-\u1eff]")


def _block_usable(block: str, count: int) -> bool:
    """Whether ``count`` lines from SQLite, joined by newlines, are CSV lines once
    separators become commas: one cell per column, none to quote or to
    neutralise, a local time on each (a handful of scans in C)."""
    return (
        block.count("\n") == count - 1
        and block.count(LINE_SEPARATOR) == count * (len(EXPORT_COLUMNS) - 1)
        and "," not in block
        and '"' not in block
        and "\r" not in block
        and not block.startswith(LINE_SEPARATOR)  # no local time
        and "\n" + LINE_SEPARATOR not in block
        and _MAYBE_FORMULA.search(block) is None
    )


def _batch_text(batch: ExportBatch, tz: ZoneInfo, words: CellWords) -> str:
    """The CSV text of one batch: SQLite's lines as they are where they can be,
    the rest through the csv module from their Events."""
    lines = batch.lines
    if None not in lines:
        block = "\n".join(lines)  # type: ignore[arg-type]
        if _block_usable(block, len(lines)):  # the common case: the whole batch at once
            return block.replace(LINE_SEPARATOR, ",").replace("\n", "\r\n") + "\r\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    for i, line in enumerate(lines):
        if line is not None and _block_usable(line, 1):
            buffer.write(line.replace(LINE_SEPARATOR, ","))
            buffer.write("\r\n")
        else:
            writer.writerow(_csv_row(batch.event(i), tz, words))
    return buffer.getvalue()


def _store_csv_chunks(store: Store, where: EventFilter, tz: ZoneInfo, lang: str) -> CountedChunks:
    """The bytes of :func:`_csv_chunks` for the store's events, from lines SQLite formatted;
    counted the same way (see :data:`CountedChunks`): one chunk per batch of
    :data:`_STORE_CSV_BATCH` lines, the first with the BOM and the header."""
    fixed = fixed_offset_span(tz)
    if fixed is None:  # a zone with daylight saving time: local time is Python's to compute
        yield from _csv_chunks(store.iter_events(where), tz, lang)
        return
    words = cell_words(lang)
    batches = iter_export_lines(
        store,
        where,
        local_offset_min=fixed[0],
        local_span=fixed[1],
        batch=_STORE_CSV_BATCH,
        lang=lang,
    )
    head = _CsvChunks(tz, lang)
    prefix = head.last_chunk() or b""  # the BOM and the header row
    count = 0
    for batch in batches:
        count += len(batch.lines)
        # errors="replace": as _CsvChunks._take.
        yield prefix + _batch_text(batch, tz, words).encode("utf-8", "replace"), count
        prefix = b""
    if prefix:
        yield prefix, count


def iter_store_csv(
    store: Store, where: EventFilter, *, tz: ZoneInfo, lang: str = "en"
) -> Iterator[bytes]:
    """The CSV export of the events ``where`` selects, as byte chunks, straight from the store.

    Byte for byte what :func:`iter_csv` gives for ``store.iter_events(where)``
    (the chunk boundaries may differ), several times faster: SQLite formats
    the cells (local time too, when the zone keeps one offset; see
    :func:`fixed_offset_span`) and only rows with a cell that could need
    neutralising pass through :func:`neutralise`. Lazy, like :func:`iter_csv`.
    """
    return (chunk for chunk, _ in _store_csv_chunks(store, where, tz, lang))


def iter_store_csv_counted(
    store: Store, where: EventFilter, *, tz: ZoneInfo, lang: str = "en"
) -> CountedChunks:
    """The chunks of :func:`iter_store_csv`, each with the number of data rows in it
    and in the chunks before it (:data:`CountedChunks`): for a streamed download
    whose audit must say how many rows left, even when it is cut short.

    Example::

        for chunk, rows in iter_store_csv_counted(store, where, tz=tz):
            send(chunk)  # ``rows`` rows have now been sent
    """
    return _store_csv_chunks(store, where, tz, lang)


def write_store_csv(
    store: Store, where: EventFilter, out: IO[bytes], *, tz: ZoneInfo, lang: str = "en"
) -> int:
    """Write the CSV export of the events ``where`` selects to ``out``; return the rows.

    The bytes are those of :func:`write_csv` for ``store.iter_events(where)``;
    see :func:`iter_store_csv` for why it is faster.
    """
    return _write_chunks(_store_csv_chunks(store, where, tz, lang), out)
