"""The export's columns, what every cell goes through, and the SQL that formats them.

:data:`EXPORT_COLUMNS` is the one list of columns both formats share; the
SQL of the fast CSV path (:func:`iter_export_lines`) writes its cells in the
same order, so the two change together here.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

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


# --------------------------------------------------------------------------- the cells, by SQLite


def iter_export_lines(
    store: Store,
    where: EventFilter,
    *,
    unusable: Callable[[list[str | None]], list[int]],
    local_offset_min: int | None,
    local_span: tuple[str, str] = ("0000", "9999"),
    batch: int = 2000,
) -> Iterator[tuple[str | Event, ...]]:
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
      ``TRUE``/``FALSE``, ``seq`` as digits.

    A line is None where a free-text cell holds a NUL character, which
    SQLite's printf() would cut short.

    Lines come in tuples of up to ``batch``. ``unusable(lines)`` gives the
    positions in such a list of the lines the caller cannot use as they
    are (say, a cell that needs neutralising, or no local time); each is
    replaced by its :class:`Event`, read in the same snapshot. Streams
    like :meth:`Store.iter_events`, through the store's read snapshot (a
    read-only connection of its own, one snapshot for the whole export).
    """
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
    cells = (
        *(local, "at_utc", "gate_id", "direction", "decision", "reason", "kind"),
        *("display_name", "masked_id", "id_number"),
        "CASE WHEN override THEN 'TRUE' ELSE 'FALSE' END",
        "warning",
        "CASE WHEN clock_synced THEN 'TRUE' ELSE 'FALSE' END",
        *("boot_id", "seq", "id"),
        *("birth_date", "name_latin"),  # HC1: identity, NULL (empty) for other kinds
    )
    free_text = (
        *("gate_id", "reason", "kind", "display_name", "masked_id", "id_number"),
        *("warning", "birth_date", "name_latin"),
    )
    has_nul = " OR ".join(f"instr({c}, char(0))" for c in free_text)
    # printf builds the line in one allocation (|| would copy it per cell); %s of NULL is "".
    line = f"printf('{LINE_SEPARATOR.join(['%s'] * len(cells))}', {', '.join(cells)})"
    query = (
        f"SELECT CASE WHEN {has_nul} THEN NULL ELSE {line} END, rowid FROM events "
        f"WHERE {sql} ORDER BY {LOG_ORDER}"
    )
    with store.read_snapshot("export events") as conn:
        cursor = conn.execute(query, (*span_params, *params))
        while rows := cursor.fetchmany(batch):
            texts = [row[0] for row in rows]
            lines: list[str | Event] = list(texts)
            for i in unusable(texts):
                found = conn.execute(
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE rowid = ?", (rows[i][1],)
                )
                lines[i] = event_from_row(found.fetchone())
            yield tuple(lines)
