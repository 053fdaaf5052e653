"""A hub is made with ``site init``; a gate joins it over HTTPS with a
one-time token and the CA's fingerprint, end to end through the real
waitress server and the hub's TLS front on loopback."""

from __future__ import annotations

import re
import socket
import ssl
import stat
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask

from admin_web.site import (
    ENROL_FAILURES_MAX,
    ENROL_FAILURES_WINDOW,
    EnrolmentService,
    start_enrolment,
)
from kiosk.accounts import PasswordHashing
from kiosk.cli import cli
from kiosk.clock import FakeClock
from kiosk.config import Settings, load_settings
from kiosk.keys import load_keyring, rotate_keys
from kiosk.privacy import load_or_create_key
from kiosk.site import SiteError
from kiosk.site.downlink import GateDocuments, HubDocuments
from kiosk.site.enrolment import (
    TOKEN_TTL,
    ca_fingerprint,
    enrolled_gates,
    new_enrolment_token,
    revoke_gate,
    token_hash,
)
from kiosk.site.hub_setup import HubFolder, init_hub
from kiosk.site.join import GateSiteFiles, join_site, write_site_settings
from kiosk.site.pki import create_ca, load_certificate
from kiosk.store import Store
from tests.web import csrf_token, log_in, make_app

HOSTS = ["localhost", "127.0.0.1"]


@dataclass
class Hub:
    app: Flask
    settings: Settings
    folder: HubFolder
    clock: FakeClock
    enrolment: EnrolmentService

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.enrolment.port}"

    @property
    def fingerprint(self) -> str:
        return ca_fingerprint(load_certificate(self.folder.pki.ca_certificate))

    def token(self) -> str:
        token = new_enrolment_token()
        now = self.clock.now()
        store = self.app.extensions["gatekiosk"].store
        store.site_documents.add_enrolment_token(
            token_hash(token), created_at=now, expires_at=now + TOKEN_TTL, created_by="test"
        )
        return token


@pytest.fixture
def hub(tmp_path: Path, password_hashing: PasswordHashing) -> Iterator[Hub]:
    clock = FakeClock(wall=datetime.now(UTC))
    folder = tmp_path / "hub"
    app = make_app(folder, clock=clock, hashing=password_hashing)
    settings: Settings = app.extensions["gatekiosk"].settings
    hub_folder = HubFolder(settings.site_dir)
    init_hub(
        hub_folder,
        site_id="factory-1",
        hosts=HOSTS,
        keys_dir=settings.keys_dir,
        hash_key_path=settings.key_path,
        now=clock.now(),
    )
    enrolment = start_enrolment(app, host="127.0.0.1", port=0)
    assert enrolment is not None
    yield Hub(app, settings, hub_folder, clock, enrolment)
    enrolment.stop()


def gate_settings(folder: Path, gate_id: str = "main-gate") -> Settings:
    return load_settings(overrides={"gate.data_dir": str(folder), "gate.id": gate_id}, env={})


def join(hub: Hub, gate: Settings, *, token: str, fingerprint: str | None = None) -> None:
    join_site(
        hub.address,
        token=token,
        fingerprint=fingerprint or hub.fingerprint,
        gate_id=gate["gate.id"],
        files=GateSiteFiles(gate.site_dir),
        keys_dir=gate.keys_dir,
        hash_key_path=gate.key_path,
        default_port=8443,
    )


def test_a_gate_joins_with_a_token_and_gets_the_site_files(hub: Hub, tmp_path: Path) -> None:
    gate = gate_settings(tmp_path / "gate")
    join(hub, gate, token=hub.token())

    files = GateSiteFiles(gate.site_dir)
    site = files.description()
    assert (site.site_id, site.gate_id, site.broker) == ("factory-1", "main-gate", "localhost:8883")
    certificate = load_certificate(files.certificate)
    certificate.verify_directly_issued_by(load_certificate(files.ca_certificate))
    assert [g.gate_id for g in enrolled_gates(hub.folder.pki)] == ["main-gate"]
    # One subject-hash key for the whole site, installed where the kiosk reads it.
    site_key = load_or_create_key(hub.settings.key_path)
    assert files.subject_key.read_bytes() == site_key
    assert gate.key_path.read_bytes() == site_key
    for secret in (files.subject_key, gate.key_path, files.key):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    # Public signing keys only: the gate can verify, never sign.
    assert load_keyring(gate.keys_dir).keys == load_keyring(hub.settings.keys_dir).keys
    assert not (gate.keys_dir / "private").exists()


def test_a_used_token_is_refused(hub: Hub, tmp_path: Path) -> None:
    token = hub.token()
    join(hub, gate_settings(tmp_path / "a", "gate-a"), token=token)
    with pytest.raises(SiteError, match="refused the token"):
        join(hub, gate_settings(tmp_path / "b", "gate-b"), token=token)
    assert [g.gate_id for g in enrolled_gates(hub.folder.pki)] == ["gate-a"]


def test_an_expired_token_is_refused(hub: Hub, tmp_path: Path) -> None:
    token = hub.token()
    hub.clock.advance(TOKEN_TTL.total_seconds() + 1)
    with pytest.raises(SiteError, match="refused the token"):
        join(hub, gate_settings(tmp_path / "gate"), token=token)
    assert enrolled_gates(hub.folder.pki) == []


def test_a_mistyped_token_is_refused(hub: Hub, tmp_path: Path) -> None:
    hub.token()
    with pytest.raises(SiteError, match="refused the token"):
        join(hub, gate_settings(tmp_path / "gate"), token="AAAA-BBBB-CCCC-DDDD")


def test_enrolment_pauses_after_many_refused_tokens(hub: Hub, tmp_path: Path) -> None:
    gate = gate_settings(tmp_path / "gate")
    for _ in range(ENROL_FAILURES_MAX):
        with pytest.raises(SiteError, match="refused the token"):
            join(hub, gate, token="AAAA-BBBB-CCCC-DDDD")
    token = hub.token()
    with pytest.raises(SiteError, match="paused enrolment"):
        join(hub, gate, token=token)
    hub.clock.advance(ENROL_FAILURES_WINDOW.total_seconds())
    join(hub, gate, token=token)


def test_a_wrong_ca_fingerprint_is_refused_before_the_token_is_sent(
    hub: Hub, tmp_path: Path
) -> None:
    token = hub.token()
    other = ca_fingerprint(create_ca("factory-1", now=hub.clock.now()).certificate)
    gate = gate_settings(tmp_path / "gate")
    with pytest.raises(SiteError, match="fingerprint does not match"):
        join(hub, gate, token=token, fingerprint=other)
    assert not GateSiteFiles(gate.site_dir).description_path.exists()
    # The token was never sent, so it still works.
    join(hub, gate, token=token)


def test_a_gate_already_in_must_be_revoked_before_it_joins_again(hub: Hub, tmp_path: Path) -> None:
    gate = gate_settings(tmp_path / "gate")
    join(hub, gate, token=hub.token())
    token = hub.token()
    with pytest.raises(SiteError, match="already in the site"):
        join(hub, gate, token=token)
    revoke_gate(hub.folder.pki, "main-gate", now=hub.clock.now())
    join(hub, gate, token=token)  # the refused attempt did not spend the token


def test_the_gate_receives_rotated_public_keys(hub: Hub, tmp_path: Path) -> None:
    rotate_keys(hub.settings.keys_dir, at=hub.clock.now())
    gate = gate_settings(tmp_path / "gate")
    join(hub, gate, token=hub.token())
    assert len(load_keyring(gate.keys_dir).keys) == 2


def test_the_managers_page_makes_a_token_that_a_gate_can_use(hub: Hub, tmp_path: Path) -> None:
    client = hub.app.test_client()
    log_in(client, "manager")
    page = client.get("/site/gates").get_data(as_text=True)
    assert hub.fingerprint in page
    response = client.post("/site/gates/token", data={"csrf_token": csrf_token(client, "/")})
    assert response.status_code == 200
    match = re.search(
        r'id="new-token">[^<]*<code>([A-Z0-9-]{19})</code>', response.get_data(as_text=True)
    )
    assert match
    join(hub, gate_settings(tmp_path / "gate"), token=match.group(1))
    page = client.get("/site/gates").get_data(as_text=True)
    assert "main-gate" in page
    assert "used by main-gate" in page


def test_making_a_token_needs_a_manager_and_a_csrf_token(hub: Hub) -> None:
    client = hub.app.test_client()
    log_in(client, "guard")
    assert client.get("/site/gates").status_code == 403
    manager = hub.app.test_client()
    log_in(manager, "manager")
    assert manager.post("/site/gates/token", data={}).status_code == 400


def test_site_init_is_idempotent_and_never_replaces_a_ca(hub: Hub) -> None:
    before = hub.folder.pki.ca_certificate.read_bytes()
    key_before = hub.settings.key_path.read_bytes()
    report = init_hub(
        hub.folder,
        site_id="factory-1",
        hosts=HOSTS,
        keys_dir=hub.settings.keys_dir,
        hash_key_path=hub.settings.key_path,
        now=hub.clock.now(),
    )
    assert not report.created_ca
    assert not report.created_hash_key
    assert not report.created_signing_keys
    assert hub.folder.pki.ca_certificate.read_bytes() == before
    assert hub.settings.key_path.read_bytes() == key_before
    with pytest.raises(SiteError, match="never replaced"):
        init_hub(
            hub.folder,
            site_id="other-site",
            hosts=HOSTS,
            keys_dir=hub.settings.keys_dir,
            hash_key_path=hub.settings.key_path,
            now=hub.clock.now(),
        )


def test_cli_site_init_then_join_writes_the_site_settings(tmp_path: Path) -> None:
    hub_toml = tmp_path / "hub.toml"
    hub_toml.write_text(f'[gate]\ndata_dir = "{tmp_path / "hub"}"\n', encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["site", "init", "--site", "f-1", "--host", "127.0.0.1", "--config", str(hub_toml)],
    )
    assert result.exit_code == 0, result.output
    assert "CA fingerprint" in result.output
    assert "Đã tạo / created" in result.output
    again = runner.invoke(
        cli,
        ["site", "init", "--site", "f-1", "--host", "127.0.0.1", "--config", str(hub_toml)],
    )
    assert again.exit_code == 0, again.output
    assert "kept" in again.output
    refused = runner.invoke(
        cli, ["site", "init", "--site", "f-2", "--host", "x", "--config", str(hub_toml)]
    )
    assert refused.exit_code == 1
    assert "never replaced" in refused.output
    token = runner.invoke(cli, ["site", "token", "--config", str(hub_toml)])
    assert token.exit_code == 0, token.output
    assert re.search(r"token: [A-Z0-9]{4}-", token.output)


def test_site_settings_replace_an_existing_site_section(tmp_path: Path) -> None:
    config = tmp_path / "gate.toml"
    config.write_text('[gate]\nid = "g"\n\n[site]\nhub = "old:1"\n\n[web]\nport = 9\n')
    write_site_settings(config, hub="hub.local:8883", folder=tmp_path / "site")
    values = tomllib.loads(config.read_text())
    assert values["site"] == {"hub": "hub.local:8883", "dir": str(tmp_path / "site")}
    assert values["web"] == {"port": 9}
    assert values["gate"] == {"id": "g"}


def test_cli_join_writes_the_settings_then_the_hub_revokes_the_gate(
    hub: Hub, tmp_path: Path
) -> None:
    gate_toml = tmp_path / "gate.toml"
    gate_toml.write_text(f'[gate]\nid = "side-gate"\ndata_dir = "{tmp_path / "gate"}"\n')
    runner = CliRunner()
    joined = runner.invoke(
        cli,
        [
            "site",
            "join",
            hub.address,
            "--token",
            hub.token(),
            "--ca",
            hub.fingerprint,
            "--config",
            str(gate_toml),
        ],
    )
    assert joined.exit_code == 0, joined.output
    assert "Joined site factory-1 as gate side-gate" in joined.output
    settings = load_settings(gate_toml, env={})
    assert settings["site.hub"] == "localhost:8883"
    clock = FakeClock()
    with Store.open(settings.db_path) as store:
        channel = GateDocuments.for_settings(settings, store, clock)
        assert channel.subscriptions() == ["gk/factory-1/doc/#"]
    hub_toml = tmp_path / "hub.toml"
    hub_toml.write_text(f'[gate]\ndata_dir = "{hub.settings.data_dir}"\n')
    revoked = runner.invoke(cli, ["site", "revoke", "side-gate", "--config", str(hub_toml)])
    assert revoked.exit_code == 0, revoked.output
    assert [g.revoked for g in enrolled_gates(hub.folder.pki)] == [True]
    acl = (hub.folder.broker_dir / "acl").read_text()
    assert "side-gate" in acl
    with Store.open(hub.settings.db_path) as store:
        assert HubDocuments.for_settings(hub.settings, store, clock).subscriptions() == []


def https_exchange(hub: Hub, request: bytes) -> bytes:
    context = ssl.create_default_context(cafile=str(hub.folder.pki.ca_certificate))
    with (
        socket.create_connection(("127.0.0.1", hub.enrolment.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as secure,
    ):
        secure.sendall(request)
        answer = b""
        while chunk := secure.recv(65536):
            answer += chunk
        return answer


def test_the_https_port_serves_enrolment_only_one_plain_request_at_a_time(hub: Hub) -> None:
    ca = https_exchange(hub, b"GET /site/enrol/ca HTTP/1.1\r\nHost: hub\r\n\r\n")
    assert ca.startswith(b"HTTP/1.1 200")
    assert ca.endswith(hub.folder.pki.ca_certificate.read_bytes())
    login = https_exchange(hub, b"GET /login HTTP/1.1\r\nHost: hub\r\n\r\n")
    assert login.startswith(b"HTTP/1.1 404")  # the admin web is not behind this port
    chunked = https_exchange(
        hub,
        b"POST /site/enrol HTTP/1.1\r\nHost: hub\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    assert chunked.startswith(b"HTTP/1.1 400")
    huge = https_exchange(
        hub, b"POST /site/enrol HTTP/1.1\r\nHost: hub\r\nContent-Length: 999999\r\n\r\n"
    )
    assert huge.startswith(b"HTTP/1.1 400")
