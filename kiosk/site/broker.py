"""The hub's Mosquitto broker: its configuration, its ACL, and reloading them.

The broker only relays. It is never the durable queue: a gate keeps every
event in its database until the hub has committed it and acknowledged, and
the hub keeps every document it sends down in its own. So the broker runs
with persistence off (by default): after a restart it is empty, the gates
re-send what was not acknowledged, and the hub publishes its retained
documents again as soon as it reconnects.

What the configuration enforces (Mosquitto 2.0, Debian 12's 2.0.11):

- one TLS listener, TLS 1.2 or newer, MQTT 5 (and 3.1.1) allowed;
- ``require_certificate true``: no certificate from the site CA, no connection;
- ``use_identity_as_username true``: the certificate's common name is the
  username, so the name the ACL sees is the one the CA signed;
- ``use_username_as_clientid true``: the client id is replaced by that name.
  Without it, a gate connecting with another's client id would take over its
  session (Mosquitto moves the old session's subscriptions and queued
  messages to the newcomer, whoever it is) and disconnect it;
- ``crlfile``: revoked certificates fail the TLS handshake;
- ``allow_anonymous false`` and an ACL file (:func:`render_acl`): a gate
  writes only under ``gk/<site>/gate/<its id>/``, reads the site's
  documents, every gate's presence and what the hub sends to it alone;
  the hub reads everything of the site and writes the down direction.

In Mosquitto 2.0 the ACL file does not control *subscribing*: a gate may
subscribe to another gate's events, but the broker checks read access
before delivering each message, so nothing arrives. And a publish the ACL
refuses is answered (MQTT 5, QoS 1) with PUBACK reason code 0x87 "Not
authorized"; an MQTT 3.1.1 client gets a normal PUBACK and the message is
dropped.

Reloading (:func:`reload_broker`, SIGHUP; ``systemctl reload``): Mosquitto
2.0 reads the configuration, the ACL file and the CRL again; it rebuilds the
listener's TLS context, so new handshakes use the new CRL. Connections open
before the reload are *not* checked against the new CRL; that is why a
revoked gate is also listed in the ACL as denied everything
(:func:`render_acl`'s ``blocked_gates``), which applies to open connections
at once. Listener options (address, port, ``use_username_as_clientid``) need
a restart.

Example (on the hub)::

    config = BrokerConfig.for_site(site_dir / "broker", pki_paths, "factory-1", port=8883)
    write_broker_files(config, blocked_gates=blocked_gate_ids(pki_paths))
    # mosquitto -c <config.config_path>; after a revocation:
    write_broker_files(config, blocked_gates=blocked_gate_ids(pki_paths))
    reload_broker(pid)
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.site import SiteError
from kiosk.site.enrolment import PkiPaths
from kiosk.site.files import PUBLIC_DIR_MODE, PUBLIC_FILE_MODE, ensure_dir, write_atomically
from kiosk.site.topics import HUB_IDENTITY, Topics, check_gate_id

log = logging.getLogger(__name__)

DEFAULT_PORT = 8883  # IANA's port for MQTT over TLS
# The largest MQTT packet the broker accepts, in bytes. A batch of events or
# a denylist document is tens of kilobytes; anything near this is an attack.
DEFAULT_MAX_PACKET_BYTES = 1024 * 1024
# The longest keep-alive a client may ask for, in seconds; a gate that goes
# silent longer is considered gone (its will message says "offline").
DEFAULT_MAX_KEEPALIVE_S = 120

CONFIG_NAME = "mosquitto.conf"
ACL_NAME = "acl"

_FORBIDDEN_IN_PATHS = frozenset(" \t\r\n#")


@dataclass(frozen=True)
class BrokerConfig:
    """Everything the hub's broker configuration says, as values.

    ``folder`` receives ``mosquitto.conf`` and ``acl``. ``bind_address``
    None listens on every address. ``persistence_dir`` None turns
    persistence off (the default; see the module docstring); otherwise
    Mosquitto saves retained messages there. ``log_dest`` is Mosquitto's own
    syntax: ``"stderr"`` (systemd's journal; unbuffered), ``"file /path"``
    (buffered by 2.0.11: the file lags, and a test reading it misses lines),
    ``"syslog"``.
    ``run_as_user``: the user Mosquitto switches to when started as root
    (it must be able to read the server key, the CA and the CRL).
    """

    site_id: str
    folder: Path
    ca_certificate: Path
    server_certificate: Path
    server_key: Path
    crl: Path
    port: int = DEFAULT_PORT
    bind_address: str | None = None
    persistence_dir: Path | None = None
    log_dest: str = "stderr"
    run_as_user: str | None = None
    max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES
    max_keepalive_s: int = DEFAULT_MAX_KEEPALIVE_S

    @classmethod
    def for_site(cls, folder: Path, pki: PkiPaths, site_id: str, **options: Any) -> BrokerConfig:
        """The configuration of ``site_id``'s broker, with the PKI files of ``pki``."""
        return cls(
            site_id=site_id,
            folder=folder,
            ca_certificate=pki.ca_certificate,
            server_certificate=pki.server_certificate,
            server_key=pki.server_key,
            crl=pki.crl,
            **options,
        )

    @property
    def config_path(self) -> Path:
        return self.folder / CONFIG_NAME

    @property
    def acl_path(self) -> Path:
        return self.folder / ACL_NAME

    @property
    def topics(self) -> Topics:
        return Topics(self.site_id)


def render_config(config: BrokerConfig) -> str:
    """The text of ``mosquitto.conf`` for ``config``.

    Raises :class:`SiteError` for a path Mosquitto could not read back
    (its configuration has no quoting: a space or ``#`` would cut it).
    """
    topics = config.topics  # validates the site id
    if not 0 < config.port < 65536:
        raise SiteError(f"port {config.port} is not a TCP port")
    listener = f"listener {config.port}"
    if config.bind_address is not None:
        listener += f" {_word(config.bind_address, 'bind address')}"
    lines = [
        f"# The broker of gatekiosk site {topics.site_id}: written by `gatekiosk site`,",
        "# rewritten at every change; edit the site's settings, not this file.",
        "",
        "# One set of security settings for the one listener.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"acl_file {_path(config.acl_path)}",
        "",
        "# Never the durable queue: the gates' and the hub's databases are.",
    ]
    if config.persistence_dir is None:
        lines.append("persistence false")
    else:
        lines += ["persistence true", f"persistence_location {_path(config.persistence_dir)}/"]
    if "\n" in config.log_dest or "\r" in config.log_dest:
        raise SiteError("the broker's log destination must be one line")
    lines += [
        "",
        f"log_dest {config.log_dest}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "log_timestamp true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
    ]
    if config.run_as_user is not None:
        lines.append(f"user {_word(config.run_as_user, 'user')}")
    lines += [
        "",
        f"max_packet_size {int(config.max_packet_bytes)}",
        f"max_keepalive {int(config.max_keepalive_s)}",
        "# Small messages must not wait for Nagle's algorithm (latency targets).",
        "set_tcp_nodelay true",
        "",
        listener,
        "protocol mqtt",
        "tls_version tlsv1.2",
        f"cafile {_path(config.ca_certificate)}",
        f"certfile {_path(config.server_certificate)}",
        f"keyfile {_path(config.server_key)}",
        f"crlfile {_path(config.crl)}",
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
        "",
    ]
    return "\n".join(lines)


def render_acl(topics: Topics, *, blocked_gates: Iterable[str] = ()) -> str:
    """The text of the ACL file for a site.

    ``blocked_gates`` (revoked gates) are denied every topic. Mosquitto
    checks a user's own lines before the patterns, and ``deny`` lines first,
    so this holds even on a connection opened before the revocation, from
    the next reload on.

    ``%u`` in a pattern is the username, that is the certificate's common
    name; Mosquitto refuses a username containing ``+`` or ``#`` against
    patterns, and the CA never signs one (:func:`kiosk.site.topics.check_gate_id`).
    The rules every gate shares (documents, presence) are patterns without
    ``%u``: Mosquitto logs a warning for each at start and reload, harmless;
    a ``topic`` line would apply to one user or to anonymous clients only.
    """
    site = topics.site
    lines = [
        f"# Who may read and write what on site {topics.site_id}: written by `gatekiosk site`.",
        "# Usernames are certificate common names (use_identity_as_username).",
        "",
    ]
    for gate_id in sorted(set(blocked_gates)):
        lines += [
            "# Revoked: nothing, even on a connection made before the revocation.",
            f"user {check_gate_id(gate_id)}",
            "topic deny #",
            "",
        ]
    lines += [
        "# The hub reads everything of the site and writes the down direction.",
        f"user {HUB_IDENTITY}",
        f"topic read {site}/#",
        f"topic write {site}/doc/#",
        f"topic write {site}/to/#",
        "",
        "# Every gate: its own topics, its own messages from the hub, the site's",
        "# documents and every gate's presence. Never another gate's events.",
        f"pattern write {site}/gate/%u/#",
        f"pattern read {site}/to/%u/#",
        f"pattern read {site}/doc/#",
        f"pattern read {topics.all_presence}",
        "",
    ]
    return "\n".join(lines)


def write_broker_files(config: BrokerConfig, *, blocked_gates: Iterable[str] = ()) -> None:
    """Write ``mosquitto.conf`` and the ACL into ``config.folder``, atomically.

    The ACL first: a broker (re)loading between the two writes finds a
    configuration that names an ACL file that exists.
    """
    text = render_config(config)
    acl = render_acl(config.topics, blocked_gates=blocked_gates)
    ensure_dir(config.folder, PUBLIC_DIR_MODE)
    write_atomically(config.acl_path, acl.encode("utf-8"), PUBLIC_FILE_MODE)
    write_atomically(config.config_path, text.encode("utf-8"), PUBLIC_FILE_MODE)
    log.info("wrote the broker configuration of site %s in %s", config.site_id, config.folder)


def reload_broker(pid: int) -> None:
    """Tell the Mosquitto process ``pid`` to read its files again (SIGHUP).

    Asynchronous: the signal wakes the broker, which reloads before it
    handles its next packet; a caller that must know polls (a test retries
    a connection until the revoked certificate is refused). Under systemd
    the same is ``systemctl reload`` with ``ExecReload=/bin/kill -HUP
    $MAINPID``. See the module docstring for what a reload covers.
    """
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise SiteError(f"no broker process {pid} to reload") from None
    log.info("asked the broker (pid %d) to reload its configuration", pid)


def _path(path: Path) -> str:
    text = str(path.absolute())
    if _FORBIDDEN_IN_PATHS.intersection(text):
        raise SiteError(f"Mosquitto cannot read a path with spaces or '#': {text!r}")
    return text


def _word(value: str, what: str) -> str:
    if not value or _FORBIDDEN_IN_PATHS.intersection(value):
        raise SiteError(f"the broker's {what} {value!r} must be one word")
    return value
