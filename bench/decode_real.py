"""Decode rate and time per frame of each decoder backend on real QR photos.

Reads every image in ../shared/data/qr-real-dev (qrcode-1..3, expected
payload beside each image as UTF-8 text) as grey with OpenCV, decodes it with
each backend, and counts an image as correct when one of the codes read has
``code.text.encode("utf-8")`` equal to the expected bytes. The text is what
must match because several payloads are Shift-JIS in the symbol while the
``.txt`` holds them as UTF-8. Images in falsepositives-1 contain no QR code:
every code reported there is a false positive.

Usage: .venv/bin/python bench/decode_real.py [--data DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from kiosk.decoder import DECODER_NAMES, Decoder, make_decoder

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "qr-real-dev"
CODE_DIRS = ("qrcode-1", "qrcode-2", "qrcode-3")
NEGATIVE_DIR = "falsepositives-1"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Sample:
    path: Path
    grey: np.ndarray
    expected: bytes | None  # None: no code in the image


@dataclass
class Tally:
    correct: set[Path] = field(default_factory=set)
    false_positives: int = 0
    times_ms: list[float] = field(default_factory=list)


def load_samples(root: Path) -> tuple[list[Sample], list[Sample]]:
    """(images with a code, images without) in a stable order."""
    positives: list[Sample] = []
    negatives: list[Sample] = []
    for sub in (*CODE_DIRS, NEGATIVE_DIR):
        for path in sorted((root / sub).iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if grey is None:
                raise SystemExit(f"cannot read {path}")
            if sub == NEGATIVE_DIR:
                negatives.append(Sample(path, grey, None))
            else:
                expected = path.with_suffix(".txt").read_bytes()
                positives.append(Sample(path, grey, expected))
    return positives, negatives


def run(decoder: Decoder, positives: list[Sample], negatives: list[Sample], repeat: int) -> Tally:
    tally = Tally()
    for sample in (*positives, *negatives):
        best_ms = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            codes = decoder.decode(sample.grey)
            best_ms = min(best_ms, (time.perf_counter() - start) * 1000.0)
        tally.times_ms.append(best_ms)
        if sample.expected is None:
            tally.false_positives += len(codes)
        elif any(code.text.encode("utf-8") == sample.expected for code in codes):
            tally.correct.add(sample.path)
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--repeat", type=int, default=1, help="decode each image N times, keep the fastest"
    )
    args = parser.parse_args()
    positives, negatives = load_samples(args.data)
    print(f"{len(positives)} images with a code, {len(negatives)} without ({args.data})")
    sizes = sorted(s.grey.shape for s in (*positives, *negatives))
    print(f"image size: median {sizes[len(sizes) // 2]}, largest {max(sizes, key=np.prod)} (h, w)")
    print(f"{'backend':8} {'correct':>12} {'false pos':>9} {'median ms':>10} {'mean ms':>8}")
    tallies: dict[str, Tally] = {}
    for name in DECODER_NAMES:
        decoder = make_decoder(name)
        decoder.decode(positives[0].grey)  # warm-up: library loading, allocations
        tally = run(decoder, positives, negatives, args.repeat)
        tallies[name] = tally
        rate = len(tally.correct) / len(positives)
        print(
            f"{name:8} {len(tally.correct):4d}/{len(positives)} {rate:5.1%} "
            f"{tally.false_positives:9d} {statistics.median(tally.times_ms):10.1f} "
            f"{statistics.fmean(tally.times_ms):8.1f}"
        )
    either = set().union(*(t.correct for t in tallies.values()))
    print(f"either   {len(either):4d}/{len(positives)}")
    for name, tally in tallies.items():
        missed = sorted(
            str(s.path.relative_to(args.data)) for s in positives if s.path not in tally.correct
        )
        print(f"{name} missed: {' '.join(missed)}")


if __name__ == "__main__":
    main()
