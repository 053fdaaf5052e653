"""Accounts: roles, password rules and hashing, shared by the web and the CLI.

A use case below both: ``gatekiosk user add``, the demo and the admin web's
users page and login all come here, and nothing here knows about HTTP.

Hashing is a parameter (:class:`PasswordHashing`). Every caller in the
product uses :data:`SCRYPT`, werkzeug's scrypt at its own default cost
(``scrypt:32768:8:1``: about 32 MiB and 0.15-1 s a hash on this hardware,
which is the point). Tests pass a cheap setting through a fixture; there is
no cheap default anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from werkzeug.security import check_password_hash, generate_password_hash

from kiosk.errors import GateError
from kiosk.store import AuditNote, Store, User

ROLES = ("manager", "guard")
MIN_PASSWORD_CHARS = 10
_NAME = re.compile(r"^[A-Za-z0-9._-]{2,40}$")


class AccountError(GateError):
    """An account cannot be created or changed as asked."""


@dataclass(frozen=True)
class PasswordHashing:
    """How new passwords are hashed: a werkzeug method string.

    ``"scrypt"`` is werkzeug's memory-hard default (``scrypt:32768:8:1``).
    A stored hash names its own method and cost, so checking a password
    always uses what the hash was made with, whatever this says; only new
    hashes (new accounts, new passwords) and logins for unknown names
    (:func:`authenticate`) follow it.
    """

    method: str = "scrypt"

    def hash(self, password: str) -> str:
        """A salted hash of ``password`` (random salt per password)."""
        return generate_password_hash(password, method=self.method)


SCRYPT = PasswordHashing()
"""The product's hashing: werkzeug's scrypt at its default cost."""


def valid_name(name: str) -> bool:
    """Whether ``name`` may be a user name: checked before a name is stored or
    used as a key anywhere (a login's throttle), so nothing unbounded is."""
    return _NAME.fullmatch(name) is not None


def password_problem(password: str, *, name: str) -> str | None:
    if len(password) < MIN_PASSWORD_CHARS:
        return f"the password must have at least {MIN_PASSWORD_CHARS} characters"
    if password.strip().casefold() == name.casefold():
        return "the password must not be the user name"
    return None


def add_user(
    store: Store,
    name: str,
    *,
    role: str,
    password: str,
    at: datetime,
    audit: AuditNote | None = None,
    hashing: PasswordHashing = SCRYPT,
) -> User:
    if not valid_name(name):
        raise AccountError("a user name has 2 to 40 letters, digits, dots, dashes or underscores")
    if role not in ROLES:
        raise AccountError(f"the role must be one of {', '.join(ROLES)}")
    problem = password_problem(password, name=name)
    if problem:
        raise AccountError(problem)
    return store.add_user(name, role=role, password_hash=hashing.hash(password), at=at, audit=audit)


def reset_password(
    store: Store,
    user: User,
    password: str,
    *,
    at: datetime,
    audit: AuditNote | None = None,
    hashing: PasswordHashing = SCRYPT,
) -> None:
    """Set a new password; the store also forgets the account's failed logins
    in the same transaction (web and ``gatekiosk user reset-password``)."""
    problem = password_problem(password, name=user.name)
    if problem:
        raise AccountError(problem)
    store.set_password(user.id, hashing.hash(password), at=at, audit=audit)


def authenticate(
    store: Store, name: str, password: str, *, hashing: PasswordHashing = SCRYPT
) -> User | None:
    """The user if the name and password match an enabled account."""
    user = store.user_by_name(name) if valid_name(name) else None
    if user is None:
        # One scrypt, as checking a real account's password costs: a login for
        # an unknown name takes as long as one for a known name.
        hashing.hash(password)
        return None
    if not check_password_hash(user.password_hash, password) or user.disabled:
        return None
    return user
