"""The composition root: the one place that turns settings into real parts."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory

from gate_controller.gpio import GpiozeroSignals
from gate_controller.pins import make_pin_factory
from kiosk.camera import FrameSource, open_source
from kiosk.clock import Clock
from kiosk.codes import Registry, default_formats
from kiosk.codes.hcert import HcertFormat, HcertRules
from kiosk.codes.sitecodes import SiteCodeFormat
from kiosk.config import Settings, with_site_settings
from kiosk.decoder import Decoder, make_decoder
from kiosk.errors import GateError, StoreError
from kiosk.keys import MANIFEST_NAME, KeyRing, load_keyring
from kiosk.policy import PolicyRules
from kiosk.privacy import load_or_create_key
from kiosk.samples import VISITOR_CCCD, VISITOR_PC_COVID, VISITOR_UNRECOGNISED
from kiosk.scanner import GateSetup, Outcome, Scanner, ScanSettings, SetupForSite
from kiosk.store import (
    KIOSK_BUSY_TIMEOUT_MS,
    OPEN_RETRY_S,
    AuditNote,
    Store,
    TrustedRow,
)
from kiosk.synthetic import Scene
from kiosk.trust import (
    ParsedTrustFile,
    TrustedCertificate,
    TrustError,
    TrustList,
    certificate_from_der,
    parse_trust_file,
)

log = logging.getLogger(__name__)


def policy_rules(settings: Settings) -> PolicyRules:
    return PolicyRules(
        mode=settings["gate.mode"],
        antipassback=settings["policy.antipassback"],
        capacity=settings["policy.capacity"],
        allowed_kinds=settings.allowed_kinds,
    )


def scan_settings(settings: Settings) -> ScanSettings:
    return ScanSettings(
        gate_id=settings["gate.id"],
        timezone=settings.timezone,
        hysteresis_s=settings["scan.hysteresis_s"],
        presence_expiry_h=settings["policy.presence_expiry_h"],
        store_full_id=settings["privacy.store_full_id"],
        read_timeout_s=max(0.2, settings["camera.stall_timeout_s"] / 2),
        relay_pulse_ms=settings["pins.relay_pulse_ms"],
        retention_days=settings["privacy.retention_days"],
        site_id=settings["gate.site_id"],
        code_skew_s=settings["codes.skew_s"],
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


def _row(cert: TrustedCertificate, *, by: str, at: Any) -> TrustedRow:
    return TrustedRow(
        id=0,
        kid=cert.kid,
        country=cert.country,
        subject=cert.subject,
        not_before=cert.not_before,
        not_after=cert.not_after,
        der=cert.der,
        added_at=at,
        added_by=by,
    )


@dataclass(frozen=True)
class TrustImport:
    """What importing a trust list file did."""

    parsed: ParsedTrustFile
    added: int


def import_trust_file(
    store: Store, data: bytes, *, by: str, at: Any, audit: AuditNote | None = None
) -> TrustImport:
    """Parse a trust list file (PEM bundle or JSON, see kiosk.trust) and add
    its certificates; a running kiosk picks them up within seconds. Raises
    TrustError for a file that is not a trust list, StoreError.

    ``audit``, completed with the numbers ``found``, ``skipped`` and
    ``added``, is written with the certificates, in one transaction (none
    if the file held no certificate)."""
    parsed = parse_trust_file(data)
    rows = [_row(cert, by=by, at=at) for cert in parsed.certificates]
    if audit is not None:
        found = {"found": len(rows), "skipped": len(parsed.problems)}
        audit = replace(audit, detail={**audit.detail, **found})
    added = store.add_trusted_certificates(rows, by=by, at=at, audit=audit) if rows else 0
    return TrustImport(parsed=parsed, added=added)


def _never_revoked(code_id: str) -> bool:
    return False


def registry_for(settings: Settings, store: Store | None) -> Registry:
    """The code formats this site understands, signed ones first.

    ``store`` answers whether a manager revoked a declaration or pass (a
    read-only store will do); without one nothing counts as revoked. With no
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
        is_revoked: Callable[[str], bool],
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
        self._is_revoked = is_revoked
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
            is_revoked=store.is_revoked if store is not None else _never_revoked,
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
        site_format = SiteCodeFormat(
            self.keyring, self._site_id, is_revoked=self._is_revoked, skew_s=self._skew_s
        )
        hcert_format = HcertFormat(self.trust, self._hcert_rules, skew_s=self._skew_s)
        return Registry([site_format, hcert_format, *default_formats()])


def open_store(settings: Settings, *, clock: Clock) -> Store:
    """The kiosk's store: a write waits at most 1 s for the web's lock, then
    the gate fails secure (see :data:`~kiosk.store.KIOSK_BUSY_TIMEOUT_MS`).

    A database that cannot be opened does not stop the kiosk (systemd would
    restart it in a loop, with the override button dead): the store keeps
    trying (see :meth:`~kiosk.store.Store.open_lazily`), the gate refuses every
    code with ``store-fault`` meanwhile, and works as soon as it opens.
    """
    store = Store.open_lazily(
        settings.db_path, monotonic=clock.monotonic, busy_timeout_ms=KIOSK_BUSY_TIMEOUT_MS
    )
    if store.open_error is not None:
        log.error(
            "cannot open the database %s at start-up: %s; the gate starts anyway and refuses "
            "every code (store fault) until it opens, trying again every %.0f s; the override "
            "button still opens the door, and its overrides are recorded once the database works",
            settings.db_path,
            store.open_error,
            OPEN_RETRY_S,
        )
    return store


LIVE_CAMERAS = ("picamera2", "v4l2")


def source_for(settings: Settings, *, clock: Clock, **extra: Any) -> FrameSource:
    """The configured camera. A synthetic camera without a ``schedule`` shows
    the static sample visitors in turn, so `gatekiosk run` works with it too."""
    kind = settings["camera.source"]
    if kind in LIVE_CAMERAS:
        extra.setdefault("stall_timeout_s", settings["camera.stall_timeout_s"])
    if kind == "synthetic":
        extra.setdefault("schedule", sample_schedule())
        extra.setdefault("loop", True)
    return open_source(
        kind,
        device=settings["camera.device"],
        size=(settings["camera.width"], settings["camera.height"]),
        fps=settings["camera.fps"],
        clock=clock,
        **extra,
    )


def sample_schedule(show_s: float = 3.0, gap_s: float = 3.0) -> list[Scene]:
    """The fictional visitors of kiosk.samples, each held up in turn."""
    scenes = []
    for visitor in (VISITOR_CCCD, VISITOR_PC_COVID, VISITOR_UNRECOGNISED, VISITOR_CCCD):
        scenes += [Scene((visitor.payload,), show_s), Scene((), gap_s)]
    return scenes


@dataclass(frozen=True)
class Gate:
    """A built gate: the scanner and the parts it drives, for the CLI."""

    scanner: Scanner
    store: Store
    signals: GpiozeroSignals
    pin_factory: Any

    @property
    def simulated_pins(self) -> bool:
        return isinstance(self.pin_factory, MockFactory)


@contextmanager
def build_gate(
    settings: Settings,
    *,
    clock: Clock,
    source: FrameSource | None = None,
    pin_factory: Any = None,
    decoder: Decoder | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    live: bool = True,
    heartbeat: Callable[[], None] | None = None,
) -> Iterator[Gate]:
    """Build every part from settings; close them all (relay first) on exit.

    ``source``, ``pin_factory`` and ``decoder`` replace the configured ones
    (replay, demo, tests). ``live`` makes the gate act for the site through
    the database and the keys folder: it applies the settings a manager
    saves on the web, carries out guards' admit requests, purges events and
    issued codes past retention, and picks up rotated or retired site keys.
    Pass ``live=False`` for anything that is not the site's gate (a replay
    into the site's database must not take a guard's admission).

    A live gate starts even when its database cannot be opened (see
    :func:`open_store`): it refuses every code until the database opens,
    with the file's settings and no HC1: trust list meanwhile; the scanner's
    polls pick up the database's settings and trust list once it does. A
    gate that is not live raises StoreError instead.
    """
    with ExitStack() as stack:
        if pin_factory is None:
            factory = make_pin_factory(settings["pins.backend"])
            stack.callback(factory.close)  # runs after signals.close: relay off first
        else:
            factory = pin_factory
        signals = GpiozeroSignals(settings.pin_config(), pin_factory=factory)
        stack.callback(signals.close)
        if live:
            store = open_store(settings, clock=clock)
        else:  # a replay into a database it cannot open has nothing to do
            store = Store.open(settings.db_path, busy_timeout_ms=KIOSK_BUSY_TIMEOUT_MS)
        stack.callback(store.close)
        key = load_or_create_key(settings.key_path)
        if source is None:
            source = source_for(settings, clock=clock)
        stack.callback(source.close)
        if decoder is None:
            decoder = make_decoder(settings["decoder.backend"])
        setup = gate_setup(settings)
        scan = setup.settings
        if not live:
            scan = replace(scan, admit_poll_s=None, retention_days=None)
        site_codes = SiteCodes.for_settings(settings, store)
        if not site_codes.has_keys:
            _warn_without_keys(settings, live=live)
        scanner = Scanner(
            source=source,
            decoder=decoder,
            registry=site_codes.registry,
            store=store,
            signals=signals,
            clock=clock,
            rules=setup.rules,
            settings=scan,
            hash_key=key,
            pin_backend=type(factory).__name__,
            on_outcome=on_outcome,
            setup_for_site=setup_for_site(settings) if live else None,
            retime_relay=signals.set_relay_pulse_ms if live else None,
            refresh_registry=site_codes.refresh if live else None,
            heartbeat=heartbeat,
        )
        yield Gate(scanner=scanner, store=store, signals=signals, pin_factory=factory)


def _warn_without_keys(settings: Settings, *, live: bool) -> None:
    """One line at start-up: a gate without site keys refuses every
    declaration and staff pass, but scans everything else."""
    if not live:
        log.info("no site keys in %s: declarations and staff passes are refused", settings.keys_dir)
        return
    log.warning(
        "no site keys in %s: declarations and staff passes are refused; run "
        "`gatekiosk keys init` on the machine that runs the web (and copy its keys.json "
        "and public/ here if that is another machine)",
        settings.keys_dir,
    )
