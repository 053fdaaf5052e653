"""The admin web: managers and guards see, search and export the gate log;
the gate screen shows visitors the decision.

It reads and writes only through :class:`kiosk.store.Store`. Served by
waitress (``gatekiosk web``); binds 127.0.0.1 unless ``web.host`` says
otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import Flask

from admin_web.context import WebContext
from admin_web.routing import RowIdConverter
from kiosk.accounts import SCRYPT, PasswordHashing
from kiosk.clock import Clock, SystemClock
from kiosk.config import Settings
from kiosk.privacy import load_or_create_key
from kiosk.store import Store


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    clock: Clock | None = None,
    test_config: Mapping[str, Any] | None = None,
    password_hashing: PasswordHashing = SCRYPT,
) -> Flask:
    """Build the web app for a site's settings.

    ``store`` and ``clock`` replace the real ones (tests, the demo).
    ``password_hashing`` is how the users page hashes new passwords (and what
    a login for an unknown name costs); tests pass a cheap one.
    """
    from admin_web import (
        admin,
        auth,
        dashboard,
        declare,
        display,
        errors,
        exports,
        guard,
        i18n,
        inside,
        log_views,
        passes,
        presenting,
        security,
        self_assessment,
        site,
        site_status,
        trust,
    )

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=load_or_create_key(settings.data_dir / "web-secret.key"),
        SESSION_COOKIE_NAME="gatekiosk_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings["web.cookie_secure"],
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        BABEL_DEFAULT_LOCALE="vi",
        BABEL_TRANSLATION_DIRECTORIES="translations",
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # Vietnamese names as UTF-8
    app.url_map.converters["rowid"] = RowIdConverter
    if test_config:
        app.config.update(test_config)
    context = WebContext(
        settings=settings,
        store=store if store is not None else Store.open(settings.db_path, concurrent_reads=True),
        clock=clock if clock is not None else SystemClock(),
        hash_key=load_or_create_key(settings.key_path),
        password_hashing=password_hashing,
    )
    app.extensions["gatekiosk"] = context

    security.init_app(app, settings)
    i18n.init_app(app)
    presenting.init_app(app)
    for module in (
        auth,
        dashboard,
        log_views,
        inside,
        exports,
        admin,
        guard,
        display,
        i18n,
        declare,
        passes,
        trust,
        errors,
        site,
        site_status,
        self_assessment,
    ):
        app.register_blueprint(module.bp)
    return app


def start_enrolment(app: Flask, **options: Any) -> Any:
    """On a site's hub, serve gates' enrolment over HTTPS beside the web (see
    :func:`admin_web.site.start_enrolment`); None on a machine that is not a hub.
    With :func:`create_app`, what an entry point needs to serve the web."""
    from admin_web.site import start_enrolment as start

    return start(app, **options)
