"""The scan loop: frame -> codes -> presentation -> credential -> decision ->
event row -> lights and relay. Steppable one frame at a time for tests.

Record before signal: the relay pulses only after the event row is
committed. If the store fails, the gate fails secure: it refuses, shows the
fault pattern, and the guard's override still opens the door; such an
override is kept in memory and recorded once the database works again, which
the loop tries every ``STORE_PROBE_S`` while the fault lasts.

The kiosk and the admin web share nothing but the database, so between
frames the loop also does the site's business through it, each on its own
cadence of the clock's monotonic time (never per frame):

* every ``settings_poll_s`` it compares the settings version a manager's
  save bumps, and on a change applies the new settings without a restart;
* every ``admit_poll_s`` it carries out the guards' "admit once" requests
  from the web (recorded, then the relay pulses);
* every ``purge_every_s`` it purges events older than ``retention_days``,
  and the site's issued declarations and passes that expired longer ago
  than that (the site keeps them only as long as its retention allows);
* every ``keys_poll_s`` it asks the composition root's ``refresh_registry``
  whether the site's signing keys changed on disk (a ``gatekiosk keys
  rotate`` or ``retire``); a changed key ring, or a changed ``site_id`` or
  ``code_skew_s``, gives a new :class:`~kiosk.codes.Registry`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gate_controller.base import GateSignals
from gate_controller.errors import GateControllerError
from kiosk.camera import Frame, FrameSource
from kiosk.clock import Clock
from kiosk.codes import Registry
from kiosk.codes.base import KIND_HCERT, Credential, Identified
from kiosk.codes.sitecodes import DEFAULT_SKEW_S
from kiosk.decoder import Code, Decoder
from kiosk.errors import ConfigError, GateError, StoreError
from kiosk.messages import message_for
from kiosk.policy import Decision, GateView, PolicyRules, decide
from kiosk.presentation import PresentationFilter
from kiosk.privacy import subject_hash
from kiosk.store import AdmitRequest, Event, KioskHealth, NewEvent, Store

log = logging.getLogger(__name__)

KIND_OVERRIDE = "override"
KIND_MANUAL = "manual"
"""The kind of an entry a guard admitted from the web: no code was read."""

ADMIT_MAX_AGE_S = 30.0
"""A guard's admit request older than this is not carried out: the visitor has gone."""

HEALTH_MIN_GAP_S = 0.25
"""The health row is written as soon as the fault changes, but not more often
than this (seconds): a fault flapping on every frame must not turn into 15
synchronous writes a second. The dashboard polls every 0.5 s."""

DECODER_LOG_EVERY_S = 60.0
"""A decoder that keeps throwing has its traceback logged this often (seconds)."""

STORE_PROBE_S = 1.0
"""While the store is faulted, how long after the last try the loop tries a
real write (or the waiting overrides) again, to find out that the database
works again. Each try may wait out the store's busy timeout (locked)."""

STORE_FAULT_REMINDER_S = 60.0
"""While the store stays faulted, how often the log says so again."""

OVERRIDES_WAITING_MAX = 500
"""Overrides that opened the door while the store failed, kept in memory to be
recorded when it works again. Far more than a shift of button presses; past
it, a press still opens the door and the log says it will not be recorded."""

LATE_NOTE = (
    "Ghi muộn: cơ sở dữ liệu lỗi khi bảo vệ mở cửa; ghi lúc {at} UTC"
    " / Recorded late: the database failed when the guard opened the door; recorded at {at} UTC"
)
"""The note on an override recorded after the database came back; its time
(``at``) is still the moment the door opened."""


@dataclass(frozen=True)
class ScanSettings:
    gate_id: str
    timezone: ZoneInfo
    hysteresis_s: float = 2.0
    presence_expiry_h: float = 12.0
    store_full_id: bool = False
    read_timeout_s: float = 1.0
    health_every_s: float = 5.0
    override_window_s: float = 120.0
    """A refused visitor can be admitted by the override button this long after."""
    relay_pulse_ms: int | None = None
    """The relay pulse the signals should hold; None leaves them as they were built."""
    retention_days: int | None = None
    """Events older than this many days are purged; None keeps them (replays)."""
    settings_poll_s: float = 2.0
    """How often the database's settings version is compared (live settings)."""
    admit_poll_s: float | None = 0.5
    """How often guards' admit requests are looked for; None: not carried out here."""
    purge_every_s: float = 3600.0
    """How often events and issued codes past ``retention_days`` are purged."""
    site_id: str = "site-1"
    """The site whose signed codes (``GK1:``) this gate accepts (``gate.site_id``)."""
    code_skew_s: float = DEFAULT_SKEW_S
    """Clock difference tolerated at both ends of a signed code's validity."""
    keys_poll_s: float = 5.0
    """How often the site's key manifest is looked at for rotated or retired keys."""


@dataclass(frozen=True)
class GateSetup:
    """What a running gate decides with that a manager may change without a restart."""

    rules: PolicyRules
    settings: ScanSettings


RefreshRegistry = Callable[[ScanSettings], Registry | None]
"""Given the scanner's current settings, a new :class:`~kiosk.codes.Registry`
when the site's keys on disk or the settings its signed-code format is built
from (``site_id``, ``code_skew_s``) changed since the last call, else None.
The composition root provides it; it must not raise for keys it cannot read
(it keeps the ones it has and says so in the log)."""


@dataclass(frozen=True)
class Purged:
    """What one retention purge deleted."""

    events: int
    site_codes: int


def purge_past_retention(store: Store, *, now: datetime, retention_days: int) -> Purged:
    """Delete events older than ``retention_days`` and the site's issued codes
    (declarations, staff passes) that expired before then. Raises StoreError."""
    cutoff = now - timedelta(days=retention_days)
    return Purged(
        events=store.purge_events_before(cutoff),
        site_codes=store.purge_site_codes_before(cutoff),
    )


SetupForSite = Callable[[Mapping[str, Any]], GateSetup]
"""Turns the settings a manager saved on the web (by name, as
:meth:`~kiosk.store.Store.site_settings` returns them) into a
:class:`GateSetup`, raising :class:`~kiosk.errors.ConfigError` for values it
refuses. The composition root provides it, so the loop knows nothing of
settings files and their validation."""


@dataclass(frozen=True)
class Outcome:
    """One decided presentation, as the CLI and the demo report it."""

    frame_index: int | None
    identified: Identified | None
    decision: Decision
    event: Event | None
    """None when the store failed and nothing could be recorded."""
    latency_ms: float
    """From the frame's capture to the signal (relay or red light)."""


@dataclass
class _Refusal:
    event: NewEvent
    at_mono: float


@dataclass(frozen=True)
class _WaitingOverride:
    """An override that opened the door but could not be recorded yet."""

    event: NewEvent
    """As it would have been recorded, with the time the door opened."""
    pressed_mono: float


class Scanner:
    """Owns one pass of the pipeline per :meth:`step`; :meth:`run` loops it."""

    def __init__(
        self,
        *,
        source: FrameSource,
        decoder: Decoder,
        registry: Registry,
        store: Store,
        signals: GateSignals,
        clock: Clock,
        rules: PolicyRules,
        settings: ScanSettings,
        hash_key: bytes,
        pin_backend: str = "",
        on_outcome: Callable[[Outcome], None] | None = None,
        setup_for_site: SetupForSite | None = None,
        retime_relay: Callable[[int], None] | None = None,
        refresh_registry: RefreshRegistry | None = None,
        heartbeat: Callable[[], None] | None = None,
    ) -> None:
        """``setup_for_site`` turns on live settings (None: fixed at start);
        ``retime_relay`` changes the relay pulse in milliseconds (e.g.
        :meth:`GpiozeroSignals.set_relay_pulse_ms
        <gate_controller.gpio.GpiozeroSignals.set_relay_pulse_ms>`), so a
        changed ``relay_pulse_ms`` reaches the door; ``refresh_registry``
        (see :data:`RefreshRegistry`) keeps the signed-code format in step
        with the site's keys (None: the registry is fixed at start).
        ``heartbeat`` is called whenever the loop proves alive: after a frame
        was processed, or while the camera reports that it is failing and
        being reopened. A camera that silently stops delivering without
        saying so calls nothing, so a service watchdog restarts the process."""
        self.source = source
        self.decoder = decoder
        self.registry = registry
        self.store = store
        self.signals = signals
        self.clock = clock
        self.rules = rules
        self.settings = settings
        self._hash_key = hash_key
        self._pin_backend = pin_backend
        self._on_outcome = on_outcome
        self._presentations = PresentationFilter(hysteresis_s=settings.hysteresis_s)
        self._lock = threading.Lock()
        self._last_refusal: _Refusal | None = None
        self._camera_fault = False
        self._store_fault = False
        self._decoder_fault = False
        self._frames = 0
        self._last_frame_mono: float | None = None
        self._fps_window: list[float] = []
        self._last_health_mono: float | None = None
        self._health_fault: str | None = None  # the fault in the last health row written
        self._health_change_mono: float | None = None  # last write for a change of fault
        self._decoder_failed_frames = 0  # frames the decoder threw on since it last worked
        self._decoder_logged_mono: float | None = None  # last traceback of a decoder failure
        self._setup_for_site = setup_for_site
        self._retime_relay = retime_relay
        self._refresh_registry = refresh_registry
        self._heartbeat = heartbeat or (lambda: None)
        self._last_keys_poll_mono: float | None = None
        self._settings_version: int | None = None
        self._last_settings_poll_mono: float | None = None
        self._last_admit_poll_mono: float | None = None
        self._last_purge_mono: float | None = None
        self._failed_admits: set[int] = set()
        self._waiting_overrides: deque[_WaitingOverride] = deque()
        self._store_fault_cause = ""
        self._store_fault_since_mono: float | None = None
        self._last_store_probe_mono: float | None = None
        self._last_store_reminder_mono: float | None = None
        signals.set_override_handler(self._override_pressed)

    # -- the loop -------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set or a file source runs out."""
        log.info("scanning at gate %s", self.settings.gate_id)
        while not stop.is_set() and not self.source.exhausted:
            self.step()
        self._last_chance_for_overrides()
        self._write_health()

    def _last_chance_for_overrides(self) -> None:
        """On the way out, try once more to record the overrides still waiting
        for the database; say how many are lost if it still fails."""
        with self._lock:
            if not self._waiting_overrides:
                return
            try:
                self._record_waiting_overrides()
            except StoreError as exc:
                log.error(
                    "stopping with %d override(s) that opened the door never recorded: %s",
                    len(self._waiting_overrides),
                    exc,
                )

    def step(self) -> list[Outcome]:
        """Do the site's business that is due, then read one frame and act on
        every new presentation in it. Returns guards' admissions first."""
        outcomes = self._site_business()
        frame = self.source.read(self.settings.read_timeout_s)
        if frame is None:
            # No frame: a late one (not a fault), or the camera says it failed
            # (stalled, errored, gone) and is being reopened: show the fault.
            reported = not self.source.exhausted and not self.source.state.ok
            self._set_camera_fault(reported)
            if reported:
                self._heartbeat()  # alive: reporting the fault, reopening the camera
            self._maybe_write_health()
            return outcomes
        self._set_camera_fault(False)
        self._note_frame(frame)
        self._heartbeat()
        try:
            codes = self.decoder.decode(frame.grey)
        except Exception:
            # A boundary: a decoder that throws must not stop the gate. The
            # fault shows from the first frame it throws on until it decodes
            # one again; the traceback is logged at most every
            # DECODER_LOG_EVERY_S, so one throwing on every frame (15 a
            # second) does not fill the journal.
            self._decoder_failed_frames += 1
            now = self.clock.monotonic()
            if _due(self._decoder_logged_mono, DECODER_LOG_EVERY_S, now):
                self._decoder_logged_mono = now
                log.exception(
                    "decoder %s failed on frame %d (%d frames in a row); "
                    "fault shown until it decodes again",
                    self.decoder.name,
                    frame.index,
                    self._decoder_failed_frames,
                )
            else:
                log.debug("decoder %s failed on frame %d", self.decoder.name, frame.index)
            if not self._decoder_fault:
                self._decoder_fault = True
                self._refresh_fault()
            self._maybe_write_health()
            return outcomes
        if self._decoder_fault:
            log.info(
                "decoder %s decoding again after %d failed frames",
                self.decoder.name,
                self._decoder_failed_frames,
            )
            self._decoder_fault = False
            self._decoder_failed_frames = 0
            self._refresh_fault()
        outcomes += [
            self._act(code, frame)
            for code in self._presentations.new_presentations(codes, frame.captured_mono)
        ]
        self._maybe_write_health()
        return outcomes

    # -- one presentation -------------------------------------------------

    def _act(self, code: Code, frame: Frame) -> Outcome:
        at = self.clock.now()
        identified = self.registry.identify(code.raw, at=at)
        credential = identified if isinstance(identified, Credential) else None
        hashed = subject_hash(self._hash_key, credential.subject_id) if credential else None
        with self._lock:
            try:
                # Overrides that waited for the database go first, so the
                # log and presence follow the order things happened in.
                self._record_waiting_overrides()
                view = self._view(hashed, at)
                decision = decide(identified, rules=self.rules, view=view)
                event = self.store.record(self._new_event(identified, decision, hashed, at))
            except StoreError as exc:
                log.error("database fault, this code is refused: %s", exc)
                decision = Decision(
                    "deny", "in", "store-fault", message_for("store-fault"), warning=None
                )
                new_event = self._new_event(identified, decision, hashed, at)
                self._last_refusal = _Refusal(new_event, self.clock.monotonic())
                self.signals.deny()
                self._set_store_fault(True, str(exc))
                return self._outcome(frame, identified, decision, None)
            self._set_store_fault(False)
            if decision.allowed:
                self.signals.allow(warning=decision.warning is not None)
                self._last_refusal = None
            else:
                self.signals.deny()
                self._last_refusal = _Refusal(event.as_new(), self.clock.monotonic())
        return self._outcome(frame, identified, decision, event)

    def _view(self, hashed: str | None, at: datetime) -> GateView:
        expiry_h = self.settings.presence_expiry_h
        presence = self.store.presence_of(hashed, now=at, expiry_h=expiry_h) if hashed else None
        return GateView(
            present_since=presence.entered_at if presence else None,
            occupancy=self.store.occupancy(now=at, expiry_h=expiry_h),
            denylisted=self.store.is_denylisted(hashed) if hashed else False,
        )

    def _new_event(
        self, identified: Identified, decision: Decision, hashed: str | None, at: datetime
    ) -> NewEvent:
        credential = identified if isinstance(identified, Credential) else None
        # The holder's date of birth and Latin name are kept for a verified
        # HC1: certificate only, so a guard can compare them with an ID card;
        # other kinds (a CCCD carries a date of birth too) keep the minimum.
        hcert = credential if credential is not None and credential.kind == KIND_HCERT else None
        return NewEvent(
            gate_id=self.settings.gate_id,
            at=at,
            utc_offset_min=self._utc_offset_min(at),
            clock_synced=self.clock.synchronised(),
            direction=decision.direction,
            decision=decision.verdict,
            reason=decision.reason,
            kind=identified.kind,
            subject_hash=hashed,
            display_name=credential.display_name if credential else None,
            masked_id=credential.masked_id if credential else None,
            id_number=credential.id_number if credential and self.settings.store_full_id else None,
            warning=decision.warning,
            birth_date=hcert.birth_date.isoformat() if hcert and hcert.birth_date else None,
            name_latin=dict(hcert.attributes).get("transliterated_name") if hcert else None,
        )

    def _utc_offset_min(self, at: datetime) -> int:
        offset = at.astimezone(self.settings.timezone).utcoffset()
        return int(offset.total_seconds() // 60) if offset else 0

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
        """Admit the last refused visitor once (or, with nobody refused
        recently, open the door for whoever the guard is letting in).

        The door opens even when the store is down: the guard is the
        authority at the gate. An override the store cannot take is kept,
        with the time the door opened, and recorded as soon as the database
        works again (with a note saying it was recorded late); while a store
        fault is known, the door opens without trying the store first.
        """
        with self._lock:
            now_mono = self.clock.monotonic()
            at = self.clock.now()
            refusal = self._last_refusal
            self._last_refusal = None
            if refusal is not None and now_mono - refusal.at_mono > self.settings.override_window_s:
                refusal = None
            decision = Decision("allow", "in", "override", message_for("override"))
            if refusal is not None:
                new_event = replace(
                    refusal.event,
                    at=at,
                    decision="allow",
                    direction="in",
                    reason="override",
                    override=True,
                    clock_synced=self.clock.synchronised(),
                    warning=None,
                )
            else:
                new_event = self._new_override_event(at)
            event: Event | None = None
            failed: StoreError | None = None
            if self._store_fault or self._waiting_overrides:
                # A known fault: open the door now rather than after another
                # busy wait; the probe records it (behind any waiting before it).
                self._wait_for_store(new_event, self._store_fault_cause)
            else:
                try:
                    event = self.store.record(new_event)
                except StoreError as exc:
                    failed = exc
                    self._wait_for_store(new_event, str(exc))
            self.signals.allow()
            if failed is not None:
                # After the door: showing the fault also writes the health
                # row, which waits out the busy timeout once more.
                self._set_store_fault(True, str(failed))
        latency_ms = (self.clock.monotonic() - now_mono) * 1000.0
        outcome = Outcome(None, None, decision, event, latency_ms)
        log.info("override by the guard (%s)", "last refused visitor" if refusal else "no subject")
        if self._on_outcome is not None:
            self._on_outcome(outcome)
        return outcome

    def _new_override_event(
        self,
        at: datetime,
        *,
        reason: str = "override",
        kind: str = KIND_OVERRIDE,
        display_name: str | None = None,
        actor: str | None = None,
        note: str | None = None,
    ) -> NewEvent:
        """An entry admitted by hand, with no code read (the button, or the web)."""
        return NewEvent(
            gate_id=self.settings.gate_id,
            at=at,
            utc_offset_min=self._utc_offset_min(at),
            clock_synced=self.clock.synchronised(),
            direction="in",
            decision="allow",
            reason=reason,
            kind=kind,
            subject_hash=None,
            display_name=display_name,
            masked_id=None,
            override=True,
            actor=actor,
            note=note,
        )

    # -- the site's business, through the database -------------------------

    def _site_business(self) -> list[Outcome]:
        """Whatever is due of: the store probe (while the store is faulted or
        overrides wait to be recorded), live settings, the site's keys,
        guards' admissions, retention.

        Each is rate-limited on the monotonic clock, so most frames cost
        four comparisons, no query and no file access.
        """
        now = self.clock.monotonic()
        if (self._store_fault or self._waiting_overrides) and _due(
            self._last_store_probe_mono, STORE_PROBE_S, now
        ):
            self._probe_store()
            # From the end of the try: under a long lock each try waits out the
            # busy timeout, and the loop keeps STORE_PROBE_S for frames between.
            self._last_store_probe_mono = self.clock.monotonic()
        if self._setup_for_site is not None and _due(
            self._last_settings_poll_mono, self.settings.settings_poll_s, now
        ):
            self._last_settings_poll_mono = now
            self._poll_settings()
        if self._refresh_registry is not None and _due(
            self._last_keys_poll_mono, self.settings.keys_poll_s, now
        ):
            self._last_keys_poll_mono = now
            self._refresh_codes()
        admitted: list[Outcome] = []
        admit_poll_s = self.settings.admit_poll_s
        # Not while the store is faulted: reading the requests is a write
        # transaction that would wait out the busy timeout every poll, and a
        # request could not be recorded anyway; the probe ends the fault.
        if (
            admit_poll_s is not None
            and not self._store_fault
            and _due(self._last_admit_poll_mono, admit_poll_s, now)
        ):
            self._last_admit_poll_mono = now
            admitted = self._carry_out_admits()
        if self.settings.retention_days is not None and _due(
            self._last_purge_mono, self.settings.purge_every_s, now
        ):
            self._last_purge_mono = now
            self._purge(self.settings.retention_days)
        return admitted

    def _poll_settings(self) -> None:
        """Apply the manager's settings if their version changed since last time.

        A version whose values are refused is remembered as seen, warned
        about once (setting names only, never values) and not applied: the
        gate keeps deciding with the settings it has until the next save.
        """
        assert self._setup_for_site is not None
        try:
            version = self.store.settings_version()
            if version == self._settings_version:
                return
            site = self.store.site_settings()
        except StoreError as exc:
            # During a store fault the reminder already repeats the cause once a minute.
            (log.debug if self._store_fault else log.warning)(
                "could not read the site settings, keeping the current ones: %s", exc
            )
            return  # the version is not marked seen: the next poll tries again
        self._settings_version = version
        try:
            setup = self._setup_for_site(site)
        except ConfigError as exc:
            self._keep_settings(version, ", ".join(_setting_names(exc.problems)))
            return
        except Exception as exc:
            # A boundary: not the refusal the composition root promises, but a
            # value a manager stored must never stop the gate (nor, through a
            # restart loop, keep it stopped). The message may quote the value,
            # so only the error's type and the stored names are logged.
            names = ", ".join(sorted(str(name) for name in site))
            self._keep_settings(version, f"one of {names} ({type(exc).__name__})")
            return
        self._apply(setup, version)

    def _keep_settings(self, version: int, invalid: str) -> None:
        log.warning(
            "site settings version %d not applied, keeping the current ones; invalid: %s",
            version,
            invalid,
        )

    def _apply(self, setup: GateSetup, version: int) -> None:
        new = setup.settings
        pulse_ms = new.relay_pulse_ms
        if (
            self._retime_relay is not None
            and pulse_ms is not None
            and pulse_ms != self.settings.relay_pulse_ms
        ):
            # First, as the one step that can still refuse: then nothing
            # else has changed yet and the current settings stay whole.
            try:
                self._retime_relay(pulse_ms)
            except GateControllerError:
                self._keep_settings(version, "pins.relay_pulse_ms")
                return
        with self._lock:  # the override handler reads these on another thread
            changed = _changed_fields(self.rules, setup.rules) + _changed_fields(self.settings, new)
            self.rules = setup.rules
            self.settings = new
        # Only the scan thread uses the filter; changing the threshold keeps
        # the codes in view, so a code held up now is not decided twice.
        self._presentations.hysteresis_s = new.hysteresis_s
        # A new site id or skew applies from the next code, not the next key poll.
        self._refresh_codes()
        if changed:
            log.info("site settings version %d applied: %s", version, ", ".join(changed))
        else:
            log.debug("site settings version %d: nothing the scanner uses changed", version)

    def _carry_out_admits(self) -> list[Outcome]:
        """Admit once for each guard's pending request; expired ones the store marks."""
        try:
            requests = self.store.pending_admits(now=self.clock.now(), max_age_s=ADMIT_MAX_AGE_S)
        except StoreError as exc:
            log.error("could not read the guards' admit requests: %s", exc)
            self._set_store_fault(True)
            return []
        # A request that could not be recorded is not tried again: the guard
        # sees it still pending on the web and has the override button.
        self._failed_admits &= {r.id for r in requests}
        return [self._admit(r) for r in requests if r.id not in self._failed_admits]

    def _admit(self, request: AdmitRequest) -> Outcome:
        """Record the manual entry and mark the request done, then open the door.

        Unlike the override button, this needs the record: a request from the
        web is only as good as the database it came through. If the store
        fails, the door stays shut and the fault pattern shows.
        """
        with self._lock:
            started_mono = self.clock.monotonic()
            at = self.clock.now()
            event: Event | None
            try:
                event = self.store.record_admit(request, self._new_admit_event(request, at))
            except StoreError as exc:
                log.error("store failed, admit request %d not carried out: %s", request.id, exc)
                self._failed_admits.add(request.id)
                self._set_store_fault(True)
                decision = Decision("deny", "in", "store-fault", message_for("store-fault"))
                event = None
            else:
                self._set_store_fault(False)
                decision = Decision("allow", "in", "manual-admit", message_for("manual-admit"))
                self.signals.allow()
                self._last_refusal = None  # the guard dealt with whoever was refused
        latency_ms = (self.clock.monotonic() - started_mono) * 1000.0
        outcome = Outcome(None, None, decision, event, latency_ms)
        if event is not None:
            log.info("admitted by a guard from the web (request %d)", request.id)
        if self._on_outcome is not None:
            self._on_outcome(outcome)
        return outcome

    def _new_admit_event(self, request: AdmitRequest, at: datetime) -> NewEvent:
        return self._new_override_event(
            at,
            reason="manual-admit",
            kind=KIND_MANUAL,
            display_name=request.display_name or None,
            actor=request.actor,
            note=request.reason,
        )

    def _refresh_codes(self) -> None:
        """Swap in a new registry if the site's keys or code settings changed.
        Only the scan thread identifies codes, so no lock is needed."""
        if self._refresh_registry is None:
            return
        registry = self._refresh_registry(self.settings)
        if registry is not None:
            self.registry = registry

    def _purge(self, retention_days: int) -> None:
        try:
            purged = purge_past_retention(
                self.store, now=self.clock.now(), retention_days=retention_days
            )
        except StoreError as exc:
            log.warning("could not purge records older than %d days: %s", retention_days, exc)
            return
        log.info("purged %d events older than %d days", purged.events, retention_days)
        if purged.site_codes:
            log.info(
                "purged %d issued codes that expired more than %d days ago",
                purged.site_codes,
                retention_days,
            )

    # -- health and faults -------------------------------------------------

    def _note_frame(self, frame: Frame) -> None:
        self._frames += 1
        self._last_frame_mono = frame.captured_mono
        self._fps_window.append(frame.captured_mono)
        if len(self._fps_window) > 60:
            del self._fps_window[0]

    @property
    def fps(self) -> float:
        window = self._fps_window
        if len(window) < 2 or window[-1] <= window[0]:
            return 0.0
        return (len(window) - 1) / (window[-1] - window[0])

    @property
    def fault(self) -> str | None:
        if self._store_fault:
            return "store"
        if self._camera_fault:
            return "camera"
        if self._decoder_fault:
            return "decoder"
        return None

    def _set_camera_fault(self, fault: bool) -> None:
        if fault != self._camera_fault:
            self._camera_fault = fault
            state = self.source.state
            if fault:
                log.warning("camera %s not delivering: %s", state.name, state.detail)
            else:
                log.info("camera %s delivering again", state.name)
            self._refresh_fault()

    def _set_store_fault(self, fault: bool, cause: str = "") -> None:
        """Turn the store fault (and with it the fault pattern) on or off,
        saying so once per change; ``cause`` is the StoreError's message."""
        if fault and cause:
            self._store_fault_cause = cause
        if fault == self._store_fault:
            return
        self._store_fault = fault
        now = self.clock.monotonic()
        if fault:
            self._store_fault_since_mono = now
            self._last_store_probe_mono = now  # the next try in STORE_PROBE_S
            self._last_store_reminder_mono = now
            # The cause is in the caller's log line, just before this one.
            log.error(
                "store fault: the gate refuses every code until the database works again "
                "(tried every %.0f s); the override button still opens the door",
                STORE_PROBE_S,
            )
        else:
            since = self._store_fault_since_mono
            self._store_fault_cause = ""
            log.info(
                "the database works again after %.1f s: store fault cleared",
                now - since if since is not None else 0.0,
            )
        self._refresh_fault()

    # -- overrides waiting for the database ----------------------------------

    def _wait_for_store(self, event: NewEvent, cause: str) -> None:
        """Keep an override that opened the door to record it later (lock held)."""
        fault = f"store fault ({cause})" if cause else "store fault"
        if len(self._waiting_overrides) >= OVERRIDES_WAITING_MAX:
            log.error(
                "override during a %s: the door opens, but this override will never be "
                "recorded: %d overrides already wait for the database",
                fault,
                len(self._waiting_overrides),
            )
            return
        self._waiting_overrides.append(_WaitingOverride(event, self.clock.monotonic()))
        log.error(
            "override during a %s: the door opens; %d override(s) waiting to be recorded "
            "when the database works again",
            fault,
            len(self._waiting_overrides),
        )

    def _record_waiting_overrides(self) -> None:
        """Record the waiting overrides, oldest first, each with its own time
        and a note saying it was recorded late (the caller holds the lock).

        Raises StoreError when the store still fails; what was recorded
        before that is not waiting any more, the rest keeps waiting.
        """
        if not self._waiting_overrides:
            return
        now_mono = self.clock.monotonic()
        oldest_s = now_mono - self._waiting_overrides[0].pressed_mono
        recorded = 0
        try:
            while self._waiting_overrides:
                waiting = self._waiting_overrides[0]
                self.store.record(self._late(waiting.event))
                self._waiting_overrides.popleft()
                recorded += 1
        finally:
            if recorded:
                log.info(
                    "recorded %d override(s) that opened the door while the database failed "
                    "(the oldest %.1f s late); %d still waiting",
                    recorded,
                    oldest_s,
                    len(self._waiting_overrides),
                )

    def _late(self, event: NewEvent) -> NewEvent:
        recorded_at = self.clock.now().astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        note = LATE_NOTE.format(at=recorded_at)
        return replace(event, note=f"{event.note}\n{note}" if event.note else note)

    def _probe_store(self) -> None:
        """Find out whether the database works again: record the waiting
        overrides, or with none waiting make one real write; on success clear
        the store fault (and so the fault pattern)."""
        with self._lock:
            try:
                if self._waiting_overrides:
                    self._record_waiting_overrides()
                else:
                    self.store.check_writable()
            except StoreError as exc:
                self._store_fault_cause = str(exc)
                self._remind_store_fault(exc)
                return
            self._set_store_fault(False)

    def _remind_store_fault(self, exc: StoreError) -> None:
        now = self.clock.monotonic()
        if not _due(self._last_store_reminder_mono, STORE_FAULT_REMINDER_S, now):
            log.debug("database still failing: %s", exc)
            return
        self._last_store_reminder_mono = now
        since = self._store_fault_since_mono
        log.warning(
            "database still failing after %.0f s: %s; the gate refuses every code; "
            "%d override(s) waiting to be recorded",
            now - since if since is not None else 0.0,
            exc,
            len(self._waiting_overrides),
        )

    def _refresh_fault(self) -> None:
        """Show the fault pattern, or ready, as :attr:`fault` says, and tell the
        dashboard and the gate screen now rather than at the next routine
        health write (both when a fault starts and when it clears)."""
        self.signals.set_fault(self.fault is not None)
        self._maybe_write_health()

    def _maybe_write_health(self) -> None:
        """Write the health row every ``health_every_s``, and as soon as the
        fault differs from the one last written (such writes at most every
        :data:`HEALTH_MIN_GAP_S`; a change held back by that is written by a
        later step). Not at once while the store is at fault: that write
        would fail too, after waiting out the busy timeout with the loop held."""
        now = self.clock.monotonic()
        if _due(self._last_health_mono, self.settings.health_every_s, now):
            self._last_health_mono = now
            self._write_health()
        elif (
            self.fault != self._health_fault
            and not self._store_fault
            and _due(self._health_change_mono, HEALTH_MIN_GAP_S, now)
        ):
            self._last_health_mono = self._health_change_mono = now
            self._write_health()

    def _write_health(self) -> None:
        now = self.clock.now()
        last_frame_at = None
        if self._last_frame_mono is not None:
            age_s = self.clock.monotonic() - self._last_frame_mono
            last_frame_at = now - timedelta(seconds=max(0.0, age_s))
        state = self.source.state
        health = KioskHealth(
            gate_id=self.settings.gate_id,
            updated_at=now,
            last_frame_at=last_frame_at,
            fps=round(self.fps, 2),
            camera=state.name,
            camera_ok=state.ok,
            camera_detail=state.detail,
            decoder=self.decoder.name,
            pin_backend=self._pin_backend,
            clock_synced=self.clock.synchronised(),
            fault=self.fault,
        )
        # Marked written even if the write fails: a failing store is the
        # store fault, and is not retried every step.
        self._health_fault = health.fault
        try:
            self.store.write_health(health)
        except GateError as exc:
            # The message says it was the health row; during a store fault the
            # reminder already repeats the cause once a minute.
            (log.debug if self._store_fault else log.warning)("%s", exc)
            self._set_store_fault(True)


def _due(last_mono: float | None, every_s: float, now_mono: float) -> bool:
    return last_mono is None or now_mono - last_mono >= every_s


def _setting_names(problems: list[str]) -> list[str]:
    """The setting names a ConfigError's problems start with (``"gate.mode: ..."``)."""
    return sorted({problem.partition(":")[0].strip() for problem in problems})


def _changed_fields(old: PolicyRules | ScanSettings, new: PolicyRules | ScanSettings) -> list[str]:
    """Names of the fields whose values differ, for the log (never the values)."""
    return [f.name for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)]
