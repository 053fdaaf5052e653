"""HTTPS in front of the hub's admin web, for gates joining the site.

waitress speaks plain HTTP only (a site puts a TLS proxy in front of the
web when managers reach it over the LAN). Enrolment must not depend on
that proxy: the gate pins the *site CA*, so the hub answers joins over TLS
with its own server certificate, issued by that CA for its host names.
:class:`TlsFront` terminates TLS with that certificate and relays the
bytes to the web server on loopback; the web sees an ordinary request.

One thread accepts; each connection gets a thread per direction. It is
meant for a handful of joins, not for traffic: connections beyond
``max_connections`` are closed at once.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from pathlib import Path

from kiosk.site import SiteError

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 30.0
ACCEPT_POLL_S = 0.5  # how soon stop() is noticed by the accepting thread
_CHUNK_BYTES = 65536


def server_context(certificate: Path, key: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context with the hub's server certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=str(certificate), keyfile=str(key))
    except (OSError, ssl.SSLError) as exc:
        raise SiteError(f"cannot load the hub's server certificate: {exc}") from None
    return context


class TlsFront:
    """Accepts TLS on ``host:port`` (0: a free port) and relays to ``upstream``."""

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        host: str,
        port: int,
        upstream: tuple[str, int],
        max_connections: int = 16,
    ) -> None:
        self._context = context
        self._upstream = upstream
        self._slots = threading.BoundedSemaphore(max_connections)
        self._stopping = threading.Event()
        try:
            self._listener = socket.create_server((host, port), reuse_port=False)
        except OSError as exc:
            raise SiteError(
                f"cannot listen for enrolment on {host}:{port} ({exc.strerror});"
                " choose another port with site.enrol_port"
            ) from None
        self._listener.settimeout(ACCEPT_POLL_S)
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, name="tls-front", daemon=True)

    def start(self) -> TlsFront:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            if not self._slots.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(HANDSHAKE_TIMEOUT_S)
            try:
                secure = self._context.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                log.info("enrolment connection refused in the TLS handshake: %s", exc)
                conn.close()
                return
            secure.settimeout(IDLE_TIMEOUT_S)
            try:
                upstream = socket.create_connection(self._upstream, timeout=IDLE_TIMEOUT_S)
            except OSError as exc:
                log.warning("the admin web does not answer on %s: %s", self._upstream, exc)
                secure.close()
                return
            back = threading.Thread(target=_pump, args=(upstream, secure), daemon=True)
            back.start()
            _pump(secure, upstream)
            back.join(timeout=IDLE_TIMEOUT_S)
            for end in (secure, upstream):
                with contextlib.suppress(OSError):
                    end.close()
        finally:
            self._slots.release()


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes until ``source`` ends or fails, then end ``target``'s writing."""
    try:
        while True:
            data = source.recv(_CHUNK_BYTES)
            if not data:
                break
            target.sendall(data)
    except (OSError, ssl.SSLError):
        pass
    with contextlib.suppress(OSError, ValueError):
        if isinstance(target, ssl.SSLSocket):
            target.close()
        else:
            target.shutdown(socket.SHUT_WR)
