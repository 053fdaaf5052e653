"""The admin web's JSON endpoints against their OpenAPI document
(admin_web/openapi.yaml), scanned by Schemathesis as a security reviewer would.

Schemathesis generates valid and invalid requests from the document
(boundary values first, then random ones: huge and negative cursors,
non-numeric text, forged session cookies and display tokens) and runs all
its default checks on every answer: no server error, a declared status
code, a declared content type and headers, a body that matches the schema,
invalid input refused with 4xx, valid input accepted, unsupported methods
answered 405, and authentication enforced (the same request without, or
with a forged, credential must be refused).

It runs against the real app over a real SQLite file, from a LAN address,
as each kind of caller: anonymous, guard, manager, a gate screen with the
display token, and the Pi's own screen over loopback. Generation is
derandomized and bounded, so a run is repeatable and takes seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings
from schemathesis.specs.openapi.checks import ignored_auth

import admin_web
from admin_web.token_guesses import TokenGuesses
from kiosk.accounts import PasswordHashing
from kiosk.clock import FakeClock
from kiosk.store import KioskHealth, Store
from tests.web import log_in, make_app, record

SPEC_PATH = Path(admin_web.__file__).parent / "openapi.yaml"
COOKIE = "gatekiosk_session"
TOKEN = "display-token-0123456789abcdef"
LAN = {"REMOTE_ADDR": "192.168.1.50"}
LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}

MAX_EXAMPLES = 30
"""Random examples per operation and caller (Hypothesis's generate phase).
Schemathesis's coverage phase sends its boundary and mutated cases first,
whatever this number; the whole file runs in seconds."""

SCAN = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,  # the same requests on every run; no example database
    deadline=None,  # the machine is shared: no timing in tests
)

HOSTILE_NAMES = [
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    '"; DROP TABLE events;--',
    "a\x00b",
    "\u202eRTL\u202c override \ufeff",
    "😀 emoji",
    "x" * 5000,
    "   ",
    "",
    "Ngô",
]


# ----------------------------------------------------------------------------- the app


def populate(store: Store, clock: FakeClock) -> None:
    """A day at the gate: Vietnamese and hostile names, refusals, a warning,
    manual admissions, an unsynchronised clock, an HC1: holder, the kiosk's
    health and admission requests by a guard and by a manager."""
    now = clock.now()
    for name in ("Nguyễn Văn An", "Trần Thị Bích Ngọc", "Lê Đức Thọ", *HOSTILE_NAMES):
        record(store, clock, display_name=name, at=now - timedelta(minutes=30))
    record(store, clock, direction="out", reason="ok-exit", at=now - timedelta(minutes=20))
    for reason in ("denylisted", "sitecode-expired", "hcert-bad-signature", "made-up-reason"):
        record(store, clock, decision="deny", reason=reason, at=now - timedelta(minutes=10))
    record(store, clock, warning="antipassback", at=now - timedelta(minutes=9))
    record(
        store,
        clock,
        kind="unrecognised",
        decision="deny",
        reason="unrecognised",
        subject_hash=None,
        display_name=None,
        masked_id=None,
        at=now - timedelta(minutes=8),
    )
    record(
        store,
        clock,
        kind="manual",
        reason="manual-admit",
        actor="guard1",
        subject_hash=None,
        display_name="Khách <b>lạ</b>",
        masked_id=None,
        at=now - timedelta(minutes=7),
    )
    # A Pi that booted without network time: 1970, and the clock not synchronised.
    record(store, clock, clock_synced=False, at=datetime(1970, 1, 1, 0, 0, 7, tzinfo=UTC))
    # A clock running ahead.
    record(store, clock, clock_synced=False, at=now + timedelta(days=400))
    # The newest event: a verified HC1: certificate, shown with the holder's identity.
    record(
        store,
        clock,
        kind="hcert",
        display_name="Nguyễn Thị Hoa",
        name_latin="NGUYEN<THI<HOA",
        birth_date="1990-13-45",
        at=now - timedelta(seconds=2),
    )
    store.write_health(
        KioskHealth(
            gate_id="gate-1",
            updated_at=now - timedelta(minutes=5),
            last_frame_at=None,
            fps=0.0,
            camera="picamera2",
            camera_ok=False,
            camera_detail="Không mở được camera <script>",
            decoder="zxing",
            pin_backend="mock",
            clock_synced=False,
            fault="camera",
        )
    )
    store.request_admit(actor="guard1", reason="Giao hàng", display_name="Bà Tư", at=now)
    store.request_admit(actor="manager1", reason="<i>VIP</i>", display_name=None, at=now)
    store.request_admit(
        actor="guard1", reason="old", display_name=None, at=now - timedelta(hours=1)
    )


SESSIONS: dict[str, str] = {}
"""The session cookie of a guard and of a manager, by role, once logged in."""


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, password_hashing: PasswordHashing
) -> Iterator[Flask]:
    """One app for the whole scan (the JSON endpoints only read), with a
    guard and a manager logged in."""
    clock = FakeClock(wall=datetime(2026, 3, 9, 2, 30, tzinfo=UTC))
    overrides: dict[str, Any] = {"web.display_token": TOKEN}
    app = make_app(
        tmp_path_factory.mktemp("api"), clock=clock, hashing=password_hashing, **overrides
    )
    store: Store = app.extensions["gatekiosk"].store
    # The scan sends thousands of wrong tokens from one address; the throttle
    # that would answer 429 to them is tested in tests/test_web_security.py.
    app.extensions["gatekiosk.display_guesses"] = TokenGuesses(max_guesses=10**9)
    populate(store, clock)
    for role in ("guard", "manager"):
        client = app.test_client()
        log_in(client, role)
        cookie = client.get_cookie(COOKIE)
        assert cookie is not None
        SESSIONS[role] = cookie.value
    yield app
    SESSIONS.clear()
    store.close()


def placeholder(role: str) -> str:
    """The cookie value a provider gives while Schemathesis builds cases, some
    at collection time, before the app exists to log in to; :func:`send`
    puts the real cookie in its place."""
    return f"<{role} session>"


class _SessionCookie:
    """Schemathesis sets a provider's credential on every case it generates
    and knows it for a real one: its authentication check then sends the same
    request without it and with a forged one, and expects both refused."""

    role = ""

    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
        return placeholder(self.role)

    def set(self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.cookies = {**(case.cookies or {}), COOKIE: data}


class GuardSession(_SessionCookie):
    role = "guard"


class ManagerSession(_SessionCookie):
    role = "manager"


class DisplayToken:
    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
        return TOKEN

    def set(self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.query = {**(case.query or {}), "token": data}


def send(case: schemathesis.Case, api: Flask, environ: dict[str, str], **kw: Any) -> Any:
    """Send the case to the app from ``environ``'s address and run every check.

    The schema is bound to the app here because the app is a fixture and
    ``schemathesis.pytest.from_fixture`` fails under pytest 9.2 (it sets
    ``Function._nodeid``, which pytest no longer has). The checks' own
    follow-up requests (no credential, a forged one) go to the same app.
    """
    case.operation.schema.app = api
    cookies = case.cookies or {}
    for role, value in SESSIONS.items():
        if cookies.get(COOKIE) == placeholder(role):
            case.cookies = {**cookies, COOKIE: value}
    return case.call_and_validate(app=api, environ_base=environ, **kw)


# ----------------------------------------------------------------------------- the scan

schema = schemathesis.openapi.from_path(SPEC_PATH, config=schemathesis.Config())
screen = schema.include(path="/display/state")


@SCAN
@schema.parametrize()
def test_anonymous_lan_caller_is_refused_everywhere(case: schemathesis.Case, api: Flask) -> None:
    """No session (or a forged cookie, or a wrong token): 401 on /api/*, 403 on the screen."""
    response = send(case, api, LAN)
    if response.request.method == "GET":  # not Flask's automatic OPTIONS, nor a 405
        assert response.status_code in (400, 401, 403, 404), response.status_code


@SCAN
@schema.auth(GuardSession, refresh_interval=None)
@schema.parametrize()
def test_guard_session(case: schemathesis.Case, api: Flask) -> None:
    send(case, api, LAN)


@SCAN
@schema.auth(ManagerSession, refresh_interval=None)
@schema.parametrize()
def test_manager_session(case: schemathesis.Case, api: Flask) -> None:
    send(case, api, LAN)


@SCAN
@screen.auth(DisplayToken, refresh_interval=None)
@screen.parametrize()
def test_lan_screen_with_the_display_token(case: schemathesis.Case, api: Flask) -> None:
    send(case, api, LAN)


@SCAN
@screen.parametrize()
def test_the_pis_own_screen_over_loopback(case: schemathesis.Case, api: Flask) -> None:
    """Loopback needs no credential by design (the document cannot say so),
    so the check that credentials are enforced is left out here only."""
    send(case, api, LOOPBACK, excluded_checks=[ignored_auth])


# ------------------------------------------------------------------- shapes and fixes, one by one


def test_a_kiosk_that_never_reported_is_only_not_running(guard: FlaskClient) -> None:
    response = guard.get("/api/live")
    assert response.status_code == 200
    schema["/api/live"]["GET"].validate_response(response)
    assert response.get_json()["summary"]["health"] == {"running": False}


def test_a_healthy_kiosk_matches_the_document(
    guard: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    web_store.write_health(
        KioskHealth(
            gate_id="gate-1",
            updated_at=clock.now(),
            last_frame_at=clock.now(),
            fps=14.5,
            camera="synthetic",
            camera_ok=True,
            camera_detail="",
            decoder="zxing",
            pin_backend="mock",
            clock_synced=True,
            fault=None,
        )
    )
    response = guard.get("/api/live?after=0")
    schema["/api/live"]["GET"].validate_response(response)
    health = response.get_json()["summary"]["health"]
    assert health["running"] is True
    assert health["fault"] == ""


def test_a_decision_with_a_warning_matches_the_document(
    client: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    record(web_store, clock, warning="antipassback")
    response = client.get("/display/state")  # the Pi's own screen
    schema["/display/state"]["GET"].validate_response(response)
    event = response.get_json()["event"]
    assert event["identity"] is None
    assert set(event["warning"]) == {"vi", "en"}


@pytest.fixture(scope="module")
def guard_client(api: Flask) -> FlaskClient:
    """A guard's browser on the module's app (no new app and log-in per case)."""
    client = api.test_client()
    client.set_cookie(COOKIE, SESSIONS["guard"])
    return client


MALFORMED_CURSORS = [
    "-1",
    "abc",
    "",
    "1.5",
    "+1",
    " 1",
    "1_000",
    "٣",  # an Arabic-Indic three: int() reads it, a cursor is ASCII digits
    "9223372036854775808",  # 2**63: SQLite cannot bind it (/api/live answered 500)
    "1" * 5000,  # past Python's int-from-text limit
]


@pytest.mark.parametrize("after", MALFORMED_CURSORS)
def test_a_malformed_live_cursor_is_refused_with_400(guard_client: FlaskClient, after: str) -> None:
    response = guard_client.get("/api/live", query_string={"after": after})
    assert response.status_code == 400
    schema["/api/live"]["GET"].validate_response(response)


@pytest.mark.parametrize("after", MALFORMED_CURSORS)
def test_the_gate_screen_reads_a_malformed_cursor_without_failing(
    guard_client: FlaskClient, after: str
) -> None:
    """Read as the start, or past the end for 2**63: the screen keeps working."""
    response = guard_client.get("/display/state", query_string={"after": after})
    assert response.status_code == 200
    schema["/display/state"]["GET"].validate_response(response)


@pytest.mark.parametrize("path", ["/api/live", "/display/state"])
@pytest.mark.parametrize("after", ["0", "007", "9223372036854775807"])
def test_a_cursor_in_range_is_accepted(guard_client: FlaskClient, path: str, after: str) -> None:
    response = guard_client.get(path, query_string={"after": after})
    assert response.status_code == 200
    schema[path]["GET"].validate_response(response)


def test_an_admission_id_beyond_sqlite_is_not_found(guard_client: FlaskClient) -> None:
    """2**63 was a 500 (OverflowError binding it), on the page and its JSON."""
    for path in ("/api/admit/9223372036854775808", "/admit/9223372036854775808"):
        assert guard_client.get(path).status_code == 404, path
    assert guard_client.get("/api/admit/1").status_code == 200  # the guard's own
