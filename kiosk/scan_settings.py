"""What the scan loop is set up with: its settings, the policy's rules, and
the hooks through which the composition root keeps them in step with the site.

Kept apart from :mod:`kiosk.scanner` (which imports the camera and the
decoder) so that building a gate's setup from settings, as ``gatekiosk
check`` does, loads no image library.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from kiosk.codes import Registry
from kiosk.codes.sitecodes import DEFAULT_SKEW_S
from kiosk.policy import PolicyRules


@dataclass(frozen=True)
class ScanSettings:
    gate_id: str
    timezone: ZoneInfo
    hysteresis_s: float = 2.0
    presence_expiry_h: float = 12.0
    store_full_id: bool = False
    read_timeout_s: float = 1.0
    camera_fault_exit_s: float | None = None
    """After this long (seconds) of continuous camera fault the loop stops and
    the kiosk exits for systemd to restart it; None: never (replays, tests)."""
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
    site_stale_after_s: float = 30.0
    """A gate of a site that has not heard every gate for longer than this
    (seconds) decides on a stale site view (``site.stale_after_s``)."""

    # The loop's own pace, not site settings: the cadences above and below
    # are taken when the scanner is built (a settings change keeps them).
    health_min_gap_s: float = 0.25
    """The health row is written as soon as the fault changes, but not more
    often than this (seconds): a fault flapping on every frame must not turn
    into 15 synchronous writes a second. The dashboard polls every 0.5 s."""
    decoder_log_every_s: float = 60.0
    """A decoder that keeps throwing has its traceback logged this often (seconds)."""
    store_probe_s: float = 1.0
    """While the store is faulted, how long after the last try the loop tries a
    real write (or the waiting overrides) again, to find out that the database
    works again. Each try may wait out the store's busy timeout (locked)."""
    store_fault_reminder_s: float = 60.0
    """While the store stays faulted, how often the log says so again."""
    overrides_waiting_max: int = 500
    """Overrides that opened the door while the store failed, kept in memory to
    be recorded when it works again. Far more than a shift of button presses;
    past it, a press still opens the door and the log says it will not be
    recorded."""

    def utc_offset_min(self, at: datetime) -> int:
        """The gate's local offset from UTC at ``at``, in minutes, as events keep it."""
        offset = at.astimezone(self.timezone).utcoffset()
        return int(offset.total_seconds() // 60) if offset else 0


@dataclass(frozen=True)
class GateSetup:
    """What a running gate decides with that a manager may change without a restart."""

    rules: PolicyRules
    settings: ScanSettings


SetupForSite = Callable[[Mapping[str, Any]], GateSetup]
"""Turns the settings a manager saved on the web (by name, as
:meth:`~kiosk.store.Store.site_settings` returns them) into a
:class:`GateSetup`, raising :class:`~kiosk.errors.ConfigError` for values it
refuses. The composition root provides it, so the loop knows nothing of
settings files and their validation."""

RefreshRegistry = Callable[[ScanSettings], Registry | None]
"""Given the scanner's current settings, a new :class:`~kiosk.codes.Registry`
when the site's keys on disk or the settings its signed-code format is built
from (``site_id``, ``code_skew_s``) changed since the last call, else None.
The composition root provides it; it must not raise for keys it cannot read
(it keeps the ones it has and says so in the log)."""
