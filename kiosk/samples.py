"""Sample visitors for the demo and the simulated camera. Fictional people.

These are the static samples. The site's own signed codes (declarations,
staff passes) need the site's keys and are made when the demo starts:
see :mod:`kiosk.demo_codes`.

One place, too, for the EU Digital COVID Certificate a fictional visitor
carries (:func:`sample_dcc`, :func:`sample_hc1_claims`): the demo's vaccine
passport, the tests' and the fuzzer's certificates are all made from it;
whoever signs it decides which key vouches for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


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


# --- an EU Digital COVID Certificate (HC1:) -------------------------------------------

SAMPLE_DCC_NAME: Mapping[str, str] = {
    "fn": "Nguyễn",
    "gn": "Văn An",
    "fnt": "NGUYEN",
    "gnt": "VAN<AN",
}
"""Native names (family, given) and their ICAO 9303 transliteration."""
SAMPLE_DCC_DOB = "1990-01-01"


def sample_dcc(
    cert_type: str = "v",
    *,
    at: datetime,
    nam: Mapping[str, str] = SAMPLE_DCC_NAME,
    dob: str = SAMPLE_DCC_DOB,
    **entry: Any,
) -> dict[str, Any]:
    """A DCC (schema 1.3.0, Vietnam's profile: ``co`` VN, Vietnamese names)
    of one type that the gate's default rules accept at ``at``: ``v`` two
    doses of two, the last 60 days before; ``t`` a negative PCR test sampled
    3 hours before; ``r`` a recovery valid from 80 days before to 90 days
    after. ``entry`` replaces or adds fields of its one entry."""
    day = timedelta(days=1)
    entries: dict[str, dict[str, Any]] = {
        "v": {
            "tg": "840539006",  # COVID-19
            "vp": "1119349007",  # an mRNA vaccine
            "mp": "EU/1/20/1528",  # Comirnaty
            "ma": "ORG-100030215",  # BioNTech
            "dn": 2,
            "sd": 2,
            "dt": (at - 60 * day).date().isoformat(),
        },
        "t": {
            "tg": "840539006",
            "tt": "LP6464-4",  # a nucleic acid amplification test
            "nm": "PCR",
            "sc": (at - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tr": "260415000",  # not detected
            "tc": "Bệnh viện Bạch Mai",
        },
        "r": {
            "tg": "840539006",
            "fr": (at - 90 * day).date().isoformat(),
            "df": (at - 80 * day).date().isoformat(),
            "du": (at + 90 * day).date().isoformat(),
        },
    }
    common = {"co": "VN", "is": "Bộ Y tế", "ci": f"URN:UVCI:01:VN:GATEKIOSK#{cert_type.upper()}"}
    return {
        "ver": "1.3.0",
        "nam": dict(nam),
        "dob": dob,
        cert_type: [{**entries[cert_type], **common, **entry}],
    }


def sample_hc1_claims(
    dcc: Mapping[str, Any],
    *,
    issued: datetime | None,
    expires: datetime,
    issuer: str = "VN",
) -> dict[int, Any]:
    """The CWT claims of an HC1 certificate holding ``dcc``: issuer (1),
    expiry (4), issued-at (6, left out when ``issued`` is None) in whole
    seconds, and the hcert claim (-260 -> 1 -> the DCC)."""
    claims: dict[int, Any] = {1: issuer, 4: int(expires.timestamp())}
    if issued is not None:
        claims[6] = int(issued.timestamp())
    claims[-260] = {1: dcc}
    return claims
