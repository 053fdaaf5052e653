"""Staff passes: managers issue them, revoke them and print badges.

A pass is valid for up to a year. Its signed text is kept with the site's
record (unlike a declaration's, which only the visitor holds), so the badge
sheet can print the very same code again: re-signing would give the pass a
new code id, and revoking the old one would not stop a copy of the new one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers.response import Response

from admin_web.auth import current_user, login_required
from admin_web.badge_logo import (
    LOGO_MAX_BYTES,
    LogoError,
    logo_data_url,
    remove_logo,
    save_logo,
)
from admin_web.context import gk
from admin_web.declare import (
    NAME_MAX_CHARS,
    name_problem,
    qr_data_url,
    revoke_issued,
    site_name,
)
from admin_web.presenting import DATE, local
from kiosk.codes.base import KIND_STAFF_PASS
from kiosk.codes.sitecodes import MAX_ORGANISATION_CHARS
from kiosk.declarations import MAX_PASS_DAYS, DeclarationError, issue_staff_pass
from kiosk.keys import KeysError
from kiosk.store import AuditNote, SiteCode, User

log = logging.getLogger(__name__)

bp = Blueprint("passes", __name__)

STAFF_ID_MAX_CHARS = 32
_STAFF_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")
"""As signed codes carry it (kiosk.codes.sitecodes)."""
_CODE_ID = re.compile(r"[0-9a-f]{8,32}")

BADGE_QR_MIN_PX = 420
"""The badge's QR is printed 3.5 cm wide: about 300 dpi."""
DATE_FORMAT = DATE


def last_day(code: SiteCode) -> str:
    """The last day a pass is valid, as a date (it expires at the next midnight)."""
    return local(code.expires_at - timedelta(seconds=1), DATE_FORMAT)


def _user() -> User:
    user = current_user()
    assert user is not None  # login_required let the request through
    return user


def status_of(code: SiteCode, now: datetime) -> str:
    """revoked, expired, future (not valid yet) or active."""
    if code.revoked_at is not None:
        return "revoked"
    if code.expires_at <= now:
        return "expired"
    if code.valid_from > now:
        return "future"
    return "active"


@dataclass
class PassForm:
    """What was typed into the issue form, and what is wrong with it."""

    name: str = ""
    staff_id: str = ""
    organisation: str = ""
    valid_from: str = ""
    valid_until: str = ""
    problems: dict[str, str] = field(default_factory=dict)

    @classmethod
    def default(cls, today: date) -> PassForm:
        """Valid from today for a year (to the day before the same date next year)."""
        try:
            next_year = today.replace(year=today.year + 1)
        except ValueError:  # 29 February
            next_year = today.replace(year=today.year + 1, day=28)
        return cls(
            valid_from=today.isoformat(),
            valid_until=(next_year - timedelta(days=1)).isoformat(),
        )

    @classmethod
    def posted(cls, form: Mapping[str, str]) -> PassForm:
        return cls(
            name=form.get("name", "")[: NAME_MAX_CHARS * 2],
            staff_id=form.get("staff_id", "").strip()[: STAFF_ID_MAX_CHARS * 2],
            organisation=" ".join(form.get("organisation", "").split())[
                : MAX_ORGANISATION_CHARS * 2
            ],
            valid_from=form.get("valid_from", "").strip(),
            valid_until=form.get("valid_until", "").strip(),
        )

    def period(self) -> tuple[datetime, datetime] | None:
        """From the start of the first day to the end of the last, in the site's
        time zone; None (with problems noted) when the dates are not usable."""
        days: dict[str, date] = {}
        for name in ("valid_from", "valid_until"):
            try:
                days[name] = date.fromisoformat(getattr(self, name))
            except ValueError:
                self.problems[name] = _("Enter a date.")
        if len(days) < 2:
            return None
        if days["valid_until"] < days["valid_from"]:
            self.problems["valid_until"] = _("The last day must not be before the first.")
            return None
        tz = gk().tz
        start = datetime.combine(days["valid_from"], time(0), tzinfo=tz)
        end = datetime.combine(days["valid_until"] + timedelta(days=1), time(0), tzinfo=tz)
        if end - start > timedelta(days=MAX_PASS_DAYS):
            self.problems["valid_until"] = _("A pass is valid for a year at most.")
            return None
        if end <= gk().clock.now():
            self.problems["valid_until"] = _("This pass would already have expired.")
            return None
        return start, end

    def check(self) -> tuple[datetime, datetime] | None:
        if problem := name_problem(self.name, missing=_("Enter the name.")):
            self.problems["name"] = problem
        if not self.staff_id:
            self.problems["staff_id"] = _("Enter the staff ID.")
        elif not _STAFF_ID.fullmatch(self.staff_id):
            self.problems["staff_id"] = _(
                "A staff ID has 1 to 32 letters, digits, dots, dashes or underscores."
            )
        if len(self.organisation) > MAX_ORGANISATION_CHARS:
            self.problems["organisation"] = _(
                "Use at most %(count)d characters.", count=MAX_ORGANISATION_CHARS
            )
        return self.period()


def _list_page(form: PassForm, status: int = 200) -> Any:
    now = gk().clock.now()
    passes = gk().store.site_codes(KIND_STAFF_PASS, now=now, include_expired=True)
    return (
        render_template(
            "passes.html",
            passes=[(p, status_of(p, now)) for p in passes],
            form=form,
            date_format=DATE_FORMAT,
            last_day=last_day,
            org_max=MAX_ORGANISATION_CHARS,
            logo=logo_data_url(gk().settings.data_dir),
            logo_max_kb=LOGO_MAX_BYTES // 1024,
            site_name=site_name(),
        ),
        status,
    )


@bp.get("/passes")
@login_required("manager")
def index() -> Any:
    today = gk().clock.now().astimezone(gk().tz).date()
    return _list_page(PassForm.default(today))


@bp.post("/passes/new")
@login_required("manager")
def issue() -> Any:
    form = PassForm.posted(request.form)
    period = form.check()
    if form.problems or period is None:
        flash(_("No pass was issued. Correct the values marked below."), "error")
        return _list_page(form, 400)
    user = _user()
    settings = gk().effective()
    now = gk().clock.now()
    try:
        issued = issue_staff_pass(
            gk().store,
            settings.keys_dir,
            site_id=settings["gate.site_id"],
            name=form.name,
            staff_id=form.staff_id,
            organisation=form.organisation or None,
            valid_from=period[0],
            valid_until=period[1],
            at=now,
            issued_by=user.name,
            audit=AuditNote(
                user.name,
                "staff-pass",
                {"staff_id": form.staff_id, "until": period[1].isoformat()},
                now,
            ),
        )
    except KeysError as exc:
        log.error("cannot sign a staff pass: %s", exc)
        form.problems[""] = _(
            "The site has no signing keys yet. Run “gatekiosk keys init” on the gate, "
            "then issue the pass again."
        )
        flash(form.problems[""], "error")
        return _list_page(form, 409)
    except DeclarationError as exc:
        log.warning("staff pass refused by the issuer: %s", exc)
        flash(_("No pass was issued: %(problem)s", problem=str(exc)), "error")
        return _list_page(form, 400)
    flash(_("Issued a staff pass for %(name)s.", name=issued.record.name), "success")
    return redirect(url_for("passes.index"))


@bp.post("/passes/<code_id>/revoke")
@login_required("manager")
def revoke(code_id: str) -> Response:
    code, revoked = revoke_issued(code_id, KIND_STAFF_PASS)
    if revoked:
        flash(_("The pass of %(name)s is revoked: the gate refuses it.", name=code.name), "success")
    else:
        flash(_("That pass was already revoked."), "info")
    return redirect(url_for("passes.index"))


def _logo_problem(reason: str) -> str:
    if reason == "too-large":
        return _("The logo is larger than %(size)d KB.", size=LOGO_MAX_BYTES // 1024)
    if reason == "empty":
        return _("Choose a logo file first.")
    return _("The logo must be a PNG or JPEG image.")


@bp.post("/passes/logo")
@login_required("manager")
def logo() -> Response:
    """Upload (``file``) or remove (``remove``) the logo printed on badges; audited."""
    context = gk()
    user = _user()
    now = context.clock.now()
    data_dir = context.settings.data_dir
    if request.form.get("remove"):
        if remove_logo(data_dir):
            context.store.audit(
                actor=user.name, action="badge-logo", detail={"removed": True}, at=now
            )
            flash(_("The logo is removed from the badges."), "success")
        return redirect(url_for("passes.index"))
    upload = request.files.get("file")
    data = upload.read(LOGO_MAX_BYTES + 1) if upload is not None else b""
    try:
        save_logo(data_dir, data)
    except LogoError as exc:
        flash(_logo_problem(str(exc)), "error")
        return redirect(url_for("passes.index"))
    context.store.audit(
        actor=user.name, action="badge-logo", detail={"size_kb": -(-len(data) // 1024)}, at=now
    )
    log.info("%s set the badge logo (%d bytes)", user.name, len(data))
    flash(_("The logo is saved; badges print it from now on."), "success")
    return redirect(url_for("passes.index"))


@dataclass(frozen=True)
class Badge:
    code: SiteCode
    qr: str | None
    """The pass's code as a ``data:`` PNG; None when its text was not kept."""

    @property
    def staff_id(self) -> str:
        return str(self.code.answers.get("staff_id", ""))


def badges_for(codes: Sequence[SiteCode]) -> list[Badge]:
    return [
        Badge(code, qr_data_url(code.text, min_px=BADGE_QR_MIN_PX) if code.text else None)
        for code in codes
    ]


@bp.get("/passes/badges")
@login_required("manager")
def badges() -> Any:
    """A print-ready A4 sheet of badges: the passes ticked on the list
    (``?id=...``), or every active one."""
    now = gk().clock.now()
    wanted = [i for i in request.args.getlist("id") if _CODE_ID.fullmatch(i)]
    if wanted:
        found = [gk().store.site_code(i) for i in dict.fromkeys(wanted)]
        codes = [c for c in found if c is not None and c.kind == KIND_STAFF_PASS]
    else:
        codes = [
            c
            for c in gk().store.site_codes(KIND_STAFF_PASS, now=now)
            if status_of(c, now) in ("active", "future")
        ]
    printable = [c for c in codes if c.text and status_of(c, now) in ("active", "future")]
    skipped = [(c, status_of(c, now)) for c in codes if c not in printable]
    return render_template(
        "badges.html",
        badges=badges_for(printable),
        skipped=skipped,
        site_name=site_name(),
        logo=logo_data_url(gk().settings.data_dir),
        last_day=last_day,
    )
