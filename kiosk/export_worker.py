"""Build an Excel export in a process of its own, for the admin web.

A workbook of a million events is about two minutes of pure-Python work
(xlsxwriter). Done in the web process, it held the GIL all that time and every
other page waited behind it: the dashboards' live polls went from a p99 of
0.6 s to about 6 s (``bench/report-load.md``). So the web runs
:func:`build_xlsx_in_child`, which starts this module as a child process at a
lower CPU priority (:data:`WORKER_NICE`) and waits for it; a thread waiting
on a pipe holds no GIL.

The protocol, parent to child:

* the parent opens the output file and passes its descriptor (``pass_fds``);
  the web opens it unnamed in the data folder, so nothing is named on disk,
  and the worker's own temporary file is unnamed too
  (:class:`~kiosk.export.workbook.UnnamedTempWorkbook`): a kill of either process
  at any moment leaves nothing behind;
* one JSON line on the child's stdin says what to export
  (:meth:`XlsxJob.message`): the database, the filter, the time zone, the
  folder for the temporary file. On stdin, not in the arguments, because a
  filter can hold a searched name, and arguments are public in ``ps``;
* the child writes the workbook with :func:`kiosk.export.write_xlsx` from
  :meth:`Store.iter_events <kiosk.store.Store.iter_events>` (a read-only
  connection of its own, one snapshot), then one JSON line on stdout,
  ``{"rows": N}``, and exits 0. Any failure: the reason on stderr (the web's
  log, which the child shares) and a non-zero exit status.

The child never outlives the web: the parent keeps the child's stdin open
while it waits, and the child exits at once (status
:data:`EXIT_PARENT_GONE`) when it closes, however the parent ended. On Linux
``PR_SET_PDEATHSIG`` also has the kernel SIGKILL the child when the thread
that started it ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from kiosk.errors import GateError
from kiosk.store import EventFilter

log = logging.getLogger(__name__)

WORKER_MODULE = "kiosk.export_worker"

WORKER_NICE = 10
"""How much lower the worker's CPU priority is than the web's (``nice``): the
gate and the pages come first; the export takes what is left."""

EXIT_PARENT_GONE = 3
"""The worker's exit status when its parent went away before it finished."""

# The reply is one short JSON line; more is a broken worker.
_MAX_REPLY_BYTES = 4096

# prctl(2) option: a signal for this process when its parent (thread) ends.
_PR_SET_PDEATHSIG = 1

_STDIN_FD = 0

# The fields of EventFilter that are datetimes (sent as ISO 8601 text).
_DATETIME_FIELDS = frozenset({"start", "end"})


class ExportWorkerError(GateError):
    """The export's worker process did not produce the file (see the web's log)."""


def filter_to_json(where: EventFilter) -> dict[str, Any]:
    """``where`` as JSON values (datetimes as ISO 8601 text); :func:`filter_from_json` undoes it."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(where):
        value = getattr(where, field.name)
        if value is not None:
            out[field.name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def filter_from_json(data: dict[str, Any]) -> EventFilter:
    """The filter :func:`filter_to_json` gave ``data`` for; unknown fields raise TypeError."""
    values: dict[str, Any] = {
        name: datetime.fromisoformat(value) if name in _DATETIME_FIELDS else value
        for name, value in data.items()
    }
    return EventFilter(**values)


@dataclass(frozen=True)
class XlsxJob:
    """What the worker exports: the events ``where`` selects from the database at
    ``db_path``, local times in ``tz``, its temporary file in ``tmpdir``."""

    db_path: Path
    where: EventFilter
    tz: ZoneInfo
    tmpdir: Path
    lang: str = "en"

    def message(self, *, out_fd: int, parent_pid: int, nice: int, log_level: int) -> bytes:
        """The JSON line the worker reads on stdin."""
        if not self.tz.key:
            raise ValueError("the time zone must have a name to be passed to the worker")
        message = {
            "db_path": str(self.db_path),
            "where": filter_to_json(self.where),
            "tz": self.tz.key,
            "tmpdir": str(self.tmpdir),
            "lang": self.lang,
            "out_fd": out_fd,
            "parent_pid": parent_pid,
            "nice": nice,
            "log_level": log_level,
        }
        return json.dumps(message, ensure_ascii=False).encode("utf-8") + b"\n"


def build_xlsx_in_child(job: XlsxJob, out: IO[bytes], *, nice: int = WORKER_NICE) -> int:
    """Write the workbook of ``job`` into ``out`` from a child process; the rows in it.

    ``out`` must be a real file open for reading and writing, at its start;
    afterwards its position is unspecified (seek before reading it). Blocks
    until the child ends, without holding the GIL. The child runs ``nice``
    steps lower in CPU priority. Raises :class:`ExportWorkerError` if it
    fails (its reason is in the log); ``out`` then holds an incomplete file.

    Example::

        with tempfile.TemporaryFile(dir=data_dir) as out:
            rows = build_xlsx_in_child(XlsxJob(db, EventFilter(), tz, data_dir), out)
            out.seek(0)
    """
    out.flush()
    out_fd = out.fileno()
    message = job.message(
        out_fd=out_fd,
        parent_pid=os.getpid(),
        nice=nice,
        log_level=logging.getLogger().getEffectiveLevel(),
    )
    # -P: the worker imports this installation's modules, never a same-named file
    # in the web's working folder.
    argv = [sys.executable, "-P", "-m", WORKER_MODULE]
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(out_fd,)
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        # A worker that failed at once closed its end: its exit status says why.
        with contextlib.suppress(BrokenPipeError):
            child.stdin.write(message)
            child.stdin.flush()
        reply = child.stdout.read(_MAX_REPLY_BYTES)  # until the child ends
        status = child.wait()
    finally:
        if child.poll() is None:  # this thread was interrupted: the worker goes too
            child.kill()
            child.wait()
        child.stdout.close()
        with contextlib.suppress(BrokenPipeError):
            child.stdin.close()  # only now: closing it tells the worker to stop
    if status != 0:
        how = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
        raise ExportWorkerError(f"the export's worker process failed ({how})")
    try:
        rows = json.loads(reply)["rows"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportWorkerError("the export's worker process gave no row count") from exc
    if not isinstance(rows, int) or rows < 0:
        raise ExportWorkerError("the export's worker process gave no row count")
    return rows


# --------------------------------------------------------------------------- the child


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent ends (Linux), and
    exit now if the parent already has (its death came before the request)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != parent_pid:
        os._exit(EXIT_PARENT_GONE)


def _read_line(fd: int) -> bytes:
    """One line from ``fd``, read a byte at a time so that nothing after it is
    taken (the rest of the pipe is watched for its end); short at end of file."""
    line = bytearray()
    while not line.endswith(b"\n") and (byte := os.read(fd, 1)):
        line += byte
    return bytes(line)


def _exit_when_stdin_closes() -> None:
    """A daemon thread that ends the process once the parent closes our stdin
    (it does so only when it stops waiting for us, or dies)."""

    def watch() -> None:
        # os.read, not sys.stdin: a daemon thread blocked in a buffered read
        # would abort the interpreter's shutdown at the end.
        while os.read(_STDIN_FD, 1):
            pass
        os._exit(EXIT_PARENT_GONE)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_job(message: dict[str, Any]) -> int:
    """Write the workbook a job message (:meth:`XlsxJob.message`, parsed) asks for;
    the rows written. What the worker does once it has its job, callable in
    any process; it closes ``out_fd``."""
    from kiosk.export import write_xlsx
    from kiosk.store import Store

    where = filter_from_json(message["where"])
    tz = ZoneInfo(message["tz"])
    with os.fdopen(message["out_fd"], "r+b") as out:
        with Store.open(message["db_path"], read_only=True) as store:
            rows = write_xlsx(
                store.iter_events(where),
                out,
                tz=tz,
                tmpdir=message["tmpdir"],
                lang=message.get("lang", "en"),
            )
        out.flush()
    return rows


def main() -> int:
    """The worker: read the job on stdin, build the workbook, say its rows on stdout."""
    line = _read_line(_STDIN_FD)
    if not line.endswith(b"\n"):
        return EXIT_PARENT_GONE  # the parent went away before saying what to do
    message = json.loads(line)
    logging.basicConfig(  # as the web's (kiosk.cli), into the same stderr
        level=int(message.get("log_level", logging.WARNING)),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _die_with_parent(int(message["parent_pid"]))
    _exit_when_stdin_closes()
    os.nice(int(message["nice"]))
    try:
        rows = run_job(message)
    except GateError as exc:  # a store error: said in the web's log, no traceback
        log.error("the Excel export failed: %s", exc)
        return 1
    sys.stdout.write(json.dumps({"rows": rows}) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
