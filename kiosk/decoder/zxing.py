"""The zxing-cpp backend (see :class:`ZxingDecoder`), the default one."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kiosk.camera.base import GreyImage, to_grey
from kiosk.decoder.base import Code, Detection, Point, Undecoded
from kiosk.errors import DecoderError, DependencyMissing

if TYPE_CHECKING:
    import zxingcpp

log = logging.getLogger(__name__)


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
        frame = to_grey(grey, error=DecoderError)
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
