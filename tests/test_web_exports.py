"""The web's exports: the CSV straight from SQLite, audited from its start; the
Excel workbook built by a child process (kiosk.export_worker)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import cast
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from flask import Flask
from flask.testing import FlaskClient

from admin_web.exports import audited_stream
from kiosk.clock import FakeClock
from kiosk.errors import StoreError
from kiosk.export import iter_csv, iter_store_csv_counted
from kiosk.export_worker import (
    EXIT_PARENT_GONE,
    WORKER_MODULE,
    ExportWorkerError,
    XlsxJob,
    build_xlsx_in_child,
    filter_from_json,
    filter_to_json,
)
from kiosk.store import Event, EventFilter, Store
from tests.fakes import fill_log
from tests.web import AppWith, log_in, record

HCM = ZoneInfo("Asia/Ho_Chi_Minh")


def fill(store: Store, clock: FakeClock, count: int) -> None:
    for n in range(count):
        record(store, clock, display_name=f"Nguyễn Văn {n}", subject_hash=f"{n:032x}")
        clock.advance(60)


def refuse_events(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any read of Event objects through ``store`` in this process fails the test."""

    def refuse(where: EventFilter, **kwargs: object) -> Iterator[Event]:
        raise AssertionError("the web process read Event objects")

    monkeypatch.setattr(store, "iter_events", refuse)


def export_audit(store: Store) -> tuple[dict[str, object], int | None]:
    entry = store.audit_entries(limit=1)[0]
    assert (entry.actor, entry.action) == ("manager1", "export")
    return entry.detail, entry.row_count


# --------------------------------------------------------------------------- CSV


@pytest.mark.parametrize("zone", ["Asia/Ho_Chi_Minh", "Europe/London"])
def test_each_csv_chunk_counts_exactly_the_rows_handed_out_with_it(
    web_store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, zone: str
) -> None:
    """The count an audit takes, for SQLite's lines and (summer time) for Events alike."""
    monkeypatch.setattr("kiosk.export.csv.CSV_CHUNK_CHARS", 300)  # a few rows a chunk
    monkeypatch.setattr("kiosk.export.csv._STORE_CSV_BATCH", 3)
    fill(web_store, clock, 20)
    sent = b""
    counts = []
    for chunk, rows in iter_store_csv_counted(web_store, EventFilter(), tz=ZoneInfo(zone)):
        sent += chunk
        assert rows == sent.count(b"\r\n") - 1  # every line but the header
        counts.append(rows)
    assert len(counts) > 3
    assert counts[-1] == 20


def test_csv_download_is_the_events_csv_made_by_sqlite(
    manager: FlaskClient, web_store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(web_store, clock, 30)
    record(web_store, clock, display_name="=cmd|' /C calc'!A0", subject_hash="e" * 32)
    expected = b"".join(iter_csv(web_store.iter_events(EventFilter()), tz=HCM))
    refuse_events(web_store, monkeypatch)
    response = manager.get("/export.csv")
    body = response.get_data()
    response.close()
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert body == expected
    assert export_audit(web_store) == ({"format": "csv", "complete": True}, 31)


def test_csv_download_in_a_zone_with_summer_time_reads_events(
    app_with: AppWith, clock: FakeClock
) -> None:
    """Local time with daylight saving time is Python's to compute: same bytes, same audit."""
    app = app_with({"gate.timezone": "Europe/London"})
    store: Store = app.extensions["gatekiosk"].store
    try:
        fill(store, clock, 5)
        client = app.test_client()
        log_in(client, "manager")
        response = client.get("/export.csv")
        body = response.get_data()
        response.close()
        london = ZoneInfo("Europe/London")
        assert body == b"".join(iter_csv(store.iter_events(EventFilter()), tz=london))
        assert export_audit(store) == ({"format": "csv", "complete": True}, 5)
    finally:
        store.close()


def test_csv_download_is_audited_before_its_first_byte(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    fill(web_store, clock, 3)
    response = manager.get("/export.csv?direction=in")
    # The view has returned; nothing of the body has been produced yet.
    assert export_audit(web_store) == ({"direction": "in", "format": "csv", "complete": False}, 0)
    response.get_data()
    response.close()
    assert export_audit(web_store) == ({"direction": "in", "format": "csv", "complete": True}, 3)
    exports = [e for e in web_store.audit_entries() if e.action == "export"]
    assert len(exports) == 1  # the row of the start, updated in place


def test_csv_download_brings_its_audit_up_to_date_as_rows_leave(
    manager: FlaskClient, web_store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a web process killed midway leaves: the count of the last update, made
    when a chunk is handed out a second or more after the one before."""
    monkeypatch.setattr("kiosk.export.csv.CSV_CHUNK_CHARS", 1)  # one chunk per row
    monkeypatch.setattr("kiosk.export.csv._STORE_CSV_BATCH", 1)
    fill(web_store, clock, 5)
    response = manager.get("/export.csv")
    chunks = iter(cast(Iterator[bytes], response.response))  # as a WSGI server takes them
    seen = []
    for advance_s in (0.0, 1.0, 0.0, 0.5, 0.5):
        clock.advance(advance_s)
        next(chunks)
        seen.append(export_audit(web_store)[1])
    # Recorded with the rows of the chunk being handed out, that chunk included.
    assert seen == [0, 2, 2, 2, 5]
    assert export_audit(web_store)[0]["complete"] is False
    with pytest.raises(StopIteration):
        next(chunks)
    response.close()
    assert export_audit(web_store) == ({"format": "csv", "complete": True}, 5)


def test_audited_stream_records_a_failed_read_as_incomplete() -> None:
    records: list[tuple[int, bool]] = []

    def chunks() -> Iterator[tuple[bytes, int]]:
        yield b"header,row 1\r\n", 1
        yield b"row 2\r\n", 2
        raise OSError("disk I/O error")

    stream = audited_stream(
        chunks(), lambda rows, complete: records.append((rows, complete)), monotonic=lambda: 0.0
    )
    assert next(stream) == b"header,row 1\r\n"
    assert next(stream) == b"row 2\r\n"
    with pytest.raises(OSError, match="disk I/O error"):
        next(stream)
    assert records == [(2, False)]


def test_audited_stream_never_started_records_nothing() -> None:
    """A download the client dropped before its first byte keeps its start's audit (0 rows)."""
    records: list[tuple[int, bool]] = []
    stream = audited_stream(
        iter([(b"x", 1)]), lambda rows, c: records.append((rows, c)), monotonic=lambda: 0.0
    )
    stream.close()
    assert records == []


# --------------------------------------------------------------------------- XLSX


def test_xlsx_download_is_built_by_a_child_process(
    app: Flask,
    manager: FlaskClient,
    web_store: Store,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fill(web_store, clock, 40)
    refuse_events(web_store, monkeypatch)  # the web process itself reads no event
    data_dir: Path = app.extensions["gatekiosk"].settings.data_dir
    before = set(os.listdir(data_dir))
    response = manager.get("/export.xlsx?direction=in")
    body = response.get_data()
    response.close()
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.content_length == len(body)
    assert "gatekiosk-2026-01-05.xlsx" in response.headers["Content-Disposition"]
    book = openpyxl.load_workbook(io.BytesIO(body), read_only=True)
    names = [row[7] for row in book["Events"].iter_rows(min_row=2, values_only=True)]
    book.close()
    assert names == [f"Nguyễn Văn {n}" for n in range(40)]
    assert export_audit(web_store) == ({"direction": "in", "format": "xlsx", "complete": True}, 40)
    assert set(os.listdir(data_dir)) == before


def test_a_failed_xlsx_build_is_a_500_and_stays_incomplete_in_the_audit(
    manager: FlaskClient,
    web_store: Store,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fill(web_store, clock, 2)

    def failing(job: XlsxJob, out: object) -> int:
        raise ExportWorkerError("the export's worker process failed (exit status 1)")

    monkeypatch.setattr("admin_web.exports.build_xlsx_in_child", failing)
    response = manager.get("/export.xlsx")
    page = response.get_data(as_text=True)
    response.close()
    assert response.status_code == 500
    assert "Không tạo được tệp Excel" in page
    assert "The Excel file could not be built" in page
    assert export_audit(web_store) == ({"format": "xlsx", "complete": False}, 0)
    assert "an Excel export failed: the export's worker process failed (exit status 1)" in (
        caplog.text
    )


# --------------------------------------------------------------------------- the worker


@pytest.fixture
def job(web_store: Store, clock: FakeClock, tmp_path: Path) -> XlsxJob:
    fill(web_store, clock, 3)
    return XlsxJob(db_path=web_store.path, where=EventFilter(), tz=HCM, tmpdir=tmp_path)


def test_the_worker_writes_the_workbook_into_the_file_it_is_given(
    job: XlsxJob, tmp_path: Path
) -> None:
    with tempfile.TemporaryFile(dir=tmp_path) as out:
        assert build_xlsx_in_child(job, out) == 3
        out.seek(0)
        book = openpyxl.load_workbook(out, read_only=True)
        assert book["Events"].max_row == 4
        book.close()


def test_a_worker_that_cannot_read_the_database_fails_with_its_reason_logged(
    job: XlsxJob, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    missing = XlsxJob(
        db_path=tmp_path / "nothing.db", where=job.where, tz=job.tz, tmpdir=job.tmpdir
    )
    with (
        tempfile.TemporaryFile(dir=tmp_path) as out,
        pytest.raises(ExportWorkerError, match=r"exit status 1"),
    ):
        build_xlsx_in_child(missing, out)
    assert "the Excel export failed: no database at" in capfd.readouterr().err


def test_the_worker_stops_when_its_parent_closes_the_pipe(tmp_path: Path) -> None:
    """However the web ends, its end of the worker's stdin closes: the worker stops
    at once instead of finishing a workbook nobody will read."""
    db = tmp_path / "big.db"
    fill_log(db, 20_000)  # a second or more of work; the pipe's end is seen at once
    with tempfile.TemporaryFile(dir=tmp_path) as out:
        job = XlsxJob(db_path=db, where=EventFilter(), tz=HCM, tmpdir=tmp_path)
        message = job.message(out_fd=out.fileno(), parent_pid=os.getpid(), nice=0, log_level=30)
        child = subprocess.Popen(
            [sys.executable, "-P", "-m", WORKER_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(out.fileno(),),
        )
        stdout, _ = child.communicate(message)  # writes the job, then closes stdin
        assert child.returncode == EXIT_PARENT_GONE
        assert stdout == b""
        assert os.fstat(out.fileno()).st_size == 0  # no workbook was written


def test_a_worker_whose_parent_is_already_gone_does_nothing(job: XlsxJob, tmp_path: Path) -> None:
    with tempfile.TemporaryFile(dir=tmp_path) as out:
        no_such_pid = int(Path("/proc/sys/kernel/pid_max").read_text())  # pids are below it
        message = job.message(out_fd=out.fileno(), parent_pid=no_such_pid, nice=0, log_level=30)
        child = subprocess.Popen(
            [sys.executable, "-P", "-m", WORKER_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(out.fileno(),),
        )
        assert child.stdin is not None
        child.stdin.write(message)
        child.stdin.flush()
        assert child.wait() == EXIT_PARENT_GONE
        child.stdin.close()
        assert child.stdout is not None
        assert child.stdout.read() == b""
        child.stdout.close()
        assert os.fstat(out.fileno()).st_size == 0


def test_the_worker_asks_the_kernel_to_kill_it_with_its_parent() -> None:
    script = (
        "import ctypes, os\n"
        "from kiosk.export_worker import _die_with_parent\n"
        "_die_with_parent(os.getppid())\n"
        "signal = ctypes.c_int(-1)\n"
        "ctypes.CDLL(None).prctl(2, ctypes.byref(signal), 0, 0, 0)  # PR_GET_PDEATHSIG\n"
        "print(signal.value)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True)
    assert int(done.stdout) == 9  # SIGKILL


def test_a_filter_crosses_to_the_worker_whole() -> None:
    where = EventFilter(
        start=datetime(2026, 1, 5, 17, tzinfo=UTC),
        end=datetime(2026, 1, 6, 17, tzinfo=UTC),
        direction="in",
        decision="deny",
        reason="denylisted",
        kind="cccd",
        text="Nguyễn",
        clock_synced=False,
        gate_id="gate-2",
    )
    # Every field set: a new field that JSON cannot carry would fail here.
    assert all(getattr(where, name) is not None for name in EventFilter.__dataclass_fields__)
    assert filter_from_json(json.loads(json.dumps(filter_to_json(where)))) == where
    assert filter_from_json(filter_to_json(EventFilter())) == EventFilter()


def test_the_time_zone_key_reaches_the_worker(job: XlsxJob) -> None:
    message = json.loads(job.message(out_fd=5, parent_pid=7, nice=10, log_level=30))
    assert message["tz"] == "Asia/Ho_Chi_Minh"
    assert message["nice"] == 10


def test_updating_an_audit_row_that_does_not_exist_fails(web_store: Store) -> None:
    with pytest.raises(StoreError, match="no entry 99"):
        web_store.update_audit(99, detail={"format": "csv", "complete": True}, row_count=1)


def test_exports_follow_the_interface_language(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    fill(web_store, clock, 2)
    manager.environ_base["HTTP_ACCEPT_LANGUAGE"] = "vi"
    response = manager.get("/export.csv")
    body = response.get_data()
    response.close()
    assert body == b"".join(iter_csv(web_store.iter_events(EventFilter()), tz=HCM, lang="vi"))
    assert body.decode("utf-8-sig").startswith('"Giờ địa phương (')
    workbook = manager.get("/export.xlsx")
    book = openpyxl.load_workbook(io.BytesIO(workbook.get_data()), read_only=True)
    workbook.close()
    header = next(book["Events"].iter_rows(max_row=1, values_only=True))
    assert header[-2:] == ("Người cho vào", "Ghi chú của bảo vệ")
