"""The hub's "Gates" page and the endpoint gates join the site through.

Managers only, for the page: it lists every enrolled gate (revoked ones
marked) and makes one-time enrolment tokens. A token is shown once, right
after it is made, beside the fingerprint of the site CA; only its hash is
stored, it expires after :data:`kiosk.site.enrolment.TOKEN_TTL` and works
once. The manager types both at the gate (``gatekiosk site join``).

The join endpoint (``POST /site/enrol``, JSON) is a separate small app
(:func:`create_enrolment_app`, the same store and clock) that ``gatekiosk
web`` on a hub serves on loopback behind the hub's TLS front
(:mod:`kiosk.site.tls_front`, port ``site.enrol_port``): gates reach the
enrolment and nothing else of the admin web, whatever ``web.host`` says.
It is authenticated by the token alone (no cookie, so no CSRF).
``GET /site/enrol/ca`` serves the CA certificate, which the gate checks
against the fingerprint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, Flask, Response, abort, jsonify, render_template, request

from admin_web.auth import current_user, login_required
from admin_web.context import WebContext, gk
from kiosk.site import SiteError
from kiosk.site.enrolment import (
    TOKEN_TTL,
    ca_fingerprint,
    enrolled_gates,
    new_enrolment_token,
    token_hash,
)
from kiosk.site.hub_setup import HubFolder, check_can_enrol, enrolment_answer, parse_public_key
from kiosk.site.join import is_site_gate
from kiosk.site.pki import load_certificate
from kiosk.site.tls_front import TlsFront, server_context
from kiosk.store import AuditNote, ThrottleRule
from kiosk.webserver import RunningServer, serve_in_background

log = logging.getLogger(__name__)

bp = Blueprint("site", __name__)
enrol_bp = Blueprint("site_enrol", __name__)

MAX_REQUEST_BYTES = 16 * 1024
# Refused tokens, counted for the whole hub (behind the TLS front every
# request comes from loopback): past this many in the window, enrolment
# pauses. A token has 80 bits; this keeps even the log from filling up.
ENROL_FAILURES_MAX = 20
ENROL_FAILURES_WINDOW = timedelta(minutes=15)
_THROTTLE_KEY = "site-enrol"
_ENROL_RULE = ThrottleRule(
    waits=((ENROL_FAILURES_MAX, ENROL_FAILURES_WINDOW),), window=ENROL_FAILURES_WINDOW
)
"""After 20 refused tokens within 15 minutes, enrolment pauses until the window ends."""


# Pages whose changes come from the hub on a gate that is a site member.
MANAGED_ON_HUB = frozenset(
    {
        "admin.settings",
        "admin.denylist_add",
        "admin.denylist_remove",
        "trust.upload",
        "trust.remove",
    }
)


@bp.app_context_processor
def _site_managed() -> dict[str, Any]:
    """``site_managed``: the settings, denylist and trust pages show read only."""
    settings = gk().settings
    managed = is_site_gate(settings)
    return {"site_managed": managed, "site_hub": settings["site.hub"] if managed else ""}


@bp.before_app_request
def _refuse_changes_made_on_the_hub() -> tuple[str, int] | None:
    """A change on a site gate's own page would be overwritten by the next
    document from the hub: refuse it, pointing to the hub."""
    if request.method != "POST" or request.endpoint not in MANAGED_ON_HUB:
        return None
    if not is_site_gate(gk().settings):
        return None
    return render_template("site_managed.html"), 403


def _hub() -> HubFolder:
    return HubFolder(gk().settings.site_dir)


def _page(status: int = 200, **shown: Any) -> tuple[str, int]:
    context = gk()
    hub = _hub()
    now = context.clock.now()
    if not hub.is_initialised():
        return render_template("site_gates.html", hub=None, now=now), status
    description = hub.description()
    tokens = context.store.site_documents.enrolment_tokens(limit=10)
    return (
        render_template(
            "site_gates.html",
            hub=description,
            fingerprint=ca_fingerprint(load_certificate(hub.pki.ca_certificate)),
            gates=enrolled_gates(hub.pki),
            tokens=tokens,
            now=now,
            **shown,
        ),
        status,
    )


@bp.get("/site/gates")
@login_required("manager")
def gates() -> tuple[str, int]:
    return _page()


@bp.post("/site/gates/token")
@login_required("manager")
def make_token() -> tuple[str, int]:
    if not _hub().is_initialised():
        return _page(409)
    context = gk()
    user = current_user()
    assert user is not None  # login_required let the request through
    now = context.clock.now()
    token = new_enrolment_token()
    expires_at = now + TOKEN_TTL
    context.store.site_documents.add_enrolment_token(
        token_hash(token),
        created_at=now,
        expires_at=expires_at,
        created_by=user.name,
        audit=AuditNote(user.name, "site-token", {"expires": expires_at.isoformat()}, now),
    )
    log.info("%s made an enrolment token valid until %s", user.name, expires_at.isoformat())
    return _page(token=token, token_expires=expires_at)


@enrol_bp.get("/site/enrol/ca")
def enrol_ca() -> Response:
    hub = _hub()
    if not hub.is_initialised():
        abort(404)
    return Response(hub.pki.ca_certificate.read_bytes(), mimetype="application/x-pem-file")


@enrol_bp.post("/site/enrol")
def enrol() -> tuple[Response, int]:
    hub = _hub()
    if not hub.is_initialised():
        return _error("this machine is not a site's hub", 404)
    if (request.content_length or 0) > MAX_REQUEST_BYTES:
        return _error("request too large", 413)
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or body.get("v") != 1:
        return _error("not an enrolment request", 400)
    gate_id, token, public_pem = body.get("gate"), body.get("token"), body.get("public_key")
    if not all(isinstance(value, str) for value in (gate_id, token, public_pem)):
        return _error("not an enrolment request", 400)
    assert isinstance(gate_id, str)
    assert isinstance(token, str)
    assert isinstance(public_pem, str)
    context = gk()
    settings = context.settings
    now: datetime = context.clock.now()
    try:
        public_key = parse_public_key(public_pem)
        check_can_enrol(hub, gate_id)
    except SiteError as exc:
        status = 409 if "already" in str(exc) else 400
        return _error(str(exc), status)
    # Counted before the token is tried (one atomic UPSERT, so parallel guesses
    # cannot slip past the limit); a token that works takes its hit back.
    if not context.store.throttle_admit([_THROTTLE_KEY], _ENROL_RULE, at=now).admitted:
        return _error("too many refused tokens; try again later", 429)
    redeemed = context.store.site_documents.redeem_enrolment_token(
        token_hash(token),
        gate_id=gate_id,
        now=now,
        audit=AuditNote("gate:" + gate_id, "site-join", {"gate": gate_id}, now),
    )
    if not redeemed:
        log.warning("enrolment of gate %s refused: token used, expired or unknown", gate_id)
        return _error("token refused", 403)
    context.store.throttle_refund([_THROTTLE_KEY])
    answer = enrolment_answer(
        hub,
        gate_id=gate_id,
        public_key=public_key,
        keys_dir=settings.keys_dir,
        hash_key_path=settings.key_path,
        now=now,
    )
    log.info("gate %s joined the site", gate_id)
    return jsonify(answer), 200


def _error(message: str, status: int) -> tuple[Response, int]:
    return jsonify({"error": message}), status


def create_enrolment_app(context: WebContext) -> Flask:
    """The app gates join through: the two enrolment endpoints only."""
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES)
    app.extensions["gatekiosk"] = context
    app.register_blueprint(enrol_bp)
    return app


@dataclass
class EnrolmentService:
    """The enrolment app on loopback and the TLS front before it."""

    server: RunningServer
    front: TlsFront

    @property
    def port(self) -> int:
        return self.front.port

    def stop(self) -> None:
        self.front.stop()
        self.server.stop()


def start_enrolment(
    web: Flask, *, host: str = "", port: int | None = None
) -> EnrolmentService | None:
    """On a hub, serve enrolment over HTTPS (``port`` defaults to
    ``site.enrol_port``; 0 picks a free one); None on a machine that is not a hub."""
    context: WebContext = web.extensions["gatekiosk"]
    hub = HubFolder(context.settings.site_dir)
    if not hub.is_initialised():
        return None
    server = serve_in_background(create_enrolment_app(context), host="127.0.0.1", port=0)
    try:
        tls = server_context(hub.pki.server_certificate, hub.pki.server_key)
        front = TlsFront(
            tls,
            host=host,
            port=context.settings["site.enrol_port"] if port is None else port,
            upstream=("127.0.0.1", int(server.server.effective_port)),
        ).start()
    except SiteError:
        server.stop()
        raise
    log.info("gates join this hub over HTTPS on port %d", front.port)
    return EnrolmentService(server, front)
