"""``gatekiosk demo --gates N --province``: the site demo and a province on this machine.

Beside the site of :mod:`kiosk.demo_site`, a throwaway PostgreSQL
(:mod:`kiosk.demo_postgres`) with the province schema, and in it:

- the demo site, whose hub runs the real uplink (:class:`Uplink`) in a
  thread: its gates' events reach the province within seconds;
- other sites, each with a hub database of its own in the demo's folder,
  filled with a few days of generated visits and uploaded through the same
  uplink code: a busy market, still scanning (a few visitors more every
  :data:`LIVE_EVERY_S`), a factory whose history ends yesterday (quiet), and
  a market registered but never heard from;
- the published checklist (``deploy/province-checklist.toml``; a short
  one where the package has no ``deploy/`` folder), rated on the market's hub recently and on the
  factory's long ago (stale), sent up by the uplink as a hub sends them;
- a reader login, and the province web (:func:`admin_web.create_province_app`)
  on another port, with a manager whose password is made for this run.

Everything stops with the demo; the cluster is removed unless ``keep``.
"""

from __future__ import annotations

import hashlib
import logging
import random
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from kiosk.clock import Clock
from kiosk.config import Settings, load_settings
from kiosk.demo import DEMO_MANAGER, DEMO_SITE_ID, DemoWeb
from kiosk.demo_postgres import HOST, DemoPostgres
from kiosk.errors import GateError
from kiosk.province.checklist import Checklist, load_checklist, parse_checklist
from kiosk.province.checklist import publish_checklist as publish
from kiosk.province.outbox import ProvinceOutbox
from kiosk.province.setup import SiteRole, add_reader, add_site, default_role_name, init_schema
from kiosk.province.uplink import Uplink, UplinkSettings
from kiosk.store import Store
from kiosk.store.values import Event, NewEvent
from kiosk.webserver import Serving, serve_in_background

log = logging.getLogger(__name__)

DATABASE = "province"
READER_ROLE = "province_web"
LIVE_EVERY_S = 20.0
"""The busy market gets a few visitors more, and uploads them, this often (seconds)."""
UPLINK_IDLE_S = 1.0
"""The demo hub's uplink looks for new events this often when idle (seconds)."""
CHECKLIST_FILE = Path(__file__).resolve().parent.parent / "deploy" / "province-checklist.toml"

MARKET_HOURS: Mapping[int, int] = {
    5: 25, 6: 40, 7: 45, 8: 35, 9: 25, 10: 20, 11: 12, 12: 8,
    13: 8, 14: 12, 15: 20, 16: 30, 17: 35, 18: 20,
}  # fmt: skip
"""Visitors entering a market per local hour: early morning and late afternoon."""
FACTORY_HOURS: Mapping[int, int] = {6: 70, 7: 25, 13: 20, 14: 60, 21: 15, 22: 40}
"""Workers entering a factory per local hour: the shifts' starts."""
NAMES = ("Nguyễn Thị Hoa", "Trần Văn Phúc", "Lê Thị Mai", "Phạm Quốc Huy", "Hoàng Thị Lan")


@dataclass(frozen=True)
class SimulatedSite:
    """Another site of the province: its name, its gates, its visitors' rhythm.

    ``history_days``: days of visits generated before today (0: none, never
    heard from). ``until_now``: the visits run up to now (scanning) or end
    yesterday (quiet). ``stay``: how long a visitor stays. ``rated_days_ago``:
    the age of its self-assessment, None for none.
    """

    site_id: str
    name: str
    gates: tuple[str, ...]
    hours: Mapping[int, int]
    history_days: int
    until_now: bool
    stay: tuple[timedelta, timedelta]
    rated_days_ago: float | None


OTHER_SITES = (
    SimulatedSite(
        "cho-ben-thanh",
        "Chợ Bến Thành (Quận 1)",
        ("cong-le-loi", "cong-phan-boi-chau"),
        MARKET_HOURS,
        history_days=3,
        until_now=True,
        stay=(timedelta(minutes=20), timedelta(minutes=90)),
        rated_days_ago=2,
    ),
    SimulatedSite(
        "may-tan-tao",
        "Công ty May Tân Tạo (KCN Tân Tạo)",
        ("cong-1",),
        FACTORY_HOURS,
        history_days=4,
        until_now=False,
        stay=(timedelta(hours=7), timedelta(hours=8)),
        rated_days_ago=45,
    ),
    SimulatedSite(
        "cho-binh-tay",
        "Chợ Bình Tây (Quận 6)",
        ("cong-chinh",),
        MARKET_HOURS,
        history_days=0,
        until_now=False,
        stay=(timedelta(minutes=20), timedelta(minutes=90)),
        rated_days_ago=None,
    ),
)
DEMO_SITE_NAME = "Khu demo trên máy này / this machine's demo site"


def demo_checklist() -> Checklist:
    """The checklist a province would publish: ``deploy/province-checklist.toml``
    in a source checkout, else a short one (an installed package has no ``deploy/``)."""
    if CHECKLIST_FILE.is_file():
        return load_checklist(CHECKLIST_FILE)
    return parse_checklist(
        {
            "title": "Tiêu chí an toàn / Safety criteria",
            "questions": [
                {"id": "sanitiser", "vi": "Có dung dịch sát khuẩn tay tại cổng",
                 "en": "Hand sanitiser at the gate"},
                {"id": "qr-check", "vi": "Quét mã QR mọi người đến cơ sở",
                 "en": "Every visitor's QR code is checked"},
            ],
        }
    )  # fmt: skip


class SiteHistory:
    """Visits of one simulated site as a hub's events: each visitor enters at
    one gate and leaves by another after a stay, a few are refused."""

    def __init__(self, site: SimulatedSite, zone: ZoneInfo) -> None:
        self.site = site
        self.zone = zone
        self._chance = random.Random(site.site_id)  # noqa: S311 - made-up visitors
        self._seq = dict.fromkeys(site.gates, 0)
        self._visitors = 0

    def between(self, start: datetime, end: datetime) -> list[Event]:
        """The events of visits that begin in ``[start, end)``, those after ``end``
        left out; each gate's numbered in time order, as a gate records them."""
        visits: list[NewEvent] = []
        hour = start.astimezone(self.zone).replace(minute=0, second=0, microsecond=0)
        while hour < end:
            for _ in range(self._chance.randint(0, 2 * self.site.hours.get(hour.hour, 0))):
                at = hour + timedelta(seconds=self._chance.uniform(0, 3600))
                if start <= at < end:
                    visits += self.visit(at, end)
            hour += timedelta(hours=1)
        return [self._recorded(event) for event in sorted(visits, key=lambda e: e.at)]

    def visit(self, at: datetime, end: datetime) -> list[NewEvent]:
        """One visitor arriving at ``at``: the entry (or refusal), the exit if before ``end``."""
        chance = self._chance
        self._visitors += 1
        person = f"{self.site.site_id}/visitor-{chance.randrange(5000)}"
        subject = hashlib.sha256(person.encode()).hexdigest()
        name = NAMES[self._visitors % len(NAMES)]
        refused = chance.random() < 0.05
        arrival = self._event(chance.choice(self.site.gates), at, "in", refused, subject, name)
        if refused:
            return [arrival]
        leaving = at + timedelta(
            seconds=chance.uniform(*(s.total_seconds() for s in self.site.stay))
        )
        if leaving >= end:
            return [arrival]
        return [
            arrival,
            self._event(chance.choice(self.site.gates), leaving, "out", False, subject, name),
        ]

    def _event(
        self, gate: str, at: datetime, direction: str, refused: bool, subject: str, name: str
    ) -> NewEvent:
        return NewEvent(
            gate_id=gate,
            at=at,
            utc_offset_min=420,
            clock_synced=True,
            direction=direction,
            decision="deny" if refused else "allow",
            reason="expired" if refused else "ok",
            kind="cccd",
            subject_hash=subject,
            display_name=name,
            masked_id=f"0792******{int(subject[:4], 16) % 100:02d}",
        )

    def _recorded(self, new: NewEvent) -> Event:
        """``new`` as its gate records it: a random id, the gate's next number."""
        self._seq[new.gate_id] += 1
        return Event.of(
            new,
            id=secrets.token_hex(16),
            boot_id=f"{self.site.site_id}-{new.gate_id}",
            seq=self._seq[new.gate_id],
        )


def record_at_hub(store: Store, events: list[Event]) -> None:
    """Take ``events`` into a hub's database as ``gatekiosk hub`` takes a gate's, gate by gate
    (in order of ``seq``: the order each gate recorded them)."""
    by_gate: dict[str, list[Event]] = {}
    for event in events:
        by_gate.setdefault(event.gate_id, []).append(event)
    for gate, gate_events in by_gate.items():
        store.site_log.ingest(gate, sorted(gate_events, key=lambda e: e.seq))


class SimulatedHub:
    """A simulated site's hub: its database in the demo's folder, its uplink."""

    def __init__(
        self, site: SimulatedSite, folder: Path, dsn: str, *, clock: Clock, zone: ZoneInfo
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.site = site
        self.clock = clock
        self.history = SiteHistory(site, zone)
        self.store = Store.open(folder / "gatekiosk.db", boot_id=f"hub-{site.site_id}")
        self.uplink = Uplink(
            ProvinceOutbox(self.store.connection), UplinkSettings(dsn=dsn, zone=zone), clock=clock
        )
        self._until = clock.now()

    def fill(self, now: datetime) -> None:
        """Record the site's history, upload it, and rate the checklist the
        uplink brought down, which the next upload sends."""
        local_today = datetime.combine(
            now.astimezone(self.history.zone).date(), time(), self.history.zone
        )
        start = local_today - timedelta(days=self.site.history_days)
        self._until = now if self.site.until_now else local_today
        record_at_hub(self.store, self.history.between(start, self._until))
        self.uplink.drain_once()
        if self.site.rated_days_ago is not None:
            self._rate(now - timedelta(days=self.site.rated_days_ago))
            self.uplink.drain_once()

    def _rate(self, at: datetime) -> None:
        ratings = self.store.self_assessment
        version = ratings.latest_version()
        checklist = ratings.checklist(version) if version is not None else None
        if checklist is None:
            raise GateError("the demo's uplink brought no checklist down")
        answers = {q.id: n % 4 != 3 for n, q in enumerate(checklist.questions)}
        ratings.save_assessment(
            checklist_version=checklist.version, answers=answers, made_by="quanly", at=at
        )

    def live(self, now: datetime) -> None:
        """The visits since the last call, uploaded."""
        record_at_hub(self.store, self.history.between(self._until, now))
        self._until = now
        self.uplink.drain_once()

    def close(self) -> None:
        self.store.close()


class DemoProvince:
    """The province of one demo run; :meth:`stop` ends it, the cluster removed unless ``keep``."""

    def __init__(self, folder: Path, bindir: Path, *, port: int, clock: Clock, keep: bool) -> None:
        self.folder = folder
        self.bindir = bindir
        self.port = port
        self.clock = clock
        self.keep = keep
        self.stop_event = threading.Event()
        self.postgres: DemoPostgres | None = None
        self.web: DemoWeb | None = None
        self._hubs: list[SimulatedHub] = []
        self._threads: list[threading.Thread] = []
        self._uplink: Uplink | None = None
        self._hub_store: Store | None = None
        self.hub_uplink_dsn: str | None = None
        """The demo hub's login at the province, once started: its web's
        ``uplink.dsn``, so its Self-assessment page knows it has a province."""

    def start(self, hub: Settings, *, web_port: int) -> DemoWeb:
        """The cluster, the schema, the sites and their history, the demo
        hub's uplink and the province web; that web. A refusal of the
        server is a GateError (call :meth:`stop` in any case)."""
        self.postgres = DemoPostgres.create(
            self.folder / "postgres",
            self.bindir,
            port=self.port,
            clock=self.clock,
            log_path=self.folder / "postgres.log",
        )
        self.postgres.start()
        try:
            reader_dsn = self._populate(hub)
        except psycopg.Error as exc:
            raise GateError(
                "không dựng được cấp tỉnh của bản demo / the demo's province could not be set "
                f"up: {str(exc).strip()} (see {self.folder / 'postgres.log'})"
            ) from exc
        self.web = start_province_web(
            self.folder / "province-web",
            reader_dsn,
            clock=self.clock,
            port=web_port,
            zone=hub["gate.timezone"],
        )
        return self.web

    def _populate(self, hub: Settings) -> str:
        """Schema, checklist, sites with their history, the demo hub's uplink
        and the reader login; the reader's DSN."""
        assert self.postgres is not None
        owner = self.postgres.create_database(DATABASE)
        init_schema(owner)
        publish(owner, demo_checklist())
        now = self.clock.now()
        for site in OTHER_SITES:
            dsn = self._register(owner, site.site_id, site.name)
            if site.history_days:
                folder = self.folder / "province-sites" / site.site_id
                simulated = SimulatedHub(site, folder, dsn, clock=self.clock, zone=hub.timezone)
                self._hubs.append(simulated)
                simulated.fill(now)
        self._start_uplink(hub, self._register(owner, DEMO_SITE_ID, DEMO_SITE_NAME))
        self._run("province-sites", self._live)
        password = secrets.token_urlsafe(18)
        add_reader(owner, READER_ROLE, password)
        return self.postgres.dsn(DATABASE, READER_ROLE, password)

    def _register(self, owner_dsn: str, site_id: str, name: str) -> str:
        """Register a site with a login of its own (a password for this run); its DSN."""
        role = default_role_name(site_id)
        password = secrets.token_urlsafe(18)
        add_site(owner_dsn, SiteRole(site_id, name, role_name=role, password=password))
        assert self.postgres is not None
        return self.postgres.dsn(DATABASE, role, password)

    def _start_uplink(self, hub: Settings, dsn: str) -> None:
        """The demo hub's ``gatekiosk uplink``, in a thread over a connection of its own."""
        self.hub_uplink_dsn = dsn
        self._hub_store = Store.open(hub.db_path)
        self._uplink = Uplink(
            ProvinceOutbox(self._hub_store.connection),
            UplinkSettings(dsn=dsn, zone=hub.timezone, idle_s=UPLINK_IDLE_S, health_every_s=10.0),
            clock=self.clock,
        )
        self._run("uplink", self._uplink.run)

    def _run(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _live(self) -> None:
        live = [hub for hub in self._hubs if hub.site.until_now]
        while not self.stop_event.wait(LIVE_EVERY_S):
            for hub in live:
                try:
                    hub.live(self.clock.now())
                except (GateError, psycopg.Error) as exc:  # the next round tries again
                    log.warning("demo site %s: %s", hub.site.site_id, exc)

    def stop(self) -> None:
        """Everything stopped, the server by ``pg_ctl stop -m fast``; the cluster
        removed unless ``keep``."""
        self.stop_event.set()
        try:
            if self.web is not None:
                self.web.stop()
            if self._uplink is not None:
                self._uplink.stop()
            for thread in self._threads:
                thread.join(timeout=30)
            for hub in self._hubs:
                hub.close()
            if self._hub_store is not None:
                self._hub_store.close()
        finally:
            if self.postgres is not None:
                self.postgres.stop()
                if not self.keep:
                    self.postgres.remove()


def start_province_web(
    folder: Path, reader_dsn: str, *, clock: Clock, port: int, zone: str
) -> DemoWeb:
    """The province web over the reader login, with a manager whose password
    is made up for this run only (there are no default credentials)."""
    from admin_web import create_province_app
    from kiosk.accounts import add_user

    settings = load_settings(
        overrides={
            "gate.data_dir": str(folder),
            "gate.timezone": zone,
            "province_web.dsn": reader_dsn,
        },
        env={},
    )
    folder.mkdir(parents=True, exist_ok=True)
    store = Store.open(settings.db_path, concurrent_reads=True)
    password = secrets.token_urlsafe(12)
    add_user(store, DEMO_MANAGER, role="manager", password=password, at=clock.now())
    app = create_province_app(settings, store=store, clock=clock)
    serving = Serving.from_settings(settings)
    try:
        server = serve_in_background(app, host=HOST, port=port, serving=serving)
    except GateError:  # the port is taken
        server = serve_in_background(app, host=HOST, port=0, serving=serving)
    return DemoWeb(server.url, password, server, store)


def province_lines(web: DemoWeb, postgres: DemoPostgres, *, keep: bool) -> str:
    """What the demo prints about its province: Vietnamese first, English second."""
    kept = (
        "giữ lại khi dừng (--keep) / kept at the end (--keep)"
        if keep
        else ("xóa khi dừng / removed at the end (--keep keeps it)")
    )
    return (
        f"Trang cấp tỉnh / Province web: {web.url}  user: {DEMO_MANAGER}  "
        f"password (this run only): {web.password}  (mật khẩu chỉ cho lần chạy này)\n"
        "Xem trang Các khu: khu demo nhận sự kiện trực tiếp từ các cổng, một khu im lặng, "
        "một khu chưa từng gửi; trang Tự đánh giá: điểm các khu tự chấm. / "
        "Look at Sites: the demo site fed live by its gates, a quiet site, one never heard "
        "from; Self-assessments: the sites' own ratings.\n"
        f"PostgreSQL tạm / throwaway PostgreSQL: {HOST}:{postgres.port}, "
        f"{postgres.folder} ({kept})\n"
        f"Xem dữ liệu cấp tỉnh / query the province: psql -h {postgres.folder / 'run'} "
        f"-p {postgres.port} -U postgres {DATABASE}\n"
    )
