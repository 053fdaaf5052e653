"""zxing-cpp first, more work only on frames that give a reason for it
(see :class:`PipelineDecoder`), the gate's decoder by default."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence

import cv2
import numpy as np

from kiosk.camera.base import GreyImage, to_grey
from kiosk.decoder.base import Code, Decoder, Detector, Point, Undecoded
from kiosk.decoder.zbar import ZbarDecoder
from kiosk.decoder.zxing import ZxingDecoder
from kiosk.errors import DecoderError, DependencyMissing

log = logging.getLogger(__name__)

_SECOND_LOOK_SCALE = 0.5
"""The second look reads a copy of the frame at this scale (a quarter of the pixels)."""
_SECOND_LOOK_MIN_PX = 64
"""Frames smaller than this (either side) get no second look: too few pixels to halve."""
_RETRY_MARGIN = 0.25
"""A retried region is the symbol's bounding box grown by this fraction of its size
on every side, so the crop keeps the quiet zone the detector needs."""
_RETRY_MIN_SIDE_PX = 320
"""Crops smaller than this (longer side) are scaled up to it before a retry."""
_RETRY_BLUR_SIGMA = 1.0
_MAX_RETRIED_REGIONS = 2
"""A frame with more located-but-unread symbols than this has only the first retried."""


PIPELINE_STEPS: tuple[str, ...] = ("second-look", "retry", "zbar")
"""The optional steps of :class:`PipelineDecoder`, all on by default."""


class PipelineDecoder:
    """zxing-cpp first; more work only on frames that give a reason for it.

    Measured on the real photos (``make bench``), no single backend call
    reads them all: zxing-cpp's default pass misses codes that its
    GlobalHistogram binarizer reads on a half-size copy, and others that it
    locates but cannot decode until the region is cropped and scaled up, or
    read by ZBar. Running all of that on every frame would cost several
    times a zxing pass, and almost every frame at a gate has no code at all.
    So, per frame:

    1. ``primary`` (zxing-cpp, default options, ``return_errors=True``) on
       the frame. Valid codes are returned as they are.
    2. ``second-look``, only if step 1 read nothing: ``second_look``
       (zxing-cpp, GlobalHistogram binarizer) on a half-size copy. On an
       empty frame it costs about a tenth of step 1: a quarter of the pixels,
       a cheaper binarizer.
    3. ``retry``, only for symbols that step 1 or 2 *located* but could not
       decode (at most two per frame): crop the region from the full-size
       frame and try, in turn until one reads, the primary pass on the crop
       scaled up, the same slightly blurred, the second-look pass on the
       crop, and (``zbar``) ``fallback`` on the scaled crop.

    Every code returned is a valid decode by zxing-cpp or ZBar (checksums
    and all), never a guess from a partial read; corners are in the
    original frame's pixels. An empty frame costs steps 1 and 2 only.

    Collaborators are keyword arguments, so tests can count calls and
    benchmarks can switch steps off (``steps``, a subset of
    :data:`PIPELINE_STEPS`). ``fallback`` defaults to a :class:`ZbarDecoder`
    when libzbar is installed; without it the ``zbar`` step is skipped
    (logged once).
    """

    name = "pipeline"

    def __init__(
        self,
        *,
        primary: Detector | None = None,
        second_look: Detector | None = None,
        fallback: Decoder | None = None,
        steps: Collection[str] = PIPELINE_STEPS,
    ) -> None:
        unknown = set(steps) - set(PIPELINE_STEPS)
        if unknown:
            raise ValueError(f"unknown pipeline steps {sorted(unknown)}; valid: {PIPELINE_STEPS}")
        self._primary: Detector = (
            ZxingDecoder(return_errors=True, try_downscale=False) if primary is None else primary
        )
        self._second: Detector = _global_histogram_zxing() if second_look is None else second_look
        self._second_look = "second-look" in steps
        self._retry = "retry" in steps
        self._fallback: Decoder | None = None
        if "zbar" in steps:
            self._fallback = _optional_zbar() if fallback is None else fallback

    def decode(self, grey: GreyImage) -> list[Code]:
        """All QR codes read in the frame; [] if none (see the class for the steps)."""
        frame = to_grey(grey, error=DecoderError)
        first = self._primary.detect(frame)
        codes = list(first.codes)
        undecoded = first.undecoded
        if not codes and self._second_look and min(frame.shape) >= _SECOND_LOOK_MIN_PX:
            small: GreyImage = np.asarray(
                cv2.resize(
                    frame,
                    None,
                    fx=_SECOND_LOOK_SCALE,
                    fy=_SECOND_LOOK_SCALE,
                    interpolation=cv2.INTER_AREA,
                ),
                dtype=np.uint8,
            )
            second = self._second.detect(small)
            scale = 1.0 / _SECOND_LOOK_SCALE
            codes = [_moved(code, 0.0, 0.0, scale) for code in second.codes]
            if not undecoded:
                undecoded = tuple(
                    Undecoded(_moved_points(u.corners, 0.0, 0.0, scale), u.reason)
                    for u in second.undecoded
                )
        if self._retry:
            for symbol in undecoded[:_MAX_RETRIED_REGIONS]:
                codes += self._read_region(frame, symbol)
        return codes

    def _read_region(self, frame: GreyImage, symbol: Undecoded) -> list[Code]:
        """The codes read in one located symbol's region, by the first attempt that reads any."""
        region = _region(frame, symbol.corners)
        if region is None:
            return []
        x0, y0, crop = region
        scale = max(1.0, _RETRY_MIN_SIDE_PX / max(crop.shape))
        scaled = crop
        if scale > 1.0:
            scaled = np.ascontiguousarray(
                cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC),
                dtype=np.uint8,
            )
        blurred: GreyImage = np.ascontiguousarray(
            cv2.GaussianBlur(scaled, (0, 0), _RETRY_BLUR_SIGMA), dtype=np.uint8
        )
        attempts: list[tuple[str, Callable[[], Sequence[Code]], float]] = [
            (self._primary.name, lambda: self._primary.detect(scaled).codes, scale),
            (self._primary.name, lambda: self._primary.detect(blurred).codes, scale),
            (self._second.name, lambda: self._second.detect(crop).codes, 1.0),
        ]
        fallback = self._fallback
        if fallback is not None:
            attempts.append((fallback.name, lambda: fallback.decode(scaled), scale))
        for name, attempt, image_scale in attempts:
            found = attempt()
            if found:
                log.debug("a retry in a located region read %d code(s) (%s)", len(found), name)
                return [_moved(code, x0, y0, 1.0 / image_scale) for code in found]
        return []


def _global_histogram_zxing() -> ZxingDecoder:
    """zxing-cpp with the GlobalHistogram binarizer, for images already small."""
    import zxingcpp

    return ZxingDecoder(
        binarizer=zxingcpp.Binarizer.GlobalHistogram,
        try_downscale=False,
        try_invert=False,
        return_errors=True,
    )


_zbar_missing_logged = False


def _optional_zbar() -> ZbarDecoder | None:
    global _zbar_missing_logged
    try:
        return ZbarDecoder()
    except DependencyMissing as exc:
        if not _zbar_missing_logged:
            _zbar_missing_logged = True
            log.info("pipeline decoder runs without its ZBar retry: %s", exc)
        return None


def _region(frame: GreyImage, corners: Sequence[Point]) -> tuple[int, int, GreyImage] | None:
    """(x0, y0, crop) of the symbol's bounding box plus a margin, clipped to the frame."""
    if not corners:
        return None
    xs = [p[0] for p in corners]
    ys = [p[1] for p in corners]
    margin = _RETRY_MARGIN * max(max(xs) - min(xs), max(ys) - min(ys), 8.0)
    height, width = frame.shape
    x0 = max(0, int(min(xs) - margin))
    y0 = max(0, int(min(ys) - margin))
    x1 = min(width, int(max(xs) + margin) + 1)
    y1 = min(height, int(max(ys) + margin) + 1)
    if x1 - x0 < 16 or y1 - y0 < 16:
        return None
    return x0, y0, np.ascontiguousarray(frame[y0:y1, x0:x1])


def _moved_points(points: Sequence[Point], x0: float, y0: float, scale: float) -> tuple[Point, ...]:
    return tuple((x0 + x * scale, y0 + y * scale) for x, y in points)


def _moved(code: Code, x0: float, y0: float, scale: float) -> Code:
    """``code`` read in a crop at (x0, y0) scaled by 1/``scale``, in frame pixels."""
    return Code(raw=code.raw, text=code.text, corners=_moved_points(code.corners, x0, y0, scale))
