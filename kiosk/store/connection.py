"""The one connection to the database file: opening, pragmas, transactions, errors.

One SQLite file, in WAL mode, is shared by two processes: the kiosk (writes
events, presence and its health) and the admin web (denylist, settings, and
reads). Every repository of :mod:`kiosk.store` reads and writes through one
:class:`Connection` per process; nothing else in gatekiosk runs SQL on it.

Durability is the point. The gate admits nobody without a durable row, so a
write commits with ``synchronous=FULL`` (an fsync of the WAL) before it
returns. Anything SQLite refuses (locked past the busy timeout, disk full,
read-only file) becomes a :class:`~kiosk.errors.StoreError` that says the
cause in plain words, with the transaction rolled back, so the scanner can
fail secure.

Two kinds of connection satisfy :class:`Connection`: :class:`OpenConnection`
(opened at once, or StoreError) and :class:`LazyConnection` (the kiosk's: it
starts even when the file cannot be opened, and keeps trying).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from kiosk.datadir import create_private_file
from kiosk.errors import StoreError
from kiosk.store.values import search_fold

log = logging.getLogger(__name__)

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")

BUSY_TIMEOUT_MS = 5000
"""How long a write waits for the other process's write lock, by default: the
admin web and the CLI, where a person waits for a page or a command and a
slow save is better than a failed one."""

CHECK_MIN_FREE_BYTES = 256 * 1024
"""Below this much free space, :meth:`Store.check_writable` reports a full
disk: a few hundred events' worth, so a gate that comes back from a full disk
does not fall straight back into it."""

KIOSK_BUSY_TIMEOUT_MS = 1000
"""How long the kiosk waits for the write lock before it refuses with a store
fault. Every write by the web or a CLI command holds the lock for tens of
milliseconds (one fsync on an SD card), so 1 s absorbs them all; a lock held
longer is a fault the gate should show, not wait out. The wait blocks the scan
loop (and the guard's override, which shares its lock): at 1 s a visitor has
an answer and the guard an open door within about a second, and one loop step
(the store probe, the decision, the health row: up to three waits) stays well
inside the service's 10 s watchdog. Measured under a long lock
(``python -m bench.storage_faults``): the longest step took 3.2 s at 1 s and
20 s at 5 s, which the watchdog would end with a restart."""

OPEN_RETRY_S = 1.0
"""While the database cannot be opened, how long (seconds) a
:class:`LazyConnection` waits after one try before it tries again; calls in
between fail at once with the last cause, without touching the file."""

Migrate = Callable[[sqlite3.Connection], None]
"""Brings a freshly opened file's schema up to date (see :mod:`kiosk.store.migrations`)."""


class Connection(Protocol):
    """What a repository needs of the database: one query, one write transaction."""

    @property
    def path(self) -> Path: ...

    @property
    def open_error(self) -> StoreError | None: ...

    @property
    def conn(self) -> sqlite3.Connection: ...

    def read(self, action: str, sql: str, params: tuple[Any, ...]) -> list[Any]: ...

    def write(self, action: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...

    def check_writable(self) -> None: ...

    def close(self) -> None: ...


class OpenConnection:
    """The shared connection to an opened, migrated database file. Open one per process.

    The connection runs in SQLite autocommit mode (``isolation_level=None``)
    and every write takes the write lock up front with ``BEGIN IMMEDIATE``, so
    a conflict with the other process shows up as a busy wait at the start of
    a transaction, never as a deadlock half-way through one.

    The connection is shared by threads (the scan loop and the health writer),
    so it is opened with ``check_same_thread=False`` and every call holds
    ``self._lock``: one statement or transaction at a time. A connection
    opened with ``concurrent_reads`` (the admin web, whose server runs
    requests on several threads) reads on one connection per thread instead,
    without the lock: WAL lets readers run beside each other and beside the
    writer, so a slow page no longer holds up every other request.
    """

    open_error: StoreError | None = None
    """Always None: an OpenConnection is open (see :class:`LazyConnection`)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        path: Path,
        busy_timeout_ms: int,
        concurrent_reads: bool,
        reopen_when_writable: bool,
    ) -> None:
        """Use :meth:`open`; this only wraps an already prepared connection."""
        self._path = path
        self._conn = conn
        self._lock = threading.RLock()
        self._closed = False
        self._reopen_when_writable = reopen_when_writable
        """SQLite opened the file read-only (it or its file system was): the
        first write after it is writable again reopens the connection."""
        self._concurrent_reads = concurrent_reads
        self._readers = threading.local()
        self.reader_conns: list[sqlite3.Connection] = []
        """The per-thread read connections opened so far (``concurrent_reads``)."""
        self._busy_timeout_ms = busy_timeout_ms

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        migrate: Migrate,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        read_only: bool = False,
        concurrent_reads: bool = False,
    ) -> OpenConnection:
        """Open (creating if needed) the database at ``path`` and ``migrate`` it.

        ``busy_timeout_ms`` is how long a write waits for the other process's
        lock before giving up with StoreError. ``read_only`` opens an existing
        database for reading only, without creating or migrating anything;
        every write raises StoreError. ``concurrent_reads`` gives each thread
        its own connection for reads (see the class docstring).
        """
        if read_only and not path.exists():
            raise StoreError(f"no database at {path}")
        try:
            if not read_only:  # folder 0700, file 0600 (SQLite gives -wal and -shm its mode)
                create_private_file(path)
        except OSError as exc:
            raise StoreError(f"cannot create the database directory: {exc.strerror}") from exc
        try:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro" if read_only else path,
                isolation_level=None,
                check_same_thread=False,
                timeout=busy_timeout_ms / 1000,
                uri=read_only,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database: {describe(exc, path)}") from exc
        try:
            add_functions(conn)
            if read_only:
                conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            else:
                _configure(conn, busy_timeout_ms=busy_timeout_ms)
                migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot prepare the database: {describe(exc, path)}") from exc
        except BaseException:
            conn.close()
            raise
        reopen_when_writable = not read_only and _read_only_file(path)
        if reopen_when_writable:
            # SQLite quietly opened it for reading (a database left in WAL mode
            # by a power cut opens so): reads work, every write fails until
            # the file is writable again, and then write() reopens it.
            log.error(
                "the database file or its file system is read-only: opened for reading "
                "only; every write fails until it is writable again"
            )
        return cls(
            conn,
            path=path,
            busy_timeout_ms=busy_timeout_ms,
            concurrent_reads=concurrent_reads,
            reopen_when_writable=reopen_when_writable,
        )

    @property
    def path(self) -> Path:
        return self._path

    @property
    def conn(self) -> sqlite3.Connection:
        """The shared connection itself, for benchmarks and tests that look at it."""
        return self._conn

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
                for reader in self.reader_conns:
                    reader.close()
                self.reader_conns.clear()

    def read(self, action: str, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """Run one query and fetch all rows; one statement is one consistent snapshot.

        ``action`` completes "could not ..." in the StoreError of a failure.
        """
        if self._concurrent_reads:
            with store_errors(action, self._path):
                return self._reader().execute(sql, params).fetchall()
        with self._lock, store_errors(action, self._path):
            return self._conn.execute(sql, params).fetchall()

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection, opened on first use (sqlite3.Error
        propagates, for store_errors to describe)."""
        conn: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        conn = sqlite3.connect(
            self._path,
            isolation_level=None,
            check_same_thread=False,  # so that close() may close it from any thread
            timeout=self._busy_timeout_ms / 1000,
        )
        try:
            conn.execute("PRAGMA query_only = ON")
            add_functions(conn)
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self.reader_conns.append(conn)
        self._readers.conn = conn
        return conn

    @contextlib.contextmanager
    def write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction: lock, BEGIN IMMEDIATE, COMMIT, or ROLLBACK on any error."""
        with self._lock, store_errors(action, self._path):
            if self._reopen_when_writable:
                self._reopen_for_writing()
            with immediate_transaction(self._conn):
                yield self._conn

    def _reopen_for_writing(self) -> None:
        """Replace the read-only connection SQLite gave at open with a
        read-write one once the file can be written, so the store works again
        without a restart (which would lose what the kiosk keeps waiting)."""
        if _read_only_file(self._path):
            return
        (timeout_ms,) = self._conn.execute("PRAGMA busy_timeout").fetchone()
        # Closed first: SQLite shares one mapping of the -shm file among a
        # process's connections, and the read-only one would be reused.
        self._conn.close()
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, timeout=timeout_ms / 1000
        )
        self._conn = conn
        add_functions(conn)
        _configure(conn, busy_timeout_ms=int(timeout_ms))  # if it fails, the next write retries
        self._reopen_when_writable = False
        log.info("the database file is writable again: reopened for writing")

    def check_writable(self) -> None:
        """Prove that the database takes a durable write now, or raise StoreError.

        The kiosk asks this while it shows a store fault, to clear the fault
        as soon as the database works again. A real page is rewritten and
        committed (the settings counter, to its own value: nothing changes and
        no kiosk reloads), so a lock, a full disk and a read-only file all
        fail it as they would fail an event. One page can still fit on a disk
        that has no room for an event (its table and index pages), so less
        than :data:`CHECK_MIN_FREE_BYTES` free counts as full too.
        """
        free = _free_bytes(self._path)
        if free is not None and free < CHECK_MIN_FREE_BYTES:
            raise StoreError(
                f"could not write to the database: disk full: {free // 1024} KiB free, "
                f"less than the {CHECK_MIN_FREE_BYTES // 1024} KiB the kiosk waits for"
            )
        with self.write("write to the database") as conn:
            conn.execute("UPDATE settings_meta SET version = version WHERE id = 1")


class LazyConnection:
    """The kiosk's connection, which exists even while the database cannot be opened.

    A kiosk that exits because its database will not open (the SD card's file
    system mounted read-only after a power cut, a disk too full to migrate, a
    lock held for long) is restarted by systemd in a loop, and its override
    button is dead all the while. This one keeps the cause instead: every
    call first tries ``opener`` again (at most every :data:`OPEN_RETRY_S`
    after the last try ended, on ``monotonic``, in seconds) and, while that
    fails, raises StoreError with the cause, so the scanner fails secure as
    for any store fault; once the open succeeds, every call goes to the
    opened connection and the gate works normally, without a restart.
    """

    def __init__(
        self,
        path: Path,
        *,
        opener: Callable[[], OpenConnection],
        monotonic: Callable[[], float],
    ) -> None:
        """Tries ``opener`` now; never raises StoreError (see :attr:`open_error`)."""
        self._path = path
        self._opener = opener
        self._monotonic = monotonic
        self._lock = threading.RLock()
        self._closed = False
        self._opened: OpenConnection | None = None
        self._open_error: StoreError | None = None
        self._first_try_mono = monotonic()
        self._last_try_mono = self._first_try_mono
        self._tries = 0
        with contextlib.suppress(StoreError):
            self._try_open()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def open_error(self) -> StoreError | None:
        """Why the database could not be opened at the last try; None once open."""
        return self._open_error

    @property
    def conn(self) -> sqlite3.Connection:
        """The opened connection (benchmarks and tests look at it); StoreError
        while the database cannot be opened."""
        return self._connection().conn

    def read(self, action: str, sql: str, params: tuple[Any, ...]) -> list[Any]:
        return self._connection().read(action, sql, params)

    @contextlib.contextmanager
    def write(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._connection().write(action) as conn:
            yield conn

    def check_writable(self) -> None:
        self._connection().check_writable()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._opened is not None:
                self._opened.close()

    def _connection(self) -> OpenConnection:
        """The opened connection, opening it if a try is due; else StoreError with the cause."""
        with self._lock:
            if self._closed:
                raise StoreError("the database is closed")
            if self._opened is not None:
                return self._opened
            if self._monotonic() - self._last_try_mono < OPEN_RETRY_S:
                assert self._open_error is not None
                raise StoreError(str(self._open_error))
            return self._try_open()

    def _try_open(self) -> OpenConnection:
        self._tries += 1
        try:
            opened = self._opener()
        except StoreError as exc:
            self._open_error = exc
            log.debug("the database still cannot be opened: %s", exc)
            raise
        finally:
            # From the end of the try: a lock makes each try wait out the busy
            # timeout, and the loop must get on between tries.
            self._last_try_mono = self._monotonic()
        self._opened, self._open_error = opened, None
        if self._tries > 1:
            log.info(
                "the database opened after %.1f s (%d tries)",
                self._last_try_mono - self._first_try_mono,
                self._tries,
            )
        return opened


@contextlib.contextmanager
def read_snapshot(path: Path, action: str) -> Iterator[sqlite3.Connection]:
    """A read-only connection of its own on ``path``, inside one read transaction.

    For long reads (exports): they neither hold the shared connection's lock
    nor see a half-written page, and SQLite's errors, raised at open or while
    the caller reads inside the ``with``, become StoreError("could not
    ``action``: ...").
    """
    with store_errors(action):
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
        )
    try:
        add_functions(conn)
        with store_errors(action):
            conn.execute("BEGIN")  # one read snapshot throughout
            yield conn
    finally:
        conn.close()


def current_boot_id() -> str:
    """The kernel's id of this boot, so ``seq`` restarts at 1 after a reboot only.

    Where there is none (not Linux), a random id stands in for this process's
    lifetime; sequences then restart with each process, which is logged once.
    """
    try:
        text = BOOT_ID_PATH.read_text(encoding="ascii").strip()
    except OSError:
        text = ""
    return text or _fallback_boot_id()


@functools.cache
def _fallback_boot_id() -> str:
    boot_id = uuid.uuid4().hex
    log.warning("no kernel boot id at %s; using a random one for this process", BOOT_ID_PATH)
    return boot_id


def add_functions(conn: sqlite3.Connection) -> None:
    """SQL functions the queries use: ``fold`` (see :func:`~kiosk.store.values.search_fold`)."""
    conn.create_function("fold", 1, search_fold, deterministic=True)


def _configure(conn: sqlite3.Connection, *, busy_timeout_ms: int) -> None:
    """Set the pragmas every connection needs before it touches data."""
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if str(mode).lower() != "wal":
        # Two processes share the file; without WAL, readers block the writer.
        raise sqlite3.OperationalError(f"journal mode is {mode!r}, WAL is required")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")


@contextlib.contextmanager
def immediate_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back if anything (commit included) fails."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            # If the rollback fails too, the original error is the one to report;
            # SQLite rolls back an open transaction when the connection closes.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def store_errors(action: str, path: Path | None = None) -> Iterator[None]:
    """Turn SQLite's errors into StoreError at this module's boundary."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"could not {action}: {describe(exc, path)}") from exc


# The causes a gate meets in the field, by SQLite's primary result code (the
# low byte of an extended code), said so that whoever reads the log knows what
# to fix. SQLite's own words and the code's name follow in parentheses.
_CAUSES = {
    sqlite3.SQLITE_BUSY: "the database is locked by another process",
    sqlite3.SQLITE_LOCKED: "the database is locked by another connection",
    sqlite3.SQLITE_FULL: "disk full: no space left for the database",
    sqlite3.SQLITE_READONLY: "the database file is read-only",
    sqlite3.SQLITE_IOERR: "disk I/O error: the storage failed or became read-only",
    sqlite3.SQLITE_CORRUPT: "the database file is corrupt",
    sqlite3.SQLITE_NOTADB: "the database file is corrupt (not a database)",
    sqlite3.SQLITE_CANTOPEN: "cannot open the database file",
    sqlite3.SQLITE_PERM: "permission denied on the database file",
}

_FILE_SYSTEM_CAUSES = (
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PERM,
)


def describe(exc: sqlite3.Error, path: Path | None = None) -> str:
    """The cause in plain words, then SQLite's message and error name.

    With the database's ``path``, a full disk also says how much space is
    left and a file-system error says whether the file system is mounted
    read-only (an SD card the kernel remounted read-only after errors shows
    as a disk I/O error on a connection that was open). Never bound values,
    so no personal data.
    """
    name = getattr(exc, "sqlite_errorname", None)
    code = getattr(exc, "sqlite_errorcode", None)
    detail = f"{exc}; {name}" if name else str(exc)
    cause = _CAUSES.get(code & 0xFF) if code is not None else None
    if cause is None:
        return f"{exc} ({name})" if name else str(exc)
    if path is not None and code is not None:
        cause += _file_system_state(path, code & 0xFF)
    return f"{cause} ({detail})"


def _free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged process may still write on ``path``'s file system."""
    try:
        stats = os.statvfs(path.parent)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def _read_only_file(path: Path) -> bool:
    """Whether ``path`` or the file system holding it cannot be written now."""
    try:
        read_only_fs = bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False
    return read_only_fs or not os.access(path, os.W_OK)


def _file_system_state(path: Path, primary_code: int) -> str:
    """What the file system holding ``path`` says about a full disk or a
    file-system error, as a clause to append; empty when it cannot tell."""
    if primary_code != sqlite3.SQLITE_FULL and primary_code not in _FILE_SYSTEM_CAUSES:
        return ""
    try:
        stats = os.statvfs(path if path.is_dir() else path.parent)
    except OSError:
        return ""
    if primary_code == sqlite3.SQLITE_FULL:
        return f", {stats.f_bavail * stats.f_frsize // 1024} KiB free"
    if stats.f_flag & os.ST_RDONLY:
        return "; its file system is mounted read-only"
    return ""
