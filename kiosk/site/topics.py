"""The names a site uses: site and gate ids, and the MQTT topics built from them.

One module for both sides and for the broker's ACL, so that a topic the
gate publishes on is, by construction, the topic the ACL lets it write.

Ids are short lowercase ASCII (``a-z``, ``0-9``, ``-``; 1 to 32 characters,
starting and ending with a letter or digit). They go into certificate
names, MQTT usernames and client ids, topic levels, file names and ACL
lines, so none of MQTT's wildcards (``+``, ``#``), its level separator
(``/``), spaces, newlines or ``%`` (an ACL pattern's escape) can ever be
part of one.

The topic tree of a site ``s`` (``<g>`` a gate id)::

    gk/s/gate/<g>/...        written by gate g only; read by the hub
    gk/s/gate/<g>/events     the gate's events going up (QoS 1)
    gk/s/gate/<g>/presence   its entries and exits, read by every gate of the site
    gk/s/gate/<g>/status     online/offline (retained, the will message)
    gk/s/to/<g>/...          written by the hub, read by gate g only (acknowledgements)
    gk/s/doc/<kind>          signed documents, retained; written by the hub, read by all

A gate can read another gate's ``presence`` but never its ``events``: the
presence carries only what anti-passback needs (subject hash, direction,
time, gate, event id).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kiosk.site import SiteError

ROOT = "gk"
ID_MAX_CHARS = 32
_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")

# The hub's MQTT identity (its client certificate's common name). A gate may
# not be called this: the certificate's name is its username and client id.
HUB_IDENTITY = "hub"
RESERVED_GATE_IDS = frozenset({HUB_IDENTITY})


def is_valid_id(value: str) -> bool:
    """Whether ``value`` is a well-formed site or gate id."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def check_site_id(value: str) -> str:
    """``value`` if it is a valid site id; raises :class:`SiteError` otherwise."""
    if not is_valid_id(value):
        raise SiteError(
            f"{value!r} is not a site id: use 1 to {ID_MAX_CHARS} of a-z, 0-9 and '-'"
            " (not at either end)"
        )
    return value


def check_gate_id(value: str) -> str:
    """``value`` if it is a valid gate id; raises :class:`SiteError` otherwise."""
    if not is_valid_id(value):
        raise SiteError(
            f"{value!r} is not a gate id: use 1 to {ID_MAX_CHARS} of a-z, 0-9 and '-'"
            " (not at either end), for example 'main-gate'"
        )
    if value in RESERVED_GATE_IDS:
        raise SiteError(f"{value!r} is reserved for the hub; choose another gate id")
    return value


@dataclass(frozen=True)
class Topics:
    """The topics of one site. Every method returns a topic name or filter.

    Example::

        topics = Topics("factory-1")
        topics.gate_events("main-gate")   # 'gk/factory-1/gate/main-gate/events'
        topics.document("settings")       # 'gk/factory-1/doc/settings'
    """

    site_id: str

    def __post_init__(self) -> None:
        check_site_id(self.site_id)

    @property
    def site(self) -> str:
        return f"{ROOT}/{self.site_id}"

    def gate(self, gate_id: str) -> str:
        """Everything gate ``gate_id`` may write lies under this."""
        return f"{self.site}/gate/{check_gate_id(gate_id)}"

    def gate_events(self, gate_id: str) -> str:
        return f"{self.gate(gate_id)}/events"

    def gate_presence(self, gate_id: str) -> str:
        return f"{self.gate(gate_id)}/presence"

    def gate_status(self, gate_id: str) -> str:
        return f"{self.gate(gate_id)}/status"

    def to_gate(self, gate_id: str) -> str:
        """What the hub sends to one gate only (acknowledgements) lies under this."""
        return f"{self.site}/to/{check_gate_id(gate_id)}"

    def document(self, kind: str) -> str:
        return f"{self.site}/doc/{kind}"

    # Filters for subscriptions.

    @property
    def all_presence(self) -> str:
        """Every gate's presence (what each gate subscribes to)."""
        return f"{self.site}/gate/+/presence"

    @property
    def all_events(self) -> str:
        """Every gate's events (what the hub subscribes to)."""
        return f"{self.site}/gate/+/events"

    @property
    def all_documents(self) -> str:
        return f"{self.site}/doc/#"

    @property
    def everything(self) -> str:
        return f"{self.site}/#"
