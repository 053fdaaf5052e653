"""What every decoder backend shares: the code found, the port, the text rule,
and :func:`make_decoder`, which loads only the backend it builds.

Nothing here imports OpenCV, numpy, zxing-cpp or libzbar, so the scan loop
and the presentation filter can name :class:`Code` and :class:`Decoder`
without loading a backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from kiosk.camera.base import GreyImage
from kiosk.errors import ConfigError

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
        from kiosk.decoder.zxing import ZxingDecoder

        return ZxingDecoder()
    if name == "zbar":
        from kiosk.decoder.zbar import ZbarDecoder

        return ZbarDecoder()
    if name == "pipeline":
        from kiosk.decoder.pipeline import PipelineDecoder

        return PipelineDecoder()
    valid = ", ".join(repr(n) for n in DECODER_NAMES)
    raise ConfigError([f"unknown decoder {name!r}; valid decoders are {valid}"])


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


class Detector(Protocol):
    """A backend that also reports symbols it located but could not read."""

    name: str

    def detect(self, grey: GreyImage) -> Detection: ...
