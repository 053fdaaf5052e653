"""Coverage-guided fuzzing (atheris/libFuzzer) of every payload parser and verifier.

One target per parser or verifier, each fuzzed in its own process for
``--runs-per-target`` executions, starting from a small seed corpus of valid
payloads generated here (real site keys via :mod:`kiosk.keys`, a real
self-signed HC1 signing certificate):

==================  ==========================================================
cccd                ``CccdFormat.parse``
pc-covid            ``PcCovidFormat.parse``
cose-transport      ``cose.decode_base45_zlib`` (prefix, base45, zlib)
cose-cbor           ``cose.decode_cbor``
cose-sign1          ``cose.parse_cose_sign1`` then ``verify_sign1`` with ES256,
                    P-384, Ed25519 and RSA keys
sitecodes           ``SiteCodeFormat.parse`` on ``GK1:`` text
sitecodes-signed    the input as CWT claims, signed with the site key, then
                    ``SiteCodeFormat.parse``: the claim reader behind the signature
hcert               ``HcertFormat.parse`` on ``HC1:`` text
hcert-signed        the input as CWT claims, signed with the trusted DSC, then
                    ``HcertFormat.parse``
registry            ``Registry.identify`` with all four formats
==================  ==========================================================

The text targets use a layered custom mutator: besides libFuzzer's own byte
mutations, it decodes ``prefix + base45(zlib(COSE))``, mutates the COSE bytes
or one field of the COSE_Sign1, and encodes again, so mutations reach the
parser behind the container rather than dying in base45.

Every execution checks the contract: the target returns None, a Credential
or a Rejection with a reason (the Registry: never ``parser-error``), the
COSE functions raise only ``CoseError`` of the documented reason, and a
signed kind's Credential comes only from bytes a trusted key signed. A
violation, or any other exception, is a crash: counted, its first input and
traceback saved, and fuzzing goes on. Each call is timed with
``time.perf_counter`` (instrumented, so slower than in production); the
slowest inputs and the final corpus are then timed again in a fresh,
uninstrumented process.

Results: a Markdown table on stdout and in ``bench/report-fuzz.md``, all
figures in ``bench/report-fuzz.json``.

Usage: .venv/bin/python bench/fuzz_codes.py --runs-per-target 200000 [--jobs 2]
       [--targets cccd,registry] [--workdir DIR] [--seed 1]
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import importlib
import importlib.metadata
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# Nothing from kiosk is imported at module level: the worker imports it under
# atheris' instrumentation, which only sees modules imported after it starts.

BENCH_DIR = Path(__file__).resolve().parent
REPORT_MD = BENCH_DIR / "report-fuzz.md"
REPORT_JSON = BENCH_DIR / "report-fuzz.json"

SITE = "nhamay-01"
AT = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
AT_S = int(AT.timestamp())
MAX_LEN = 7200  # a little over what a QR code holds (7089 bytes)
TIMEOUT_S = 5  # libFuzzer: an input running this long is a crash
SLOW_UNIT_S = 1  # libFuzzer: report inputs at least this slow (its unit is seconds)
KEEP_SLOWEST = 5
FLUSH_EVERY = 20_000

TARGETS: dict[str, str] = {
    "cccd": "CccdFormat.parse",
    "pc-covid": "PcCovidFormat.parse",
    "cose-transport": "cose.decode_base45_zlib",
    "cose-cbor": "cose.decode_cbor",
    "cose-sign1": "cose.parse_cose_sign1 + verify_sign1",
    "sitecodes": "SiteCodeFormat.parse (GK1: text)",
    "sitecodes-signed": "SiteCodeFormat.parse of any claims signed by the site key",
    "hcert": "HcertFormat.parse (HC1: text)",
    "hcert-signed": "HcertFormat.parse of any claims signed by the trusted DSC",
    "registry": "Registry.identify (all formats)",
}
LAYERED_TARGETS = frozenset({"cose-transport", "sitecodes", "hcert", "registry"})

DICTIONARY = [
    "GK1:",
    "HC1:",
    "|",
    "||",
    "Nam",
    "N\\xe1\\xbb\\xaf",
    "1990-**-**",
    "01011990",
    "******",
    "\\xef\\xbb\\xbf",
    "\\xd2\\x84",  # tag 18, array of 4
    "\\xd8\\x3d\\xd2",  # tag 61 around tag 18
    "\\xa1\\x01\\x26",  # {1: -7}
    "\\x3a\\x00\\x01\\x11\\x70",  # -70001
    "\\x39\\x01\\x03",  # -260
    "\\x1b\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff",
    "\\x9f",
    "\\xbf",
    "\\xff",
    "\\xf9\\x7e\\x00",  # NaN
]

CCCD_SEEDS = [
    "001090000123|123456789|NGUYỄN VĂN A|01011990|Nam|Hà Nội|15042021",
    "001190000123||Nguyễn Thị Minh Khai|01021990|Nữ|12 Lê Lợi, Quận 1|15082021|x",
    "079090000456|TRẦN VĂN BA|31121990|Nam|TP. Hồ Chí Minh|01072021",
]
PC_COVID_SEEDS = [
    "079201001234|NGUYEN VAN AN|1990-12-01|0|QID-7f3a9c|",
    "******001234|NGUYEN V** A*|1990-**-**|1|QID-7f3a9c|1#0912345678",
    "B1234567|LE THI HOA|1985-07-30|0|QID9",
]


# --- the material: keys, a signing certificate, seed codes -----------------------


def _dcc(cert_type: str, **entry_changes: Any) -> dict[str, Any]:
    """kiosk.samples' certificate of ``cert_type``, valid at AT; the test is
    a rapid antigen test (so its device is fuzzed too)."""
    from kiosk.samples import sample_dcc

    if cert_type == "t":
        entry_changes = {"tt": "LP217198-3", "ma": "1232", **entry_changes}
    return sample_dcc(cert_type, at=AT, **entry_changes)


def _hc1_claims(document: dict[str, Any], **changes: Any) -> dict[Any, Any]:
    """Its CWT claims, issued a day before AT, expiring a day after;
    ``c4=...`` replaces claim 4, and so on."""
    from kiosk.samples import sample_hc1_claims

    claims: dict[Any, Any] = sample_hc1_claims(
        document, issued=AT - timedelta(days=1), expires=AT + timedelta(days=1)
    )
    claims.update({int(key.lstrip("c")): value for key, value in changes.items()})
    return claims


def _self_signed_der(private_key: Any, country: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
            x509.NameAttribute(NameOID.COMMON_NAME, "gatekiosk fuzz DSC"),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(2021)
        .not_valid_before(AT - timedelta(days=365))
        .not_valid_after(AT + timedelta(days=365))
        .sign(private_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def make_material(workdir: Path) -> None:
    """Keys, signing certificates, seed corpora and the set of signed
    (protected, payload) pairs, all under ``workdir``."""
    import cbor2
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from kiosk.codes import cose
    from kiosk.codes.sitecodes import SiteCodeClaims, issue_code
    from kiosk.keys import init_keys, load_signing_key
    from kiosk.trust import kid_of

    keys = workdir / "keys"
    init_keys(keys, at=AT - timedelta(days=30))
    site_kid, site_key = load_signing_key(keys)

    hc1 = workdir / "hc1"
    hc1.mkdir()
    dsc_keys: list[tuple[Any, bytes]] = []
    for label, private_key in (
        ("es256", ec.generate_private_key(ec.SECP256R1())),
        ("ps256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ):
        der = _self_signed_der(private_key, "VN")
        (hc1 / f"{label}.der").write_bytes(der)
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (hc1 / f"{label}.pem").write_bytes(pem)
        dsc_keys.append((private_key, kid_of(der)))

    issued = timedelta(hours=1)
    declaration = SiteCodeClaims(
        kind="declaration",
        site_id=SITE,
        code_id=bytes.fromhex("0123456789abcdef"),
        name="Nguyễn Thị Minh Khai",
        issued_at=AT - issued,
        expires_at=AT + timedelta(hours=11),
    )
    site_claims = [
        declaration,
        SiteCodeClaims(
            kind="staff-pass",
            site_id=SITE,
            code_id=bytes.fromhex("fedcba9876543210"),
            name="Trần Văn Đức",
            issued_at=AT - issued,
            expires_at=AT + timedelta(days=365),
            not_before=AT - issued,
            staff_id="NV-00123",
            organisation="Phòng Kỹ thuật",
        ),
        SiteCodeClaims(
            kind="declaration",
            site_id=SITE,
            code_id=bytes.fromhex("00112233"),
            name="Lê Thị Hoa",
            issued_at=AT - issued,
            expires_at=AT + timedelta(hours=1),
            refused_answer="fever",
        ),
        SiteCodeClaims(
            kind="declaration",
            site_id="other-site",
            code_id=bytes.fromhex("0011223344556677"),
            name="Lê Thị Hoa",
            issued_at=AT - timedelta(days=3),
            expires_at=AT - timedelta(days=2),
        ),
    ]
    gk1_texts = [issue_code(claims, site_key, site_kid) for claims in site_claims]

    hc1_claims = [
        _hc1_claims(_dcc("v")),
        _hc1_claims(_dcc("t")),
        _hc1_claims(_dcc("r")),
        _hc1_claims(_dcc("v", dn=1)),
        _hc1_claims(_dcc("t", tr="260373001"), c4=AT_S - 10),
    ]
    hc1_texts = [
        cose.encode_base45_zlib(cose.sign1(cbor2.dumps(claims), key, kid=kid), "HC1:")
        for claims in hc1_claims
        for key, kid in dsc_keys[: 1 if claims is not hc1_claims[0] else 2]
    ]
    # An HC1 whose kid is only in the unprotected header, as some issuers send.
    key, kid = dsc_keys[0]
    protected = cbor2.dumps({1: -7})
    payload = cbor2.dumps(hc1_claims[1])
    message = cose.sign1(payload, key, kid=None)
    item = cbor2.loads(message).value
    hc1_texts.append(
        cose.encode_base45_zlib(
            cbor2.dumps(cbor2.CBORTag(61, cbor2.CBORTag(18, [protected, {4: kid}, *item[2:]]))),
            "HC1:",
        )
    )

    signed: list[list[str]] = []
    cose_messages: list[bytes] = []
    claim_payloads: dict[str, list[bytes]] = {"GK1:": [], "HC1:": []}
    for text in gk1_texts + hc1_texts:
        prefix = text[:4]
        data = cose.decode_base45_zlib(text, prefix)
        msg = cose.parse_cose_sign1(data)
        signed.append([msg.protected.hex(), msg.unverified_payload.hex()])
        cose_messages.append(data)
        claim_payloads[prefix].append(msg.unverified_payload)
    (workdir / "signed.json").write_text(json.dumps(signed))

    text_seeds = [t.encode("utf-8") for t in CCCD_SEEDS + PC_COVID_SEEDS]
    signed_seeds = [t.encode("ascii") for t in gk1_texts + hc1_texts]
    seeds: dict[str, list[bytes]] = {
        "cccd": text_seeds,
        "pc-covid": text_seeds,
        "cose-transport": signed_seeds,
        "cose-cbor": cose_messages + claim_payloads["GK1:"] + claim_payloads["HC1:"],
        "cose-sign1": cose_messages,
        "sitecodes": [t.encode("ascii") for t in gk1_texts],
        "sitecodes-signed": claim_payloads["GK1:"],
        "hcert": [t.encode("ascii") for t in hc1_texts],
        "hcert-signed": claim_payloads["HC1:"],
        "registry": text_seeds + signed_seeds,
    }
    for target, inputs in seeds.items():
        folder = workdir / "seeds" / target
        folder.mkdir(parents=True)
        for data in inputs:
            (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)
    (workdir / "fuzz.dict").write_text("".join(f'"{token}"\n' for token in DICTIONARY))
    for target, named in stress_inputs(claim_payloads["GK1:"][0], hc1_claims[0]).items():
        folder = workdir / "stress" / target
        folder.mkdir(parents=True)
        for name, data in named.items():
            (folder / name).write_bytes(data)


def stress_inputs(gk1_payload: bytes, hc1_claims: dict[Any, Any]) -> dict[str, dict[str, bytes]]:
    """Large and nested inputs, timed on their own (uninstrumented): the
    worst cases a fuzzer reaches only slowly, because it grows inputs bit by bit."""
    import base45
    import cbor2

    def seal(prefix: str, data: bytes) -> bytes:
        return (prefix + base45.b45encode(zlib.compress(data, 9)).decode()).encode()

    nested: Any = 0
    for _ in range(15):  # 2**15 leaves: 65,535 bytes of CBOR
        nested = [nested, nested]
    bombs = {
        "64k-one-byte-tags": b"\x9f" + b"\xc0\x00" * 32_767 + b"\xff",
        "8k-one-byte-tags": b"\x9f" + b"\xc0\x00" * 4_095 + b"\xff",
        "8k-unknown-tags": b"\x9f" + b"\xd8\x64\x00" * 2_730 + b"\xff",
        "64k-nested-arrays": cbor2.dumps(nested),
        "8k-empty-maps": b"\x9f" + b"\xa0" * 8_190 + b"\xff",
        "8k-indefinite-chunks": b"\x5f" + b"\x40" * 8_190 + b"\xff",
        "8k-tag-bomb-in-unprotected-header": b"\xd2\x84\x43\xa1\x01\x26\xa1\x21\x9f"
        + b"\xc0\x00" * 4_080
        + b"\xff\x40\x40",
        "zlib-bomb-2.5MB-zeros": bytes(2_500_000),
    }
    text: dict[str, bytes] = {
        "7089-pipes": b"001090000123" + b"|" * 7_077,
        "cccd-7000-char-name": f"001090000123||{'A' * 7000}|01011990|Nam|x|15042021".encode(),
        "cccd-2300-combining-marks": (
            f"001090000123||A{chr(0x301) * 2300}|01011990|Nam|x|15042021".encode()
        ),
        "pc-covid-7000-char-name": f"079201001234|{'N' * 7000}|1990-12-01|0|QID|".encode(),
        "gk1-4296-base45-chars": b"GK1:" + (b"ABC" * 1432),
    }
    signed_text = {
        f"{prefix[:3].lower()}-{name}": seal(prefix, data)
        for name, data in bombs.items()
        for prefix in ("GK1:", "HC1:")
    }
    signed_text = {name: raw for name, raw in signed_text.items() if len(raw) <= 7089}
    gk1_claims = cbor2.loads(gk1_payload)
    big_dcc = dict(hc1_claims[-260][1])
    big_dcc["v"] = big_dcc["v"] * 45  # about 7 KB: under cose.MAX_COSE_BYTES
    return {
        "registry": text | signed_text,
        "cose-cbor": {name: data for name, data in bombs.items() if not name.startswith("zlib")},
        "sitecodes-signed": {
            "claims-with-3000-int-array": cbor2.dumps({**gk1_claims, 99: list(range(3_000))}),
            "claims-with-7000-char-text": cbor2.dumps({**gk1_claims, 99: "x" * 7_000}),
        },
        "hcert-signed": {
            "dcc-with-45-vaccinations": cbor2.dumps({**hc1_claims, -260: {1: big_dcc}}),
        },
    }


# --- the worker: one target under atheris -------------------------------------------


class ContractViolation(Exception):
    """The target returned something its contract does not allow."""


@dataclass
class Harness:
    """A target's call (timed), and the untimed preparation of its input."""

    call: Callable[[Any], Any]
    check: Callable[[bytes, Any], None]
    prepare: Callable[[bytes], Any] = lambda data: data


def build_harness(target: str, workdir: Path) -> Harness:
    """The target's call and contract, from the material in ``workdir``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    from kiosk.codes import Registry, cose
    from kiosk.codes.base import Credential, Rejection, payload_bytes
    from kiosk.codes.cccd import CccdFormat
    from kiosk.codes.hcert import HcertFormat, HcertRules
    from kiosk.codes.pccovid import PcCovidFormat
    from kiosk.codes.sitecodes import SiteCodeFormat
    from kiosk.keys import load_keyring, load_signing_key
    from kiosk.trust import TrustList, certificate_from_der

    keys = workdir / "keys"
    site = SiteCodeFormat(load_keyring(keys), SITE)
    site_kid, site_key = load_signing_key(keys)
    dscs = [
        certificate_from_der((workdir / f"hc1/{n}.der").read_bytes()) for n in ("es256", "ps256")
    ]
    hcert = HcertFormat(TrustList(dscs), HcertRules())
    dsc_key = serialization.load_pem_private_key((workdir / "hc1/es256.pem").read_bytes(), None)
    assert isinstance(dsc_key, ec.EllipticCurvePrivateKey)
    signed = {
        (bytes.fromhex(p), bytes.fromhex(q))
        for p, q in json.loads((workdir / "signed.json").read_text())
    }
    cccd, pc_covid = CccdFormat(), PcCovidFormat()
    registry = Registry([site, hcert, cccd, pc_covid])

    def check_parse(raw: bytes, result: Any) -> None:
        if result is None:
            return
        if isinstance(result, Rejection):
            if not (isinstance(result.reason, str) and result.reason):
                raise ContractViolation("a Rejection without a reason")
            if result.reason == "parser-error":
                raise ContractViolation(f"parser-error: {result.detail}")
            return
        if not isinstance(result, Credential):
            raise ContractViolation(f"returned {type(result).__name__}")
        if not (result.subject_id and result.display_name):
            raise ContractViolation("a Credential without subject_id or display_name")
        if result.kind in ("declaration", "staff-pass", "hcert"):
            prefix = "HC1:" if result.kind == "hcert" else "GK1:"
            try:
                text = payload_bytes(raw).decode("ascii")
                msg = cose.parse_cose_sign1(cose.decode_base45_zlib(text, prefix))
            except (UnicodeDecodeError, cose.CoseError) as exc:
                raise ContractViolation("a signed Credential from an undecodable code") from exc
            if (msg.protected, msg.unverified_payload) not in signed:
                raise ContractViolation("a Credential from bytes no trusted key signed")

    def check_identified(raw: bytes, result: Any) -> None:
        if result is None:
            raise ContractViolation("identify returned None")
        check_parse(raw, result)

    def check_signed_by_us(raw: bytes, result: Any) -> None:
        # Whatever the claims, they were signed with the trusted key: a
        # Credential is allowed, an exception or an untyped result is not.
        if result is None:
            raise ContractViolation("parse returned None for its own prefix")
        if not isinstance(result, Credential):
            check_parse(raw, result)
        elif not (result.subject_id and result.display_name):
            raise ContractViolation("a Credential without subject_id or display_name")

    def cose_errors(*reasons: str) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
        def wrap(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
            def call(value: Any) -> Any:
                try:
                    return function(value)
                except cose.CoseError as exc:
                    if exc.reason not in reasons:
                        raise ContractViolation(f"CoseError with reason {exc.reason}") from exc
                    return exc

            return call

        return wrap

    def no_check(raw: bytes, result: Any) -> None:
        return None

    if target == "cccd":
        return Harness(lambda raw: cccd.parse(raw, at=AT), check_parse)
    if target == "pc-covid":
        return Harness(lambda raw: pc_covid.parse(raw, at=AT), check_parse)
    if target == "sitecodes":
        return Harness(lambda raw: site.parse(raw, at=AT), check_parse)
    if target == "hcert":
        return Harness(lambda raw: hcert.parse(raw, at=AT), check_parse)
    if target == "registry":
        return Harness(lambda raw: registry.identify(raw, at=AT), check_identified)
    if target == "cose-transport":
        decode = cose_errors(cose.REASON_ENCODING)(
            lambda text: cose.decode_base45_zlib(text, "GK1:" if text.startswith("G") else "HC1:")
        )
        return Harness(decode, no_check, prepare=lambda data: data.decode("latin-1"))
    if target == "cose-cbor":
        return Harness(cose_errors(cose.REASON_CBOR)(cose.decode_cbor), no_check)
    if target == "cose-sign1":
        verify_keys: list[cose.PublicKey] = [
            site_key.public_key(),
            dsc_key.public_key(),
            ec.generate_private_key(ec.SECP384R1()).public_key(),
            ed25519.Ed25519PrivateKey.generate().public_key(),
            rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(),
        ]
        trusted = verify_keys[:2]

        @cose_errors(
            cose.REASON_ENCODING, cose.REASON_CBOR, cose.REASON_STRUCTURE, cose.REASON_ALGORITHM
        )
        def parse_and_verify(data: bytes) -> Any:
            msg = cose.parse_cose_sign1(data)
            verdicts = []
            for key in verify_keys:
                try:
                    verdicts.append(cose.verify_sign1(msg, key))
                except cose.CoseError as exc:
                    if exc.reason != cose.REASON_ALGORITHM:
                        raise ContractViolation(f"verify raised {exc.reason}") from exc
                    verdicts.append(False)
            return msg, verdicts

        def check_verdicts(raw: bytes, result: Any) -> None:
            if isinstance(result, cose.CoseError):
                return
            msg, verdicts = result
            for key, verdict in zip(verify_keys, verdicts, strict=True):
                if type(verdict) is not bool:
                    raise ContractViolation("verify_sign1 returned a non-bool")
                if verdict and (
                    key not in trusted or (msg.protected, msg.unverified_payload) not in signed
                ):
                    raise ContractViolation("a signature verified over bytes nobody signed")

        return Harness(parse_and_verify, check_verdicts)
    if target in ("sitecodes-signed", "hcert-signed"):
        prefix, code_format = ("GK1:", site) if target == "sitecodes-signed" else ("HC1:", hcert)
        key, kid = (site_key, site_kid) if prefix == "GK1:" else (dsc_key, dscs[0].kid)

        def sign(claims: bytes) -> bytes:
            text = cose.encode_base45_zlib(cose.sign1(claims, key, kid=kid), prefix)
            return text.encode("ascii")

        # The claims are signed as given: any bytes, CBOR or not.
        return Harness(lambda raw: code_format.parse(raw, at=AT), check_signed_by_us, prepare=sign)
    raise SystemExit(f"unknown target {target!r}")


class Recorder:
    """Times every call, keeps the slowest inputs, and counts crashes by signature."""

    def __init__(self, target: str, out_dir: Path, runs: int) -> None:
        self.target = target
        self.out_dir = out_dir
        self.runs = runs
        self.executions = 0
        self.durations: list[float] = []
        self.slowest: list[tuple[float, bytes]] = []  # a min-heap of the KEEP_SLOWEST slowest
        self.crashes: dict[str, dict[str, Any]] = {}
        self.started = time.perf_counter()
        out_dir.mkdir(parents=True, exist_ok=True)

    def timed(self, seconds: float, data: bytes) -> None:
        self.durations.append(seconds)
        if len(self.slowest) < KEEP_SLOWEST:
            heapq.heappush(self.slowest, (seconds, data))
        elif seconds > self.slowest[0][0]:
            heapq.heapreplace(self.slowest, (seconds, data))

    def crashed(self, data: bytes, exc: BaseException) -> None:
        frames = traceback.extract_tb(exc.__traceback__)
        where = frames[-1] if frames else None
        signature = (
            f"{type(exc).__name__} at {where.filename.rsplit('/', 1)[-1]}:{where.lineno}"
            if where
            else type(exc).__name__
        )
        entry = self.crashes.get(signature)
        if entry is None:
            name = f"crash-{hashlib.sha1(data).hexdigest()[:16]}"
            (self.out_dir / name).write_bytes(data)
            entry = {
                "count": 0,
                "input": str(self.out_dir / name),
                "input_hex": data[:200].hex(),
                "traceback": "".join(traceback.format_exception(exc))[-3000:],
            }
            self.crashes[signature] = entry
        entry["count"] += 1

    def done_one(self) -> None:
        self.executions += 1
        if self.executions % FLUSH_EVERY == 0 or self.executions >= self.runs:
            self.flush()

    def flush(self) -> None:
        durations = sorted(self.durations)
        slow = []
        for index, (seconds, data) in enumerate(sorted(self.slowest, reverse=True)):
            path = self.out_dir / f"slow-{index}"
            path.write_bytes(data)
            slow.append({"ms": seconds * 1000, "bytes": len(data), "input": str(path)})
        stats = {
            "target": self.target,
            "executions": self.executions,
            "wall_s": time.perf_counter() - self.started,
            "crashes": sum(entry["count"] for entry in self.crashes.values()),
            "crash_signatures": self.crashes,
            "call_ms": _summary_ms(durations),
            "slowest": slow,
        }
        tmp = self.out_dir / "stats.json.tmp"
        tmp.write_text(json.dumps(stats, indent=1))
        tmp.replace(self.out_dir / "stats.json")


def _summary_ms(sorted_seconds: list[float]) -> dict[str, float]:
    if not sorted_seconds:
        return {}

    def at(fraction: float) -> float:
        return (
            sorted_seconds[min(len(sorted_seconds) - 1, int(fraction * len(sorted_seconds)))] * 1000
        )

    return {
        "max": sorted_seconds[-1] * 1000,
        "p99": at(0.99),
        "p999": at(0.999),
        "p50": at(0.5),
        "mean": statistics.fmean(sorted_seconds) * 1000,
    }


def layered_mutator(atheris: Any) -> Callable[[bytes, int, int], bytes]:
    """libFuzzer's mutations, or the same applied inside ``prefix + base45(zlib(...))``."""
    import base45
    import cbor2

    def unwrap(data: bytes) -> tuple[bytes, bytes] | None:
        stripped = data.strip()
        if stripped[:4] not in (b"GK1:", b"HC1:"):
            return None
        try:
            compressed = base45.b45decode(stripped[4:].decode("ascii"))
            inflater = zlib.decompressobj()
            inner = inflater.decompress(compressed, 65_536)
        except (ValueError, UnicodeDecodeError, zlib.error):
            return None
        return stripped[:4], inner

    def mutate(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        split = unwrap(data) if rng.random() < 0.6 else None
        if split is None:
            return bytes(atheris.Mutate(data, max_size))
        prefix, inner = split
        if rng.random() < 0.5:
            inner = bytes(atheris.Mutate(inner, len(inner) + 64))
        else:
            try:
                item = cbor2.loads(inner)
                message = list(item.value if isinstance(item, cbor2.CBORTag) else item)
                index = rng.randrange(len(message))
                field = message[index]
                if isinstance(field, bytes):
                    message[index] = bytes(atheris.Mutate(field, len(field) + 32))
                else:
                    message[index] = cbor2.loads(bytes(atheris.Mutate(cbor2.dumps(field), 64)))
                inner = cbor2.dumps(cbor2.CBORTag(18, message) if rng.random() < 0.9 else message)
            except Exception:  # the mutated item need not be valid CBOR
                inner = bytes(atheris.Mutate(inner, len(inner) + 64))
        out = prefix + base45.b45encode(zlib.compress(inner, rng.choice([1, 6, 9])))
        return bytes(out[:max_size])

    return mutate


def run_worker(target: str, workdir: Path, runs: int, seed: int) -> None:
    """Fuzz one target; never returns (libFuzzer exits the process)."""
    atheris: Any = importlib.import_module("atheris")
    with atheris.instrument_imports(include=["kiosk", "base45"]):
        harness = build_harness(target, workdir)
    recorder = Recorder(target, workdir / "out" / target, runs)
    call, check, prepare = harness.call, harness.check, harness.prepare
    clock = time.perf_counter

    def test_one_input(data: bytes) -> None:
        try:
            value = prepare(data)
            started = clock()
            result = call(value)
            elapsed = clock() - started
            recorder.timed(elapsed, data)
            check(value if isinstance(value, bytes) else data, result)
        except Exception as exc:
            recorder.crashed(data, exc)
        recorder.done_one()

    corpus = workdir / "corpus" / target
    corpus.mkdir(parents=True)
    for seed_file in (workdir / "seeds" / target).iterdir():
        (corpus / seed_file.name).write_bytes(seed_file.read_bytes())
    argv = [
        sys.argv[0],
        f"-runs={runs}",
        f"-seed={seed}",
        f"-max_len={MAX_LEN}",
        f"-timeout={TIMEOUT_S}",
        f"-report_slow_units={SLOW_UNIT_S}",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-dict={workdir / 'fuzz.dict'}",
        f"-artifact_prefix={workdir / 'out' / target}/",
        str(corpus),
    ]
    kwargs = {"custom_mutator": layered_mutator(atheris)} if target in LAYERED_TARGETS else {}
    atheris.Setup(argv, test_one_input, **kwargs)
    atheris.Fuzz()


# --- re-measuring, uninstrumented ------------------------------------------------------


def run_remeasure(target: str, workdir: Path) -> None:
    """Time the slowest inputs and the final corpus again without atheris;
    prints JSON on stdout."""
    harness = build_harness(target, workdir)
    out = workdir / "out" / target

    def best_of(data: bytes, repeats: int) -> float:
        value = harness.prepare(data)
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            harness.call(value)
            best = min(best, time.perf_counter() - started)
        return best * 1000

    stress = []
    stress_dir = workdir / "stress" / target
    for path in sorted(stress_dir.iterdir()) if stress_dir.exists() else []:
        data = path.read_bytes()
        value = harness.prepare(data)
        times = []
        for _ in range(10):
            started = time.perf_counter()
            result = harness.call(value)
            times.append((time.perf_counter() - started) * 1000)
        outcome = getattr(result, "reason", None) or type(result).__name__
        if isinstance(result, tuple):
            outcome = "parsed"
        elif isinstance(result, Exception):
            outcome = getattr(result, "detail", str(result))[:60]
        stress.append(
            {
                "input": path.name,
                "bytes": len(data),
                "min_ms": round(min(times), 3),
                "median_ms": round(statistics.median(times), 3),
                "max_ms": round(max(times), 3),
                "outcome": outcome,
            }
        )
    slowest = sorted(out.glob("slow-*"))
    corpus = [
        (best_of(path.read_bytes(), 3), path) for path in (workdir / "corpus" / target).iterdir()
    ]
    corpus.sort()
    summary = {
        "slowest_inputs_ms": [round(best_of(path.read_bytes(), 20), 4) for path in slowest],
        "corpus_units": len(corpus),
        "corpus_ms": _summary_ms([ms / 1000 for ms, _ in corpus]),
        "corpus_slowest_input": str(corpus[-1][1]) if corpus else None,
        "corpus_slowest_bytes": corpus[-1][1].stat().st_size if corpus else 0,
        "stress": stress,
    }
    print(json.dumps(summary))


# --- the parent: run every target, write the report -------------------------------------

_FINAL_STAT_RE = re.compile(r"^stat::(\w+):\s+(\d+)", re.MULTILINE)


def fuzz_target(target: str, workdir: Path, runs: int, seed: int) -> dict[str, Any]:
    log_path = workdir / "out" / f"{target}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        __file__,
        "--worker",
        target,
        "--workdir",
        str(workdir),
        "--runs",
        str(runs),
        "--seed",
        str(seed),
    ]
    started = time.perf_counter()
    with log_path.open("wb") as log:
        process = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    wall_s = time.perf_counter() - started
    log_text = log_path.read_text("utf-8", "replace")
    libfuzzer = {name: int(value) for name, value in _FINAL_STAT_RE.findall(log_text)}
    stats_path = workdir / "out" / target / "stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    fatal = [
        line for line in log_text.splitlines() if "ERROR: libFuzzer" in line or "==ERROR" in line
    ]
    slow_units = len(re.findall(r"^Slowest unit:", log_text, re.MULTILINE))
    remeasured: dict[str, Any] = {}
    if stats:
        measured = subprocess.run(
            [sys.executable, __file__, "--remeasure", target, "--workdir", str(workdir)],
            capture_output=True,
            text=True,
            check=False,
        )
        if measured.returncode == 0:
            remeasured = json.loads(measured.stdout.strip().splitlines()[-1])
        else:
            remeasured = {"error": measured.stderr[-2000:]}
    executions = libfuzzer.get("number_of_executed_units", stats.get("executions", 0))
    fuzz_s = stats.get("wall_s") or wall_s
    return {
        "target": target,
        "what": TARGETS[target],
        "exit_code": process.returncode,
        "executions": executions,
        "exec_per_s": round(executions / fuzz_s) if fuzz_s else 0,
        "libfuzzer_exec_per_s": libfuzzer.get("average_exec_per_sec"),
        "new_units": libfuzzer.get("new_units_added"),
        "peak_rss_mb": libfuzzer.get("peak_rss_mb"),
        "libfuzzer_slowest_unit_s": libfuzzer.get("slowest_unit_time_sec"),
        "libfuzzer_slow_unit_reports": slow_units,
        "libfuzzer_fatal": fatal,
        "crashes": stats.get("crashes", 0) + (1 if fatal else 0),
        "crash_signatures": stats.get("crash_signatures", {}),
        "call_ms_instrumented": stats.get("call_ms", {}),
        "slowest_instrumented": stats.get("slowest", []),
        "uninstrumented": remeasured,
        "wall_s": round(wall_s, 1),
        "log": str(log_path),
    }


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def write_report(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    total = sum(r["executions"] for r in results)
    crashes = sum(r["crashes"] for r in results)
    lines = [
        "# Fuzzing the payload parsers and verifiers (atheris)",
        "",
        f"{meta['date']}, atheris {meta['atheris']}, Python {meta['python']}, "
        f"{meta['machine']}; {meta['runs_per_target']:,} runs per target, "
        f"{meta['jobs']} at a time, seed {meta['seed']}.",
        "",
        f"**{total:,} executions in total, {crashes} crashes.**",
        "",
        "Call times are per call of the target, measured with `time.perf_counter` inside the "
        "harness while instrumented (coverage tracing makes Python code several times slower); "
        "*re-timed* is the slowest input found, then every unit of the final corpus, run again "
        "in a fresh process without instrumentation (best of 20 and of 3 runs).",
        "",
        "| target | executions | exec/s | new units | crashes "
        "| instrumented max ms | p99 ms | p50 ms | re-timed slowest input ms "
        "| corpus units | corpus max ms | corpus p99 ms | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        call = r["call_ms_instrumented"]
        un = r["uninstrumented"]
        corpus = un.get("corpus_ms", {})
        retimed = max(un.get("slowest_inputs_ms") or [], default=None)
        cells = [
            r["target"],
            f"{r['executions']:,}",
            f"{r['exec_per_s']:,}",
            str(r["new_units"]),
            str(r["crashes"]),
            _ms(call.get("max")),
            _ms(call.get("p99")),
            _ms(call.get("p50")),
            _ms(retimed),
            str(un.get("corpus_units", "-")),
            _ms(corpus.get("max")),
            _ms(corpus.get("p99")),
            str(r["peak_rss_mb"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    stress_rows = [
        (r["target"], row) for r in results for row in r["uninstrumented"].get("stress", [])
    ]
    if stress_rows:
        lines += [
            "",
            "Large and nested inputs, timed uninstrumented (10 calls each):",
            "",
            "| target | input | bytes | min ms | median ms | max ms | outcome |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        lines += [
            f"| {target} | {row['input']} | {row['bytes']:,} | {row['min_ms']:.3f} "
            f"| {row['median_ms']:.3f} | {row['max_ms']:.3f} | {row['outcome']} |"
            for target, row in stress_rows
        ]
    lines += ["", "Targets:", ""]
    lines += [f"- `{r['target']}`: {r['what']}" for r in results]
    for r in results:
        if r["crash_signatures"] or r["libfuzzer_fatal"]:
            lines += ["", f"## Crashes in {r['target']}", ""]
            for signature, entry in r["crash_signatures"].items():
                lines += [
                    f"- `{signature}`: {entry['count']} times; first input `{entry['input']}`",
                    "",
                    "```",
                    entry["traceback"].rstrip(),
                    "```",
                ]
            lines += [f"- libFuzzer: `{line}`" for line in r["libfuzzer_fatal"]]
    lines += [
        "",
        f"libFuzzer options: `-timeout={TIMEOUT_S}` (seconds; an input running longer is a crash), "
        f"`-report_slow_units={SLOW_UNIT_S}`, `-max_len={MAX_LEN}`, `-rss_limit_mb=2048`. "
        "Slow-unit reports: "
        + ", ".join(f"{r['target']} {r['libfuzzer_slow_unit_reports']}" for r in results)
        + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-per-target", type=int, default=200_000)
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated")
    parser.add_argument("--jobs", type=int, default=1, help="targets fuzzed at the same time")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="keep corpora and crashes here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--remeasure", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        run_worker(args.worker, args.workdir, args.runs, args.seed)
        return 0
    if args.remeasure:
        run_remeasure(args.remeasure, args.workdir)
        return 0

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    try:
        atheris_version = importlib.metadata.version("atheris")
    except importlib.metadata.PackageNotFoundError:
        parser.error("atheris is not installed: .venv/bin/pip install atheris")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gatekiosk-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "signed.json").exists():
        make_material(workdir)
    print(
        f"fuzzing {len(targets)} targets x {args.runs_per_target:,} runs in {workdir}",
        file=sys.stderr,
    )

    def one(target: str) -> dict[str, Any]:
        result = fuzz_target(target, workdir, args.runs_per_target, args.seed)
        print(
            f"  {target}: {result['executions']:,} execs, {result['exec_per_s']:,}/s, "
            f"{result['crashes']} crashes, {result['wall_s']} s",
            file=sys.stderr,
        )
        return result

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(one, targets))
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "atheris": atheris_version,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "runs_per_target": args.runs_per_target,
        "jobs": args.jobs,
        "seed": args.seed,
        "workdir": str(workdir),
    }
    report = write_report(results, meta)
    REPORT_MD.write_text(report)
    REPORT_JSON.write_text(json.dumps({"meta": meta, "targets": results}, indent=1))
    print(report)
    return 1 if any(r["crashes"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
