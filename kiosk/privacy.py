"""Keeping the minimum: a keyed hash to match the same person across scans.

The key lives in a file beside the database, readable by the service user
only, so a copy of the database alone cannot be brute-forced back to ID
numbers (a 12-digit ID has only 10^12 values).

Subjects are namespaced by kind before hashing (:func:`subject_of`): a code
of one kind can never name another kind's person (a personal QR whose QID
reads ``STAFF:S-001`` is not staff pass S-001). The one deliberate meeting
point is ``person:``, a full 12-digit national ID number, which a chip ID
card and a personal QR showing the number in full share.

Upgrading from the unnamespaced hashes (before issue 14): every subject's
hash changes. Presence recorded before the upgrade is not matched by the new
hash, so someone inside at the upgrade is counted twice (their old row and,
if they scan again, a new one) until the old row expires after
``policy.presence_expiry_h``, and their first scan after the upgrade is
taken as an entry (anti-passback cannot see the old row). Nothing is
mis-matched: the old row simply ages out. Denylist entries made before the
upgrade are kept working by :func:`legacy_subject_hash`, checked beside the
new hash (refusing more, never admitting more).

The province key (off by default, ``privacy.province_key_file``): where the
law requires the authority to follow one person across the province's
sites, every gate of the province also hashes the same subject with one
province-wide key (:func:`load_province_key`), distributed by the province
out of band. Only that hash leaves the site, in the event's
``province_subject_hash``; the subject itself never leaves the gate, and the
site key never leaves the site.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import stat
from pathlib import Path

from kiosk.codes.base import (
    KIND_CCCD,
    KIND_DECLARATION,
    KIND_HCERT,
    KIND_PC_COVID,
    KIND_STAFF_PASS,
    Credential,
)
from kiosk.datadir import ensure_private_dir
from kiosk.errors import ConfigError, StoreError
from kiosk.tempfiles import AtomicOutput

log = logging.getLogger(__name__)

KEY_BYTES = 32


def load_or_create_key(path: Path) -> bytes:
    """Read the subject-hash key, creating it (mode 0600) on first use."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        ensure_private_dir(path.parent)
        key = secrets.token_bytes(KEY_BYTES)
        # Whole or not at all: a kill or a power cut while creating it must
        # not leave an empty key file, which would keep the gate from starting.
        try:
            with AtomicOutput(path, replace=False) as output:
                output.file.write(key)
                output.commit()
        except FileExistsError:  # another process created it first
            return load_or_create_key(path)
        log.info("created a new subject-hash key at %s", path)
        return key
    except OSError as exc:
        raise StoreError(f"cannot read the subject-hash key {path}: {exc.strerror}") from exc
    if len(key) < KEY_BYTES:
        raise StoreError(f"the subject-hash key {path} is truncated ({len(key)} bytes)")
    return key


def load_province_key(path: Path) -> bytes:
    """Read the province-wide subject-hash key; never create it.

    The province makes the key once and gives the same file to every gate
    of the province, out of band, so the same person gets the same
    ``province_subject_hash`` at every site; a gate that made its own key
    would follow no one. Refuses, with a message in Vietnamese and English
    that names the file but never its content, a key that is missing,
    unreadable, readable by other users (it would let anyone with a copy of
    a province database test ID numbers against it) or shorter than
    :data:`KEY_BYTES` bytes.
    """
    setting = "privacy.province_key_file"
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        key = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            [
                f"{setting}: không có tệp khóa cấp tỉnh {path}; chép tệp do Sở cấp vào đó, "
                "hoặc để trống thiết lập này để tắt / the province key file is missing; copy "
                "the file the province gave you there, or leave this setting empty to turn it off"
            ]
        ) from None
    except OSError as exc:
        raise ConfigError(
            [
                f"{setting}: không đọc được tệp khóa cấp tỉnh {path} ({exc.strerror}) / "
                f"cannot read the province key file ({exc.strerror})"
            ]
        ) from None
    if mode & 0o077:
        raise ConfigError(
            [
                f"{setting}: người dùng khác đọc được tệp khóa cấp tỉnh {path} (quyền "
                f"{mode:04o}); chạy `chmod 600 {path}` / the province key file is readable by "
                f"other users; run `chmod 600 {path}`"
            ]
        )
    if len(key) < KEY_BYTES:
        raise ConfigError(
            [
                f"{setting}: tệp khóa cấp tỉnh {path} quá ngắn ({len(key)} byte, cần ít nhất "
                f"{KEY_BYTES}) / the province key file is too short ({len(key)} bytes, at "
                f"least {KEY_BYTES} needed)"
            ]
        )
    log.info("province key loaded: events carry the province-wide subject hash")
    return key


def create_province_key(path: Path) -> None:
    """Make a new province-wide key, :data:`KEY_BYTES` random bytes, at ``path``.

    Done once by the province (``gatekiosk province key``), which then
    gives the same file to every gate. The file appears whole with mode
    0600 or not at all (a kill leaves no short key), and an existing file is
    never replaced (``FileExistsError``): a second key would split the
    province's hashes in two.
    """
    with AtomicOutput(path, replace=False) as output:
        output.file.write(secrets.token_bytes(KEY_BYTES))
        output.commit()
    log.info("created a new province key at %s", path)


PERSON = "person"
"""The namespace of full national ID numbers (12 digits, the chip ID card's
number), the only subject two kinds of code may share."""

_NATIONAL_ID = re.compile(r"[0-9]{12}")
_KINDS_WITH_SUBJECTS = (KIND_DECLARATION, KIND_STAFF_PASS, KIND_CCCD, KIND_PC_COVID, KIND_HCERT)
# Each ends with the only colon it has, so none is a prefix of another and
# no subject of one namespace can be spelled in another.
_NAMESPACES = (f"{PERSON}:", *(f"{kind}:" for kind in _KINDS_WITH_SUBJECTS))


def person_subject(id_number: str) -> str | None:
    """``person:<number>`` for a full 12-digit national ID number, else None."""
    number = id_number.strip()
    return f"{PERSON}:{number}" if _NATIONAL_ID.fullmatch(number) else None


def subject_of(credential: Credential) -> str:
    """The namespaced subject of ``credential``, what :func:`subject_hash` hashes.

    A chip ID card and a personal QR carrying a full 12-digit ID number are
    ``person:<number>``. Everything else is ``<kind>:<subject_id>``: a
    personal QR's QID (or its masked ID field), a staff pass id, an HC1:
    holder, a declaration's code id. A personal QR shown once with the ID
    masked and once in full is therefore two subjects; the unsigned QID is
    never trusted to stand for a person.
    """
    if credential.kind in (KIND_CCCD, KIND_PC_COVID) and credential.id_number:
        person = person_subject(credential.id_number)
        if person is not None:
            return person
    return f"{credential.kind}:{credential.subject_id}"


def typed_id_subject(id_number: str) -> str:
    """The subject of an ID number a manager typed (the denylist form):
    ``person:`` for a full 12-digit number; any other number (a 9-digit CMND,
    a passport) as a personal QR without QID shows it in its ID field."""
    return person_subject(id_number) or f"{KIND_PC_COVID}:{id_number.strip()}"


def subject_hash(key: bytes, subject: str) -> str:
    """A stable, keyed, non-reversible identifier for a namespaced subject
    (hex, 128 bits); see :func:`subject_of`.

    Raises ValueError for a subject without a known namespace: a raw id
    hashed here could collide with another kind's person.
    """
    subject = subject.strip()
    if not subject.startswith(_NAMESPACES):
        raise ValueError("a subject must be namespaced (person: or <kind>:)")
    return _hmac_hex(key, subject)


def legacy_subject_hash(key: bytes, credential: Credential) -> str:
    """The hash ``credential``'s holder had before subjects were namespaced.

    Only for the denylist, so that entries made before the upgrade keep
    refusing their person; it is never used to admit anyone or to match
    presence, since it is the hash another kind's code could forge.
    """
    return _hmac_hex(key, credential.subject_id)


def _hmac_hex(key: bytes, text: str) -> str:
    digest = hmac.new(key, text.strip().upper().encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[:32]
