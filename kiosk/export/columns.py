"""The export's columns, what every cell goes through, and the SQL that formats them.

:data:`EXPORT_COLUMNS` is the one list of columns both formats share; the
SQL of the fast CSV path (:func:`iter_export_lines`) writes its cells in the
same order, so the two change together here.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from kiosk.export.labels import CellWords, cell_words
from kiosk.messages import known_reasons
from kiosk.store import LOG_ORDER, Event, EventFilter, Store
from kiosk.store.events import EVENT_COLUMNS, event_from_row

# Years probed to decide whether a zone keeps one UTC offset (see local_time_label).
_OFFSET_PROBE_YEARS = range(2000, 2050)

# Zone names that already say the offset; "UTC, UTC+00:00" would only stutter.
_UTC_NAMES = frozenset({"UTC", "ETC/UTC", "UCT", "ETC/UCT", "ZULU", "ETC/ZULU"})

LINE_SEPARATOR = "\x1f"
"""What :func:`iter_export_lines` joins a line's cells with (U+001F, unit separator)."""


@dataclass(frozen=True)
class ExportColumn:
    """One column of an export: a stable key, its English and Vietnamese
    headers, its XLSX width.

    ``width_chars`` is the Excel column width, in characters of the default font.
    """

    key: str
    label: str
    width_chars: float
    label_vi: str = ""

    def header(self, lang: str) -> str:
        return self.label_vi if lang == "vi" else self.label


EXPORT_COLUMNS: tuple[ExportColumn, ...] = (
    # The local-time label is completed with the zone by local_time_label().
    ExportColumn("local_time", "Local time", 20, "Giờ địa phương"),
    ExportColumn("utc_time", "UTC time", 29, "Giờ UTC"),
    ExportColumn("gate", "Gate", 12, "Cổng"),
    ExportColumn("direction", "Direction", 10, "Chiều"),
    ExportColumn("decision", "Decision", 10, "Quyết định"),
    ExportColumn("reason", "Reason", 22, "Lý do"),
    ExportColumn("kind", "Kind", 14, "Loại mã"),
    ExportColumn("name", "Name", 30, "Họ tên"),
    ExportColumn("masked_id", "Masked ID", 16, "Số giấy tờ (che)"),
    ExportColumn("id_number", "ID number", 16, "Số giấy tờ"),
    ExportColumn("override", "Override", 10, "Bảo vệ cho vào"),
    ExportColumn("warning", "Warning", 22, "Cảnh báo"),
    ExportColumn("clock_synced", "Clock synchronised", 18, "Đồng hồ đã đồng bộ"),
    ExportColumn("boot_id", "Boot ID", 34, "Mã lần khởi động"),
    ExportColumn("seq", "Sequence", 10, "Số thứ tự"),
    ExportColumn("event_id", "Event ID", 34, "Mã sự kiện"),
    # HC1: certificates only (empty for every other kind); last, so the
    # columns before them keep their places in existing spreadsheets.
    ExportColumn("birth_date", "Date of birth", 14, "Ngày sinh"),
    ExportColumn("name_latin", "Name (Latin)", 30, "Họ tên (Latin)"),
    # Who admitted the person by hand (a guard's override or admit-once) and
    # the reason they gave; empty for the gate's own decisions.
    ExportColumn("actor", "Admitted by", 16, "Người cho vào"),
    ExportColumn("note", "Guard's note", 30, "Ghi chú của bảo vệ"),
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


def local_time_label(tz: ZoneInfo, lang: str = "en") -> str:
    """The local-time header, naming the zone: ``Local time (Asia/Ho_Chi_Minh, UTC+07:00)``
    (``Giờ địa phương (...)`` in Vietnamese).

    The offset is named only when the zone keeps one offset all year, in
    every year from 2000 to 2049 (tzdata's rules as installed); a zone with
    daylight saving time, or whose offset changed in that span, is named
    without an offset (``Local time (Europe/London)``), since no one offset
    would be true of every row.
    """
    title = EXPORT_COLUMNS[0].header(lang)
    name = tz.key if tz.key else str(tz)
    offsets = {
        datetime(year, month, 1, 12, tzinfo=UTC).astimezone(tz).utcoffset()
        for year in _OFFSET_PROBE_YEARS
        for month in (1, 4, 7, 10)
    }
    if len(offsets) != 1:
        return f"{title} ({name})"
    (offset,) = offsets
    assert offset is not None  # A ZoneInfo always has an offset for an aware datetime.
    if name.upper() in _UTC_NAMES:
        return f"{title} (UTC)"
    total_min = int(offset.total_seconds()) // 60
    sign = "+" if total_min >= 0 else "-"
    hours, minutes = divmod(abs(total_min), 60)
    return f"{title} ({name}, UTC{sign}{hours:02d}:{minutes:02d})"


def header_row(tz: ZoneInfo, lang: str = "en") -> list[str]:
    """The header labels of :data:`EXPORT_COLUMNS` in ``lang``, in order, the
    local-time one naming ``tz``."""
    cell_words(lang)  # refuses an unknown language
    return [
        local_time_label(tz, lang) if column.key == "local_time" else column.header(lang)
        for column in EXPORT_COLUMNS
    ]


# --------------------------------------------------------------------------- coded cells, in SQL


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _case(column: str, words: Mapping[str, str]) -> str:
    """SQL for ``column`` translated by ``words``; a code without a word stays as it is."""
    if not words:
        return column
    whens = " ".join(f"WHEN {_literal(k)} THEN {_literal(v)}" for k, v in words.items())
    return f"CASE {column} {whens} ELSE {column} END"


def _reason_sql(words: CellWords) -> tuple[str, str]:
    """SQL for the reason cell in ``words``, and a condition true for a reason
    that SQL cannot translate (its line then comes as an Event)."""
    if not words.translate_reasons:
        return "reason", "0"
    table = {code: words.reason(code) for code in known_reasons()}
    known = ", ".join(_literal(code) for code in table)
    return _case("reason", table), f"(reason <> '' AND reason NOT IN ({known}))"


# --------------------------------------------------------------------------- the cells, by SQLite


class ExportBatch:
    """Up to ``batch`` lines as SQLite formatted them (see :func:`iter_export_lines`),
    with the way back to any one line's :class:`Event` in the same read snapshot."""

    def __init__(self, lines: list[str | None], rowids: list[int], reader: Any) -> None:
        self.lines = lines
        self._rowids = rowids
        self._reader = reader

    def event(self, index: int) -> Event:
        """The event behind ``lines[index]`` (valid until the next batch is taken)."""
        found = self._reader.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE rowid = ?", (self._rowids[index],)
        )
        return event_from_row(found.fetchone())


def iter_export_lines(
    store: Store,
    where: EventFilter,
    *,
    local_offset_min: int | None,
    local_span: tuple[str, str] = ("0000", "9999"),
    batch: int = 2000,
    lang: str = "en",
) -> Iterator[ExportBatch]:
    """Every matching event, oldest first, as one line of text formatted by SQLite.

    The fast path of the CSV export (:func:`kiosk.export.write_store_csv`):
    one Python string per event instead of an :class:`Event`. A line is
    the export's cells joined by :data:`LINE_SEPARATOR`, in the order of
    :data:`EXPORT_COLUMNS` (the ``cells`` below follow it):

    * local time ``YYYY-MM-DD HH:MM:SS``: the UTC time (fraction dropped)
      shifted by ``local_offset_min`` minutes, for events with
      ``local_span[0] <= at_utc < local_span[1]`` (UTC text; by default
      every event); empty outside that span or when ``local_offset_min``
      is None;
    * UTC time as stored (``YYYY-MM-DDTHH:MM:SS.ffffffZ``);
    * text as stored (NULL as empty), ``override`` and ``clock_synced`` as
      ``TRUE``/``FALSE``, ``seq`` as digits; in ``lang`` "vi" the direction,
      decision, reason, kind and booleans in the words of
      :func:`~kiosk.export.labels.cell_words` (SQL CASE expressions).

    A line is None where a free-text cell holds a NUL character, which
    SQLite's printf() would cut short, and where a reason has no word
    SQL knows.

    Lines come in :class:`ExportBatch` es of up to ``batch``; a line the
    caller cannot use as it is (say, a cell that needs neutralising, or no
    local time) is read again as its :class:`Event` with
    :meth:`ExportBatch.event`, in the same snapshot. Streams like
    :meth:`Store.iter_events`, through the store's read snapshot (a
    read-only connection of its own, one snapshot for the whole export).
    """
    words = cell_words(lang)
    sql, params = where.sql()
    local = "''"
    span_params: tuple[str, ...] = ()
    if local_offset_min is not None:
        span_params = local_span
        shift = f"'{int(local_offset_min):+d} minutes'"  # an int: safe in the SQL text
        local = (
            "CASE WHEN at_utc >= ? AND at_utc < ? "
            f"THEN datetime(substr(at_utc, 1, 19), {shift}) ELSE '' END"
        )
    yes, no = _literal(words.yes), _literal(words.no)
    reason, untranslated = _reason_sql(words)
    cells = (
        *(local, "at_utc", "gate_id", _case("direction", words.directions)),
        _case("decision", words.decisions),
        reason,
        _case("kind", words.kinds),
        *("display_name", "masked_id", "id_number"),
        f"CASE WHEN override THEN {yes} ELSE {no} END",
        "warning",
        f"CASE WHEN clock_synced THEN {yes} ELSE {no} END",
        *("boot_id", "seq", "id"),
        *("birth_date", "name_latin"),  # HC1: identity, NULL (empty) for other kinds
        *("actor", "note"),  # a guard's admission: who and why
    )
    free_text = (
        *("gate_id", "reason", "kind", "display_name", "masked_id", "id_number"),
        *("warning", "birth_date", "name_latin", "actor", "note"),
    )
    has_nul = " OR ".join(f"instr({c}, char(0))" for c in free_text) + f" OR {untranslated}"
    # printf builds the line in one allocation (|| would copy it per cell); %s of NULL is "".
    line = f"printf('{LINE_SEPARATOR.join(['%s'] * len(cells))}', {', '.join(cells)})"
    query = (
        f"SELECT CASE WHEN {has_nul} THEN NULL ELSE {line} END, rowid FROM events "
        f"WHERE {sql} ORDER BY {LOG_ORDER}"
    )
    with store.read_snapshot("export events") as conn:
        cursor = conn.execute(query, (*span_params, *params))
        while rows := cursor.fetchmany(batch):
            texts, rowids = zip(*rows, strict=True)
            yield ExportBatch(list(texts), list(rowids), conn)
