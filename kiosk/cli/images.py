"""Commands over recorded images and videos: ``decode`` and ``replay``.

Both read files through the camera package's file source
(:class:`~kiosk.camera.FileSource`), as ``check --image`` does, so every
command accepts the same images.
"""

from __future__ import annotations

import base64
import json
import tempfile
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kiosk.cli.group import cli, config_option, load
from kiosk.errors import CameraError, GateError

if TYPE_CHECKING:
    from kiosk.camera import GreyImage
    from kiosk.config import Settings


@cli.command()
@click.option(
    "--backend",
    type=click.Choice(["pipeline", "zxing", "zbar"]),
    default="pipeline",
    show_default=True,
    help="QR decoder to use.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image or video frame.")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def decode(backend: str, as_json: bool, files: tuple[Path, ...]) -> None:
    """Decode the QR codes in images or videos.

    Images give one result each; videos, and folders of images (in name
    order), give one per frame that holds a code. Times are the decoder's
    own, per frame, in milliseconds.

    Example:

    \b
        gatekiosk decode --json photo.jpg recording.mp4
    """
    import time

    from kiosk.decoder import make_decoder

    decoder = make_decoder(backend)
    for path in files:
        for frame_no, grey in frames_of(path):
            started = time.perf_counter()
            codes = decoder.decode(grey)
            ms = (time.perf_counter() - started) * 1000.0
            if frame_no is not None and not codes:
                continue
            if as_json:
                click.echo(
                    json.dumps(
                        {
                            "file": str(path),
                            "frame": frame_no,
                            "codes": [
                                {
                                    "text": c.text,
                                    "bytes_b64": base64.b64encode(c.raw).decode("ascii"),
                                    "corners": [[round(x, 1), round(y, 1)] for x, y in c.corners],
                                }
                                for c in codes
                            ],
                            "ms": round(ms, 2),
                        },
                        ensure_ascii=False,
                    )
                )
            else:
                where = str(path) if frame_no is None else f"{path} frame {frame_no}"
                if not codes:
                    click.echo(f"{where}: no QR code ({ms:.1f} ms)")
                for c in codes:
                    click.echo(f"{where}: {c.text} ({ms:.1f} ms)")


def frames_of(path: Path) -> Iterator[tuple[int | None, GreyImage]]:
    """(frame number, or None for a still image; grey image) for each frame
    of an image, a video, or a folder of images (in name order), as fast as
    they read. A file that is neither an image nor a video is a GateError."""
    from kiosk.camera import FileSource, is_image_file
    from kiosk.clock import SystemClock

    still = path.is_file() and is_image_file(path)
    try:
        source = FileSource(path, clock=SystemClock())
    except CameraError as exc:
        if path.is_dir():
            raise
        raise GateError(f"{path}: neither an image nor a video this program can read") from exc
    with source:
        while (frame := source.read(timeout_s=0.0)) is not None:
            yield (None if still else frame.index), frame.grey
        if still and not source.state.ok:
            raise GateError(f"{path}: not an image this program can read")


@cli.command()
@config_option
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help=(
        "Database to record the events into (default: a temporary one). A new one "
        "starts as a copy of the site's database (denylist, revocations, presence)."
    ),
)
@click.option(
    "--fps",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help=(
        "The recording's frame rate: a video's own rate by default, "
        "10 images per second for a folder."
    ),
)
@click.argument("recording", type=click.Path(exists=True, path_type=Path))
def replay(
    config_path: Path | None, db_path: Path | None, fps: float | None, recording: Path
) -> None:
    """Run the real pipeline over a video or an image folder, with simulated pins.

    Prints one JSON line per decision: frame, decision, reason, kind and
    latency_ms (from reading the frame to the signal, on this machine).

    The replay follows the recording's own time (frame number / frame
    rate), not this machine's: the hysteresis and every decision are the
    same however fast the machine decodes. With --config, the site's keys,
    hash key, settings, denylist and presence are the configuration's;
    --db only chooses where the events go.

    Example:

    \b
        gatekiosk replay --config /etc/gatekiosk/gatekiosk.toml \\
            --db /tmp/replay.db gate-recording.mp4
    """
    from gpiozero.pins.mock import MockFactory

    from kiosk.camera.files import FOLDER_FPS, RecordingClock, TimedReplay, recording_frame_rate
    from kiosk.clock import SystemClock
    from kiosk.compose import build_gate

    real = SystemClock()
    clock = RecordingClock(start=real.now(), synchronised=real.synchronised())
    rate = fps or recording_frame_rate(recording) or FOLDER_FPS
    with tempfile.TemporaryDirectory(prefix="gatekiosk-replay-") as tmp:
        settings = _replay_settings(config_path, db_path or Path(tmp) / "replay.db")
        source = TimedReplay(recording, clock=clock, fps=rate, real=real)

        def emit(outcome: Any) -> None:
            click.echo(
                json.dumps(
                    {
                        "frame": outcome.frame_index,
                        "decision": outcome.decision.verdict,
                        "reason": outcome.decision.reason,
                        "kind": outcome.identified.kind if outcome.identified else None,
                        "latency_ms": round(source.ms_since_read(outcome.frame_index), 2),
                    }
                )
            )

        with build_gate(
            settings,
            clock=clock,
            source=source,
            pin_factory=MockFactory(),
            on_outcome=emit,
            live=False,  # a replay must not carry out a guard's pending admission
        ) as gate:
            gate.scanner.run(threading.Event())


def _replay_settings(config_path: Path | None, db_path: Path) -> Settings:
    """The settings a replay runs with: the configuration's data folder for
    keys, hash key and site (a temporary one without --config), and events
    recorded into ``db_path``.

    A ``db_path`` that does not exist yet starts as a copy of the site's
    database, so the denylist, revocations, trust list, the manager's
    settings and presence are the site's, and the site's log is untouched.
    """
    from kiosk.config import Settings

    if config_path is None:
        settings = load(None, **{"gate.data_dir": str(db_path.parent)})
    else:
        settings = load(config_path)
        site_db = settings.db_path
        if not db_path.exists() and site_db.is_file() and site_db.resolve() != db_path.resolve():
            _copy_database(site_db, db_path)
    # An absolute database name is joined to the data folder as itself.
    settings = Settings(
        values=settings.values, source=settings.source, db_name=str(db_path.resolve())
    )
    if config_path is None or not db_path.exists():
        return settings
    from kiosk.config import with_site_settings
    from kiosk.store import Store

    with Store.open(db_path) as store:  # the settings managers saved on the web
        return with_site_settings(settings, store.site_settings())


def _copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database, read while others may write it."""
    import sqlite3

    if not target.parent.is_dir():
        raise GateError(f"no folder {target.parent} for the replay's database")
    with (
        closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src,
        closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)
