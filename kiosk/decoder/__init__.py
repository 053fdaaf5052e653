"""QR decoders behind one interface: zxing-cpp, pyzbar, and a pipeline of both.

Both backends promise the same thing for the same frame: the payload bytes
exactly as encoded in the symbol (``Code.raw``), a text reading of them
(``Code.text``) and the four corners in the same order. The rest of the scan
path (presentation filter, ``kiosk.codes``) never needs to know which backend
read a code.

Input frames are grey (2-D ``uint8``). A 3-channel BGR or 4-channel BGRA array
is accepted too and converted to grey once by :func:`kiosk.camera.to_grey`
(pyzbar would otherwise silently read only the blue channel); any other shape
or dtype is a :class:`~kiosk.errors.DecoderError`, because it means a camera
adapter is broken.

:class:`PipelineDecoder` ("pipeline") reads more codes than either backend
alone at almost the cost of one zxing-cpp pass on the frames a gate mostly
sees, those with no code in them (``make bench`` measures both claims).

One module per backend: ``zxing``, ``zbar``, ``pipeline``; ``base`` holds
:class:`Code`, the :class:`Decoder` port and :func:`make_decoder`. Every name
is importable from ``kiosk.decoder``; a backend's module (and OpenCV,
zxing-cpp or libzbar behind it) is loaded when its name is first used.

Example::

    decoder = make_decoder("pipeline")
    for code in decoder.decode(frame.grey):
        print(code.raw, code.corners)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiosk.decoder.base import (
    DECODER_NAMES,
    Code,
    Decoder,
    Detection,
    Detector,
    Point,
    Undecoded,
    make_decoder,
    text_from_raw,
)
from kiosk.lazy import lazy_names

if TYPE_CHECKING:
    from kiosk.decoder.pipeline import PIPELINE_STEPS, PipelineDecoder
    from kiosk.decoder.zbar import ZbarDecoder
    from kiosk.decoder.zxing import ZxingDecoder

__all__ = [
    "DECODER_NAMES",
    "PIPELINE_STEPS",
    "Code",
    "Decoder",
    "Detection",
    "Detector",
    "PipelineDecoder",
    "Point",
    "Undecoded",
    "ZbarDecoder",
    "ZxingDecoder",
    "make_decoder",
    "text_from_raw",
]

_LAZY = {
    "PIPELINE_STEPS": "pipeline",
    "PipelineDecoder": "pipeline",
    "ZbarDecoder": "zbar",
    "ZxingDecoder": "zxing",
}
"""Names whose module is loaded on first use, and that module (in this package)."""


__getattr__ = lazy_names(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(__all__)
