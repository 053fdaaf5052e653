"""CSV and XLSX exports: read back with the csv module and openpyxl, hostile names included."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk.export import (
    CSV_CHUNK_CHARS,
    EXCEL_MAX_ROWS,
    EXPORT_COLUMNS,
    UTF8_BOM,
    fixed_offset_span,
    header_row,
    iter_csv,
    iter_store_csv,
    local_time_label,
    neutralise,
    write_csv,
    write_store_csv,
    write_xlsx,
)
from kiosk.store import Event, EventFilter, Store

SAIGON = ZoneInfo("Asia/Ho_Chi_Minh")
LONDON = ZoneInfo("Europe/London")

VIETNAMESE = unicodedata.normalize("NFC", "Nguyễn Thị Ánh Tuyết")
HOSTILE_NAMES = (
    '=HYPERLINK("http://evil","x")',
    "+1+1",
    "-2",
    "@SUM(A1)",
    "\tTAB",
    "\rCR",
    "＝1+1",
    "  =1+1",
    "\u202e=1+1",
    "\x00=1+1",  # an admit-once name before names were validated (issue 14)
)
OTHER_NAMES = (
    "<script>alert(1)</script>",
    "\u202eevil.exe",
    "N" * 10_000,
    VIETNAMESE,
    "Trần Văn \"Bảo\", 'Kiên'\nline two",
)

# 2026-11-28 01:30:05.250000 UTC is 08:30:05 in Ho Chi Minh City (UTC+07:00, no DST).
AT = datetime(2026, 11, 28, 1, 30, 5, 250000, tzinfo=UTC)


def make_event(seq: int, **changes: object) -> Event:
    """An event with every field set, one minute after the previous one."""
    event = Event(
        id=f"{seq:032x}",
        boot_id="5f0c6e7a9b8d4c3e2f1a0b9c8d7e6f5a",
        seq=seq,
        gate_id="gate-1",
        at=AT + timedelta(minutes=seq - 1),
        utc_offset_min=420,
        clock_synced=True,
        direction="in" if seq % 2 else "out",
        decision="allow",
        reason="ok",
        kind="cccd",
        subject_hash="ab" * 32,
        display_name=VIETNAMESE,
        masked_id="0792****1234",
        id_number="079201001234",
        override=False,
        warning="clock-unsynced",
    )
    return dataclasses.replace(event, **changes)  # type: ignore[arg-type]


def hostile_events() -> list[Event]:
    names = (*HOSTILE_NAMES, *OTHER_NAMES)
    return [
        make_event(
            i + 1,
            display_name=name,
            override=bool(i % 2),
            clock_synced=not i % 3,
            id_number=None if i % 2 else "079201001234",
            warning=None if i % 2 else "=cmd|' /C calc'!A0",
            reason="-denylisted" if i == 0 else "ok",
        )
        for i, name in enumerate(names)
    ]


def expected_name(name: str) -> str:
    return "'" + name if name in HOSTILE_NAMES else name


# --------------------------------------------------------------------------- neutralise


@pytest.mark.parametrize(
    "cell",
    [
        *HOSTILE_NAMES,
        *("＋1", "－1", "＠A1", " \t-1", "\u3000=1", "\ufeff=1"),
        # LibreOffice drops a leading NUL on import, then runs the formula (issue 14).
        *("\x00=1+1", "\x00", "\x1b=1", " \x00@A1", "\x7f+1"),
    ],
)
def test_formula_like_cells_get_a_leading_apostrophe(cell: str) -> None:
    assert neutralise(cell) == "'" + cell


@pytest.mark.parametrize(
    "cell",
    ["", VIETNAMESE, "Ánh", "a=b", "1-2", "  Lan", "'=already quoted", "<b>", "\u202eevil", "(1)"],
)
def test_ordinary_cells_are_unchanged(cell: str) -> None:
    assert neutralise(cell) == cell


def _runs_as_formula(cell: str) -> bool:
    """Whether a spreadsheet could run ``cell``: a leading control character
    (tab, CR, NUL...: dropped or acted on at import), or a formula sign after
    whitespace, control and invisible format characters."""
    if cell[:1] and unicodedata.category(cell[0]) == "Cc":
        return True
    meaningful = cell.lstrip(
        "".join(c for c in cell if c.isspace() or unicodedata.category(c) in ("Cc", "Cf"))
    )
    return meaningful[:1] in tuple("=+-@＝＋－＠")


@given(st.text())
def test_neutralised_text_never_starts_a_formula(cell: str) -> None:
    result = neutralise(cell)
    assert result in (cell, "'" + cell)
    assert not _runs_as_formula(result)
    assert (result != cell) == _runs_as_formula(cell)


# --------------------------------------------------------------------------- headers


def test_header_names_a_fixed_offset_zone_with_its_offset() -> None:
    assert local_time_label(SAIGON) == "Local time (Asia/Ho_Chi_Minh, UTC+07:00)"
    assert local_time_label(ZoneInfo("Asia/Kolkata")) == "Local time (Asia/Kolkata, UTC+05:30)"
    assert local_time_label(ZoneInfo("America/Bogota")) == "Local time (America/Bogota, UTC-05:00)"
    assert local_time_label(ZoneInfo("UTC")) == "Local time (UTC)"


def test_header_names_a_daylight_saving_zone_without_an_offset() -> None:
    assert local_time_label(LONDON) == "Local time (Europe/London)"


def test_header_row_follows_the_export_columns() -> None:
    labels = header_row(SAIGON)
    assert len(labels) == len(EXPORT_COLUMNS) == 20
    assert labels[0] == "Local time (Asia/Ho_Chi_Minh, UTC+07:00)"
    assert labels[1:] == [column.label for column in EXPORT_COLUMNS[1:]]


# --------------------------------------------------------------------------- CSV


def read_csv(data: bytes) -> list[list[str]]:
    assert data.startswith(UTF8_BOM)
    text = data[len(UTF8_BOM) :].decode("utf-8")
    return list(csv.reader(io.StringIO(text, newline="")))


def export_csv(events: list[Event], tz: ZoneInfo = SAIGON) -> bytes:
    out = io.BytesIO()
    assert write_csv(events, out, tz=tz) == len(events)
    return out.getvalue()


def test_csv_starts_with_a_bom_and_a_header_naming_the_zone() -> None:
    rows = read_csv(export_csv([make_event(1)]))
    assert rows[0] == header_row(SAIGON)
    assert rows[0][0] == "Local time (Asia/Ho_Chi_Minh, UTC+07:00)"


def test_csv_row_has_local_and_utc_times_and_every_field() -> None:
    rows = read_csv(export_csv([make_event(1)]))
    assert rows[1] == [
        "2026-11-28 08:30:05",
        "2026-11-28T01:30:05.250000Z",
        "gate-1",
        "in",
        "allow",
        "ok",
        "cccd",
        VIETNAMESE,
        "0792****1234",
        "079201001234",
        "FALSE",
        "clock-unsynced",
        "TRUE",
        "5f0c6e7a9b8d4c3e2f1a0b9c8d7e6f5a",
        "1",
        f"{1:032x}",
        "",
        "",
        "",
        "",
    ]


def test_csv_local_time_follows_daylight_saving() -> None:
    summer = make_event(1, at=datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
    winter = make_event(2, at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    rows = read_csv(export_csv([summer, winter], tz=LONDON))
    assert rows[0][0] == "Local time (Europe/London)"
    assert [row[0] for row in rows[1:]] == ["2026-07-01 13:00:00", "2026-12-01 12:00:00"]


def test_csv_neutralises_every_formula_like_cell_and_keeps_the_rest_intact() -> None:
    events = hostile_events()
    rows = read_csv(export_csv(events))
    assert len(rows) == 1 + len(events)
    for event, row in zip(events, rows[1:], strict=True):
        assert row[7] == expected_name(event.display_name or "")
        assert row[11] in ("", "'=cmd|' /C calc'!A0")
    assert rows[1][5] == "'-denylisted"
    assert rows[-2][7] == VIETNAMESE
    assert unicodedata.is_normalized("NFC", rows[-2][7])
    assert rows[-3][7] == "N" * 10_000
    for row in rows:
        for cell in row:
            assert not (cell and _runs_as_formula(cell))


def test_a_name_with_a_leading_nul_is_exported_as_text() -> None:
    rows = read_csv(export_csv([make_event(1, display_name="\x00=1+1")]))
    assert rows[1][7] == "'\x00=1+1"


def test_csv_ends_lines_with_crlf_and_quotes_only_when_needed() -> None:
    data = export_csv([make_event(1, display_name='A "B", C'), make_event(2)])
    assert data.count(b"\r\n") == 3
    assert b'"A ""B"", C"' in data
    assert b',"gate-1",' not in data


def test_csv_without_events_is_the_header_only() -> None:
    data = export_csv([])
    assert read_csv(data) == [header_row(SAIGON)]
    assert data.endswith(b"\r\n")


def test_iter_csv_yields_the_same_bytes_in_bounded_chunks() -> None:
    events = [make_event(i) for i in range(1, 3001)]
    chunks = list(iter_csv(events, tz=SAIGON))
    assert len(chunks) > 3
    assert b"".join(chunks) == export_csv(events)
    longest_row = max(len(line) for line in b"".join(chunks).split(b"\r\n"))
    assert all(len(chunk) <= 4 * (CSV_CHUNK_CHARS + longest_row) for chunk in chunks)
    assert chunks[0].startswith(UTF8_BOM)
    assert not any(chunk.startswith(UTF8_BOM) for chunk in chunks[1:])


def test_iter_csv_reads_events_only_as_chunks_are_taken() -> None:
    pulled = 0

    def events() -> Iterator[Event]:
        nonlocal pulled
        for i in range(1, 100_001):
            pulled += 1
            yield make_event(i)

    chunks = iter_csv(events(), tz=SAIGON)
    assert pulled == 0
    next(chunks)
    assert 0 < pulled < 2000


# --------------------------------------------------------------------------- XLSX

_OOXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def ooxml_text(value: str) -> str:
    """Undo the _xHHHH_ escapes that XLSX uses for control characters (Excel undoes them too;
    openpyxl does not for in-line strings, which constant_memory mode writes)."""
    return _OOXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)


def export_xlsx(
    tmp_path: Path, events: list[Event], *, max_rows_per_sheet: int = EXCEL_MAX_ROWS
) -> openpyxl.Workbook:
    path = tmp_path / "events.xlsx"
    written = write_xlsx(iter(events), path, tz=SAIGON, max_rows_per_sheet=max_rows_per_sheet)
    assert written == len(events)
    return openpyxl.load_workbook(path)


def test_xlsx_has_a_bold_frozen_header_naming_the_zone(tmp_path: Path) -> None:
    sheet = export_xlsx(tmp_path, [make_event(1)]).active
    header = [cell.value for cell in sheet[1]]
    assert header == header_row(SAIGON)
    assert all(cell.font.b for cell in sheet[1])
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:T2"
    assert sheet.column_dimensions["H"].width > 20


def test_xlsx_row_has_typed_cells(tmp_path: Path) -> None:
    sheet = export_xlsx(tmp_path, [make_event(1)]).active
    cells = sheet[2]
    local = cells[0]
    assert local.is_date
    assert isinstance(local.value, datetime)
    assert local.value.tzinfo is None
    assert abs(local.value - datetime(2026, 11, 28, 8, 30, 5, 250000)) < timedelta(milliseconds=1)
    assert local.number_format == "yyyy-mm-dd hh:mm:ss"
    assert cells[1].value == "2026-11-28T01:30:05.250000Z"
    assert cells[1].data_type == "s"
    assert [cell.value for cell in cells[2:10]] == [
        "gate-1",
        "in",
        "allow",
        "ok",
        "cccd",
        VIETNAMESE,
        "0792****1234",
        "079201001234",
    ]
    assert cells[10].value is False
    assert cells[11].value == "clock-unsynced"
    assert cells[12].value is True
    assert cells[13].value == "5f0c6e7a9b8d4c3e2f1a0b9c8d7e6f5a"
    assert cells[14].value == 1
    assert cells[14].data_type == "n"
    assert cells[15].value == f"{1:032x}"
    assert [cell.value for cell in cells[16:18]] == [None, None]


def test_xlsx_leaves_missing_values_blank(tmp_path: Path) -> None:
    event = make_event(1, display_name=None, masked_id=None, id_number=None, warning="")
    cells = export_xlsx(tmp_path, [event]).active[2]
    assert [cells[i].value for i in (7, 8, 9, 11)] == [None, None, None, None]


def test_xlsx_stores_formula_like_names_as_neutralised_strings(tmp_path: Path) -> None:
    events = hostile_events()
    sheet = export_xlsx(tmp_path, events).active
    assert sheet.max_row == 1 + len(events)
    for event, row in zip(events, sheet.iter_rows(min_row=2), strict=True):
        name = row[7]
        assert name.data_type == "s"
        assert ooxml_text(name.value) == expected_name(event.display_name or "")
    for row in sheet.iter_rows():
        for cell in row:
            assert cell.data_type != "f"
            if isinstance(cell.value, str):
                assert not _runs_as_formula(ooxml_text(cell.value))
    assert sheet["F2"].value == "'-denylisted"
    assert sheet["L2"].value == "'=cmd|' /C calc'!A0"


def test_xlsx_continues_on_further_sheets_past_the_row_limit(tmp_path: Path) -> None:
    events = [make_event(i) for i in range(1, 10)]
    book = export_xlsx(tmp_path, events, max_rows_per_sheet=5)
    assert book.sheetnames == ["Events", "Events 2", "Events 3"]
    seqs = []
    for sheet in book.worksheets:
        assert [cell.value for cell in sheet[1]] == header_row(SAIGON)
        assert sheet.freeze_panes == "A2"
        assert sheet.max_row <= 5
        seqs += [row[14].value for row in sheet.iter_rows(min_row=2)]
    assert seqs == list(range(1, 10))
    assert book["Events 3"].max_row == 2


def test_xlsx_opens_no_empty_sheet_when_the_last_one_is_exactly_full(tmp_path: Path) -> None:
    book = export_xlsx(tmp_path, [make_event(i) for i in range(1, 9)], max_rows_per_sheet=5)
    assert book.sheetnames == ["Events", "Events 2"]


def test_xlsx_without_events_is_the_header_only(tmp_path: Path) -> None:
    book = export_xlsx(tmp_path, [])
    assert book.sheetnames == ["Events"]
    sheet = book.active
    assert sheet.max_row == 1
    assert [cell.value for cell in sheet[1]] == header_row(SAIGON)


def test_xlsx_writes_to_a_binary_stream() -> None:
    out = io.BytesIO()
    assert write_xlsx([make_event(1)], out, tz=SAIGON) == 1
    out.seek(0)
    assert openpyxl.load_workbook(out).active["H2"].value == VIETNAMESE


def test_xlsx_refuses_a_row_limit_without_room_for_data(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_rows_per_sheet"):
        write_xlsx([], tmp_path / "x.xlsx", tz=SAIGON, max_rows_per_sheet=1)


def test_xlsx_leaves_no_file_when_the_events_fail_half_way(tmp_path: Path) -> None:
    def failing() -> Iterator[Event]:
        yield make_event(1)
        raise OSError("disk gone")

    path = tmp_path / "events.xlsx"
    with pytest.raises(OSError, match="disk gone"):
        write_xlsx(failing(), path, tz=SAIGON)
    assert not path.exists()


# --------------------------------------------------------------------------- HC1: identity


def hcert_event(seq: int, **changes: object) -> Event:
    """An event of a verified HC1: certificate, with the holder's identity."""
    values: dict[str, object] = {
        "kind": "hcert",
        "masked_id": None,
        "id_number": None,
        "display_name": "Nguyễn Thị Mai",
        "birth_date": "1990-04-12",
        "name_latin": "NGUYEN THI MAI",
    }
    values.update(changes)
    return make_event(seq, **values)


def test_hcert_identity_follows_the_original_sixteen_columns(tmp_path: Path) -> None:
    assert [c.label for c in EXPORT_COLUMNS[16:18]] == ["Date of birth", "Name (Latin)"]
    events = [hcert_event(1), make_event(2)]
    rows = read_csv(export_csv(events))
    assert rows[1][16:18] == ["1990-04-12", "NGUYEN THI MAI"]
    assert rows[2][16:18] == ["", ""]
    sheet = export_xlsx(tmp_path, events).active
    assert [cell.value for cell in sheet[2][16:18]] == ["1990-04-12", "NGUYEN THI MAI"]
    assert [cell.value for cell in sheet[3][16:18]] == [None, None]


def test_hcert_identity_cells_are_neutralised() -> None:
    rows = read_csv(export_csv([hcert_event(1, name_latin="=HYPERLINK(1)")]))
    assert rows[1][17] == "'=HYPERLINK(1)"


# --------------------------------------------------------------------------- CSV from the store


def store_with(tmp_path: Path, events: list[Event]) -> Store:
    store = Store.open(tmp_path / "gate.db", boot_id="5f0c6e7a9b8d4c3e2f1a0b9c8d7e6f5a")
    for event in events:
        store.record(event.as_new())
    return store


def both_exports(
    store: Store, tz: ZoneInfo, where: EventFilter | None = None, lang: str = "en"
) -> tuple[bytes, bytes]:
    where = where or EventFilter()
    events_path, fast_path = io.BytesIO(), io.BytesIO()
    rows = write_csv(store.iter_events(where), events_path, tz=tz, lang=lang)
    assert write_store_csv(store, where, fast_path, tz=tz, lang=lang) == rows
    return events_path.getvalue(), fast_path.getvalue()


def awkward_events() -> list[Event]:
    """Hostile names; every first character in and around the ranges the fast
    path lets through unneutralised (U+00C0-U+024F, U+1E00-U+1EFF) before a
    formula; quotes and commas in every free-text column; times outside
    2000-2049; a DST change; NUL and unit separator characters."""
    around_the_letters_let_through = (*range(0x300), *range(0x1DF0, 0x1F10), *range(0x2000, 0x2070))
    firsts = [*map(chr, around_the_letters_let_through), "\u3000", "\ufeff", "＝", "\U0001f600"]
    events = hostile_events()
    events += [
        make_event(100 + i, display_name=f"{first}=1+1", masked_id=f"{first}x")
        for i, first in enumerate(firsts)
    ]
    events += [
        make_event(5000, gate_id="gate,1", reason='re"ason', kind="-kind", warning="a\r\nb"),
        make_event(5001, masked_id="", id_number="", display_name=None, warning=""),
        make_event(5002, at=datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)),
        make_event(5003, at=datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        make_event(5004, at=datetime(2050, 1, 1, tzinfo=UTC)),
        make_event(5005, at=datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=UTC)),
        make_event(5006, at=datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        make_event(5007, display_name="name\x1fwith\x1funit separators", override=True),
        make_event(5008, kind="hcert", name_latin="=HYPERLINK(1)", birth_date="1990-01-31"),
        make_event(5009, kind="hcert", name_latin="NGUYEN<<AN", birth_date="1990-01-31"),
        make_event(5010, display_name="nul\x00inside", warning="w\x00"),
        make_event(5011, kind="override", override=True, actor="=guard", note='a, "b"\n'),
        make_event(5012, kind="manual", override=True, actor="lan", note="Khách của anh Minh"),
        make_event(5013, reason="ok-exit", direction="out", actor="@x", note="n\x00"),
        make_event(5014, reason="sitecode-brand-new", decision="deny"),
        make_event(5015, reason="denylisted", decision="deny", kind="pc-covid"),
    ]
    return events


@pytest.mark.parametrize("lang", ["en", "vi"])
@pytest.mark.parametrize("tz", [SAIGON, LONDON, ZoneInfo("UTC"), ZoneInfo("Asia/Kolkata")])
def test_store_csv_is_byte_identical_to_the_events_csv(
    tmp_path: Path, tz: ZoneInfo, lang: str
) -> None:
    with store_with(tmp_path, awkward_events()) as store:
        events_csv, fast_csv = both_exports(store, tz, lang=lang)
    assert fast_csv == events_csv
    assert len(read_csv(fast_csv)) == 1 + len(awkward_events())


def test_store_csv_follows_the_filter_like_the_events_csv(tmp_path: Path) -> None:
    events = [make_event(i, display_name=f"Nguyễn {i}", direction="in") for i in range(1, 200)]
    with store_with(tmp_path, events) as store:
        where = EventFilter(
            start=AT + timedelta(minutes=20), end=AT + timedelta(minutes=90), text="nguyen 5"
        )
        events_csv, fast_csv = both_exports(store, SAIGON, where)
        empty = both_exports(store, SAIGON, EventFilter(kind="nothing"))
    assert fast_csv == events_csv
    # seq 21..90 are in the window; "Nguyễn 50" to "Nguyễn 59" match the text
    assert len(read_csv(fast_csv)) == 1 + 10
    assert empty[1] == empty[0] == events_csv[: events_csv.index(b"\r\n") + 2]


def test_iter_store_csv_chunks_join_to_the_written_bytes(tmp_path: Path) -> None:
    events = [make_event(i) for i in range(1, 3001)]
    with store_with(tmp_path, events) as store:
        chunks = list(iter_store_csv(store, EventFilter(), tz=SAIGON))
        events_csv, fast_csv = both_exports(store, SAIGON)
    assert len(chunks) > 3
    assert b"".join(chunks) == fast_csv == events_csv
    assert not any(chunk.startswith(UTF8_BOM) for chunk in chunks[1:])


def test_fixed_offset_span_only_for_zones_without_offset_changes() -> None:
    assert fixed_offset_span(SAIGON) == (
        420,
        ("2000-01-01T00:00:00.000000Z", "2050-01-01T00:00:00.000000Z"),
    )
    assert fixed_offset_span(LONDON) is None
    assert fixed_offset_span(ZoneInfo("Asia/Kolkata")) is not None


def test_store_csv_writes_the_identity_columns_as_the_events_path_does(tmp_path: Path) -> None:
    with Store.open(tmp_path / "gate.db", boot_id="boot-1") as store:
        for event in (
            hcert_event(1),
            make_event(2),
            hcert_event(3, name_latin="=CMD"),
            hcert_event(4, birth_date=None, name_latin=None),
            make_event(5),
        ):
            store.record(event.as_new())
        fast, slow = io.BytesIO(), io.BytesIO()
        assert write_store_csv(store, EventFilter(), fast, tz=SAIGON) == 5
        write_csv(store.iter_events(EventFilter()), slow, tz=SAIGON)
    assert fast.getvalue() == slow.getvalue()
    rows = read_csv(fast.getvalue())
    assert [row[16:18] for row in rows[1:]] == [
        ["1990-04-12", "NGUYEN THI MAI"],
        ["", ""],
        ["1990-04-12", "'=CMD"],
        ["", ""],
        ["", ""],
    ]


# --------------------------------------------------------------------------- languages, guards


def test_a_guards_admission_shows_who_admitted_and_why() -> None:
    event = make_event(1, kind="override", override=True, actor="bao-ve-1", note="Khách, có hẹn")
    rows = read_csv(export_csv([event]))
    assert rows[0][-2:] == ["Admitted by", "Guard's note"]
    assert rows[1][-2:] == ["bao-ve-1", "Khách, có hẹn"]


def test_vietnamese_export_has_vietnamese_headers_and_values(tmp_path: Path) -> None:
    events = [
        make_event(1),
        make_event(2, reason="ok-exit", direction="out"),
        make_event(3, decision="deny", reason="denylisted", kind="pc-covid", clock_synced=False),
        make_event(4, kind="manual", override=True, actor="lan", reason="manual-admit"),
        make_event(5, reason="sitecode-expired", kind="declaration", decision="deny"),
    ]
    out = io.BytesIO()
    write_csv(events, out, tz=SAIGON, lang="vi")
    rows = read_csv(out.getvalue())
    assert rows[0] == header_row(SAIGON, "vi")
    assert rows[0][:3] == ["Giờ địa phương (Asia/Ho_Chi_Minh, UTC+07:00)", "Giờ UTC", "Cổng"]
    assert rows[0][-2:] == ["Người cho vào", "Ghi chú của bảo vệ"]
    assert [row[3:7] for row in rows[1:]] == [
        ["vào", "cho vào", "Mời vào", "CCCD"],
        ["ra", "cho vào", "Tạm biệt – hẹn gặp lại", "CCCD"],
        ["vào", "từ chối", "Không được phép vào. Vui lòng gặp bảo vệ", "PC-Covid"],
        ["ra", "cho vào", "Bảo vệ cho phép vào", "Bảo vệ cho vào"],
        ["vào", "từ chối", rows[5][5], "Tờ khai y tế"],
    ]
    assert rows[5][5] not in ("", "sitecode-expired")
    assert [row[10] for row in rows[1:]] == ["KHÔNG", "KHÔNG", "KHÔNG", "CÓ", "KHÔNG"]
    assert rows[3][12] == "KHÔNG"
    assert rows[4][18] == "lan"

    book = openpyxl.load_workbook(
        io.BytesIO(_xlsx_bytes(events, lang="vi", tmp_path=tmp_path)), read_only=False
    )
    sheet = book.active
    assert [cell.value for cell in sheet[1]] == header_row(SAIGON, "vi")
    assert [cell.value for cell in sheet[5][3:7]] == [
        "ra",
        "cho vào",
        "Bảo vệ cho phép vào",
        "Bảo vệ cho vào",
    ]
    assert sheet[5][10].value == "CÓ"
    assert sheet[2][9].data_type == "s"  # the ID number stays text
    assert sheet[2][9].number_format == "@"  # and stays text when typed over


def test_an_unknown_export_language_is_refused() -> None:
    with pytest.raises(ValueError, match="one of vi, en"):
        write_csv([make_event(1)], io.BytesIO(), tz=SAIGON, lang="fr")


def _xlsx_bytes(events: list[Event], *, lang: str, tmp_path: Path) -> bytes:
    out = io.BytesIO()
    write_xlsx(events, out, tz=SAIGON, tmpdir=tmp_path, lang=lang)
    return out.getvalue()
