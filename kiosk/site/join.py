"""A gate joins a site: ``gatekiosk site join HUB --token T --ca FINGERPRINT``.

The manager opens the hub's "Gates" page, which shows a one-time token
(valid one hour, used once) and the fingerprint of the site CA. At the gate:

1. the gate downloads the CA certificate from the hub over TLS and keeps it
   only if its SHA-256 fingerprint is the one the manager typed: no trust
   on first use;
2. it makes its own key pair (the private key never leaves the gate) and
   sends the public key with the token, over TLS that now trusts that CA
   only and checks the hub's host name;
3. the hub answers with the gate's certificate, the CA, the site's
   subject-hash key, the site's public signing keys and the broker's
   address; the gate writes them (secrets 0600, each file by atomic
   rename) and the ``[site]`` settings.

Layout of ``site.dir`` on a gate (:class:`GateSiteFiles`)::

    site.json          site id, gate id, broker address
    ca.pem             the site CA (what the gate trusts the broker by)
    gate.pem           this gate's certificate (its common name is the gate id)
    gate.key           this gate's private key, 0600
    subject.key        the site's subject-hash key, 0600 (also installed as
                       the gate's own ``subject.key``, so the kiosk hashes with it)

The public signing keys go to the gate's keys folder, where the kiosk
already reads them.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from kiosk.config import Settings
from kiosk.privacy import KEY_BYTES
from kiosk.site import SiteError
from kiosk.site.enrolment import same_fingerprint
from kiosk.site.files import (
    PRIVATE_FILE_MODE,
    PUBLIC_DIR_MODE,
    PUBLIC_FILE_MODE,
    ensure_dir,
    write_atomically,
)
from kiosk.site.keyfiles import install_public_keys
from kiosk.site.pki import identity_of, load_certificate, new_private_key, write_private_key
from kiosk.site.topics import check_gate_id, check_site_id

log = logging.getLogger(__name__)

ENROL_PATH = "/site/enrol"
CA_PATH = "/site/enrol/ca"
TIMEOUT_S = 20.0
MAX_ANSWER_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class GateSiteFiles:
    """A gate's ``site.dir`` (see the module docstring)."""

    folder: Path

    @property
    def description_path(self) -> Path:
        return self.folder / "site.json"

    @property
    def ca_certificate(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def certificate(self) -> Path:
        return self.folder / "gate.pem"

    @property
    def key(self) -> Path:
        return self.folder / "gate.key"

    @property
    def subject_key(self) -> Path:
        return self.folder / "subject.key"

    @property
    def resync_request(self) -> Path:
        """The hub's last resync request this gate carried out (see gate_sync)."""
        return self.folder / "resync-request"

    def site_id(self) -> str:
        """The site's id, from the certificate's organisational unit (set by the site CA)."""
        units = load_certificate(self.certificate).subject.get_attributes_for_oid(
            x509.oid.NameOID.ORGANIZATIONAL_UNIT_NAME
        )
        if len(units) != 1 or not isinstance(units[0].value, str):
            raise SiteError(f"{self.certificate} names no site; join the site again")
        return units[0].value

    def gate_id(self) -> str:
        """The gate's id, its certificate's common name."""
        return identity_of(load_certificate(self.certificate))

    def description(self) -> GateSite:
        try:
            data = json.loads(self.description_path.read_text(encoding="utf-8"))
            return GateSite(
                check_site_id(data["site"]), check_gate_id(data["gate"]), data["broker"]
            )
        except FileNotFoundError:
            raise SiteError(
                f"this gate has not joined a site ({self.description_path} is missing)"
            ) from None
        except (OSError, ValueError, KeyError, TypeError):
            raise SiteError(f"{self.description_path} is not a valid site description") from None


@dataclass(frozen=True)
class GateSite:
    """The site a gate joined."""

    site_id: str
    gate_id: str
    broker: str


def is_site_gate(settings: Settings) -> bool:
    """Whether this machine is a gate of a site (not standalone, not the hub):
    its settings, denylist and trust list then come from the hub."""
    if not settings["site.hub"]:
        return False
    return not (settings.site_dir / "hub.json").exists()


def split_address(address: str, *, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` as (host, port)."""
    match = re.fullmatch(
        r"\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?|([^:\[\]\s]+)(?::(\d{1,5}))?", address
    )
    if match is None:
        raise SiteError(f"{address!r} is not host:port")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4) or default_port)
    if not 0 < port < 65536:
        raise SiteError(f"{address!r}: {port} is not a TCP port")
    return host, port


def join_site(
    hub_address: str,
    *,
    token: str,
    fingerprint: str,
    gate_id: str,
    files: GateSiteFiles,
    keys_dir: Path,
    hash_key_path: Path,
    default_port: int,
    timeout_s: float = TIMEOUT_S,
) -> GateSite:
    """Join the site whose hub answers HTTPS at ``hub_address`` (see the module docstring).

    Raises :class:`SiteError` with the reason: the CA's fingerprint differs,
    the token was refused (used, expired, mistyped), the gate is already in,
    the hub cannot be reached or answered something that is not a valid
    enrolment. Nothing of the site is written before the answer checks out,
    except the gate's new private key.
    """
    check_gate_id(gate_id)
    host, port = split_address(hub_address, default_port=default_port)
    base = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"

    ca_pem = _fetch_ca(base + CA_PATH, timeout_s)
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        raise SiteError("the hub sent a CA certificate that cannot be read") from None
    if not same_fingerprint(fingerprint, ca):
        raise SiteError(
            "Mã vân tay CA không khớp: đây không phải hub của khu vực này. / The CA fingerprint"
            " does not match: this is not the site's hub (or the fingerprint is mistyped)."
        )
    pinned = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # checks the chain and the host name
    pinned.minimum_version = ssl.TLSVersion.TLSv1_2
    pinned.load_verify_locations(cadata=ca_pem.decode("ascii"))

    ensure_dir(files.folder, PUBLIC_DIR_MODE)
    key = new_private_key()
    write_private_key(files.key, key)  # before asking: a certificate is useless without it
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    request = {"v": 1, "token": token, "gate": gate_id, "public_key": public_pem.decode("ascii")}
    answer = _post_json(base + ENROL_PATH, request, pinned, timeout_s)

    site = _check_answer(answer, ca=ca, gate_id=gate_id, public_pem=public_pem)
    subject_key = base64.b64decode(answer["subject_key"], validate=True)
    install_public_keys(keys_dir, answer["keys"])
    write_atomically(files.subject_key, subject_key, PRIVATE_FILE_MODE)
    write_atomically(hash_key_path, subject_key, PRIVATE_FILE_MODE)
    write_atomically(files.ca_certificate, ca_pem, PUBLIC_FILE_MODE)
    write_atomically(files.certificate, answer["certificate"].encode("ascii"), PUBLIC_FILE_MODE)
    description = {"site": site.site_id, "gate": site.gate_id, "broker": site.broker}
    write_atomically(
        files.description_path,
        (json.dumps(description, indent=2) + "\n").encode("utf-8"),
        PUBLIC_FILE_MODE,
    )
    log.info("joined site %s as gate %s (broker %s)", site.site_id, gate_id, site.broker)
    return site


def write_site_settings(config_path: Path, *, hub: str, folder: Path) -> None:
    """Set ``[site] hub`` and ``dir`` in the TOML file at ``config_path``,
    replacing any ``[site]`` section it had (atomically; its mode kept)."""
    try:
        text = config_path.read_text(encoding="utf-8") if config_path.exists() else ""
        mode = config_path.stat().st_mode & 0o777 if config_path.exists() else 0o644
    except OSError as exc:
        raise SiteError(f"cannot read {config_path}: {exc.strerror}") from None
    kept: list[str] = []
    in_site = False
    for line in text.splitlines():
        header = re.match(r"\s*\[([^\]]+)\]\s*(#.*)?$", line)
        if header:
            in_site = header.group(1).strip() == "site"
        if not in_site:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    section = ["", "[site]", f"hub = {json.dumps(hub)}", f"dir = {json.dumps(str(folder))}"]
    new_text = "\n".join([*kept, *section]).lstrip("\n") + "\n"
    write_atomically(config_path, new_text.encode("utf-8"), mode)


def _fetch_ca(url: str, timeout_s: float) -> bytes:
    """The CA certificate the hub serves, over TLS that checks nothing yet:
    the fingerprint check that follows is what makes it trusted."""
    unchecked = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unchecked.check_hostname = False
    unchecked.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, context=unchecked, timeout=timeout_s) as response:  # noqa: S310
            return bytes(response.read(64 * 1024))
    except urllib.error.HTTPError as exc:
        raise SiteError(f"the hub refused to send its CA (HTTP {exc.code})") from None
    except (urllib.error.URLError, OSError) as exc:
        raise _unreachable(url, exc) from None


def _post_json(url: str, body: dict[str, Any], context: ssl.SSLContext, timeout_s: float) -> Any:
    data = json.dumps(body).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310 (https only, built above)
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout_s) as response:  # noqa: S310
            raw = response.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise SiteError(_refusal(exc.code)) from None
    except (urllib.error.URLError, OSError) as exc:
        raise _unreachable(url, exc) from None
    if len(raw) > MAX_ANSWER_BYTES:
        raise SiteError("the hub's answer is too large")
    try:
        return json.loads(raw)
    except ValueError:
        raise SiteError("the hub's answer is not JSON") from None


def _refusal(status: int) -> str:
    if status == 403:
        return (
            "Hub từ chối mã: mã đã dùng, đã hết hạn hoặc gõ sai; tạo mã mới trên trang Cổng"
            " của hub. / The hub refused the token: used, expired or mistyped;"
            " make a new one on the hub's Gates page."
        )
    if status == 409:
        return (
            "Cổng này đã có trong khu vực; thu hồi nó trên hub trước (`gatekiosk site revoke`)."
            " / This gate is already in the site; revoke it on the hub first."
        )
    if status == 429:
        return (
            "Hub tạm dừng nhận cổng mới vì có quá nhiều mã sai; thử lại sau 15 phút."
            " / The hub paused enrolment after too many refused tokens; try again in 15 minutes."
        )
    return f"Hub từ chối yêu cầu. / The hub refused the enrolment (HTTP {status})."


def _unreachable(url: str, exc: Exception) -> SiteError:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return SiteError(
            "Chứng chỉ của hub không do CA của khu vực cấp cho địa chỉ này. / The hub's"
            f" certificate is not the site CA's for this address ({reason.verify_message})."
        )
    return SiteError(f"Không kết nối được hub. / Cannot reach the hub at {url}: {reason}")


def _check_answer(
    answer: Any, *, ca: x509.Certificate, gate_id: str, public_pem: bytes
) -> GateSite:
    """The site of a well-formed answer that certifies our key under the pinned CA."""
    try:
        site = GateSite(
            check_site_id(answer["site"]), check_gate_id(answer["gate"]), answer["broker"]
        )
        certificate = x509.load_pem_x509_certificate(answer["certificate"].encode("ascii"))
        sent_ca = x509.load_pem_x509_certificate(answer["ca"].encode("ascii"))
        subject_key = base64.b64decode(answer["subject_key"], validate=True)
    except (KeyError, TypeError, ValueError, AttributeError, SiteError):
        raise SiteError("the hub's answer is not a valid enrolment") from None
    if site.gate_id != gate_id or not isinstance(site.broker, str) or not site.broker:
        raise SiteError("the hub's answer is for another gate")
    if sent_ca != ca:
        raise SiteError("the hub's answer names another CA")
    try:
        certificate.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        raise SiteError("the gate's certificate is not signed by the site CA") from None
    ours = serialization.load_pem_public_key(public_pem)
    if certificate.public_key() != ours:
        raise SiteError("the gate's certificate is for another key")
    if len(subject_key) < KEY_BYTES:
        raise SiteError("the site's subject-hash key is truncated")
    return site
