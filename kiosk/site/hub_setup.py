"""The hub's site folder: ``gatekiosk site init`` and what a joining gate receives.

Layout of ``site.dir`` on the hub::

    hub.json        the site id, the broker's address for gates, the hub's host names
    pki/            the site CA, the hub's certificates, the CRL, every gate's
                    certificate (:class:`kiosk.site.enrolment.PkiPaths`)
    broker/         mosquitto.conf and acl (point ``mosquitto -c`` here)

Beside it, in the data folder as for a single gate: the site's subject-hash
key (``subject.key``, the ONE key every gate of the site hashes with) and
the site's signing keys (``keys/``, :mod:`kiosk.keys`). Private keys never
leave the hub: a joining gate gets the CA certificate, its own certificate
(for a key pair it made itself), the subject-hash key, the public signing
keys and the broker's address (:func:`enrolment_answer`).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kiosk.keys import MANIFEST_NAME, init_keys
from kiosk.privacy import load_or_create_key
from kiosk.site import SiteError
from kiosk.site.broker import DEFAULT_PORT, BrokerConfig, write_broker_files
from kiosk.site.enrolment import (
    PkiPaths,
    blocked_gate_ids,
    enrol_gate,
    enrolled_gates,
    init_site_pki,
    load_ca,
)
from kiosk.site.files import PUBLIC_FILE_MODE, write_atomically
from kiosk.site.keyfiles import public_keys_body
from kiosk.site.pki import load_certificate
from kiosk.site.topics import check_gate_id, check_site_id

log = logging.getLogger(__name__)

HUB_FILE = "hub.json"


@dataclass(frozen=True)
class HubFolder:
    """The hub's ``site.dir`` (see the module docstring)."""

    folder: Path

    @property
    def pki(self) -> PkiPaths:
        return PkiPaths(self.folder / "pki")

    @property
    def broker_dir(self) -> Path:
        return self.folder / "broker"

    @property
    def description_path(self) -> Path:
        return self.folder / HUB_FILE

    def is_initialised(self) -> bool:
        return self.description_path.exists() and self.pki.ca_certificate.exists()

    def description(self) -> HubDescription:
        try:
            data = json.loads(self.description_path.read_text(encoding="utf-8"))
            return HubDescription(
                site_id=check_site_id(data["site"]),
                hosts=tuple(str(h) for h in data["hosts"]),
                broker_port=int(data["broker_port"]),
            )
        except FileNotFoundError:
            raise SiteError(
                f"this machine is not a site's hub ({self.description_path} is missing);"
                " run `gatekiosk site init` first"
            ) from None
        except (OSError, ValueError, KeyError, TypeError):
            raise SiteError(f"{self.description_path} is not a valid hub description") from None


@dataclass(frozen=True)
class HubDescription:
    """What the hub tells gates about itself. ``hosts[0]`` is the address gates use."""

    site_id: str
    hosts: tuple[str, ...]
    broker_port: int

    @property
    def broker_address(self) -> str:
        host = self.hosts[0]
        return f"[{host}]:{self.broker_port}" if ":" in host else f"{host}:{self.broker_port}"


@dataclass(frozen=True)
class InitReport:
    """What ``site init`` made (True) or found and kept (False)."""

    created_ca: bool
    created_hash_key: bool
    created_signing_keys: bool
    broker_config: Path


def init_hub(
    hub: HubFolder,
    *,
    site_id: str,
    hosts: Sequence[str],
    broker_port: int = DEFAULT_PORT,
    keys_dir: Path,
    hash_key_path: Path,
    now: datetime,
    broker_options: dict[str, Any] | None = None,
) -> InitReport:
    """Make this machine the hub of ``site_id``; safe to run again.

    The CA is made once and never replaced (a CA of another site in the
    folder is refused); the subject-hash key and the signing keys are made
    if missing and kept otherwise; the broker's files and ``hub.json`` are
    written every time (they follow from the rest).
    """
    check_site_id(site_id)
    if not hosts:
        raise SiteError("name at least one host name or address gates reach the hub at")
    pki = hub.pki
    created_ca = not pki.ca_certificate.exists()
    if created_ca:
        init_site_pki(pki, site_id, list(hosts), now=now)
    elif load_ca(pki).site_id != site_id:
        raise SiteError(
            f"{pki.folder} holds the CA of site {load_ca(pki).site_id!r}, not {site_id!r};"
            " a CA is never replaced"
        )
    config = BrokerConfig.for_site(
        hub.broker_dir, pki, site_id, port=broker_port, **(broker_options or {})
    )
    write_broker_files(config, blocked_gates=blocked_gate_ids(pki))
    created_hash_key = not hash_key_path.exists()
    load_or_create_key(hash_key_path)
    created_keys = not (keys_dir / MANIFEST_NAME).exists()
    if created_keys:
        init_keys(keys_dir, at=now)
    description = {"site": site_id, "hosts": list(hosts), "broker_port": broker_port}
    write_atomically(
        hub.description_path,
        (json.dumps(description, indent=2) + "\n").encode("utf-8"),
        PUBLIC_FILE_MODE,
    )
    log.info("hub of site %s ready in %s", site_id, hub.folder)
    return InitReport(created_ca, created_hash_key, created_keys, config.config_path)


def parse_public_key(pem: str) -> ec.EllipticCurvePublicKey:
    """A gate's public key from its PEM text; SiteError unless ECDSA P-256."""
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeError, TypeError):
        raise SiteError("the gate's public key is not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SiteError("the gate's public key is not an ECDSA P-256 key")
    return key


def check_can_enrol(hub: HubFolder, gate_id: str) -> None:
    """Raise SiteError if ``gate_id`` is not a valid gate id or is already in
    (checked before the token is spent)."""
    check_gate_id(gate_id)
    for gate in enrolled_gates(hub.pki):
        if gate.gate_id == gate_id and not gate.revoked:
            raise SiteError(
                f"gate {gate_id!r} is already in the site; revoke it on the hub"
                " (`gatekiosk site revoke`) before it joins again"
            )


def enrolment_answer(
    hub: HubFolder,
    *,
    gate_id: str,
    public_key: ec.EllipticCurvePublicKey,
    keys_dir: Path,
    hash_key_path: Path,
    now: datetime,
) -> dict[str, Any]:
    """Enrol ``gate_id`` and return what it receives (JSON-ready).

    The subject-hash key is a secret: this answer travels over TLS to a
    gate that proved a one-time token, and is never logged.
    """
    description = hub.description()
    certificate = enrol_gate(hub.pki, gate_id, public_key, now=now)
    ca = load_certificate(hub.pki.ca_certificate)
    pem = serialization.Encoding.PEM
    return {
        "v": 1,
        "site": description.site_id,
        "gate": gate_id,
        "broker": description.broker_address,
        "certificate": certificate.public_bytes(pem).decode("ascii"),
        "ca": ca.public_bytes(pem).decode("ascii"),
        "subject_key": base64.b64encode(load_or_create_key(hash_key_path)).decode("ascii"),
        "keys": public_keys_body(keys_dir),
    }
