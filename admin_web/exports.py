"""Exports of the log for managers, as CSV (streamed) or Excel, every one audited.

The web exports take the log page's filter (see :mod:`admin_web.forms`), so
a download holds exactly what the page listed. :func:`export_to_file` is the
same export for the command line.

Each export leaves one audit row: the actor, action ``"export"``, the filter
(:meth:`EventFilter.as_dict`) with ``format`` and ``complete``, and the number
of rows that left. A streamed CSV is audited when the stream ends; if the
client goes away midway, the row still is written, with ``complete: false``
and the rows handed to the server so far (the rows of the last chunk handed
over are counted even if the connection dropped during it: the count errs
towards more data having left, never fewer).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    redirect,
    request,
    send_file,
    stream_with_context,
    url_for,
)

from admin_web.auth import current_user, login_required
from admin_web.context import gk
from admin_web.forms import parse_filter
from kiosk.export import iter_csv, write_csv, write_xlsx
from kiosk.store import Event, EventFilter, Store
from kiosk.tempfiles import AtomicOutput

bp = Blueprint("exports", __name__)

FORMATS = ("csv", "xlsx")
XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class CountingEvents:
    """An iterable of events that counts how many have been taken from it."""

    def __init__(self, events: Iterable[Event]) -> None:
        self._events = events
        self.rows = 0

    def __iter__(self) -> Iterator[Event]:
        for event in self._events:
            self.rows += 1
            yield event


def audit_detail(where: EventFilter, *, fmt: str, complete: bool) -> dict[str, Any]:
    return {**where.as_dict(), "format": fmt, "complete": complete}


def export_to_file(
    store: Store,
    where: EventFilter,
    *,
    fmt: str,
    path: str | os.PathLike[str],
    tz: ZoneInfo,
    actor: str,
    at: datetime,
) -> int:
    """Write the events matching ``where`` to ``path`` as ``fmt`` ("csv" or "xlsx"),
    audit it, and return the number of rows written.

    Atomic, even when the process is killed: the export is written to an
    unnamed file in the same folder (and the XLSX writer's own temporary
    file is unnamed too), flushed to disk, and only then linked in at
    ``path`` (:class:`~kiosk.tempfiles.AtomicOutput`). An error, a crash or
    a SIGKILL at any moment leaves either the old file or the complete new
    one, and no temporary file. The file is readable by its owner only, as
    it holds personal data. ``actor`` names who asked, e.g. ``"cli:root"``;
    ``at`` is the audit time.

    Example::

        rows = export_to_file(store, EventFilter(start=start, end=end), fmt="xlsx",
                              path="log.xlsx", tz=settings.timezone,
                              actor="cli:root", at=clock.now())
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    target = Path(path)
    with AtomicOutput(target) as output:
        rows = _write(store.iter_events(where), output.file, fmt=fmt, tz=tz, tmpdir=target.parent)
        output.commit()
    store.audit(
        actor=actor,
        action="export",
        detail=audit_detail(where, fmt=fmt, complete=True),
        at=at,
        row_count=rows,
    )
    return rows


def _write(events: Iterable[Event], out: IO[bytes], *, fmt: str, tz: ZoneInfo, tmpdir: Path) -> int:
    if fmt == "csv":
        return write_csv(events, out, tz=tz)
    return write_xlsx(events, out, tz=tz, tmpdir=tmpdir)


def audited_stream(
    chunks: Iterable[bytes], counter: CountingEvents, finish: Callable[[int, bool], None]
) -> Iterator[bytes]:
    """``chunks`` passed through; ``finish(rows, complete)`` once they end or are abandoned.

    ``rows`` counts the events in the chunks handed out so far: the chunks
    are produced from ``counter`` one event at a time, so when a chunk is
    handed out, every event taken from ``counter`` is in it or in an earlier one.
    """
    rows = 0
    complete = False
    try:
        for chunk in chunks:
            rows = counter.rows
            yield chunk
        rows = counter.rows
        complete = True
    finally:
        finish(rows, complete)


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


@bp.get("/export.csv", endpoint="csv")
@login_required("manager")
def export_csv() -> Any:
    context = gk()
    parsed = parse_filter(request.args, context.tz)
    if parsed.problems:
        # Never export more than was asked for: show the log with the problems instead.
        return redirect(_log_page())
    store, clock, where, actor = context.store, context.clock, parsed.where, _actor()

    def finish(rows: int, complete: bool) -> None:
        store.audit(
            actor=actor,
            action="export",
            detail=audit_detail(where, fmt="csv", complete=complete),
            at=clock.now(),
            row_count=rows,
        )

    counter = CountingEvents(store.iter_events(where))
    body = audited_stream(iter_csv(counter, tz=context.tz), counter, finish)
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
    # The workbook is built in an unnamed file on the data disk (a Pi's /tmp is
    # RAM; O_TMPFILE on Linux), as is the XLSX writer's own temporary file: the
    # open file is what is sent, and nothing is left behind whether the download
    # completes or not, even if the process is killed while building it.
    folder = context.settings.data_dir
    sent = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115 - closed by the response
    try:
        rows = write_xlsx(
            context.store.iter_events(parsed.where), sent, tz=context.tz, tmpdir=folder
        )
        size = sent.tell()
        sent.seek(0)
    except BaseException:
        sent.close()
        raise
    context.store.audit(
        actor=_actor(),
        action="export",
        detail=audit_detail(parsed.where, fmt="xlsx", complete=True),
        at=context.clock.now(),
        row_count=rows,
    )
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
