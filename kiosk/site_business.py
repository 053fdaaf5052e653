"""The site's periodic business, done by a running gate between frames.

The kiosk and the admin web share nothing but the database, so the loop
does the site's business through it, each on its own cadence of the clock's
monotonic time (never per frame):

* every ``settings_poll_s`` it compares the settings version a manager's
  save bumps, and on a change applies the new settings without a restart;
* every ``keys_poll_s`` it asks the composition root's ``refresh_registry``
  whether the site's signing keys changed on disk (a ``gatekiosk keys
  rotate`` or ``retire``); a changed key ring, or a changed ``site_id`` or
  ``code_skew_s``, gives a new :class:`~kiosk.codes.Registry`;
* every ``purge_every_s`` it purges events older than ``retention_days``,
  and the site's issued declarations and passes that expired longer ago
  than that (the site keeps them only as long as its retention allows), one
  small batch per loop step (:class:`RetentionPurge`): the loop keeps
  scanning and feeding the watchdog while a million rows go.

(Guards' admissions are the override desk's, :mod:`kiosk.overrides`.)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from gate_controller.errors import GateControllerError
from kiosk.clock import Clock
from kiosk.codes import Registry
from kiosk.errors import ConfigError, StoreError
from kiosk.every import Every
from kiosk.faults import Faults
from kiosk.policy import PolicyRules
from kiosk.scan_settings import GateSetup, RefreshRegistry, ScanSettings, SetupForSite
from kiosk.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SiteLink:
    """How a live gate keeps in step with its site; a replay has none.

    ``setup_for_site`` turns on live settings (None: fixed at start);
    ``retime_relay`` changes the relay pulse in milliseconds (e.g.
    :meth:`GpiozeroSignals.set_relay_pulse_ms
    <gate_controller.gpio.GpiozeroSignals.set_relay_pulse_ms>`), so a changed
    ``relay_pulse_ms`` reaches the door; ``refresh_registry`` (see
    :data:`~kiosk.scan_settings.RefreshRegistry`) keeps the signed-code
    format in step with the site's keys (None: the registry is fixed at start).
    """

    setup_for_site: SetupForSite | None = None
    retime_relay: Callable[[int], None] | None = None
    refresh_registry: RefreshRegistry | None = None


PURGE_BATCH_TARGET_S = 0.04
"""How long one purge batch (one transaction) should take: a loop step
that deletes one stays well under 100 ms, even on an SD card. Each row
costs a random page in several indexes, so time grows with rows; a batch
that took longer than this halves the next, one that took under half of it
doubles the next (see :func:`next_batch_rows`)."""

PURGE_BATCH_ROWS = 500
"""The most rows one purge batch deletes, and the first batch's size. With a
million events to purge, batches on an x86 test machine settled around 250
rows and 26 ms (bench/report-purge.md); on a Pi's SD card they settle lower."""

PURGE_BATCH_MIN_ROWS = 10
"""The fewest, however slow the disk: 10 rows a loop step at 10 steps a
second still purge a million rows in about three hours."""

PURGE_START_DELAY_S = 60.0
"""The kiosk's first purge waits this long after start: the camera and the
service watchdog come first, and a process that restarts in a loop does not
purge at each start."""

PURGE_PAUSE_S = 0.05
"""Between two batches of ``gatekiosk purge``: the running kiosk, waiting to
record an event, gets the write lock in a pause (SQLite retries a busy
lock every few ms at first, then every 100 ms) instead of after the whole
purge."""


@dataclass(frozen=True)
class Purged:
    """What one retention purge deleted."""

    events: int
    site_codes: int


def next_batch_rows(rows: int, took_s: float, *, most: int = PURGE_BATCH_ROWS) -> int:
    """The next purge batch's size after one of ``rows`` took ``took_s``
    seconds: halved above :data:`PURGE_BATCH_TARGET_S`, doubled under half
    of it, within :data:`PURGE_BATCH_MIN_ROWS` and ``most``."""
    if took_s > PURGE_BATCH_TARGET_S:
        return max(PURGE_BATCH_MIN_ROWS, rows // 2)
    if took_s < PURGE_BATCH_TARGET_S / 2:
        return min(most, rows * 2)
    return rows


class PurgeRun:
    """One purge of everything past ``cutoff``, one batch per :meth:`step`:
    events (oldest first), then issued codes. A batch that deletes fewer rows
    than its limit ends its table.

    Each batch is its own transaction, so a run cut short (a kill, a store
    fault) loses nothing, and the next run carries on where this one stopped.
    Batches are sized on their time (:func:`next_batch_rows`, from at most
    ``batch_rows``), measured on ``monotonic`` (a clock's).
    """

    def __init__(
        self,
        store: Store,
        *,
        cutoff: datetime,
        monotonic: Callable[[], float],
        batch_rows: int = PURGE_BATCH_ROWS,
    ) -> None:
        self.cutoff = cutoff
        self.events = 0
        self.site_codes = 0
        self.batches = 0
        self.done = False
        self.rows = batch_rows
        """The next batch's limit."""
        self._store = store
        self._monotonic = monotonic
        self._most = batch_rows
        self._events_left = True

    def step(self) -> None:
        """Delete one batch. Raises StoreError."""
        limit = self.rows
        started = self._monotonic()
        if self._events_left:
            deleted = self._store.purge_events_before(self.cutoff, limit=limit)
            self.events += deleted
            self._events_left = deleted == limit
        else:
            deleted = self._store.purge_site_codes_before(self.cutoff, limit=limit)
            self.site_codes += deleted
            self.done = deleted < limit
        self.batches += 1
        self.rows = next_batch_rows(limit, self._monotonic() - started, most=self._most)

    @property
    def purged(self) -> Purged:
        return Purged(events=self.events, site_codes=self.site_codes)


def purge_past_retention(
    store: Store, *, clock: Clock, retention_days: int, batch_rows: int = PURGE_BATCH_ROWS
) -> Purged:
    """Delete events older than ``retention_days`` and the site's issued codes
    (declarations, staff passes) that expired before then, batch after batch
    until none are left, pausing :data:`PURGE_PAUSE_S` between batches for
    another process's writes. ``gatekiosk purge``'s use case; the kiosk steps a
    :class:`RetentionPurge` instead. Raises StoreError (what went before it is
    committed)."""
    run = PurgeRun(
        store,
        cutoff=clock.now() - timedelta(days=retention_days),
        monotonic=clock.monotonic,
        batch_rows=batch_rows,
    )
    run.step()
    while not run.done:
        clock.sleep(PURGE_PAUSE_S)
        run.step()
    return run.purged


class RetentionPurge:
    """The kiosk's retention purge, one batch per loop step while a run lasts.

    The first run starts ``start_delay_s`` after the loop was built, each
    next one ``every_s`` after the previous one ended. A run's cutoff is
    fixed when it starts (a changed retention applies from the next run); it
    ends with a short batch or at a store fault, which waits for the next
    run (what was deleted before it stays deleted).
    """

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        every_s: float,
        start_delay_s: float = PURGE_START_DELAY_S,
        batch_rows: int = PURGE_BATCH_ROWS,
    ) -> None:
        self._store = store
        self._clock = clock
        self._every_s = every_s
        self._batch_rows = batch_rows
        self._cadence = Every(start_delay_s, clock.monotonic)
        self._cadence.mark()
        self._run: PurgeRun | None = None
        self._retention_days = 0

    @property
    def running(self) -> bool:
        """Whether a run is under way (the next step deletes a batch)."""
        return self._run is not None

    def step(self, retention_days: int | None) -> None:
        """Delete one batch if a run is under way or due (None: keep all)."""
        if retention_days is None:
            self._run = None
            return
        if self._run is None:
            if not self._cadence.due():
                return
            cutoff = self._clock.now() - timedelta(days=retention_days)
            self._run = PurgeRun(
                self._store,
                cutoff=cutoff,
                monotonic=self._clock.monotonic,
                batch_rows=self._batch_rows,
            )
            self._retention_days = retention_days
        try:
            self._run.step()
        except StoreError as exc:
            log.warning("could not purge records older than %d days: %s", self._retention_days, exc)
            self._end()
            return
        if self._run.done:
            self._log(self._run)
            self._end()

    def _end(self) -> None:
        self._run = None
        self._cadence.seconds = self._every_s
        self._cadence.mark()

    def _log(self, run: PurgeRun) -> None:
        purged, days = run.purged, self._retention_days
        log.info(
            "purged %d events older than %d days (%d batches)", purged.events, days, run.batches
        )
        if purged.site_codes:
            log.info(
                "purged %d issued codes that expired more than %d days ago",
                purged.site_codes,
                days,
            )


class SiteBusiness:
    """Settings polls, key and trust reloads, retention purges (see the module).

    Each is rate-limited on the monotonic clock, so most frames cost a few
    comparisons, no query and no file access. The cadences are taken from
    the settings the scanner starts with.
    """

    def __init__(
        self,
        *,
        link: SiteLink,
        store: Store,
        clock: Clock,
        faults: Faults,
        settings: ScanSettings,
    ) -> None:
        self._link = link
        self._store = store
        self._clock = clock
        self._faults = faults
        self._settings_poll = Every(settings.settings_poll_s, clock.monotonic)
        self._keys_poll = Every(settings.keys_poll_s, clock.monotonic)
        self._purge = RetentionPurge(store=store, clock=clock, every_s=settings.purge_every_s)
        self._settings_version: int | None = None

    # -- live settings ----------------------------------------------------------

    def new_setup(self, current: GateSetup) -> GateSetup | None:
        """Every ``settings_poll_s``: the manager's settings if their version
        changed since last time and the gate can use them, else None.

        A version whose values are refused is remembered as seen, warned
        about once (setting names only, never values) and not applied: the
        gate keeps deciding with the settings it has until the next save. A
        changed relay pulse is already applied when this returns it.
        """
        setup_for_site = self._link.setup_for_site
        if setup_for_site is None or not self._settings_poll.tick():
            return None
        try:
            version = self._store.settings_version()
            if version == self._settings_version:
                return None
            site = self._store.site_settings()
        except StoreError as exc:
            # During a store fault the reminder already repeats the cause once a minute.
            (log.debug if self._faults.store_faulted else log.warning)(
                "could not read the site settings, keeping the current ones: %s", exc
            )
            return None  # the version is not marked seen: the next poll tries again
        self._settings_version = version
        try:
            setup = setup_for_site(site)
        except ConfigError as exc:
            _keep_settings(version, ", ".join(_setting_names(exc.problems)))
            return None
        except Exception as exc:
            # A boundary: not the refusal the composition root promises, but a
            # value a manager stored must never stop the gate (nor, through a
            # restart loop, keep it stopped). The message may quote the value,
            # so only the error's type and the stored names are logged.
            names = ", ".join(sorted(str(name) for name in site))
            _keep_settings(version, f"one of {names} ({type(exc).__name__})")
            return None
        if not self._retime_relay(current.settings, setup.settings):
            _keep_settings(version, "pins.relay_pulse_ms")
            return None
        changed = _changed_fields(current.rules, setup.rules) + _changed_fields(
            current.settings, setup.settings
        )
        if changed:
            log.info("site settings version %d applied: %s", version, ", ".join(changed))
        else:
            log.debug("site settings version %d: nothing the scanner uses changed", version)
        return setup

    def _retime_relay(self, old: ScanSettings, new: ScanSettings) -> bool:
        """Give the relay a changed pulse first, as the one step that can
        still refuse: then nothing else has changed yet and the current
        settings stay whole. False when the pins refuse it."""
        pulse_ms = new.relay_pulse_ms
        retime = self._link.retime_relay
        if retime is None or pulse_ms is None or pulse_ms == old.relay_pulse_ms:
            return True
        try:
            retime(pulse_ms)
        except GateControllerError:
            return False
        return True

    # -- the site's keys and trust list ---------------------------------------------

    def new_registry(self, settings: ScanSettings, *, now: bool = False) -> Registry | None:
        """Every ``keys_poll_s`` (or ``now``, after a settings change: a new
        site id or skew applies from the next code), a new registry if the
        site's keys or code settings changed; else None."""
        refresh = self._link.refresh_registry
        if refresh is None or not (now or self._keys_poll.tick()):
            return None
        return refresh(settings)

    # -- retention ------------------------------------------------------------------

    def purge_if_due(self, retention_days: int | None) -> None:
        """One batch of the retention purge while one is under way or due
        (see :class:`RetentionPurge`); None keeps everything."""
        self._purge.step(retention_days)


def _keep_settings(version: int, invalid: str) -> None:
    log.warning(
        "site settings version %d not applied, keeping the current ones; invalid: %s",
        version,
        invalid,
    )


def _setting_names(problems: list[str]) -> list[str]:
    """The setting names a ConfigError's problems start with (``"gate.mode: ..."``)."""
    return sorted({problem.partition(":")[0].strip() for problem in problems})


def _changed_fields(old: PolicyRules | ScanSettings, new: PolicyRules | ScanSettings) -> list[str]:
    """Names of the fields whose values differ, for the log (never the values)."""
    return [f.name for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)]
