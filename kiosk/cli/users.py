"""``gatekiosk user``: the accounts of managers and guards."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kiosk.cli.group import cli, cli_actor, config_option, open_store
from kiosk.errors import GateError

if TYPE_CHECKING:
    from kiosk.store import AuditNote, Store, User


@cli.group()
def user() -> None:
    """Manage the accounts of managers and guards. Every change is written
    to the audit log as ``cli:`` and the Unix user who made it.

    Example:

    \b
        gatekiosk user add lan --role manager
    """


@user.command("add")
@config_option
@click.argument("name")
@click.option(
    "--role", type=click.Choice(["manager", "guard"]), required=True, help="What the user may do."
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input (for scripts) instead of prompting.",
)
def user_add(config_path: Path | None, name: str, role: str, password_stdin: bool) -> None:
    """Create an account. The password is prompted for (twice), never an argument.

    Example:

    \b
        gatekiosk user add lan --role manager
    """
    from kiosk.accounts import add_user
    from kiosk.clock import SystemClock
    from kiosk.store import AuditNote

    password = _read_password(password_stdin)
    now = SystemClock().now()
    audit = AuditNote(cli_actor(), "user-add", {"user": name, "role": role}, now)
    with open_store(config_path) as store:
        add_user(store, name, role=role, password=password, at=now, audit=audit)
    click.echo(f"Added {role} {name}.")


@user.command("list")
@config_option
def user_list(config_path: Path | None) -> None:
    """List the accounts.

    Example:

    \b
        gatekiosk user list
    """
    with open_store(config_path) as store:
        for account in store.users():
            state = "disabled" if account.disabled else "enabled"
            click.echo(f"{account.name}\t{account.role}\t{state}")


@user.command("reset-password")
@config_option
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
def user_reset_password(config_path: Path | None, name: str, password_stdin: bool) -> None:
    """Set a new password for an account (and re-enable it).

    Example:

    \b
        gatekiosk user reset-password lan
    """
    from kiosk.accounts import reset_password
    from kiosk.clock import SystemClock
    from kiosk.store import AuditNote

    with open_store(config_path) as store:
        account = _account(store, name)
        password = _read_password(password_stdin)
        now = SystemClock().now()
        audit = AuditNote(cli_actor(), "user-password-reset", {"user": name}, now)
        reset_password(store, account, password, at=now, audit=audit)
        if account.disabled:
            enabled = AuditNote(cli_actor(), "user-enable", {"user": name}, now)
            store.set_user_disabled(account.id, False, audit=enabled)
    click.echo(f"New password set for {name}.")


@user.command("disable")
@config_option
@click.argument("name")
def user_disable(config_path: Path | None, name: str) -> None:
    """Stop an account from logging in; its open sessions end at their next page.

    Example:

    \b
        gatekiosk user disable minh
    """
    with open_store(config_path) as store:
        account = _account(store, name)
        if not account.disabled:
            store.set_user_disabled(account.id, True, audit=_note("user-disable", name))
        managers_left = store.count_managers()
    click.echo(f"{name} is disabled.")
    if not managers_left:
        click.echo(
            "No enabled manager remains: `gatekiosk user enable NAME` or "
            "`gatekiosk user add NAME --role manager` makes one.",
            err=True,
        )


@user.command("enable")
@config_option
@click.argument("name")
def user_enable(config_path: Path | None, name: str) -> None:
    """Let a disabled account log in again (with its old password).

    Example:

    \b
        gatekiosk user enable minh
    """
    with open_store(config_path) as store:
        account = _account(store, name)
        if account.disabled:
            store.set_user_disabled(account.id, False, audit=_note("user-enable", name))
    click.echo(f"{name} can log in again.")


def _account(store: Store, name: str) -> User:
    account = store.user_by_name(name)
    if account is None:
        raise GateError(f"no user named {name!r}")
    return account


def _note(action: str, name: str) -> AuditNote:
    from kiosk.clock import SystemClock
    from kiosk.store import AuditNote

    return AuditNote(cli_actor(), action, {"user": name}, SystemClock().now())


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise GateError("no password on standard input")
        return password
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
