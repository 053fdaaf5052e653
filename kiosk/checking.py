"""``gatekiosk check``: what the gate would decide, recording nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kiosk.codes.base import Credential
from kiosk.config import Settings
from kiosk.gate_view import gate_view, is_revoked
from kiosk.policy import GateView, decide
from kiosk.privacy import legacy_subject_hash, subject_hash, subject_of
from kiosk.rules import policy_rules, registry_for
from kiosk.store import Store


def check_payloads(
    settings: Settings, payloads: list[bytes], *, at: datetime
) -> list[dict[str, Any]]:
    """One result per payload, as the JSON ``gatekiosk check`` prints.

    Signed codes (declarations, staff passes) are verified against the
    site's keys, and revocations read from the site's database when it
    exists (a revoked code is refused by the policy, as at the gate).
    Presence and the denylist come from the database when it and the hash
    key exist; otherwise the gate is taken as empty.
    """
    rules = policy_rules(settings)
    expiry_h = settings["policy.presence_expiry_h"]
    store = None
    key = None
    if settings.db_path.exists():
        store = Store.open(settings.db_path, read_only=True)
        if settings.key_path.exists():
            key = settings.key_path.read_bytes()
    results = []
    try:
        registry = registry_for(settings, store)
        for raw in payloads:
            identified = registry.identify(raw, at=at)
            credential = identified if isinstance(identified, Credential) else None
            view = GateView()
            if store is not None and key is not None:
                hashed = subject_hash(key, subject_of(credential)) if credential else None
                legacy = legacy_subject_hash(key, credential) if credential else None
                view = gate_view(
                    store, credential, hashed, at=at, expiry_h=expiry_h, legacy_hashed=legacy
                )
            elif store is not None:
                view = GateView(revoked=is_revoked(store, credential))
            decision = decide(identified, rules=rules, view=view)
            results.append(
                {
                    "decision": decision.verdict,
                    "reason": decision.reason,
                    "kind": identified.kind,
                    "direction": decision.direction,
                    "message": {"vi": decision.message.vi, "en": decision.message.en},
                    "warning": decision.warning,
                }
            )
    finally:
        if store is not None:
            store.close()
    return results
