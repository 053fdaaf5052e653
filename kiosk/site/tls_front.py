"""HTTPS in front of the hub's admin web, for gates joining the site.

waitress speaks plain HTTP only (a site puts a TLS proxy in front of the
web when managers reach it over the LAN). Enrolment must not depend on
that proxy: the gate pins the *site CA*, so the hub answers joins over TLS
with its own server certificate, issued by that CA for its host names.
:class:`TlsFront` terminates TLS with that certificate and relays the
bytes to the web server on loopback; the web sees an ordinary request.

One thread accepts; each connection gets a thread that reads one whole
request, passes it on, and writes the whole answer back, then closes.
It is meant for a handful of joins, not for traffic: one request per
connection, bodies up to :data:`MAX_BODY_BYTES`, and connections beyond
``max_connections`` closed at once.
"""

from __future__ import annotations

import logging
import re
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
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024  # an enrolment request is about 1 KB
MAX_RESPONSE_BYTES = 4 * 1024 * 1024


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
            with secure:
                secure.settimeout(IDLE_TIMEOUT_S)
                try:
                    request = _read_request(secure)
                    if request is None:
                        secure.sendall(_BAD_REQUEST)
                        return
                    secure.sendall(self._forward(request))
                except (OSError, ssl.SSLError) as exc:
                    log.info("enrolment connection ended early: %s", exc)
        finally:
            self._slots.release()

    def _forward(self, request: bytes) -> bytes:
        """The web's whole response to ``request`` (it closes after answering)."""
        try:
            with socket.create_connection(self._upstream, timeout=IDLE_TIMEOUT_S) as upstream:
                upstream.sendall(_closing(request))
                response = bytearray()
                while len(response) <= MAX_RESPONSE_BYTES:
                    data = upstream.recv(_CHUNK_BYTES)
                    if not data:
                        return bytes(response)
                    response += data
        except OSError as exc:
            log.warning("the admin web does not answer on %s: %s", self._upstream, exc)
            return _BAD_GATEWAY
        log.warning("the admin web's answer is larger than %d bytes", MAX_RESPONSE_BYTES)
        return _BAD_GATEWAY


_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"^content-length:[ \t]*([0-9]{1,9})[ \t]*\r?$", re.I | re.M)
_CHUNKED = re.compile(rb"^transfer-encoding:", re.I | re.M)
_CONNECTION = re.compile(rb"^connection:[^\r\n]*\r\n", re.I | re.M)


def _closing(request: bytes) -> bytes:
    """``request`` with ``Connection: close``, so the web ends the connection
    after its answer (a half-close instead would make waitress drop it)."""
    end = request.index(b"\r\n\r\n")
    head = _CONNECTION.sub(b"", request[:end] + b"\r\n")
    return head + b"Connection: close\r\n\r\n" + request[end + 4 :]


def _read_request(secure: ssl.SSLSocket) -> bytes | None:
    """One whole HTTP/1.1 request (headers and a Content-Length body), or
    None for anything else (too large, chunked, cut short).

    One request per connection, read whole before the web sees it: the
    TLS socket is used by this one thread only (OpenSSL's connection
    object must not be read and written from two threads at once).
    """
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEADER_BYTES:
            return None
        data = secure.recv(_CHUNK_BYTES)
        if not data:
            return None
        buffer += data
    end = buffer.index(b"\r\n\r\n") + 4
    headers = bytes(buffer[:end])
    if _CHUNKED.search(headers):
        return None
    match = _CONTENT_LENGTH.search(headers)
    total = end + (int(match.group(1)) if match else 0)
    if total - end > MAX_BODY_BYTES:
        return None
    while len(buffer) < total:
        data = secure.recv(_CHUNK_BYTES)
        if not data:
            return None
        buffer += data
    return bytes(buffer[:total])
