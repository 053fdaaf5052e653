"""Several gates, one hub, and random SIGKILLs: does every event reach the
site database exactly once, how fast, and how fast does a backlog catch up?

On this machine, on loopback: the real Mosquitto (a test site's PKI, from
:mod:`tests.mosquitto_fixture`), ``gatekiosk hub``, one ``gatekiosk sync``
per gate, and per gate a *writer* process that records synthetic events
through the real :class:`~kiosk.store.Store` at a steady rate (as a kiosk
would, one committed transaction per event; no camera).

Phases:

1. calm: everything runs, no faults; gate-to-site-database latency
   (recorded at the gate -> committed at the hub, one machine clock);
2. chaos: the broker, the hub and the syncs are SIGKILLed at random moments
   and restarted; then the writers stop and every event is accounted for
   (ids at the gates against ids in the site database: lost, doubled);
3. catch-up: gate-1's sync stops, ``--backlog`` events are added to its
   database, the sync starts again: time until the backlog is in the site
   database, and gate-1's record time (a kiosk's decision path) before and
   during the catch-up.

Hub and broker RSS are sampled throughout (the maximum is reported).

Usage: .venv/bin/python -m bench.site_chaos [--gates 3] [--rate 20] [--calm-s 15]
       [--chaos-s 60] [--broker-kills 5] [--hub-kills 3] [--sync-kills 3] [--backlog 20000]
Writes bench/report-site-chaos.md and bench/report-site-chaos.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


# --- the writer process -------------------------------------------------------


def writer_main(db: Path, gate_id: str, rate: float, out: Path) -> None:
    """Record events at ``rate`` a second until SIGTERM; then write record times."""
    from kiosk.store import Store, StoreError
    from tests.site_sync_harness import synthetic_event

    stopping = False
    failures = 0

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    timings: list[tuple[float, float]] = []  # (monotonic at start, seconds to record)
    with Store.open(db, boot_id=f"boot-of-{gate_id}", mark_for_upload=True) as store:
        period = 1.0 / rate
        due = time.monotonic()
        n = 0
        while not stopping:
            started = time.monotonic()
            try:
                store.record(synthetic_event(gate_id, datetime.now(UTC), n))
            except StoreError:  # a real gate would refuse (store fault): counted
                failures += 1
                continue
            timings.append((started, time.monotonic() - started))
            n += 1
            due += period
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                due = time.monotonic()
    out.write_text(json.dumps({"recorded": n, "failures": failures, "timings": timings}))


# --- the harness ---------------------------------------------------------------


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def histogram_percentile(histogram: dict[int, int], p: float) -> float:
    total = sum(histogram.values())
    if not total:
        return float("nan")
    target = p / 100 * total
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= target:
            return float(bucket)
    return float(max(histogram))


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def enrol_more_gates(site: Any, folder: Path, gates: list[str]) -> None:
    """The test site has two gates; enrol the others as `site join` would."""
    from kiosk.site.enrolment import enrol_gate
    from kiosk.site.pki import new_private_key, write_private_key
    from tests.mosquitto_fixture import ClientFiles

    for gate_id in gates:
        if gate_id in site.gates:
            continue
        key = new_private_key()
        key_path = folder / "gates" / f"{gate_id}.key"
        write_private_key(key_path, key)
        enrol_gate(site.pki, gate_id, key.public_key(), now=datetime.now(UTC))
        site.gates[gate_id] = ClientFiles(
            site.pki.ca_certificate, site.pki.gate_certificate(gate_id), key_path
        )


class Chaos:
    def __init__(self, folder: Path, gates: list[str], rate: float) -> None:
        from tests.mosquitto_fixture import make_site, start_broker
        from tests.site_sync_harness import SiteRig

        site = make_site(folder, now=datetime.now(UTC))
        enrol_more_gates(site, folder, gates)
        self.site = site
        self.rig = SiteRig(folder, site, start_broker(site, folder))
        self.gates = gates
        self.rate = rate
        self.folder = folder
        self.hub: subprocess.Popen[bytes] | None = None
        self.hub_runs = 0
        self.syncs: dict[str, subprocess.Popen[bytes]] = {}
        self.writers: dict[str, subprocess.Popen[bytes]] = {}
        self.max_rss = {"hub": 0.0, "broker": 0.0}
        self.kills = {"broker": 0, "hub": 0, "sync": 0}

    def stats_path(self, run: int) -> Path:
        return self.folder / f"hub-stats-{run}.json"

    def start_hub(self) -> None:
        self.hub_runs += 1
        self.rig.hub_stats = self.stats_path(self.hub_runs)
        self.hub = self.rig.start_hub()

    def start_sync(self, gate_id: str) -> None:
        self.syncs[gate_id] = self.rig.start_sync(gate_id, ack_timeout_s=3.0)

    def start_writer(self, gate_id: str) -> None:
        self.rig.gate_data(gate_id).mkdir(parents=True, exist_ok=True)
        self.writers[gate_id] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.site_chaos",
                "writer",
                str(self.rig.gate_db(gate_id)),
                gate_id,
                str(self.rate),
                str(self.folder / f"writer-{gate_id}.json"),
            ],
            env={**os.environ, "PYTHONPATH": str(HERE.parent)},
        )

    def sample(self) -> None:
        if self.hub is not None:
            self.max_rss["hub"] = max(self.max_rss["hub"], rss_mb(self.hub.pid))
        self.max_rss["broker"] = max(self.max_rss["broker"], rss_mb(self.rig.broker.process.pid))

    def wait(self, condition: Any, timeout_s: float, what: str) -> float:
        start = time.monotonic()
        while not condition():
            self.sample()
            if time.monotonic() - start > timeout_s:
                raise SystemExit(f"not within {timeout_s} s: {what}")
            time.sleep(0.05)
        return time.monotonic() - start

    def run_for(self, seconds: float, faults: list[tuple[float, str]]) -> None:
        start = time.monotonic()
        pending = sorted(faults)
        while time.monotonic() - start < seconds:
            self.sample()
            while pending and time.monotonic() - start >= pending[0][0]:
                _, kind = pending.pop(0)
                self.fault(kind)
            time.sleep(0.05)

    def fault(self, kind: str) -> None:
        self.kills[kind.split(":")[0]] += 1
        if kind == "broker":
            self.rig.restart_broker(kill=True)
        elif kind == "hub":
            assert self.hub is not None
            self.hub.kill()
            self.hub.wait()
            self.start_hub()
        else:
            gate_id = kind.split(":")[1]
            self.syncs[gate_id].kill()
            self.syncs[gate_id].wait()
            self.start_sync(gate_id)

    def latency(self, runs: range) -> dict[int, int]:
        merged: dict[int, int] = {}
        for run in runs:
            path = self.stats_path(run)
            if path.exists():
                for bucket, count in json.loads(path.read_text())["latency_ms"].items():
                    merged[int(bucket)] = merged.get(int(bucket), 0) + count
        return merged

    def stop(self) -> None:
        for process in [*self.writers.values(), *self.syncs.values()]:
            if process.poll() is None:
                process.terminate()
        self.rig.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gates", type=int, default=3)
    parser.add_argument("--rate", type=float, default=20.0, help="events a second per gate")
    parser.add_argument("--calm-s", type=float, default=15.0)
    parser.add_argument("--chaos-s", type=float, default=60.0)
    parser.add_argument("--broker-kills", type=int, default=5)
    parser.add_argument("--hub-kills", type=int, default=3)
    parser.add_argument("--sync-kills", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "report-site-chaos.md")
    args = parser.parse_args()
    random.seed(args.seed)
    gates = [f"gate-{i + 1}" for i in range(args.gates)]
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="site-chaos-") as tmp:
        chaos = Chaos(Path(tmp), gates, args.rate)
        try:
            chaos.start_hub()
            for gate_id in gates:
                chaos.start_writer(gate_id)
                chaos.start_sync(gate_id)
            print(f"calm phase, {args.calm_s:.0f} s", flush=True)
            chaos.run_for(args.calm_s, [])
            calm = chaos.latency(range(1, chaos.hub_runs + 1))
            faults = [(random.uniform(0, args.chaos_s), "broker") for _ in range(args.broker_kills)]
            faults += [(random.uniform(0, args.chaos_s), "hub") for _ in range(args.hub_kills)]
            faults += [
                (random.uniform(0, args.chaos_s), f"sync:{random.choice(gates)}")
                for _ in range(args.sync_kills)
            ]
            print(f"chaos phase, {args.chaos_s:.0f} s, {len(faults)} kills", flush=True)
            chaos.run_for(args.chaos_s, faults)
            for writer in chaos.writers.values():
                writer.terminate()
                writer.wait()
            drained = chaos.wait(lambda: chaos.rig.all_uploaded(gates), 300, "the final drain")
            chaos.run_for(1.5, [])  # the hub writes its statistics every second
            from tests.site_sync_harness import account

            recorded, lost, doubled = account(chaos.rig, gates)
            extra = len(set(chaos.rig.site_event_ids())) - recorded
            everything = chaos.latency(range(1, chaos.hub_runs + 1))
            results["exactly_once"] = {
                "recorded": recorded,
                "in_site_db": len(chaos.rig.site_event_ids()),
                "lost": lost,
                "doubled": doubled,
                "unknown_at_gates": extra,
                "kills": dict(chaos.kills),
                "drain_after_writers_stopped_s": round(drained, 2),
            }
            results["latency_ms"] = {
                "calm_p50": histogram_percentile(calm, 50),
                "calm_p99": histogram_percentile(calm, 99),
                "calm_events": sum(calm.values()),
                "all_p50": histogram_percentile(everything, 50),
                "all_p99": histogram_percentile(everything, 99),
                "all_events": sum(everything.values()),
            }
            print(json.dumps(results, indent=1), flush=True)

            # Catch-up: gate-1 offline with a backlog, its kiosk still recording.
            gate = gates[0]
            chaos.syncs[gate].terminate()
            chaos.syncs[gate].wait()
            print(f"recording a backlog of {args.backlog} events at {gate}", flush=True)
            chaos.rig.record(gate, args.backlog, per_transaction=5000)
            backlog_end = chaos.rig.gate_last_rowid(gate)
            chaos.start_writer(gate)
            chaos.run_for(3.0, [])  # the writer starts
            before_start = time.monotonic()
            chaos.run_for(5.0, [])  # the writer's record time with no sync running
            catch_start = time.monotonic()
            chaos.start_sync(gate)
            # The backlog is caught up when none of it is pending; the kiosk's new
            # events (20 a second) are always a few in flight, so not all pending.
            caught = chaos.wait(
                lambda: chaos.rig.gate_pending(gate, up_to_rowid=backlog_end) == 0,
                1800,
                "the catch-up",
            )
            catch_end = time.monotonic()
            writer = chaos.writers[gate]
            writer.terminate()
            writer.wait()
            written = json.loads((chaos.folder / f"writer-{gate}.json").read_text())
            timings = written["timings"]
            idle = sorted(d * 1000 for t, d in timings if before_start <= t < catch_start)
            busy = sorted(d * 1000 for t, d in timings if catch_start <= t < catch_end)
            results["catch_up"] = {
                "backlog": args.backlog,
                "seconds": round(caught, 1),
                "events_per_s": round(args.backlog / caught) if caught else None,
                "record_ms_before": {"p50": percentile(idle, 50), "p99": percentile(idle, 99)},
                "record_ms_during": {"p50": percentile(busy, 50), "p99": percentile(busy, 99)},
                "record_failures": written["failures"],
            }
            results["rss_mb_max"] = {k: round(v, 1) for k, v in chaos.max_rss.items()}
        finally:
            chaos.stop()
    results["machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
    }
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    args.out.write_text(report(results))
    print(report(results))


def report(r: dict[str, Any]) -> str:
    e = r["exactly_once"]
    lat = r["latency_ms"]
    c = r.get("catch_up", {})
    before = c.get("record_ms_before", {})
    during = c.get("record_ms_during", {})
    rss = r.get("rss_mb_max", {})
    a = r["args"]
    options = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in a.items() if k != "out")
    kills = e["kills"]
    lines = [
        "# Site chaos: gates -> broker -> hub, with SIGKILLs",
        "",
        f"`python -m bench.site_chaos {options}`.",
        f"{a['gates']} gates, each a writer process recording {a['rate']} events/s through",
        "the real Store and a `gatekiosk sync`; one `gatekiosk hub`; the real Mosquitto;",
        f"loopback, TLS, one machine ({r['machine']['cpus']} CPUs shared with other work;",
        f"load average at the end {r['machine']['load_average_at_end']}).",
        "",
        "## Exactly once",
        "| recorded at the gates | in the site database | lost | doubled | unknown at gates |",
        "|---|---|---|---|---|",
        f"| {e['recorded']} | {e['in_site_db']} | {e['lost']} | {e['doubled']} "
        f"| {e['unknown_at_gates']} |",
        "",
        f"Kills (SIGKILL, then restart): broker {kills['broker']}, hub {kills['hub']}, "
        f"sync {kills['sync']}. After the writers stopped, the last events were in the",
        f"site database within {e['drain_after_writers_stopped_s']} s.",
        "",
        "## Gate to site database (recorded at -> committed at the hub, ms)",
        "| phase | events | p50 | p99 |",
        "|---|---|---|---|",
        f"| calm | {lat['calm_events']} | {lat['calm_p50']:.0f} | {lat['calm_p99']:.0f} |",
        f"| whole run, kills included | {lat['all_events']} | {lat['all_p50']:.0f} "
        f"| {lat['all_p99']:.0f} |",
        "",
        "Each event counts once, when the hub first commits it; buckets of 1 ms below 1 s,",
        "10 ms below 10 s. A killed hub loses up to its last second of statistics (not events).",
        "",
        "## Catch-up of a backlog",
        f"{c.get('backlog')} events waiting at gate-1 went up in {c.get('seconds')} s "
        f"({c.get('events_per_s')} events/s) while its writer kept recording.",
        "gate-1's record time (the kiosk's commit, ms): "
        f"before p50 {before.get('p50', float('nan')):.1f} "
        f"/ p99 {before.get('p99', float('nan')):.1f};",
        f"during the catch-up p50 {during.get('p50', float('nan')):.1f} "
        f"/ p99 {during.get('p99', float('nan')):.1f}; records refused (store fault): "
        f"{c.get('record_failures')}.",
        "",
        "## Memory",
        f"Largest RSS sampled: hub {rss.get('hub')} MB, broker {rss.get('broker')} MB.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "writer":
        writer_main(Path(sys.argv[2]), sys.argv[3], float(sys.argv[4]), Path(sys.argv[5]))
    else:
        main()
