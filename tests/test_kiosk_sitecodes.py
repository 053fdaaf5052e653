"""The site's own signed codes at the gate: health declarations and staff
passes issued through :mod:`kiosk.declarations`, shown to the synthetic
camera, read by the real decoder, verified against the site's keys on disk
and decided by the gate built by the composition root, on a real SQLite file,
gpiozero's MockFactory and a fake clock.

Key changes while the kiosk runs are timed against the key poll, so those
tests use the hand-held camera of test_live_settings.py (a held code is in
view exactly when the test says).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from gate_controller.gpio import GpiozeroSignals
from kiosk.camera import SyntheticSource
from kiosk.clock import FakeClock
from kiosk.codes import Credential
from kiosk.compose import Gate, SiteCodes, build_gate, gate_setup, policy_rules, registry_for
from kiosk.config import Settings, load_settings
from kiosk.declarations import DEFAULT_QUESTIONS, Issued, issue_declaration, issue_staff_pass
from kiosk.decoder import ZxingDecoder
from kiosk.demo import demo_settings, demo_visitors, prepare_signed_visitors
from kiosk.demo_codes import signed_demo_visitors, tamper_name
from kiosk.errors import StoreError
from kiosk.gate_view import is_revoked
from kiosk.keys import init_keys, load_keyring, retire_key, rotate_keys
from kiosk.policy import GateView, decide
from kiosk.samples import VISITOR_CCCD
from kiosk.scanner import GateParts, GateSetup, Outcome, Scanner, SiteLink
from kiosk.site_business import PURGE_START_DELAY_S
from kiosk.store import Store
from kiosk.synthetic import Scene, render_code_frame
from tests.test_live_settings import HandCamera, HeldCodes, relay_energised
from tests.waiting import wait_until

SITE = "test-site"
ALL_FINE = {q.key: False for q in DEFAULT_QUESTIONS}


def site_settings(data_dir: Path, **values: Any) -> Settings:
    return load_settings(
        overrides={
            "gate.data_dir": str(data_dir),
            "gate.site_id": SITE,
            "gate.mode": "both",
            "pins.backend": "mock",
            "pins.relay_pulse_ms": 50,
            "pins.light_ms": 100,
            **values,
        },
        env={},
    )


@dataclass
class Site:
    """The site as the web sees it: settings, keys, and its own store."""

    settings: Settings
    clock: FakeClock
    web: Store

    @property
    def keys_dir(self) -> Path:
        return self.settings.keys_dir

    def declare(
        self,
        name: str = "Phạm Thu Hà",
        *,
        answers: dict[str, bool] | None = None,
        at: datetime | None = None,
        validity: timedelta = timedelta(hours=24),
    ) -> Issued:
        return issue_declaration(
            self.web,
            self.keys_dir,
            site_id=SITE,
            name=name,
            phone="0901234567",
            answers=ALL_FINE if answers is None else answers,
            questions=DEFAULT_QUESTIONS,
            validity=validity,
            at=at or self.clock.now(),
            issued_by="test",
        )

    def staff_pass(self, name: str = "Trần Quốc Bảo", staff_id: str = "NV-0042") -> Issued:
        now = self.clock.now()
        return issue_staff_pass(
            self.web,
            self.keys_dir,
            site_id=SITE,
            name=name,
            staff_id=staff_id,
            organisation=None,
            valid_from=now - timedelta(hours=1),
            valid_until=now + timedelta(days=90),
            at=now,
            issued_by="test",
        )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    settings = site_settings(tmp_path / "data")
    clock = FakeClock()
    init_keys(settings.keys_dir, at=clock.now())
    with Store.open(settings.db_path, boot_id="web") as web:
        yield Site(settings, clock, web)


@pytest.fixture
def gates() -> Iterator[Callable[..., Gate]]:
    """Builds gates from settings; closes them (and their pin factories) at the end."""
    with ExitStack() as stack:

        def build(settings: Settings, clock: FakeClock, **parts: Any) -> Gate:
            factory = MockFactory()
            stack.callback(factory.close)  # after the gate has closed its signals
            return stack.enter_context(
                build_gate(settings, clock=clock, pin_factory=factory, **parts)
            )

        yield build


def run_camera(gate: Gate) -> list[Outcome]:
    """Step until the synthetic recording ends; each relay pulse finishes first."""
    outcomes: list[Outcome] = []
    factory = gate.pin_factory
    while not gate.scanner.source.exhausted:
        for outcome in gate.scanner.step():
            outcomes.append(outcome)
            wait_until(lambda: not relay_energised(factory))
    return outcomes


def filmed(site: Site, gates: Callable[..., Gate], *payloads: str) -> list[Outcome]:
    """Each payload shown to the synthetic camera in turn, decided by a new gate."""
    scenes = [Scene((), 0.5)]
    for payload in payloads:
        scenes += [Scene((payload,), 2.0), Scene((), 3.0)]
    source = SyntheticSource(scenes, clock=site.clock, fps=10.0, seed=3)
    return run_camera(gates(site.settings, site.clock, source=source))


def decisions(outcomes: list[Outcome]) -> list[tuple[str, str, str, str]]:
    return [
        (
            o.decision.verdict,
            o.decision.direction,
            o.decision.reason,
            o.identified.kind if o.identified else "",
        )
        for o in outcomes
    ]


# -- through the camera ------------------------------------------------------------


def test_valid_declaration_is_allowed_and_logged_with_the_visitors_name(site, gates):
    issued = site.declare("Phạm Thu Hà")

    [outcome] = filmed(site, gates, issued.text)

    assert decisions([outcome]) == [("allow", "in", "ok", "declaration")]
    assert outcome.event is not None
    assert outcome.event.display_name == "Phạm Thu Hà"
    assert outcome.event.kind == "declaration"
    [event] = site.web.recent_events()
    assert (event.decision, event.display_name) == ("allow", "Phạm Thu Hà")


def test_expired_tampered_and_refusing_declarations_are_refused_with_their_reasons_and_names(
    site, gates
):
    expired = site.declare("Vũ Minh Khoa", at=site.clock.now() - timedelta(days=2))
    forged = tamper_name(site.declare("Đỗ Văn Nam").text, "Đỗ Văn Nam", "Đỗ Văn Lam")
    refusing = site.declare("Bùi Thị Lan", answers={**ALL_FINE, "contact": True})

    outcomes = filmed(site, gates, expired.text, forged, refusing.text)

    assert decisions(outcomes) == [
        ("deny", "in", "sitecode-expired", "declaration"),
        ("deny", "in", "sitecode-bad-signature", "declaration"),
        ("deny", "in", "sitecode-refused-answers", "declaration"),
    ]
    # A genuine code refused for what it says names its holder for the guard;
    # a forged one names nobody.
    assert [o.event.display_name if o.event else "-" for o in outcomes] == [
        "Vũ Minh Khoa",
        None,
        "Bùi Thị Lan",
    ]
    assert [e.display_name for e in site.web.recent_events()] == [
        "Bùi Thị Lan",
        None,
        "Vũ Minh Khoa",
    ]


def test_declaration_with_one_base45_character_changed_is_refused(site, gates):
    text = site.declare().text
    middle = len(text) // 2
    changed = text[:middle] + ("A" if text[middle] != "A" else "B") + text[middle + 1 :]

    [outcome] = filmed(site, gates, changed)

    assert outcome.decision.verdict == "deny"
    assert outcome.decision.reason in {"sitecode-bad-encoding", "sitecode-bad-signature"}


def test_revoked_declaration_is_refused(site, gates):
    issued = site.declare()
    assert site.web.revoke_site_code(issued.record.id, by="manager", at=site.clock.now())

    [outcome] = filmed(site, gates, issued.text)

    assert decisions([outcome]) == [("deny", "in", "sitecode-revoked", "declaration")]


def test_staff_pass_enters_then_the_same_staff_members_second_showing_is_an_exit(site, gates):
    first = site.staff_pass()
    reissued = site.staff_pass()  # a new pass for the same staff id: the same person

    outcomes = filmed(site, gates, first.text, reissued.text)

    assert decisions(outcomes) == [
        ("allow", "in", "ok", "staff-pass"),
        ("allow", "out", "ok-exit", "staff-pass"),
    ]
    assert {o.event.display_name for o in outcomes if o.event} == {"Trần Quốc Bảo"}
    assert site.web.occupancy(now=site.clock.now(), expiry_h=12) == 0


def test_gate_without_keys_refuses_signed_codes_warns_once_and_keeps_scanning(
    tmp_path, gates, caplog
):
    signing = Site(site_settings(tmp_path / "office"), FakeClock(), Store.open(tmp_path / "o.db"))
    init_keys(signing.keys_dir, at=signing.clock.now())
    issued = signing.declare()
    signing.web.close()
    gate_settings = site_settings(tmp_path / "gate")  # no keys folder
    source = SyntheticSource(
        [
            Scene((), 0.5),
            Scene((issued.text,), 2.0),
            Scene((), 3.0),
            Scene((VISITOR_CCCD.payload,), 2.0),
            Scene((), 3.0),
        ],
        clock=signing.clock,
        fps=10.0,
        seed=3,
    )

    with caplog.at_level(logging.WARNING, logger="kiosk.compose"):
        gate = gates(gate_settings, signing.clock, source=source)
    outcomes = run_camera(gate)

    assert decisions(outcomes) == [
        ("deny", "in", "sitecode-unknown-key", "declaration"),
        ("allow", "in", "ok", "cccd"),
    ]
    [warning] = [r for r in caplog.records if r.name == "kiosk.compose"]
    assert "gatekiosk keys init" in warning.getMessage()
    assert "machine that runs the web" in warning.getMessage()


# -- keys changing while the kiosk runs ------------------------------------------------


@dataclass
class HeldGate:
    gate: Gate
    camera: HandCamera
    outcomes: list[Outcome] = field(default_factory=list)

    def frames(self, seconds: float) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for _ in range(round(seconds / self.camera.frame_s)):
            outcomes += self.gate.scanner.step()
        return outcomes

    def hold(self, payload: str, seconds: float = 0.5) -> list[Outcome]:
        self.camera.held = (payload.encode(),)
        try:
            return self.frames(seconds)
        finally:
            self.camera.held = ()
            factory = self.gate.pin_factory
            wait_until(lambda: not relay_energised(factory))

    def away(self, seconds: float = 2.5) -> list[Outcome]:
        return self.frames(seconds)


@pytest.fixture
def held_gate(site, gates) -> Callable[..., HeldGate]:
    def build(settings: Settings | None = None) -> HeldGate:
        camera = HandCamera(site.clock)
        gate = gates(
            settings or site.settings, site.clock, source=camera, decoder=HeldCodes(camera)
        )
        return HeldGate(gate, camera)

    return build


def reasons(outcomes: list[Outcome]) -> list[str]:
    return [o.decision.reason for o in outcomes]


def test_code_signed_with_a_rotated_key_is_accepted_after_the_reload_interval(
    site, held_gate, caplog
):
    before_rotation = site.declare("Vũ Minh Khoa")
    kiosk = held_gate()
    kiosk.frames(0.1)  # started: the first key only
    rotate_keys(site.keys_dir, at=site.clock.now())
    issued = site.declare()  # signed with the new key

    first = kiosk.hold(issued.text)
    with caplog.at_level(logging.INFO, logger="kiosk.rules"):
        kiosk.away(5.0)  # the key poll, every 5 s
    second = kiosk.hold(issued.text)
    kiosk.away()
    older = kiosk.hold(before_rotation.text)

    assert reasons(first) == ["sitecode-unknown-key"]
    assert reasons(second) == ["ok"]
    assert reasons(older) == ["ok"]  # older keys still verify
    assert "site keys reloaded" in caplog.text
    assert "2 keys (0 retired)" in caplog.text


def test_codes_of_a_key_retired_while_running_are_refused_after_the_interval(site, held_gate):
    old = site.declare("Vũ Minh Khoa")
    kiosk = held_gate()
    kiosk.frames(0.1)
    [first_key] = load_keyring(site.keys_dir).keys
    rotate_keys(site.keys_dir, at=site.clock.now())
    retire_key(site.keys_dir, first_key.kid, at=site.clock.now())
    new = site.declare("Bùi Thị Lan")

    kiosk.away(5.0)
    refused = kiosk.hold(old.text)
    kiosk.away()
    allowed = kiosk.hold(new.text)

    assert reasons(refused) == ["sitecode-retired-key"]
    assert reasons(allowed) == ["ok"]


def test_keys_made_after_the_gate_started_are_picked_up(tmp_path, gates):
    settings = site_settings(tmp_path / "data")
    clock = FakeClock()
    camera = HandCamera(clock)
    gate = gates(settings, clock, source=camera, decoder=HeldCodes(camera))
    kiosk = HeldGate(gate, camera)
    kiosk.frames(0.1)

    init_keys(settings.keys_dir, at=clock.now())
    with Store.open(settings.db_path, boot_id="web") as web:
        issued = Site(settings, clock, web).declare()
    before = kiosk.hold(issued.text)
    kiosk.away(5.0)
    after = kiosk.hold(issued.text)

    assert reasons(before) == ["sitecode-unknown-key"]
    assert reasons(after) == ["ok"]


def test_an_unreadable_key_manifest_keeps_the_current_keys(site, held_gate, caplog):
    kiosk = held_gate()
    issued = site.declare()
    kiosk.away(0.1)
    (site.keys_dir / "keys.json").write_text("{not json", encoding="utf-8")

    with caplog.at_level(logging.WARNING, logger="kiosk.rules"):
        kiosk.away(5.0)
        kiosk.away(5.0)
    outcome = kiosk.hold(issued.text)

    assert reasons(outcome) == ["ok"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "kiosk.rules"]
    assert len(warnings) == 1  # once per change of the file, not once per poll
    assert "keeping the current ones" in warnings[0]


def test_a_site_id_change_rebuilds_the_format_at_the_next_settings_poll(site):
    """gate.site_id is not editable on the web; a setup that changes it
    (a future one, or another composition root) still takes effect."""
    settings = site.settings
    clock = site.clock
    camera = HandCamera(clock)
    setup = gate_setup(settings)

    def setup_for(values: Mapping[str, Any]) -> GateSetup:
        site_id = values.get("test.site_id", SITE)
        return GateSetup(setup.rules, replace(setup.settings, site_id=site_id))

    codes = SiteCodes.for_settings(settings, site.web)
    factory = MockFactory()
    with GpiozeroSignals(settings.pin_config(), pin_factory=factory) as signals:
        scanner = Scanner(
            parts=GateParts(camera, HeldCodes(camera), signals),
            registry=codes.registry,
            store=site.web,
            clock=clock,
            setup=GateSetup(setup.rules, setup.settings),
            hash_key=b"k" * 32,
            site=SiteLink(setup_for_site=setup_for, refresh_registry=codes.refresh),
        )
        issued = site.declare()
        scanner.step()
        site.web.save_site_settings({"test.site_id": "other-site"}, by="m", at=clock.now())
        for _ in range(25):
            scanner.step()  # 2.5 s: one settings poll
        camera.held = (issued.text.encode(),)
        [outcome] = scanner.step()
        camera.held = ()

    assert outcome.decision.reason == "sitecode-wrong-site"
    factory.close()


# -- retention ---------------------------------------------------------------------


def test_issued_codes_past_retention_are_purged_by_the_kiosk(site, held_gate, caplog):
    now = site.clock.now()
    old = site.declare("Vũ Minh Khoa", at=now - timedelta(days=23))  # expired 22 days ago
    recent = site.declare("Bùi Thị Lan", at=now - timedelta(days=20))  # expired 19 days ago
    current = site.declare()

    kiosk = held_gate()
    site.clock.advance(PURGE_START_DELAY_S)  # the first purge waits for it
    with caplog.at_level(logging.INFO, logger="kiosk.site_business"):
        kiosk.frames(0.5)

    assert site.web.site_code(old.record.id) is None
    assert site.web.site_code(recent.record.id) is not None
    assert site.web.site_code(current.record.id) is not None
    assert "purged 1 issued codes that expired more than 21 days ago" in caplog.text


# -- check, and the demo's signed samples ---------------------------------------------


def test_registry_for_verifies_against_the_sites_keys_and_the_view_holds_revocations(site):
    issued = site.declare()
    at = site.clock.now()

    without_store = registry_for(site.settings, None).identify(issued.text.encode(), at=at)
    site.web.revoke_site_code(issued.record.id, by="m", at=at)
    with_store = registry_for(site.settings, site.web).identify(issued.text.encode(), at=at)

    assert isinstance(without_store, Credential)
    assert without_store.kind == "declaration"
    # Identifying a code touches no database: revocation is the gate's view.
    assert with_store == without_store
    assert with_store.code_id == issued.record.id
    assert is_revoked(site.web, with_store)
    view = GateView(revoked=is_revoked(site.web, with_store))
    decision = decide(with_store, rules=policy_rules(site.settings), view=view)
    assert (decision.verdict, decision.reason) == ("deny", "sitecode-revoked")


def test_a_database_fault_while_checking_a_pass_is_a_store_fault_not_a_bad_code(
    site, gates, monkeypatch
):
    issued = site.staff_pass()

    def failing(store: Store, code_id: str) -> bool:
        raise StoreError("database is locked (while checking a revocation)")

    monkeypatch.setattr(Store, "is_revoked", failing)  # the gate's own store, too
    [outcome] = filmed(site, gates, issued.text)

    assert decisions([outcome]) == [("deny", "in", "store-fault", "staff-pass")]
    assert outcome.event is None


def test_demo_signed_samples_are_recorded_and_decided_as_the_demo_says(site):
    now = site.clock.now()
    signed = signed_demo_visitors(site.web, site.keys_dir, site_id=SITE, now=now)
    registry = registry_for(site.settings, site.web)
    decoder = ZxingDecoder()

    got = []
    for visitor in signed.in_order():
        [code] = decoder.decode(render_code_frame(visitor.payload))
        assert code.raw == visitor.payload.encode()  # the demo camera can read it
        identified = registry.identify(code.raw, at=now)
        reason = "ok" if isinstance(identified, Credential) else identified.reason
        got.append((visitor.label, identified.kind, reason))

    assert got == [
        ("health declaration", "declaration", "ok"),
        ("health declaration made two days ago", "declaration", "sitecode-expired"),
        ("health declaration with the name edited", "declaration", "sitecode-bad-signature"),
        (
            "health declaration answering yes to symptoms",
            "declaration",
            "sitecode-refused-answers",
        ),
        ("staff pass", "staff-pass", "ok"),
    ]
    assert [v.expected for v in signed.in_order()] == [reason for _, _, reason in got]
    declarations = site.web.site_codes("declaration", now=now, include_expired=True)
    assert len(declarations) == 4
    assert len(site.web.site_codes("staff-pass", now=now)) == 1


def test_demo_makes_its_keys_once_and_a_cycle_of_twelve_visitors(tmp_path):
    settings = demo_settings(tmp_path)
    now = FakeClock().now()

    first = demo_visitors(prepare_signed_visitors(settings, now=now))
    manifest = (settings.keys_dir / "keys.json").read_bytes()
    again = demo_visitors(prepare_signed_visitors(settings, now=now))

    assert (settings.keys_dir / "keys.json").read_bytes() == manifest  # not made again
    assert len(first) == len(again) == 12
    assert first[0] == VISITOR_CCCD
    assert first[-1] == VISITOR_CCCD
    assert {v.expected for v in first} >= {
        "ok",
        "sitecode-expired",
        "sitecode-bad-signature",
        "sitecode-refused-answers",
        "denylisted",
        "unrecognised",
    }
