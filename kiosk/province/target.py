"""Where a hub's uplink connects: the ``[uplink]`` settings as one libpq conninfo.

A hub names the province's server (``uplink.host``, ``port``, ``dbname``),
its own login (``uplink.role``), the province's CA (``uplink.ca_file``: TLS
with the server's name checked, ``sslmode=verify-full``), optionally a client
certificate and a password file; experts may give a whole ``uplink.dsn``,
whose parts the other settings override (``port`` and ``dbname``, which
have defaults, only beside ``uplink.host``). The conninfo is built with
psycopg's own helpers (quoting included), never by gluing strings.

A connection to another machine without a verified server is refused unless
``uplink.allow_plaintext`` says so: a site's events are personal data, and a
login's password must not cross a network in clear.

The password (read from ``uplink.password_file`` at start) lives only in
:attr:`UplinkTarget.conninfo`, which is never logged and left out of the
object's ``repr``; :attr:`UplinkTarget.shown` is the safe form for logs.

Example::

    target = uplink_target(settings.values)
    log.info("uplink to %s", target.shown)
    psycopg.connect(target.conninfo)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from kiosk.errors import ConfigError

VERIFIED_MODES = frozenset({"verify-ca", "verify-full"})
"""sslmodes that check the server's certificate against a CA."""

_SECRET_KEYS = frozenset({"password", "sslpassword"})


@dataclass(frozen=True)
class UplinkTarget:
    """The province to connect to: the conninfo (secret) and a loggable description."""

    conninfo: str = field(repr=False)
    shown: str


def uplink_configured(values: Mapping[str, Any]) -> bool:
    """Whether this machine has a province to upload to (uplink.host or uplink.dsn)."""
    return bool(_text(values, "uplink.host") or _text(values, "uplink.dsn"))


def uplink_target(values: Mapping[str, Any]) -> UplinkTarget:
    """The conninfo of the ``[uplink]`` settings; ConfigError listing every problem.

    Files named by the settings are checked (and the password file read) here,
    at start, so that a missing CA is one clear message rather than a TLS
    error repeated every minute.
    """
    if not uplink_configured(values):
        raise ConfigError(
            [
                "uplink.host trống: máy này chưa được cấu hình gửi lên cấp tỉnh / "
                "uplink.host is empty: this hub has no province to upload to"
            ]
        )
    try:
        base = conninfo_to_dict(_text(values, "uplink.dsn"))
    except psycopg.ProgrammingError:
        # libpq's message quotes the string, which may hold a password.
        raise ConfigError(
            [
                "uplink.dsn không hợp lệ / is not a valid libpq connection string "
                "('host=... dbname=...' or 'postgresql://...')"
            ]
        ) from None
    host = _text(values, "uplink.host")
    parts: dict[str, Any] = {"host": host} if host else {}
    # Port and database have defaults: they override the DSN's only beside uplink.host.
    if host or "port" not in base:
        parts["port"] = int(values.get("uplink.port", 5432))
    if (host or "dbname" not in base) and _text(values, "uplink.dbname"):
        parts["dbname"] = _text(values, "uplink.dbname")
    if _text(values, "uplink.role"):
        parts["user"] = _text(values, "uplink.role")
    tls, problems = _tls(values)
    parts.update(tls)
    password_file = _text(values, "uplink.password_file")
    if password_file:
        password, problem = _read_password(password_file)
        if problem:
            problems.append(problem)
        else:
            parts["password"] = password
    merged = {**base, **parts}
    if not merged.get("user"):
        problems.append(
            "uplink.role trống: tài khoản của khu vực ở cấp tỉnh / "
            "uplink.role is empty: the site's login at the province"
        )
    if not values.get("uplink.allow_plaintext") and not _safe(merged):
        problems.append(
            f"uplink.ca_file trống: không gửi dữ liệu chưa mã hoá tới {merged.get('host')} / "
            f"uplink.ca_file is empty: refusing a connection without verified TLS to "
            f"{merged.get('host')} (set uplink.ca_file to the province's CA; "
            "uplink.allow_plaintext = true only over a link you trust)"
        )
    if problems:
        raise ConfigError(problems)
    shown = make_conninfo(**{k: v for k, v in merged.items() if k not in _SECRET_KEYS})
    return UplinkTarget(conninfo=make_conninfo(**merged), shown=shown)


def _tls(values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The conninfo parts of the CA and the client certificate; the problems found."""
    parts: dict[str, Any] = {}
    problems: list[str] = []
    ca_file = _text(values, "uplink.ca_file")
    if ca_file:
        problems += _readable("uplink.ca_file", ca_file, "chứng chỉ CA cấp tỉnh / province CA")
        parts.update(sslmode="verify-full", sslrootcert=ca_file)
    cert_file, key_file = _text(values, "uplink.cert_file"), _text(values, "uplink.key_file")
    if bool(cert_file) != bool(key_file):
        problems.append(
            "uplink.cert_file và uplink.key_file phải đi cùng nhau / "
            "uplink.cert_file and uplink.key_file go together"
        )
    if cert_file and key_file:
        problems += _readable("uplink.cert_file", cert_file, "chứng chỉ máy / certificate")
        problems += _readable("uplink.key_file", key_file, "khoá riêng / private key")
        parts.update(sslcert=cert_file, sslkey=key_file)
    return parts, problems


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine: a loopback name or address, or a
    Unix socket folder (libpq's default when no host is given)."""
    host = host.strip()
    if not host or host.startswith("/") or host.startswith("@") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _safe(parts: Mapping[str, Any]) -> bool:
    """A verified TLS connection, or every host (and hostaddr) on this machine."""
    if str(parts.get("sslmode", "")) in VERIFIED_MODES:
        return True
    hosts = str(parts.get("host", "")).split(",")
    addresses = [a for a in str(parts.get("hostaddr", "")).split(",") if a]
    return all(is_loopback(h) for h in hosts) and all(is_loopback(a) for a in addresses)


def _readable(name: str, path: str, what: str) -> list[str]:
    try:
        with Path(path).open("rb"):
            return []
    except FileNotFoundError:
        return [f"{name}: không có tệp {what} / no such file: {path}"]
    except OSError as exc:
        return [f"{name}: không đọc được {what} / cannot read {path}: {exc.strerror}"]


def _read_password(path: str) -> tuple[str, str | None]:
    """The first line of ``path``; or a problem (which never holds the password)."""
    try:
        first = Path(path).read_text(encoding="utf-8").partition("\n")[0].rstrip("\r")
    except FileNotFoundError:
        return "", f"uplink.password_file: không có tệp mật khẩu / no such file: {path}"
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        return "", f"uplink.password_file: không đọc được / cannot read {path}: {reason}"
    if not first:
        return "", f"uplink.password_file: tệp trống / the file is empty: {path}"
    return first, None


def _text(values: Mapping[str, Any], name: str) -> str:
    value = values.get(name)
    return str(value).strip() if value is not None else ""
