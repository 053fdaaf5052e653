"""Where the Pi camera focuses, and how sharp a frame is.

libcamera starts the Camera Module 3's lens in manual mode at 1 dioptre
(about 1 m), and picamera2 changes the autofocus mode only when asked, so a
code held 5-15 cm from the lens is blurred unless the gate asks for focus.
:func:`focus_controls` turns the ``camera.focus`` settings into the libcamera
controls that do it -- only those the camera reports, so a camera without a
lens motor (Camera Module 2, most webcams) is left alone.

Units: libcamera's ``LensPosition`` is in dioptres, the reciprocal of the
focus distance in metres, so a code 10 cm away is at 100 / 10 = 10 dioptres;
0 is infinity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiosk.camera.base import GreyImage

FOCUS_MODES = ("auto-macro", "fixed", "none")
"""The ``camera.focus`` values: continuous autofocus in the macro range, the
lens held at a distance, or focus left as the camera starts."""


@dataclass(frozen=True)
class Focus:
    """The focus the settings ask for. ``distance_cm`` is used by ``fixed`` only."""

    mode: str = "auto-macro"
    distance_cm: float = 10.0

    def __post_init__(self) -> None:
        if self.mode not in FOCUS_MODES:
            raise ValueError(f"focus mode {self.mode!r} is not one of {', '.join(FOCUS_MODES)}")
        if self.distance_cm <= 0:
            raise ValueError(f"focus distance must be positive, got {self.distance_cm} cm")

    @property
    def dioptres(self) -> float:
        """``LensPosition`` for ``distance_cm``: 100 / cm."""
        return 100.0 / self.distance_cm

    def describe(self) -> str:
        if self.mode == "auto-macro":
            return "auto-macro (continuous autofocus, macro range)"
        if self.mode == "fixed":
            return f"fixed at {self.distance_cm:g} cm ({self.dioptres:.1f} dioptres)"
        return "none (left to the camera)"


@dataclass(frozen=True)
class FocusPlan:
    """What :func:`focus_controls` decided for one camera."""

    controls: Mapping[str, Any] = field(default_factory=dict)
    """Controls to set, by libcamera name (empty: nothing to set)."""
    note: str = ""
    """What was set, or why nothing could be: for the log and ``selftest``."""
    supported: bool = True
    """False when the camera lacks the controls the mode needs."""


def _clamped(value: float, limits: Any) -> float:
    """``value`` within the (min, max, default) limits libcamera reports, if numeric."""
    try:
        low, high = float(limits[0]), float(limits[1])
    except (TypeError, ValueError, IndexError):
        return value
    if high <= low:  # an unset range
        return value
    return min(max(value, low), high)


def focus_controls(focus: Focus, camera_controls: Mapping[str, Any], enums: Any) -> FocusPlan:
    """The controls that give ``focus`` on a camera reporting ``camera_controls``
    (picamera2's ``Picamera2.camera_controls``: name -> (min, max, default)).

    ``enums`` is ``libcamera.controls`` (for ``AfModeEnum`` and ``AfRangeEnum``).
    A control the camera does not report is never set: picamera2 refuses the
    whole configuration for one unknown control. A fixed distance closer than
    the lens reaches is clamped to the nearest it can, and said so.
    """
    if focus.mode == "none":
        return FocusPlan(note="none: focus left to the camera")
    if focus.mode == "auto-macro":
        if "AfMode" not in camera_controls:
            return FocusPlan(
                note="auto-macro: the camera has no autofocus (no AfMode control); "
                "focus left to the camera",
                supported=False,
            )
        controls: dict[str, Any] = {"AfMode": enums.AfModeEnum.Continuous}
        note = "auto-macro: continuous autofocus"
        if "AfRange" in camera_controls:
            controls["AfRange"] = enums.AfRangeEnum.Macro
            note += ", macro range"
        return FocusPlan(controls=controls, note=note)
    if "LensPosition" not in camera_controls:
        return FocusPlan(
            note=f"fixed: the camera cannot move its lens (no LensPosition control); "
            f"{focus.distance_cm:g} cm not set",
            supported=False,
        )
    wanted = focus.dioptres
    dioptres = _clamped(wanted, camera_controls["LensPosition"])
    controls = {"LensPosition": dioptres}
    if "AfMode" in camera_controls:
        controls = {"AfMode": enums.AfModeEnum.Manual, **controls}
    distance = f"{100.0 / dioptres:.1f} cm" if dioptres > 0 else "infinity"
    note = f"fixed: lens at {dioptres:.2f} dioptres ({distance})"
    if dioptres != wanted:
        note += f"; {focus.distance_cm:g} cm is outside the lens's range"
    return FocusPlan(controls=controls, note=note)


def sharpness(grey: GreyImage) -> float:
    """Variance of the Laplacian of a grey frame: higher is sharper.

    A figure to compare while moving a code or turning a lens, not an absolute
    threshold: it grows with contrast and detail in view. On a 640x480 frame of
    a held QR code, a blurred one gives tens, a focused one hundreds or more.
    """
    import cv2

    return float(cv2.Laplacian(grey, cv2.CV_64F).var())
