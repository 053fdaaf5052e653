"""Signed, versioned documents: what a gate applies and what it refuses, and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.codes import cose
from kiosk.keys import KeyRing, init_keys, load_keyring, load_signing_key, retire_key, rotate_keys
from kiosk.site import SiteError
from kiosk.site.documents import (
    MAX_DOCUMENT_BYTES,
    Document,
    DocumentKind,
    Refusal,
    Refused,
    encode_payload,
    sign_document,
    verify_document,
)

SITE = "factory-1"
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
BODY = {"capacity": 300, "anti_passback": "soft", "note": "Cổng chính", "ratio": 0.5}


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keys") / "keys"
    init_keys(folder, at=NOW)
    return folder


@pytest.fixture(scope="module")
def ring(keys_dir: Path) -> KeyRing:
    return load_keyring(keys_dir)


def signed(keys_dir: Path, *, kind=DocumentKind.SETTINGS, site=SITE, version=5, body=BODY) -> bytes:
    kid, key = load_signing_key(keys_dir)
    return sign_document(kind, site, version, body, issued_at=NOW, kid=kid, private_key=key)


def check(data: bytes, ring: KeyRing, *, kind=DocumentKind.SETTINGS, newer_than=4):
    return verify_document(data, keyring=ring, site_id=SITE, kind=kind, newer_than=newer_than)


def resign(data: bytes, payload: bytes) -> bytes:
    """The same COSE_Sign1 with another payload and the old signature."""
    message = cose.parse_cose_sign1(data)
    return cbor2.dumps(cbor2.CBORTag(18, [message.protected, {}, payload, message.signature]))


def test_a_signed_document_round_trips(keys_dir: Path, ring: KeyRing) -> None:
    result = check(signed(keys_dir), ring)

    assert isinstance(result, Document)
    assert result.kind is DocumentKind.SETTINGS
    assert (result.site_id, result.version, result.body) == (SITE, 5, BODY)
    assert result.issued_at == NOW
    assert result.kid == ring.keys[0].kid


def test_the_first_document_needs_no_version_in_force(keys_dir: Path, ring: KeyRing) -> None:
    assert isinstance(check(signed(keys_dir, version=1), ring, newer_than=None), Document)


def test_a_tampered_document_is_refused(keys_dir: Path, ring: KeyRing) -> None:
    data = signed(keys_dir)
    payload = cose.parse_cose_sign1(data).unverified_payload
    tampered = payload.replace(cbor2.dumps(300), cbor2.dumps(900))
    assert tampered != payload

    result = check(resign(data, tampered), ring)

    assert result == Refused(Refusal.BAD_SIGNATURE, "the signature does not verify")


def test_a_replayed_older_or_same_version_is_refused(keys_dir: Path, ring: KeyRing) -> None:
    old = signed(keys_dir, version=4)
    same = signed(keys_dir, version=5)

    assert isinstance(check(old, ring, newer_than=5), Refused)
    assert check(old, ring, newer_than=5).reason is Refusal.NOT_NEWER
    assert check(same, ring, newer_than=5).reason is Refusal.NOT_NEWER


def test_an_unsigned_document_is_refused(ring: KeyRing) -> None:
    bare = encode_payload(DocumentKind.SETTINGS, SITE, 9, BODY, issued_at=NOW)

    assert check(bare, ring).reason is Refusal.UNSIGNED


def test_a_cose_message_with_an_empty_signature_is_refused(keys_dir: Path, ring: KeyRing) -> None:
    message = cose.parse_cose_sign1(signed(keys_dir))
    empty = cbor2.dumps(cbor2.CBORTag(18, [message.protected, {}, message.unverified_payload, b""]))

    assert check(empty, ring).reason is Refusal.UNSIGNED


def test_a_document_of_another_site_is_refused(keys_dir: Path, ring: KeyRing) -> None:
    result = check(signed(keys_dir, site="other-site"), ring)

    assert result == Refused(Refusal.OTHER_SITE, "a document of another site")


def test_a_document_of_another_kind_is_refused(keys_dir: Path, ring: KeyRing) -> None:
    denylist = signed(keys_dir, kind=DocumentKind.DENYLIST, body={"subjects": []})

    assert check(denylist, ring).reason is Refusal.OTHER_KIND


def test_a_document_signed_by_an_unknown_key_is_refused(tmp_path: Path, ring: KeyRing) -> None:
    init_keys(tmp_path / "other", at=NOW)

    result = check(signed(tmp_path / "other"), ring)

    assert result.reason is Refusal.UNKNOWN_KEY


def test_a_document_signed_by_a_retired_key_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    old_kid = init_keys(folder, at=NOW)
    data = signed(folder)
    rotate_keys(folder, at=NOW + timedelta(days=1))
    retire_key(folder, old_kid, at=NOW + timedelta(days=2))

    result = check(data, load_keyring(folder))

    assert result.reason is Refusal.RETIRED_KEY


def test_a_document_over_the_size_limit_is_refused(ring: KeyRing) -> None:
    result = check(b"\x00" * (MAX_DOCUMENT_BYTES + 1), ring)

    assert result.reason is Refusal.TOO_LARGE


def test_a_signed_payload_that_is_not_a_document_is_refused(keys_dir: Path, ring: KeyRing) -> None:
    kid, key = load_signing_key(keys_dir)
    not_a_document = cose.sign1(cbor2.dumps({1: "a site code's claims"}), key, kid=kid)

    assert check(not_a_document, ring).reason is Refusal.MALFORMED


@pytest.mark.parametrize(
    ("version", "body"),
    [(0, {}), (2**63, {}), (True, {}), (1, {"when": datetime(2026, 1, 1, tzinfo=UTC)})],
)
def test_the_hub_cannot_sign_what_gates_would_refuse(version: int, body: object) -> None:
    with pytest.raises(SiteError):
        encode_payload(DocumentKind.SETTINGS, SITE, version, body, issued_at=NOW)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(data=st.binary(max_size=2048))
def test_verifying_arbitrary_bytes_never_raises(data: bytes, ring: KeyRing) -> None:
    assert isinstance(check(data, ring), Refused)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(position=st.integers(min_value=0), byte=st.integers(min_value=0, max_value=255))
def test_a_changed_byte_never_raises_and_never_passes(
    keys_dir: Path, ring: KeyRing, position: int, byte: int
) -> None:
    data = bytearray(signed(keys_dir))
    position %= len(data)
    changed = data[position] != byte
    data[position] = byte

    result = check(bytes(data), ring)

    if changed:
        # Bytes outside the signature's reach (the unprotected header's
        # encoding) could in principle change harmlessly; none of them can
        # change what the document says.
        assert isinstance(result, Refused) or (result.body, result.version) == (BODY, 5)
    else:
        assert isinstance(result, Document)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=100)
@given(
    payload=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text() | st.binary(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=20,
    )
)
def test_any_signed_payload_never_raises(keys_dir: Path, ring: KeyRing, payload: object) -> None:
    kid, key = load_signing_key(keys_dir)
    data = cose.sign1(cbor2.dumps(payload), key, kid=kid)

    assert isinstance(check(data, ring), Refused)
