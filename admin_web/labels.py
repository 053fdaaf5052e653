"""Words for the codes the store keeps: code kinds, audit actions and their details.

The store keeps short English codes (``pc-covid``, ``denylist-add``,
``format: csv``) because support, exports and the command line grep for
them. People read words in their language instead; each page shows the
word and keeps the code in a ``title`` tooltip or a small detail line, so a
support call can still quote it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from kiosk.messages import kind_label

ACTIONS: Mapping[str, Any] = {
    "login": _l("Signed in"),
    "export": _l("Exported the log"),
    "declaration": _l("Declaration at the desk"),
    "revoke": _l("Cancelled a code"),
    "questions": _l("Changed the declaration questions"),
    "admit": _l("Let someone in by hand"),
    "denylist-add": _l("Added to the denylist"),
    "denylist-remove": _l("Removed from the denylist"),
    "trust-import": _l("Imported certificate keys"),
    "trust-remove": _l("Removed a certificate key"),
    "settings": _l("Changed settings"),
    "user-add": _l("Added a user"),
    "user-disable": _l("Disabled a user"),
    "user-enable": _l("Enabled a user"),
    "user-password-reset": _l("Reset a password"),
    "staff-pass": _l("Issued a staff pass"),
    "keys-rotate": _l("Started a new signing key"),
    "keys-retire": _l("Retired a signing key"),
    "badge-logo": _l("Changed the badge logo"),
    "self-assessment": _l("Rated the site's safety measures"),
}
"""Audit actions in words; an action not listed here shows its code."""

DETAIL_KEYS: Mapping[str, Any] = {
    "format": _l("Format"),
    "complete": _l("Complete"),
    "start": _l("From"),
    "end": _l("Until"),
    "until": _l("Until"),
    "direction": _l("Direction"),
    "decision": _l("Decision"),
    "reason": _l("Reason"),
    "kind": _l("Code kind"),
    "text": _l("Search"),
    "clock_synced": _l("Clock synchronised"),
    "label": _l("Label"),
    "note": _l("Note"),
    "name": _l("Name"),
    "user": _l("User"),
    "role": _l("Role"),
    "file": _l("File"),
    "kid": _l("Key id"),
    "code": _l("Code"),
    "staff_id": _l("Staff id"),
    "event_id": _l("Event"),
    "request": _l("Request"),
    "replaced": _l("Replaced an entry"),
    "verdict": _l("Verdict"),
    "subject_hash": _l("Person (hashed)"),
    "old": _l("Before"),
    "new": _l("After"),
    "removed": _l("Removed"),
    "size_kb": _l("Size (KB)"),
    "score": _l("Score"),
    "checklist_version": _l("Checklist version"),
}
"""Audit detail keys in words; a key not listed here shows itself."""

_TIME_KEYS = frozenset({"start", "end", "until"})
_FORMATS = {"csv": "CSV", "xlsx": "Excel (XLSX)"}


@dataclass(frozen=True)
class DetailLine:
    """One line of an audit entry's detail: ``label: text``, with the stored
    ``key`` and ``raw`` value kept for the tooltip."""

    label: str
    text: str
    key: str
    raw: str


def action_label(action: str) -> str:
    label = ACTIONS.get(action)
    return str(label) if label is not None else action


def kind_text(kind: str | None) -> str:
    """A code kind in the page's language (``override`` and ``manual`` read alike)."""
    label = kind_label(kind)
    return label.en if str(get_locale()) == "en" else label.vi


WHERE_BY_HAND: Mapping[str, Any] = {
    "override": _l("at the gate's button"),
    "manual": _l("from the web"),
}
"""Where a guard let someone in, for the log filter, which must tell the two
stored kinds apart while naming the act once."""


def kind_choice(kind: str) -> str:
    """A kind as the log filter offers it: the kind's word, and for an entry
    let in by hand, where it was done (``Let in by the guard: from the web``)."""
    where = WHERE_BY_HAND.get(kind)
    return kind_text(kind) if where is None else f"{kind_text(kind)}: {where}"


def _yes_no(value: bool) -> str:
    return _("yes") if value else _("no")


def _value_text(key: str, value: Any, local: Any) -> str:
    """A detail value as a person reads it; ``local`` formats an aware time."""
    if isinstance(value, bool):
        return _yes_no(value)
    if key in _TIME_KEYS and isinstance(value, str):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            return value
        if at.tzinfo is None:  # a calendar date (a pass's last day), not an instant
            return at.strftime("%d/%m/%Y")
        return str(local(at))
    if key == "format" and isinstance(value, str):
        return _FORMATS.get(value, value)
    if key == "kind" and isinstance(value, str):
        return kind_text(value)
    if key == "clock_synced" and isinstance(value, str):
        return _yes_no(value == "True")
    if key == "role" and isinstance(value, str):
        return {"manager": _("manager"), "guard": _("guard")}.get(value, value)
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return "; ".join(
            f"{_key_text(k)}: {_value_text(str(k), v, local)}" for k, v in value.items()
        )
    if isinstance(value, list | tuple) and all(_is_question(item) for item in value):
        # The declaration's questions: their words in the page's language.
        side = "en" if str(get_locale()) == "en" else "vi"
        return " | ".join(str(item[side]) for item in value)
    if isinstance(value, list | tuple):
        return ", ".join(_value_text(key, v, local) for v in value)
    return str(value)


def _is_question(item: Any) -> bool:
    return isinstance(item, Mapping) and {"key", "vi", "en"} <= set(item)


def _key_text(key: Any) -> str:
    label = DETAIL_KEYS.get(str(key))
    return str(label) if label is not None else str(key)


def detail_lines(
    detail: Mapping[str, Any], *, local: Any, setting_labels: Mapping[str, Any]
) -> list[DetailLine]:
    """An audit entry's detail in words, one line per key.

    A settings change is ``{name: {"old": ..., "new": ...}}``: its line reads
    ``Capacity: 50 → 80`` (``setting_labels`` names the settings). ``local``
    turns an aware time into the page's text (:func:`admin_web.presenting.local`).
    """
    lines = []
    for key, value in detail.items():
        name = str(key)
        if isinstance(value, Mapping) and set(value) == {"old", "new"}:
            label = str(setting_labels.get(name, name))
            text = (
                f"{_value_text(name, value['old'], local)} → "
                f"{_value_text(name, value['new'], local)}"
            )
        else:
            label = _key_text(name)
            text = _value_text(name, value, local)
        raw = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        lines.append(DetailLine(label, text, name, raw))
    return lines
