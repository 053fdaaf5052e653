"""Payload formats and the registry that identifies a scanned code.

The scan loop hands every decoded payload to :meth:`Registry.identify` and
gets back a :class:`Credential` or a :class:`Rejection`, never an exception.
Formats are tried in the order given, so formats with distinctive prefixes
(the site's signed declaration, ``HC1:`` certificates) go first; adding one
means passing it in the list, not touching the loop::

    registry = Registry([declaration_format, hcert_format, *default_formats()])
    result = registry.identify(code.raw, at=clock.now())
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from kiosk.codes.base import (
    KIND_CCCD,
    KIND_DECLARATION,
    KIND_HCERT,
    KIND_PC_COVID,
    KIND_STAFF_PASS,
    KIND_UNRECOGNISED,
    CodeFormat,
    Credential,
    Identified,
    Rejection,
)
from kiosk.codes.cccd import CccdFormat
from kiosk.codes.pccovid import PcCovidFormat

__all__ = [
    "KIND_CCCD",
    "KIND_DECLARATION",
    "KIND_HCERT",
    "KIND_PC_COVID",
    "KIND_STAFF_PASS",
    "KIND_UNRECOGNISED",
    "MAX_PAYLOAD_BYTES",
    "CccdFormat",
    "CodeFormat",
    "Credential",
    "Identified",
    "PcCovidFormat",
    "Registry",
    "Rejection",
    "default_formats",
]

log = logging.getLogger(__name__)

# The most a QR code can hold: version 40, error correction L, numeric mode
# (7089 digits, one byte each once decoded). Anything longer did not come
# from a QR code, so no parser should spend time on it.
MAX_PAYLOAD_BYTES = 7089


def default_formats() -> list[CodeFormat]:
    """The identity-only formats every gate understands, in priority order.

    Signed formats need keys and trust lists from settings, so the
    composition root adds them in front of these.
    """
    return [CccdFormat(), PcCovidFormat()]


class Registry:
    """Tries each format in order; the first that claims the payload wins.

    ``identify`` is the boundary between untrusted bytes and the rest of the
    gate: whatever a parser does (including raising, or returning a
    credential without a subject), the caller gets a Credential or a typed
    Rejection with a non-empty reason.
    """

    def __init__(
        self,
        formats: Sequence[CodeFormat],
        *,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    ) -> None:
        self.formats: tuple[CodeFormat, ...] = tuple(formats)
        self.max_payload_bytes = max_payload_bytes

    def identify(self, raw: bytes, *, at: datetime) -> Identified:
        """Identify one decoded payload at verification time ``at`` (aware UTC).

        Rejections of the registry itself (kind ``unrecognised`` unless a
        parser failed):

        - ``payload-too-large``: longer than a QR code can hold; no parser runs.
        - ``unrecognised``: no format claimed the payload.
        - ``parser-error``: the claiming format raised or broke its contract;
          the kind is that format's, and the log names only the exception type.
        """
        try:
            size = len(raw)
        except Exception:  # not bytes-like at all; the scan loop must survive it
            return Rejection(KIND_UNRECOGNISED, "unrecognised", "payload is not bytes")
        if size > self.max_payload_bytes:
            return Rejection(
                KIND_UNRECOGNISED,
                "payload-too-large",
                f"{size} bytes, more than a QR code holds ({self.max_payload_bytes})",
            )
        for code_format in self.formats:
            kind = _kind_of(code_format)
            try:
                result = code_format.parse(raw, at=at)
            except Exception as exc:
                # Type name only: exception messages often quote the payload.
                log.error("format %s raised %s on a payload", kind, type(exc).__name__)
                return Rejection(kind, "parser-error", f"parser raised {type(exc).__name__}")
            if result is None:
                continue
            problem = _contract_problem(result)
            if problem is not None:
                log.error("format %s broke its contract: %s", kind, problem)
                return Rejection(kind, "parser-error", problem)
            return result
        return Rejection(KIND_UNRECOGNISED, "unrecognised", "no known format matched")


def _kind_of(code_format: CodeFormat) -> str:
    """The format's kind for a rejection, even from a format without one."""
    kind = getattr(code_format, "kind", None)
    return kind if isinstance(kind, str) and kind else KIND_UNRECOGNISED


def _contract_problem(result: object) -> str | None:
    """What policy could not rely on in a parser's result, or None."""
    if isinstance(result, Credential):
        if not result.subject_id or not result.display_name:
            return "credential without subject_id or display_name"
        return None
    if isinstance(result, Rejection):
        return None if result.reason else "rejection without a reason"
    return f"parser returned {type(result).__name__}"
