"""The gate's view: what the store knows that a decision depends on.

Read from the store before each decision (see :class:`~kiosk.policy.GateView`),
so the codes stay a matter of bytes and keys, and the policy a pure function.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from kiosk.codes.base import Credential
from kiosk.policy import GateView
from kiosk.store import Store


def gate_view(
    store: Store,
    credential: Credential | None,
    hashed: str | None,
    *,
    at: datetime,
    expiry_h: float,
    stale_after_s: float | None = None,
    legacy_hashed: str | None = None,
) -> GateView:
    """What ``store`` knows at ``at`` about the holder of ``credential``
    (``hashed``: their subject hash; None for a code that did not identify
    anyone) and about the gate. Presence older than ``expiry_h`` hours counts
    as gone. ``legacy_hashed`` (see :func:`kiosk.privacy.legacy_subject_hash`)
    is looked up in the denylist only, so entries made before subjects were
    namespaced still refuse their person. Presence and occupancy are
    site-wide (other gates' facts folded in); the site view is stale when the
    gate has heard no gate of its site, or not all of them, for more than
    ``stale_after_s`` seconds (None: never stale; neither is a gate that never
    heard a site). Raises StoreError: the caller fails secure."""
    presence = store.presence_of(hashed, now=at, expiry_h=expiry_h) if hashed else None
    denylisted = any(store.is_denylisted(h) for h in (hashed, legacy_hashed) if h)
    view = GateView(
        present_since=presence.entered_at if presence else None,
        occupancy=store.occupancy(now=at, expiry_h=expiry_h),
        denylisted=denylisted,
        revoked=is_revoked(store, credential),
    )
    if stale_after_s is None:
        return view
    fresh_as_of = store.site_presence.fresh_as_of()
    if fresh_as_of is None or (at - fresh_as_of).total_seconds() <= stale_after_s:
        return view
    snapshot = store.site_presence.partition_snapshot(fresh_as_of, now=at, expiry_h=expiry_h)
    return replace(
        view,
        site_stale=True,
        occupancy_at_fresh=snapshot.occupancy_known,
        entries_since_fresh=snapshot.entries_since,
    )


def is_revoked(store: Store, credential: Credential | None) -> bool:
    """Whether a manager revoked the site-issued code ``credential`` came
    from (False for other codes, which carry no code id). Raises StoreError."""
    code_id = credential.code_id if credential is not None else None
    return code_id is not None and store.is_revoked(code_id)
