"""The composition root: the one place that turns settings into real parts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from gpiozero.pins.mock import MockFactory

from gate_controller.gpio import GpiozeroSignals
from gate_controller.pins import make_pin_factory
from kiosk.camera import FrameSource, open_source
from kiosk.clock import Clock
from kiosk.codes import Registry, default_formats
from kiosk.config import Settings
from kiosk.decoder import make_decoder
from kiosk.policy import PolicyRules
from kiosk.privacy import load_or_create_key
from kiosk.scanner import Outcome, Scanner, ScanSettings
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
    )


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
    on_outcome: Callable[[Outcome], None] | None = None,
) -> Iterator[Gate]:
    """Build every part from settings; close them all (relay first) on exit.

    ``source`` and ``pin_factory`` replace the configured ones (replay,
    demo, tests).
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
        decoder = make_decoder(settings["decoder.backend"])
        scanner = Scanner(
            source=source,
            decoder=decoder,
            registry=registry_for(settings),
            store=store,
            signals=signals,
            clock=clock,
            rules=policy_rules(settings),
            settings=scan_settings(settings),
            hash_key=key,
            pin_backend=type(factory).__name__,
            on_outcome=on_outcome,
        )
        yield Gate(scanner=scanner, store=store, signals=signals, pin_factory=factory)
