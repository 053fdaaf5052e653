"""The benchmark suite: every figure of the performance issue, one run, one report.

Run with ``make bench`` (or ``.venv/bin/python -m bench.run``). Not part of
the test run: it takes minutes and its figures depend on the machine. Writes
``bench/report.md`` and ``bench/report.json``: the machine, the versions,
every figure, and each target as a ratio measured in this run.

Sections:

1. Decode quality and cost: the real photos (../shared/data/qr-real-dev) and
   a generated corpus (bench/corpus.py), each backend alone, the pipeline and
   the pipeline without each of its steps; false positives on the photos
   without codes and on empty synthetic frames.
2. Per-frame cost on empty frames and on frames with a code, at 640x480 and
   1280x720, and the frames per second one core sustains.
3. Glass-to-light latency: the real scan loop (SyntheticSource at 30 fps on
   the system clock, the real decoder, a real Store with synchronous=FULL,
   GpiozeroSignals on gpiozero's MockFactory), from the capture time of the
   first frame showing a code to the relay pin's rising edge.
4. The store: events recorded per second (synchronous=FULL), and exporting a
   million events to CSV and XLSX next to the sqlite3 shell's CSV export.

Usage: .venv/bin/python -m bench.run [--quick] [--rows N] [--presentations N]
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from bench import export_bench
from bench.corpus import CAMERA_SIZES, corpus
from bench.decode_real import DEFAULT_DATA, load_samples
from kiosk.camera import GreyImage
from kiosk.decoder import Decoder, PipelineDecoder, ZbarDecoder, ZxingDecoder
from kiosk.synthetic import FrameRenderer, render_code_frame

HERE = Path(__file__).resolve().parent
REPORT_MD = HERE / "report.md"
REPORT_JSON = HERE / "report.json"


# --------------------------------------------------------------------------- decoders


def decoders() -> dict[str, Decoder]:
    """Every decoder the report compares, by the name it is shown under."""
    return {
        "zxing": ZxingDecoder(),
        "zbar": ZbarDecoder(),
        "pipeline": PipelineDecoder(),
        "pipeline without second look": PipelineDecoder(steps=("retry", "zbar")),
        "pipeline without retries": PipelineDecoder(steps=("second-look",)),
        "pipeline without zbar retry": PipelineDecoder(steps=("second-look", "retry")),
        "pipeline, zxing downscale on": PipelineDecoder(primary=ZxingDecoder(return_errors=True)),
    }


# --------------------------------------------------------------------------- 1. quality


def decode_quality(per_category: int) -> dict[str, Any]:
    positives, negatives = load_samples(DEFAULT_DATA)
    frames = list(corpus(per_category))
    empty = [
        FrameRenderer(size=size, rng=np.random.default_rng([7, i])).render([])
        for i in range(25)
        for size in CAMERA_SIZES
    ]
    result: dict[str, Any] = {
        "real_images_with_code": len(positives),
        "real_images_without_code": len(negatives),
        "corpus_frames": len(frames),
        "corpus_per_category": per_category,
        "empty_synthetic_frames": len(empty),
        "backends": {},
    }
    for name, decoder in decoders().items():
        print(f"  decode quality: {name}", file=sys.stderr)
        decoder.decode(positives[0].grey)  # warm-up
        real_ok, real_ms, real_missed = 0, [], []
        for sample in positives:
            start = time.perf_counter()
            codes = decoder.decode(sample.grey)
            real_ms.append((time.perf_counter() - start) * 1000)
            # The .txt holds UTF-8 text; some symbols hold it as Shift-JIS, so compare the text's
            # UTF-8 bytes, exactly.
            if any(c.text.encode("utf-8") == sample.expected for c in codes):
                real_ok += 1
            else:
                real_missed.append(str(sample.path.relative_to(DEFAULT_DATA)))
        false_real = sum(len(decoder.decode(s.grey)) for s in negatives)
        false_empty = sum(len(decoder.decode(g)) for g in empty)
        by_category: dict[str, int] = collections.Counter()
        corpus_ms = []
        for frame in frames:
            start = time.perf_counter()
            codes = decoder.decode(frame.grey)
            corpus_ms.append((time.perf_counter() - start) * 1000)
            by_category[frame.category] += any(c.raw == frame.expected for c in codes)
        result["backends"][name] = {
            "real_correct": real_ok,
            "real_missed": real_missed,
            "real_ms_median": statistics.median(real_ms),
            "real_ms_mean": statistics.fmean(real_ms),
            "false_positives_real": false_real,
            "false_positives_empty_synthetic": false_empty,
            "corpus_correct": sum(by_category.values()),
            "corpus_by_category": dict(by_category),
            "corpus_ms_median": statistics.median(corpus_ms),
            "corpus_ms_mean": statistics.fmean(corpus_ms),
        }
    return result


# --------------------------------------------------------------------------- 2. cost


def _interleaved_ms(
    fns: dict[str, Callable[[GreyImage], object]], frames: Sequence[GreyImage], rounds: int
) -> dict[str, list[float]]:
    """Per round, the mean ms per frame of each function over ``frames``; the
    functions take turns within a round, so machine noise hits them alike."""
    for fn in fns.values():
        for grey in frames:
            fn(grey)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for grey in frames:
                fn(grey)
            times[name].append((time.perf_counter() - start) * 1000 / len(frames))
    return times


def frame_cost(rounds: int) -> dict[str, Any]:
    zxing = ZxingDecoder()
    zxing_errors = ZxingDecoder(return_errors=True)
    zbar = ZbarDecoder()
    pipeline = PipelineDecoder()
    results: dict[str, Any] = {}
    for size in CAMERA_SIZES:
        label = f"{size[0]}x{size[1]}"
        print(f"  frame cost {label}", file=sys.stderr)
        empty = [
            FrameRenderer(size=size, rng=np.random.default_rng([11, i])).render([])
            for i in range(6)
        ]
        with_code = [
            render_code_frame(
                f"079201{i:06d}|025123456|Nguyễn Văn An|15031990|Nam|Quận 1|01072021",
                size=size,
                module_px=3.0 if size[0] == 640 else 5.0,
                angle_deg=7.0 * i,
                rng=np.random.default_rng([12, i]),
            )
            for i in range(6)
        ]
        fns: dict[str, Callable[[GreyImage], object]] = {
            "zxing": zxing.decode,
            "zxing return_errors": zxing_errors.detect,
            "pipeline": pipeline.decode,
        }
        entry: dict[str, Any] = {}
        for kind, frames in (("empty", empty), ("with code", with_code)):
            times = _interleaved_ms(fns, frames, rounds)
            zbar_times = _interleaved_ms({"zbar": zbar.decode}, frames, max(3, rounds // 10))
            times.update(zbar_times)
            entry[kind] = {
                name: {
                    "ms_median": statistics.median(ts),
                    "fps_one_core": 1000 / statistics.median(ts),
                }
                for name, ts in times.items()
            }
            ratios = [p / z for p, z in zip(times["pipeline"], times["zxing"], strict=True)]
            entry[kind]["pipeline_to_zxing_ratio"] = statistics.median(ratios)
            errors = [
                p / z for p, z in zip(times["zxing return_errors"], times["zxing"], strict=True)
            ]
            entry[kind]["return_errors_to_zxing_ratio"] = statistics.median(errors)
        results[label] = entry
    return results


# --------------------------------------------------------------------------- 3. latency


def latency(presentations: int, fps: float) -> dict[str, Any]:
    """Glass-to-light through the real loop on the system clock."""
    from gpiozero.pins.mock import MockFactory

    from gate_controller.gpio import GpiozeroSignals
    from gate_controller.pins import PinConfig
    from kiosk.camera import SyntheticSource
    from kiosk.clock import SystemClock
    from kiosk.codes import Registry, default_formats
    from kiosk.policy import PolicyRules
    from kiosk.scanner import GateParts, GateSetup, Outcome, ScanHooks, Scanner, ScanSettings
    from kiosk.store import Store
    from kiosk.synthetic import Scene

    code_s, gap_s, lead_s = 0.5, 0.4, 1.0
    schedule = [Scene((), lead_s)]
    for i in range(presentations):
        payload = (
            f"0792{i:08d}|025123456|Nguyễn Văn An|15031990|Nam|"
            "12 Lê Lợi, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh|01072021"
        )
        schedule += [Scene((payload,), code_s), Scene((), gap_s)]
    # Relay wired active-high here, so that energising it is the pin's rising edge.
    pins = PinConfig(
        green=17, red=27, buzzer=22, relay=23, button=24, status=25,
        relay_pulse_ms=100, light_ms=200, relay_active_high=True,
    )  # fmt: skip
    clock = SystemClock()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="latency-bench-") as work:
        factory = MockFactory()
        signals = GpiozeroSignals(pins, pin_factory=factory)
        source = SyntheticSource(schedule, clock=clock, fps=fps, seed=5)
        decoder = PipelineDecoder()
        with Store.open(Path(work) / "gate.db", boot_id="bench") as store:
            scanner = Scanner(
                parts=GateParts(source, decoder, signals, pin_backend="MockFactory"),
                registry=Registry(default_formats()),
                store=store,
                clock=clock,
                setup=GateSetup(
                    PolicyRules(),
                    ScanSettings(gate_id="bench", timezone=ZoneInfo("Asia/Ho_Chi_Minh")),
                ),
                hash_key=b"k" * 32,
                hooks=ScanHooks(on_outcome=outcomes.append),
            )
            relay = factory.pin(23)
            relay.clear_states()
            started = time.monotonic()
            scanner.run(threading.Event())
            # The relay pulse ends on a timer thread; let the last one finish.
            time.sleep(0.3)
            # MockPin.states: (seconds since the previous change, state); the last change
            # happened at relay._last_change on time.monotonic(), so walk back from there.
            states = list(relay.states)
            change_times = [relay._last_change]
            for state in reversed(states[1:]):
                change_times.append(change_times[-1] - state.timestamp)
            change_times.reverse()
            rises = [
                t
                for t, (before, after) in zip(
                    change_times[1:], itertools.pairwise(states), strict=True
                )
                if after.state and not before.state
            ]
            capture_start = source._pacer.time_of(0)
        signals.close()
        factory.close()
    # The first frame showing presentation k: scene 1 + 2k starts at lead + k * (code + gap).
    starts = [lead_s + k * (code_s + gap_s) for k in range(presentations)]
    first_frames = [int(np.ceil(s * fps - 1e-6)) for s in starts]
    glass = [capture_start + i / fps for i in first_frames]
    latencies_ms: list[float] = []
    unmatched = 0
    for k, captured in enumerate(glass):
        window_end = glass[k + 1] if k + 1 < len(glass) else float("inf")
        rise = next((r for r in rises if captured <= r < window_end), None)
        if rise is None:
            unmatched += 1
        else:
            latencies_ms.append((rise - captured) * 1000)
    allowed = sum(1 for o in outcomes if o.decision.allowed)
    ordered = sorted(latencies_ms)

    def pct(p: float) -> float:
        return float(np.percentile(ordered, p)) if ordered else float("nan")

    return {
        "fps": fps,
        "frame_interval_ms": 1000 / fps,
        "presentations": presentations,
        "allowed_outcomes": allowed,
        "relay_rises": len(rises),
        "unmatched_presentations": unmatched,
        "median_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "max_ms": max(ordered) if ordered else float("nan"),
        "loop_latency_ms_median_scanner_view": statistics.median(o.latency_ms for o in outcomes)
        if outcomes
        else float("nan"),
        "run_s": time.monotonic() - started,
        "decoder": "pipeline",
    }


# --------------------------------------------------------------------------- 4. store


def store_rate(events: int) -> dict[str, Any]:
    from kiosk.store import NewEvent, Store

    with tempfile.TemporaryDirectory(prefix="store-bench-") as work:
        fsync_ms = []
        probe = Path(work) / "probe"
        with probe.open("wb") as f:
            for _ in range(50):
                f.write(b"x" * 512)
                start = time.perf_counter()
                os.fsync(f.fileno())
                fsync_ms.append((time.perf_counter() - start) * 1000)
        with Store.open(Path(work) / "gate.db", boot_id="bench") as store:
            (sync,) = store._conn.execute("PRAGMA synchronous").fetchone()
            start = time.perf_counter()
            for i in range(events):
                store.record(
                    NewEvent(
                        gate_id="gate-1",
                        at=datetime.now(UTC),
                        utc_offset_min=420,
                        clock_synced=True,
                        direction="in" if i % 2 else "out",
                        decision="allow",
                        reason="ok",
                        kind="cccd",
                        subject_hash=f"{i % 50:064x}",
                        display_name="Nguyễn Văn An",
                        masked_id="0792****0123",
                    )
                )
            elapsed = time.perf_counter() - start
    return {
        "events": events,
        "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(sync, str(sync)),
        "events_per_s": events / elapsed,
        "ms_per_event": elapsed * 1000 / events,
        "fsync_ms_median": statistics.median(fsync_ms),
        "fsync_ms_p95": float(np.percentile(fsync_ms, 95)),
    }


# --------------------------------------------------------------------------- report


def environment() -> dict[str, Any]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    zbar = ZbarDecoder()
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            **{d: version(d) for d in ("zxing-cpp", "pyzbar", "opencv-python", "numpy")},
            **{d: version(d) for d in ("gpiozero", "XlsxWriter", "segno")},
            "libzbar": ".".join(str(v) for v in zbar.version),
            "sqlite (library)": __import__("sqlite3").sqlite_version,
            "sqlite3 shell": subprocess.run(
                [export_bench.SQLITE_SHELL, "--version"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()[0],
        },
    }


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    quality = report["decode"]["backends"]
    best_single = max(quality["zxing"]["real_correct"], quality["zbar"]["real_correct"])
    pipe = quality["pipeline"]
    fp = pipe["false_positives_real"] + pipe["false_positives_empty_synthetic"]
    rows = [
        {
            "target": "pipeline reads strictly more real photos than the better single backend",
            "measured": f"{pipe['real_correct']} vs {best_single} "
            f"(ratio {pipe['real_correct'] / best_single:.3f})",
            "met": pipe["real_correct"] > best_single,
        },
        {
            "target": "pipeline: zero false positives",
            "measured": f"{fp} (photos without codes and empty synthetic frames)",
            "met": fp == 0,
        },
    ]
    for size, entry in report["frame_cost"].items():
        ratio = entry["empty"]["pipeline_to_zxing_ratio"]
        rows.append(
            {
                "target": f"empty {size} frame: pipeline <= 1.15x bare zxing-cpp",
                "measured": f"{ratio:.3f}x",
                "met": ratio <= 1.15,
            }
        )
    lat = report["latency"]
    limit = lat["frame_interval_ms"] + 10
    rows += [
        {
            "target": f"median glass-to-light <= one frame interval + 10 ms ({limit:.1f} ms)",
            "measured": f"{lat['median_ms']:.1f} ms (ratio {lat['median_ms'] / limit:.2f})",
            "met": lat["median_ms"] <= limit,
        },
        {
            "target": "p99 glass-to-light < 100 ms",
            "measured": f"{lat['p99_ms']:.1f} ms (ratio {lat['p99_ms'] / 100:.2f})",
            "met": lat["p99_ms"] < 100 and lat["unmatched_presentations"] == 0,
        },
    ]
    export = report["export"]
    by_task = {r["task"]: r for r in export["results"]}
    fast = by_task[export_bench.TASK_FAST_CSV]
    rows += [
        {
            "target": "CSV export <= 2x the sqlite3 shell's time",
            "measured": f"{export['fast_csv_time_ratio_to_shell']:.2f}x (store fast path; "
            f"Events path {export['csv_time_ratio_ours_to_shell']:.2f}x)",
            "met": export["fast_csv_time_ratio_to_shell"] <= 2.0,
        },
        {
            "target": f"CSV export peak memory < 150 MB for {export['rows']:,} rows",
            "measured": f"{fast['peak_rss_mb']:.0f} MB (store fast path; Events path "
            f"{by_task[export_bench.TASK_CSV]['peak_rss_mb']:.0f} MB)",
            "met": fast["peak_rss_mb"] < 150,
        },
        {
            "target": "fast CSV path writes the same bytes as the Events path",
            "measured": str(export["fast_csv_same_bytes_as_events_csv"]),
            "met": export["fast_csv_same_bytes_as_events_csv"],
        },
    ]
    return rows


def render(report: dict[str, Any]) -> str:
    env = report["environment"]
    out = [
        "# gatekiosk benchmark report",
        "",
        f"Run {env['date_utc']} on {env['cpu']} ({env['machine']}, {env['cpus']} CPUs), "
        f"{env['os']}, Python {env['python']}; load average at start "
        f"{', '.join(f'{v:.2f}' for v in env['load_average'])}. "
        f"Command: `make bench` ({report['duration_s']:.0f} s).",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    out += [
        f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |"
        for t in report["targets"]
    ]
    dq = report["decode"]
    out += [
        "",
        "## 1. Decode quality and cost",
        "",
        f"Real photos: {dq['real_images_with_code']} with a code (correct = the expected "
        f"bytes exactly), {dq['real_images_without_code']} without. Generated corpus: "
        f"{dq['corpus_frames']} frames ({dq['corpus_per_category']} per category, 640x480 "
        f"and 1280x720 alternately; correct = `Code.raw` equals the payload bytes). False "
        f"positives: codes reported on the photos without codes and on "
        f"{dq['empty_synthetic_frames']} empty synthetic frames.",
        "",
        "| decoder | real correct | real ms median / mean | false pos. (photos, empty) "
        "| corpus correct | corpus ms median / mean |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, b in dq["backends"].items():
        out.append(
            f"| {name} | {b['real_correct']}/{dq['real_images_with_code']} | "
            f"{b['real_ms_median']:.2f} / {b['real_ms_mean']:.2f} | "
            f"{b['false_positives_real']}, {b['false_positives_empty_synthetic']} | "
            f"{b['corpus_correct']}/{dq['corpus_frames']} | "
            f"{b['corpus_ms_median']:.2f} / {b['corpus_ms_mean']:.2f} |"
        )
    categories = list(next(iter(dq["backends"].values()))["corpus_by_category"])
    out += [
        "",
        "Corpus, correct per category:",
        "",
        "| decoder | " + " | ".join(categories) + " |",
        "|---|" + "---:|" * len(categories),
    ]
    for name, b in dq["backends"].items():
        out.append(
            f"| {name} | "
            + " | ".join(str(b["corpus_by_category"].get(c, 0)) for c in categories)
            + " |"
        )
    out += ["", "Real photos missed:", ""]
    for name, b in dq["backends"].items():
        out.append(f"- {name}: {', '.join(b['real_missed']) or 'none'}")
    out += [
        "",
        "## 2. Per-frame cost (median ms per frame; frames per second on one core)",
        "",
        "| frame | decoder | empty ms | empty fps | with code ms | with code fps |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for size, entry in report["frame_cost"].items():
        for name in entry["empty"]:
            if not isinstance(entry["empty"][name], dict):
                continue
            e, c = entry["empty"][name], entry["with code"][name]
            out.append(
                f"| {size} | {name} | {e['ms_median']:.3f} | {e['fps_one_core']:.0f} | "
                f"{c['ms_median']:.3f} | {c['fps_one_core']:.0f} |"
            )
    for size, entry in report["frame_cost"].items():
        out.append(
            f"\n{size}: pipeline / zxing on empty frames "
            f"{entry['empty']['pipeline_to_zxing_ratio']:.3f}x, with a code "
            f"{entry['with code']['pipeline_to_zxing_ratio']:.3f}x; zxing with "
            f"return_errors=True / without: {entry['empty']['return_errors_to_zxing_ratio']:.3f}x "
            f"(empty), {entry['with code']['return_errors_to_zxing_ratio']:.3f}x (with code)."
        )
    lat = report["latency"]
    out += [
        "",
        "## 3. Glass-to-light latency",
        "",
        f"Real loop, {lat['decoder']} decoder, SyntheticSource at {lat['fps']:.0f} fps on the "
        f"system clock, Store with synchronous=FULL in a temporary directory, GpiozeroSignals "
        f"on MockFactory (relay wired active-high). {lat['presentations']} presentations "
        f"({lat['allowed_outcomes']} allowed, {lat['relay_rises']} relay rises, "
        f"{lat['unmatched_presentations']} without a rise), {lat['run_s']:.0f} s. From the "
        "capture time of the first frame showing the code (scene start from the schedule, "
        "frame times from the source's pacing) to the relay pin's rising edge (MockPin state "
        "history).",
        "",
        "| median | p95 | p99 | max | scanner's own capture-to-signal median |",
        "|---:|---:|---:|---:|---:|",
        f"| {lat['median_ms']:.1f} ms | {lat['p95_ms']:.1f} ms | {lat['p99_ms']:.1f} ms | "
        f"{lat['max_ms']:.1f} ms | {lat['loop_latency_ms_median_scanner_view']:.1f} ms |",
    ]
    st = report["store"]
    out += [
        "",
        "## 4. The store",
        "",
        f"Recording: {st['events']} events one by one with synchronous={st['synchronous']}: "
        f"{st['events_per_s']:.0f} events/s ({st['ms_per_event']:.2f} ms each). fsync of a "
        f"small write on this VM's disk: median {st['fsync_ms_median']:.2f} ms, p95 "
        f"{st['fsync_ms_p95']:.2f} ms.",
        "",
        export_bench.render(report["export"]),
    ]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to try the suite")
    parser.add_argument("--rows", type=int, help="events to export (default 1,000,000)")
    parser.add_argument("--presentations", type=int, help="latency presentations (default 100)")
    args = parser.parse_args()
    quick = args.quick
    rows = args.rows or (20_000 if quick else 1_000_000)
    presentations = args.presentations or (10 if quick else 100)
    started = time.perf_counter()
    report: dict[str, Any] = {"environment": environment()}
    print("decode quality ...", file=sys.stderr)
    report["decode"] = decode_quality(per_category=6 if quick else 30)
    print("per-frame cost ...", file=sys.stderr)
    report["frame_cost"] = frame_cost(rounds=10 if quick else 60)
    print("latency ...", file=sys.stderr)
    report["latency"] = latency(presentations, fps=30.0)
    print("store ...", file=sys.stderr)
    report["store"] = store_rate(50 if quick else 300)
    print("export ...", file=sys.stderr)
    report["export"] = export_bench.run_export_bench(rows)
    report["duration_s"] = time.perf_counter() - started
    report["targets"] = targets(report)
    REPORT_JSON.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    REPORT_MD.write_text(render(report), encoding="utf-8")
    print(render(report))


if __name__ == "__main__":
    main()
