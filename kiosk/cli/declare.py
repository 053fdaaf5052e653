"""``gatekiosk declare``: a visitor's health declaration made at the guard's desk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kiosk.cli.group import cli, config_option, load
from kiosk.errors import GateError

if TYPE_CHECKING:
    from kiosk.declarations import Question


@cli.command()
@config_option
@click.option("--name", required=True, help="The visitor's full name.")
@click.option("--phone", required=True, help="The visitor's phone number (kept by the site only).")
@click.option(
    "--answers",
    "--answer",
    "answer_texts",
    multiple=True,
    metavar="KEY=yes|no",
    help="The answer to one of the site's questions; give one per question.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="PNG file to write the QR code to.",
)
def declare(
    config_path: Path | None,
    name: str,
    phone: str,
    answer_texts: tuple[str, ...],
    output: Path,
) -> None:
    """Make a visitor's health declaration at the guard's desk, as a QR code PNG.

    The questions are the site's (as managers set them on the web); every
    one must be answered. A refusing answer is signed too: the gate refuses
    the code and says why, and the guard decides.

    Example:

    \b
        gatekiosk declare --name "Nguyễn Văn An" --phone 0901234567 \\
            --answers symptoms=no --answers contact=no --answers area=no -o an.png
    """
    import getpass
    from datetime import timedelta

    from kiosk.clock import SystemClock
    from kiosk.codes.sitecodes import render_png
    from kiosk.config import with_site_settings
    from kiosk.declarations import issue_declaration, questions_from
    from kiosk.store import Store

    file_settings = load(config_path)
    if not output.parent.is_dir():
        raise click.BadParameter(f"no folder {output.parent}", param_hint="--output")
    with Store.open(file_settings.db_path) as store:
        site = store.site_settings()
        settings = with_site_settings(file_settings, site)
        questions = questions_from(site)
        answers = _parse_answers(answer_texts, questions)
        validity_h = settings["codes.declaration_validity_h"]
        issued = issue_declaration(
            store,
            settings.keys_dir,
            site_id=settings["gate.site_id"],
            name=name,
            phone=phone,
            answers=answers,
            questions=questions,
            validity=timedelta(hours=validity_h),
            at=SystemClock().now(),
            issued_by=f"cli:{getpass.getuser()}",
        )
    render_png(issued.text, output)
    record = issued.record
    until = record.expires_at.astimezone(settings.timezone).isoformat(timespec="minutes")
    click.echo(
        f"Wrote the declaration of {record.name} to {output}: valid until {until} "
        f"({validity_h:g} h), code {record.id}."
    )
    refusing = _refusing_question(questions, answers)
    if refusing is not None:
        click.echo(
            f"The gate will refuse it (sitecode-refused-answers): the answer to "
            f"{refusing.key!r} refuses entry; the guard decides."
        )
    elif "declaration" not in settings.allowed_kinds:
        click.echo("The gate will refuse it: this site does not accept declarations.")
    else:
        click.echo("The gate will admit it.")


def _parse_answers(texts: tuple[str, ...], questions: Sequence[Question]) -> dict[str, bool]:
    """``KEY=yes|no`` options as answers; every question answered, no other."""
    by_key = {q.key: q for q in questions}
    answers: dict[str, bool] = {}
    problems: list[str] = []
    for text in texts:
        key, sep, value = text.partition("=")
        key, value = key.strip(), value.strip().lower()
        if not sep or value not in ("yes", "no"):
            problems.append(f"{text!r} is not KEY=yes or KEY=no")
        elif key not in by_key:
            problems.append(f"{key!r} is not one of the site's questions")
        elif key in answers:
            problems.append(f"{key!r} is answered twice")
        else:
            answers[key] = value == "yes"
    missing = [q.key for q in questions if q.key not in answers]
    if missing:
        problems.append(f"not answered: {', '.join(missing)}")
    if problems:
        listing = "\n".join(f"  {q.key}: {q.vi} / {q.en}" for q in questions)
        raise GateError(
            "; ".join(problems)
            + ". Answer every question with --answers KEY=yes or KEY=no:\n"
            + listing
        )
    return answers


def _refusing_question(questions: Sequence[Question], answers: dict[str, bool]) -> Question | None:
    from kiosk.declarations import verdict_of

    key = verdict_of(questions, answers)
    return next((q for q in questions if q.key == key), None)
