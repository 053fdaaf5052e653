"""The hub's PKI folder: which gates are in, which are out.

The certificates themselves are made by :mod:`kiosk.site.pki`; this module
keeps them on the hub's disk, in a layout the broker's configuration points
at, and answers the questions enrolment asks: is this gate already in, is
it revoked, which gates must the broker's ACL shut out.

Layout (:class:`PkiPaths`)::

    ca.pem                 the site CA's certificate (what every gate trusts)
    crl.pem                the revocation list the broker reads
    hub/server.pem         the broker's server certificate
    hub/client.pem         the hub's own client certificate (CN "hub")
    gates/<gate-id>.pem    the current certificate of each enrolled gate
    private/               0700; every private key, 0600:
      ca.key  server.key  hub-client.key

A gate's own private key never comes here: the gate makes its key pair and
sends only the public key (:func:`enrol_gate` takes a public key). The
files of ``gates/`` together with ``crl.pem`` are the register of who is in.

Example (on the hub)::

    paths = PkiPaths(data_dir / "site" / "pki")
    init_site_pki(paths, "factory-1", ["hub.local", "192.168.1.10"], now=clock.now())
    enrol_gate(paths, "main-gate", gate_public_key, now=clock.now())
    revoke_gate(paths, "main-gate", now=clock.now())
    # then rewrite the broker's ACL with blocked_gate_ids(paths) and reload it
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kiosk.site import SiteError
from kiosk.site.files import PRIVATE_DIR_MODE, PUBLIC_DIR_MODE, ensure_dir
from kiosk.site.pki import (
    CLOCK_MARGIN,
    CertificateAuthority,
    create_ca,
    identity_of,
    is_revoked,
    issue_crl,
    issue_gate_certificate,
    issue_hub_certificate,
    issue_server_certificate,
    load_certificate,
    load_crl,
    load_private_key,
    new_private_key,
    write_certificate,
    write_crl,
    write_private_key,
)
from kiosk.site.topics import check_gate_id, check_site_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PkiPaths:
    """Where the hub keeps its PKI files (see the module docstring)."""

    folder: Path

    @property
    def ca_certificate(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def crl(self) -> Path:
        return self.folder / "crl.pem"

    @property
    def server_certificate(self) -> Path:
        return self.folder / "hub" / "server.pem"

    @property
    def hub_certificate(self) -> Path:
        return self.folder / "hub" / "client.pem"

    @property
    def private(self) -> Path:
        return self.folder / "private"

    @property
    def ca_key(self) -> Path:
        return self.private / "ca.key"

    @property
    def server_key(self) -> Path:
        return self.private / "server.key"

    @property
    def hub_key(self) -> Path:
        return self.private / "hub-client.key"

    @property
    def gates(self) -> Path:
        return self.folder / "gates"

    def gate_certificate(self, gate_id: str) -> Path:
        return self.gates / f"{check_gate_id(gate_id)}.pem"


# --- the hub's PKI folder ----------------------------------------------------


def init_site_pki(
    paths: PkiPaths, site_id: str, hub_hosts: Sequence[str], *, now: datetime
) -> CertificateAuthority:
    """Create the site CA, the hub's server and client certificates and an
    empty CRL in ``paths.folder``.

    Refused when a CA already exists there: a second ``init`` must never
    silently replace the CA every enrolled gate trusts.
    """
    if paths.ca_certificate.exists() or paths.ca_key.exists():
        raise SiteError(
            f"a site CA already exists in {paths.folder}; move the folder away to start over"
            " (every gate would then have to join again)"
        )
    ensure_dir(paths.folder, PUBLIC_DIR_MODE)
    ensure_dir(paths.private, PRIVATE_DIR_MODE)
    ensure_dir(paths.server_certificate.parent, PUBLIC_DIR_MODE)
    ensure_dir(paths.gates, PUBLIC_DIR_MODE)
    ca = create_ca(site_id, now=now)
    server_key = new_private_key()
    server = issue_server_certificate(ca, server_key.public_key(), hub_hosts, now=now)
    hub_key = new_private_key()
    hub = issue_hub_certificate(ca, hub_key.public_key(), now=now)
    # Keys before the certificates that name them: a crash leaves an unused
    # key, never a certificate whose key is missing.
    write_private_key(paths.server_key, server_key)
    write_private_key(paths.hub_key, hub_key)
    write_certificate(paths.server_certificate, server)
    write_certificate(paths.hub_certificate, hub)
    write_crl(paths.crl, issue_crl(ca, (), number=1, now=now))
    # The CA last: its presence means "initialised".
    write_private_key(paths.ca_key, ca.private_key)
    write_certificate(paths.ca_certificate, ca.certificate)
    log.info("created the CA of site %s in %s", site_id, paths.folder)
    return ca


def load_ca(paths: PkiPaths) -> CertificateAuthority:
    """The site CA from ``paths``; refuses a key others can read or that does
    not belong to the certificate."""
    certificate = load_certificate(paths.ca_certificate)
    key = load_private_key(paths.ca_key)
    if key.public_key() != certificate.public_key():
        raise SiteError(f"{paths.ca_key} is not the key of {paths.ca_certificate}")
    units = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if len(units) != 1 or not isinstance(units[0].value, str):
        raise SiteError(f"{paths.ca_certificate} names no site")
    return CertificateAuthority(check_site_id(units[0].value), certificate, key)


def enrol_gate(
    paths: PkiPaths, gate_id: str, public_key: ec.EllipticCurvePublicKey, *, now: datetime
) -> x509.Certificate:
    """Issue and record the certificate of gate ``gate_id`` for its public key.

    Refused while the gate has a certificate that is not revoked: a gate
    joining again (new SD card) may hold a key that is still valid on a
    stolen card, so that one is revoked first (:func:`revoke_gate`).
    """
    target = paths.gate_certificate(gate_id)
    if target.exists() and not is_revoked(load_crl(paths.crl), load_certificate(target)):
        raise SiteError(
            f"gate {gate_id!r} already has a valid certificate; revoke it before it joins again"
        )
    ca = load_ca(paths)
    certificate = issue_gate_certificate(ca, gate_id, public_key, now=now)
    write_certificate(target, certificate)
    log.info("enrolled gate %s (certificate %x)", gate_id, certificate.serial_number)
    return certificate


def revoke_gate(paths: PkiPaths, gate_id: str, *, now: datetime) -> x509.CertificateRevocationList:
    """Revoke gate ``gate_id``'s current certificate and rewrite the CRL.

    The broker keeps using the old CRL until it is reloaded
    (:func:`kiosk.site.broker.reload_broker`); a connection the gate already
    has is cut by the ACL, which denies a revoked gate everything
    (:func:`blocked_gate_ids`). Revoking twice is harmless.
    """
    certificate = load_certificate(paths.gate_certificate(gate_id))
    ca = load_ca(paths)
    current = load_crl(paths.crl)
    if not current.is_signature_valid(ca.private_key.public_key()):
        raise SiteError(f"{paths.crl} is not signed by this site's CA")
    if is_revoked(current, certificate):
        return current
    revoked = [(entry.serial_number, entry.revocation_date_utc) for entry in current]
    revoked.append((certificate.serial_number, now))
    crl = issue_crl(
        ca,
        revoked,
        number=_crl_number(current) + 1,
        now=now,
        not_before=current.last_update_utc + timedelta(seconds=1),
    )
    write_crl(paths.crl, crl)
    log.warning("revoked gate %s (certificate %x)", gate_id, certificate.serial_number)
    return crl


def blocked_gate_ids(paths: PkiPaths) -> tuple[str, ...]:
    """Gates whose current certificate is revoked, sorted: the broker's ACL
    denies them everything, which also cuts a connection made before the
    revocation (Mosquitto checks a new CRL only at the next TLS handshake)."""
    if not paths.gates.is_dir():
        return ()
    crl = load_crl(paths.crl)
    blocked = []
    for path in sorted(paths.gates.glob("*.pem")):
        certificate = load_certificate(path)
        if is_revoked(crl, certificate):
            blocked.append(check_gate_id(identity_of(certificate)))
    return tuple(blocked)


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


# --- one-time enrolment tokens -------------------------------------------------

# How long a token shown on the hub's page may be used, and how many random
# characters it has (base32: 16 characters are 80 bits).
TOKEN_TTL = timedelta(hours=1)
TOKEN_CHARS = 16
# No I, O, 0, 1: a token is read aloud and typed at a gate.
_TOKEN_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # noqa: S105 (an alphabet, not a secret)


def new_enrolment_token() -> str:
    """A fresh one-time token, in groups of four (``ABCD-EFGH-JKLM-NPQR``).

    Only its :func:`token_hash` is stored; the manager reads the token on
    the hub's page and types it at the gate.
    """
    raw = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(TOKEN_CHARS))
    return "-".join(raw[i : i + 4] for i in range(0, TOKEN_CHARS, 4))


def token_hash(token: str) -> str:
    """The stored form of a token: SHA-256 (hex) of its characters, ignoring
    case, spaces and dashes (a token copied by hand still matches)."""
    normal = "".join(ch for ch in token.upper() if ch not in " -\t")
    return hashlib.sha256(normal.encode("ascii", "replace")).hexdigest()


def ca_fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the CA certificate (DER), hex in groups of four.

    Shown beside the token on the hub's page and given to ``gatekiosk site
    join --ca``: the gate trusts the CA it downloads only if it has this
    fingerprint, so the first contact is not a leap of faith.
    """
    digest = certificate.fingerprint(hashes.SHA256()).hex().upper()
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def same_fingerprint(expected: str, certificate: x509.Certificate) -> bool:
    """Whether ``expected`` (any case and separators) is ``certificate``'s fingerprint."""
    wanted = "".join(ch for ch in expected.upper() if ch in "0123456789ABCDEF")
    actual = certificate.fingerprint(hashes.SHA256()).hex().upper()
    return hmac.compare_digest(wanted, actual)


def enrolled_gates(paths: PkiPaths) -> list[EnrolledGate]:
    """Every gate with a certificate in ``paths``, by id, with whether it is revoked."""
    if not paths.gates.is_dir():
        return []
    crl = load_crl(paths.crl)
    gates = []
    for path in sorted(paths.gates.glob("*.pem")):
        certificate = load_certificate(path)
        gates.append(
            EnrolledGate(
                gate_id=identity_of(certificate),
                serial=f"{certificate.serial_number:x}",
                enrolled_at=certificate.not_valid_before_utc + CLOCK_MARGIN,
                revoked=is_revoked(crl, certificate),
            )
        )
    return gates


@dataclass(frozen=True)
class EnrolledGate:
    """One line of the hub's register of gates."""

    gate_id: str
    serial: str
    enrolled_at: datetime
    revoked: bool
