"""Trust lists: files in the shapes gateways publish, the store, the CLI, and
the gate picking up a change without a restart."""

from __future__ import annotations

import base64
import getpass
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import load_der_x509_certificate

from kiosk.cli import cli
from kiosk.codes import Credential, Rejection
from kiosk.compose import SiteCodes, import_trust_file, registry_for
from kiosk.config import load_settings
from kiosk.demo_codes import demo_vaccine_passport, tamper_name
from kiosk.store import Store
from kiosk.trust import TrustError, parse_trust_file
from tests.test_hcert import NOW, make_signer


@pytest.fixture
def ders() -> list[bytes]:
    return [make_signer()[1].der, make_signer(rsa_key=True)[1].der]


def pem(der: bytes) -> bytes:
    cert = load_der_x509_certificate(der)
    return cert.public_bytes(serialization.Encoding.PEM)


def b64(der: bytes) -> str:
    return base64.b64encode(der).decode()


def test_pem_bundle(ders):
    parsed = parse_trust_file(pem(ders[0]) + b"\n" + pem(ders[1]))
    assert [c.der for c in parsed.certificates] == ders
    assert parsed.problems == ()
    assert {c.country for c in parsed.certificates} == {"VN"}  # from the subject's C


@pytest.mark.parametrize(
    "shape",
    [
        lambda ds: [b64(d) for d in ds],
        lambda ds: [{"kid": "x", "country": "DE", "rawData": b64(d)} for d in ds],
        lambda ds: [{"x5c": [b64(d)]} for d in ds],
        lambda ds: {"certificates": [{"certificate": b64(d)} for d in ds]},
        lambda ds: {f"kid{i}": [{"rawData": b64(d)}] for i, d in enumerate(ds)},
    ],
)
def test_common_json_shapes(ders, shape):
    parsed = parse_trust_file(json.dumps(shape(ders)).encode())
    assert sorted(c.der for c in parsed.certificates) == sorted(ders)


def test_unreadable_entries_are_reported_and_the_rest_imported(ders):
    parsed = parse_trust_file(json.dumps([b64(ders[0]), "not base64!", {"nothing": 1}]).encode())
    assert [c.der for c in parsed.certificates] == [ders[0]]
    assert len(parsed.problems) == 2
    assert parsed.problems[0].startswith("entry 2:")


def test_a_file_that_is_no_trust_list_is_refused():
    with pytest.raises(TrustError):
        parse_trust_file(b"hello")


def test_cli_imports_lists_and_removes(tmp_path: Path, ders):
    config = tmp_path / "gatekiosk.toml"
    config.write_text(f'[gate]\ndata_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    bundle = tmp_path / "dsc.pem"
    bundle.write_bytes(pem(ders[0]) + pem(ders[1]))
    runner = CliRunner()

    empty = runner.invoke(cli, ["trust", "list", "--config", str(config)])
    assert empty.output == "KEY ID\tCOUNTRY\tVALID FROM\tVALID UNTIL\tSUBJECT\n(none)\n"
    imported = runner.invoke(cli, ["trust", "import", "--config", str(config), str(bundle)])
    assert imported.exit_code == 0, imported.output
    assert imported.output == "Imported 2 new of 2 certificates from dsc.pem.\n"
    again = runner.invoke(cli, ["trust", "import", "--config", str(config), str(bundle)])
    assert again.output == "Imported 0 new of 2 certificates from dsc.pem.\n"

    listed = runner.invoke(cli, ["trust", "list", "--config", str(config)])
    header, *lines = listed.output.splitlines()
    assert header == "KEY ID\tCOUNTRY\tVALID FROM\tVALID UNTIL\tSUBJECT"
    assert len(lines) == 2
    kid = lines[0].split("\t")[0]
    assert lines[0].split("\t")[1] == "VN"

    removed = runner.invoke(cli, ["trust", "remove", "--config", str(config), kid])
    assert removed.output == f"Removed 1 certificate(s) with key id {kid}.\n"
    missing = runner.invoke(cli, ["trust", "remove", "--config", str(config), kid])
    assert missing.exit_code == 1
    assert "no trusted certificate has key id" in missing.output
    with Store.open(tmp_path / "data" / "gatekiosk.db") as store:
        audit = sorted(store.audit_entries(), key=lambda a: a.id)
    actor = f"cli:{getpass.getuser()}"
    assert [(a.actor, a.action, a.detail) for a in audit] == [
        (actor, "trust-import", {"file": "dsc.pem", "found": 2, "skipped": 0, "added": 2}),
        (actor, "trust-import", {"file": "dsc.pem", "found": 2, "skipped": 0, "added": 0}),
        (actor, "trust-remove", {"kid": kid}),
    ]


def test_the_running_gate_reloads_the_trust_list(tmp_path: Path):
    settings = load_settings(overrides={"gate.data_dir": str(tmp_path)}, env={})
    with Store.open(settings.db_path) as store:
        codes = SiteCodes.for_settings(settings, store)
        key, cert = make_signer()
        from tests.test_hcert import issue, vaccination

        raw = issue(vaccination(), key, cert)
        before = codes.registry.identify(raw, at=NOW)
        assert isinstance(before, Rejection)
        assert before.reason == "hcert-unknown-key"

        import_trust_file(store, pem(cert.der), by="test", at=NOW)
        from kiosk.compose import scan_settings

        registry = codes.refresh(scan_settings(settings))
        assert registry is not None
        assert isinstance(registry.identify(raw, at=NOW), Credential)
        assert codes.refresh(scan_settings(settings)) is None  # nothing changed since


def test_demo_vaccine_passport_is_allowed_and_its_tampered_copy_refused(tmp_path: Path):
    settings = load_settings(overrides={"gate.data_dir": str(tmp_path)}, env={})
    with Store.open(settings.db_path) as store:
        text = demo_vaccine_passport(store, now=NOW)
        demo_vaccine_passport(store, now=NOW)  # a second run replaces the demo signer
        assert len(store.trusted_certificates()) == 1
        text = demo_vaccine_passport(store, now=NOW)
        registry = registry_for(settings, store)
        valid = registry.identify(text.encode(), at=NOW)
        forged = tamper_name(text, "Thị Mai", "Thị Mia", prefix="HC1:")
        tampered = registry.identify(forged.encode(), at=NOW)
    assert isinstance(valid, Credential)
    assert valid.display_name == "Nguyễn Thị Mai"
    assert isinstance(tampered, Rejection)
    assert tampered.reason == "hcert-bad-signature"
