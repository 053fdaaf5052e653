"""Issue 14, finding 7 through the real server: 40 requests at once from one
address, on waitress's threads over loopback sockets, get no more password
checks and no more declarations than the limits allow.

Before the fix the page read the count, did the work (a password check, a
signature and a QR picture) and only then counted, so requests that arrived
together all read the same count and all went through.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from admin_web import declare as declare_page
from kiosk.accounts import PasswordHashing
from kiosk.clock import FakeClock
from kiosk.codes.base import KIND_DECLARATION
from kiosk.keys import init_keys
from kiosk.webserver import Serving, serve_in_background
from tests.test_web_declare import declaration, keys_dir
from tests.web import make_app

PARALLEL = 40
ANSWER_S = 60.0
"""Generous: 40 requests queue on a shared 2-core machine."""


class Gate:
    """Holds callers in groups: each waits until ``size`` callers of its group
    are inside, or ``timeout_s`` passed.

    It widens the window between a throttle's check and its count, so the
    race the fix closes shows every time rather than by luck of scheduling:
    before the fix, each group of ``size`` requests all got past the check
    before any of them counted; after it, only the admitted ones ever get
    here (and the last few wait out the timeout).
    """

    def __init__(self, size: int, timeout_s: float = 2.0) -> None:
        self._size = size
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._group = threading.Event()
        self._inside = 0

    def pass_through(self) -> None:
        with self._lock:
            group = self._group
            self._inside += 1
            if self._inside >= self._size:
                group.set()
                self._group, self._inside = threading.Event(), 0
        group.wait(self._timeout_s)


@dataclass(frozen=True)
class CountingHashing(PasswordHashing):
    """The test's hashing, counting each hash: a login for an unknown name
    costs exactly one (:func:`kiosk.accounts.authenticate`), so the count is
    the number of password checks the server made."""

    calls: list[str] = field(default_factory=list, compare=False)
    gate: Gate | None = field(default=None, compare=False)

    def hash(self, password: str) -> str:
        self.calls.append(password)
        if self.gate is not None:
            self.gate.pass_through()
        return super().hash(password)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    with ExitStack() as stack:

        def start(hashing: PasswordHashing, **overrides: Any) -> tuple[Flask, int]:
            app = make_app(
                tmp_path / "site", clock=FakeClock(), hashing=hashing, csrf=False, **overrides
            )
            stack.callback(app.extensions["gatekiosk"].store.close)
            serving = Serving.from_settings(app.extensions["gatekiosk"].settings)
            server = serve_in_background(app, host="127.0.0.1", port=0, serving=serving)
            stack.callback(server.stop)
            return app, int(server.server.effective_port)

        yield start


def post_all_at_once(port: int, path: str, bodies: list[dict[str, str]]) -> Counter[int]:
    """POST every body on its own connection, all released together; the statuses."""
    statuses: list[int] = []
    start = threading.Barrier(len(bodies))

    def post(body: dict[str, str]) -> None:
        with closing(http.client.HTTPConnection("127.0.0.1", port, timeout=ANSWER_S)) as conn:
            conn.connect()
            start.wait(timeout=ANSWER_S)
            conn.request(
                "POST",
                path,
                body=urllib.parse.urlencode(body),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)

    threads = [threading.Thread(target=post, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=ANSWER_S * 2)
    assert len(statuses) == len(bodies), "some requests got no answer"
    return Counter(statuses)


def test_forty_parallel_logins_from_one_address_get_at_most_five_password_checks(serve):
    hashing = CountingHashing("scrypt:128:8:1")
    _, port = serve(hashing)
    hashing.calls.clear()  # the two accounts make_app added
    object.__setattr__(hashing, "gate", Gate(6))  # one more than may ever get through

    bodies = [{"name": f"nobody{i}", "password": "wrong-password"} for i in range(PARALLEL)]
    statuses = post_all_at_once(port, "/login", bodies)

    assert len(hashing.calls) <= 5
    assert len(hashing.calls) == 5  # the five free failures, no fewer either
    assert statuses[401] == len(hashing.calls)
    assert statuses[429] == PARALLEL - statuses[401]


def test_forty_parallel_declarations_from_one_address_stay_within_the_hourly_limit(
    serve, monkeypatch
):
    app, port = serve(PasswordHashing("scrypt:128:8:1"))
    threads = int(app.extensions["gatekiosk"].settings["web.threads"])
    gate, issue = Gate(threads), declare_page._issue

    def held_issue(*args: Any, **kwargs: Any) -> Any:
        gate.pass_through()  # all of waitress's threads issue at once
        return issue(*args, **kwargs)

    monkeypatch.setattr(declare_page, "_issue", held_issue)
    init_keys(keys_dir(app), at=app.extensions["gatekiosk"].clock.now())
    limit = int(app.extensions["gatekiosk"].effective()["codes.declarations_per_hour"])
    assert limit == 10  # today's default

    statuses = post_all_at_once(port, "/declare", [declaration() for _ in range(PARALLEL)])

    assert statuses[200] <= limit
    assert statuses[200] == limit
    assert statuses[200] + statuses[429] == PARALLEL
    gk = app.extensions["gatekiosk"]
    issued = gk.store.site_codes(KIND_DECLARATION, now=gk.clock.now())
    assert len(issued) == statuses[200]
