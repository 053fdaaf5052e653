"""A throwaway PostgreSQL for ``gatekiosk demo --gates N --province``.

A cluster made by ``initdb`` in a folder of the demo's, its server on a
free loopback port (``listen_addresses`` is 127.0.0.1 only) with its Unix
socket in the same folder. Over TCP every login needs its password
(``scram-sha-256``), made up for this run: the superuser's here, the
sites' and the reader's by :mod:`kiosk.demo_province`, so another user of
the machine cannot log in as the demo's superuser while it runs. The Unix
socket (``trust``) sits in a folder only the cluster's owner may enter.
Nothing here is for production: the province server of a real deployment
is Debian's own PostgreSQL (README).

PostgreSQL refuses to run as root: as root, ``initdb``, ``postgres`` and
``pg_ctl`` run as the ``postgres`` system user through ``setpriv``, which
executes them in place, so the process started is the server itself. The
server runs in a session of its own, so the terminal's Ctrl-C reaches the
demo only, which then stops it with ``pg_ctl stop -m fast``.

Example::

    cluster = DemoPostgres.create(folder, postgres_bindir(), port=free_port(), clock=clock)
    cluster.start()
    cluster.create_database("province")
    ...
    cluster.stop()
    cluster.remove()
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from kiosk.clock import Clock
from kiosk.errors import GateError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
POSTGRES_BIN_DIRS = "/usr/lib/postgresql/*/bin"
"""Where Debian keeps each PostgreSQL version's programs (not on the PATH)."""
START_S = 60.0
"""How long the server may take to accept connections, in seconds."""
STOP_S = 30.0
"""How long ``pg_ctl stop -m fast`` may take before the server is killed, in seconds."""
_PROGRAMS = ("initdb", "postgres", "pg_ctl")
_OWNER = "postgres"


class PostgresMissing(GateError):
    """PostgreSQL is not installed; the message says how to install it."""


def postgres_bindir() -> Path:
    """The folder with ``initdb``, ``postgres`` and ``pg_ctl``: on the PATH,
    else the newest of Debian's versions; PostgresMissing if none."""
    folders = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    versions = glob.glob(POSTGRES_BIN_DIRS)
    folders += sorted(versions, key=_version_key, reverse=True)
    for folder in folders:
        if all((Path(folder) / name).is_file() for name in _PROGRAMS):
            return Path(folder)
    raise PostgresMissing(
        "Chưa cài PostgreSQL (cơ sở dữ liệu cấp tỉnh): sudo apt-get install postgresql\n"
        "PostgreSQL (the province's database) is not installed: sudo apt-get install postgresql"
    )


def _version_key(folder: str) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin`` sorts as (15,): 16 after 9."""
    version = Path(folder).parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _as_owner() -> list[str]:
    """The prefix that runs a program as ``postgres`` when we are root, else nothing."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={_OWNER}", f"--regid={_OWNER}", "--init-groups", "--"]


def _reachable_by_others(folder: Path) -> bool:
    """Whether another user may pass through every folder down to ``folder``
    (the ``postgres`` user, when the demo runs as root)."""
    return all(parent.stat().st_mode & 0o001 for parent in folder.resolve().parents)


def cluster_folder(preferred: Path) -> tuple[Path, bool]:
    """A new, empty folder for the cluster: ``preferred``, or, as root where
    the ``postgres`` user cannot reach it, a private one in the system's
    temporary folder. The folder and whether it is ``preferred``."""
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(_OWNER)
        except KeyError:
            raise PostgresMissing(
                "Không có người dùng hệ thống 'postgres': sudo apt-get install postgresql\n"
                "There is no 'postgres' system user: sudo apt-get install postgresql"
            ) from None
        inside = _reachable_by_others(preferred)
        if inside:
            preferred.mkdir(mode=0o755)
            folder = preferred
        else:
            folder = Path(tempfile.mkdtemp(prefix="gatekiosk-demo-postgres-"))
        folder.chmod(0o755)  # the data folder inside stays 0700, the server's own
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        return folder, inside
    preferred.mkdir(mode=0o700)
    return preferred, True


@dataclass
class DemoPostgres:
    """One throwaway cluster: ``folder/data`` (the cluster), ``folder/run`` (the socket)."""

    folder: Path
    bindir: Path
    port: int
    clock: Clock
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    """The superuser's, for this run only."""

    @classmethod
    def create(
        cls, preferred: Path, bindir: Path, *, port: int, clock: Clock, log_path: Path
    ) -> DemoPostgres:
        """Make the cluster's folder (see :func:`cluster_folder`) and run ``initdb``."""
        folder, _ = cluster_folder(preferred)
        cluster = cls(folder, bindir, port, clock, log_path)
        (folder / "run").mkdir(mode=0o700)
        if os.geteuid() == 0:
            owner = pwd.getpwnam(_OWNER)
            os.chown(folder / "run", owner.pw_uid, owner.pw_gid)
        try:
            cluster._initdb()
        except GateError:
            cluster.remove()
            raise
        return cluster

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    def dsn(self, dbname: str = "postgres", user: str = _OWNER, password: str | None = None) -> str:
        """A libpq connection string over TCP loopback (the superuser's with its password)."""
        secret = self.password if user == _OWNER else password
        return make_conninfo(
            host=HOST, port=self.port, dbname=dbname, user=user, password=secret, connect_timeout=5
        )

    def _initdb(self) -> None:
        password_file = self.folder / "superuser-password"
        password_file.write_text(self.password + "\n", encoding="utf-8")
        password_file.chmod(0o600)
        if os.geteuid() == 0:
            owner = pwd.getpwnam(_OWNER)
            os.chown(password_file, owner.pw_uid, owner.pw_gid)
        try:
            done = subprocess.run(  # noqa: S603 - the installed initdb, our own folder
                [
                    *_as_owner(),
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    _OWNER,
                    f"--pwfile={password_file}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=trust",  # the socket's folder: the owner's alone
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            password_file.unlink()
        if done.returncode != 0:
            raise GateError(f"initdb không chạy được / initdb failed: {done.stderr.strip()[-500:]}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections (at most :data:`START_S`)."""
        with self.log_path.open("ab") as server_log:
            self.process = subprocess.Popen(  # noqa: S603 - the installed server, our own folder
                [
                    *_as_owner(),
                    str(self.bindir / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-k",
                    str(self.folder / "run"),
                    "-p",
                    str(self.port),
                    "-c",
                    f"listen_addresses={HOST}",
                    "-c",
                    "fsync=off",  # a throwaway cluster: speed over durability
                    "-c",
                    "max_connections=40",
                ],
                stdin=subprocess.DEVNULL,
                stdout=server_log,
                stderr=server_log,
                start_new_session=True,  # Ctrl-C is the demo's to handle, not the server's
            )
        deadline = self.clock.monotonic() + START_S
        while True:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if self.process.poll() is not None or self.clock.monotonic() > deadline:
                    raise GateError(
                        "PostgreSQL của bản demo không khởi động được / the demo's PostgreSQL "
                        f"did not start (see {self.log_path})"
                    ) from None
                self.clock.sleep(0.1)

    def create_database(self, name: str) -> str:
        """Create database ``name``; its owner's (the superuser's) connection string."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn(name)

    def stop(self) -> None:
        """``pg_ctl stop -m fast`` (connections ended, a clean shutdown); the
        server killed if it is still there after :data:`STOP_S`."""
        if self.process is None or self.process.poll() is not None:
            return
        stopped = subprocess.run(  # noqa: S603 - the installed pg_ctl, our own cluster
            [
                *_as_owner(),
                str(self.bindir / "pg_ctl"),
                "stop",
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(STOP_S)),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if stopped.returncode != 0:
            log.warning("pg_ctl stop: %s", stopped.stderr.strip())
        try:
            self.process.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def remove(self) -> None:
        """Delete the cluster's folder (after :meth:`stop`)."""
        shutil.rmtree(self.folder, ignore_errors=True)
