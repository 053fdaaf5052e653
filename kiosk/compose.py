"""The composition root: the one place that turns settings into real parts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import Any

from gpiozero.pins.mock import MockFactory

from gate_controller.gpio import GpiozeroSignals
from gate_controller.pins import make_pin_factory
from kiosk.camera import FrameSource, open_source
from kiosk.clock import Clock
from kiosk.codes import Registry, default_formats
from kiosk.config import Settings, with_site_settings
from kiosk.decoder import Decoder, make_decoder
from kiosk.policy import PolicyRules
from kiosk.privacy import load_or_create_key
from kiosk.scanner import GateSetup, Outcome, Scanner, ScanSettings, SetupForSite
from kiosk.store import Store

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


def registry_for(settings: Settings) -> Registry:
    """The code formats this site understands, signed ones first."""
    return Registry(default_formats())


def open_store(settings: Settings) -> Store:
    return Store.open(settings.db_path)


def source_for(settings: Settings, *, clock: Clock, **extra: Any) -> FrameSource:
    return open_source(
        settings["camera.source"],
        device=settings["camera.device"],
        size=(settings["camera.width"], settings["camera.height"]),
        fps=settings["camera.fps"],
        clock=clock,
        stall_timeout_s=settings["camera.stall_timeout_s"],
        **extra,
    )


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
) -> Iterator[Gate]:
    """Build every part from settings; close them all (relay first) on exit.

    ``source``, ``pin_factory`` and ``decoder`` replace the configured ones
    (replay, demo, tests). ``live`` makes the gate act for the site through
    the database: it applies the settings a manager saves on the web,
    carries out guards' admit requests and purges events past retention.
    Pass ``live=False`` for anything that is not the site's gate (a replay
    into the site's database must not take a guard's admission).
    """
    with ExitStack() as stack:
        if pin_factory is None:
            factory = make_pin_factory(settings["pins.backend"])
            stack.callback(factory.close)  # runs after signals.close: relay off first
        else:
            factory = pin_factory
        signals = GpiozeroSignals(settings.pin_config(), pin_factory=factory)
        stack.callback(signals.close)
        store = open_store(settings)
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
        scanner = Scanner(
            source=source,
            decoder=decoder,
            registry=registry_for(settings),
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
        )
        yield Gate(scanner=scanner, store=store, signals=signals, pin_factory=factory)
