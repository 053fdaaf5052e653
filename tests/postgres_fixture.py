"""A real PostgreSQL for tests: a cluster made by ``initdb`` in a temporary
folder, the server on a free loopback port, one fresh database per test.

As root, the cluster belongs to the ``postgres`` system user (PostgreSQL
refuses to run as root): ``initdb`` and ``postgres`` run through
``setpriv``, which executes them in place, so the process we start is the
server itself and signals reach it. Authentication is ``trust`` on
loopback: tests log in as any role, and row-level security is what they
test. Waiting is "poll until true or a deadline passes".

With TLS (``postgres_tls`` and ``tls_province``, a cluster of their own),
the server speaks TLS with a certificate of a test CA for 127.0.0.1 only,
and :data:`TLS_HBA` is its ``pg_hba.conf``: over TCP only ``hostssl``, by
client certificate (common name = role name) for members of
:data:`CERT_LOGIN`, by password (scram-sha-256) for every other role, and a
plaintext attempt rejected; the fixtures' owner logs in over the Unix socket.

Use the fixtures in a test module with::

    from tests.postgres_fixture import postgres_fixture, province_fixture  # noqa: F401
"""

from __future__ import annotations

import contextlib
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
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kiosk.clock import SystemClock
from kiosk.demo_postgres import postgres_bindir
from kiosk.province.setup import SiteRole, add_reader, add_site, init_schema
from kiosk.site.pki import (
    CertificateAuthority,
    create_ca,
    issue_server_certificate,
    new_private_key,
    write_certificate,
    write_private_key,
)

HOST = "127.0.0.1"
WAIT_S = 30.0
_POLL_S = 0.05
_names = itertools.count(1)

CERT_LOGIN = "tls_cert_login"
"""The group whose members log in by client certificate on the TLS cluster."""
TLS_HBA = (
    "local all all trust",
    f"hostssl all +{CERT_LOGIN} {HOST}/32 cert",
    f"hostssl all all {HOST}/32 scram-sha-256",
    f"host all all {HOST}/32 reject",
)
"""The TLS cluster's ``pg_hba.conf``: TLS or nothing over TCP."""


def _as_postgres(path: Path) -> None:
    """As root, give ``path`` to the ``postgres`` user (the server's files)."""
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(path, owner.pw_uid, owner.pw_gid)


@dataclass(frozen=True)
class Authority:
    """A CA of the tests, its certificate in ``ca_file``."""

    ca: CertificateAuthority
    ca_file: Path

    @classmethod
    def create(cls, folder: Path, name: str) -> Authority:
        """A new CA (``name``: a site-id-like label) written to ``folder/name-ca.pem``."""
        folder.mkdir(parents=True, exist_ok=True)
        ca = create_ca(name, now=SystemClock().now())
        ca_file = folder / f"{name}-ca.pem"
        write_certificate(ca_file, ca.certificate)
        return cls(ca, ca_file)

    def server_files(self, folder: Path, hosts: tuple[str, ...]) -> tuple[Path, Path]:
        """A server certificate for ``hosts`` (its subjectAltNames) and its
        key (mode 0600, the ``postgres`` user's as root): their paths."""
        key = new_private_key()
        certificate = issue_server_certificate(
            self.ca, key.public_key(), list(hosts), now=SystemClock().now()
        )
        cert_file, key_file = folder / "server.crt", folder / "server.key"
        write_certificate(cert_file, certificate)
        write_private_key(key_file, key)
        _as_postgres(key_file)
        return cert_file, key_file

    def client_files(self, folder: Path, common_name: str) -> tuple[Path, Path]:
        """A client certificate whose common name is ``common_name`` (for
        PostgreSQL's ``cert`` method: the role name) and its key (mode 0600)."""
        key = new_private_key()
        start = SystemClock().now() - timedelta(days=1)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.ca.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.ca.private_key, hashes.SHA256())
        )
        folder.mkdir(parents=True, exist_ok=True)
        cert_file, key_file = folder / f"{common_name}.crt", folder / f"{common_name}.key"
        write_certificate(cert_file, certificate)
        write_private_key(key_file, key)
        return cert_file, key_file


@dataclass(frozen=True)
class ServerTls:
    """The TLS files of a test cluster: the CA that signed them, the server's
    certificate (for 127.0.0.1 only) and key."""

    authority: Authority
    cert_file: Path
    key_file: Path

    def settings(self) -> tuple[str, ...]:
        return (
            "ssl=on",
            f"ssl_cert_file={self.cert_file}",
            f"ssl_key_file={self.key_file}",
            f"ssl_ca_file={self.authority.ca_file}",  # to check clients' certificates
        )


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
    tls: ServerTls | None = None
    hba: tuple[str, ...] = ()
    """The lines of ``pg_hba.conf``; empty: initdb's (trust)."""

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"host={HOST} port={self.port} dbname={dbname} user={user} connect_timeout=5"

    def owner_dsn(self, dbname: str = "postgres") -> str:
        """The superuser's DSN: over TCP, or over the Unix socket where
        ``hba`` may ask TCP for TLS and a password."""
        if not self.hba:
            return self.dsn(dbname)
        return f"host={self.socket_dir} port={self.port} dbname={dbname} user=postgres"

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
        if self.hba:
            hba_file = self.data_dir / "pg_hba.conf"
            hba_file.write_text("\n".join(self.hba) + "\n", encoding="utf-8")
            _as_postgres(hba_file)

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
                *(arg for option in self._settings() for arg in ("-c", option)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                with psycopg.connect(self.owner_dsn(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the test PostgreSQL did not start") from None
                time.sleep(_POLL_S)

    def _settings(self) -> tuple[str, ...]:
        return (*(self.tls.settings() if self.tls else ()), *self.options)

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
    for folder in (data_dir, socket_dir):
        _as_postgres(folder)
    return PostgresServer(data_dir, socket_dir, _free_port(), postgres_bindir())


def new_tls_server(prefix: str, hba: tuple[str, ...] = TLS_HBA) -> PostgresServer:
    """A cluster not yet initialised that will speak TLS: a new test CA
    (``server.tls.authority``), a server certificate for 127.0.0.1 only
    (not ``localhost``), and ``hba`` as its ``pg_hba.conf``."""
    server = new_server(prefix)
    folder = server.data_dir.parent / "tls"
    folder.mkdir()
    authority = Authority.create(folder, "test-province")
    cert_file, key_file = authority.server_files(folder, (HOST,))
    server.tls = ServerTls(authority, cert_file, key_file)
    server.hba = hba
    return server


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


@pytest.fixture(scope="session", name="postgres_tls")
def postgres_tls_fixture() -> Iterator[PostgresServer]:
    """A cluster of its own that speaks TLS (:func:`new_tls_server`), with
    the :data:`CERT_LOGIN` group made."""
    server = new_tls_server("gatekiosk-pgtls-")
    try:
        server.init()
        server.start()
        with psycopg.connect(server.owner_dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {CERT_LOGIN} NOLOGIN".encode())
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
        return self.server.owner_dsn(self.dbname)

    def dsn(self, user: str) -> str:
        return self.server.dsn(self.dbname, user)

    def role_of(self, site_id: str) -> str:
        """The login role :meth:`add_site` makes for ``site_id``."""
        return f"{self.dbname}_{site_id}".replace("-", "_")

    def add_site(self, site_id: str, password: str | None = None) -> str:
        """Register ``site_id`` with a role of this database's own; its DSN."""
        role = self.role_of(site_id)
        add_site(self.owner_dsn, SiteRole(site_id, f"Site {site_id}", role, password))
        return self.dsn(role)

    def add_reader(self, password: str | None = None) -> str:
        role = f"{self.dbname}_reader"
        add_reader(self.owner_dsn, role, password)
        return self.dsn(role)

    def query(self, text: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with psycopg.connect(self.owner_dsn) as conn:
            return conn.execute(text.encode(), params).fetchall()


@contextlib.contextmanager
def new_province(server: PostgresServer) -> Iterator[Province]:
    """A new database with the province schema in ``server``, dropped at the end."""
    dbname = f"province_{os.getpid()}_{next(_names)}"
    with psycopg.connect(server.owner_dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {dbname}".encode())
    init_schema(server.owner_dsn(dbname))
    yield Province(server, dbname)
    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(server.owner_dsn(), autocommit=True) as conn,
    ):
        conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)".encode())


@pytest.fixture(name="province")
def province_fixture(postgres: PostgresServer) -> Iterator[Province]:
    """A new database with the province schema, dropped after the test."""
    with new_province(postgres) as province:
        yield province


@pytest.fixture(name="tls_province")
def tls_province_fixture(postgres_tls: PostgresServer) -> Iterator[Province]:
    """A province database on the TLS cluster (``postgres_tls``)."""
    with new_province(postgres_tls) as province:
        yield province
