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
  than that (the site keeps them only as long as its retention allows).

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
        self._purge = Every(settings.purge_every_s, clock.monotonic)
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
        """Every ``purge_every_s``, purge what is past ``retention_days`` (None: keep all)."""
        if retention_days is None or not self._purge.tick():
            return
        try:
            purged = purge_past_retention(
                self._store, now=self._clock.now(), retention_days=retention_days
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
