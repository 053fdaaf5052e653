"""Serving the admin web with waitress, a production WSGI server.

What the server is told matters to the app's security (issue 14):

* Behind a reverse proxy (``web.trusted_proxy``), waitress replaces
  ``REMOTE_ADDR`` by the client's address from ``X-Forwarded-For`` and
  drops forwarding headers it did not use; the app decides "this machine's
  own screen" and throttle buckets from ``REMOTE_ADDR`` only. Without a
  trusted proxy, waitress keeps the forwarding headers unread, so the app
  can refuse to take a proxied request for a local one.
* Idle and half-sent connections are closed after ``web.channel_timeout_s``
  and up to ``web.connection_limit`` may be open, so a hundred idle clients
  no longer lock out the gate screen (waitress's defaults: 100 and 120 s).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from typing import Any

from flask import Flask

from kiosk.config import Settings
from kiosk.errors import GateError

log = logging.getLogger(__name__)

TRUSTED_PROXY_HEADERS = frozenset({"x-forwarded-for", "x-forwarded-proto"})
"""What a trusted proxy may tell waitress: the client's address and whether
the client used HTTPS. Not the host (the Host allow-list judges the Host the
proxy passes on) and not ``Forwarded`` (waitress trusts one family or the other)."""


@dataclass(frozen=True)
class Serving:
    """How waitress serves the admin web; the defaults are the settings' defaults."""

    threads: int = 8
    connection_limit: int = 500
    channel_timeout_s: int = 30
    trusted_proxy: str = ""
    trusted_proxy_count: int = 1

    @classmethod
    def from_settings(cls, settings: Settings) -> Serving:
        return cls(
            threads=settings["web.threads"],
            connection_limit=settings["web.connection_limit"],
            channel_timeout_s=settings["web.channel_timeout_s"],
            trusted_proxy=str(settings["web.trusted_proxy"]).strip().strip("[]"),
            trusted_proxy_count=settings["web.trusted_proxy_count"],
        )

    def waitress_options(self) -> dict[str, Any]:
        """Keyword arguments for ``waitress.create_server``."""
        options: dict[str, Any] = {
            "threads": self.threads,
            "connection_limit": self.connection_limit,
            "channel_timeout": self.channel_timeout_s,
            # Idle channels are looked for this often: a timed-out one is
            # closed within channel_timeout_s plus this.
            "cleanup_interval": max(1, min(10, self.channel_timeout_s // 3)),
            "ident": "gatekiosk",
        }
        if self.trusted_proxy:
            options |= {
                "trusted_proxy": self.trusted_proxy,
                "trusted_proxy_count": self.trusted_proxy_count,
                "trusted_proxy_headers": set(TRUSTED_PROXY_HEADERS),
                "clear_untrusted_proxy_headers": True,
            }
        else:
            # Kept, unread by waitress: the gate screen refuses a loopback
            # request that came through a proxy nobody said to trust.
            options["clear_untrusted_proxy_headers"] = False
        return options


@dataclass
class RunningServer:
    server: Any
    thread: threading.Thread
    url: str
    _stopped: bool = False

    def stop(self) -> None:
        """Close the listening socket and every connection, then the workers.

        The closing runs in the server's own thread (through waitress's
        trigger): closed from here, a socket the loop is waiting on fails its
        select() with EBADF, and the thread dies with that error.
        """
        from waitress import wasyncore

        if self._stopped:
            return
        self._stopped = True
        sockets = self.server._map  # waitress names no public way to stop
        if self.thread.is_alive():
            # OSError: the loop already closed its trigger, so it is ending.
            with contextlib.suppress(OSError):
                self.server.trigger.pull_trigger(lambda: wasyncore.close_all(sockets))
            self.thread.join(timeout=5)
        if sockets and not self.thread.is_alive():  # what the ended loop left open
            wasyncore.close_all(sockets)
        self.server.task_dispatcher.shutdown()


def make_server(app: Flask, *, host: str, port: int, serving: Serving | None = None) -> Any:
    """A waitress server bound to ``host:port`` (port 0: any free port)."""
    from waitress import create_server

    options = (serving or Serving()).waitress_options()
    try:
        return create_server(app, host=host, port=port, **options)
    except OSError as exc:
        raise GateError(
            f"cannot listen on {host}:{port} ({exc.strerror}); is another program using it? "
            "Choose another port with web.port."
        ) from exc


def url_of(server: Any, host: str) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{server.effective_port}/"


def serve_in_background(
    app: Flask, *, host: str, port: int, serving: Serving | None = None
) -> RunningServer:
    server = make_server(app, host=host, port=port, serving=serving)
    thread = threading.Thread(target=server.run, name="web", daemon=True)
    thread.start()
    return RunningServer(server, thread, url_of(server, host))
