"""Synthetic camera frames: QR codes rendered the way a gate camera sees them.

The demo, the decoder tests and the benchmarks need frames with real QR codes
in them without a camera. This module renders them: a textured background (the
fixed view of the gate), each code on a paper card or a phone screen at a
position, scale, rotation and keystone tilt, then optical blur, sensor noise,
and optionally glare, low contrast, screen moiré or inverted colours.

Payload bytes are encoded exactly: ``bytes`` go into the symbol as they are,
``str`` as UTF-8. With ``eci=True`` the symbol also carries an ECI header
declaring UTF-8, as some generators do and many do not.

Example::

    rng = np.random.default_rng(7)
    grey = render_code_frame("Nguyễn Văn An", module_px=5, angle_deg=12, rng=rng)
    zxingcpp.read_barcodes(grey)[0].bytes == "Nguyễn Văn An".encode()

Of gatekiosk it imports only the frame types of ``kiosk.camera.base``, so
``kiosk.camera.synthetic`` can build its synthetic camera on it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
import segno

from kiosk.camera.base import GreyImage

Payload = bytes | str
Carrier = Literal["paper", "phone"]

_QUIET_MODULES = {"paper": 4, "phone": 2}
"""Quiet zone around the symbol: the standard 4 on paper; phone apps often show less."""
_MARGIN_MODULES = {"paper": 1.5, "phone": 2.5}
"""Card edge beyond the quiet zone (paper), or phone bezel width (phone)."""
_CODE_CACHE_LIMIT = 64


@dataclass(frozen=True)
class CodeInView:
    """One code held up to the camera: what it says and how it looks.

    Geometry is in frame pixels: ``center`` as fractions of the frame width and
    height, ``module_px`` the width of one module, ``angle_deg`` rotation
    counter-clockwise as seen, ``perspective`` the keystone of a tilted card
    (0 flat to the camera; 0.2: the far edge is 20 % shorter). Appearance:
    ``contrast`` the fraction of the full dark-to-light range between modules
    (1.0 crisp print, 0.3 a dim screen), ``glare`` the peak of a bright blob
    (fraction of full scale), ``moire`` the depth of the beat bands a camera
    sees on a screen (0..1), ``inverted`` light modules on dark.
    """

    payload: Payload
    eci: bool = False
    center: tuple[float, float] = (0.5, 0.5)
    module_px: float = 4.0
    angle_deg: float = 0.0
    perspective: float = 0.0
    contrast: float = 1.0
    glare: float = 0.0
    moire: float = 0.0
    inverted: bool = False
    carrier: Carrier = "paper"

    def __post_init__(self) -> None:
        if self.module_px <= 0:
            raise ValueError(f"module_px must be positive, got {self.module_px}")
        if not 0.0 <= self.perspective < 0.9:
            raise ValueError(f"perspective must be in [0, 0.9), got {self.perspective}")
        if not 0.0 < self.contrast <= 1.0:
            raise ValueError(f"contrast must be in (0, 1], got {self.contrast}")


@dataclass(frozen=True)
class Scene:
    """A stretch of a synthetic schedule: these codes in view for ``duration_s``.

    ``codes`` may hold bare payloads (``bytes`` or ``str``); the synthetic
    camera then chooses a plausible look for each from its seed, side by side
    when there are several. An empty ``codes`` is a gate with nobody at it.
    ``blur_sigma`` (pixels) and ``noise_sigma`` (grey levels) apply to the
    whole frame; ``jitter_px`` is the amplitude of the hand's tremor.
    """

    codes: tuple[CodeInView | Payload, ...] = ()
    duration_s: float = 1.0
    blur_sigma: float = 0.8
    noise_sigma: float = 3.0
    jitter_px: float = 1.5

    def __post_init__(self) -> None:
        if isinstance(self.codes, bytes | str | CodeInView):
            raise TypeError("Scene.codes is a tuple of codes, e.g. Scene(('payload',), 2.0)")
        object.__setattr__(self, "codes", tuple(self.codes))
        if self.duration_s <= 0:
            raise ValueError(f"duration_s must be positive, got {self.duration_s}")


@functools.lru_cache(maxsize=256)
def qr_matrix(payload: Payload, *, eci: bool = False) -> npt.NDArray[np.bool_]:
    """The QR symbol for ``payload``: True for dark modules, no quiet zone.

    ``str`` is encoded as UTF-8 (segno would otherwise prefer ISO 8859-1),
    ``bytes`` exactly as given. With ``eci`` the payload must be valid UTF-8
    and the symbol declares it with ECI 26. The result is cached and read-only.
    """
    if eci:
        text = payload if isinstance(payload, str) else payload.decode("utf-8")
        qr = segno.make_qr(text, encoding="utf-8", eci=True)
    else:
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        qr = segno.make_qr(data)
    matrix = np.array([list(row) for row in qr.matrix], dtype=bool)
    matrix.flags.writeable = False
    return matrix


def textured_background(size: tuple[int, int], rng: np.random.Generator) -> GreyImage:
    """A plausible gate scene without a code: smooth texture at several scales,
    light falling off from the ceiling, and a few flat shapes (door frame,
    posters). Decoders must not find codes in it, and must work against it.
    ``size`` is (width, height) in pixels.
    """
    width, height = size
    field_ = np.full((height, width), 118.0, dtype=np.float32)
    for cells, amplitude in ((3, 28.0), (9, 14.0), (27, 7.0), (81, 3.0)):
        grid_h = max(2, round(cells * height / width))
        coarse = rng.standard_normal((grid_h, cells + 1)).astype(np.float32)
        field_ += amplitude * cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    field_ += np.linspace(30.0, -20.0, height, dtype=np.float32)[:, None]
    for _ in range(int(rng.integers(4, 8))):
        x0, x1 = sorted(int(v) for v in rng.integers(0, width, 2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, height, 2))
        level = float(rng.uniform(40, 220))
        region = field_[y0:y1, x0:x1]
        region[...] = 0.5 * region + 0.5 * level
    return np.clip(field_, 0, 255).astype(np.uint8)


def _module_levels(contrast: float) -> tuple[float, float]:
    """Grey levels of dark and light modules: 20 and 235 at full contrast,
    squeezed towards 128 as contrast drops."""
    half = 107.5 * contrast
    return 127.5 - half, 127.5 + half


def code_image(
    payload: Payload,
    *,
    src_module_px: int,
    eci: bool = False,
    contrast: float = 1.0,
    inverted: bool = False,
    moire: float = 0.0,
    carrier: Carrier = "paper",
) -> GreyImage:
    """The code as it would be photographed flat and square-on: symbol, quiet
    zone and carrier (card edge or phone bezel), ``src_module_px`` pixels per
    module. Moiré bands are drawn here so that they warp with the screen.
    """
    matrix = qr_matrix(payload, eci=eci)
    quiet = _QUIET_MODULES[carrier]
    dark, light = _module_levels(contrast)
    if inverted:
        dark, light = light, dark
    modules = np.pad(matrix, quiet, constant_values=False)
    image = np.where(modules, dark, light).astype(np.float32)
    image = np.repeat(np.repeat(image, src_module_px, axis=0), src_module_px, axis=1)
    margin_px = round(_MARGIN_MODULES[carrier] * src_module_px)
    if carrier == "phone":
        if moire > 0:
            image *= _moire_pattern(image.shape[0], src_module_px, moire)
        image = np.pad(image, margin_px, constant_values=28.0)
    else:
        image = np.pad(image, margin_px, constant_values=max(0.0, light - 6.0))
        if moire > 0:
            image *= _moire_pattern(image.shape[0], src_module_px, moire)
    return np.clip(image, 0, 255).astype(np.uint8)


def _moire_pattern(side_px: int, module_px: int, depth: float) -> npt.NDArray[np.float32]:
    """Multiplicative beat bands: the low-frequency interference a camera sensor
    makes with a screen's pixel grid, two families crossing at an angle."""
    v, u = np.mgrid[0:side_px, 0:side_px].astype(np.float32)
    bands = np.zeros((side_px, side_px), dtype=np.float32)
    for period_modules, angle_deg in ((1.7, 20.0), (2.9, 75.0)):
        theta = math.radians(angle_deg)
        phase = (u * math.cos(theta) + v * math.sin(theta)) / (period_modules * module_px)
        bands += 0.25 * (1.0 + np.cos(2.0 * math.pi * phase))
    return np.asarray(1.0 - min(depth, 1.0) * 0.5 * bands, dtype=np.float32)


def code_corners(
    look: CodeInView, side_src_px: int, src_module_px: int, size: tuple[int, int]
) -> npt.NDArray[np.float32]:
    """Where the corners of a ``side_src_px`` square code image land in the
    frame (TL, TR, BR, BL as seen), in pixels: scaled to ``look.module_px``,
    keystoned by ``look.perspective``, rotated and placed at ``look.center``."""
    half = 0.5 * side_src_px * look.module_px / src_module_px
    top = 1.0 - look.perspective
    corners = np.array(
        [
            [-half * top, -half * (1.0 - look.perspective / 2)],
            [half * top, -half * (1.0 - look.perspective / 2)],
            [half, half],
            [-half, half],
        ],
        dtype=np.float64,
    )
    theta = math.radians(look.angle_deg)
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    # Image y points down, so this turns the card counter-clockwise as seen.
    rotation = np.array([[cos_t, sin_t], [-sin_t, cos_t]])
    width, height = size
    placed = corners @ rotation.T + np.array([look.center[0] * width, look.center[1] * height])
    return placed.astype(np.float32)


def paste_warped(
    frame: GreyImage, image: GreyImage, corners: npt.NDArray[np.float32]
) -> tuple[int, int, int, int] | None:
    """Warp ``image`` onto ``frame`` in place so its corners land on ``corners``.

    Only the bounding box of the destination is computed, which keeps a small
    code on a large frame cheap. Returns the box (x0, y0, x1, y1) or None when
    the code is entirely outside the frame.
    """
    height, width = frame.shape
    x0 = max(0, math.floor(float(corners[:, 0].min())))
    y0 = max(0, math.floor(float(corners[:, 1].min())))
    x1 = min(width, math.ceil(float(corners[:, 0].max())) + 1)
    y1 = min(height, math.ceil(float(corners[:, 1].max())) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    side_h, side_w = image.shape
    src = np.array([[0, 0], [side_w, 0], [side_w, side_h], [0, side_h]], dtype=np.float32)
    dst = corners - np.array([x0, y0], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    roi = frame[y0:y1, x0:x1]
    cv2.warpPerspective(
        image,
        matrix,
        (x1 - x0, y1 - y0),
        dst=roi,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_TRANSPARENT,
    )
    return x0, y0, x1, y1


def add_glare(
    frame: GreyImage, center: tuple[float, float], radius_px: float, strength: float
) -> None:
    """Brighten ``frame`` in place with a Gaussian blob (a lamp reflected in a
    glossy card or screen); ``strength`` is the peak as a fraction of full scale."""
    if strength <= 0 or radius_px <= 0:
        return
    height, width = frame.shape
    reach = 3.0 * radius_px
    x0, x1 = max(0, int(center[0] - reach)), min(width, int(center[0] + reach) + 1)
    y0, y1 = max(0, int(center[1] - reach)), min(height, int(center[1] + reach) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    gx = np.exp(-0.5 * ((np.arange(x0, x1, dtype=np.float32) - center[0]) / radius_px) ** 2)
    gy = np.exp(-0.5 * ((np.arange(y0, y1, dtype=np.float32) - center[1]) / radius_px) ** 2)
    blob = np.outer(gy, gx) * (255.0 * strength)
    region = frame[y0:y1, x0:x1]
    region[...] = np.clip(region + blob, 0, 255).astype(np.uint8)


@dataclass
class FrameRenderer:
    """Renders frames of one fixed camera view, cheaply enough for a live demo.

    The background is made once from ``rng``; flat code images are cached per
    payload and look; with ``noise_bank`` a few frames of sensor noise are
    drawn once and reused at random offsets, which costs far less per frame
    than drawing fresh Gaussian noise. ``size`` is (width, height) in pixels.
    """

    size: tuple[int, int] = (640, 480)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    noise_bank: bool = True
    background: GreyImage = field(init=False)
    _codes: dict[tuple[object, ...], GreyImage] = field(init=False, default_factory=dict)
    _noise: dict[float, list[npt.NDArray[np.int16]]] = field(init=False, default_factory=dict)

    _NOISE_PAD = 32
    _NOISE_FRAMES = 3

    def __post_init__(self) -> None:
        self.background = textured_background(self.size, self.rng)

    def render(
        self,
        codes: Sequence[CodeInView],
        *,
        blur_sigma: float = 0.8,
        noise_sigma: float = 3.0,
        rng: np.random.Generator | None = None,
        glare_offsets: Sequence[tuple[float, float]] = (),
    ) -> GreyImage:
        """One frame with ``codes`` in view. ``rng`` draws this frame's noise
        and glare placement (the renderer's own generator when omitted);
        ``glare_offsets`` optionally fixes each glare blob's offset from its
        code's centre, as fractions of the code's size."""
        rng = self.rng if rng is None else rng
        frame = self.background.copy()
        for i, look in enumerate(codes):
            src_module_px = max(1, math.ceil(look.module_px))
            image = self._code_image(look, src_module_px)
            corners = code_corners(look, image.shape[0], src_module_px, self.size)
            paste_warped(frame, image, corners)
            if look.glare > 0:
                side = float(np.linalg.norm(corners[2] - corners[3]))
                if i < len(glare_offsets):
                    off_x, off_y = glare_offsets[i]
                else:
                    off_x, off_y = (float(v) for v in rng.uniform(-0.25, 0.25, 2))
                centre = corners.mean(axis=0)
                add_glare(
                    frame,
                    (float(centre[0]) + off_x * side, float(centre[1]) + off_y * side),
                    0.22 * side,
                    look.glare,
                )
        if blur_sigma > 0:
            frame = np.asarray(cv2.GaussianBlur(frame, (0, 0), blur_sigma), dtype=np.uint8)
        if noise_sigma > 0:
            frame = self._add_noise(frame, noise_sigma, rng)
        return frame

    def _code_image(self, look: CodeInView, src_module_px: int) -> GreyImage:
        key = (
            type(look.payload),
            look.payload,
            look.eci,
            src_module_px,
            round(look.contrast, 3),
            look.inverted,
            round(look.moire, 3),
            look.carrier,
        )
        image = self._codes.get(key)
        if image is None:
            if len(self._codes) >= _CODE_CACHE_LIMIT:
                self._codes.clear()
            image = code_image(
                look.payload,
                src_module_px=src_module_px,
                eci=look.eci,
                contrast=look.contrast,
                inverted=look.inverted,
                moire=look.moire,
                carrier=look.carrier,
            )
            self._codes[key] = image
        return image

    def _add_noise(self, frame: GreyImage, sigma: float, rng: np.random.Generator) -> GreyImage:
        height, width = frame.shape
        if not self.noise_bank:
            fresh = rng.standard_normal((height, width), dtype=np.float32) * sigma
            return np.clip(frame + fresh, 0, 255).astype(np.uint8)
        bank = self._noise.get(sigma)
        if bank is None:
            pad = self._NOISE_PAD
            bank = [
                (self.rng.standard_normal((height + pad, width + pad)) * sigma)
                .round()
                .astype(np.int16)
                for _ in range(self._NOISE_FRAMES)
            ]
            self._noise[sigma] = bank
        which, dy, dx = (
            int(v) for v in rng.integers(0, [len(bank), self._NOISE_PAD, self._NOISE_PAD])
        )
        noise = bank[which][dy : dy + height, dx : dx + width]
        return np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def render_code_frame(
    payload: Payload,
    *,
    size: tuple[int, int] = (640, 480),
    module_px: float = 4.0,
    center: tuple[float, float] = (0.5, 0.5),
    angle_deg: float = 0.0,
    perspective: float = 0.0,
    blur_sigma: float = 0.8,
    noise_sigma: float = 3.0,
    contrast: float = 1.0,
    glare: float = 0.0,
    moire: float = 0.0,
    inverted: bool = False,
    carrier: Carrier = "paper",
    eci: bool = False,
    rng: np.random.Generator | None = None,
) -> GreyImage:
    """One grey frame (``size`` = width, height) showing ``payload`` as a QR code.

    For decoder tests and benchmarks: every distortion is a parameter (see
    :class:`CodeInView` for their units); ``rng`` draws the background and
    noise, seeded 0 when omitted so the same call gives the same frame.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    look = CodeInView(
        payload=payload,
        eci=eci,
        center=center,
        module_px=module_px,
        angle_deg=angle_deg,
        perspective=perspective,
        contrast=contrast,
        glare=glare,
        moire=moire,
        inverted=inverted,
        carrier=carrier,
    )
    renderer = FrameRenderer(size=size, rng=rng, noise_bank=False)
    return renderer.render([look], blur_sigma=blur_sigma, noise_sigma=noise_sigma, rng=rng)


def plausible_look(
    payload: Payload,
    rng: np.random.Generator,
    *,
    slot: int = 0,
    slots: int = 1,
    size: tuple[int, int] = (640, 480),
) -> CodeInView:
    """A look a visitor might present: card or phone, somewhat turned and
    tilted, filling a fair part of the frame (its ``slot`` of ``slots`` side by
    side). Chosen to stay readable; hard cases are asked for explicitly."""
    width, height = size
    modules = qr_matrix(payload).shape[0]
    carrier: Carrier = "phone" if rng.random() < 0.5 else "paper"
    extent_modules = modules + 2 * (_QUIET_MODULES[carrier] + _MARGIN_MODULES[carrier])
    target_px = float(rng.uniform(0.45, 0.7)) * min(width / slots, height)
    module_px = float(np.clip(target_px / extent_modules, 2.5, 9.0))
    return CodeInView(
        payload=payload,
        center=(
            (slot + 0.5) / slots + float(rng.uniform(-0.04, 0.04)) / slots,
            0.5 + float(rng.uniform(-0.06, 0.06)),
        ),
        module_px=module_px,
        angle_deg=float(rng.uniform(-20.0, 20.0)),
        perspective=float(rng.uniform(0.0, 0.12)),
        contrast=float(rng.uniform(0.75, 1.0)),
        moire=float(rng.uniform(0.0, 0.15)) if carrier == "phone" else 0.0,
        carrier=carrier,
    )
