"""Commands over the gate's log: ``export`` and ``purge``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from kiosk.cli.group import cli, cli_actor, config_option, load


@cli.command()
@config_option
def purge(config_path: Path | None) -> None:
    """Delete now what is past retention: events older than
    privacy.retention_days, and issued declarations and passes that expired
    longer ago than that. The running kiosk does the same every hour.

    It deletes in small batches, each committed, with a short pause between
    them, so the running kiosk keeps recording; stopping it midway loses
    nothing, and the next purge carries on.

    Example:

    \b
        gatekiosk purge --config /etc/gatekiosk/gatekiosk.toml
    """
    from kiosk.clock import SystemClock
    from kiosk.config import with_site_settings
    from kiosk.scanner import purge_past_retention
    from kiosk.store import Store

    file_settings = load(config_path)
    with Store.open(file_settings.db_path) as store:
        settings = with_site_settings(file_settings, store.site_settings())
        retention_days = settings["privacy.retention_days"]
        purged = purge_past_retention(store, clock=SystemClock(), retention_days=retention_days)
    click.echo(
        f"Purged {purged.events} events and {purged.site_codes} issued codes "
        f"(retention: {retention_days} days)."
    )


@cli.command()
@config_option
@click.option(
    "--from", "from_text", help="First day or local time (2026-11-01 or 2026-11-01T08:00)."
)
@click.option("--to", "to_text", help="Last day (included) or local time (excluded).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "xlsx"]),
    help="Default: from -o's suffix (.csv or .xlsx; any other needs --format).",
)
@click.option(
    "--lang",
    type=click.Choice(["vi", "en"]),
    default="vi",
    show_default=True,
    help="Language of the headers and coded cells (en keeps the codes, for support).",
)
@click.option("--direction", type=click.Choice(["in", "out"]))
@click.option("--decision", type=click.Choice(["allow", "deny"]))
@click.option("--reason", help="A reason code, e.g. denylisted.")
@click.option("--kind", help="A code kind, e.g. cccd.")
@click.option("--search", help="Part of a name or masked ID (case and accents ignored).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File to write (replaced atomically).",
)
def export(
    config_path: Path | None,
    from_text: str | None,
    to_text: str | None,
    fmt: str | None,
    lang: str,
    direction: str | None,
    decision: str | None,
    reason: str | None,
    kind: str | None,
    search: str | None,
    output: Path,
) -> None:
    """Export the gate log to CSV (UTF-8, opens in Excel) or XLSX.

    Times without a UTC offset are the site's local time; a bare date in
    --to includes that whole day. The export is recorded in the audit log.

    Example:

    \b
        gatekiosk export --from 2026-11-01 --to 2026-11-30 \\
            --format xlsx -o november.xlsx
    """
    from kiosk.clock import SystemClock
    from kiosk.exporting import export_to_file
    from kiosk.store import EventFilter, Store

    settings = load(config_path)
    tz = settings.timezone
    if fmt is None:
        fmt = _format_of(output)
    where = EventFilter(
        start=_export_bound(from_text, tz, end=False, option="--from"),
        end=_export_bound(to_text, tz, end=True, option="--to"),
        direction=direction,
        decision=decision,
        reason=reason,
        kind=kind,
        text=search,
    )
    if where.start and where.end and where.start >= where.end:
        raise click.BadParameter("--from must be before --to", param_hint="--from")
    with Store.open(settings.db_path) as store:
        rows = export_to_file(
            store,
            where,
            fmt=fmt,
            path=output,
            tz=tz,
            actor=cli_actor(),
            at=SystemClock().now(),
            lang=lang,
        )
    click.echo(f"Wrote {rows} events to {output}.")


def _format_of(output: Path) -> str:
    """The export format -o's suffix names; another suffix is refused rather
    than silently written as CSV."""
    suffix = output.suffix.lower()
    if suffix in (".csv", ".xlsx"):
        return suffix[1:]
    raise click.BadParameter(
        f"cannot tell the format from {output.name!r}: name it .csv or .xlsx, "
        "or give --format csv|xlsx",
        param_hint="--output",
    )


def _export_bound(text: str | None, tz: Any, *, end: bool, option: str) -> datetime | None:
    """A --from/--to value as aware UTC: dates mean whole local days."""
    from datetime import date, time, timedelta

    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        if end:
            day += timedelta(days=1)
        return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a date (2026-11-01) or a time (2026-11-01T08:00)",
            param_hint=option,
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=tz)
    return at.astimezone(UTC)
