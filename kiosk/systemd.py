"""Telling systemd how the kiosk is doing: ready, alive, stopping.

The sd_notify protocol is one datagram to the socket systemd names in
``$NOTIFY_SOCKET`` (a leading ``@`` means an abstract socket). Outside
systemd the variable is unset and every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

from kiosk.clock import Clock

log = logging.getLogger(__name__)


class SystemdNotifier:
    """``ready()`` once, ``watchdog()`` as often as the loop likes (it sends at
    most every half watchdog interval), ``stopping()`` on the way out."""

    def __init__(self, *, clock: Clock, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._clock = clock
        path = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + path[1:] if path.startswith("@") else path
        watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._ping_every_s = int(watchdog_usec) / 2_000_000 if watchdog_usec.isdigit() else None
        self._last_ping_mono: float | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def ready(self) -> None:
        self._send("READY=1")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def watchdog(self) -> None:
        """The loop is alive; systemd restarts the kiosk if these stop coming."""
        if self._ping_every_s is None:
            return
        now = self._clock.monotonic()
        if self._last_ping_mono is not None and now - self._last_ping_mono < self._ping_every_s:
            return
        self._last_ping_mono = now
        self._send("WATCHDOG=1")

    def _send(self, message: str) -> None:
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._address)
                sock.sendall(message.encode("ascii"))
        except OSError as exc:
            log.warning("could not notify systemd (%s): %s", message, exc.strerror)
