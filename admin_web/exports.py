"""Exports of the log for managers, as CSV (streamed) or Excel, every one audited.

The web exports take the log page's filter (see :mod:`admin_web.forms`), so
a download holds exactly what the page listed. The same export to a file, for
the command line, is :func:`kiosk.exporting.export_to_file`.

Each export leaves one audit row: the actor, action ``"export"``, the filter
(:meth:`EventFilter.as_dict`) with ``format`` and ``complete``, and the number
of rows that left. A web export is audited when it starts, before any row
leaves (``complete: false``, 0 rows), and that row is updated as it goes, so
that even a web process killed midway (SIGKILL, power cut) leaves a trace:

* CSV, streamed: about every :data:`AUDIT_PROGRESS_S` seconds, and when the
  stream ends (``complete: true``) or is abandoned (the client went away;
  still ``complete: false``), the row count becomes the rows in the chunks
  handed to the server so far, the chunk about to be handed over included
  (the count errs towards more data having left, never fewer). A process
  killed midway leaves the count of its last update: what the chunks handed
  to the server by then held, give or take one chunk, with up to
  :data:`AUDIT_PROGRESS_S` seconds' more rows after it.
* XLSX: when the workbook is built, just before it is sent, ``complete:
  true`` with its rows; if it could not be built, it stays ``complete: false``
  with 0 rows. A workbook is one file: a cut-off download is useless, and the
  ``Content-Length`` header lets the client tell.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Generator, Iterable
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    abort,
    redirect,
    request,
    send_file,
    stream_with_context,
    url_for,
)
from flask_babel import get_locale

from admin_web.auth import current_user, login_required
from admin_web.context import gk
from admin_web.forms import parse_filter
from kiosk.export import iter_store_csv_counted
from kiosk.export_worker import ExportWorkerError, XlsxJob, build_xlsx_in_child
from kiosk.exporting import audit_detail
from kiosk.store import EventFilter

log = logging.getLogger(__name__)

bp = Blueprint("exports", __name__)

XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

AUDIT_PROGRESS_S = 1.0
"""A streamed CSV's audit row is brought up to date when a chunk is handed out
this long (monotonic seconds) after the last update: one small write a second
at most (beside the kiosk's events), and what a process killed midway leaves
is at most this far behind."""

# The page of an Excel export that could not be built, in both languages: the
# reason is in the web's log, not for the browser.
_XLSX_FAILED = (
    "Không tạo được tệp Excel; lý do có trong nhật ký của web. "
    "The Excel file could not be built; the web's log says why."
)


def audited_stream(
    chunks: Iterable[tuple[bytes, int]],
    record: Callable[[int, bool], None],
    *,
    monotonic: Callable[[], float],
    every_s: float | None = None,
) -> Generator[bytes, None, None]:
    """The chunks of ``chunks``, each given with the number of rows in it and
    before it (:data:`kiosk.export.CountedChunks`), passed through.

    ``record(rows, complete)`` brings the audit up to date: before a chunk is
    handed out ``every_s`` seconds (default :data:`AUDIT_PROGRESS_S`) or more
    after the chunks were started or last recorded (times from ``monotonic``), and
    once when the chunks end (``complete`` True) or are abandoned: the consumer
    closed them, or reading them failed (False). ``rows`` always counts the
    chunk being handed out, whether or not it got through. Chunks never
    started record nothing.
    """
    every = AUDIT_PROGRESS_S if every_s is None else every_s
    rows = 0
    complete = False
    last = monotonic()
    try:
        for chunk, rows in chunks:  # the last count is kept for the finally
            if monotonic() - last >= every:
                record(rows, False)
                last = monotonic()
            yield chunk
        complete = True
    finally:
        record(rows, complete)


def _log_page() -> str:
    """The log page with this request's filter, to show what is wrong with it."""
    return f"{url_for('log.index')}?{urlencode(list(request.args.items(multi=True)))}"


def _filename(fmt: str) -> str:
    context = gk()
    today = context.clock.now().astimezone(context.tz).date().isoformat()
    return f"gatekiosk-{today}.{fmt}"


def _actor() -> str:
    user = current_user()
    assert user is not None  # login_required
    return user.name


def _audit_start(where: EventFilter, fmt: str) -> int:
    """Audit an export before any row of it leaves; the audit row's id."""
    context = gk()
    return context.store.audit(
        actor=_actor(),
        action="export",
        detail=audit_detail(where, fmt=fmt, complete=False),
        at=context.clock.now(),
        row_count=0,
    )


@bp.get("/export.csv", endpoint="csv")
@login_required("manager")
def export_csv() -> Any:
    context = gk()
    parsed = parse_filter(request.args, context.tz)
    if parsed.problems:
        # Never export more than was asked for: show the log with the problems instead.
        return redirect(_log_page())
    store, where = context.store, parsed.where
    audit_id = _audit_start(where, "csv")

    def record(rows: int, complete: bool) -> None:
        store.update_audit(
            audit_id, detail=audit_detail(where, fmt="csv", complete=complete), row_count=rows
        )

    # Straight from the store: SQLite formats the lines. The bytes are those of
    # kiosk.export.iter_csv over Events, three times faster (1M rows: 15 s, now 5 s;
    # bench/web_export_bench.py).
    chunks = iter_store_csv_counted(store, where, tz=context.tz, lang=str(get_locale()))
    body = audited_stream(chunks, record, monotonic=context.clock.monotonic)
    response = Response(stream_with_context(body), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{_filename("csv")}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/export.xlsx", endpoint="xlsx")
@login_required("manager")
def export_xlsx() -> Any:
    context = gk()
    parsed = parse_filter(request.args, context.tz)
    if parsed.problems:
        return redirect(_log_page())
    store, where = context.store, parsed.where
    audit_id = _audit_start(where, "xlsx")
    # The workbook is built by a child process (kiosk.export_worker: two minutes
    # of Python for a million events, which here would stall every other page)
    # into an unnamed file on the data disk (a Pi's /tmp is RAM; O_TMPFILE on
    # Linux) that this process opened, as is the XLSX writer's own temporary
    # file: the open file is what is sent, and nothing is left behind whether
    # the download completes or not, even if either process is killed.
    folder = context.settings.data_dir
    sent = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115 - closed by the response
    try:
        job = XlsxJob(
            db_path=store.path, where=where, tz=context.tz, tmpdir=folder, lang=str(get_locale())
        )
        try:
            rows = build_xlsx_in_child(job, sent)
        except ExportWorkerError as exc:
            log.error("an Excel export failed: %s", exc)  # its audit row stays incomplete
            abort(500, description=_XLSX_FAILED)
        size = os.fstat(sent.fileno()).st_size
        sent.seek(0)
        store.update_audit(
            audit_id, detail=audit_detail(where, fmt="xlsx", complete=True), row_count=rows
        )
    except BaseException:
        sent.close()
        raise
    response = send_file(
        sent,
        mimetype=XLSX_MIMETYPE,
        as_attachment=True,
        download_name=_filename("xlsx"),
        max_age=0,
    )
    response.content_length = size  # so that a client can tell a cut-off download
    response.headers["Cache-Control"] = "no-store"
    return response
