"""Site keys on disk: init, rotate, retire, load; file modes; clear errors."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kiosk.codes.base import KIND_DECLARATION, Credential, Rejection
from kiosk.codes.sitecodes import SiteCodeClaims, SiteCodeFormat, issue_code, new_code_id
from kiosk.errors import GateError
from kiosk.keys import (
    KeyRing,
    KeysError,
    SiteKey,
    init_keys,
    kid_for,
    load_keyring,
    load_signing_key,
    parse_kid,
    retire_key,
    rotate_keys,
)

T0 = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
SITE = "nhamay-01"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "data" / "keys"


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask that removes nothing: modes must come from the code, not luck."""
    old = os.umask(0)
    yield
    os.umask(old)


def declaration(private_key: ec.EllipticCurvePrivateKey, kid: bytes, *, at: datetime) -> bytes:
    claims = SiteCodeClaims(
        kind=KIND_DECLARATION,
        site_id=SITE,
        code_id=new_code_id(),
        name="Trần Văn Đức",
        issued_at=at,
        expires_at=at + timedelta(days=30),
    )
    return issue_code(claims, private_key, kid).encode("ascii")


def gate(folder: Path) -> SiteCodeFormat:
    return SiteCodeFormat(load_keyring(folder), SITE)


def test_init_creates_a_key_pair_with_private_files_closed_to_others(
    folder: Path, permissive_umask: None
) -> None:
    kid = init_keys(folder, at=T0)
    private = folder / "private" / f"{kid.hex()}.pem"
    public = folder / "public" / f"{kid.hex()}.pem"
    assert mode(folder / "private") == 0o700
    assert mode(private) == 0o600
    assert mode(public) == 0o644
    assert mode(folder / "keys.json") == 0o644
    assert sorted(p.name for p in (folder / "private").iterdir()) == [f"{kid.hex()}.pem"]

    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert kid == kid_for(key.public_key())
    assert len(kid) == 8

    manifest = json.loads((folder / "keys.json").read_text())
    assert manifest == {
        "format": 1,
        "active": kid.hex(),
        "keys": [{"kid": kid.hex(), "created": "2024-01-01T08:00:00+00:00", "retired": None}],
    }


def test_kid_is_the_start_of_the_sha256_of_the_public_key_der() -> None:
    import hashlib

    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert kid_for(key) == hashlib.sha256(der).digest()[:8]


def test_init_twice_is_refused_and_keeps_the_first_key(folder: Path) -> None:
    kid = init_keys(folder, at=T0)
    with pytest.raises(KeysError, match=r"already exist.*gatekiosk keys rotate"):
        init_keys(folder, at=T0 + timedelta(days=1))
    assert load_signing_key(folder)[0] == kid


def test_init_is_refused_when_private_keys_exist_without_a_manifest(folder: Path) -> None:
    init_keys(folder, at=T0)
    (folder / "keys.json").unlink()
    with pytest.raises(KeysError, match=r"keys\.json is missing"):
        init_keys(folder, at=T0)


def test_loaded_keyring_holds_public_keys_and_states(folder: Path) -> None:
    kid = init_keys(folder, at=T0)
    ring = load_keyring(folder)
    assert [key.kid for key in ring.keys] == [kid]
    assert ring.active is not None
    assert ring.active.kid == kid
    key = ring.get(kid)
    assert key is not None
    assert key.created == T0
    assert not key.retired
    assert ring.get(b"\x00" * 8) is None
    signing_kid, private_key = load_signing_key(folder)
    assert signing_kid == kid
    assert kid_for(private_key.public_key()) == kid


def test_rotate_adds_a_signing_key_and_old_codes_still_verify(folder: Path) -> None:
    old_kid = init_keys(folder, at=T0)
    _, old_private = load_signing_key(folder)
    old_code = declaration(old_private, old_kid, at=T0)

    new_kid = rotate_keys(folder, at=T0 + timedelta(days=1))
    assert new_kid != old_kid
    signing_kid, new_private = load_signing_key(folder)
    assert signing_kid == new_kid
    new_code = declaration(new_private, new_kid, at=T0 + timedelta(days=1))

    ring = load_keyring(folder)
    assert [key.kid for key in ring.keys] == [old_kid, new_kid]
    assert not any(key.retired for key in ring.keys)
    at = T0 + timedelta(days=2)
    assert isinstance(gate(folder).parse(old_code, at=at), Credential)
    assert isinstance(gate(folder).parse(new_code, at=at), Credential)


def test_retired_key_codes_are_refused_and_its_private_file_is_gone(folder: Path) -> None:
    old_kid = init_keys(folder, at=T0)
    _, old_private = load_signing_key(folder)
    old_code = declaration(old_private, old_kid, at=T0)
    new_kid = rotate_keys(folder, at=T0 + timedelta(hours=1))

    retire_key(folder, old_kid.hex(), at=T0 + timedelta(hours=2))

    assert not (folder / "private" / f"{old_kid.hex()}.pem").exists()
    assert (folder / "public" / f"{old_kid.hex()}.pem").exists()
    ring = load_keyring(folder)
    retired = ring.get(old_kid)
    assert retired is not None
    assert retired.retired
    assert retired.retired_at == T0 + timedelta(hours=2)
    assert load_signing_key(folder)[0] == new_kid
    result = gate(folder).parse(old_code, at=T0 + timedelta(hours=3))
    assert isinstance(result, Rejection)
    assert result.reason == "sitecode-retired-key"


def test_retiring_the_signing_key_falls_back_to_the_newest_remaining(folder: Path) -> None:
    first = init_keys(folder, at=T0)
    second = rotate_keys(folder, at=T0 + timedelta(days=1))
    retire_key(folder, second, at=T0 + timedelta(days=2))
    assert load_signing_key(folder)[0] == first
    assert json.loads((folder / "keys.json").read_text())["active"] == first.hex()


def test_with_every_key_retired_signing_asks_for_a_rotation(folder: Path) -> None:
    kid = init_keys(folder, at=T0)
    retire_key(folder, kid, at=T0 + timedelta(days=1))
    with pytest.raises(KeysError, match="gatekiosk keys rotate"):
        load_signing_key(folder)
    assert load_keyring(folder).active is None
    new_kid = rotate_keys(folder, at=T0 + timedelta(days=2))
    assert load_signing_key(folder)[0] == new_kid


def test_retire_twice_or_unknown_or_malformed_is_refused(folder: Path) -> None:
    kid = init_keys(folder, at=T0)
    retire_key(folder, kid, at=T0)
    with pytest.raises(KeysError, match="already retired"):
        retire_key(folder, kid, at=T0)
    with pytest.raises(KeysError, match="no site key 0000000000000000"):
        retire_key(folder, "0000000000000000", at=T0)
    with pytest.raises(KeysError, match="not a key id"):
        retire_key(folder, "not-hex", at=T0)
    with pytest.raises(KeysError, match="16 hex digits"):
        retire_key(folder, "abcd", at=T0)


@pytest.mark.parametrize(
    "operation",
    [
        lambda folder: load_keyring(folder),
        lambda folder: load_signing_key(folder),
        lambda folder: rotate_keys(folder, at=T0),
        lambda folder: retire_key(folder, "00" * 8, at=T0),
    ],
    ids=["load_keyring", "load_signing_key", "rotate", "retire"],
)
def test_missing_keys_say_to_run_keys_init(folder: Path, operation) -> None:
    with pytest.raises(KeysError, match=r"no site keys in .*run `gatekiosk keys init`"):
        operation(folder)


def test_keys_error_is_a_gate_error() -> None:
    assert issubclass(KeysError, GateError)


def test_missing_private_key_on_a_gate_only_machine_is_explained(folder: Path) -> None:
    kid = init_keys(folder, at=T0)
    (folder / "private" / f"{kid.hex()}.pem").unlink()
    assert load_keyring(folder).get(kid) is not None  # the kiosk does not need it
    with pytest.raises(KeysError, match="cannot sign"):
        load_signing_key(folder)


def test_private_key_readable_by_others_is_refused(folder: Path) -> None:
    kid = init_keys(folder, at=T0)
    private = folder / "private" / f"{kid.hex()}.pem"
    private.chmod(0o640)
    with pytest.raises(KeysError, match="chmod 600"):
        load_signing_key(folder)


def test_error_messages_never_contain_key_material(folder: Path) -> None:
    kid = init_keys(folder, at=T0)
    private = folder / "private" / f"{kid.hex()}.pem"
    pem = private.read_bytes()
    private.chmod(0o644)
    with pytest.raises(KeysError) as caught:
        load_signing_key(folder)
    body = b"".join(pem.splitlines()[1:-1]).decode()
    assert body[:20] not in str(caught.value)


def test_a_public_key_file_swapped_for_another_key_is_detected(folder: Path) -> None:
    kid = init_keys(folder, at=T0)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    (folder / "public" / f"{kid.hex()}.pem").write_bytes(
        other.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(KeysError, match="does not hold the key"):
        load_keyring(folder)


@pytest.mark.parametrize(
    "manifest",
    [
        "not json",
        "[]",
        '{"format": 2, "active": null, "keys": []}',
        '{"format": 1, "active": null, "keys": []}',
        '{"format": 1, "active": null, "keys": [{"kid": "zz", "created": "x", "retired": null}]}',
    ],
)
def test_a_broken_manifest_is_reported(folder: Path, manifest: str) -> None:
    init_keys(folder, at=T0)
    (folder / "keys.json").write_text(manifest)
    with pytest.raises(KeysError, match=r"keys\.json"):
        load_keyring(folder)


def test_a_manifest_naming_the_wrong_active_key_is_reported(folder: Path) -> None:
    first = init_keys(folder, at=T0)
    rotate_keys(folder, at=T0 + timedelta(days=1))
    path = folder / "keys.json"
    document = json.loads(path.read_text())
    document["active"] = first.hex()
    path.write_text(json.dumps(document))
    with pytest.raises(KeysError, match="active key"):
        load_signing_key(folder)


def test_writes_leave_no_temporary_files(folder: Path) -> None:
    kid = init_keys(folder, at=T0)
    rotate_keys(folder, at=T0 + timedelta(days=1))
    retire_key(folder, kid, at=T0 + timedelta(days=2))
    leftovers = [p for p in folder.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_keyring_can_be_built_in_memory_for_tests_and_fakes() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    older = SiteKey(kid_for(key), key, T0)
    ring = KeyRing((older,))
    assert ring.active is older
    assert ring.get(older.kid) is older


def test_parse_kid_accepts_bytes_and_hex() -> None:
    assert parse_kid(b"\x01" * 8) == b"\x01" * 8
    assert parse_kid(" 0101010101010101 ") == b"\x01" * 8
    with pytest.raises(KeysError):
        parse_kid(b"\x01" * 7)
