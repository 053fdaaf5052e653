"""Issue 14 through the real server: waitress on loopback, real sockets.

Several findings are invisible to Flask's test client: waitress strips or
believes proxy headers, limits connections and closes idle ones before the
app sees anything. Each test here starts the admin web the way
``gatekiosk web`` does (:func:`kiosk.webserver.make_server` with the
settings' :class:`~kiosk.webserver.Serving`) and talks HTTP to it.
"""

from __future__ import annotations

import http.client
import socket
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from kiosk.accounts import PasswordHashing
from kiosk.clock import FakeClock
from kiosk.webserver import RunningServer, Serving, serve_in_background
from tests.web import PASSWORDS, make_app

TOKEN = "display-token-0123456789abcdef"
ANSWER_S = 5.0
"""How long a request may take before the server counts as not answering."""


@dataclass
class Live:
    app: Flask
    server: RunningServer

    @property
    def port(self) -> int:
        return int(self.server.server.effective_port)

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: dict[str, str] | None = None,
        timeout_s: float = ANSWER_S,
    ) -> tuple[int, dict[str, str], str]:
        """One request on a new connection: (status, headers, body text)."""
        with closing(http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)) as c:
            sent = dict(headers or {})
            data = None
            if body is not None:
                data = urllib.parse.urlencode(body)
                sent["Content-Type"] = "application/x-www-form-urlencoded"
            c.request(method, path, body=data, headers=sent)
            response = c.getresponse()
            return response.status, dict(response.getheaders()), response.read().decode()

    def log_in(self, role: str, *, headers: dict[str, str] | None = None) -> str:
        """The session cookie of a fresh login (CSRF is off in these apps)."""
        status, answer, _ = self.request(
            "/login",
            method="POST",
            headers=headers,
            body={"name": f"{role}1", "password": PASSWORDS[role]},
        )
        assert status == 302, status
        return answer["Set-Cookie"].split(";", 1)[0]


@pytest.fixture
def serve(tmp_path: Path, password_hashing: PasswordHashing) -> Iterator[Any]:
    """Starts the admin web for settings overrides; stops everything at the end."""
    with ExitStack() as stack:

        def start(**overrides: Any) -> Live:
            app = make_app(
                tmp_path / f"site{len(started)}",
                clock=FakeClock(),
                hashing=password_hashing,
                csrf=False,
                **overrides,
            )
            stack.callback(app.extensions["gatekiosk"].store.close)
            serving = Serving.from_settings(app.extensions["gatekiosk"].settings)
            server = serve_in_background(app, host="127.0.0.1", port=0, serving=serving)
            stack.callback(server.stop)
            started.append(server)
            return Live(app, server)

        started: list[RunningServer] = []
        yield start


# ----------------------------------------------------------------------------- 2. proxies


def test_without_a_trusted_proxy_a_forwarded_request_is_not_this_machines_screen(serve):
    """A proxy on the Pi that nobody configured: its requests come from
    loopback, but on behalf of anyone on the LAN."""
    live = serve(**{"web.display_token": TOKEN})

    assert live.request("/display/state")[0] == 200  # the Pi's own screen
    forwarded = {"X-Forwarded-For": "192.168.1.50"}
    assert live.request("/display/state", headers=forwarded)[0] == 403
    assert live.request("/display", headers={"Forwarded": "for=192.168.1.50"})[0] == 403
    assert live.request(f"/display/state?token={TOKEN}", headers=forwarded)[0] == 200


def test_behind_a_trusted_proxy_the_client_is_who_the_proxy_says(serve):
    live = serve(**{"web.trusted_proxy": "127.0.0.1", "web.display_token": TOKEN})

    lan = {"X-Forwarded-For": "192.168.1.50"}
    assert live.request("/display/state", headers=lan)[0] == 403
    assert live.request(f"/display/state?token={TOKEN}", headers=lan)[0] == 200
    # The Pi's own screen, straight or through the proxy.
    assert live.request("/display/state")[0] == 200
    assert live.request("/display/state", headers={"X-Forwarded-For": "127.0.0.1"})[0] == 200
    # A client that forges the header before the proxy: the proxy appends
    # the real address, and only the last hop is believed.
    forged = {"X-Forwarded-For": "127.0.0.1, 192.168.1.50"}
    assert live.request("/display/state", headers=forged)[0] == 403


def test_behind_a_trusted_proxy_each_client_has_its_own_login_throttle(serve):
    live = serve(**{"web.trusted_proxy": "127.0.0.1"})
    attacker = {"X-Forwarded-For": "192.168.1.66"}
    manager = {"X-Forwarded-For": "192.168.1.20"}

    statuses = []
    for attempt in range(60):  # until the attacker's address is throttled
        status, _, _ = live.request(
            "/login",
            method="POST",
            headers=attacker,
            body={"name": f"nobody{attempt}", "password": "wrong-password"},
        )
        statuses.append(status)
        if status == 429:
            break
    assert statuses[-1] == 429, statuses

    status, _, _ = live.request(
        "/login",
        method="POST",
        headers=manager,
        body={"name": "someone", "password": "wrong-password"},
    )
    assert status == 401  # not 429: another client, another bucket
    assert live.log_in("manager", headers=manager)


def test_a_proxy_that_is_not_trusted_cannot_choose_the_client_address(serve):
    """The configured proxy is 10.0.0.1: a loopback peer's header is not believed."""
    live = serve(**{"web.trusted_proxy": "10.0.0.1"})
    assert live.request("/display/state", headers={"X-Forwarded-For": "192.168.1.50"})[0] == 200


# ----------------------------------------------------------------------------- 5. idle clients


def half_sent(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that each send the start of a request and stop."""
    sockets = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_S)
        s.sendall(b"GET /display/state HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sockets.append(s)
    return sockets


def test_many_idle_clients_do_not_take_the_gate_screen_or_the_dashboard_down(serve):
    live = serve()
    cookie = live.log_in("guard")
    idle = half_sent(live.port, 150)
    try:
        for _ in range(3):
            status, _, body = live.request("/display/state")
            assert status == 200
            assert '"cursor"' in body
            status, _, body = live.request("/", headers={"Cookie": cookie})
            assert status == 200
            assert "guard1" in body
        # More idle clients than before, still answering.
        idle += half_sent(live.port, 100)
        assert live.request("/display/state")[0] == 200
    finally:
        for s in idle:
            s.close()


def test_an_idle_connection_is_closed_after_the_channel_timeout(serve):
    live = serve(**{"web.channel_timeout_s": 5})
    [idle] = half_sent(live.port, 1)
    with idle:
        idle.settimeout(5 + 5 + ANSWER_S)  # the timeout, the cleanup interval, slack
        assert idle.recv(100) == b""  # closed by the server, not by the timeout here


# ----------------------------------------------------------------------------- 10. hosts


def test_a_request_for_another_host_name_is_refused_with_a_clear_message(serve):
    live = serve(**{"web.allowed_hosts": "gate.example.org"})

    status, _, body = live.request("/login", headers={"Host": "rebind.attacker.example"})
    assert status == 400
    assert body.startswith("Tên máy không được phép")
    assert "This host name is not allowed" in body
    status, _, _ = live.request("/display/state", headers={"Host": "attacker.example:8080"})
    assert status == 400
    for host in (
        f"127.0.0.1:{live.port}",
        f"localhost:{live.port}",
        f"[::1]:{live.port}",
        "192.168.1.20:8080",
        "gate.example.org",
        "GATE.example.org.:8080",
        f"{socket.gethostname()}.local",
    ):
        assert live.request("/login", headers={"Host": host})[0] == 200, host
