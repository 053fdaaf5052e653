"""``gatekiosk demo --gates N``: a site of N simulated gates and one hub on this machine.

Everything a real site runs, on loopback, in one process: ``site init`` for
the hub in a new folder under the demo's data folder, Mosquitto started from
the configuration :mod:`kiosk.site.broker` writes (a free loopback port),
N gates enrolled as ``site join`` would enrol them (each with its own
database and its own boot id: gates on one machine share the kernel's boot
id, and (boot id, sequence) must be unique across the site), each gate's
sync (uplink, status, documents, presence) and the hub's process
(ingestion, status, documents) on threads, and the admin web over the
hub's database.

The gates are simulated at the level of the log: visitors of a small crowd
enter at one gate and leave by another, the way the kiosk records them
(with the "not yet uploaded" mark), a few refused. The single-gate demo
(``gatekiosk demo``) shows the camera and the decisions; this one shows the
site: the hub's dashboard, one log for all gates, site-wide presence.
With ``--province``, :mod:`kiosk.demo_province` adds a province beside it.
"""

from __future__ import annotations

import base64
import logging
import os
import pwd
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TextIO

from kiosk.clock import Clock, SystemClock
from kiosk.config import Settings, load_settings, with_values
from kiosk.demo import DEMO_MANAGER, DEMO_SITE_ID, start_demo_web
from kiosk.errors import GateError
from kiosk.privacy import load_or_create_key, subject_hash
from kiosk.site.files import PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, write_atomically
from kiosk.site.gate_sync import build_sync, gate_channels
from kiosk.site.hub import HubFiles, IngestChannel, hub_channels
from kiosk.site.hub_setup import HubFolder, enrolment_answer, init_hub
from kiosk.site.keyfiles import install_public_keys
from kiosk.site.link import BrokerAddress, ChannelLoop
from kiosk.site.pki import new_private_key, write_private_key
from kiosk.site.topics import Topics
from kiosk.store import NewEvent, Store, current_boot_id

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
MOSQUITTO_PATHS = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
VISIT_EVERY_S = 1.5
"""A simulated visitor at each gate about this often (seconds)."""
CROWD = 24
NAMES = ("Nguyễn Văn An", "Trần Thị Bình", "Lê Hoàng Cường", "Phạm Thu Dung", "Võ Minh Em")


class MosquittoMissing(GateError):
    """The broker is not installed; the message says how to install it."""


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto", path=MOSQUITTO_PATHS)
    if found is None:
        raise MosquittoMissing(
            "Chưa cài Mosquitto (máy chủ MQTT của khu vực): sudo apt-get install mosquitto\n"
            "Mosquitto (the site's MQTT broker) is not installed: sudo apt-get install mosquitto"
        )
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def site_settings(folder: Path, gate_id: str, port: int) -> Settings:
    return load_settings(
        overrides={
            "gate.id": gate_id,
            "gate.site_id": DEMO_SITE_ID,
            "gate.data_dir": str(folder),
            "site.hub": f"{HOST}:{port}",
            "site.dir": str(folder / "site"),
        },
        env={},
    )


def enrol_demo_gate(hub: HubFolder, hub_settings: Settings, gate: Settings, now: datetime) -> None:
    """What ``gatekiosk site join`` leaves on a gate, without the network round trip."""
    site_dir = gate.site_dir
    site_dir.mkdir(parents=True, exist_ok=True)
    key = new_private_key()
    write_private_key(site_dir / "gate.key", key)
    answer = enrolment_answer(
        hub,
        gate_id=str(gate["gate.id"]),
        public_key=key.public_key(),
        keys_dir=hub_settings.keys_dir,
        hash_key_path=hub_settings.key_path,
        now=now,
    )
    install_public_keys(gate.keys_dir, answer["keys"])
    subject_key = base64.b64decode(answer["subject_key"])
    write_atomically(gate.key_path, subject_key, PRIVATE_FILE_MODE)
    write_atomically(site_dir / "subject.key", subject_key, PRIVATE_FILE_MODE)
    write_atomically(site_dir / "ca.pem", answer["ca"].encode("ascii"), PUBLIC_FILE_MODE)
    write_atomically(site_dir / "gate.pem", answer["certificate"].encode("ascii"), PUBLIC_FILE_MODE)


class DemoSite:
    """The hub, the broker and the gates of one demo run; :meth:`stop` ends them all."""

    def __init__(self, folder: Path, gates: int, *, clock: Clock) -> None:
        self.folder = folder
        self.clock = clock
        self.stop_event = threading.Event()
        self.port = free_port()
        self.hub = site_settings(folder / "hub", "hub", self.port)
        self.gates = [
            site_settings(folder / f"gate-{n}", f"gate-{n}", self.port) for n in range(1, gates + 1)
        ]
        self._threads: list[threading.Thread] = []
        self._loops: list[ChannelLoop] = []
        self._stores: list[Store] = []
        self.broker: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = mosquitto_binary()
        now = self.clock.now()
        hub_folder = HubFolder(self.hub.site_dir)
        report = init_hub(
            hub_folder,
            site_id=DEMO_SITE_ID,
            hosts=[HOST],
            broker_port=self.port,
            keys_dir=self.hub.keys_dir,
            hash_key_path=self.hub.key_path,
            now=now,
            broker_options={
                "bind_address": HOST,
                "log_dest": "stderr",
                # As root Mosquitto would become "mosquitto", who cannot read this folder.
                "run_as_user": pwd.getpwuid(os.getuid()).pw_name,
            },
        )
        with (self.folder / "mosquitto.log").open("ab") as broker_log:
            self.broker = subprocess.Popen(  # noqa: S603 - the installed broker, our own config
                [binary, "-c", str(report.broker_config)],
                stdin=subprocess.DEVNULL,
                stdout=broker_log,
                stderr=broker_log,
            )
        boot = current_boot_id()
        self._start_hub(boot)
        for gate in self.gates:
            enrol_demo_gate(hub_folder, self.hub, gate, now)
            self._start_gate(gate, boot)

    def _open(self, settings: Settings, boot_id: str, *, upload: bool = False) -> Store:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store.open(settings.db_path, boot_id=boot_id, mark_for_upload=upload)
        self._stores.append(store)
        return store

    def _run(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _start_hub(self, boot: str) -> None:
        store = self._open(self.hub, f"{boot}-hub")
        files = HubFiles.in_site_dir(self.hub.site_dir)
        topics = Topics(files.site_id())
        ingest = IngestChannel(site_log=store.site_log, topics=topics, clock=self.clock)
        loop = files.loop(
            BrokerAddress.parse(str(self.hub["site.hub"])),
            channels=[ingest, *hub_channels(self.hub, store, topics, self.clock)],
            clock=self.clock,
        )
        self._loops.append(loop)
        self._run("hub", loop.run)

    def _start_gate(self, gate: Settings, boot: str) -> None:
        gate_id = str(gate["gate.id"])
        # Gates on one machine share the kernel's boot id: each gets its own.
        kiosk = self._open(gate, f"{boot}-{gate_id}", upload=True)
        sync_store = self._open(gate, f"{boot}-{gate_id}-sync")
        loop, _ = build_sync(
            gate,
            outbox=sync_store.outbox,
            clock=self.clock,
            extra_channels=gate_channels(gate, sync_store, self.clock),
        )
        self._loops.append(loop)
        self._run(f"sync-{gate_id}", loop.run)
        self._run(f"visitors-{gate_id}", lambda: self._visitors(gate, kiosk))

    def _visitors(self, gate: Settings, store: Store) -> None:
        """Record a visitor now and then, entering if not inside the site, else leaving."""
        gate_id = str(gate["gate.id"])
        key = load_or_create_key(gate.key_path)
        chance = random.Random(gate_id)  # noqa: S311 - made-up visitors, not secrets
        expiry_h = float(gate["policy.presence_expiry_h"])
        while not self.stop_event.wait(VISIT_EVERY_S * chance.uniform(0.5, 1.5)):
            n = chance.randrange(CROWD)
            hashed = subject_hash(key, f"person:demo-{n:03d}")
            now = self.clock.now()
            inside = store.presence_of(hashed, now=now, expiry_h=expiry_h) is not None
            refused = chance.random() < 0.1
            try:
                store.record(
                    NewEvent(
                        gate_id=gate_id,
                        at=now,
                        utc_offset_min=420,
                        clock_synced=True,
                        direction="out" if inside else "in",
                        decision="deny" if refused else "allow",
                        reason="expired" if refused else "ok",
                        kind="cccd",
                        subject_hash=hashed,
                        display_name=NAMES[n % len(NAMES)],
                        masked_id=f"0792******{n:02d}",
                    )
                )
            except GateError as exc:
                log.warning("demo gate %s could not record a visitor: %s", gate_id, exc)

    def stop(self) -> None:
        self.stop_event.set()
        for loop in self._loops:
            loop.stop()
        for thread in self._threads:
            thread.join(timeout=10)
        for store in self._stores:
            store.close()
        if self.broker is not None:
            self.broker.terminate()
            try:
                self.broker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.broker.kill()
                self.broker.wait()


def run_site_demo(
    *,
    data_dir: Path,
    gates: int,
    seconds: float | None,
    out: TextIO | None = None,
    web_port: int = 8080,
    province: bool = False,
    keep: bool = False,
) -> Path:
    """Run the site demo until Ctrl-C or ``seconds``; the folder it ran in.

    ``province``: a province beside it, on a throwaway PostgreSQL
    (:mod:`kiosk.demo_province`), removed at the end unless ``keep``.
    """
    from kiosk.demo_postgres import postgres_bindir

    out = out or sys.stdout
    mosquitto_binary()  # before making anything
    bindir = postgres_bindir() if province else None
    data_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="site-", dir=data_dir))
    clock = SystemClock()
    site = DemoSite(folder, gates, clock=clock)
    web = None
    demo_province = None
    try:
        site.start()
        hub = site.hub
        province_web = None
        if bindir is not None:
            from kiosk.demo_province import DemoProvince

            out.write(
                "Đang dựng cấp tỉnh trên PostgreSQL tạm... / "
                "setting up a province on a throwaway PostgreSQL...\n"
            )
            out.flush()
            demo_province = DemoProvince(folder, bindir, port=free_port(), clock=clock, keep=keep)
            next_port = web_port + 1 if 0 < web_port < 65535 else 0
            province_web = demo_province.start(site.hub, web_port=next_port)
            # The hub's web, like a hub's with [uplink] settings: its
            # Self-assessment page is the province's checklist to fill.
            hub = with_values(site.hub, {"uplink.dsn": demo_province.hub_uplink_dsn})
        web = start_demo_web(hub, clock=clock, port=web_port)
        out.write(
            f"gatekiosk demo: một khu {gates} cổng và một trạm trung tâm / a site of {gates} "
            f"gates and one hub, in {folder}. Ctrl-C để dừng / to stop.\n"
            f"Trang quản trị của trạm / Admin page (hub): {web.url}  user: {DEMO_MANAGER}  "
            f"password (this run only): {web.password}  (mật khẩu chỉ cho lần chạy này)\n"
            f"Các cổng / Site: {web.url}site/status\n"
        )
        if province_web is not None and demo_province is not None:
            from kiosk.demo_province import province_lines

            assert demo_province.postgres is not None
            out.write(
                f"Tự đánh giá của khu / the site's self-assessment: {web.url}site/assessment\n"
            )
            out.write(province_lines(province_web, demo_province.postgres, keep=keep))
        out.flush()
        deadline = clock.monotonic() + seconds if seconds is not None else None
        try:
            while not site.stop_event.wait(0.2):
                if deadline is not None and clock.monotonic() >= deadline:
                    break
        except KeyboardInterrupt:
            pass
    finally:
        try:
            if web is not None:
                web.stop()
            if demo_province is not None:
                demo_province.stop()
        finally:
            site.stop()
    return folder
