"""The override desk: what a guard does at the gate by hand.

* The override button admits the last refused visitor once (or whoever the
  guard lets in). The door opens even when the store is down: the guard is
  the authority at the gate. An override the store cannot take waits in
  memory, with the time the door opened, and is recorded as soon as the
  database works again, with a note saying it was recorded late.
* A guard's "admit once" request from the web is carried out (recorded, then
  the relay pulses); unlike the button, it needs the record.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from gate_controller.base import GateSignals
from kiosk.admits import ADMIT_MAX_AGE_S, KIND_MANUAL
from kiosk.clock import Clock
from kiosk.errors import StoreError
from kiosk.every import Every
from kiosk.faults import Faults
from kiosk.messages import message_for
from kiosk.outcome import OnOutcome, Outcome
from kiosk.policy import Decision
from kiosk.scan_settings import ScanSettings
from kiosk.store import AdmitRequest, Event, NewEvent, Store

log = logging.getLogger(__name__)

KIND_OVERRIDE = "override"
"""The kind of an entry the override button admitted with nobody refused: no code was read."""

LATE_NOTE = (
    "Ghi muộn: cơ sở dữ liệu lỗi khi bảo vệ mở cửa; ghi lúc {at} UTC"
    " / Recorded late: the database failed when the guard opened the door; recorded at {at} UTC"
)
"""The note on an override recorded after the database came back; its time
(``at``) is still the moment the door opened."""


@dataclass(frozen=True)
class _Refusal:
    event: NewEvent
    """The refusal as recorded (or as it would have been)."""
    at_mono: float


@dataclass(frozen=True)
class _WaitingOverride:
    """An override that opened the door but could not be recorded yet."""

    event: NewEvent
    """As it would have been recorded, with the time the door opened."""
    pressed_mono: float


class OverrideDesk:
    """The button, the overrides waiting for the database, guards' admissions.

    Shares the scanner's ``lock``: the button's handler runs on another
    thread, and the scan thread records under the same lock, so presence and
    the log follow the order things happened in.
    """

    def __init__(
        self,
        *,
        store: Store,
        signals: GateSignals,
        clock: Clock,
        faults: Faults,
        lock: threading.Lock,
        settings: Callable[[], ScanSettings],
        on_outcome: OnOutcome | None,
    ) -> None:
        """``settings`` gives the scanner's current settings (read with the
        lock held); the admit poll's cadence is taken from them now."""
        self._store = store
        self._signals = signals
        self._clock = clock
        self._faults = faults
        self._lock = lock
        self._settings = settings
        self._on_outcome = on_outcome
        self._last_refusal: _Refusal | None = None
        self._waiting: deque[_WaitingOverride] = deque()
        self._failed_admits: set[int] = set()
        admit_poll_s = settings().admit_poll_s
        self._admit_poll = None if admit_poll_s is None else Every(admit_poll_s, clock.monotonic)

    @property
    def waiting(self) -> int:
        """Overrides that opened the door and wait for the database."""
        return len(self._waiting)

    # -- what the scan tells the desk (lock held) ------------------------------

    def refused(self, event: NewEvent) -> None:
        """Someone was refused: the button admits them for ``override_window_s``."""
        self._last_refusal = _Refusal(event, self._clock.monotonic())

    def dealt_with(self) -> None:
        """Nobody is waiting at the gate for the guard any more."""
        self._last_refusal = None

    # -- the button -------------------------------------------------------------

    def override(self) -> Outcome:
        """Admit the last refused visitor once (or, with nobody refused
        recently, open the door for whoever the guard is letting in).

        While a store fault is known, the door opens without trying the
        store first; an override the store cannot take waits (see the module).
        """
        with self._lock:
            now_mono = self._clock.monotonic()
            at = self._clock.now()
            refusal = self._last_refusal
            self._last_refusal = None
            window_s = self._settings().override_window_s
            if refusal is not None and now_mono - refusal.at_mono > window_s:
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
                    clock_synced=self._clock.synchronised(),
                    warning=None,
                )
            else:
                new_event = self._by_hand(at)
            event: Event | None = None
            failed: StoreError | None = None
            if self._faults.store_faulted or self._waiting:
                # A known fault: open the door now rather than after another
                # busy wait; the probe records it (behind any waiting before it).
                self._wait_for_store(new_event, self._faults.store_cause)
            else:
                try:
                    event = self._store.record(new_event)
                except StoreError as exc:
                    failed = exc
                    self._wait_for_store(new_event, str(exc))
            self._signals.allow()
            if failed is not None:
                # After the door: showing the fault also writes the health
                # row, which waits out the busy timeout once more.
                self._faults.set_store(True, str(failed))
        latency_ms = (self._clock.monotonic() - now_mono) * 1000.0
        outcome = Outcome(None, None, decision, event, latency_ms)
        log.info("override by the guard (%s)", "last refused visitor" if refusal else "no subject")
        self._tell(outcome)
        return outcome

    def _by_hand(
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
        settings = self._settings()
        return NewEvent(
            gate_id=settings.gate_id,
            at=at,
            utc_offset_min=settings.utc_offset_min(at),
            clock_synced=self._clock.synchronised(),
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

    # -- overrides waiting for the database --------------------------------------

    def _wait_for_store(self, event: NewEvent, cause: str) -> None:
        """Keep an override that opened the door to record it later (lock held)."""
        fault = f"store fault ({cause})" if cause else "store fault"
        if len(self._waiting) >= self._settings().overrides_waiting_max:
            log.error(
                "override during a %s: the door opens, but this override will never be "
                "recorded: %d overrides already wait for the database",
                fault,
                len(self._waiting),
            )
            return
        self._waiting.append(_WaitingOverride(event, self._clock.monotonic()))
        log.error(
            "override during a %s: the door opens; %d override(s) waiting to be recorded "
            "when the database works again",
            fault,
            len(self._waiting),
        )

    def record_waiting(self) -> None:
        """Record the waiting overrides, oldest first, each with its own time
        and a note saying it was recorded late (the caller holds the lock).

        Raises StoreError when the store still fails; what was recorded
        before that is not waiting any more, the rest keeps waiting.
        """
        if not self._waiting:
            return
        oldest_s = self._clock.monotonic() - self._waiting[0].pressed_mono
        recorded = 0
        try:
            while self._waiting:
                self._store.record(self._late(self._waiting[0].event))
                self._waiting.popleft()
                recorded += 1
        finally:
            if recorded:
                log.info(
                    "recorded %d override(s) that opened the door while the database failed "
                    "(the oldest %.1f s late); %d still waiting",
                    recorded,
                    oldest_s,
                    len(self._waiting),
                )

    def _late(self, event: NewEvent) -> NewEvent:
        recorded_at = self._clock.now().astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        note = LATE_NOTE.format(at=recorded_at)
        return replace(event, note=f"{event.note}\n{note}" if event.note else note)

    def recover_if_due(self) -> None:
        """While the store is at fault or overrides wait, every
        ``store_probe_s`` find out whether the database works again: record
        the waiting overrides, or with none waiting make one real write; on
        success clear the store fault (and so the fault pattern)."""
        probe = self._faults.store_probe
        if not (self._faults.store_faulted or self._waiting) or not probe.due():
            return
        with self._lock:
            try:
                if self._waiting:
                    self.record_waiting()
                else:
                    self._store.check_writable()
            except StoreError as exc:
                self._faults.store_still_failing(exc, overrides_waiting=len(self._waiting))
            else:
                self._faults.set_store(False)
        # From the end of the try: under a long lock each try waits out the
        # busy timeout, and the loop keeps store_probe_s for frames between.
        probe.mark()

    def last_chance(self) -> None:
        """On the way out, try once more to record the overrides still waiting
        for the database; say how many are lost if it still fails."""
        with self._lock:
            if not self._waiting:
                return
            try:
                self.record_waiting()
            except StoreError as exc:
                log.error(
                    "stopping with %d override(s) that opened the door never recorded: %s",
                    len(self._waiting),
                    exc,
                )

    # -- guards' admissions from the web -------------------------------------------

    def admit_if_due(self) -> list[Outcome]:
        """Every ``admit_poll_s``, admit once for each guard's pending request.

        Not while the store is faulted: reading the requests is a write
        transaction that would wait out the busy timeout every poll, and a
        request could not be recorded anyway; the probe ends the fault.
        """
        if self._admit_poll is None or self._faults.store_faulted or not self._admit_poll.tick():
            return []
        try:
            requests = self._store.pending_admits(
                now=self._clock.now(),
                max_age_s=ADMIT_MAX_AGE_S,
                gate_id=self._settings().gate_id,
            )
        except StoreError as exc:
            log.error("could not read the guards' admit requests: %s", exc)
            self._faults.set_store(True)
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
            started_mono = self._clock.monotonic()
            at = self._clock.now()
            event: Event | None
            try:
                event = self._store.record_admit(request, self._admit_event(request, at))
            except StoreError as exc:
                log.error("store failed, admit request %d not carried out: %s", request.id, exc)
                self._failed_admits.add(request.id)
                self._faults.set_store(True)
                decision = Decision("deny", "in", "store-fault", message_for("store-fault"))
                event = None
            else:
                self._faults.set_store(False)
                decision = Decision("allow", "in", "manual-admit", message_for("manual-admit"))
                self._signals.allow()
                self._last_refusal = None  # the guard dealt with whoever was refused
        latency_ms = (self._clock.monotonic() - started_mono) * 1000.0
        outcome = Outcome(None, None, decision, event, latency_ms)
        if event is not None:
            log.info("admitted by a guard from the web (request %d)", request.id)
        self._tell(outcome)
        return outcome

    def _admit_event(self, request: AdmitRequest, at: datetime) -> NewEvent:
        return self._by_hand(
            at,
            reason="manual-admit",
            kind=KIND_MANUAL,
            display_name=request.display_name or None,
            actor=request.actor,
            note=request.reason,
        )

    def _tell(self, outcome: Outcome) -> None:
        if self._on_outcome is not None:
            self._on_outcome(outcome)
