"""The scan loop: frame -> codes -> presentation -> credential -> decision ->
event row -> lights and relay. Steppable one frame at a time for tests.

Record before signal: the relay pulses only after the event row is
committed. If the store fails, the gate fails secure: it refuses, shows the
fault pattern, and the guard's override still opens the door.

Around the scan, each in its own module: the faults and the health row
(:mod:`kiosk.faults`), the override desk (:mod:`kiosk.overrides`: the
button, overrides waiting for the database, guards' admissions) and the
site's periodic business (:mod:`kiosk.site_business`: live settings, the
site's keys, retention).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from gate_controller.base import GateSignals
from kiosk.camera import Frame, FrameSource
from kiosk.clock import Clock
from kiosk.codes import Registry
from kiosk.codes.base import KIND_HCERT, Credential, Identified
from kiosk.decoder import Code, Decoder
from kiosk.errors import StoreError
from kiosk.faults import Faults
from kiosk.gate_view import gate_view
from kiosk.messages import message_for
from kiosk.outcome import OnOutcome, Outcome
from kiosk.overrides import OverrideDesk
from kiosk.policy import Decision, GateView, decide
from kiosk.presentation import PresentationFilter
from kiosk.privacy import legacy_subject_hash, subject_hash, subject_of
from kiosk.scan_settings import GateSetup, ScanSettings, SetupForSite
from kiosk.site_business import SiteBusiness, SiteLink, purge_past_retention
from kiosk.store import Event, NewEvent, Store

__all__ = [
    "GateParts",
    "GateSetup",
    "Outcome",
    "ScanHooks",
    "ScanSettings",
    "Scanner",
    "SetupForSite",
    "SiteLink",
    "purge_past_retention",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateParts:
    """What the gate sees with and signals through."""

    source: FrameSource
    decoder: Decoder
    signals: GateSignals
    pin_backend: str = ""
    """The pin factory's name, for the health row."""


@dataclass(frozen=True)
class ScanHooks:
    """Who is told what the loop does.

    ``on_outcome`` hears of every outcome. ``heartbeat`` is called whenever
    the loop proves alive: after a frame was processed, or while the camera
    reports that it is failing and being reopened. A camera that silently
    stops delivering without saying so calls nothing, so a service watchdog
    restarts the process; nor does a camera the loop gave up on (see
    :attr:`Scanner.gave_up`).
    """

    on_outcome: OnOutcome | None = None
    heartbeat: Callable[[], None] | None = None


class Scanner:
    """Owns one pass of the pipeline per :meth:`step`; :meth:`run` loops it."""

    def __init__(
        self,
        *,
        parts: GateParts,
        registry: Registry,
        store: Store,
        clock: Clock,
        setup: GateSetup,
        hash_key: bytes,
        province_key: bytes | None = None,
        site: SiteLink | None = None,
        hooks: ScanHooks | None = None,
    ) -> None:
        """``site`` keeps a live gate in step with its site (None: settings
        and codes fixed at start, as for a replay). ``province_key``, only
        where the law requires it (``privacy.province_key_file``), hashes
        each subject a second time for the province (None: off)."""
        hooks = hooks or ScanHooks()
        self.source = parts.source
        self.decoder = parts.decoder
        self.signals = parts.signals
        self.registry = registry
        self.store = store
        self.clock = clock
        self.rules = setup.rules
        self.settings = setup.settings
        self._hash_key = hash_key
        self._province_key = province_key
        self._on_outcome = hooks.on_outcome
        self._heartbeat = hooks.heartbeat or (lambda: None)
        self._presentations = PresentationFilter(hysteresis_s=self.settings.hysteresis_s)
        self._lock = threading.Lock()
        self._faults = Faults(
            source=parts.source,
            decoder_name=parts.decoder.name,
            pin_backend=parts.pin_backend,
            store=store,
            signals=parts.signals,
            clock=clock,
            settings=self._current_settings,
        )
        self._desk = OverrideDesk(
            store=store,
            signals=parts.signals,
            clock=clock,
            faults=self._faults,
            lock=self._lock,
            settings=self._current_settings,
            on_outcome=hooks.on_outcome,
        )
        self._site = SiteBusiness(
            link=site or SiteLink(),
            store=store,
            clock=clock,
            faults=self._faults,
            settings=self.settings,
        )
        parts.signals.set_override_handler(self._override_pressed)

    def _current_settings(self) -> ScanSettings:
        return self.settings

    @property
    def fault(self) -> str | None:
        """The fault shown now: ``store``, ``camera``, ``decoder`` or None."""
        return self._faults.fault

    @property
    def fps(self) -> float:
        return self._faults.fps

    @property
    def gave_up(self) -> str | None:
        """Why the loop stopped on its own (a camera at fault for
        ``camera_fault_exit_s``, or one only a new process can free), else None.
        The caller exits non-zero so that the service manager restarts it."""
        return self._faults.gave_up

    @property
    def overrides_waiting(self) -> int:
        """Overrides that opened the door and wait for the database."""
        return self._desk.waiting

    # -- the loop -------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set, a file source runs out, or the loop
        gives up on the camera (:attr:`gave_up`)."""
        log.info("scanning at gate %s", self.settings.gate_id)
        while not stop.is_set() and not self.source.exhausted and self.gave_up is None:
            self.step()
        self._desk.last_chance()
        self._faults.write_health()

    def step(self) -> list[Outcome]:
        """Do the site's business that is due, then read one frame and act on
        every new presentation in it. Returns guards' admissions first."""
        outcomes = self._site_business()
        frame = self.source.read(self.settings.read_timeout_s)
        if frame is None:
            # No frame: a late one (not a fault), or the camera says it failed
            # (stalled, errored, gone) and is being reopened: show the fault.
            reported = not self.source.exhausted and not self.source.state.ok
            self._faults.set_camera(reported)
            if reported and self.gave_up is None:
                self._heartbeat()  # alive: reporting the fault, reopening the camera
            self._faults.tick()
            return outcomes
        self._faults.set_camera(False)
        self._faults.frame_arrived(frame.captured_mono)
        self._heartbeat()
        try:
            codes = self.decoder.decode(frame.grey)
        except Exception:
            # A boundary: a decoder that throws must not stop the gate.
            self._faults.decoder_failed(frame.index)
            self._faults.tick()
            return outcomes
        self._faults.decoder_works()
        outcomes += [
            self._act(code, frame)
            for code in self._presentations.new_presentations(codes, frame.captured_mono)
        ]
        self._faults.tick()
        return outcomes

    # -- one presentation -------------------------------------------------

    def _act(self, code: Code, frame: Frame) -> Outcome:
        at = self.clock.now()
        identified = self.registry.identify(code.raw, at=at)
        credential = identified if isinstance(identified, Credential) else None
        subject = subject_of(credential) if credential else None
        hashed = subject_hash(self._hash_key, subject) if subject else None
        # The province's hash of the same subject, beside the site's (off by default).
        province_hashed = (
            subject_hash(self._province_key, subject) if subject and self._province_key else None
        )
        with self._lock:
            try:
                # Overrides that waited for the database go first, so the
                # log and presence follow the order things happened in.
                self._desk.record_waiting()
                view = self._view(credential, hashed, at)
                decision = decide(identified, rules=self.rules, view=view)
                event = self.store.record(
                    self._new_event(identified, decision, hashed, at, province_hashed)
                )
            except StoreError as exc:
                log.error("database fault, this code is refused: %s", exc)
                decision = Decision("deny", "in", "store-fault", message_for("store-fault"))
                self._desk.refused(
                    self._new_event(identified, decision, hashed, at, province_hashed)
                )
                self.signals.deny()
                self._faults.set_store(True, str(exc))
                return self._outcome(frame, identified, decision, None)
            self._faults.set_store(False)
            if decision.allowed:
                self.signals.allow(warning=decision.warning is not None)
                self._desk.dealt_with()
            else:
                self.signals.deny()
                self._desk.refused(event.as_new())
        return self._outcome(frame, identified, decision, event)

    def _view(self, credential: Credential | None, hashed: str | None, at: datetime) -> GateView:
        return gate_view(
            self.store,
            credential,
            hashed,
            at=at,
            expiry_h=self.settings.presence_expiry_h,
            stale_after_s=self.settings.site_stale_after_s,
            legacy_hashed=legacy_subject_hash(self._hash_key, credential) if credential else None,
        )

    def _new_event(
        self,
        identified: Identified,
        decision: Decision,
        hashed: str | None,
        at: datetime,
        province_hashed: str | None,
    ) -> NewEvent:
        credential = identified if isinstance(identified, Credential) else None
        # The holder's date of birth and Latin name are kept for a verified
        # HC1: certificate only, so a guard can compare them with an ID card;
        # other kinds (a CCCD carries a date of birth too) keep the minimum.
        hcert = credential if credential is not None and credential.kind == KIND_HCERT else None
        return NewEvent(
            gate_id=self.settings.gate_id,
            at=at,
            utc_offset_min=self.settings.utc_offset_min(at),
            clock_synced=self.clock.synchronised(),
            direction=decision.direction,
            decision=decision.verdict,
            reason=decision.reason,
            kind=identified.kind,
            subject_hash=hashed,
            # A genuine code refused for what it says still names its holder.
            display_name=credential.display_name if credential else identified.display_name,
            masked_id=credential.masked_id if credential else None,
            id_number=credential.id_number if credential and self.settings.store_full_id else None,
            warning=decision.warning,
            birth_date=hcert.birth_date.isoformat() if hcert and hcert.birth_date else None,
            name_latin=dict(hcert.attributes).get("transliterated_name") if hcert else None,
            province_subject_hash=province_hashed,
        )

    def _outcome(
        self, frame: Frame, identified: Identified, decision: Decision, event: Event | None
    ) -> Outcome:
        latency_ms = (self.clock.monotonic() - frame.captured_mono) * 1000.0
        outcome = Outcome(frame.index, identified, decision, event, latency_ms)
        log.info(
            "%s %s kind=%s reason=%s latency=%.0fms",
            decision.verdict,
            decision.direction,
            identified.kind,
            decision.reason,
            latency_ms,
        )
        if self._on_outcome is not None:
            self._on_outcome(outcome)
        return outcome

    # -- the guard's override --------------------------------------------

    def _override_pressed(self) -> None:
        self.override()

    def override(self) -> Outcome:
        """The override button (see :meth:`OverrideDesk.override
        <kiosk.overrides.OverrideDesk.override>`)."""
        return self._desk.override()

    # -- between frames -----------------------------------------------------

    def _site_business(self) -> list[Outcome]:
        """Whatever is due of: the store probe (while the store is faulted or
        overrides wait to be recorded), live settings, the site's keys,
        guards' admissions, retention."""
        self._desk.recover_if_due()
        setup = self._site.new_setup(GateSetup(self.rules, self.settings))
        if setup is not None:
            self._use(setup)
        registry = self._site.new_registry(self.settings)
        if registry is not None:
            self.registry = registry
        admitted = self._desk.admit_if_due()
        self._site.purge_if_due(self.settings.retention_days)
        return admitted

    def _use(self, setup: GateSetup) -> None:
        """Decide with the manager's new settings from the next code on."""
        with self._lock:  # the override handler reads these on another thread
            self.rules = setup.rules
            self.settings = setup.settings
        # Only the scan thread uses the filter; changing the threshold keeps
        # the codes in view, so a code held up now is not decided twice.
        self._presentations.hysteresis_s = setup.settings.hysteresis_s
        # A new site id or skew applies from the next code, not the next key
        # poll. Only the scan thread identifies codes, so no lock is needed.
        registry = self._site.new_registry(self.settings, now=True)
        if registry is not None:
            self.registry = registry
