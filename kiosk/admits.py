"""Guards' "admit once" requests from the web, as both sides agree on them.

The web files a request, the kiosk carries it out (records the manual entry,
then opens the door); this module holds what both must read the same way,
so neither imports the other.
"""

from __future__ import annotations

ADMIT_MAX_AGE_S = 30.0
"""A guard's admit request older than this (seconds) is not carried out: the
visitor has gone. The web shows one still pending past it as not carried out."""

KIND_MANUAL = "manual"
"""The kind of an entry a guard admitted from the web: no code was read."""
