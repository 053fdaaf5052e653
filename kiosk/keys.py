"""The site's signing keys on disk: one ECDSA P-256 key pair per key id.

The admin web and the CLI sign declarations and staff passes with the
private key; the kiosk verifies them with public keys only. Layout, under the
data directory::

    keys/
      keys.json                 manifest: kid, created, retired, and the active kid
      public/<kid-hex>.pem      SubjectPublicKeyInfo PEM, 0644
      private/<kid-hex>.pem     PKCS#8 PEM, unencrypted, 0600, folder 0700

The private key is not encrypted: the web service must sign unattended, so
its protection is the file mode and the service user, like the subject-hash
key in :mod:`kiosk.privacy`.

Key lifecycle, as the CLI exposes it:

- ``init``: the first key. Refused when keys exist.
- ``rotate``: a new key becomes the signing key. Older keys stay valid for
  verification, so codes they signed keep working until they expire.
- ``retire``: a key is withdrawn (lost laptop, leaked backup). Every code it
  signed is refused from then on, and its private key file is deleted.

The key id (kid) is the first 8 bytes of SHA-256 over the public key's DER
SubjectPublicKeyInfo; it travels in every code's protected header.

Example::

    kid = init_keys(data_dir / "keys", at=clock.now())
    kid, private_key = load_signing_key(data_dir / "keys")
    ring = load_keyring(data_dir / "keys")      # what the kiosk reads
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kiosk.errors import GateError

log = logging.getLogger(__name__)

KID_BYTES = 8
MANIFEST_NAME = "keys.json"
MANIFEST_FORMAT = 1

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
PUBLIC_DIR_MODE = 0o755
PUBLIC_FILE_MODE = 0o644


class KeysError(GateError):
    """The site keys are missing, malformed, or an operation on them is refused.

    The message says what to do (for example which ``gatekiosk keys``
    command to run); it never contains key material.
    """


@dataclass(frozen=True)
class SiteKey:
    """One verification key of the site.

    ``retired_at`` is set when the key was withdrawn: codes it signed are
    refused. A key that is merely older than the signing key is not retired.
    """

    kid: bytes
    public_key: ec.EllipticCurvePublicKey
    created: datetime
    retired_at: datetime | None = None

    @property
    def retired(self) -> bool:
        return self.retired_at is not None

    @property
    def kid_hex(self) -> str:
        return self.kid.hex()


@dataclass(frozen=True)
class KeyRing:
    """The site's public keys by key id: what a gate needs to verify codes."""

    keys: tuple[SiteKey, ...] = ()

    def get(self, kid: bytes) -> SiteKey | None:
        for key in self.keys:
            if key.kid == kid:
                return key
        return None

    @property
    def active(self) -> SiteKey | None:
        """The signing key: the newest key that is not retired, if any."""
        return _newest_active(self.keys)


def kid_for(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The key id: first 8 bytes of SHA-256 over the DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()[:KID_BYTES]


def parse_kid(value: bytes | str) -> bytes:
    """A key id given as bytes or as hex text (as the CLI and the manifest show it)."""
    if isinstance(value, bytes):
        kid = value
    else:
        try:
            kid = bytes.fromhex(value.strip())
        except ValueError:
            raise KeysError(f"{value!r} is not a key id (16 hex digits)") from None
    if len(kid) != KID_BYTES:
        raise KeysError(f"a key id is {KID_BYTES} bytes ({2 * KID_BYTES} hex digits)")
    return kid


# --- operations --------------------------------------------------------------


def init_keys(folder: Path, *, at: datetime) -> bytes:
    """Create the first site key pair in ``folder``; returns its key id.

    Refused when the folder already holds keys, so a second ``init`` can
    never silently replace the key that signed the codes people carry.
    """
    if (folder / MANIFEST_NAME).exists():
        raise KeysError(
            f"site keys already exist in {folder}; "
            "use `gatekiosk keys rotate` to add a new signing key"
        )
    if _has_private_keys(folder):
        raise KeysError(
            f"private keys already exist in {folder} but {MANIFEST_NAME} is missing; "
            "restore it from a backup, or move the folder away to start over"
        )
    kid = _write_new_key(folder)
    _write_manifest(folder, [_Entry(kid, _utc(at), None)])
    log.info("created site key %s in %s", kid.hex(), folder)
    return kid


def rotate_keys(folder: Path, *, at: datetime) -> bytes:
    """Add a new signing key; returns its key id. Older keys stay valid for
    verification until retired, so codes already issued keep working."""
    entries = _read_manifest(folder)
    kid = _write_new_key(folder)
    entries.append(_Entry(kid, _utc(at), None))
    _write_manifest(folder, entries)
    log.info("rotated site keys in %s: new signing key %s", folder, kid.hex())
    return kid


def retire_key(folder: Path, kid: bytes | str, *, at: datetime) -> None:
    """Withdraw a key: codes it signed are refused from now on.

    Its private key file is deleted, so it can never sign again. When the
    retired key was the signing key, the newest remaining key takes over;
    when none remains, signing fails until ``gatekiosk keys rotate``.
    """
    wanted = parse_kid(kid)
    entries = _read_manifest(folder)
    index = next((i for i, entry in enumerate(entries) if entry.kid == wanted), None)
    if index is None:
        raise KeysError(f"no site key {wanted.hex()} in {folder}")
    entry = entries[index]
    if entry.retired_at is not None:
        raise KeysError(
            f"site key {wanted.hex()} was already retired at {entry.retired_at.isoformat()}"
        )
    entries[index] = _Entry(entry.kid, entry.created, _utc(at))
    _write_manifest(folder, entries)
    with contextlib.suppress(FileNotFoundError):
        _private_path(folder, wanted).unlink()
    _fsync_dir(folder / "private")
    log.warning("retired site key %s: codes it signed are now refused", wanted.hex())


def load_keyring(folder: Path) -> KeyRing:
    """Every site public key with its state; public files only (the kiosk
    never needs, and should not be able, to read a private key)."""
    keys = []
    for entry in _read_manifest(folder):
        path = _public_path(folder, entry.kid)
        try:
            public_key = serialization.load_pem_public_key(path.read_bytes())
        except FileNotFoundError:
            raise KeysError(f"public key file {path} is missing") from None
        except OSError as exc:
            raise KeysError(f"cannot read {path}: {exc.strerror}") from None
        except ValueError:
            raise KeysError(f"{path} is not a PEM public key") from None
        if not (
            isinstance(public_key, ec.EllipticCurvePublicKey)
            and isinstance(public_key.curve, ec.SECP256R1)
        ):
            raise KeysError(f"{path} is not an ECDSA P-256 public key")
        if kid_for(public_key) != entry.kid:
            raise KeysError(f"{path} does not hold the key {entry.kid.hex()} its name says")
        keys.append(SiteKey(entry.kid, public_key, entry.created, entry.retired_at))
    return KeyRing(tuple(keys))


def load_signing_key(folder: Path) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """The key id and private key that sign new codes (the newest key that is
    not retired). Refuses a private key file others can read."""
    entries = _read_manifest(folder)
    active = _newest_active(entries)
    if active is None:
        raise KeysError(
            f"every site key in {folder} is retired; run `gatekiosk keys rotate` to add one"
        )
    path = _private_path(folder, active.kid)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        pem = path.read_bytes()
    except FileNotFoundError:
        raise KeysError(
            f"the private key {path} is missing; this machine cannot sign codes "
            "(copy the keys folder from the signing machine, or run `gatekiosk keys rotate`)"
        ) from None
    except OSError as exc:
        raise KeysError(f"cannot read {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise KeysError(
            f"the private key {path} is readable by other users (mode {mode:04o}); "
            f"run `chmod 600 {path}`"
        )
    try:
        private_key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise KeysError(f"{path} is not an unencrypted PEM private key") from None
    if not (
        isinstance(private_key, ec.EllipticCurvePrivateKey)
        and isinstance(private_key.curve, ec.SECP256R1)
    ):
        raise KeysError(f"{path} is not an ECDSA P-256 private key")
    if kid_for(private_key.public_key()) != active.kid:
        raise KeysError(f"{path} does not hold the key {active.kid.hex()} its name says")
    return active.kid, private_key


# --- manifest ----------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    kid: bytes
    created: datetime
    retired_at: datetime | None


class _Dated(Protocol):
    @property
    def created(self) -> datetime: ...
    @property
    def retired_at(self) -> datetime | None: ...


_D = TypeVar("_D", bound=_Dated)


def _newest_active(entries: Iterable[_D]) -> _D | None:
    """The newest (by creation time, then position) entry not retired."""
    best = None
    for entry in entries:
        if entry.retired_at is None and (best is None or entry.created >= best.created):
            best = entry
    return best


def _read_manifest(folder: Path) -> list[_Entry]:
    path = folder / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeysError(f"no site keys in {folder}; run `gatekiosk keys init`") from None
    except OSError as exc:
        raise KeysError(f"cannot read {path}: {exc.strerror}") from None
    try:
        document = json.loads(text)
        if document["format"] != MANIFEST_FORMAT:
            raise KeysError(f"{path} has format {document['format']!r}, not {MANIFEST_FORMAT}")
        entries = [
            _Entry(
                _manifest_kid(item["kid"]),
                _parse_time(item["created"]),
                None if item["retired"] is None else _parse_time(item["retired"]),
            )
            for item in document["keys"]
        ]
    except (ValueError, KeyError, TypeError):
        raise KeysError(f"{path} is not a valid key manifest") from None
    if not entries:
        raise KeysError(f"{path} lists no keys; run `gatekiosk keys rotate` to add one")
    if len({entry.kid for entry in entries}) != len(entries):
        raise KeysError(f"{path} lists a key twice")
    active = _newest_active(entries)
    if document.get("active") != (active.kid.hex() if active else None):
        raise KeysError(f"{path} names an active key that is not the newest unretired one")
    return entries


def _write_manifest(folder: Path, entries: list[_Entry]) -> None:
    active = _newest_active(entries)
    document = {
        "format": MANIFEST_FORMAT,
        "active": active.kid.hex() if active else None,
        "keys": [
            {
                "kid": entry.kid.hex(),
                "created": entry.created.isoformat(),
                "retired": entry.retired_at.isoformat() if entry.retired_at else None,
            }
            for entry in entries
        ],
    }
    text = json.dumps(document, indent=2) + "\n"
    _write_atomically(folder / MANIFEST_NAME, text.encode("utf-8"), PUBLIC_FILE_MODE)


def _manifest_kid(value: str) -> bytes:
    kid = bytes.fromhex(value)
    if len(kid) != KID_BYTES:
        raise ValueError("wrong key id length")
    return kid


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("time without an offset")
    return parsed.astimezone(UTC)


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("key times must be timezone-aware")
    return at.astimezone(UTC)


# --- files -------------------------------------------------------------------


def _private_path(folder: Path, kid: bytes) -> Path:
    return folder / "private" / f"{kid.hex()}.pem"


def _public_path(folder: Path, kid: bytes) -> Path:
    return folder / "public" / f"{kid.hex()}.pem"


def _has_private_keys(folder: Path) -> bool:
    private = folder / "private"
    return private.is_dir() and any(private.glob("*.pem"))


def _write_new_key(folder: Path) -> bytes:
    """Generate a key pair and write both halves; returns the key id.

    Written before the manifest names the key, so a crash leaves at worst an
    unused file, never a manifest entry without its key.
    """
    _ensure_dir(folder, PUBLIC_DIR_MODE)
    _ensure_dir(folder / "private", PRIVATE_DIR_MODE)
    _ensure_dir(folder / "public", PUBLIC_DIR_MODE)
    private_key = ec.generate_private_key(ec.SECP256R1())
    public_key = private_key.public_key()
    kid = kid_for(public_key)
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_atomically(_private_path(folder, kid), private_pem, PRIVATE_FILE_MODE)
    _write_atomically(_public_path(folder, kid), public_pem, PUBLIC_FILE_MODE)
    return kid


def _ensure_dir(path: Path, mode: int) -> None:
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        os.chmod(path, mode)  # mkdir's mode is filtered by the umask
    except OSError as exc:
        raise KeysError(f"cannot create {path}: {exc.strerror}") from None


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename, so a
    reader sees the old or the new file, never half of one. The temporary
    file is created with ``mode`` from the start: a private key is never
    readable by others, not even for a moment."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), mode)  # the umask may have removed bits
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        os.replace(temporary, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise KeysError(f"cannot write {path}: {exc.strerror}") from None


def _fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable (a power cut must not bring
    back a retired key)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
