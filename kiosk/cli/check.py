"""``gatekiosk check``: what the gate would decide for a code, recording nothing.

``check --payload`` touches no image, so it loads no camera, decoder or
OpenCV: only ``check --image`` does, inside :func:`_payloads_in_image`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from kiosk.cli.group import cli, config_option, load
from kiosk.errors import GateError


@cli.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
@click.option("--at", "at_text", help="Decide as at this ISO-8601 time (default: now).")
@click.option("--payload", help="The code's text.")
@click.option(
    "--image",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An image holding the code.",
)
def check(
    config_path: Path | None,
    as_json: bool,
    at_text: str | None,
    payload: str | None,
    image: Path | None,
) -> None:
    """What the gate would decide for a code, without recording anything.

    Declarations and staff passes are verified against the site's keys
    (the keys folder in the data folder). With a configuration whose
    database exists, revocations, presence and the denylist are read from
    it (read only).

    Example:

    \b
        gatekiosk check --json \\
            --payload '079201000123||Nguyễn Văn An|15031990|Nam|Q1|01072021'
    """
    from kiosk.checking import check_payloads

    if (payload is None) == (image is None):
        raise click.UsageError("give exactly one of --payload or --image")
    at = _parse_at(at_text)
    settings = load(config_path)
    if payload is not None:
        payloads = [payload.encode("utf-8")]
    else:
        assert image is not None
        payloads = _payloads_in_image(image, settings["decoder.backend"])
    for result in check_payloads(settings, payloads, at=at):
        if as_json:
            click.echo(json.dumps(result, ensure_ascii=False))
        else:
            click.echo(
                f"{result['decision']} ({result['direction']}): {result['reason']}"
                f" [{result['kind']}] {result['message']['vi']} / {result['message']['en']}"
            )


def _parse_at(at_text: str | None) -> datetime:
    if at_text is None:
        from kiosk.clock import SystemClock

        return SystemClock().now()
    try:
        at = datetime.fromisoformat(at_text)
    except ValueError:
        raise click.BadParameter(
            f"{at_text!r} is not an ISO-8601 time, e.g. 2026-11-28T08:30:00+07:00",
            param_hint="--at",
        ) from None
    if at.tzinfo is None:
        raise click.BadParameter(
            f"{at_text!r} has no UTC offset; add one, e.g. {at_text}+07:00", param_hint="--at"
        )
    return at.astimezone(UTC)


def _payloads_in_image(image: Path, backend: str) -> list[bytes]:
    """The codes in the image (or a video's first frame), as the gate's decoder reads them."""
    from kiosk.cli.images import frames_of
    from kiosk.decoder import make_decoder

    decoder = make_decoder(backend)
    first = next(frames_of(image), None)
    if first is None:
        raise GateError(f"{image}: no frame in it")
    codes = decoder.decode(first[1])
    if not codes:
        raise GateError(f"{image}: no QR code found")
    return [c.raw for c in codes]
