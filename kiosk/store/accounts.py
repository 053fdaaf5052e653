"""Accounts: users of the admin web, their sessions and passwords.

Passwords arrive hashed (see :mod:`kiosk.accounts`); the store keeps the
hash and never sees a password.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kiosk.errors import StoreError
from kiosk.store.audit import write_audit
from kiosk.store.connection import Connection
from kiosk.store.throttle import forget_account
from kiosk.store.values import AuditNote, User, from_text, to_text


class AccountRepository:
    """The users table, over the store's one connection."""

    def __init__(self, db: Connection) -> None:
        self._db = db

    def add_user(
        self,
        name: str,
        *,
        role: str,
        password_hash: str,
        at: datetime,
        audit: AuditNote | None = None,
    ) -> User:
        """Create an account; StoreError if the name is taken (names ignore case).

        ``audit`` is written in the same transaction.
        """
        with self._db.write("add the user") as conn:
            exists = conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone()
            if exists:
                raise StoreError(f"a user named {name!r} already exists")
            conn.execute(
                "INSERT INTO users (name, role, password_hash, disabled, created_at_utc, "
                "password_changed_at_utc) VALUES (?, ?, ?, 0, ?, ?)",
                (name, role, password_hash, to_text(at), to_text(at)),
            )
            write_audit(conn, audit)
        user = self.user_by_name(name)
        assert user is not None
        return user

    def user_by_name(self, name: str) -> User | None:
        rows = self._db.read(
            "read a user", f"SELECT {USER_COLUMNS} FROM users WHERE name = ?", (name,)
        )
        return user_from_row(rows[0]) if rows else None

    def user_by_id(self, user_id: int) -> User | None:
        rows = self._db.read(
            "read a user", f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (user_id,)
        )
        return user_from_row(rows[0]) if rows else None

    def users(self) -> list[User]:
        rows = self._db.read("read users", f"SELECT {USER_COLUMNS} FROM users ORDER BY name", ())
        return [user_from_row(r) for r in rows]

    def count_managers(self) -> int:
        rows = self._db.read(
            "count managers",
            "SELECT count(*) FROM users WHERE role = 'manager' AND disabled = 0",
            (),
        )
        return int(rows[0][0])

    def set_user_disabled(
        self, user_id: int, disabled: bool, *, audit: AuditNote | None = None
    ) -> None:
        """Disable (or enable) an account; ``audit`` is written in the same transaction."""
        with self._db.write("update the user") as conn:
            conn.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), user_id))
            write_audit(conn, audit)

    def end_sessions(self, user_id: int) -> None:
        """Invalidate every session of this user (logout, everywhere)."""
        with self._db.write("end the user's sessions") as conn:
            conn.execute(
                "UPDATE users SET session_epoch = session_epoch + 1 WHERE id = ?", (user_id,)
            )

    def set_password(
        self, user_id: int, password_hash: str, *, at: datetime, audit: AuditNote | None = None
    ) -> None:
        """Replace a password hash (ending the account's sessions, which carry the
        change time) and forget the account's failed logins, so a lockout never
        outlasts a reset; ``audit`` is written in the same transaction."""
        with self._db.write("change the password") as conn:
            conn.execute(
                "UPDATE users SET password_hash = ?, password_changed_at_utc = ? WHERE id = ?",
                (password_hash, to_text(at), user_id),
            )
            forget_account(conn, user_id)
            write_audit(conn, audit)


USER_COLUMNS = (
    "id, name, role, password_hash, disabled, created_at_utc, password_changed_at_utc, "
    "session_epoch"
)


def user_from_row(row: tuple[Any, ...]) -> User:
    return User(
        id=int(row[0]),
        name=row[1],
        role=row[2],
        password_hash=row[3],
        disabled=bool(row[4]),
        created_at=from_text(row[5]),
        password_changed_at=from_text(row[6]),
        session_epoch=int(row[7]),
    )
