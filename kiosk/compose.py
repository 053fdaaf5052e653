"""The composition root: the one place that turns settings into real parts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from kiosk.clock import Clock
from kiosk.config import Settings
from kiosk.privacy import load_or_create_key, load_province_key
from kiosk.rules import (
    SiteCodes,
    gate_setup,
    hcert_rules,
    policy_rules,
    registry_for,
    scan_settings,
    setup_for_site,
    trust_list_for,
)
from kiosk.samples import VISITOR_CCCD, VISITOR_PC_COVID, VISITOR_UNRECOGNISED
from kiosk.store import (
    KIOSK_BUSY_TIMEOUT_MS,
    OPEN_RETRY_S,
    Store,
)
from kiosk.trust_import import TrustImport, import_trust_file

# The camera, the decoder, the scan loop, the pins and the QR renderer are
# imported by the functions that build them, so that rules and registries
# (``gatekiosk check``) load none of them.
if TYPE_CHECKING:
    from gate_controller.gpio import GpiozeroSignals
    from kiosk.camera import FrameSource
    from kiosk.decoder import Decoder
    from kiosk.scanner import Outcome, Scanner
    from kiosk.synthetic import Scene

__all__ = [  # with what moved below it, for the callers that still import from here
    "Gate",
    "SiteCodes",
    "TrustImport",
    "build_gate",
    "gate_setup",
    "hcert_rules",
    "import_trust_file",
    "open_store",
    "policy_rules",
    "registry_for",
    "sample_schedule",
    "scan_settings",
    "setup_for_site",
    "source_for",
    "trust_list_for",
]

log = logging.getLogger(__name__)


def open_store(settings: Settings, *, clock: Clock) -> Store:
    """The kiosk's store: a write waits at most 1 s for the web's lock, then
    the gate fails secure (see :data:`~kiosk.store.KIOSK_BUSY_TIMEOUT_MS`).

    A database that cannot be opened does not stop the kiosk (systemd would
    restart it in a loop, with the override button dead): the store keeps
    trying (see :meth:`~kiosk.store.Store.open_lazily`), the gate refuses every
    code with ``store-fault`` meanwhile, and works as soon as it opens.
    """
    store = Store.open_lazily(
        settings.db_path,
        monotonic=clock.monotonic,
        busy_timeout_ms=KIOSK_BUSY_TIMEOUT_MS,
        mark_for_upload=settings.in_site,  # a gate in a site: events go up through the outbox
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
    from kiosk.camera import open_source

    kind = settings["camera.source"]
    if kind in LIVE_CAMERAS:
        extra.setdefault("stall_timeout_s", settings["camera.stall_timeout_s"])
    if kind == "picamera2":
        from kiosk.camera.focus import Focus

        extra.setdefault("focus", Focus(settings["camera.focus"], settings["camera.focus_cm"]))
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
    from kiosk.synthetic import Scene

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
        from gpiozero.pins.mock import MockFactory

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
    from gate_controller.gpio import GpiozeroSignals
    from gate_controller.pins import make_pin_factory
    from kiosk.decoder import make_decoder
    from kiosk.scanner import GateParts, GateSetup, ScanHooks, Scanner, SiteLink

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
            store = Store.open(
                settings.db_path,
                busy_timeout_ms=KIOSK_BUSY_TIMEOUT_MS,
                mark_for_upload=settings.in_site,
            )
        stack.callback(store.close)
        key = load_or_create_key(settings.key_path)
        province_key_path = settings.province_key_path
        province_key = load_province_key(province_key_path) if province_key_path else None
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
            parts=GateParts(source, decoder, signals, pin_backend=type(factory).__name__),
            registry=site_codes.registry,
            store=store,
            clock=clock,
            setup=GateSetup(setup.rules, scan),
            hash_key=key,
            province_key=province_key,
            site=SiteLink(
                setup_for_site=setup_for_site(settings),
                retime_relay=signals.set_relay_pulse_ms,
                refresh_registry=site_codes.refresh,
            )
            if live
            else None,
            hooks=ScanHooks(on_outcome=on_outcome, heartbeat=heartbeat),
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
