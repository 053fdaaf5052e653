"""Sample visitors for the demo and the simulated camera. Fictional people.

These are the static samples. The site's own signed codes (declarations,
staff passes) need the site's keys and are made when the demo starts:
see :mod:`kiosk.demo_codes`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SampleVisitor:
    label: str
    payload: str
    expected: str | None = None
    """The reason the gate gives on the first showing (e.g. ``ok``,
    ``sitecode-expired``), for the demo's documentation and its tests."""


# The chip ID card QR: ID|old ID|name|DOB ddmmyyyy|gender|address|issue date.
VISITOR_CCCD = SampleVisitor(
    "ID card (CCCD)",
    "079201000123|025123456|Nguyễn Văn An|15031990|Nam|"
    "12 Lê Lợi, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh|01072021",
    "ok",
)
# The national personal QR (decision 1405/QĐ-BTTTT), parts masked with '*'.
VISITOR_PC_COVID = SampleVisitor(
    "personal QR (PC-Covid)",
    "******000456|TRAN THI BICH NGOC|1992-**-**|0|QID-5c81d0e2a9|",
    "ok",
)
VISITOR_UNRECOGNISED = SampleVisitor(
    "a restaurant menu link", "https://example.com/thuc-don", "unrecognised"
)
VISITOR_DENYLISTED = SampleVisitor(
    "ID card of a denylisted person",
    "001095004567||Lê Hoàng Phúc|02111995|Nam|Số 5 Hàng Bài, Hoàn Kiếm, Hà Nội|20042022",
    "denylisted",
)
DENYLISTED_ID = "001095004567"
