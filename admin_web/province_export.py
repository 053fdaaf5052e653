"""A site's entries in a time window, exported for the authority, every request audited.

A manager picks the site, the window and the format, and must give a
reason. The request is checked first: no reason (or one over
:data:`MAX_REASON_CHARS`), a start not before the end, a window longer than
``province_web.export_max_days`` (or the database's own limit,
``province.export_policy``), or an unknown site each get a message in
Vietnamese and English, and nothing is read or recorded. The database then
checks it again and records it (``province.open_window``: the web's user
name, its own login, ``export-window``, the site, the reason, the window and
format), committed before the first row is read; the web's login cannot read
an event any other way (``schema.sql``). Then the rows of exactly that
request leave (``province.window_rows``): CSV streamed from a server-side
cursor, Excel built into an unnamed temporary file and sent.
"""

from __future__ import annotations

import itertools
import logging
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, render_template, request, send_file
from flask_babel import get_locale

from admin_web.auth import current_user, login_required
from admin_web.context import gk
from admin_web.forms import MAX_YEAR, MIN_YEAR
from admin_web.province import province_web, reader
from kiosk.province import dashboard
from kiosk.province.dashboard import SiteInfo, WindowRefused, WindowRequest
from kiosk.province.window_export import iter_window_csv, write_window_xlsx

log = logging.getLogger(__name__)

bp = Blueprint("province_export", __name__)

EXPORT_ACTION = "export-window"
"""The audit row's action for a window export (``province.open_window`` writes it)."""

MAX_REASON_CHARS = 500

FORMATS = ("csv", "xlsx")

XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

NO_REASON = "Phải ghi lý do yêu cầu. / A reason is required."
LONG_REASON = (
    f"Lý do dài quá {MAX_REASON_CHARS} ký tự. / "
    f"The reason is longer than {MAX_REASON_CHARS} characters."
)
UNKNOWN_SITE = "Không có khu này. / There is no such site."
BAD_FROM = (
    "Không hiểu thời điểm bắt đầu (dd/mm/yyyy HH:MM). / "
    "The start was not understood (dd/mm/yyyy HH:MM)."
)
BAD_TO = (
    "Không hiểu thời điểm kết thúc (dd/mm/yyyy HH:MM). / "
    "The end was not understood (dd/mm/yyyy HH:MM)."
)
FROM_AFTER_TO = (
    "Thời điểm bắt đầu phải trước thời điểm kết thúc. / The start must be before the end."
)
BAD_FORMAT = "Định dạng phải là CSV hoặc Excel. / The format must be CSV or Excel."


def too_long(max_days: int) -> str:
    return f"Khoảng thời gian dài quá {max_days} ngày. / The window is longer than {max_days} days."


_INPUT_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%d/%m/%Y %H:%M")


def parse_time(text: str, tz: ZoneInfo) -> datetime | None:
    """A local time typed or picked (``datetime-local``'s ``2026-12-07T09:00``
    or ``07/12/2026 09:00``) read in ``tz``, as aware UTC; None if neither."""
    for fmt in _INPUT_FORMATS:
        try:
            naive = datetime.strptime(text.strip(), fmt)  # noqa: DTZ007 - zone attached below
        except ValueError:
            continue
        if MIN_YEAR <= naive.year <= MAX_YEAR:
            return naive.replace(tzinfo=tz).astimezone(UTC)
    return None


def check_request(
    form: Mapping[str, str], *, tz: ZoneInfo, site_ids: set[str], max_days: int, actor: str
) -> WindowRequest | list[str]:
    """The request in ``form`` by ``actor``, or what is wrong with it
    (bilingual, in order). ``start`` to ``end`` is exclusive, in UTC."""
    problems: list[str] = []
    site_id = (form.get("site") or "").strip()
    if site_id not in site_ids:
        problems.append(UNKNOWN_SITE)
    start = parse_time(form.get("from") or "", tz)
    if start is None:
        problems.append(BAD_FROM)
    end = parse_time(form.get("to") or "", tz)
    if end is None:
        problems.append(BAD_TO)
    if start is not None and end is not None:
        if start >= end:
            problems.append(FROM_AFTER_TO)
        elif end - start > timedelta(days=max_days):
            problems.append(too_long(max_days))
    reason = (form.get("reason") or "").strip()
    if not reason:
        problems.append(NO_REASON)
    elif len(reason) > MAX_REASON_CHARS:
        problems.append(LONG_REASON)
    fmt = (form.get("format") or "csv").strip()
    if fmt not in FORMATS:
        problems.append(BAD_FORMAT)
    if problems:
        return problems
    assert start is not None
    assert end is not None
    return WindowRequest(actor, reason, site_id, start, end, fmt, tz.key)


def _sites() -> tuple[SiteInfo, ...]:
    return dashboard.all_sites(reader())


def _max_days() -> int:
    """The web's limit, or the database's if that is stricter."""
    return min(province_web().export_max_days, dashboard.window_max_days(reader()))


def _form_page(problems: list[str], values: Mapping[str, str], status: int = 200) -> Any:
    page = render_template(
        "province_export.html",
        sites=_sites(),
        problems=problems,
        values=values,
        max_days=_max_days(),
        max_reason=MAX_REASON_CHARS,
    )
    return page, status


@bp.get("/export", endpoint="form")
@login_required("manager")
def export_form() -> Any:
    values = {"site": request.args.get("site", "")}
    return _form_page([], values)


def _filename(wanted: WindowRequest, tz: ZoneInfo) -> str:
    start = wanted.start.astimezone(tz).strftime("%Y%m%d-%H%M")
    end = wanted.end.astimezone(tz).strftime("%Y%m%d-%H%M")
    return f"province-{wanted.site_id}-{start}-{end}.{wanted.fmt}"


def _problem_page(problems: list[str]) -> Any:
    values = {
        key: request.form.get(key, "")[: MAX_REASON_CHARS * 2]
        for key in ("site", "from", "to", "reason", "format")
    }
    return _form_page(problems, values, 400)


@bp.post("/export", endpoint="download")
@login_required("manager")
def export_download() -> Any:
    context = gk()
    tz = context.tz
    user = current_user()
    assert user is not None  # login_required
    sites = {site.site_id for site in _sites()}
    checked = check_request(
        request.form, tz=tz, site_ids=sites, max_days=_max_days(), actor=user.name
    )
    if isinstance(checked, list):
        return _problem_page(checked)
    lang = str(get_locale())
    # Its own connection: a streamed CSV outlives the request's.
    conn = province_web().connect()
    try:
        audit_id = dashboard.open_window(conn, checked)
        log.info("window export %d of %s by %s", audit_id, checked.site_id, user.name)
        events = dashboard.iter_window(conn, audit_id)
        # The first row read here: a refusal is a page, not a broken download.
        first = next(events, None)
        events = itertools.chain([] if first is None else [first], events)
        if checked.fmt == "xlsx":
            return _xlsx(events, checked, tz, lang, conn)
    except WindowRefused as refused:
        conn.close()
        return _problem_page([str(refused)])
    except BaseException:
        conn.close()
        raise

    def body() -> Iterator[bytes]:
        try:
            yield from iter_window_csv(events, tz=tz, lang=lang)
        finally:
            conn.close()

    response = Response(body(), mimetype="text/csv")
    response.call_on_close(conn.close)  # also when the body was never started
    response.headers["Content-Disposition"] = f'attachment; filename="{_filename(checked, tz)}"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _xlsx(
    events: Iterator[dashboard.WindowEvent],
    wanted: WindowRequest,
    tz: ZoneInfo,
    lang: str,
    conn: Any,
) -> Response:
    """The workbook, built into an unnamed file on the data disk, then sent."""
    sent = tempfile.TemporaryFile(dir=gk().settings.data_dir)  # noqa: SIM115 - the response closes it
    try:
        write_window_xlsx(events, sent, tz=tz, lang=lang)
        conn.close()
        size = sent.tell()
        sent.seek(0)
    except BaseException:
        sent.close()
        raise
    response = send_file(
        sent,
        mimetype=XLSX_MIMETYPE,
        as_attachment=True,
        download_name=_filename(wanted, tz),
        max_age=0,
    )
    response.content_length = size
    response.headers["Cache-Control"] = "no-store"
    return response
