"""``gatekiosk keys`` (the site's signing keys) and ``gatekiosk trust`` (the
certificates trusted for HC1: codes)."""

from __future__ import annotations

import base64
from pathlib import Path

import click

from kiosk.cli.group import cli, config_option, load, open_store
from kiosk.errors import GateError


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

        gatekiosk keys init --config /etc/gatekiosk/gatekiosk.toml
    """
    from kiosk.clock import SystemClock
    from kiosk.keys import init_keys

    keys_dir = load(config_path).keys_dir
    kid = init_keys(keys_dir, at=SystemClock().now())
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

        gatekiosk keys rotate
    """
    from kiosk.clock import SystemClock
    from kiosk.keys import rotate_keys

    keys_dir = load(config_path).keys_dir
    kid = rotate_keys(keys_dir, at=SystemClock().now())
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

        gatekiosk keys retire 3f9c0a1b2c3d4e5f
    """
    from kiosk.clock import SystemClock
    from kiosk.keys import load_keyring, parse_kid, retire_key

    keys_dir = load(config_path).keys_dir
    retire_key(keys_dir, kid, at=SystemClock().now())
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

    One line per key: key id, created (site time), and its state: active
    (signs new codes), valid (still verifies the codes it signed) or
    retired (its codes are refused).

    Example:

        gatekiosk keys list
    """
    from kiosk.keys import load_keyring

    settings = load(config_path)
    ring = load_keyring(settings.keys_dir)
    active = ring.active
    tz = settings.timezone
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

        gatekiosk trust import vn-dsc.pem
    """
    from kiosk.clock import SystemClock
    from kiosk.compose import import_trust_file

    data = file.read_bytes()
    with open_store(config_path) as store:
        result = import_trust_file(store, data, by="cli", at=SystemClock().now())
    for problem in result.parsed.problems:
        click.echo(f"skipped {problem}", err=True)
    found = len(result.parsed.certificates)
    click.echo(f"Imported {result.added} new of {found} certificates from {file.name}.")


@trust.command("list")
@config_option
def trust_list(config_path: Path | None) -> None:
    """List the trusted certificates: key id (base64), country, valid from,
    valid until (UTC dates) and subject, one per line, tab-separated.

    Example:

        gatekiosk trust list
    """
    with open_store(config_path) as store:
        rows = store.trusted_certificates()
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

        gatekiosk trust remove 2Rk3X8HntrI=
    """
    try:
        kid_bytes = base64.b64decode(kid, validate=True)
    except ValueError:
        raise GateError(f"{kid!r} is not a base64 key id") from None
    with open_store(config_path) as store:
        removed = store.remove_trusted_certificates(kid_bytes)
    if not removed:
        raise GateError(f"no trusted certificate has key id {kid}")
    click.echo(f"Removed {removed} certificate(s) with key id {kid}.")
