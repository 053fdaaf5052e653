"""``install.sh --province``: the province's server in one command.

Each step is install.sh's own function, run alone by bash with the machine
around it replaced: PostgreSQL is the real test cluster (tests/
postgres_fixture.py; ``as_postgres`` reaches it over loopback instead of
``runuser -u postgres``), ``pg_lsclusters``/``pg_ctlcluster``/``systemctl``
are stubs that print their calls, and the files go to ``tmp_path``. The
whole install in a Debian root is deploy/test-install.sh.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import pwd
import secrets
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from kiosk.province.setup import SiteRole, add_site
from tests.postgres_fixture import PostgresServer, postgres_fixture  # noqa: F401
from tests.test_deploy import INSTALL, run, tool


def shell_function(name: str) -> str:
    """The text of install.sh's function ``name``, to define it in another script."""
    text = INSTALL.read_text(encoding="utf-8")
    body = text.split(f"\n{name}() {{", 1)[1].split("\n}\n", 1)[0]
    return f"{name}() {{{body}\n}}\n"


def run_functions(
    names: tuple[str, ...], call: str, *, setup: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """install.sh's functions ``names`` defined after ``setup`` (constants and
    stubs), then ``call``; the exit status and the whole output."""
    script = "set -euo pipefail\n" + setup + "".join(map(shell_function, names)) + call + "\n"
    result = run(tool("bash"), "-c", script, env=env)
    return result.returncode, result.stdout + result.stderr


COMMON = """
say() { echo "say: $*"; }
warn() { echo "warn: $*"; }
die() { echo "die: $*"; exit 1; }
systemd_running() { false; }
pg_ctlcluster() { echo "pg_ctlcluster $*"; }
"""


@dataclass(frozen=True)
class Server:
    """What install_province_database works on: the test cluster as the
    machine's PostgreSQL, a database and a reader of this test's own."""

    postgres: PostgresServer
    folder: Path
    database: str
    reader: str

    @property
    def pgpass(self) -> Path:
        return self.folder / "province-web.pgpass"

    def install(self, *, cluster: str = "15 main 5432 online") -> tuple[int, str]:
        """install_province_database as on a machine whose ``pg_lsclusters``
        shows ``cluster`` (VERSION NAME PORT STATUS; empty: none)."""
        listing = f"echo '{cluster} postgres /var/lib/postgresql/15/main log'" if cluster else ":"
        setup = f"""
VENV={Path(sys.prefix)}
PROVINCE_DB={self.database}
PROVINCE_READER={self.reader}
PROVINCE_PGPASS={self.pgpass}
SERVICE_USER={pwd.getpwuid(os.geteuid()).pw_name}
start=no
{COMMON}
pg_lsclusters() {{ {listing}; }}
as_postgres() {{
    (cd / && env PGHOST=127.0.0.1 PGPORT={self.postgres.port} PGUSER=postgres "$@")
}}
"""
        return run_functions(
            (
                "postgres_value",
                "province_cluster",
                "install_province_database",
                "install_province_reader",
            ),
            "install_province_database",
            setup=setup,
        )

    def query(self, text: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with psycopg.connect(self.postgres.dsn(self.database)) as conn:
            return conn.execute(text, params).fetchall()

    def password_hash(self) -> str:
        rows = self.query("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (self.reader,))
        assert rows, f"no role {self.reader}"
        return str(rows[0][0])

    def file_password(self) -> str:
        host, port, database, user, password = self.pgpass.read_text(encoding="utf-8").split(":")
        assert (host, port, database, user) == ("localhost", "5432", self.database, self.reader)
        return password.rstrip("\n")


def scram_matches(stored: str, password: str) -> bool:
    """Whether PostgreSQL's SCRAM-SHA-256 verifier ``stored`` is that of ``password``
    (RFC 5802: StoredKey = H(HMAC(PBKDF2(password, salt, i), "Client Key")))."""
    method, iterations_salt, keys = stored.split("$")
    assert method == "SCRAM-SHA-256"
    iterations, salt = iterations_salt.split(":")
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), int(iterations)
    )
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return base64.b64encode(hashlib.sha256(client_key).digest()).decode() == keys.split(":")[0]


@pytest.fixture
def server(postgres: PostgresServer, tmp_path: Path) -> Server:
    name = secrets.token_hex(4)
    return Server(postgres, tmp_path, f"province_{name}", f"web_{name}")


def test_province_install_makes_the_database_its_schema_and_a_reader_only_the_file_knows(
    server: Server,
) -> None:
    status, output = server.install()

    assert status == 0, output
    assert f"creating the database {server.database}" in output
    assert server.query("SELECT 1 FROM pg_namespace WHERE nspname = 'province'") == [(1,)]
    assert server.query(
        "SELECT pg_has_role(%s, 'province_reader', 'MEMBER')", (server.reader,)
    ) == [(True,)]
    mode = server.pgpass.stat().st_mode
    assert stat.S_IMODE(mode) == 0o600  # libpq ignores a pgpass others may read
    password = server.file_password()
    assert len(password) >= 40
    assert scram_matches(server.password_hash(), password)
    assert password not in output


def test_province_install_again_keeps_the_database_its_sites_the_password_and_the_role(
    server: Server,
) -> None:
    assert server.install()[0] == 0
    file_before, hash_before = server.pgpass.read_text(encoding="utf-8"), server.password_hash()
    site = f"market_{secrets.token_hex(3)}"
    add_site(server.postgres.dsn(server.database), SiteRole(site, "Chợ", f"site_{site}", "pw"))

    status, output = server.install()

    assert status == 0, output
    assert f"keeping the database {server.database}" in output
    assert "province init" in output  # the schema is brought up to date on every upgrade
    assert server.pgpass.read_text(encoding="utf-8") == file_before
    assert server.password_hash() == hash_before
    assert server.query("SELECT id FROM province.sites WHERE id = %s", (site,)) == [(site,)]


def test_province_install_sets_a_new_password_when_its_file_was_removed(server: Server) -> None:
    assert server.install()[0] == 0
    old = server.file_password()
    server.pgpass.unlink()

    status, output = server.install()

    assert status == 0, output
    assert f"set the new password on the existing role {server.reader}" in output
    assert server.file_password() != old
    assert scram_matches(server.password_hash(), server.file_password())


def test_province_install_remakes_a_missing_reader_with_the_files_password(
    server: Server,
) -> None:
    assert server.install()[0] == 0
    with psycopg.connect(server.postgres.dsn(server.database), autocommit=True) as conn:
        conn.execute(f'DROP ROLE "{server.reader}"')

    status, output = server.install()

    assert status == 0, output
    assert f"keeping {server.pgpass}" in output
    assert scram_matches(server.password_hash(), server.file_password())


def test_province_install_starts_a_stopped_cluster_for_the_setup_and_stops_it_again(
    server: Server,
) -> None:
    status, output = server.install(cluster="15 main 5432 down")

    assert status == 0, output
    calls = [line for line in output.splitlines() if line.startswith("pg_ctlcluster")]
    assert calls == ["pg_ctlcluster 15 main start", "pg_ctlcluster 15 main stop"]


def test_province_install_without_a_cluster_says_how_to_make_one(server: Server) -> None:
    status, output = server.install(cluster="")

    assert status == 1
    assert "no PostgreSQL cluster on port 5432" in output
    assert "pg_createcluster" in output


# -- which machine, which units ------------------------------------------------


def machine_kind(tmp_path: Path, province: str, *, gate: bool, server: bool) -> tuple[int, str]:
    conf, province_conf = tmp_path / "gatekiosk.toml", tmp_path / "province.toml"
    for path, present in ((conf, gate), (province_conf, server)):
        if present:
            path.write_text("", encoding="utf-8")
    setup = f"CONF={conf}\nPROVINCE_CONF={province_conf}\nDATA_DIR=/var/lib/gatekiosk\n"
    setup += f"province={province}\n{COMMON}"
    return run_functions(("check_machine_kind",), "check_machine_kind", setup=setup)


def test_province_install_refuses_a_gate_or_hub(tmp_path: Path) -> None:
    status, output = machine_kind(tmp_path, "yes", gate=True, server=False)
    assert status == 1
    assert "this machine is a gate or a hub" in output
    assert "port 8080" in output


def test_gate_install_refuses_the_province_server_and_names_its_upgrade(tmp_path: Path) -> None:
    status, output = machine_kind(tmp_path, "no", gate=False, server=True)
    assert status == 1
    assert "this machine is the province's server" in output
    assert "--province" in output


@pytest.mark.parametrize("province", ["yes", "no"])
def test_a_new_machine_may_become_either(tmp_path: Path, province: str) -> None:
    assert machine_kind(tmp_path, province, gate=False, server=False) == (0, "")


def province_web(*, enabled: str = "", start: str = "yes") -> tuple[int, str]:
    setup = f"""
PROVINCE_WEB_UNIT=gatekiosk-province-web.service
start={start}
{COMMON}
systemd_running() {{ true; }}
systemctl() {{
    echo "systemctl $*"
    [[ $1 != is-enabled || " {enabled} " == *" $3 "* ]]
}}
"""
    return run_functions(("install_province_web",), "install_province_web", setup=setup)


def test_province_server_enables_its_web_and_postgresql_and_no_gate_unit() -> None:
    status, output = province_web()

    assert status == 0, output
    calls = [
        line for line in output.splitlines() if line.startswith("systemctl") and "is-" not in line
    ]
    assert calls == [
        "systemctl daemon-reload",
        "systemctl enable postgresql.service gatekiosk-province-web.service",
        "systemctl start postgresql.service",
        "systemctl restart gatekiosk-province-web.service",
    ]
    assert "warn" not in output


def test_province_server_with_no_start_enables_and_starts_nothing() -> None:
    status, output = province_web(start="no")
    assert status == 0, output
    calls = [
        line for line in output.splitlines() if line.startswith("systemctl") and "is-" not in line
    ]
    assert calls == ["systemctl enable postgresql.service gatekiosk-province-web.service"]


def test_province_server_names_a_gate_unit_left_enabled() -> None:
    status, output = province_web(enabled="gatekiosk-kiosk.service")
    assert status == 0, output
    assert (
        "warn: gatekiosk-kiosk.service is enabled on this province server; disable it: "
        "sudo systemctl disable --now gatekiosk-kiosk.service"
    ) in output


def test_province_install_does_nothing_of_a_gates() -> None:
    body = shell_function("do_install_province")
    for step in ("install_province_database", "install_province_config", "install_province_web"):
        assert f"    {step}\n" in body
    for gate_step in (
        "check_gpio",
        "install_udev_rules",
        "install_config",
        "install_keys",
        "install_services",
        "install_screen",
        "install_hub",
        "install_join",
        "install_uplink",
    ):
        assert f"    {gate_step}\n" not in body, gate_step


def test_province_next_steps_say_it_in_vietnamese_then_english() -> None:
    setup = """
VENV=/opt/gatekiosk/venv
PREFIX=/opt/gatekiosk
SERVICE_USER=gatekiosk
PROVINCE_DB=province
PROVINCE_READER=province_web
PROVINCE_CONF=/etc/gatekiosk/province.toml
PROVINCE_PGPASS=/etc/gatekiosk/province-web.pgpass
"""
    status, output = run_functions(
        ("print_province_next_steps",), "print_province_next_steps", setup=setup
    )
    assert status == 0, output
    assert "Đã cài máy chủ cấp tỉnh. / The province server is installed." in output
    gk, conf = "/opt/gatekiosk/venv/bin/gatekiosk", "/etc/gatekiosk/province.toml"
    for command in (
        f"sudo -u gatekiosk {gk} user add NAME --role manager --config {conf}",
        f'sudo -u postgres {gk} province add-site "dbname=province" market-3',
        f'sudo -u postgres {gk} province checklist "dbname=province"',
        "/opt/gatekiosk/docs/province-checklist.toml",
        "/opt/gatekiosk/docs/province.md",
        "hostssl in pg_hba.conf",
    ):
        assert command in output, command
    assert output.index("Việc tiếp theo") < output.index("What to do next")
    assert output.index("Tạo tài khoản quản lý") < output.index("Create a manager")


def test_uninstall_never_drops_the_province_database(tmp_path: Path) -> None:
    text = INSTALL.read_text(encoding="utf-8")
    assert not any(
        line.strip().startswith(("dropdb", "as_postgres dropdb")) or "DROP DATABASE" in line
        for line in text.splitlines()
    )
    prefix = tmp_path / "opt"
    (prefix / "venv").mkdir(parents=True)
    (tmp_path / "province.toml").write_text("", encoding="utf-8")
    setup = f"""
PREFIX={prefix}
UNITS=(gatekiosk-province-web.service)
UNIT_DIR={tmp_path / "units"}
UDEV_RULES={tmp_path / "rules"}
SCREEN_COMMAND={prefix}/bin/gatekiosk-screen
CONF_DIR={tmp_path}
DATA_DIR={tmp_path / "data"}
SERVICE_USER=gatekiosk
PROVINCE_CONF={tmp_path / "province.toml"}
PROVINCE_DB=province
PROVINCE_READER=province_web
province=no
purge_data=no
{COMMON}
systemctl() {{ echo "systemctl $*"; }}
"""
    status, output = run_functions(("do_uninstall",), "do_uninstall", setup=setup)

    assert status == 0, output
    assert "systemctl disable gatekiosk-province-web.service" in output
    assert not prefix.exists()
    assert "kept the province's PostgreSQL database province" in output
    assert "psql" not in output


def test_the_installed_program_carries_the_province_schema() -> None:
    """`gatekiosk province init` reads schema.sql from the installed package:
    setuptools' package-data must name it (a checkout hides its absence)."""
    import tomllib
    from fnmatch import fnmatch

    root = INSTALL.parent.parent
    data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    globs = data["tool"]["setuptools"]["package-data"]["kiosk"]
    for sql in sorted((root / "kiosk").rglob("*.sql")):
        relative = sql.relative_to(root / "kiosk").as_posix()
        assert any(fnmatch(relative, pattern) for pattern in globs), relative
