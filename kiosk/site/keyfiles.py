"""The site's public signing keys as they travel from the hub to its gates.

The hub's keys folder (:mod:`kiosk.keys`) holds the manifest ``keys.json``,
``public/<kid>.pem`` and ``private/``; a gate gets the manifest and the
public files only, by ``gatekiosk site join`` and then by the ``keys``
document. Installing them writes every public file first and the manifest
last, each by atomic rename, so the kiosk (which watches the manifest)
sees the old set or the new one, never a manifest naming a missing file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kiosk.keys import MANIFEST_NAME, KeysError, kid_for, load_keyring
from kiosk.site import SiteError
from kiosk.site.files import PUBLIC_DIR_MODE, PUBLIC_FILE_MODE, ensure_dir, write_atomically

log = logging.getLogger(__name__)


def public_keys_body(keys_dir: Path) -> dict[str, Any]:
    """The manifest (as text) and every public key (PEM text by kid hex) of ``keys_dir``.

    Only public files are read; the result is what a gate may hold.
    """
    try:
        ring = load_keyring(keys_dir)  # checks the manifest and every public file
        manifest = (keys_dir / MANIFEST_NAME).read_text(encoding="utf-8")
    except (KeysError, OSError) as exc:
        raise SiteError(f"cannot read the site's public keys: {exc}") from None
    public = {}
    for key in ring.keys:
        public[key.kid_hex] = key.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")
    return {"manifest": manifest, "public": public}


def check_public_keys_body(body: Any) -> tuple[str, dict[str, bytes]]:
    """The manifest text and PEM bytes by kid hex of a body from the hub;
    raises :class:`SiteError` unless every key the manifest lists is there,
    is an ECDSA P-256 public key and has the kid its name says."""
    if not isinstance(body, dict) or not isinstance(body.get("manifest"), str):
        raise SiteError("the public keys are not in the expected form")
    public = body.get("public")
    if not isinstance(public, dict):
        raise SiteError("the public keys are not in the expected form")
    try:
        listed = [str(item["kid"]) for item in json.loads(body["manifest"])["keys"]]
    except (ValueError, KeyError, TypeError):
        raise SiteError("the key manifest is not valid") from None
    files = {}
    for kid_hex in listed:
        pem = public.get(kid_hex)
        if not isinstance(pem, str):
            raise SiteError(f"the public key {kid_hex[:16]} is missing")
        try:
            key = serialization.load_pem_public_key(pem.encode("ascii"))
        except (ValueError, UnicodeError):
            raise SiteError(f"the public key {kid_hex[:16]} is not PEM") from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or kid_for(key).hex() != kid_hex:
            raise SiteError(f"the public key {kid_hex[:16]} is not the key its name says")
        files[kid_hex] = pem.encode("ascii")
    return body["manifest"], files


def install_public_keys(keys_dir: Path, body: Any) -> None:
    """Write the site's public keys into ``keys_dir``: public files, then the manifest.

    Private keys in ``keys_dir`` (if any) are left alone. Raises
    :class:`SiteError` for a body that is not a valid set of keys, before
    writing anything.
    """
    manifest, files = check_public_keys_body(body)
    ensure_dir(keys_dir, PUBLIC_DIR_MODE)
    ensure_dir(keys_dir / "public", PUBLIC_DIR_MODE)
    for kid_hex, pem in files.items():
        write_atomically(keys_dir / "public" / f"{kid_hex}.pem", pem, PUBLIC_FILE_MODE)
    write_atomically(keys_dir / MANIFEST_NAME, manifest.encode("utf-8"), PUBLIC_FILE_MODE)
    log.info("installed %d site public keys in %s", len(files), keys_dir)
