"""A real PostgreSQL for tests: a cluster made by ``initdb`` in a temporary
folder, the server on a free loopback port, one fresh database per test.

As root, the cluster belongs to the ``postgres`` system user (PostgreSQL
refuses to run as root): ``initdb`` and ``postgres`` run through
``setpriv``, which executes them in place, so the process we start is the
server itself and signals reach it. Authentication is ``trust`` on
loopback: tests log in as any role, and row-level security is what they
test. Waiting is "poll until true or a deadline passes".

Use the fixtures in a test module with::

    from tests.postgres_fixture import postgres_fixture, province_fixture  # noqa: F401
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from kiosk.province.setup import SiteRole, add_reader, add_site, init_schema

HOST = "127.0.0.1"
WAIT_S = 30.0
_POLL_S = 0.05
_INSTALL = "apt-get install -y postgresql"
_names = itertools.count(1)


def postgres_bindir() -> Path:
    """Where ``initdb`` and ``postgres`` are: ``pg_config --bindir``, or Debian's folder."""
    candidates: list[str] = []
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(out.stdout.strip())
    candidates.extend(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))
    for folder in candidates:
        if folder and (Path(folder) / "initdb").exists():
            return Path(folder)
    raise RuntimeError(f"PostgreSQL's initdb not found; install it: {_INSTALL}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """A running test cluster; ``dsn(db, user)`` connects to it over TCP loopback."""

    data_dir: Path
    socket_dir: Path
    port: int
    bindir: Path
    process: subprocess.Popen[bytes] | None = None
    options: tuple[str, ...] = ()
    """More server settings, ``name=value`` each (benchmarks: max_connections=120...)."""

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"host={HOST} port={self.port} dbname={dbname} user={user} connect_timeout=5"

    def _as_owner(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]

    def init(self) -> None:
        subprocess.run(
            [
                *self._as_owner(),
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self.process = subprocess.Popen(
            [
                *self._as_owner(),
                str(self.bindir / "postgres"),
                "-D",
                str(self.data_dir),
                "-k",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={HOST}",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=50",
                *(arg for option in self.options for arg in ("-c", option)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the test PostgreSQL did not start") from None
                time.sleep(_POLL_S)

    def stop(self, *, immediate: bool = False) -> None:
        """Stop the server: fast (SIGINT), or immediate (SIGQUIT, like a crash)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGQUIT if immediate else signal.SIGINT)
        try:
            self.process.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def new_server(prefix: str) -> PostgresServer:
    """A cluster not yet initialised, in a new folder under the system's temp
    folder (not tmp_path: as root, the postgres user must be able to reach it)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    data_dir, socket_dir = root / "data", root / "run"
    data_dir.mkdir(mode=0o700)
    socket_dir.mkdir()
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for folder in (data_dir, socket_dir):
            os.chown(folder, owner.pw_uid, owner.pw_gid)
    return PostgresServer(data_dir, socket_dir, _free_port(), postgres_bindir())


@pytest.fixture(scope="session", name="postgres")
def postgres_fixture() -> Iterator[PostgresServer]:
    """One test cluster for the session (initdb takes seconds; databases are cheap)."""
    server = new_server("gatekiosk-pg-")
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)


@dataclass(frozen=True)
class Province:
    """A fresh province database in the test cluster, its schema applied."""

    server: PostgresServer
    dbname: str

    @property
    def owner_dsn(self) -> str:
        return self.server.dsn(self.dbname)

    def dsn(self, user: str) -> str:
        return self.server.dsn(self.dbname, user)

    def add_site(self, site_id: str) -> str:
        """Register ``site_id`` with a role of this database's own; its DSN."""
        role = f"{self.dbname}_{site_id}".replace("-", "_")
        add_site(self.owner_dsn, SiteRole(site_id, f"Site {site_id}", role_name=role))
        return self.dsn(role)

    def add_reader(self) -> str:
        role = f"{self.dbname}_reader"
        add_reader(self.owner_dsn, role, None)
        return self.dsn(role)

    def query(self, text: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with psycopg.connect(self.owner_dsn) as conn:
            return conn.execute(text.encode(), params).fetchall()


@pytest.fixture(name="province")
def province_fixture(postgres: PostgresServer) -> Iterator[Province]:
    """A new database with the province schema, dropped after the test."""
    dbname = f"province_{os.getpid()}_{next(_names)}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {dbname}".encode())
    init_schema(postgres.dsn(dbname))
    yield Province(postgres, dbname)
    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(postgres.dsn(), autocommit=True) as conn,
    ):
        conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)".encode())
