"""``gatekiosk keys`` (the site's signing keys) and ``gatekiosk trust`` (the
certificates trusted for HC1: codes)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kiosk.cli.group import cli, cli_actor, config_option, load, open_store
from kiosk.errors import GateError

if TYPE_CHECKING:
    from datetime import datetime

    from kiosk.config import Settings


@cli.group()
def keys() -> None:
    """Manage the site's signing keys for declarations and staff passes.

    The machine that runs the web signs codes with the private key; gates
    verify them with the public keys (keys.json and public/ in the keys
    folder). Run these as the service user, so the private key stays
    readable by that user only.

    Example:

    \b
        sudo -u gatekiosk \\
            gatekiosk keys init --config /etc/gatekiosk/gatekiosk.toml
    """


def _audit_key_change(settings: Settings, action: str, kid: bytes, at: datetime) -> None:
    """The audit row of a change to the keys folder. The keys live in files,
    not in the database, so the row is written right after the change."""
    from kiosk.store import Store

    with Store.open(settings.db_path) as store:
        store.audit(actor=cli_actor(), action=action, detail={"kid": kid.hex()}, at=at)


def _private_key_note(keys_dir: Path, kid: bytes) -> str:
    private = keys_dir / "private" / f"{kid.hex()}.pem"
    return (
        f"Private key: {private}. It must stay readable only by the user the "
        "web service runs as (mode 0600); never copy it to a gate."
    )


@keys.command("init")
@config_option
def keys_init(config_path: Path | None) -> None:
    """Create the site's first signing key. Refused when keys exist.

    Example:

    \b
        gatekiosk keys init --config /etc/gatekiosk/gatekiosk.toml
    """
    from kiosk.clock import SystemClock
    from kiosk.keys import init_keys

    settings = load(config_path)
    keys_dir, now = settings.keys_dir, SystemClock().now()
    kid = init_keys(keys_dir, at=now)
    _audit_key_change(settings, "key-init", kid, now)
    click.echo(f"Created site key {kid.hex()} in {keys_dir}.")
    click.echo(_private_key_note(keys_dir, kid))
    click.echo(
        "A gate on another machine needs keys.json and public/ from this folder "
        "in its own keys folder."
    )


@keys.command("rotate")
@config_option
def keys_rotate(config_path: Path | None) -> None:
    """Add a new signing key. Codes signed with older keys keep working until
    they expire; running gates pick up the new key within seconds.

    Example:

    \b
        gatekiosk keys rotate
    """
    from kiosk.clock import SystemClock
    from kiosk.keys import rotate_keys

    settings = load(config_path)
    keys_dir, now = settings.keys_dir, SystemClock().now()
    kid = rotate_keys(keys_dir, at=now)
    _audit_key_change(settings, "key-rotate", kid, now)
    click.echo(f"New signing key {kid.hex()} in {keys_dir}; older keys still verify.")
    click.echo(_private_key_note(keys_dir, kid))


@keys.command("retire")
@config_option
@click.argument("kid")
def keys_retire(config_path: Path | None, kid: str) -> None:
    """Withdraw a lost or leaked key: every code it signed is refused.

    The key KID (as `gatekiosk keys list` shows it) is marked retired and its
    private key deleted; running gates refuse its codes within seconds.

    Example:

    \b
        gatekiosk keys retire 3f9c0a1b2c3d4e5f
    """
    from kiosk.clock import SystemClock
    from kiosk.keys import load_keyring, parse_kid, retire_key

    settings = load(config_path)
    keys_dir, now = settings.keys_dir, SystemClock().now()
    retire_key(keys_dir, kid, at=now)
    _audit_key_change(settings, "key-retire", parse_kid(kid), now)
    click.echo(
        f"Retired site key {parse_kid(kid).hex()}: codes it signed are refused from now on; "
        "its private key was deleted."
    )
    if load_keyring(keys_dir).active is None:
        click.echo("No signing key remains: run `gatekiosk keys rotate` before issuing codes.")


@keys.command("list")
@config_option
def keys_list(config_path: Path | None) -> None:
    """List the site's keys and whether each is active, valid or retired.

    A header line, then one line per key (tab-separated): key id, created
    (site time), and its state: active
    (signs new codes), valid (still verifies the codes it signed) or
    retired (its codes are refused).

    Example:

    \b
        gatekiosk keys list
    """
    from kiosk.keys import load_keyring

    settings = load(config_path)
    ring = load_keyring(settings.keys_dir)
    active = ring.active
    tz = settings.timezone
    click.echo("KEY ID\tCREATED\tSTATE")
    if not ring.keys:
        click.echo("(none)")
    for key in ring.keys:
        created = key.created.astimezone(tz).isoformat(timespec="seconds")
        if key.retired_at is not None:
            state = f"retired {key.retired_at.astimezone(tz).isoformat(timespec='seconds')}"
        elif active is not None and key.kid == active.kid:
            state = "active"
        else:
            state = "valid"
        click.echo(f"{key.kid_hex}\t{created}\t{state}")


@cli.group()
def trust() -> None:
    """Manage the signing certificates trusted for EU and Vietnamese COVID
    certificates (HC1:). The gate verifies them offline against this list;
    nothing is fetched from the network.

    Example:

    \b
        gatekiosk trust import dsc-list.json
        gatekiosk trust list
    """


@trust.command("import")
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def trust_import(config_path: Path | None, file: Path) -> None:
    """Add the certificates in FILE: a PEM bundle, or a JSON list of base64 DER
    certificates (plain, or objects with rawData/certificate/x5c, or a map
    kid -> list). Entries that cannot be read are listed and skipped.

    Example:

    \b
        gatekiosk trust import vn-dsc.pem
    """
    from kiosk.clock import SystemClock
    from kiosk.compose import import_trust_file
    from kiosk.store import AuditNote

    data = file.read_bytes()
    now = SystemClock().now()
    audit = AuditNote(cli_actor(), "trust-import", {"file": file.name}, now)
    with open_store(config_path) as store:
        result = import_trust_file(store, data, by=cli_actor(), at=now, audit=audit)
    for problem in result.parsed.problems:
        click.echo(f"skipped {problem}", err=True)
    found = len(result.parsed.certificates)
    click.echo(f"Imported {result.added} new of {found} certificates from {file.name}.")


@trust.command("list")
@config_option
def trust_list(config_path: Path | None) -> None:
    """List the trusted certificates: a header line, then one line per
    certificate, tab-separated: key id (base64), country, valid from, valid
    until (UTC dates) and subject; "(none)" when there is none.

    Example:

    \b
        gatekiosk trust list
    """
    with open_store(config_path) as store:
        rows = store.trusted_certificates()
    click.echo("KEY ID\tCOUNTRY\tVALID FROM\tVALID UNTIL\tSUBJECT")
    if not rows:
        click.echo("(none)")
    for row in rows:
        kid = base64.b64encode(row.kid).decode("ascii")
        click.echo(
            f"{kid}\t{row.country or '-'}\t{row.not_before:%Y-%m-%d}\t"
            f"{row.not_after:%Y-%m-%d}\t{row.subject}"
        )


@trust.command("remove")
@config_option
@click.argument("kid")
def trust_remove(config_path: Path | None, kid: str) -> None:
    """Stop trusting the certificates with key id KID (base64, as listed).

    Example:

    \b
        gatekiosk trust remove 2Rk3X8HntrI=
    """
    try:
        kid_bytes = base64.b64decode(kid, validate=True)
    except ValueError:
        raise GateError(f"{kid!r} is not a base64 key id") from None
    from kiosk.clock import SystemClock
    from kiosk.store import AuditNote

    audit = AuditNote(cli_actor(), "trust-remove", {"kid": kid}, SystemClock().now())
    with open_store(config_path) as store:
        removed = store.remove_trusted_certificates(kid_bytes, audit=audit)
    if not removed:
        raise GateError(f"no trusted certificate has key id {kid}")
    click.echo(f"Removed {removed} certificate(s) with key id {kid}.")
