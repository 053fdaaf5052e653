"""``gatekiosk user``: the accounts of managers and guards."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kiosk.cli.group import cli, config_option, open_store
from kiosk.errors import GateError


@cli.group()
def user() -> None:
    """Manage the accounts of managers and guards.

    Example:

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

        gatekiosk user add lan --role manager
    """
    from kiosk.accounts import add_user
    from kiosk.clock import SystemClock

    password = _read_password(password_stdin)
    with open_store(config_path) as store:
        add_user(store, name, role=role, password=password, at=SystemClock().now())
    click.echo(f"Added {role} {name}.")


@user.command("list")
@config_option
def user_list(config_path: Path | None) -> None:
    """List the accounts.

    Example:

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

        gatekiosk user reset-password lan
    """
    from kiosk.accounts import reset_password
    from kiosk.clock import SystemClock

    with open_store(config_path) as store:
        account = store.user_by_name(name)
        if account is None:
            raise GateError(f"no user named {name!r}")
        password = _read_password(password_stdin)
        reset_password(store, account, password, at=SystemClock().now())
        store.set_user_disabled(account.id, False)
    click.echo(f"New password set for {name}.")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise GateError("no password on standard input")
        return password
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
