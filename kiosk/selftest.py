"""``gatekiosk selftest``: a checklist a person runs at the gate after wiring.

Each check says what it looked at and what it found; the camera is measured
(and, for a libcamera camera, what is attached and how it was set up), its
focus shown with a sharpness figure on a code held to it, a rendered test
code is decoded by every backend, each output is switched in turn for
someone to watch, and the database, the clock and the disk are looked at.
Any failure makes the command exit non-zero.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate_controller.pins import PinConfig
from kiosk.camera import Frame, FrameSource
from kiosk.clock import Clock
from kiosk.config import Settings
from kiosk.decoder import DECODER_NAMES, Code, Decoder, make_decoder
from kiosk.errors import GateError
from kiosk.store import Store
from kiosk.synthetic import render_code_frame

TEST_PAYLOAD = "gatekiosk selftest · Kiểm tra"
MIN_FREE_MB = 200
CAMERA_SECONDS = 3.0
FOCUS_SECONDS = 3.0
"""How long the focus check watches for a held code (seconds)."""
READING_EVERY_S = 0.5
"""How often the focus check reports the live sharpness figure (seconds)."""


@dataclass(frozen=True)
class Check:
    """One line of the checklist. ``checked`` is False for a check that
    could not be made here (an output on simulated pins): it does not fail
    the self-test, and the checklist says it was not checked."""

    name: str
    ok: bool
    detail: str
    checked: bool = True


_OUTPUT_NAMES_VI = {
    "green light": "đèn xanh",
    "red light": "đèn đỏ",
    "buzzer": "còi",
    "status light": "đèn trạng thái",
    "door relay": "rơ-le cửa",
}
SIMULATED_PINS_DETAIL = (
    "chân GPIO mô phỏng (không phải Raspberry Pi): không kiểm tra / "
    "simulated pins (not a Raspberry Pi): not checked"
)


def check_camera(source: FrameSource, clock: Clock, *, seconds: float = CAMERA_SECONDS) -> Check:
    """Frames arrive, and how many per second."""
    started = clock.monotonic()
    frames = 0
    first: float | None = None
    last: float | None = None
    while clock.monotonic() - started < seconds:
        frame = source.read(timeout_s=1.0)
        if frame is None:
            continue
        frames += 1
        first = frame.captured_mono if first is None else first
        last = frame.captured_mono
    state = source.state
    if frames < 2 or first is None or last is None or last <= first:
        detail = state.detail or "no frames"
        return Check(f"camera {state.name}", False, f"no frames in {seconds:.0f} s ({detail})")
    fps = (frames - 1) / (last - first)
    detail = f"{frames} frames, {fps:.1f} frames per second"
    opened = getattr(source, "opened", None)  # a libcamera camera says what it found
    if opened is not None:
        detail += f"; {opened.describe()}"
    return Check(f"camera {state.name}", True, detail)


def check_attached_cameras(settings: Settings) -> Check:
    """What libcamera sees: Raspberry Pi cameras and USB webcams (UVC), in
    ``camera.device`` numbering, so a camera set up with the wrong source or
    number shows. Fails only when the settings name a libcamera camera that
    is not there; a webcam read through V4L2 does not need libcamera."""
    from kiosk.camera.picamera2 import libcamera_cameras

    try:
        cameras = libcamera_cameras()
    except GateError as exc:
        return Check("libcamera cameras", True, f"not listed: {exc}")
    listed = "; ".join(c.describe() for c in cameras) or "none"
    if settings["camera.source"] != "picamera2":
        return Check("libcamera cameras", True, listed)
    number = str(settings["camera.device"])
    found = number.isdigit() and int(number) < len(cameras)
    wanted = f"camera.device = {number!r} " + ("is listed" if found else "is not listed")
    return Check("libcamera cameras", found, f"{listed} ({wanted})")


def focus_mode(settings: Settings, source: FrameSource) -> tuple[str, bool]:
    """What focus the camera was given, and False when the settings ask for a
    fixed focus the camera cannot do (a wrong setting, not just a camera
    without a lens motor)."""
    mode = settings["camera.focus"]
    opened = getattr(source, "opened", None)
    if opened is not None:
        return opened.focus.note, opened.focus.supported or mode != "fixed"
    return f"{mode}: set on picamera2 cameras only; this camera keeps its own focus", True


def _code_region(frame: Frame, codes: list[Code]) -> Any:
    """The pixels of the first code found, or the whole frame."""
    grey = frame.grey
    if not codes or not codes[0].corners:
        return grey
    xs = [int(p[0]) for p in codes[0].corners]
    ys = [int(p[1]) for p in codes[0].corners]
    height, width = grey.shape
    left, right = max(0, min(xs)), min(width, max(xs) + 1)
    top, bottom = max(0, min(ys)), min(height, max(ys) + 1)
    if right - left < 16 or bottom - top < 16:
        return grey
    return grey[top:bottom, left:right]


def check_focus(
    source: FrameSource,
    clock: Clock,
    *,
    mode: tuple[str, bool],
    decoder: Decoder,
    seconds: float = FOCUS_SECONDS,
    on_reading: Callable[[str], None] | None = None,
) -> Check:
    """The focus mode, and the sharpness (variance of the Laplacian) of the
    code held to the camera, best of ``seconds``; ``on_reading`` hears the
    figure every :data:`READING_EVERY_S` while the tester moves the code.

    Fails only for a fixed focus the camera cannot do: the sharpness is a
    figure to compare (a focused code at 640x480 gives hundreds, a blurred
    one tens), not a pass mark, and nobody may be holding a code.
    """
    from kiosk.camera import sharpness

    note, ok = mode
    started = clock.monotonic()
    best_code: float | None = None
    best_view = 0.0
    next_reading = started
    while clock.monotonic() - started < seconds:
        frame = source.read(timeout_s=1.0)
        if frame is None:
            continue
        codes = decoder.decode(frame.grey)
        figure = sharpness(_code_region(frame, codes))
        if codes:
            best_code = figure if best_code is None else max(best_code, figure)
        else:
            best_view = max(best_view, figure)
        if on_reading is not None and clock.monotonic() >= next_reading:
            next_reading = clock.monotonic() + READING_EVERY_S
            held = "code held" if codes else "no code read"
            on_reading(f"sharpness {figure:.0f} ({held})")
    if best_code is not None:
        found = f"sharpness {best_code:.0f} on the held code"
    else:
        found = (
            f"no code read in {seconds:.0f} s (sharpness of the view {best_view:.0f}); "
            "hold a code 10 cm from the lens to measure it"
        )
    return Check("focus", ok, f"{note}; {found}")


def check_decoders() -> Iterator[Check]:
    """A code rendered into a realistic frame, read back exactly by each backend."""
    frame = render_code_frame(TEST_PAYLOAD, angle_deg=12, blur_sigma=0.8, noise_sigma=3.0)
    for name in DECODER_NAMES:
        try:
            codes = make_decoder(name).decode(frame)
        except GateError as exc:
            yield Check(f"decoder {name}", False, str(exc))
            continue
        ok = [c.text for c in codes] == [TEST_PAYLOAD]
        yield Check(
            f"decoder {name}",
            ok,
            "read the test code exactly" if ok else f"read {len(codes)} codes, not the test code",
        )


def check_outputs(
    pins: PinConfig,
    factory: Any,
    *,
    confirm: Callable[[str], bool],
    include_relay: bool,
    pause: Callable[[float], None],
    simulated: bool = False,
) -> Iterator[Check]:
    """Switch each output on for a moment; the person watching confirms it.

    On ``simulated`` pins nobody can see anything switch: each output is
    reported as not checked, and nobody is asked."""
    from gpiozero import DigitalOutputDevice

    outputs = [("green light", pins.green, True), ("red light", pins.red, True)]
    outputs += [
        ("buzzer", pins.buzzer, pins.buzzer_active_high),
        ("status light", pins.status, True),
    ]
    if include_relay:
        outputs.append(("door relay", pins.relay, pins.relay_active_high))
    for label, pin, active_high in outputs:
        if pin is None:
            yield Check(label, True, "not fitted")
            continue
        if simulated:
            yield Check(label, True, SIMULATED_PINS_DETAIL, checked=False)
            continue
        device = DigitalOutputDevice(
            pin, active_high=active_high, initial_value=False, pin_factory=factory
        )
        try:
            device.on()
            pause(1.0)
        finally:
            device.off()
            device.close()
        seen = confirm(
            f"{_OUTPUT_NAMES_VI[label].capitalize()} (GPIO {pin}) có bật lên không? / "
            f"Did the {label} (GPIO {pin}) switch on?"
        )
        if seen:
            yield Check(label, True, "người kiểm tra đã thấy / seen by the tester")
        else:
            yield Check(label, False, "người kiểm tra không thấy / not seen by the tester")


def check_database(db_path: Path) -> Check:
    """Writable, and PRAGMA integrity_check finds nothing."""
    try:
        with Store.open(db_path) as store:
            store.bump_settings_version()
            ok = store.integrity_ok()
    except (GateError, sqlite3.Error) as exc:
        return Check("database", False, str(exc))
    return Check("database", ok, f"{db_path}: writable, integrity {'ok' if ok else 'FAILED'}")


def check_clock(clock: Clock) -> Check:
    synced = clock.synchronised()
    detail = "synchronised" if synced else "not synchronised: events are flagged until it is"
    return Check("clock", synced, detail)


def check_disk(folder: Path, *, min_free_mb: int = MIN_FREE_MB) -> Check:
    folder.mkdir(parents=True, exist_ok=True)
    free_mb = shutil.disk_usage(folder).free // (1024 * 1024)
    return Check("disk", free_mb >= min_free_mb, f"{free_mb} MB free in {folder}")


def run_selftest(
    settings: Settings,
    *,
    clock: Clock,
    source: FrameSource,
    pin_factory: Any,
    confirm: Callable[[str], bool],
    include_relay: bool = True,
    on_reading: Callable[[str], None] | None = None,
    simulated_pins: bool = False,
) -> list[Check]:
    """Every check in turn; ``on_reading`` hears the focus check's live figure;
    ``simulated_pins``: the outputs are reported as not checked."""
    checks = [
        check_camera(source, clock),
        check_focus(
            source,
            clock,
            mode=focus_mode(settings, source),
            decoder=make_decoder("zxing"),
            on_reading=on_reading,
        ),
        check_attached_cameras(settings),
    ]
    checks += check_decoders()
    checks += check_outputs(
        settings.pin_config(),
        pin_factory,
        confirm=confirm,
        include_relay=include_relay,
        pause=clock.sleep,
        simulated=simulated_pins,
    )
    checks += [
        check_database(settings.db_path),
        check_clock(clock),
        check_disk(settings.data_dir),
    ]
    return checks


def selftest_at_gate(
    settings: Settings,
    *,
    clock: Clock,
    confirm: Callable[[str], bool],
    include_relay: bool = True,
    on_reading: Callable[[str], None] | None = None,
) -> list[Check]:
    """:func:`run_selftest` on the gate's own camera and pins, as the settings
    name them, released afterwards. A synthetic camera shows the test code
    for the whole run, so the check works without hardware too."""
    from gpiozero.pins.mock import MockFactory

    from gate_controller.pins import make_pin_factory
    from kiosk.compose import source_for
    from kiosk.synthetic import Scene

    extra: dict[str, Any] = {}
    if settings["camera.source"] == "synthetic":
        extra["schedule"] = [Scene((TEST_PAYLOAD,), 3600.0)]
    factory = make_pin_factory(settings["pins.backend"])
    try:
        source = source_for(settings, clock=clock, **extra)
        try:
            return run_selftest(
                settings,
                clock=clock,
                source=source,
                pin_factory=factory,
                confirm=confirm,
                include_relay=include_relay,
                on_reading=on_reading,
                simulated_pins=isinstance(factory, MockFactory),
            )
        finally:
            source.close()
    finally:
        factory.close()
