"""The managers' area: site settings, the denylist, accounts and the audit log.

Every change is a POST (CSRF-checked by :mod:`admin_web.security`), is
validated before anything is written, and is recorded in the audit log with
the manager's name. Bad input re-renders the form with what was typed and a
message for each problem; nothing is half-saved.
"""

from __future__ import annotations

import logging
import math
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers.response import Response

from admin_web.auth import current_user, login_required
from admin_web.context import gk
from admin_web.labels import detail_lines
from admin_web.presenting import local
from kiosk.accounts import ROLES, AccountError, add_user, reset_password
from kiosk.config import EDITABLE_ON_WEB, SETTINGS, Setting, Settings, with_site_settings
from kiosk.errors import ConfigError, StoreError
from kiosk.privacy import subject_hash, typed_id_subject
from kiosk.store import AuditNote, User

log = logging.getLogger(__name__)

bp = Blueprint("admin", __name__)

# ----------------------------------------------------------------------------- settings

LABELS: Mapping[str, Any] = {
    "gate.id": _l("Gate name"),
    "gate.site_name": _l("Site name"),
    "codes.declaration_validity_h": _l("Declarations valid for (hours)"),
    "gate.mode": _l("Mode"),
    "gate.timezone": _l("Time zone"),
    "policy.capacity": _l("Capacity"),
    "policy.antipassback": _l("Anti-passback"),
    "policy.allowed_kinds": _l("Accepted codes"),
    "policy.presence_expiry_h": _l("Presence expiry (hours)"),
    "scan.hysteresis_s": _l("Hysteresis (seconds)"),
    "pins.relay_pulse_ms": _l("Door relay pulse (milliseconds)"),
    "privacy.retention_days": _l("Keep events for (days)"),
}
"""What a manager reads beside each editable setting, in the page's language."""

CHOICE_LABELS: Mapping[str, Mapping[str, Any]] = {
    "gate.mode": {
        "entry": _l("Entry: everyone comes in"),
        "exit": _l("Exit: everyone goes out"),
        "both": _l("Both: direction from presence"),
    },
    "policy.antipassback": {
        "off": _l("Off"),
        "soft": _l("Soft: allow, with a warning"),
        "hard": _l("Hard: refuse"),
    },
}

KINDS: tuple[tuple[str, Any], ...] = (
    ("declaration", _l("The site's health declaration")),
    ("staff-pass", _l("Staff pass")),
    ("cccd", _l("Chip ID card (CCCD), identity only")),
    ("pc-covid", _l("PC-Covid personal QR, identity only")),
    ("hcert", _l("Vaccination certificate (EU DCC / Vietnam vaccine passport)")),
)
"""Code kinds a manager may accept, in the order they are shown and stored."""

IDENTITY_ONLY_KINDS = ("cccd", "pc-covid")

_SETTING_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass
class SettingField:
    """One editable setting as the form shows it."""

    name: str
    label: Any
    help: str
    widget: str
    """text, number, select, timezone or kinds."""
    value: str
    choices: list[tuple[str, Any]] = field(default_factory=list)
    checked: frozenset[str] = frozenset()
    minimum: float | None = None
    maximum: float | None = None
    step: str = "1"
    problems: list[str] = field(default_factory=list)


@lru_cache(maxsize=1)
def time_zones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def _as_text(value: Any) -> str:
    """A setting's value as the form shows it: ``12.0`` as ``12``."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _kinds_of(text: str) -> frozenset[str]:
    return frozenset(k.strip() for k in text.split(",") if k.strip())


def _fields(values: Mapping[str, str], problems: Mapping[str, list[str]]) -> list[SettingField]:
    fields = []
    for name in EDITABLE_ON_WEB:
        setting: Setting = _SETTING_BY_NAME[name]
        item = SettingField(
            name=name,
            label=LABELS.get(name, name),
            # The declaration's own help; translated where the catalog has it.
            help=_(setting.help),
            widget="text",
            value=values.get(name, ""),
            minimum=setting.minimum,
            maximum=setting.maximum,
            problems=problems.get(name, []),
        )
        if name == "policy.allowed_kinds":
            item.widget = "kinds"
            # The file's help says "comma-separated"; boxes to tick need none.
            item.help = ""
            item.choices = list(KINDS)
            item.checked = _kinds_of(item.value)
        elif name == "gate.timezone":
            item.widget = "timezone"
        elif setting.choices:
            item.widget = "select"
            labels = CHOICE_LABELS.get(name, {})
            item.choices = [(c, labels.get(c, c)) for c in setting.choices]
        elif setting.kind in (int, float):
            item.widget = "number"
            item.step = "1" if setting.kind is int else "any"
        fields.append(item)
    return fields


def _form_settings() -> dict[str, str]:
    """The posted values, as text, for every editable setting."""
    values = {
        name: request.form.get(name, "").strip()
        for name in EDITABLE_ON_WEB
        if name != "policy.allowed_kinds"
    }
    chosen = set(request.form.getlist("kinds"))
    values["policy.allowed_kinds"] = ",".join(kind for kind, _label in KINDS if kind in chosen)
    return values


def _problems_by_field(messages: list[str]) -> dict[str, list[str]]:
    """ConfigError's "name: problem" lines, filed under the setting they name."""
    by_field: dict[str, list[str]] = {}
    for message in messages:
        name, sep, rest = message.partition(": ")
        if sep and name in EDITABLE_ON_WEB:
            by_field.setdefault(name, []).append(rest)
        else:
            by_field.setdefault("", []).append(message)
    return by_field


def _number_problem(setting: Setting, text: str) -> str | None:
    """Why ``text`` is no number of the setting's kind, if it is not."""
    try:
        number = int(text) if setting.kind is int else float(text)
    except ValueError:
        return _("Enter a whole number.") if setting.kind is int else _("Enter a number.")
    if not math.isfinite(number):
        return _("Enter a number.")
    return None


def _check_settings(
    values: Mapping[str, str], current: Settings
) -> tuple[Settings | None, dict[str, list[str]]]:
    """The effective settings these values would give, or every problem with them."""
    problems: dict[str, list[str]] = {}
    if not values["policy.allowed_kinds"]:
        problems["policy.allowed_kinds"] = [
            _("Accept at least one kind of code, or the gate refuses everyone.")
        ]
    candidate = dict(values)
    for name, text in values.items():
        setting = _SETTING_BY_NAME[name]
        if setting.kind in (int, float):
            problem = _number_problem(setting, text)
            if problem:
                problems.setdefault(name, []).append(problem)
                # Checked as it was, so the other settings' problems still show.
                candidate[name] = current[name]
    try:
        merged = with_site_settings(gk().settings, candidate)
    except ConfigError as exc:
        for name, messages in _problems_by_field(exc.problems).items():
            problems.setdefault(name, []).extend(messages)
        return None, problems
    return (None if problems else merged), problems


@bp.route("/settings", methods=["GET", "POST"])
@login_required("manager")
def settings() -> Any:
    current = gk().effective()
    if request.method == "GET":
        values = {name: _as_text(current[name]) for name in EDITABLE_ON_WEB}
        return render_template("settings.html", fields=_fields(values, {}), time_zones=time_zones())

    values = _form_settings()
    merged, problems = _check_settings(values, current)
    if merged is None:
        flash(_("Nothing was saved. Correct the values marked below."), "error")
        return (
            render_template(
                "settings.html",
                fields=_fields(values, problems),
                general_problems=problems.get("", []),
                time_zones=time_zones(),
            ),
            400,
        )
    changes = {name: merged[name] for name in EDITABLE_ON_WEB if merged[name] != current[name]}
    if not changes:
        flash(_("Nothing changed."), "info")
        return redirect(url_for("admin.settings"))
    user = _user()
    now = gk().clock.now()
    detail = {name: {"old": current[name], "new": new} for name, new in changes.items()}
    gk().store.save_site_settings(
        changes, by=user.name, at=now, audit=AuditNote(user.name, "settings", detail, now)
    )
    log.info("%s changed settings: %s", user.name, ", ".join(sorted(changes)))
    flash(_("Saved. The gate applies the new settings within a few seconds."), "success")
    return redirect(url_for("admin.settings"))


# ----------------------------------------------------------------------------- denylist

LABEL_MAX_CHARS = 100
NOTE_MAX_CHARS = 500

_ID_DIGITS = re.compile(r"[0-9]{9,12}")
"""CMND (9 digits) and CCCD (12 digits) numbers, and the lengths between."""
_ID_PASSPORT = re.compile(r"(?=[A-Z0-9]*[A-Z])(?=[A-Z0-9]*[0-9])[A-Z0-9]{6,20}")
"""A passport-like number: 6 to 20 letters and digits, with at least one of each."""
_HASH = re.compile(r"[0-9a-f]{32}")


def normalise_id_number(text: str) -> str | None:
    """The ID number as the gate hashes it (spaces, dots, dashes dropped; upper
    case), or None when it looks like no ID number."""
    cleaned = re.sub(r"[\s.\-]", "", text).upper()
    if _ID_DIGITS.fullmatch(cleaned) or _ID_PASSPORT.fullmatch(cleaned):
        return cleaned
    return None


def _denylist_page(form: Mapping[str, str], problems: Mapping[str, str], status: int = 200) -> Any:
    return (
        render_template(
            "denylist.html",
            entries=gk().store.denylist_entries(),
            form=form,
            problems=problems,
            label_max=LABEL_MAX_CHARS,
            note_max=NOTE_MAX_CHARS,
        ),
        status,
    )


@bp.get("/denylist")
@login_required("manager")
def denylist() -> Any:
    return _denylist_page({}, {})


@bp.post("/denylist/add")
@login_required("manager")
def denylist_add() -> Any:
    # The ID number is only ever hashed: never stored, logged or audited.
    typed = {
        "id_number": request.form.get("id_number", ""),
        "label": request.form.get("label", "").strip(),
        "note": request.form.get("note", "").strip(),
    }
    problems: dict[str, str] = {}
    id_number = normalise_id_number(typed["id_number"])
    if not typed["id_number"].strip():
        problems["id_number"] = _("Enter the ID number.")
    elif id_number is None:
        problems["id_number"] = _(
            "An ID number has 9 to 12 digits; a passport number has 6 to 20 letters and digits."
        )
    if not typed["label"]:
        problems["label"] = _("Enter a label, so others know who this is.")
    elif len(typed["label"]) > LABEL_MAX_CHARS:
        problems["label"] = _("Use at most %(count)d characters.", count=LABEL_MAX_CHARS)
    if not typed["note"]:
        problems["note"] = _("Enter a note: why this person is refused.")
    elif len(typed["note"]) > NOTE_MAX_CHARS:
        problems["note"] = _("Use at most %(count)d characters.", count=NOTE_MAX_CHARS)
    if problems or id_number is None:
        flash(_("Nobody was added. Correct the values marked below."), "error")
        return _denylist_page(typed, problems, 400)

    user = _user()
    now = gk().clock.now()
    hashed = subject_hash(gk().hash_key, typed_id_subject(id_number))
    detail = {"label": typed["label"], "note": typed["note"]}  # and whether it "replaced"
    replaced = gk().store.add_to_denylist(
        hashed,
        label=typed["label"],
        note=typed["note"],
        at=now,
        added_by=user.name,
        audit=AuditNote(user.name, "denylist-add", detail, now),
    )
    if replaced:
        flash(_("This person was already on the denylist; the label and note are updated."), "info")
    else:
        flash(_("Added to the denylist. The gate refuses this person from now on."), "success")
    return redirect(url_for("admin.denylist"))


@bp.post("/denylist/remove")
@login_required("manager")
def denylist_remove() -> Response:
    hashed = request.form.get("subject", "")
    if not _HASH.fullmatch(hashed):
        abort(400)
    entry = next((e for e in gk().store.denylist_entries() if e.subject_hash == hashed), None)
    audit = None if entry is None else _audit("denylist-remove", label=entry.label)
    if entry is None or not gk().store.remove_from_denylist(hashed, audit=audit):
        flash(_("That entry is no longer on the denylist."), "info")
        return redirect(url_for("admin.denylist"))
    flash(_("Removed %(label)s from the denylist.", label=entry.label), "success")
    return redirect(url_for("admin.denylist"))


# ----------------------------------------------------------------------------- users


def _user() -> User:
    user = current_user()
    assert user is not None  # login_required let the request through
    return user


def _audit(action: str, **detail: Any) -> AuditNote:
    """An audit row by the logged-in user, now, for the store to write in the
    change's own transaction."""
    return AuditNote(_user().name, action, detail, gk().clock.now())


def _target(user_id: int) -> User:
    target = gk().store.user_by_id(user_id)
    if target is None:
        abort(404)
    return target


def _users_page(
    *,
    form: Mapping[str, str] | None = None,
    problem: str | None = None,
    reset_for: int | None = None,
    reset_problem: str | None = None,
    status: int = 200,
) -> Any:
    return (
        render_template(
            "users.html",
            users=gk().store.users(),
            roles=ROLES,
            form=form or {"role": "guard"},
            problem=problem,
            reset_for=reset_for,
            reset_problem=reset_problem,
        ),
        status,
    )


def _account_message(exc: Exception) -> str:
    """An account error's text as a sentence (the library writes them lower-case)."""
    # Translated where the catalog has it (see admin_web/catalog_extra.py).
    text = _(str(exc))
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


@bp.get("/users")
@login_required("manager")
def users() -> Any:
    return _users_page()


@bp.post("/users/add")
@login_required("manager")
def users_add() -> Any:
    form = {
        "name": request.form.get("name", "").strip(),
        "role": request.form.get("role", ""),
    }
    password = request.form.get("password", "")
    problem = None
    if password != request.form.get("password2", ""):
        problem = _("The two passwords differ.")
    elif gk().store.user_by_name(form["name"]) is not None:
        problem = _("A user named %(name)s already exists.", name=form["name"])
    if problem is None:
        audit = _audit("user-add", user=form["name"], role=form["role"])
        try:
            added = add_user(
                gk().store,
                form["name"],
                role=form["role"],
                password=password,
                at=audit.at,
                audit=audit,
                hashing=gk().password_hashing,
            )
        except (AccountError, StoreError) as exc:
            problem = _account_message(exc)
        else:
            flash(_("Added %(name)s.", name=added.name), "success")
            return redirect(url_for("admin.users"))
    flash(_("Nobody was added: %(problem)s", problem=problem), "error")
    return _users_page(form=form, problem=problem, status=400)


def _lockout_problem(actor: User, target: User) -> str | None:
    """Why disabling ``target`` would lock managers out, if it would."""
    if target.id == actor.id:
        return _("You cannot disable your own account.")
    if target.role == "manager" and not target.disabled and gk().store.count_managers() <= 1:
        return _(
            "%(name)s is the last enabled manager; nobody could manage the site.", name=target.name
        )
    return None


@bp.post("/users/<rowid:user_id>/disable")
@login_required("manager")
def users_disable(user_id: int) -> Any:
    actor, target = _user(), _target(user_id)
    problem = _lockout_problem(actor, target)
    if problem:
        flash(problem, "error")
        return _users_page(status=400)
    if not target.disabled:
        audit = _audit("user-disable", user=target.name)
        gk().store.set_user_disabled(target.id, True, audit=audit)
    flash(_("%(name)s is disabled and logged out.", name=target.name), "success")
    return redirect(url_for("admin.users"))


@bp.post("/users/<rowid:user_id>/enable")
@login_required("manager")
def users_enable(user_id: int) -> Response:
    target = _target(user_id)
    if target.disabled:
        gk().store.set_user_disabled(
            target.id, False, audit=_audit("user-enable", user=target.name)
        )
    flash(_("%(name)s can log in again.", name=target.name), "success")
    return redirect(url_for("admin.users"))


@bp.post("/users/<rowid:user_id>/password")
@login_required("manager")
def users_password(user_id: int) -> Any:
    actor, target = _user(), _target(user_id)
    password = request.form.get("password", "")
    audit = _audit("user-password-reset", user=target.name)
    problem = None
    if password != request.form.get("password2", ""):
        problem = _("The two passwords differ.")
    else:
        try:
            reset_password(
                gk().store,
                target,
                password,
                at=audit.at,
                audit=audit,
                hashing=gk().password_hashing,
            )
        except AccountError as exc:
            problem = _account_message(exc)
    if problem:
        flash(_("The password was not changed: %(problem)s", problem=problem), "error")
        return _users_page(reset_for=target.id, reset_problem=problem, status=400)
    if target.id == actor.id:
        # A new password ends every session of the account, except this one.
        changed = gk().store.user_by_id(actor.id)
        assert changed is not None
        session["pwv"] = changed.password_changed_at.isoformat()
    flash(
        _("The password of %(name)s is changed; their sessions are ended.", name=target.name),
        "success",
    )
    return redirect(url_for("admin.users"))


# ----------------------------------------------------------------------------- audit

AUDIT_LIMIT = 200


@bp.get("/audit")
@login_required("manager")
def audit() -> str:
    entries = gk().store.audit_entries(limit=AUDIT_LIMIT)
    return render_template(
        "audit.html",
        entries=[
            (entry, detail_lines(entry.detail, local=local, setting_labels=LABELS))
            for entry in entries
        ],
        limit=AUDIT_LIMIT,
    )
