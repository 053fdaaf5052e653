"""The libzbar backend through pyzbar's ctypes wrapper (see :class:`ZbarDecoder`)."""

from __future__ import annotations

import ctypes
import logging
import threading
import weakref
from collections.abc import Sequence

import numpy as np

from kiosk.camera.base import GreyImage, to_grey
from kiosk.decoder.base import Code, Point, text_from_raw
from kiosk.errors import DecoderError, DependencyMissing

log = logging.getLogger(__name__)

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
        frame = to_grey(grey, error=DecoderError)
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
