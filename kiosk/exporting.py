"""Exporting the log to a file, audited: the use case behind ``gatekiosk export``.

Below the web and the CLI: the command line calls :func:`export_to_file`,
and the admin web's downloads (:mod:`admin_web.exports`) describe their
audit rows with the same :func:`audit_detail`, so an export reads the same
in the audit log whoever made it.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from kiosk.export import write_store_csv
from kiosk.store import EventFilter, Store
from kiosk.tempfiles import AtomicOutput

FORMATS = ("csv", "xlsx")


def audit_detail(where: EventFilter, *, fmt: str, complete: bool) -> dict[str, Any]:
    """An export's audit detail: the filter (:meth:`EventFilter.as_dict`), the
    format, and whether every row left."""
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
    lang: str = "vi",
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
    ``at`` is the audit time. Headers and coded cells are in ``lang``
    ("vi" or "en", see :mod:`kiosk.export.labels`).

    Example::

        rows = export_to_file(store, EventFilter(start=start, end=end), fmt="xlsx",
                              path="log.xlsx", tz=settings.timezone,
                              actor="cli:root", at=clock.now())
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    target = Path(path)
    with AtomicOutput(target) as output:
        if fmt == "csv":
            rows = write_store_csv(store, where, output.file, tz=tz, lang=lang)
        else:
            from kiosk.export.xlsx import write_xlsx

            rows = write_xlsx(
                store.iter_events(where), output.file, tz=tz, tmpdir=target.parent, lang=lang
            )
        output.commit()
    store.audit(
        actor=actor,
        action="export",
        detail=audit_detail(where, fmt=fmt, complete=True),
        at=at,
        row_count=rows,
    )
    return rows
