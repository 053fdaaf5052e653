"""The ``[uplink]`` and ``[province_web]`` TLS settings against a PostgreSQL
that really speaks TLS (``postgres_tls``: a test CA, a server certificate
for 127.0.0.1 only, ``hostssl`` by client certificate or scram-sha-256 and
plaintext rejected).

Real ``gatekiosk uplink --once`` processes upload or are refused; where the
test looks at the uplink's session (``pg_stat_ssl``), a ``gatekiosk
uplink`` service runs until the server shows it. No process's output may
ever hold the password.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from admin_web import create_province_app
from admin_web.province import ProvinceWeb
from kiosk.accounts import PasswordHashing, add_user
from kiosk.clock import FakeClock, SystemClock
from kiosk.config import load_settings
from kiosk.store import Store
from tests.postgres_fixture import (  # noqa: F401
    CERT_LOGIN,
    HOST,
    Authority,
    Province,
    postgres_tls_fixture,
    tls_province_fixture,
)
from tests.province_hub import hub_with_events, province_marks
from tests.waiting import wait_until
from tests.web import PASSWORDS, EnglishClient, log_in

PASSWORD = "Mật-khẩu-tls-7Qx!z"
"""A site's password; it must never show in an uplink's output."""
SSL_OF_SESSION = "SELECT ssl, version, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
SERVICE_SSL = (
    "SELECT s.ssl, s.version, s.client_dn FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
    "WHERE a.usename = %s AND a.application_name = 'gatekiosk uplink'"
)


def ca_of(province: Province) -> Path:
    assert province.server.tls is not None
    return province.server.tls.authority.ca_file


def hub_config(hub_dir: Path, province: Province, **uplink: object) -> Path:
    """A hub's settings file: its database in ``hub_dir``, ``uplink`` as [uplink]
    (host, port and dbname of ``province`` unless given)."""
    values: dict[str, object] = {
        "host": HOST,
        "port": province.server.port,
        "dbname": province.dbname,
        **uplink,
    }
    lines = [f"{name} = {toml_value(value)}" for name, value in values.items() if value is not None]
    config = hub_dir / "hub.toml"
    config.write_text(
        f'[gate]\ndata_dir = "{hub_dir}"\n[uplink]\n' + "\n".join(lines) + "\n", encoding="utf-8"
    )
    return config


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def password_file(folder: Path, password: str = PASSWORD) -> Path:
    path = folder / "province-password"
    path.write_text(password + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def run_uplink(config: Path) -> subprocess.CompletedProcess[str]:
    """``gatekiosk -vv uplink --once`` (debug logging: everything it would log)."""
    result = subprocess.run(
        [sys.executable, "-m", "kiosk.cli", "-vv", "uplink", "--once", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
        check=False,
    )
    assert PASSWORD not in result.stdout + result.stderr
    return result


def new_hub(tmp_path: Path, name: str, events: int) -> tuple[Path, list[str]]:
    """A hub's folder holding its database (``gatekiosk.db``) with ``events`` events."""
    hub_dir = tmp_path / name
    hub_dir.mkdir()
    return hub_dir, hub_with_events(hub_dir / "gatekiosk.db", events)


def uploaded(province: Province, site_id: str) -> list[str]:
    rows = province.query("SELECT id FROM province.events WHERE site_id = %s", (site_id,))
    return sorted(str(row[0]) for row in rows)


def pending(hub_dir: Path) -> int:
    return sum(province_marks(hub_dir / "gatekiosk.db").values())


def service_session(config: Path, province: Province, role: str, hub_dir: Path) -> tuple[Any, ...]:
    """Run ``gatekiosk uplink`` (the service) until it has sent everything
    and its session shows at the server; that session's ``pg_stat_ssl`` row
    (ssl, version, client_dn), as the server sees it."""
    errors = hub_dir / "uplink.err"
    rows: list[tuple[Any, ...]] = []

    def connected_and_drained() -> bool:
        rows[:] = province.query(SERVICE_SSL, (role,))
        return bool(rows) and pending(hub_dir) == 0

    with errors.open("wb") as err:
        service = subprocess.Popen(
            [sys.executable, "-m", "kiosk.cli", "-vv", "uplink", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_until(connected_and_drained, timeout_s=60)
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=30) == 0, errors.read_text()
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    assert PASSWORD not in errors.read_text()
    assert len(rows) == 1
    return rows[0]


def add_cert_site(province: Province, site_id: str) -> str:
    """A site whose login has no password and logs in by client certificate; its role."""
    province.add_site(site_id)
    role = province.role_of(site_id)
    with psycopg.connect(province.owner_dsn, autocommit=True) as conn:
        conn.execute(f"GRANT {CERT_LOGIN} TO {role}".encode())
    return role


def test_a_hub_uploads_over_verified_tls_with_its_password_and_the_session_is_encrypted(
    tls_province: Province, tmp_path: Path
) -> None:
    tls_province.add_site("market-a", password=PASSWORD)
    hub_dir, ids = new_hub(tmp_path, "hub", 25)
    config = hub_config(
        hub_dir,
        tls_province,
        role=tls_province.role_of("market-a"),
        ca_file=ca_of(tls_province),
        password_file=password_file(hub_dir),
    )
    result = run_uplink(config)
    assert result.returncode == 0, result.stderr
    assert "sent 25, mới / new 25" in result.stdout
    assert "sslmode=verify-full" in result.stderr  # the logged target, without its password
    assert uploaded(tls_province, "market-a") == sorted(ids)
    assert pending(hub_dir) == 0
    more = hub_with_events(hub_dir / "gatekiosk.db", 5)
    encrypted, version, client_dn = service_session(
        config, tls_province, tls_province.role_of("market-a"), hub_dir
    )
    assert encrypted is True
    assert str(version).startswith("TLSv1.")
    assert client_dn is None  # a password login, no client certificate
    assert uploaded(tls_province, "market-a") == sorted(ids + more)


def test_a_server_certificate_of_another_ca_is_refused_and_nothing_is_marked_sent(
    tls_province: Province, tmp_path: Path
) -> None:
    tls_province.add_site("market-a", password=PASSWORD)
    hub_dir, _ = new_hub(tmp_path, "hub", 10)
    other = Authority.create(tmp_path / "other", "other-province")
    config = hub_config(
        hub_dir,
        tls_province,
        role=tls_province.role_of("market-a"),
        ca_file=other.ca_file,
        password_file=password_file(hub_dir),
    )
    result = run_uplink(config)
    assert result.returncode == 1
    assert "Error: không gửi được lên cấp tỉnh / cannot upload to the province" in result.stderr
    assert "certificate verify failed" in result.stderr
    assert "uplink.ca_file is not the CA that signed the province server's certificate" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert uploaded(tls_province, "market-a") == []
    assert pending(hub_dir) == 10


def test_a_host_name_not_in_the_servers_certificate_is_refused(
    tls_province: Province, tmp_path: Path
) -> None:
    tls_province.add_site("market-a", password=PASSWORD)
    hub_dir, _ = new_hub(tmp_path, "hub", 10)
    config = hub_config(
        hub_dir,
        tls_province,
        host="localhost",  # the same server, but its certificate names 127.0.0.1 only
        role=tls_province.role_of("market-a"),
        ca_file=ca_of(tls_province),
        password_file=password_file(hub_dir),
    )
    result = run_uplink(config)
    assert result.returncode == 1
    assert 'does not match host name "localhost"' in result.stderr
    assert "uplink.host is not a name in the server's certificate" in result.stderr
    assert uploaded(tls_province, "market-a") == []
    assert pending(hub_dir) == 10


def test_a_client_certificate_uploads_as_the_site_its_common_name_names(
    tls_province: Province, tmp_path: Path
) -> None:
    role = add_cert_site(tls_province, "market-a")
    cert_file, key_file = tls_province.server.tls.authority.client_files(  # type: ignore[union-attr]
        tmp_path / "pki", role
    )
    hub_dir, ids = new_hub(tmp_path, "hub", 30)
    config = hub_config(
        hub_dir,
        tls_province,
        role=role,
        ca_file=ca_of(tls_province),
        cert_file=cert_file,
        key_file=key_file,
    )
    result = run_uplink(config)
    assert result.returncode == 0, result.stderr
    assert "sent 30, mới / new 30" in result.stdout
    assert uploaded(tls_province, "market-a") == sorted(ids)
    more = hub_with_events(hub_dir / "gatekiosk.db", 3)
    encrypted, _, client_dn = service_session(config, tls_province, role, hub_dir)
    assert (encrypted, client_dn) == (True, f"/CN={role}")
    assert uploaded(tls_province, "market-a") == sorted(ids + more)


def test_a_certificate_of_one_site_cannot_log_in_as_another(
    tls_province: Province, tmp_path: Path
) -> None:
    role_a = add_cert_site(tls_province, "market-a")
    role_b = add_cert_site(tls_province, "market-b")
    authority = tls_province.server.tls.authority  # type: ignore[union-attr]
    cert_a, key_a = authority.client_files(tmp_path / "pki", role_a)
    hub_dir, _ = new_hub(tmp_path, "hub-b", 10)
    config = hub_config(
        hub_dir,
        tls_province,
        role=role_b,  # site B's login, with site A's certificate
        ca_file=ca_of(tls_province),
        cert_file=cert_a,
        key_file=key_a,
    )
    result = run_uplink(config)
    assert result.returncode == 1
    assert f'certificate authentication failed for user "{role_b}"' in result.stderr
    assert "the common name of uplink.cert_file must be uplink.role" in result.stderr
    assert tls_province.query("SELECT count(*) FROM province.events") == [(0,)]
    assert pending(hub_dir) == 10


def test_the_server_refuses_plaintext_and_the_settings_refuse_to_try_it_to_another_machine(
    tls_province: Province, tmp_path: Path
) -> None:
    tls_province.add_site("market-a", password=PASSWORD)
    hub_dir, _ = new_hub(tmp_path, "hub", 10)
    role = tls_province.role_of("market-a")
    plaintext = hub_config(
        hub_dir,
        tls_province,
        dsn="sslmode=disable",
        role=role,
        password_file=password_file(hub_dir),
        allow_plaintext=True,
    )
    result = run_uplink(plaintext)
    assert result.returncode == 1
    assert "pg_hba.conf rejects connection" in result.stderr
    assert "no encryption" in result.stderr
    assert "the province server accepts TLS only: set uplink.ca_file" in result.stderr
    # A name of another machine, without a CA: refused before any connection,
    # even where the address would reach this server.
    unverified = hub_config(
        hub_dir,
        tls_province,
        host="province.example.gov.vn",
        dsn=f"hostaddr={HOST}",
        role=role,
        password_file=password_file(hub_dir),
    )
    result = run_uplink(unverified)
    assert result.returncode == 1
    assert (
        "uplink.ca_file trống: không gửi dữ liệu chưa mã hoá tới province.example.gov.vn / "
        "uplink.ca_file is empty: refusing a connection without verified TLS to "
        "province.example.gov.vn"
    ) in result.stderr
    assert "connection failed" not in result.stderr
    assert "pg_hba" not in result.stderr
    assert pending(hub_dir) == 10
    assert uploaded(tls_province, "market-a") == []


def test_the_password_is_in_no_output_of_a_refused_or_retrying_uplink(
    tls_province: Province, tmp_path: Path
) -> None:
    tls_province.add_site("market-a", password="the-right-one")
    hub_dir, _ = new_hub(tmp_path, "hub", 5)
    config = hub_config(
        hub_dir,
        tls_province,
        role=tls_province.role_of("market-a"),
        ca_file=ca_of(tls_province),
        password_file=password_file(hub_dir),  # PASSWORD, which is wrong
    )
    result = run_uplink(config)  # asserts PASSWORD is not in its output
    assert result.returncode == 1
    assert "password authentication failed" in result.stderr
    assert "the password in uplink.password_file is wrong" in result.stderr
    errors = tmp_path / "uplink.err"
    with errors.open("wb") as err:
        service = subprocess.Popen(
            [sys.executable, "-m", "kiosk.cli", "-vv", "uplink", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_until(lambda: errors.read_text().count("retrying") >= 2, timeout_s=60)
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=30) == 0
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    log = errors.read_text()
    assert "password authentication failed" in log
    assert PASSWORD not in log
    assert pending(hub_dir) == 5


@contextlib.contextmanager
def province_web(
    data_dir: Path, dsn: str, password_hashing: PasswordHashing
) -> Iterator[FlaskClient]:
    """A manager's client of the province web reading over ``dsn``."""
    clock = FakeClock(SystemClock().now())
    settings = load_settings(
        overrides={"gate.data_dir": str(data_dir), "province_web.dsn": dsn}, env={}
    )
    with Store.open(settings.db_path) as store:
        app = create_province_app(
            settings,
            store=store,
            clock=clock,
            test_config={"TESTING": True},
            password_hashing=password_hashing,
        )
        app.test_client_class = EnglishClient
        add_user(
            store,
            "manager1",
            role="manager",
            password=PASSWORDS["manager"],
            at=clock.now(),
            hashing=password_hashing,
        )
        client = app.test_client()
        log_in(client, "manager")
        yield client


def test_the_province_web_reads_over_verified_tls(
    tls_province: Province, tmp_path: Path, password_hashing: PasswordHashing
) -> None:
    tls_province.add_site("market-tls")
    reader = f"{tls_province.dbname}_reader"
    tls_province.add_reader(password=PASSWORD)
    dsn = (
        f"host={HOST} port={tls_province.server.port} dbname={tls_province.dbname} "
        f"user={reader} password={PASSWORD} sslmode=verify-full sslrootcert={ca_of(tls_province)}"
    )
    settings = load_settings(overrides={"province_web.dsn": dsn}, env={})
    with ProvinceWeb.from_settings(settings).connect() as conn:
        row = conn.execute(SSL_OF_SESSION).fetchone()
    assert row is not None
    assert row[0] is True
    with province_web(tmp_path, dsn, password_hashing) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert 'data-site="market-tls"' in page.get_data(as_text=True)
    wrong_name = dsn.replace(f"host={HOST}", "host=localhost")
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        ProvinceWeb(dsn=wrong_name, export_max_days=31).connect()
