"""A generated corpus of gate-camera frames with QR codes, hard cases included.

Each category varies one difficulty (size, angle and tilt, blur, low
contrast, glare, phone-screen moiré, inverted colours) around an otherwise
ordinary presentation; "mixed" combines several. Payloads are the kinds the
gate reads (chip ID card, PC-Covid, an HC1 certificate, a site code) and
random bytes, so the symbols range from version 3 to about 20. Frames are
rendered with :func:`kiosk.synthetic.render_code_frame` from a fixed seed:
the same corpus every run.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from kiosk.camera import GreyImage
from kiosk.synthetic import render_code_frame

CAMERA_SIZES = ((640, 480), (1280, 720))


@dataclass(frozen=True)
class CorpusFrame:
    category: str
    size: tuple[int, int]
    grey: GreyImage
    expected: bytes


def _payloads(rng: np.random.Generator) -> list[bytes]:
    cccd = (
        "079201000123|245123456|Nguyễn Thị Minh Khai|01021990|Nữ|"
        "12 Lê Lợi, Phường Bến Nghé, Quận 1, TP Hồ Chí Minh|15082021"
    )
    pc_covid = "0792********|NGUYEN VAN AN|1990-02-01|1|QID12345678|EXT"
    hcert = "HC1:" + base64.b32encode(rng.bytes(220)).decode().replace("=", "")
    site = "GK1:" + base64.urlsafe_b64encode(rng.bytes(96)).decode()
    return [
        cccd.encode("utf-8"),
        pc_covid.encode("utf-8"),
        hcert.encode("ascii"),
        site.encode("ascii"),
        rng.bytes(int(rng.integers(20, 120))),
    ]


# Each category: a function of the generator returning render_code_frame keywords.
Params = Callable[[np.random.Generator], dict[str, Any]]


def _base(rng: np.random.Generator) -> dict[str, Any]:
    return {
        "module_px": float(rng.uniform(3.0, 5.5)),
        "angle_deg": float(rng.uniform(-20, 20)),
        "perspective": float(rng.uniform(0.0, 0.1)),
        "center": (float(rng.uniform(0.4, 0.6)), float(rng.uniform(0.4, 0.6))),
        "carrier": "phone" if rng.random() < 0.5 else "paper",
    }


CATEGORIES: dict[str, Params] = {
    "ordinary": lambda r: {},
    "small": lambda r: {"module_px": float(r.uniform(1.4, 2.4))},
    "large": lambda r: {"module_px": float(r.uniform(9.0, 14.0)), "blur_sigma": 2.0},
    "angle+tilt": lambda r: {
        "angle_deg": float(r.uniform(-60, 60)),
        "perspective": float(r.uniform(0.2, 0.4)),
    },
    "blur": lambda r: {"blur_sigma": float(r.uniform(1.4, 2.4))},
    "low contrast": lambda r: {"contrast": float(r.uniform(0.12, 0.3)), "noise_sigma": 4.0},
    "glare": lambda r: {"glare": float(r.uniform(0.5, 0.9))},
    "moire": lambda r: {"carrier": "phone", "moire": float(r.uniform(0.35, 0.7))},
    "inverted": lambda r: {"inverted": True, "carrier": "phone"},
    "mixed": lambda r: {
        "module_px": float(r.uniform(2.0, 3.5)),
        "blur_sigma": float(r.uniform(1.0, 1.8)),
        "contrast": float(r.uniform(0.3, 0.6)),
        "glare": float(r.uniform(0.0, 0.6)),
        "angle_deg": float(r.uniform(-45, 45)),
        "perspective": float(r.uniform(0.0, 0.25)),
    },
}


def corpus(per_category: int = 20, *, seed: int = 2021) -> Iterator[CorpusFrame]:
    """``per_category`` frames of every category, alternating the two camera sizes."""
    for c_index, (category, params) in enumerate(CATEGORIES.items()):
        for i in range(per_category):
            rng = np.random.default_rng([seed, c_index, i])
            payloads = _payloads(rng)
            expected = payloads[i % len(payloads)]
            size = CAMERA_SIZES[i % len(CAMERA_SIZES)]
            kwargs = _base(rng) | params(rng)
            grey = render_code_frame(expected, size=size, rng=rng, **kwargs)
            yield CorpusFrame(category, size, grey, expected)
