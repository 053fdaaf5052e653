"""Messages the admin web translates at run time but extraction cannot see.

The views pass these texts to ``gettext`` as variables: each editable
setting's help from :data:`kiosk.config.SETTINGS` (``_(setting.help)`` in
:mod:`admin_web.admin`), and the account errors of :mod:`kiosk.accounts`
(``_(str(exc))``). ``pybabel extract`` only finds literal strings in calls,
so they are repeated here inside :func:`N_`, one of Babel's default
keywords, which marks a string for the catalog and returns it unchanged.

Nothing imports this module at run time; it exists for extraction, and
``tests/test_i18n.py`` checks it against the texts the code really produces,
so a changed help line or error fails the tests instead of going out
untranslated.
"""

from __future__ import annotations


def N_(message: str) -> str:
    """Mark ``message`` for extraction; it is translated where it is shown."""
    return message


SETTING_HELP: tuple[str, ...] = (
    # gate.id
    N_("Name of this gate, recorded with every event."),
    # gate.site_name
    N_("The site's name on the declaration page, the poster and staff badges."),
    # codes.declaration_validity_h
    N_("How long a health declaration is valid after it is made, in hours."),
    # gate.mode
    N_("entry: everyone comes in; exit: everyone goes out; both: direction from presence."),
    # gate.timezone
    N_("The site's IANA time zone."),
    # policy.capacity
    N_("Most people inside at once; 0 for no limit."),
    # policy.antipassback
    N_("A code already inside used to enter again: off, soft (allow, warn), hard (deny)."),
    # policy.allowed_kinds
    N_("Comma-separated code kinds the gate accepts."),
    # policy.presence_expiry_h
    N_("Hours after which someone with no recorded exit no longer counts as inside."),
    # scan.hysteresis_s
    N_("A code must leave view this long before showing it again counts as a new scan."),
    # pins.relay_pulse_ms
    N_("How long the door relay stays energised."),
    # privacy.retention_days
    N_("Events older than this are purged."),
)
"""The help of every setting in :data:`kiosk.config.EDITABLE_ON_WEB`, word for word."""

ACCOUNT_ERRORS: tuple[str, ...] = (
    N_("a user name has 2 to 40 letters, digits, dots, dashes or underscores"),
    N_("the role must be one of manager, guard"),
    N_("the password must have at least 10 characters"),
    N_("the password must not be the user name"),
)
"""What :class:`kiosk.accounts.AccountError` says, word for word, as the
users page shows it (it capitalises the first letter and adds a full stop)."""
