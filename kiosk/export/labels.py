"""The words an export's cells are written in, per language.

``en`` keeps the codes as stored (``in``, ``allow``, ``denylisted``,
``cccd``; ``TRUE``/``FALSE``): what support reads and what spreadsheets made
from earlier exports expect. ``vi`` writes what a Vietnamese manager reads:
``vào``/``ra``, ``cho vào``/``từ chối``, the reason in the words the gate
screen shows the visitor (:mod:`kiosk.messages`), the kind of code by its
Vietnamese name, ``CÓ``/``KHÔNG``.

Every label is plain CSV text (no comma, quote or line break) so the fast
CSV path keeps lines SQLite formats with them: a comma in a message becomes
a dash here. A code with no label is written as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kiosk.messages import message_for

LANGUAGES = ("vi", "en")
"""The languages an export can be written in; ``vi`` is the product's own."""

_KINDS_VI = {
    "cccd": "CCCD",
    "pc-covid": "PC-Covid",
    "declaration": "Tờ khai y tế",
    "staff-pass": "Thẻ nhân viên",
    "hcert": "Chứng nhận tiêm chủng",
    "unrecognised": "Mã không nhận ra",
    # The guard's admission, from the button or the web: one thing, two codes.
    "override": "Bảo vệ cho vào",
    "manual": "Bảo vệ cho vào",
}
_DIRECTIONS_VI = {"in": "vào", "out": "ra"}
_DECISIONS_VI = {"allow": "cho vào", "deny": "từ chối"}


def plain(text: str) -> str:
    """``text`` with nothing CSV would quote: commas become dashes, quotes and
    line breaks go."""
    return (
        text.replace(", ", " – ")
        .replace(",", " –")
        .replace('"', "")
        .replace("\r", " ")
        .replace("\n", " ")
    )


@dataclass(frozen=True)
class CellWords:
    """How the coded cells of one export language read. Empty maps (``en``)
    keep the codes; ``yes``/``no`` are the CSV text of the booleans."""

    lang: str
    directions: Mapping[str, str] = field(default_factory=dict)
    decisions: Mapping[str, str] = field(default_factory=dict)
    kinds: Mapping[str, str] = field(default_factory=dict)
    translate_reasons: bool = False
    yes: str = "TRUE"
    no: str = "FALSE"

    def direction(self, code: str) -> str:
        return self.directions.get(code, code)

    def decision(self, code: str) -> str:
        return self.decisions.get(code, code)

    def kind(self, code: str) -> str:
        return self.kinds.get(code, code)

    def reason(self, code: str) -> str:
        return plain(message_for(code).vi) if self.translate_reasons and code else code

    def boolean(self, value: bool) -> str:
        return self.yes if value else self.no


def cell_words(lang: str) -> CellWords:
    """The words of ``lang`` (one of :data:`LANGUAGES`); ValueError otherwise."""
    if lang == "en":
        return CellWords("en")
    if lang == "vi":
        return CellWords(
            "vi",
            directions=_DIRECTIONS_VI,
            decisions=_DECISIONS_VI,
            kinds=_KINDS_VI,
            translate_reasons=True,
            yes="CÓ",
            no="KHÔNG",
        )
    raise ValueError(f"an export's language is one of {', '.join(LANGUAGES)}, not {lang!r}")
