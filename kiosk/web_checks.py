"""Start-up checks of the admin web's security settings (see :mod:`kiosk.config`)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

DISPLAY_TOKEN_MIN_CHARS = 20
"""A display token is a password anyone on the LAN may guess at: at least
this long (``secrets.token_urlsafe(15)`` gives 20 characters)."""

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,62})?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?")


def host_names(text: str) -> tuple[str, ...]:
    """``web.allowed_hosts`` as lower-case names, without empty items."""
    return tuple(name.strip().lower().rstrip(".") for name in text.split(",") if name.strip())


def web_problems(values: Mapping[str, Any]) -> list[str]:
    """Problems with the ``web.*`` values, one line each, as load_settings lists them."""
    problems: list[str] = []
    token = str(values.get("web.display_token", ""))
    if token and len(token) < DISPLAY_TOKEN_MIN_CHARS:
        problems.append(
            f"web.display_token: at least {DISPLAY_TOKEN_MIN_CHARS} characters "
            "(for example: python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )
    proxy = str(values.get("web.trusted_proxy", "")).strip()
    if proxy:
        try:
            ipaddress.ip_address(proxy.strip("[]"))
        except ValueError:
            problems.append(
                f"web.trusted_proxy: {proxy!r} is not an IP address (a host name or '*' "
                "would trust anyone)"
            )
    for name in host_names(str(values.get("web.allowed_hosts", ""))):
        if not _HOST_NAME.fullmatch(name):
            problems.append(f"web.allowed_hosts: {name!r} is not a host name")
    return problems
