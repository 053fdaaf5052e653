"""Serving the admin web with waitress, a production WSGI server."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from flask import Flask

from kiosk.errors import GateError

log = logging.getLogger(__name__)

THREADS = 8
"""Worker threads: the dashboard and the gate screen poll twice a second each."""


@dataclass
class RunningServer:
    server: Any
    thread: threading.Thread
    url: str

    def stop(self) -> None:
        if self.thread.is_alive():
            # Closed by the server's own loop: closed from here, a socket can
            # vanish between the loop's listing of its sockets and its
            # select(), which then fails with EBADF in the loop's thread.
            self.server.trigger.pull_trigger(self.server.close)
            self.thread.join(timeout=5)
        else:
            self.server.close()


def make_server(app: Flask, *, host: str, port: int) -> Any:
    """A waitress server bound to ``host:port`` (port 0: any free port)."""
    from waitress import create_server

    try:
        return create_server(app, host=host, port=port, threads=THREADS, ident="gatekiosk")
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


def serve_in_background(app: Flask, *, host: str, port: int) -> RunningServer:
    server = make_server(app, host=host, port=port)
    thread = threading.Thread(target=server.run, name="web", daemon=True)
    thread.start()
    return RunningServer(server, thread, url_of(server, host))
