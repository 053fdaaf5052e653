"""Keeping the minimum: a keyed hash to match the same person across scans.

The key lives in a file beside the database, readable by the service user
only, so a copy of the database alone cannot be brute-forced back to ID
numbers (a 12-digit ID has only 10^12 values).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from pathlib import Path

from kiosk.errors import StoreError
from kiosk.tempfiles import AtomicOutput

log = logging.getLogger(__name__)

KEY_BYTES = 32


def load_or_create_key(path: Path) -> bytes:
    """Read the subject-hash key, creating it (mode 0600) on first use."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
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


def subject_hash(key: bytes, subject_id: str) -> str:
    """A stable, keyed, non-reversible identifier for a subject (hex, 128 bits)."""
    digest = hmac.new(key, subject_id.strip().upper().encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[:32]
