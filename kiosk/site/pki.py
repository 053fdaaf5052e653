"""The site's certificate authority: who may talk to the hub's broker.

Every gate of a site connects to the hub's Mosquitto broker over TLS with a
client certificate issued by the site's own CA; the broker takes the
certificate's common name as the MQTT username (``use_identity_as_username``)
and its ACL lets that name write only under its own topics. So:

- the common name of a gate's certificate **is** its gate id, checked
  against the safe charset of :mod:`kiosk.site.topics` before signing;
- the hub has two certificates: a server certificate for the broker (its host
  names and IP addresses as subjectAltName, so gates can check they reach
  the real hub) and a client certificate named :data:`HUB_IDENTITY` for
  ``gatekiosk hub`` itself;
- a stolen gate is shut out by revoking its certificate: :func:`issue_crl`
  lists its serial number in the revocation list (CRL) the broker reads, and
  the broker is told to read it again (:func:`kiosk.site.broker.reload_broker`).

All keys are ECDSA P-256. Certificates are backdated by
:data:`CLOCK_MARGIN` because a Raspberry Pi has no real-time clock: a gate
whose clock is a few hours behind must still accept the hub's certificate.
They are long-lived (revocation, not expiry, is how access ends): a gate
that cannot reach the hub for months must not find itself locked out by a
date.

The files of the hub's PKI folder, and enrolment and revocation on them,
are in :mod:`kiosk.site.enrolment`.

Library functions never read the clock: every time is an argument (``now``,
timezone-aware).

Example::

    ca = create_ca("factory-1", now=clock.now())
    gate_key = new_private_key()                      # made on the gate
    certificate = issue_gate_certificate(ca, "main-gate", gate_key.public_key(),
                                         now=clock.now())
"""

from __future__ import annotations

import ipaddress
import logging
import re
import ssl
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kiosk.site import SiteError
from kiosk.site.files import (
    PRIVATE_FILE_MODE,
    PUBLIC_FILE_MODE,
    write_atomically,
)
from kiosk.site.topics import HUB_IDENTITY, check_gate_id, check_site_id

log = logging.getLogger(__name__)

ORGANIZATION = "gatekiosk"
CA_COMMON_NAME = "gatekiosk site CA"

# Backdating of every certificate and CRL: a Pi without a real-time clock
# may be hours behind; one day covers it.
CLOCK_MARGIN = timedelta(days=1)
CA_VALID = timedelta(days=30 * 365)
GATE_VALID = timedelta(days=20 * 365)
SERVER_VALID = timedelta(days=20 * 365)
# A CRL past its next-update time makes OpenSSL refuse *every* client, so
# it is issued far ahead; it is reissued at each revocation anyway.
CRL_VALID = timedelta(days=20 * 365)

_DNS_NAME = re.compile(r"(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+")


@dataclass(frozen=True)
class CertificateAuthority:
    """The site CA: its certificate, its private key and the site it serves."""

    site_id: str
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @property
    def name(self) -> x509.Name:
        return self.certificate.subject


# --- keys and certificates (pure) --------------------------------------------


def new_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key (the only kind this PKI issues for)."""
    return ec.generate_private_key(ec.SECP256R1())


def create_ca(site_id: str, *, now: datetime) -> CertificateAuthority:
    """A new self-signed CA for ``site_id``.

    It may sign end certificates only (path length 0) and the CRL; the site
    id is in its organisational unit so a gate can tell one site's CA from
    another's.
    """
    check_site_id(site_id)
    key = new_private_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, site_id),
        ]
    )
    start = _utc_seconds(now) - CLOCK_MARGIN
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + CA_VALID)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(site_id, certificate, key)


def issue_gate_certificate(
    ca: CertificateAuthority,
    gate_id: str,
    public_key: ec.EllipticCurvePublicKey,
    *,
    now: datetime,
) -> x509.Certificate:
    """A client certificate for gate ``gate_id``: its common name is the gate id.

    Refuses an id outside the safe charset or reserved for the hub (raises
    :class:`SiteError`): the name becomes an MQTT username, a client id and
    a topic level. Usable for TLS client authentication only, so a gate's
    certificate can never pose as the broker.
    """
    check_gate_id(gate_id)
    return _issue_client(ca, gate_id, public_key, now=now)


def issue_hub_certificate(
    ca: CertificateAuthority, public_key: ec.EllipticCurvePublicKey, *, now: datetime
) -> x509.Certificate:
    """The client certificate of ``gatekiosk hub`` (common name :data:`HUB_IDENTITY`)."""
    return _issue_client(ca, HUB_IDENTITY, public_key, now=now)


def issue_server_certificate(
    ca: CertificateAuthority,
    public_key: ec.EllipticCurvePublicKey,
    hosts: Sequence[str],
    *,
    now: datetime,
) -> x509.Certificate:
    """The broker's certificate, valid for each of ``hosts``.

    ``hosts`` are the names and addresses gates will use to reach the hub
    (``"hub.local"``, ``"192.168.1.10"``, ``"::1"``); each becomes a DNS or
    IP subjectAltName, which is what TLS clients check. The first is also
    the common name, for people reading the certificate.
    """
    if not hosts:
        raise SiteError("the hub's server certificate needs at least one host name or address")
    alt_names: list[x509.GeneralName] = [_alt_name(host) for host in hosts]
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, hosts[0]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ca.site_id),
        ]
    )
    return (
        _end_entity_builder(ca, subject, public_key, now=now, valid=SERVER_VALID)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca.private_key, hashes.SHA256())
    )


def issue_crl(
    ca: CertificateAuthority,
    revoked: Iterable[tuple[int, datetime]],
    *,
    number: int,
    now: datetime,
    not_before: datetime | None = None,
) -> x509.CertificateRevocationList:
    """A CRL revoking each ``(serial number, revocation time)`` in ``revoked``.

    ``number`` is the CRL number, one more at each issue. Its last-update
    time is ``now`` backdated by :data:`CLOCK_MARGIN`, but never earlier
    than ``not_before`` (pass the previous CRL's last update plus a second):
    where OpenSSL holds several CRLs of one CA, it trusts the newest.
    """
    last_update = _utc_seconds(now) - CLOCK_MARGIN
    if not_before is not None and last_update < not_before:
        last_update = _utc_seconds(not_before)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.name)
        .last_update(last_update)
        .next_update(last_update + CRL_VALID)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False,
        )
    )
    for serial, revoked_at in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(_utc_seconds(revoked_at))
            .build()
        )
    return builder.sign(ca.private_key, hashes.SHA256())


def identity_of(certificate: x509.Certificate) -> str:
    """The certificate's common name: what the broker takes as the username."""
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise SiteError("a site certificate has exactly one common name")
    value = names[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def is_revoked(crl: x509.CertificateRevocationList, certificate: x509.Certificate) -> bool:
    return crl.get_revoked_certificate_by_serial_number(certificate.serial_number) is not None


# --- TLS for clients ---------------------------------------------------------


def client_ssl_context(ca_file: Path, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A TLS context for an MQTT client of the site (a gate, or the hub itself).

    It trusts the site CA only (not the system's CAs), checks the broker's
    host name against its certificate, presents the client certificate, and
    speaks TLS 1.2 or newer. Give it to paho-mqtt with ``tls_set_context``.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies and checks host names
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cafile=str(ca_file))
        context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    except (OSError, ssl.SSLError) as exc:
        raise SiteError(f"cannot load the site's TLS files: {exc}") from None
    return context


# --- files -------------------------------------------------------------------


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """PKCS#8 PEM, unencrypted (services start unattended), mode 0600."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomically(path, pem, PRIVATE_FILE_MODE)


def write_certificate(path: Path, certificate: x509.Certificate) -> None:
    write_atomically(path, certificate.public_bytes(serialization.Encoding.PEM), PUBLIC_FILE_MODE)


def write_crl(path: Path, crl: x509.CertificateRevocationList) -> None:
    write_atomically(path, crl.public_bytes(serialization.Encoding.PEM), PUBLIC_FILE_MODE)


def load_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(path))
    except ValueError:
        raise SiteError(f"{path} is not a PEM certificate") from None


def load_crl(path: Path) -> x509.CertificateRevocationList:
    try:
        return x509.load_pem_x509_crl(_read(path))
    except ValueError:
        raise SiteError(f"{path} is not a PEM revocation list") from None


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key; refused when other users could read the file."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise SiteError(f"cannot read {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise SiteError(
            f"the private key {path} is readable by other users (mode {mode:04o});"
            f" run `chmod 600 {path}`"
        )
    try:
        key = serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError):
        raise SiteError(f"{path} is not an unencrypted PEM private key") from None
    if not (isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)):
        raise SiteError(f"{path} is not an ECDSA P-256 private key")
    return key


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SiteError(f"{path} is missing; run `gatekiosk site init` on the hub") from None
    except OSError as exc:
        raise SiteError(f"cannot read {path}: {exc.strerror}") from None


# --- helpers -----------------------------------------------------------------


def _issue_client(
    ca: CertificateAuthority,
    common_name: str,
    public_key: ec.EllipticCurvePublicKey,
    *,
    now: datetime,
) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ca.site_id),
        ]
    )
    return (
        _end_entity_builder(ca, subject, public_key, now=now, valid=GATE_VALID)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([client_uri(ca.site_id, common_name)]), False)
        .sign(ca.private_key, hashes.SHA256())
    )


def client_uri(site_id: str, identity: str) -> x509.UniformResourceIdentifier:
    """The subjectAltName of a client certificate, ``urn:gatekiosk:<site>:<identity>``.

    Mosquitto reads the common name; strict verifiers (RFC 5280 profiles, as
    in ``cryptography.x509.verification``) want a subjectAltName too, and
    this one also says which site the identity belongs to.
    """
    return x509.UniformResourceIdentifier(f"urn:gatekiosk:{site_id}:{identity}")


def _end_entity_builder(
    ca: CertificateAuthority,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    *,
    now: datetime,
    valid: timedelta,
) -> x509.CertificateBuilder:
    if not (
        isinstance(public_key, ec.EllipticCurvePublicKey)
        and isinstance(public_key.curve, ec.SECP256R1)
    ):
        raise SiteError("site certificates are issued for ECDSA P-256 keys only")
    start = _utc_seconds(now) - CLOCK_MARGIN
    end = min(start + valid, ca.certificate.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False,
        )
    )


def _alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _DNS_NAME.fullmatch(host):
        raise SiteError(f"{host!r} is neither an IP address nor a host name")
    return x509.DNSName(host.rstrip(".").lower())


def _utc_seconds(at: datetime) -> datetime:
    """``at`` in UTC, whole seconds (certificates hold no fractions)."""
    if at.tzinfo is None:
        raise ValueError("certificate times must be timezone-aware")
    return at.astimezone(UTC).replace(microsecond=0)
