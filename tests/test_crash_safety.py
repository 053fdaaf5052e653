"""Crash safety: the kiosk and the web killed with SIGKILL leave a sound database
and nothing behind (issue 6).

The first two tests run bench/crash_harness.py, the code of ``make crash``,
with a few kills: real processes (``bench/crash_child.py`` for the kiosk,
``gatekiosk web`` and ``gatekiosk export``) killed with SIGKILL, and every
check made from outside. The others show, without killing anything, why
nothing can be left behind: no export ever gives a temporary file a name.
"""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from flask import Flask
from flask.testing import FlaskClient

import kiosk.export.csv
import kiosk.export.workbook
import kiosk.tempfiles
from bench.crash_harness import run_export_kills, run_kiosk_kills
from kiosk.clock import FakeClock
from kiosk.export import write_xlsx
from kiosk.export.workbook import UnnamedTempWorkbook
from kiosk.export_worker import XlsxJob, run_job
from kiosk.exporting import export_to_file
from kiosk.store import Event, EventFilter, Store
from kiosk.tempfiles import AtomicOutput
from tests.web import record

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
AT = datetime(2026, 1, 6, tzinfo=UTC)

# --------------------------------------------------------------------------- SIGKILL


@pytest.mark.slow
def test_kiosk_killed_at_random_moments_keeps_every_signalled_decision(tmp_path: Path) -> None:
    run = run_kiosk_kills(tmp_path, kills=8, seed=6, max_delay_s=1.0)
    figures = run.figures()
    assert run.problems == []
    assert figures["kills"] == 8
    assert figures["kills_survived"] == 8
    assert figures["signalled_decisions_checked"] >= 1
    assert figures["integrity_failures"] == 0
    assert figures["duplicates"] == 0
    assert figures["relay_on_restart"] == 0
    assert figures["starts_checked"] >= 8  # a kill at start-up has no start to check
    assert figures["clean_stop_at_end"] is True
    assert figures["relay_energised_after_stop"] is False
    assert figures["web_requests"] > 0
    assert figures["web_errors"] == 0


@pytest.mark.slow
def test_web_and_cli_killed_mid_export_leave_nothing_behind(tmp_path: Path) -> None:
    run = run_export_kills(
        tmp_path, rows=8000, web_kills=3, cli_kills=2, seed=6, write_fraction=0.3
    )
    figures = run.figures()
    assert run.problems == []
    assert figures["leftover_files"] == 0
    assert figures["final_exports_ok"] is True
    # The kills aimed at a write (at a random point of its first 30 %, once its
    # file is open) interrupted one: the checks above were not vacuous.
    assert figures["web_kills_landed"].get("xlsx building (temporary file open)", 0) >= 1
    assert sum(n for k, n in figures["cli_kills_landed"].items() if "writing" in k) >= 1


# --------------------------------------------------------------------------- no names


def make_events(
    count: int, watch: Path | None = None, allowed: set[str] | None = None
) -> Iterator[Event]:
    """``count`` events; before each, ``watch`` must hold nothing but ``allowed``."""
    for n in range(count):
        if watch is not None:
            assert set(os.listdir(watch)) <= (allowed or set()), os.listdir(watch)
        yield Event(
            id=f"{n:032x}",
            boot_id="b" * 32,
            seq=n + 1,
            gate_id="gate-1",
            at=AT + timedelta(seconds=n),
            utc_offset_min=420,
            clock_synced=True,
            direction="in",
            decision="allow",
            reason="ok",
            kind="cccd",
            subject_hash=None,
            display_name=f"Nguyễn Văn {n}",
            masked_id="********0123",
            id_number=None,
            override=False,
            warning=None,
        )


@pytest.fixture
def no_named_temp_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any call that would give a temporary file a name fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a named temporary file was asked for")

    for name in ("mkstemp", "NamedTemporaryFile", "mkdtemp"):
        monkeypatch.setattr(tempfile, name, refuse)


@pytest.mark.usefixtures("no_named_temp_files")
def test_xlsx_export_names_no_temporary_file(tmp_path: Path) -> None:
    out = io.BytesIO()
    rows = write_xlsx(make_events(2000, watch=tmp_path), out, tz=HCM, tmpdir=tmp_path)
    assert rows == 2000
    assert os.listdir(tmp_path) == []
    book = openpyxl.load_workbook(io.BytesIO(out.getvalue()), read_only=True)
    sheet_rows = list(book["Events"].iter_rows(values_only=True))
    book.close()
    assert len(sheet_rows) == 2001
    assert sheet_rows[-1][7] == "Nguyễn Văn 1999"


def test_xlsx_parts_are_those_xlsxwriter_would_zip(tmp_path: Path) -> None:
    """The streaming packager writes the same parts, byte for byte, as
    xlsxwriter's own (which zips named files), except the creation time."""
    import xlsxwriter

    def build(workbook_class: Any) -> bytes:
        out = io.BytesIO()
        options = {"constant_memory": True, "tmpdir": str(tmp_path), "use_zip64": True}
        book = workbook_class(out, options)
        sheet = book.add_worksheet("Events")
        for row in range(50):
            sheet.write_string(row, 0, f"Trần Thị {row}")
            sheet.write_number(row, 1, row)
        book.close()
        return out.getvalue()

    ours = zipfile.ZipFile(io.BytesIO(build(UnnamedTempWorkbook)))
    theirs = zipfile.ZipFile(io.BytesIO(build(xlsxwriter.Workbook)))
    assert ours.namelist() == theirs.namelist()
    for name in ours.namelist():
        if name != "docProps/core.xml":  # holds the time it was made
            assert ours.read(name) == theirs.read(name), name


def test_a_sheet_that_may_pass_2_gib_is_zipped_with_zip64(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if the rows already written were within the margin of the zip's limit.
    monkeypatch.setattr(kiosk.export.workbook, "_SHEET_XML_MARGIN", zipfile.ZIP64_LIMIT)
    out = io.BytesIO()
    write_xlsx(make_events(10), out, tz=HCM, tmpdir=tmp_path)
    data = out.getvalue()
    archive = zipfile.ZipFile(io.BytesIO(data))
    info = archive.getinfo("xl/worksheets/sheet1.xml")
    name_len, extra_len = struct.unpack(
        "<HH", data[info.header_offset + 26 : info.header_offset + 30]
    )
    extra = data[
        info.header_offset + 30 + name_len : info.header_offset + 30 + name_len + extra_len
    ]
    assert struct.unpack("<H", extra[:2])[0] == 0x0001  # the ZIP64 extra field
    styles = archive.getinfo("xl/styles.xml")
    assert data[styles.header_offset + 28 : styles.header_offset + 30] == b"\x00\x00"
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    assert book["Events"].max_row == 11
    book.close()


def test_the_unnamed_workbook_needs_constant_memory() -> None:
    with pytest.raises(ValueError, match="constant_memory"):
        UnnamedTempWorkbook(io.BytesIO(), {})
    with pytest.raises(ValueError, match="constant_memory"):
        UnnamedTempWorkbook(io.BytesIO(), {"constant_memory": True, "in_memory": True})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    clock = FakeClock()
    with Store.open(tmp_path / "db" / "gatekiosk.db", boot_id="boot-1") as opened:
        for n in range(300):
            record(opened, clock, display_name=f"Person {n}")
            clock.advance(1)
        yield opened


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
@pytest.mark.usefixtures("no_named_temp_files")
def test_cli_export_shows_no_file_until_it_is_complete(
    store: Store, tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    target = out / f"log.{fmt}"
    target.write_bytes(b"the previous export")
    real = store.iter_events

    def watched(where: EventFilter) -> Iterator[Event]:
        for event in real(where):
            assert os.listdir(out) == [target.name]
            assert target.read_bytes() == b"the previous export"
            yield event

    monkeypatch.setattr(store, "iter_events", watched)
    rows = export_to_file(
        store, EventFilter(), fmt=fmt, path=target, tz=HCM, actor="cli:test", at=AT
    )
    assert rows == 300
    assert os.listdir(out) == [target.name]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    if fmt == "csv":
        assert target.read_bytes().count(b"\r\n") == 301
    else:
        book = openpyxl.load_workbook(target, read_only=True)
        assert book["Events"].max_row == 301
        book.close()


def test_cli_export_into_a_new_file_links_it_in_complete(store: Store, tmp_path: Path) -> None:
    target = tmp_path / "log.csv"
    export_to_file(store, EventFilter(), fmt="csv", path=target, tz=HCM, actor="cli:t", at=AT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db", "log.csv"]
    assert target.read_bytes().count(b"\r\n") == 301


def test_cli_export_without_o_tmpfile_uses_a_hidden_part_file(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where unnamed files are not available, a hidden ``.part`` file stands
    in, renamed when complete (removed on errors; only a kill leaves it)."""
    monkeypatch.setattr(kiosk.tempfiles, "_open_unnamed", lambda folder: None)
    out = tmp_path / "out"
    out.mkdir()
    target = out / "log.csv"
    seen: list[list[str]] = []
    real = kiosk.export.csv.iter_export_lines  # the CSV export's read

    def watched(*args: Any, **kwargs: Any) -> Iterator[Any]:
        seen.append(os.listdir(out))
        yield from real(*args, **kwargs)

    monkeypatch.setattr(kiosk.export.csv, "iter_export_lines", watched)
    export_to_file(store, EventFilter(), fmt="csv", path=target, tz=HCM, actor="cli:t", at=AT)
    assert len(seen[0]) == 1
    assert seen[0][0].startswith(".log.csv.")
    assert seen[0][0].endswith(".part")
    assert os.listdir(out) == ["log.csv"]


def test_an_atomic_output_not_committed_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "kept.csv").write_bytes(b"old")
    with AtomicOutput(tmp_path / "kept.csv") as output:
        output.file.write(b"new, but never committed")
        assert output.unnamed
    with AtomicOutput(tmp_path / "never.csv") as output:
        output.file.write(b"never committed")
    assert os.listdir(tmp_path) == ["kept.csv"]
    assert (tmp_path / "kept.csv").read_bytes() == b"old"


@pytest.mark.usefixtures("no_named_temp_files")
def test_web_xlsx_export_names_no_file_while_building(
    app: Flask, manager: FlaskClient, web_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    for n in range(200):
        record(web_store, clock, display_name=f"Person {n}")
    data_dir: Path = app.extensions["gatekiosk"].settings.data_dir
    before = set(os.listdir(data_dir))
    real = Store.iter_events
    looked = 0

    def watched(self: Store, where: EventFilter) -> Iterator[Event]:
        nonlocal looked
        for event in real(self, where):
            assert set(os.listdir(data_dir)) == before
            looked += 1
            yield event

    # The web builds the workbook in a child process (kiosk.export_worker); its
    # job runs here, watched, into the kind of file the web passes it.
    monkeypatch.setattr(Store, "iter_events", watched)
    job = XlsxJob(db_path=web_store.path, where=EventFilter(), tz=HCM, tmpdir=data_dir)
    with tempfile.TemporaryFile(dir=data_dir) as out:
        message = job.message(
            out_fd=os.dup(out.fileno()), parent_pid=os.getpid(), nice=0, log_level=30
        )
        assert run_job(json.loads(message)) == 200
    assert looked == 200
    response = manager.get("/export.xlsx")
    body = response.get_data()
    response.close()
    assert response.status_code == 200
    assert response.content_length == len(body)
    assert set(os.listdir(data_dir)) == before
    book = openpyxl.load_workbook(io.BytesIO(body), read_only=True)
    assert book["Events"].max_row == 201
    book.close()


@pytest.mark.parametrize("unnamed", [True, False])
def test_an_atomic_output_that_must_not_replace_refuses_an_existing_file(
    tmp_path: Path, unnamed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For a file made once, whole (say, a key): the first process to commit wins."""
    if not unnamed:
        monkeypatch.setattr(kiosk.tempfiles, "_open_unnamed", lambda folder: None)
    target = tmp_path / "subject.key"
    with AtomicOutput(target, replace=False) as first:
        first.file.write(b"first")
        first.commit()
    with AtomicOutput(target, replace=False) as second:
        second.file.write(b"second")
        with pytest.raises(FileExistsError):
            second.commit()
    assert os.listdir(tmp_path) == ["subject.key"]
    assert target.read_bytes() == b"first"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
