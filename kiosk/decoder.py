"""QR decoders behind one interface: zxing-cpp, pyzbar, and a pipeline of both.

Both backends promise the same thing for the same frame: the payload bytes
exactly as encoded in the symbol (``Code.raw``), a text reading of them
(``Code.text``) and the four corners in the same order. The rest of the scan
path (presentation filter, ``kiosk.codes``) never needs to know which backend
read a code.

Input frames are grey (2-D ``uint8``). A 3-channel BGR or 4-channel BGRA array
is accepted too and converted to grey once with OpenCV (pyzbar would otherwise
silently read only the blue channel); any other shape or dtype is a
:class:`~kiosk.errors.DecoderError`, because it means a camera adapter is broken.

:class:`PipelineDecoder` ("pipeline") reads more codes than either backend
alone at almost the cost of one zxing-cpp pass on the frames a gate mostly
sees, those with no code in them (``make bench`` measures both claims).

Example::

    decoder = make_decoder("pipeline")
    for code in decoder.decode(frame.grey):
        print(code.raw, code.corners)
"""

from __future__ import annotations

import ctypes
import logging
import threading
import weakref
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

from kiosk.camera import GreyImage
from kiosk.errors import ConfigError, DecoderError, DependencyMissing

if TYPE_CHECKING:
    import zxingcpp

log = logging.getLogger(__name__)

Point = tuple[float, float]


@dataclass(frozen=True)
class Code:
    """One QR code found in a frame.

    ``raw`` is the payload exactly as encoded (the byte segments' bytes);
    ``text`` is its reading as text (ECI honoured, else UTF-8 when valid);
    ``corners`` are the four corners in image pixels, clockwise from top-left
    of the symbol.
    """

    raw: bytes
    text: str
    corners: tuple[Point, ...]


class Decoder(Protocol):
    name: str

    def decode(self, grey: GreyImage) -> list[Code]:
        """All QR codes in a grey (2-D uint8) frame; [] when there are none."""
        ...


@dataclass(frozen=True)
class Undecoded:
    """A QR symbol that was located but whose data could not be read.

    A later retry pipeline can crop ``corners`` from the next frames (or
    sharpen this one) instead of searching the whole frame again. ``reason``
    is the backend's own words (e.g. a checksum error), for the debug log.
    """

    corners: tuple[Point, ...]
    reason: str


@dataclass(frozen=True)
class Detection:
    """Everything one pass over a frame found: read codes and unreadable ones."""

    codes: tuple[Code, ...]
    undecoded: tuple[Undecoded, ...]


DECODER_NAMES: tuple[str, ...] = ("zxing", "zbar", "pipeline")
"""Valid values for :func:`make_decoder` (and the ``decoder`` setting)."""


def make_decoder(name: str) -> Decoder:
    """Build the decoder backend called ``name`` with its default options.

    The composition root calls this with the ``decoder`` setting, so an unknown
    name is a configuration problem and is reported as :class:`ConfigError`
    listing the valid names.
    """
    if name == "zxing":
        return ZxingDecoder()
    if name == "zbar":
        return ZbarDecoder()
    if name == "pipeline":
        return PipelineDecoder()
    valid = ", ".join(repr(n) for n in DECODER_NAMES)
    raise ConfigError([f"unknown decoder {name!r}; valid decoders are {valid}"])


def as_grey(image: np.ndarray[Any, Any]) -> GreyImage:
    """The frame as a C-contiguous 2-D ``uint8`` array.

    Grey frames pass through without a copy (unless non-contiguous). BGR
    (H x W x 3) and BGRA (H x W x 4) arrays, e.g. from ``cv2.imread`` without
    a flag, are converted to grey with OpenCV's luma weights, so both backends
    see the same pixels. Anything else raises :class:`DecoderError`.
    """
    if image.dtype != np.uint8:
        raise DecoderError(f"frame must be uint8, got {image.dtype}")
    if image.size == 0:
        raise DecoderError(f"frame is empty (shape {image.shape})")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    elif image.ndim != 2:
        raise DecoderError(f"frame must be grey (H x W) or BGR (H x W x 3), got {image.shape}")
    grey: GreyImage = np.ascontiguousarray(image)
    return grey


def text_from_raw(raw: bytes) -> str:
    """Read payload bytes that carry no ECI as text.

    UTF-8 when the bytes are valid UTF-8 (every modern phone and every
    Vietnamese issuer writes UTF-8, usually without an ECI header); else
    Shift-JIS when valid (legacy Japanese codes, present in the real test
    photos); else ISO-8859-1, which the QR standard names as the default and
    which can read any byte string. The text is for display and parsing; the
    exact bytes always stay in ``Code.raw``.
    """
    for encoding in ("utf-8", "shift_jis"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


# --------------------------------------------------------------------- zxing


class ZxingDecoder:
    """QR decoder on zxing-cpp (``pip install zxing-cpp``, version 3 or later).

    Reads QR Code only (Model 2, and the obsolete Model 1 that old printed
    codes still use): Micro QR and rMQR, which zxing-cpp 3 counts as part of
    the "QRCode" family, are excluded, since nothing the gate accepts uses
    them and every extra format is another chance of a false read.

    Text: zxing-cpp's own reading of the bytes (``TextMode.Plain``). It honours
    ECI segments; without ECI it takes UTF-8 when the bytes are valid UTF-8 and
    otherwise guesses (Shift-JIS, GB2312, ISO-8859-1...), so Vietnamese text
    without an ECI header reads correctly.

    The keyword options are zxing-cpp's, exposed for performance work:
    ``binarizer`` (a ``zxingcpp.Binarizer``; default ``LocalAverage``),
    ``try_rotate``, ``try_downscale`` (also scan smaller copies of large
    frames), ``try_invert`` (also look for light-on-dark codes, e.g. phones in
    dark mode) and ``return_errors`` (keep symbols that were found but failed
    to decode, so :meth:`detect` can report them; :meth:`decode` never
    returns them). zxing-cpp holds no state between calls, so one instance may
    be shared between threads.
    """

    name = "zxing"

    def __init__(
        self,
        *,
        binarizer: zxingcpp.Binarizer | None = None,
        try_rotate: bool = True,
        try_downscale: bool = True,
        try_invert: bool = True,
        return_errors: bool = False,
    ) -> None:
        try:
            import zxingcpp
        except ImportError as exc:
            raise DependencyMissing(
                "the zxing decoder needs zxing-cpp: pip install 'zxing-cpp>=3'"
            ) from exc
        if not hasattr(zxingcpp.BarcodeFormat, "QRCodeModel2"):
            raise DependencyMissing(
                "the zxing decoder needs zxing-cpp 3 or later: pip install -U 'zxing-cpp>=3'"
            )
        self._zxingcpp = zxingcpp
        self._formats = zxingcpp.BarcodeFormats(
            [zxingcpp.BarcodeFormat.QRCodeModel2, zxingcpp.BarcodeFormat.QRCodeModel1]
        )
        self._binarizer = zxingcpp.Binarizer.LocalAverage if binarizer is None else binarizer
        self._try_rotate = try_rotate
        self._try_downscale = try_downscale
        self._try_invert = try_invert
        self._return_errors = return_errors

    def decode(self, grey: GreyImage) -> list[Code]:
        """All QR codes read in the frame, in zxing-cpp's order; [] if none."""
        return list(self.detect(grey).codes)

    def detect(self, grey: GreyImage) -> Detection:
        """Read codes and, with ``return_errors=True``, also the symbols that
        were located but could not be decoded (otherwise ``undecoded`` is
        always empty)."""
        frame = as_grey(grey)
        try:
            barcodes = self._zxingcpp.read_barcodes(
                frame,
                formats=self._formats,
                try_rotate=self._try_rotate,
                try_downscale=self._try_downscale,
                try_invert=self._try_invert,
                text_mode=self._zxingcpp.TextMode.Plain,
                binarizer=self._binarizer,
                return_errors=self._return_errors,
            )
        except (ValueError, RuntimeError) as exc:
            raise DecoderError(f"zxing-cpp failed on a {frame.shape} frame: {exc}") from exc
        codes: list[Code] = []
        undecoded: list[Undecoded] = []
        for barcode in barcodes:
            corners = _zxing_corners(barcode.position)
            if barcode.valid:
                codes.append(Code(raw=barcode.bytes, text=barcode.text, corners=corners))
            else:
                undecoded.append(Undecoded(corners=corners, reason=str(barcode.error)))
        if undecoded:
            log.debug("zxing located %d QR symbol(s) it could not decode", len(undecoded))
        return Detection(codes=tuple(codes), undecoded=tuple(undecoded))


def _zxing_corners(position: zxingcpp.Position) -> tuple[Point, ...]:
    """Clockwise from the symbol's top-left, as :class:`Code` promises."""
    points = (position.top_left, position.top_right, position.bottom_right, position.bottom_left)
    return tuple((float(p.x), float(p.y)) for p in points)


# ---------------------------------------------------------------------- zbar

# From zbar.h (mchehab/zbar 0.23.x). pyzbar's own ZBarConfig enum predates
# ZBAR_CFG_BINARY and says CFG_NUM = 4, so it is not used here.
_ZBAR_NONE = 0
_ZBAR_QRCODE = 64
_ZBAR_CFG_ENABLE = 0
_ZBAR_CFG_BINARY = 4
_Y800 = 0x30303859  # fourcc "Y800": 8-bit grey, one byte per pixel
_MIN_ZBAR_VERSION = (0, 23, 1)  # first release with ZBAR_CFG_BINARY
_INSTALL_ZBAR = "sudo apt install libzbar0 (Debian/Raspberry Pi OS), and pip install pyzbar"


class _ZbarApi:
    """The libzbar functions the zbar backend calls, with ctypes signatures.

    Built per decoder (not at import time), so that importing this module
    never needs libzbar. pyzbar.wrapper supplies most functions; the few it
    lacks or declares wrongly are declared here.
    """

    def __init__(self) -> None:
        try:
            from pyzbar import wrapper
        except ImportError as exc:  # pyzbar raises ImportError when libzbar is absent
            raise DependencyMissing(f"the zbar decoder needs libzbar: {_INSTALL_ZBAR}") from exc
        lib = wrapper.load_libzbar()
        self.w = wrapper
        scanner_p = ctypes.POINTER(wrapper.zbar_image_scanner)
        uint_p = ctypes.POINTER(ctypes.c_uint)
        # zbar >= 0.23 takes (major, minor, patch); pyzbar declares only two
        # arguments, which would let zbar write "patch" through a garbage pointer.
        self.version = ctypes.CFUNCTYPE(ctypes.c_int, uint_p, uint_p, uint_p)(("zbar_version", lib))
        self.enable_cache = ctypes.CFUNCTYPE(None, scanner_p, ctypes.c_int)(
            ("zbar_image_scanner_enable_cache", lib)
        )

    def version_tuple(self) -> tuple[int, int, int]:
        """(major, minor, patch) of the loaded libzbar; patch is 0 before 0.23."""
        major, minor, patch = ctypes.c_uint(0), ctypes.c_uint(0), ctypes.c_uint(0)
        self.version(ctypes.byref(major), ctypes.byref(minor), ctypes.byref(patch))
        return (major.value, minor.value, patch.value)


class ZbarDecoder:
    """QR decoder on libzbar through pyzbar's ctypes wrapper.

    Unlike ``pyzbar.decode``, this returns the payload exactly as encoded: the
    scanner runs in ZBar's binary mode (``ZBAR_CFG_BINARY``, libzbar 0.23.1 or
    later), so ZBar does not guess a character set and convert (stock pyzbar
    reads UTF-8 "Trần Văn Đức" without ECI as Shift-JIS mojibake), and the data length comes
    from ZBar rather than from a NUL-terminated string, so NUL bytes survive.

    Text is :func:`text_from_raw` of the bytes. ECI limitation: binary mode
    only stops ZBar *guessing*; a segment under an ECI that ZBar knows
    (ISO-8859-x, CP437, Shift-JIS, UTF-8) is still converted to UTF-8 by ZBar,
    and the ECI itself is not reported. So for UTF-8 with or without ECI (what
    phones and Vietnamese issuers write) and for data without ECI, ``raw`` is
    exact; for, say, an ISO-8859-1 ECI payload ``raw`` is the UTF-8 of the text
    (``text`` is still right). Other ECIs (Big5, GB18030...) pass through
    unconverted and are read by :func:`text_from_raw`. The zxing backend
    returns exact bytes in every case.

    ZBar cannot see light-on-dark codes; with ``try_invert`` (default, like
    zxing-cpp) a frame in which nothing was found is scanned once more,
    inverted. This doubles the cost of empty frames only.

    Only QR Code is enabled. One ZBar image scanner is created per instance
    and reused for every frame; it is not thread-safe, so :meth:`decode` holds
    a lock (one thread at a time; give each thread its own decoder for
    parallelism). :meth:`close` releases the scanner early; otherwise it is
    released when the decoder is garbage-collected.
    """

    name = "zbar"

    def __init__(self, *, try_invert: bool = True) -> None:
        api = _ZbarApi()
        version = api.version_tuple()
        if version < _MIN_ZBAR_VERSION:
            have = ".".join(str(v) for v in version)
            raise DependencyMissing(
                f"the zbar decoder needs libzbar >= 0.23.1 for binary mode, found {have}: "
                f"{_INSTALL_ZBAR} from a newer release (Debian 12 ships 0.23.92)"
            )
        w = api.w
        scanner = w.zbar_image_scanner_create()
        if not scanner:
            raise DecoderError("zbar_image_scanner_create failed")
        self._finalizer = weakref.finalize(self, w.zbar_image_scanner_destroy, scanner)
        settings = (
            (_ZBAR_NONE, _ZBAR_CFG_ENABLE, 0),
            (_ZBAR_QRCODE, _ZBAR_CFG_ENABLE, 1),
            (_ZBAR_QRCODE, _ZBAR_CFG_BINARY, 1),
        )
        for symbology, config, value in settings:
            if w.zbar_image_scanner_set_config(scanner, symbology, config, value) != 0:
                self._finalizer()
                raise DecoderError(
                    f"libzbar {version} rejected config {config}={value} for symbology "
                    f"{symbology}; libzbar >= 0.23.1 is needed"
                )
        api.enable_cache(scanner, 0)  # the cache suppresses repeats across frames
        self._api = api
        self._scanner = scanner
        self._try_invert = try_invert
        self._lock = threading.Lock()
        self.version = version
        log.debug("zbar decoder ready, libzbar %s", version)

    def close(self) -> None:
        """Release the ZBar scanner now; later :meth:`decode` calls raise."""
        with self._lock:
            self._finalizer()

    def __enter__(self) -> ZbarDecoder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def decode(self, grey: GreyImage) -> list[Code]:
        """All QR codes read in the frame, in ZBar's order; [] if none."""
        frame = as_grey(grey)
        with self._lock:
            if not self._finalizer.alive:
                raise DecoderError("zbar decoder used after close()")
            codes = self._scan(frame)
            if not codes and self._try_invert:
                codes = self._scan(np.bitwise_not(frame))
        return codes

    def _scan(self, frame: GreyImage) -> list[Code]:
        w = self._api.w
        height, width = frame.shape
        image = w.zbar_image_create()
        if not image:
            raise DecoderError("zbar_image_create failed")
        try:
            w.zbar_image_set_format(image, _Y800)
            w.zbar_image_set_size(image, width, height)
            # No cleanup handler: `frame` outlives the image, which is destroyed below.
            w.zbar_image_set_data(image, frame.ctypes.data, frame.size, None)
            found = w.zbar_scan_image(self._scanner, image)
            if found < 0:
                raise DecoderError(f"zbar_scan_image failed on a {frame.shape} frame")
            codes: list[Code] = []
            symbol = w.zbar_image_first_symbol(image)
            while symbol:
                if symbol.contents.type != _ZBAR_QRCODE:  # e.g. a PARTIAL structured append
                    symbol = w.zbar_symbol_next(symbol)
                    continue
                length = w.zbar_symbol_get_data_length(symbol)
                data = w.zbar_symbol_get_data(symbol)
                raw = ctypes.string_at(data, length) if length else b""
                points = [
                    (
                        float(w.zbar_symbol_get_loc_x(symbol, i)),
                        float(w.zbar_symbol_get_loc_y(symbol, i)),
                    )
                    for i in range(w.zbar_symbol_get_loc_size(symbol))
                ]
                codes.append(Code(raw=raw, text=text_from_raw(raw), corners=_zbar_corners(points)))
                symbol = w.zbar_symbol_next(symbol)
            return codes
        finally:
            w.zbar_image_destroy(image)


def _zbar_corners(points: Sequence[Point]) -> tuple[Point, ...]:
    """ZBar lists a QR symbol's corners top-left, bottom-left, bottom-right,
    top-right (anticlockwise, in the symbol's own orientation); :class:`Code`
    wants clockwise from top-left like zxing-cpp. Other counts pass as given."""
    if len(points) != 4:
        return tuple(points)
    top_left, bottom_left, bottom_right, top_right = points
    return (top_left, top_right, bottom_right, bottom_left)


# ------------------------------------------------------------------ pipeline


class Detector(Protocol):
    """A backend that also reports symbols it located but could not read."""

    name: str

    def detect(self, grey: GreyImage) -> Detection: ...


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
        frame = as_grey(grey)
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
