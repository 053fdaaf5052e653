"""The ``[uplink]`` settings as a libpq conninfo: TLS with the province's CA,
no plain text to another machine unless allowed, a password read from its
file and never shown, clear messages for missing files."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from psycopg.conninfo import conninfo_to_dict

from kiosk.cli import cli
from kiosk.config import load_settings
from kiosk.errors import ConfigError
from kiosk.province.setup import SiteRole, add_site
from kiosk.province.target import is_loopback, uplink_configured, uplink_target
from tests.postgres_fixture import HOST, Province, postgres_fixture, province_fixture  # noqa: F401
from tests.province_hub import hub_with_events


def values(tmp_path: Path, **uplink: Any) -> dict[str, Any]:
    """The settings as loaded, with ``uplink.<key>`` overrides."""
    overrides = {"gate.data_dir": str(tmp_path), **{f"uplink.{k}": v for k, v in uplink.items()}}
    return dict(load_settings(overrides=overrides, env={}).values)


def problems(settings: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        uplink_target(settings)
    return caught.value.problems


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    path = tmp_path / "province-ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    return path


def test_the_settings_make_a_verified_tls_conninfo(tmp_path: Path, ca: Path) -> None:
    target = uplink_target(
        values(tmp_path, host="province.example", role="site_market_3", ca_file=str(ca))
    )
    assert conninfo_to_dict(target.conninfo) == {
        "host": "province.example",
        "port": "5432",
        "dbname": "province",
        "user": "site_market_3",
        "sslmode": "verify-full",
        "sslrootcert": str(ca),
    }


def test_no_host_and_no_dsn_is_no_uplink(tmp_path: Path) -> None:
    settings = values(tmp_path)
    assert not uplink_configured(settings)
    (problem,) = problems(settings)
    assert "uplink.host is empty" in problem
    assert problem.index("trống") < problem.index("empty")  # Vietnamese first


def test_plain_text_to_another_machine_is_refused_unless_allowed(tmp_path: Path) -> None:
    settings = values(tmp_path, host="10.0.0.5", role="site_a")
    (problem,) = problems(settings)
    assert "uplink.ca_file" in problem
    assert "10.0.0.5" in problem
    assert "không gửi dữ liệu chưa mã hoá" in problem
    allowed = uplink_target({**settings, "uplink.allow_plaintext": True})
    assert conninfo_to_dict(allowed.conninfo)["host"] == "10.0.0.5"


def test_unverified_tls_from_an_expert_dsn_counts_as_plain(tmp_path: Path) -> None:
    settings = values(tmp_path, dsn="host=province.example sslmode=require user=site_a")
    assert "without verified TLS" in problems(settings)[0]
    verified = values(
        tmp_path, dsn="host=province.example sslmode=verify-ca sslrootcert=/x user=site_a"
    )
    assert conninfo_to_dict(uplink_target(verified).conninfo)["sslmode"] == "verify-ca"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "/run/postgresql", ""])
def test_this_machine_needs_no_tls(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["10.0.0.5", "province.example", "127.0.0.1.example"])
def test_other_machines_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_missing_ca_certificate_and_key_are_each_named(tmp_path: Path) -> None:
    settings = values(
        tmp_path,
        host="province.example",
        role="site_a",
        ca_file=str(tmp_path / "nope-ca.pem"),
        cert_file=str(tmp_path / "nope.crt"),
    )
    found = problems(settings)
    assert any("uplink.ca_file: không có tệp" in p and "nope-ca.pem" in p for p in found)
    assert any("uplink.cert_file and uplink.key_file go together" in p for p in found)


def test_a_client_certificate_goes_into_the_conninfo(tmp_path: Path, ca: Path) -> None:
    cert, key = tmp_path / "site.crt", tmp_path / "site.key"
    cert.write_text("c", encoding="utf-8")
    key.write_text("k", encoding="utf-8")
    target = uplink_target(
        values(
            tmp_path,
            host="province.example",
            role="site_a",
            ca_file=str(ca),
            cert_file=str(cert),
            key_file=str(key),
        )
    )
    parts = conninfo_to_dict(target.conninfo)
    assert (parts["sslcert"], parts["sslkey"]) == (str(cert), str(key))


def test_the_password_is_read_from_its_file_and_never_shown(
    tmp_path: Path, ca: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret 'quoted'\nignored\n", encoding="utf-8")
    target = uplink_target(
        values(
            tmp_path,
            host="province.example",
            role="site_a",
            ca_file=str(ca),
            password_file=str(secret),
        )
    )
    assert conninfo_to_dict(target.conninfo)["password"] == "s3cret 'quoted'"
    assert "s3cret" not in target.shown
    assert "password=" not in target.shown
    assert "s3cret" not in repr(target)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("uplink to %s", target.shown)
    assert "s3cret" not in caplog.text


def test_a_missing_or_empty_password_file_is_a_clear_error(tmp_path: Path, ca: Path) -> None:
    base = {"host": "province.example", "role": "site_a", "ca_file": str(ca)}
    (missing,) = problems(values(tmp_path, **base, password_file=str(tmp_path / "nope")))
    assert "uplink.password_file: không có tệp mật khẩu / no such file" in missing
    empty = tmp_path / "empty"
    empty.write_text("", encoding="utf-8")
    (problem,) = problems(values(tmp_path, **base, password_file=str(empty)))
    assert "the file is empty" in problem


def test_settings_override_the_parts_of_an_expert_dsn(tmp_path: Path) -> None:
    settings = values(tmp_path, dsn="host=127.0.0.1 port=6000 dbname=prov user=a", role="b")
    parts = conninfo_to_dict(uplink_target(settings).conninfo)
    assert (parts["port"], parts["dbname"], parts["user"]) == ("6000", "prov", "b")


def test_a_role_is_required(tmp_path: Path) -> None:
    (problem,) = problems(values(tmp_path, host="127.0.0.1"))
    assert "uplink.role is empty" in problem


def test_the_cli_refuses_an_uplink_without_a_ca_before_touching_the_database(
    tmp_path: Path,
) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[gate]\ndata_dir = "{tmp_path}"\n[uplink]\nhost = "province.example"\n'
        'role = "site_a"\npassword_file = "/nonexistent/pw"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["uplink", "--once", "--config", str(config)])
    assert result.exit_code == 1
    assert "uplink.ca_file is empty" in result.output
    assert "uplink.password_file" in result.output
    assert not (tmp_path / "gatekiosk.db").exists()


def test_a_real_upload_logs_where_it_goes_but_never_the_password(
    province: Province, tmp_path: Path
) -> None:
    role = f"{province.dbname}_secret"
    add_site(province.owner_dsn, SiteRole("market-s", "S", role, password="pw-in-the-db"))
    hub_with_events(tmp_path / "gatekiosk.db", 5)
    secret = tmp_path / "province-password"
    secret.write_text("s3cret-never-logged\n", encoding="utf-8")
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[gate]\ndata_dir = "{tmp_path}"\n[uplink]\nhost = "{HOST}"\n'
        f'port = {province.server.port}\ndbname = "{province.dbname}"\nrole = "{role}"\n'
        f'password_file = "{secret}"\n',
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "kiosk.cli", "-v", "uplink", "--once", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"uplink to host={HOST}" in output
    assert f"user={role}" in output
    assert "s3cret" not in output
    assert "password" not in output.replace(str(secret), "")


def test_a_malformed_dsn_is_refused_without_quoting_it(tmp_path: Path) -> None:
    (problem,) = problems(values(tmp_path, dsn="host=x password=hunter2 oops"))
    assert "uplink.dsn" in problem
    assert "hunter2" not in problem
