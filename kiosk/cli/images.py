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
    help="Database to record into (default: a fresh one in a temporary folder).",
)
@click.option(
    "--fps", type=float, default=None, help="Replay at this rate (default: as fast as possible)."
)
@click.argument("recording", type=click.Path(exists=True, path_type=Path))
def replay(
    config_path: Path | None, db_path: Path | None, fps: float | None, recording: Path
) -> None:
    """Run the real pipeline over a video or an image folder, with simulated pins.

    Prints one JSON line per decision: frame, decision, reason, kind and
    latency_ms (from the frame's capture to the signal).

    Example:

        gatekiosk replay --fps 15 gate-recording.mp4
    """
    from gpiozero.pins.mock import MockFactory

    from kiosk.camera import FileSource
    from kiosk.clock import SystemClock
    from kiosk.compose import build_gate

    clock = SystemClock()
    with tempfile.TemporaryDirectory(prefix="gatekiosk-replay-") as tmp:
        data_dir = db_path.parent if db_path else Path(tmp)
        settings = load(config_path, **{"gate.data_dir": str(data_dir)})
        if db_path is not None:
            settings = _with_db_name(settings, db_path)
        source = FileSource(recording, clock=clock, fps=fps)

        def emit(outcome: Any) -> None:
            click.echo(
                json.dumps(
                    {
                        "frame": outcome.frame_index,
                        "decision": outcome.decision.verdict,
                        "reason": outcome.decision.reason,
                        "kind": outcome.identified.kind if outcome.identified else None,
                        "latency_ms": round(outcome.latency_ms, 2),
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


def _with_db_name(settings: Settings, db_path: Path) -> Settings:
    from kiosk.config import Settings

    return Settings(
        values={**settings.values, "gate.data_dir": str(db_path.parent)},
        source=settings.source,
        db_name=db_path.name,
    )
