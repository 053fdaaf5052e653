"""CSRF on every state change, security headers on every response, and only
the host names this site answers to."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable

from flask import Flask, Response, request
from flask_wtf.csrf import CSRFProtect

from kiosk.config import Settings
from kiosk.web_checks import host_names

log = logging.getLogger(__name__)

csrf = CSRFProtect()

# Every page's scripts and styles are files under /static: no inline code, so
# an injected <script> in a name could not run even if escaping ever failed.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)

WRONG_HOST = (
    "Tên máy không được phép cho trang quản trị này (xem web.allowed_hosts).\n"
    "This host name is not allowed for this admin web (see web.allowed_hosts).\n"
)


def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    if response.mimetype in ("text/html", "application/json"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def allowed_host_names(settings: Settings) -> frozenset[str]:
    """Host names (lower case, no port) the admin web answers to; IP
    addresses are always allowed (see :func:`host_allowed`)."""
    machine = socket.gethostname().lower()
    names = {"localhost", machine, f"{machine}.local", *host_names(settings["web.allowed_hosts"])}
    configured = str(settings["web.host"]).strip().lower()
    if configured:
        names.add(configured.strip("[]"))
    return frozenset(names)


def _name_of(host: str) -> str:
    """The Host header without its port (and an IPv6 literal without brackets)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        host = name
    return host.rstrip(".")


def host_allowed(host: str, names: frozenset[str]) -> bool:
    """Whether a request's Host header names this site.

    Against DNS rebinding: a page on an attacker's domain that re-points its
    name at the gate makes the browser send that domain as Host. An IP
    address cannot be re-pointed, so every address is accepted; a name must
    be one of ``names``.
    """
    name = _name_of(host)
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name in names
    return True


def _host_check(names: frozenset[str]) -> Callable[[], Response | None]:
    def check() -> Response | None:
        if host_allowed(request.host, names):
            return None
        log.warning("refused a request for a host name this site does not answer to")
        return Response(WRONG_HOST, status=400, mimetype="text/plain")

    return check


def init_app(app: Flask, settings: Settings) -> None:
    app.before_request(_host_check(allowed_host_names(settings)))  # before CSRF's check
    csrf.init_app(app)
    app.after_request(_headers)
