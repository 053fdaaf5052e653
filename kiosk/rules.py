"""How settings become the rules a gate decides with: the policy's rules, the
scan settings, the code formats the site understands (its signed codes and
HC1: certificates, over its keys and trust list).

Imports no camera, decoder, image library, QR renderer or pin library, so
commands that decide without a camera (``gatekiosk check --payload``) start
cheaply; the composition root (:mod:`kiosk.compose`) builds the rest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kiosk.codes import Registry, default_formats
from kiosk.codes.hcert import HcertFormat, HcertRules
from kiosk.codes.sitecodes import SiteCodeFormat
from kiosk.config import Settings, with_site_settings
from kiosk.errors import GateError, StoreError
from kiosk.keys import MANIFEST_NAME, KeyRing, load_keyring
from kiosk.policy import PolicyRules
from kiosk.scan_settings import GateSetup, ScanSettings, SetupForSite
from kiosk.store import Store
from kiosk.trust import TrustError, TrustList, certificate_from_der

log = logging.getLogger(__name__)


def policy_rules(settings: Settings) -> PolicyRules:
    return PolicyRules(
        mode=settings["gate.mode"],
        antipassback=settings["policy.antipassback"],
        capacity=settings["policy.capacity"],
        allowed_kinds=settings.allowed_kinds,
        antipassback_when_stale=settings["site.antipassback_when_stale"],
        entry_gates=settings["site.entry_gates"],
    )


def scan_settings(settings: Settings) -> ScanSettings:
    return ScanSettings(
        gate_id=settings["gate.id"],
        timezone=settings.timezone,
        hysteresis_s=settings["scan.hysteresis_s"],
        presence_expiry_h=settings["policy.presence_expiry_h"],
        store_full_id=settings["privacy.store_full_id"],
        read_timeout_s=max(0.2, settings["camera.stall_timeout_s"] / 2),
        camera_fault_exit_s=settings["camera.fault_exit_s"] or None,
        relay_pulse_ms=settings["pins.relay_pulse_ms"],
        retention_days=settings["privacy.retention_days"],
        site_id=settings["gate.site_id"],
        code_skew_s=settings["codes.skew_s"],
        site_stale_after_s=settings["site.stale_after_s"],
    )


def gate_setup(settings: Settings) -> GateSetup:
    return GateSetup(rules=policy_rules(settings), settings=scan_settings(settings))


def setup_for_site(file_settings: Settings) -> SetupForSite:
    """What the running scanner applies when a manager saves settings on the web:
    the file's settings with the web's changes over them, checked as at start-up
    (ConfigError for a value that is not valid)."""

    def setup(site: Mapping[str, Any]) -> GateSetup:
        return gate_setup(with_site_settings(file_settings, site))

    return setup


def hcert_rules(settings: Settings) -> HcertRules:
    return HcertRules(
        vaccination_min_days=settings["hcert.vaccination_min_days"],
        test_max_hours=settings["hcert.test_max_hours"],
        check_value_sets=settings["hcert.check_value_sets"],
    )


def trust_list_for(store: Store | None) -> TrustList:
    """The trusted HC1: signing certificates in the database (StoreError if it
    cannot be read). A stored certificate that no longer parses is left out,
    with a warning."""
    if store is None:
        return TrustList()
    certificates = []
    for row in store.trusted_certificates():
        try:
            certificates.append(certificate_from_der(row.der, country=row.country or None))
        except TrustError as exc:
            log.warning("trusted certificate %s left out: %s", row.kid.hex(), exc)
    return TrustList(certificates)


def registry_for(settings: Settings, store: Store | None) -> Registry:
    """The code formats this site understands, signed ones first.

    ``store`` gives the HC1: trust list (a read-only store will do; without
    one, HC1: certificates are refused). Revocation is not the registry's:
    the gate's view asks the store (see :mod:`kiosk.gate_view`). With no
    site keys yet, signed codes are refused (``sitecode-unknown-key``).
    Raises KeysError for keys that exist but cannot be read.
    """
    return SiteCodes.for_settings(settings, store).registry


KeysStamp = tuple[int, int, int]
"""What identifies one version of the key manifest: inode, mtime (ns), size.
Key files are replaced by rename, so a new version is a new inode even when
the clock's resolution would hide the change of mtime."""


class SiteCodes:
    """The site's signed codes as this process verifies them: a
    :class:`SiteCodeFormat` over the key ring in the keys folder, in front of
    the identity-only formats.

    The running kiosk keeps it in step (:meth:`refresh`, every
    ``ScanSettings.keys_poll_s`` of the clock's monotonic time): the key
    manifest (``keys/keys.json``) is compared by inode, mtime and size, and
    read again when it changed, so a ``gatekiosk keys rotate`` or ``retire``
    on this machine, or a keys folder copied in from the signing machine,
    applies within seconds without a restart. The file, not the database's
    settings version, is the signal: key commands do not touch the
    database, and another gate's keys may arrive by copy. A manifest that
    cannot be read (or disappears) keeps the current keys, with a warning.
    """

    def __init__(
        self,
        keys_dir: Path,
        *,
        site_id: str,
        skew_s: float,
        store: Store | None = None,
        hcert_rules: HcertRules | None = None,
    ) -> None:
        """Reads the keys now: an empty ring if there are none yet, KeysError
        if they exist but cannot be read. With a ``store``, also the HC1:
        trust list (reloaded when the database's settings version changes:
        every trust list change bumps it). A store that cannot be read now
        (the kiosk's database did not open) gives an empty trust list, with
        a warning, and :meth:`refresh` reads it once the store works."""
        self.keys_dir = keys_dir
        self._site_id = site_id
        self._skew_s = skew_s
        self._store = store
        self._hcert_rules = hcert_rules or HcertRules()
        self._stamp = self._manifest_stamp()
        self.keyring = KeyRing() if self._stamp is None else load_keyring(keys_dir)
        self._trust_version: int | None = None
        self.trust = TrustList()
        self._trust_failing = False
        if store is not None:
            try:
                self._trust_version = store.settings_version()
                self.trust = trust_list_for(store)
            except StoreError as exc:
                self._trust_failing = True
                log.warning(
                    "could not read the trust list at start-up, starting without one "
                    "(HC1: certificates are refused) until the database can be read: %s",
                    exc,
                )
        self.registry = self._build()

    @classmethod
    def for_settings(cls, settings: Settings, store: Store | None) -> SiteCodes:
        return cls(
            settings.keys_dir,
            site_id=settings["gate.site_id"],
            skew_s=settings["codes.skew_s"],
            store=store,
            hcert_rules=hcert_rules(settings),
        )

    @property
    def has_keys(self) -> bool:
        return bool(self.keyring.keys)

    def refresh(self, scan: ScanSettings) -> Registry | None:
        """A new registry if the keys on disk, ``scan.site_id`` or
        ``scan.code_skew_s`` changed since the last build; else None."""
        changed = self._reload_keys()
        changed = self._reload_trust() or changed
        if (scan.site_id, scan.code_skew_s) != (self._site_id, self._skew_s):
            self._site_id, self._skew_s = scan.site_id, scan.code_skew_s
            changed = True
        if not changed:
            return None
        self.registry = self._build()
        return self.registry

    def _reload_keys(self) -> bool:
        stamp = self._manifest_stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp  # a manifest that cannot be read is warned about once
        try:
            keyring = load_keyring(self.keys_dir)
        except GateError as exc:
            log.warning("site keys changed but cannot be read, keeping the current ones: %s", exc)
            return False
        self.keyring = keyring
        retired = sum(1 for key in keyring.keys if key.retired)
        active = keyring.active
        log.info(
            "site keys reloaded from %s: %d keys (%d retired), signing key %s",
            self.keys_dir,
            len(keyring.keys),
            retired,
            active.kid_hex if active else "none",
        )
        return True

    def _reload_trust(self) -> bool:
        if self._store is None:
            return False
        try:
            version = self._store.settings_version()
            if version == self._trust_version:
                return False
            trust = trust_list_for(self._store)
        except GateError as exc:
            # Once per failure, not every keys poll: a database that cannot
            # be opened fails here until it can, and the scanner says so too.
            if not self._trust_failing:
                log.warning("could not read the trust list, keeping the current one: %s", exc)
            self._trust_failing = True
            return False
        self._trust_version = version
        recovered, self._trust_failing = self._trust_failing, False
        if [c.der for c in trust.certificates] == [c.der for c in self.trust.certificates]:
            if recovered:
                log.info("trust list read again: %d signing certificates", len(trust))
            return False
        self.trust = trust
        log.info("trust list reloaded: %d signing certificates", len(trust))
        return True

    def _manifest_stamp(self) -> KeysStamp | None:
        try:
            info = os.stat(self.keys_dir / MANIFEST_NAME)
        except OSError:
            return None
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    def _build(self) -> Registry:
        site_format = SiteCodeFormat(self.keyring, self._site_id, skew_s=self._skew_s)
        hcert_format = HcertFormat(self.trust, self._hcert_rules, skew_s=self._skew_s)
        return Registry([site_format, hcert_format, *default_formats()])
