"""Hostile codes: whatever a QR code can carry, every payload parser and
verifier answers None, a Credential or a typed Rejection, and never raises.

Each format is fed through its own ``parse`` and through the Registry, layer
by layer: arbitrary bytes and text; mutations of valid CCCD and PC-Covid
strings; for the signed ``GK1:`` and ``HC1:`` codes, random base45, valid
base45 of random zlib'd bytes, valid zlib of random (nested) CBOR, COSE
structures whose fields have the wrong types, mutations of valid signed
codes at every layer, claims of any shape signed with the trusted key, and
codes signed by an impostor key that claims a trusted key id.

The signed formats have one more property: a Credential comes only from the
bytes a trusted key signed. The oracle is :func:`signed_content`, the
(protected header, payload) pair of the code; a mutation that leaves it
unchanged (a re-wrapped COSE_Sign1, an equivalent ECDSA signature) may still
verify, and must then give the very Credential the original code gives.

The fuzzer in ``bench/fuzz_codes.py`` runs the same contracts for a million
executions; these properties are the fast, deterministic part of ``make test``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import base45
import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.codes import MAX_PAYLOAD_BYTES, Registry, cose
from kiosk.codes.base import (
    KIND_CCCD,
    KIND_DECLARATION,
    KIND_HCERT,
    KIND_PC_COVID,
    KIND_STAFF_PASS,
    CodeFormat,
    Credential,
    Identified,
    Rejection,
    normalise_name,
    payload_bytes,
)
from kiosk.codes.cccd import CccdFormat
from kiosk.codes.cose import CoseError
from kiosk.codes.hcert import PREFIX as HC1
from kiosk.codes.hcert import HcertFormat, HcertRules
from kiosk.codes.pccovid import PcCovidFormat
from kiosk.codes.sitecodes import PREFIX as GK1
from kiosk.codes.sitecodes import SiteCodeClaims, SiteCodeFormat, issue_code
from kiosk.keys import init_keys, load_keyring, load_signing_key
from kiosk.samples import sample_dcc, sample_hc1_claims
from kiosk.trust import TrustList, certificate_from_der

SITE = "nhamay-01"
AT = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
AT_S = int(AT.timestamp())

HOSTILE = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MANY = settings(HOSTILE, max_examples=500)
FEW = settings(HOSTILE, max_examples=200)

SIGNED_KINDS = frozenset({KIND_DECLARATION, KIND_STAFF_PASS, KIND_HCERT})
UNSIGNED_KINDS = frozenset({KIND_CCCD, KIND_PC_COVID})

CCCD_TEMPLATES = (
    "001090000123|123456789|NGUYỄN VĂN A|01011990|Nam|Hà Nội|15042021",
    "001190000123||Nguyễn Thị Minh Khai|01021990|Nữ|12 Lê Lợi, Quận 1|15082021|x",
    "079090000456|TRẦN VĂN BA|31121990|Nam|TP. Hồ Chí Minh|01072021",
)
PC_COVID_TEMPLATES = (
    "079201001234|NGUYEN VAN AN|1990-12-01|0|QID-7f3a9c|",
    "******001234|NGUYEN V** A*|1990-**-**|1|QID-7f3a9c|1#0912345678",
    "B1234567|LE THI HOA|1985-07-30|0|QID9",
)


# A schema-valid EU DCC of each type, valid at AT (kiosk.samples' visitor).
def dcc(cert_type: str) -> dict[str, Any]:
    return sample_dcc(cert_type, at=AT)


def hc1_cwt(document: Mapping[str, Any]) -> dict[int, Any]:
    return sample_hc1_claims(
        document, issued=AT - timedelta(days=1), expires=AT + timedelta(days=1)
    )


# --- the world: trusted keys, formats, and the codes they issued ---------------


def make_dsc(
    private_key: ec.EllipticCurvePrivateKey, *, not_before: datetime, not_after: datetime
) -> bytes:
    """A self-signed document signer certificate (DER) for ``private_key``."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.COMMON_NAME, "gatekiosk hostile-codes DSC"),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(2021)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(private_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def signed_content(raw: bytes, prefix: str) -> tuple[bytes, bytes] | None:
    """The (protected header, payload) a signature over ``raw`` would cover,
    or None when ``raw`` is not a decodable COSE_Sign1 behind ``prefix``."""
    try:
        text = payload_bytes(raw).decode("ascii")
        msg = cose.parse_cose_sign1(cose.decode_base45_zlib(text, prefix))
    except (UnicodeDecodeError, CoseError):
        return None
    return msg.protected, msg.unverified_payload


@dataclass
class World:
    """One site's keys and one trusted HC1 signer, the formats that trust
    them, and every code issued with them."""

    site_key: ec.EllipticCurvePrivateKey
    site_kid: bytes
    dsc_key: ec.EllipticCurvePrivateKey
    dsc_kid: bytes
    site: SiteCodeFormat
    hcert: HcertFormat
    registry: Registry
    issued: dict[tuple[bytes, bytes], Credential]
    codes: dict[str, bytes]

    @property
    def formats(self) -> tuple[CodeFormat, ...]:
        return (self.site, self.hcert, CccdFormat(), PcCovidFormat())

    def sign(
        self, prefix: str, payload: bytes, *, key: Any = None, kid: bytes | None = None
    ) -> bytes:
        """``payload`` signed as the site (GK1) or the DSC (HC1) would sign
        it; ``key``/``kid`` override for impostors."""
        if prefix == GK1:
            key, kid = key or self.site_key, kid or self.site_kid
        else:
            key, kid = key or self.dsc_key, kid or self.dsc_kid
        return cose.encode_base45_zlib(cose.sign1(payload, key, kid=kid), prefix).encode("ascii")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    folder: Path = tmp_path_factory.mktemp("keys")
    init_keys(folder, at=AT - timedelta(days=30))
    site_kid, site_key = load_signing_key(folder)
    site = SiteCodeFormat(load_keyring(folder), SITE)

    dsc_key = ec.generate_private_key(ec.SECP256R1())
    der = make_dsc(dsc_key, not_before=AT - timedelta(days=365), not_after=AT + timedelta(days=365))
    signer = certificate_from_der(der)
    hcert = HcertFormat(TrustList([signer]), HcertRules())

    world = World(
        site_key=site_key,
        site_kid=site_kid,
        dsc_key=dsc_key,
        dsc_kid=signer.kid,
        site=site,
        hcert=hcert,
        registry=Registry([site, hcert, CccdFormat(), PcCovidFormat()]),
        issued={},
        codes={},
    )
    common: dict[str, Any] = {"site_id": SITE, "issued_at": AT - timedelta(hours=1)}
    site_codes = {
        "declaration": SiteCodeClaims(
            kind=KIND_DECLARATION,
            code_id=bytes.fromhex("0123456789abcdef"),
            name="Nguyễn Thị Minh Khai",
            expires_at=AT + timedelta(hours=11),
            **common,
        ),
        "staff-pass": SiteCodeClaims(
            kind=KIND_STAFF_PASS,
            code_id=bytes.fromhex("fedcba9876543210"),
            name="Trần Văn Đức",
            expires_at=AT + timedelta(days=365),
            staff_id="NV-00123",
            organisation="Phòng Kỹ thuật",
            **common,
        ),
    }
    for label, claims in site_codes.items():
        world.codes[label] = issue_code(claims, site_key, site_kid).encode("ascii")
    for cert_type in ("v", "t", "r"):
        world.codes[f"hc1-{cert_type}"] = world.sign(HC1, cbor2.dumps(hc1_cwt(dcc(cert_type))))
    for label, raw in world.codes.items():
        result = world.registry.identify(raw, at=AT)
        assert isinstance(result, Credential), (label, result)
        prefix = HC1 if label.startswith("hc1") else GK1
        content = signed_content(raw, prefix)
        assert content is not None
        world.issued[content] = result
    return world


# --- the contracts -------------------------------------------------------------


def assert_parse_contract(result: object) -> None:
    """What ``CodeFormat.parse`` may return."""
    if result is None:
        return
    if isinstance(result, Rejection):
        assert isinstance(result.reason, str)
        assert result.reason
        assert isinstance(result.kind, str)
        assert result.kind
        return
    assert isinstance(result, Credential), f"parse returned {type(result).__name__}"
    assert result.subject_id
    assert result.display_name


def assert_identified(result: object) -> Identified:
    """What ``Registry.identify`` may return; a parser-error means a format
    raised or broke its contract, which none of them may do."""
    assert isinstance(result, Credential | Rejection), type(result).__name__
    assert_parse_contract(result)
    if isinstance(result, Rejection):
        assert result.reason != "parser-error", result.detail
    return result


def assert_only_issued_codes_verify(world: World, raw: bytes, result: Identified | None) -> None:
    """A signed kind's Credential only for exactly what a trusted key signed."""
    if not isinstance(result, Credential):
        return
    stripped = payload_bytes(raw)
    if result.kind not in SIGNED_KINDS:
        assert result.kind in UNSIGNED_KINDS
        assert not stripped.startswith((GK1.encode(), HC1.encode()))
        assert result.verified is False
        return
    prefix = HC1 if result.kind == KIND_HCERT else GK1
    assert stripped.startswith(prefix.encode())
    content = signed_content(raw, prefix)
    assert content in world.issued, "a Credential from bytes no trusted key signed"
    assert result == world.issued[content]


def check_everywhere(world: World, raw: bytes) -> Identified:
    """Every format's own parse, then the Registry, on ``raw``."""
    for code_format in world.formats:
        result = code_format.parse(raw, at=AT)
        assert_parse_contract(result)
        assert_only_issued_codes_verify(world, raw, result)
    identified = assert_identified(world.registry.identify(raw, at=AT))
    assert_only_issued_codes_verify(world, raw, identified)
    return identified


# --- strategies ----------------------------------------------------------------

UTF8_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
BASE45_TEXT = st.text(alphabet=base45.BASE45_CHARSET, max_size=600)
INTERESTING_INTS = st.sampled_from(
    [0, 1, -1, 4, 5, 6, 7, -7, -8, -37, 18, 61, -260, -70001, 2**63, -(2**64), AT_S]
)

# Leaves CBOR can carry, including what breaks naive code: bignums beyond
# 64 bits (cbor2 writes tags 2/3), NaN and infinities, simple values.
CBOR_KEYS = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64 - 1),
    INTERESTING_INTS,
    UTF8_TEXT,
    st.binary(max_size=16),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
)
CBOR_LEAVES = st.one_of(
    CBOR_KEYS,
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.binary(max_size=80),
    st.sampled_from([cbor2.undefined, cbor2.CBORSimpleValue(32), cbor2.CBORSimpleValue(255)]),
)
CBOR_TAG_NUMBERS = st.one_of(
    st.sampled_from([0, 1, 2, 3, 4, 5, 18, 21, 24, 25, 28, 29, 32, 35, 61, 258, 1004, 55799]),
    st.integers(min_value=0, max_value=2**64 - 1),
)


def _cbor_containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(CBOR_KEYS, children, max_size=6),
        st.builds(cbor2.CBORTag, CBOR_TAG_NUMBERS, children),
    )


CBOR_VALUES = st.recursive(CBOR_LEAVES, _cbor_containers, max_leaves=25)


def cbor_or(valid: Any) -> st.SearchStrategy[Any]:
    """Mostly the valid value, sometimes any CBOR value instead."""
    return st.one_of(st.just(valid), st.just(valid), CBOR_VALUES)


@st.composite
def mutated(
    draw: st.DrawFn, data: bytes, insertions: st.SearchStrategy[bytes] | None = None
) -> bytes:
    """``data`` after 1-4 byte-level edits: bit flips, overwrites,
    insertions, deletions, truncation, duplication of a slice."""
    insertions = insertions if insertions is not None else st.binary(min_size=1, max_size=8)
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "duplicate"]))
        pos = draw(st.integers(0, max(len(out) - 1, 0)))
        if op == "flip" and out:
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and out:
            out[pos : pos + 1] = draw(insertions)[:1]
        elif op == "insert":
            out[pos:pos] = draw(insertions)
        elif op == "delete":
            del out[pos : pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del out[pos:]
        elif op == "duplicate":
            out[pos:pos] = out[pos : pos + draw(st.integers(1, 32))]
    return bytes(out)


BASE45_BYTES = st.text(alphabet=base45.BASE45_CHARSET, min_size=1, max_size=4).map(str.encode)
_FIELD = st.one_of(
    st.just(""),
    st.from_regex(r"[0-9]{0,14}", fullmatch=True),
    st.from_regex(r"[0-9*]{4}-[0-9*]{2}-[0-9*]{2}", fullmatch=True),
    st.from_regex(r"[0-9]{8}", fullmatch=True),
    st.sampled_from(["Nam", "Nữ", "NU", "male", "0", "1", "2", "*", "|", "\x00", "\u200b"]),
    st.text(st.characters(categories=("Lu", "Ll", "Mn", "Zs", "Cc", "Cf")), max_size=30),
    st.text(st.characters(codec="utf-8"), max_size=30),
    st.text(st.characters(codec="utf-8"), min_size=150, max_size=400),
)


@st.composite
def edited_identity_payloads(draw: st.DrawFn) -> bytes:
    """A valid CCCD or PC-Covid string with random field edits."""
    fields = draw(st.sampled_from(CCCD_TEMPLATES + PC_COVID_TEMPLATES)).split("|")
    for _ in range(draw(st.integers(1, 3))):
        edit = draw(st.sampled_from(["replace", "replace", "drop", "insert", "swap", "append"]))
        index = draw(st.integers(0, len(fields) - 1))
        if edit == "replace":
            fields[index] = draw(_FIELD)
        elif edit == "drop" and len(fields) > 1:
            del fields[index]
        elif edit == "insert":
            fields.insert(index, draw(_FIELD))
        elif edit == "swap":
            other = draw(st.integers(0, len(fields) - 1))
            fields[index], fields[other] = fields[other], fields[index]
        else:
            fields.append(draw(_FIELD))
    text = "|".join(fields)
    raw = text.encode(
        draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "latin-1"])), "replace"
    )
    framing = draw(st.sampled_from([b"", b"\xef\xbb\xbf", b" \r\n", b"\xff"]))
    if draw(st.booleans()):
        return framing + raw
    return raw + framing


# --- every format, any input -------------------------------------------------------


@MANY
@given(
    prefix=st.sampled_from([b"", GK1.encode(), HC1.encode(), b"001090000123|", b"\xef\xbb\xbf"]),
    data=st.binary(max_size=1200),
)
def test_arbitrary_bytes_give_none_credential_or_rejection(
    world: World, prefix: bytes, data: bytes
) -> None:
    check_everywhere(world, prefix + data)


@HOSTILE
@given(text=st.text(st.characters(codec="utf-8"), max_size=400))
def test_arbitrary_text_gives_none_credential_or_rejection(world: World, text: str) -> None:
    check_everywhere(world, text.encode("utf-8"))


def test_payloads_longer_than_a_qr_code_are_refused_unread(world: World) -> None:
    for raw in (b"1" * (MAX_PAYLOAD_BYTES + 1), GK1.encode() + b"0" * MAX_PAYLOAD_BYTES):
        result = assert_identified(world.registry.identify(raw, at=AT))
        assert isinstance(result, Rejection)
        assert result.reason == "payload-too-large"


# --- CCCD and PC-Covid: text near the format ------------------------------------------


@MANY
@given(raw=edited_identity_payloads())
def test_edited_id_card_and_pc_covid_strings_give_none_credential_or_rejection(
    world: World, raw: bytes
) -> None:
    result = check_everywhere(world, raw)
    if isinstance(result, Credential):
        assert result.kind in UNSIGNED_KINDS
        assert result.masked_id is not None
        if result.id_number is not None:
            assert result.id_number not in result.masked_id
        if result.birth_date is not None:
            assert result.birth_date <= AT.date() + timedelta(days=1)
            assert result.birth_date.year >= AT.year - 130
        assert normalise_name(result.display_name, allow_mask=True) == result.display_name


# --- GK1 and HC1: each layer of the container -----------------------------------------

SIGNED_PREFIXES = st.sampled_from([GK1, HC1])


@HOSTILE
@given(prefix=SIGNED_PREFIXES, body=BASE45_TEXT)
def test_random_base45_after_the_prefix_is_refused(world: World, prefix: str, body: str) -> None:
    result = check_everywhere(world, (prefix + body).encode("ascii"))
    assert isinstance(result, Rejection)


@HOSTILE
@given(prefix=SIGNED_PREFIXES, data=st.binary(max_size=400), compress=st.booleans())
def test_valid_base45_of_random_bytes_or_random_zlib_streams_is_refused(
    world: World, prefix: str, data: bytes, compress: bool
) -> None:
    inner = zlib.compress(data) if compress else data
    result = check_everywhere(world, (prefix + base45.b45encode(inner).decode()).encode())
    assert isinstance(result, Rejection)


@HOSTILE
@given(prefix=SIGNED_PREFIXES, value=CBOR_VALUES)
def test_valid_zlib_of_random_cbor_is_refused(world: World, prefix: str, value: Any) -> None:
    raw = cose.encode_base45_zlib(cbor2.dumps(value), prefix).encode()
    result = check_everywhere(world, raw)
    assert isinstance(result, Rejection)


@st.composite
def cose_structures(draw: st.DrawFn, world: World) -> bytes:
    """A COSE_Sign1-shaped CBOR item (borrowing the real parts of a valid
    code) in which any field may have the wrong type or value."""
    original = cbor2.loads(
        zlib.decompress(base45.b45decode(draw(st.sampled_from(list(world.codes.values())))[4:]))
    )
    protected, unprotected, payload, signature = original.value
    header = cbor2.loads(protected)
    header_fields = {
        1: draw(cbor_or(header[1])),
        4: draw(cbor_or(header.get(4))),
    }
    if draw(st.booleans()):
        header_fields[draw(CBOR_KEYS)] = draw(CBOR_VALUES)
    if draw(st.integers(0, 9)) == 0:
        header_fields[2] = draw(CBOR_VALUES)  # crit
    header_fields = {k: v for k, v in header_fields.items() if v is not None or draw(st.booleans())}
    try:
        new_protected = cbor2.dumps(header_fields)
    except (TypeError, ValueError, cbor2.CBOREncodeError):
        new_protected = protected
    fields = [
        draw(st.one_of(st.just(protected), st.just(new_protected), CBOR_VALUES)),
        draw(
            st.one_of(
                st.just(unprotected),
                st.dictionaries(CBOR_KEYS, CBOR_VALUES, max_size=3),
                CBOR_VALUES,
            )
        ),
        draw(cbor_or(payload)),
        draw(cbor_or(signature)),
    ]
    if draw(st.integers(0, 4)) == 0:
        fields = fields[: draw(st.integers(0, 3))] or [draw(CBOR_VALUES)] * 5
    wrap: Callable[[Any], Any] = draw(
        st.sampled_from(
            [
                lambda item: item,
                lambda item: cbor2.CBORTag(18, item),
                lambda item: cbor2.CBORTag(61, cbor2.CBORTag(18, item)),
                lambda item: cbor2.CBORTag(61, item),
                lambda item: cbor2.CBORTag(17, item),
                lambda item: cbor2.CBORTag(18, cbor2.CBORTag(18, item)),
            ]
        )
    )
    return cbor2.dumps(wrap(fields))


@pytest.mark.slow
@HOSTILE
@given(data=st.data())
def test_cose_structures_with_wrong_field_types_never_escape(
    world: World, data: st.DataObject
) -> None:
    message = data.draw(cose_structures(world))
    prefix = data.draw(SIGNED_PREFIXES)
    raw = cose.encode_base45_zlib(message, prefix).encode()
    check_everywhere(world, raw)
    msg, _ = cose_outcome(cose.parse_cose_sign1, message)
    for key in VERIFY_KEYS if msg is not None else ():
        verdict, reason = cose_outcome(cose.verify_sign1, msg, key)
        assert isinstance(verdict, bool) or reason == cose.REASON_ALGORITHM


def cose_outcome(function: Callable[..., Any], *args: Any) -> tuple[Any, str | None]:
    """``(result, None)``, or ``(None, reason)`` of the CoseError raised:
    nothing else may escape the COSE core."""
    try:
        return function(*args), None
    except CoseError as exc:
        return None, exc.reason


# --- mutations of valid signed codes -------------------------------------------------


def _container(raw: bytes) -> tuple[str, list[Any]]:
    text = raw.decode("ascii")
    prefix, body = text[:4], text[4:]
    item = cbor2.loads(zlib.decompress(base45.b45decode(body)))
    return prefix, list(item.value)


def _seal(prefix: str, item: Any) -> bytes:
    return cose.encode_base45_zlib(cbor2.dumps(item), prefix).encode("ascii")


@st.composite
def mutated_signed_codes(draw: st.DrawFn, world: World) -> tuple[bytes, bytes]:
    """A valid GK1/HC1 code, and that code mutated at one layer of its container."""
    raw = draw(st.sampled_from(list(world.codes.values())))
    return raw, draw(_mutated_layer(raw))


@st.composite
def _mutated_layer(draw: st.DrawFn, raw: bytes) -> bytes:
    prefix, (protected, unprotected, payload, signature) = _container(raw)
    layer = draw(
        st.sampled_from(
            [
                "text",
                "text-any-byte",
                "compressed",
                "cose",
                "protected",
                "protected-reordered",
                "unprotected",
                "payload",
                "payload-reencoded",
                "signature",
                "signature-high-s",
                "rewrap",
                "alg",
            ]
        )
    )
    tagged = cbor2.CBORTag(18, [protected, unprotected, payload, signature])
    if layer == "text":
        return prefix.encode() + draw(mutated(raw[4:], BASE45_BYTES))
    if layer == "text-any-byte":
        return draw(mutated(raw))
    if layer == "compressed":
        compressed = draw(mutated(base45.b45decode(raw[4:].decode())))
        return (prefix + base45.b45encode(compressed).decode()).encode()
    if layer == "cose":
        return cose.encode_base45_zlib(draw(mutated(cbor2.dumps(tagged))), prefix).encode()
    if layer == "protected":
        return _seal(
            prefix, cbor2.CBORTag(18, [draw(mutated(protected)), unprotected, payload, signature])
        )
    if layer == "protected-reordered":
        # The same header meaning in other bytes: the signature covers bytes.
        header = cbor2.loads(protected)
        reordered = cbor2.dumps(dict(reversed(list(header.items()))) | {draw(CBOR_KEYS): 0})
        return _seal(prefix, cbor2.CBORTag(18, [reordered, unprotected, payload, signature]))
    if layer == "unprotected":
        header = draw(st.dictionaries(st.sampled_from([1, 2, 4, 33]), CBOR_VALUES, max_size=3))
        return _seal(prefix, cbor2.CBORTag(18, [protected, header, payload, signature]))
    if layer == "payload":
        return _seal(
            prefix, cbor2.CBORTag(18, [protected, unprotected, draw(mutated(payload)), signature])
        )
    if layer == "payload-reencoded":
        claims = cbor2.loads(payload)
        key = draw(st.sampled_from(sorted(claims)))
        changed = {**claims, key: draw(cbor_or(claims[key]))}
        if draw(st.booleans()):
            changed = dict(reversed(list(changed.items())))
        return _seal(
            prefix, cbor2.CBORTag(18, [protected, unprotected, cbor2.dumps(changed), signature])
        )
    if layer == "signature":
        return _seal(
            prefix, cbor2.CBORTag(18, [protected, unprotected, payload, draw(mutated(signature))])
        )
    if layer == "signature-high-s":
        # (r, n - s) is the same ECDSA signature in its other form: it still
        # verifies, over the same bytes, so the Credential must be the same.
        order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
        s = int.from_bytes(signature[32:], "big")
        flipped = signature[:32] + (order - s).to_bytes(32, "big")
        return _seal(prefix, cbor2.CBORTag(18, [protected, unprotected, payload, flipped]))
    if layer == "rewrap":
        # Sampled by index: hypothesis hashes what it samples, and cbor2's
        # CBORTag raises RuntimeError (not TypeError) when it cannot be hashed.
        message = [protected, unprotected, payload, signature]
        wrappings = [
            message,
            cbor2.CBORTag(61, cbor2.CBORTag(18, message)),
            cbor2.CBORTag(61, message),
            cbor2.CBORTag(18, [*message, b""]),
            cbor2.CBORTag(98, message),
        ]
        return _seal(prefix, wrappings[draw(st.integers(0, len(wrappings) - 1))])
    # alg: another algorithm (or kid) claimed over the same signature
    header = cbor2.loads(protected)
    header[draw(st.sampled_from([1, 4]))] = draw(
        st.one_of(st.sampled_from([-7, -8, -35, -37, -257, 0, 1]), CBOR_VALUES)
    )
    return _seal(prefix, cbor2.CBORTag(18, [cbor2.dumps(header), unprotected, payload, signature]))


@MANY
@given(data=st.data())
def test_mutated_signed_codes_verify_only_when_the_signed_bytes_are_unchanged(
    world: World, data: st.DataObject
) -> None:
    original, raw = data.draw(mutated_signed_codes(world))
    result = check_everywhere(world, raw)
    prefix = original[:4]
    if payload_bytes(raw)[:4] == prefix:
        message = _signed_message(raw, prefix.decode("ascii"))
        if message is not None and message == _signed_message(original, prefix.decode("ascii")):
            # A no-op for what was signed and the signature: it must still
            # verify, the same way (re-wrapping, framing whitespace).
            assert result == world.issued[message[:2]]


def _signed_message(raw: bytes, prefix: str) -> tuple[bytes, bytes, bytes] | None:
    try:
        text = payload_bytes(raw).decode("ascii")
        msg = cose.parse_cose_sign1(cose.decode_base45_zlib(text, prefix))
    except (UnicodeDecodeError, CoseError):
        return None
    return msg.protected, msg.unverified_payload, msg.signature


@FEW
@given(data=st.data())
def test_codes_signed_by_an_impostor_with_a_trusted_key_id_are_refused(
    world: World, data: st.DataObject
) -> None:
    impostor = IMPOSTOR_KEYS[data.draw(st.integers(0, len(IMPOSTOR_KEYS) - 1))]
    raw = data.draw(st.sampled_from(list(world.codes.values())))
    prefix, (protected, _, payload, _) = _container(raw)
    kid = cbor2.loads(protected)[4]
    forged = world.sign(prefix, payload, key=impostor, kid=kid)
    result = check_everywhere(world, forged)
    assert isinstance(result, Rejection)
    assert result.reason.endswith(("bad-signature", "bad-encoding"))


# --- claims of any shape, signed with the trusted key -------------------------------


@st.composite
def gk1_claims(draw: st.DrawFn) -> dict[Any, Any]:
    """CWT claims for a site code: each claim valid, absent or any CBOR."""
    kind = draw(st.sampled_from([0, 1]))
    private: dict[Any, Any] = {
        0: kind,
        1: draw(st.sampled_from(["Nguyễn Thị Minh Khai", "Trần Văn Đức"])),
        2: None if kind == 1 else draw(st.sampled_from([None, "fever"])),
        3: draw(st.sampled_from([None, "Phòng Kỹ thuật"])) if kind == 1 else None,
        4: "NV-00123" if kind == 1 else None,
    }
    claims: dict[Any, Any] = {
        1: SITE,
        4: AT_S + 3600,
        5: None,
        6: AT_S - 3600,
        7: bytes.fromhex("00112233445566778899"),
        -70001: private,
    }
    for target in (claims, private):
        for key in draw(st.lists(st.sampled_from(sorted(target)), max_size=3)):
            target[key] = draw(CBOR_VALUES)
        if draw(st.booleans()):
            target[draw(CBOR_KEYS)] = draw(CBOR_VALUES)
    private = {k: v for k, v in private.items() if v is not None}
    if isinstance(claims[-70001], dict):
        claims[-70001] = private
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.slow
@HOSTILE
@given(claims=gk1_claims())
def test_site_codes_signed_over_claims_of_any_shape_give_credential_or_rejection(
    world: World, claims: dict[Any, Any]
) -> None:
    raw = world.sign(GK1, cbor2.dumps(claims))
    for result in (world.site.parse(raw, at=AT), world.registry.identify(raw, at=AT)):
        assert_parse_contract(result)
        assert_identified(result)
        if isinstance(result, Credential):
            private = claims[-70001]
            assert result.kind == (KIND_DECLARATION, KIND_STAFF_PASS)[private[0]]
            assert result.display_name == normalise_name(private[1])
            assert result.valid_until == datetime.fromtimestamp(claims[4], UTC)
            assert claims.get(5, claims[6]) - 300 <= AT_S < claims[4] + 300


def _dcc_paths(document: Mapping[Any, Any]) -> list[tuple[Any, ...]]:
    """Every key path in a DCC that is still shaped like one: top level,
    name, and the first entry's fields."""
    paths: list[tuple[Any, ...]] = [(key,) for key in document]
    if isinstance(document.get("nam"), dict):
        paths += [("nam", key) for key in document["nam"]]
    for cert_type in ("v", "t", "r"):
        entries = document.get(cert_type)
        if isinstance(entries, list) and entries and isinstance(entries[0], dict):
            paths += [(cert_type, 0, key) for key in entries[0]]
    return paths


DCC_VALUES = st.one_of(
    CBOR_VALUES,
    st.dates().map(date.isoformat),
    st.datetimes(timezones=st.sampled_from([UTC, None])).map(datetime.isoformat),
    st.from_regex(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9:]{8}(Z|[+-][0-9]{2}:[0-9]{2}))?", fullmatch=True
    ),
    st.integers(-3, 12),
    st.sampled_from(["v", "t", "r", "", "1.3.0", "NGUYEN<<", "840539006", "XX", "VN"]),
)


@st.composite
def hc1_claims(draw: st.DrawFn) -> dict[Any, Any]:
    """CWT claims for an HC1 certificate: a valid DCC with random edits, and
    each CWT claim valid, absent or any CBOR."""
    document = dcc(draw(st.sampled_from(["v", "t", "r"])))
    for _ in range(draw(st.integers(0, 4))):
        paths = _dcc_paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = document
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["set", "set", "delete", "add"]))
        if action == "set":
            parent[path[-1]] = draw(DCC_VALUES)
        elif action == "delete":
            del parent[path[-1]]
        else:
            parent[draw(st.sampled_from(["v", "t", "r", "dr", "ma", "x"]))] = draw(DCC_VALUES)
    claims: dict[Any, Any] = hc1_cwt(document)
    for key in draw(st.lists(st.sampled_from([1, 4, 6, -260]), max_size=2)):
        claims[key] = draw(st.one_of(CBOR_VALUES, st.floats(), st.integers(0, 2**40)))
    if draw(st.integers(0, 9)) == 0:
        del claims[draw(st.sampled_from([1, 4, 6, -260]))]
    return claims


@HOSTILE
@given(claims=hc1_claims())
def test_hc1_certificates_signed_over_claims_of_any_shape_give_credential_or_rejection(
    world: World, claims: dict[Any, Any]
) -> None:
    raw = world.sign(HC1, cbor2.dumps(claims))
    for result in (world.hcert.parse(raw, at=AT), world.registry.identify(raw, at=AT)):
        assert_parse_contract(result)
        assert_identified(result)
        if isinstance(result, Credential):
            assert result.kind == KIND_HCERT
            assert result.verified
            assert result.subject_id.startswith("hcert:")
            # Admitted only before its expiry (iat may be absent, exp never).
            expiry = claims[4].value if isinstance(claims[4], cbor2.CBORTag) else claims[4]
            assert expiry + 300 >= AT_S
            assert result.valid_until == datetime.fromtimestamp(math.floor(expiry), UTC)


# --- the COSE core on its own ---------------------------------------------------------

VERIFY_KEYS: tuple[Any, ...] = (
    ec.generate_private_key(ec.SECP256R1()).public_key(),
    ec.generate_private_key(ec.SECP384R1()).public_key(),
    ed25519.Ed25519PrivateKey.generate().public_key(),
    rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(),
)
IMPOSTOR_KEYS: tuple[Any, ...] = (
    ec.generate_private_key(ec.SECP256R1()),
    ed25519.Ed25519PrivateKey.generate(),
)


@HOSTILE
@given(
    text=st.one_of(
        st.text(st.characters(codec="utf-8"), max_size=200),
        BASE45_TEXT.map(lambda body: "HC1:" + body),
        st.binary(max_size=300).map(lambda data: "HC1:" + base45.b45encode(data).decode()),
    )
)
def test_base45_zlib_decoding_raises_only_cose_errors(text: str) -> None:
    data, reason = cose_outcome(cose.decode_base45_zlib, text, "HC1:")
    if data is None:
        assert reason == cose.REASON_ENCODING
    else:
        assert len(data) <= cose.MAX_DECOMPRESSED_BYTES


@HOSTILE
@given(
    data=st.one_of(
        st.binary(max_size=300),
        CBOR_VALUES.map(cbor2.dumps),
        st.tuples(CBOR_VALUES.map(cbor2.dumps), st.binary(min_size=1, max_size=4)).map(b"".join),
    )
)
def test_cbor_decoding_and_cose_parsing_raise_only_cose_errors(data: bytes) -> None:
    _, reason = cose_outcome(cose.decode_cbor, data)
    assert reason in (None, cose.REASON_CBOR)
    msg, reason = cose_outcome(cose.parse_cose_sign1, data)
    if msg is None:
        assert reason in (cose.REASON_CBOR, cose.REASON_STRUCTURE, cose.REASON_ALGORITHM)
        return
    assert isinstance(msg.protected, bytes)
    assert type(msg.alg) is int
    for key in VERIFY_KEYS:
        verdict, reason = cose_outcome(cose.verify_sign1, msg, key)
        assert verdict is False or reason == cose.REASON_ALGORITHM


def test_nan_infinite_and_huge_timestamps_in_signed_codes_are_bad_claims(world: World) -> None:
    # Values that compare strangely (NaN is not equal to itself) or overflow
    # datetime (bignums, infinities) where the formats expect an expiry.
    gk1 = cbor2.loads(signed_content(world.codes["declaration"], GK1)[1])  # type: ignore[index]
    for value in (math.nan, math.inf, -math.inf, 2**64, -(2**64) - 1, 2**300, 1e300, -1):
        for prefix, cwt in ((GK1, {**gk1, 4: value}), (HC1, {**hc1_cwt(dcc("v")), 4: value})):
            result = check_everywhere(world, world.sign(prefix, cbor2.dumps(cwt)))
            assert isinstance(result, Rejection)
            assert result.reason.endswith("bad-claims"), result


def test_vaccination_dated_at_the_end_of_the_calendar_is_refused_not_raised(world: World) -> None:
    document = dcc("v")
    document["v"][0]["dt"] = "9999-12-31"
    result = world.hcert.parse(world.sign(HC1, cbor2.dumps(hc1_cwt(document))), at=AT)
    assert isinstance(result, Rejection)


# --- amplification: a short code must not decode into a mountain of objects --------

# 64 KB of one-byte CBOR tags: a QR code of under 150 characters, and 30,000+
# Python objects (about 20 ms on x86) if decoded before the signature check.
TAG_BOMB = b"\x9f" + b"\xc0\x00" * 32_767 + b"\xff"


def _decoded_sizes(monkeypatch: pytest.MonkeyPatch, *modules: Any) -> list[int]:
    """Record the size of every CBOR item ``modules`` decode."""
    sizes: list[int] = []
    real = cose.decode_cbor

    def recording(data: bytes, **options: Any) -> Any:
        sizes.append(len(data))
        return real(data, **options)

    for module in modules:
        monkeypatch.setattr(module, "decode_cbor", recording)
    return sizes


def test_a_short_gk1_code_inflating_to_64_kb_of_cbor_is_refused_undecoded(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = cose.encode_base45_zlib(TAG_BOMB, GK1).encode()
    assert len(raw) < 200
    sizes = _decoded_sizes(monkeypatch, cose)
    result = check_everywhere(world, raw)
    assert isinstance(result, Rejection)
    assert result.reason == "sitecode-bad-encoding"
    assert f"more than {cose.MAX_COSE_BYTES}" in result.detail
    assert sizes == []


def test_a_short_hc1_code_inflating_to_64_kb_of_cbor_is_refused_undecoded(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kiosk.codes.hcert

    raw = cose.encode_base45_zlib(TAG_BOMB, HC1).encode()
    sizes = _decoded_sizes(monkeypatch, cose, kiosk.codes.hcert)
    result = world.hcert.parse(raw, at=AT)
    assert isinstance(result, Rejection)
    assert result.reason == "hcert-bad-encoding"
    assert max(sizes, default=0) <= cose.MAX_COSE_BYTES
