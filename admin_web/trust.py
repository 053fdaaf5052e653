"""The trust list: the signing certificates (DSCs) the gate checks EU Digital
COVID Certificates and Vietnam's vaccine passport (``HC1:``) against.

Managers only. A manager uploads a file they obtained themselves (a PEM
bundle or a JSON list of base64 DER certificates, see :mod:`kiosk.trust`);
nothing is fetched from the network. The page shows what the file held,
every entry that could not be read and why, and the keys now trusted.
Every import and removal is audited; each change bumps the settings
version, so the running kiosk reloads its trust list within seconds.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers.response import Response

from admin_web.auth import current_user, login_required
from admin_web.context import gk
from kiosk.errors import StoreError
from kiosk.store import AuditNote, TrustedRow, User
from kiosk.trust import KID_BYTES, TrustError
from kiosk.trust_import import TrustImport, import_trust_file

log = logging.getLogger(__name__)

bp = Blueprint("trust", __name__)

MAX_UPLOAD_BYTES = 1024 * 1024
"""A trust list file bigger than this is refused on the web (a national list
is a few kilobytes; the whole EU list, some 4 MB, is one for the command
line: ``gatekiosk trust import``)."""

FILENAME_MAX_CHARS = 100


@dataclass(frozen=True)
class KeyView:
    """One certificate as the page lists it."""

    kid: str
    """The key id as trust lists and the HCERT specification print it (base64)."""
    country: str
    subject: str
    not_before: datetime
    not_after: datetime
    state: str
    """valid, expired or not-yet-valid, at the site clock's now."""
    new: bool = False
    """For an import: the certificate was not trusted before."""
    added_at: datetime | None = None
    added_by: str = ""


def _state(not_before: datetime, not_after: datetime, now: datetime) -> str:
    if now < not_before:
        return "not-yet-valid"
    if now > not_after:
        return "expired"
    return "valid"


def _kid_text(kid: bytes) -> str:
    return base64.b64encode(kid).decode("ascii")


def _listed(rows: Sequence[TrustedRow], now: datetime) -> list[KeyView]:
    return [
        KeyView(
            kid=_kid_text(row.kid),
            country=row.country,
            subject=row.subject,
            not_before=row.not_before,
            not_after=row.not_after,
            state=_state(row.not_before, row.not_after, now),
            added_at=row.added_at,
            added_by=row.added_by,
        )
        for row in rows
    ]


def _imported(result: TrustImport, before: set[bytes], now: datetime) -> list[KeyView]:
    return [
        KeyView(
            kid=cert.kid_b64,
            country=cert.country,
            subject=cert.subject,
            not_before=cert.not_before,
            not_after=cert.not_after,
            state=_state(cert.not_before, cert.not_after, now),
            new=cert.der not in before,
        )
        for cert in result.parsed.certificates
    ]


def _user() -> User:
    user = current_user()
    assert user is not None  # login_required let the request through
    return user


def _page(status: int = 200, **result: Any) -> tuple[str, int]:
    context = gk()
    keys = _listed(context.store.trusted_certificates(), context.clock.now())
    return (
        render_template(
            "trust.html", keys=keys, max_upload_mb=MAX_UPLOAD_BYTES // (1024 * 1024), **result
        ),
        status,
    )


@bp.get("/trust")
@login_required("manager")
def index() -> tuple[str, int]:
    return _page()


@bp.post("/trust/import")
@login_required("manager")
def upload() -> tuple[str, int]:
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash(_("Choose a trust list file to import."), "error")
        return _page(400)
    filename = upload.filename[:FILENAME_MAX_CHARS]
    try:
        data = upload.stream.read(MAX_UPLOAD_BYTES + 1)
    finally:
        upload.close()  # a big upload is spooled to a temporary file
    if len(data) > MAX_UPLOAD_BYTES:
        flash(
            _(
                "Nothing was imported: the file is larger than %(size)d MB.",
                size=MAX_UPLOAD_BYTES // (1024 * 1024),
            ),
            "error",
        )
        return _page(400)
    context = gk()
    user = _user()
    now = context.clock.now()
    try:
        before = {row.der for row in context.store.trusted_certificates()}
        audit = AuditNote(user.name, "trust-import", {"file": filename}, now)
        result = import_trust_file(context.store, data, by=user.name, at=now, audit=audit)
    except TrustError as exc:
        # The reason is the parser's English line ("neither a PEM bundle nor ...").
        flash(
            _("Nothing was imported: this is not a trust list (%(reason)s).", reason=str(exc)),
            "error",
        )
        return _page(400, filename=filename)
    except StoreError as exc:
        log.error("trust list import failed: %s", exc)
        flash(_("Nothing was imported: the database could not be written."), "error")
        return _page(503, filename=filename)
    problems = list(result.parsed.problems)
    imported = _imported(result, before, now)
    if not imported:
        flash(_("Nothing was imported: no certificate in the file could be read."), "error")
        return _page(400, filename=filename, problems=problems, imported=[])
    log.info(
        "%s imported %d new of %d trusted certificates (%d entries skipped)",
        user.name,
        result.added,
        len(imported),
        len(problems),
    )
    flash(
        _(
            "Imported %(added)d new of %(found)d certificates. "
            "The gate uses them within a few seconds.",
            added=result.added,
            found=len(imported),
        ),
        "success",
    )
    return _page(filename=filename, problems=problems, imported=imported)


@bp.post("/trust/remove")
@login_required("manager")
def remove() -> Response | tuple[str, int]:
    text = request.form.get("kid", "").strip()
    try:
        kid = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        kid = b""
    if len(kid) != KID_BYTES:
        flash(_("That is not a key id."), "error")
        return _page(400)
    context = gk()
    user = _user()
    audit = AuditNote(user.name, "trust-remove", {"kid": text}, context.clock.now())
    removed = context.store.remove_trusted_certificates(kid, audit=audit)
    if not removed:
        flash(_("No trusted certificate has key id %(kid)s.", kid=text), "error")
        return _page(404)
    log.info("%s removed %d trusted certificates with kid %s", user.name, removed, text)
    flash(
        _(
            "Removed %(count)d certificate(s) with key id %(kid)s. "
            "The gate stops accepting what they signed within a few seconds.",
            count=removed,
            kid=text,
        ),
        "success",
    )
    return redirect(url_for("trust.index"))
