"""Accounts: roles, password rules and hashing, shared by the web and the CLI."""

from __future__ import annotations

import re
from datetime import datetime

from werkzeug.security import check_password_hash, generate_password_hash

from kiosk.errors import GateError
from kiosk.store import AuditNote, Store, User

ROLES = ("manager", "guard")
MIN_PASSWORD_CHARS = 10
_NAME = re.compile(r"^[A-Za-z0-9._-]{2,40}$")

# A hash to compare against when the account does not exist, so a login for
# an unknown name takes as long as one for a known name.
_DUMMY_HASH = generate_password_hash("not-a-password-of-anyone", method="scrypt")


class AccountError(GateError):
    """An account cannot be created or changed as asked."""


def hash_password(password: str) -> str:
    """scrypt (memory-hard), with a random salt per password."""
    return generate_password_hash(password, method="scrypt")


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
) -> User:
    if not _NAME.match(name):
        raise AccountError("a user name has 2 to 40 letters, digits, dots, dashes or underscores")
    if role not in ROLES:
        raise AccountError(f"the role must be one of {', '.join(ROLES)}")
    problem = password_problem(password, name=name)
    if problem:
        raise AccountError(problem)
    return store.add_user(
        name, role=role, password_hash=hash_password(password), at=at, audit=audit
    )


def reset_password(
    store: Store, user: User, password: str, *, at: datetime, audit: AuditNote | None = None
) -> None:
    problem = password_problem(password, name=user.name)
    if problem:
        raise AccountError(problem)
    store.set_password(user.id, hash_password(password), at=at, audit=audit)


def authenticate(store: Store, name: str, password: str) -> User | None:
    """The user if the name and password match an enabled account."""
    user = store.user_by_name(name) if _NAME.match(name) else None
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(user.password_hash, password) or user.disabled:
        return None
    return user
