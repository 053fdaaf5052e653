"""The codes package: CCCD and PC-Covid parsers, and the registry boundary."""

from __future__ import annotations

import logging
import unicodedata
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.codes import (
    KIND_CCCD,
    KIND_PC_COVID,
    KIND_UNRECOGNISED,
    MAX_PAYLOAD_BYTES,
    CccdFormat,
    Credential,
    Identified,
    PcCovidFormat,
    Registry,
    Rejection,
    default_formats,
)
from kiosk.codes.base import mask_id, normalise_name

AT = datetime(2024, 6, 1, 9, 30, tzinfo=UTC)

NAME_NFC = "NGUYỄN THỊ HỒNG NHUNG"
NAME_NFD = unicodedata.normalize("NFD", NAME_NFC)
ADDRESS = "Số 1 Phố Huế, Hai Bà Trưng, Hà Nội"

CCCD_7 = f"001190000123|123456789|{NAME_NFC}|01021990|Nữ|{ADDRESS}|15042021"

HOSTILE = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture
def registry() -> Registry:
    return Registry(default_formats())


def identify(payload: str | bytes) -> Identified:
    raw = payload.encode() if isinstance(payload, str) else payload
    return Registry(default_formats()).identify(raw, at=AT)


def credential(payload: str | bytes) -> Credential:
    result = identify(payload)
    assert isinstance(result, Credential), result
    return result


def assert_well_formed(result: Identified) -> None:
    """What policy relies on, whatever the payload was."""
    if isinstance(result, Credential):
        assert result.subject_id
        assert result.display_name
        assert unicodedata.is_normalized("NFC", result.display_name)
    else:
        assert isinstance(result, Rejection)
        assert result.reason
        assert result.kind


# --- CCCD: valid samples ---------------------------------------------------


def test_cccd_seven_fields_gives_identity_without_address() -> None:
    result = credential(CCCD_7)
    assert result == Credential(
        kind=KIND_CCCD,
        subject_id="001190000123",
        display_name=NAME_NFC,
        masked_id="********0123",
        id_number="001190000123",
        birth_date=date(1990, 2, 1),
        verified=False,
        attributes=(("gender", "female"),),
    )
    assert "Huế" not in repr(result)


@pytest.mark.parametrize(
    ("payload", "name", "gender"),
    [
        pytest.param(
            "079090000456||TRẦN VĂN BA|31121990|Nam|TP. Hồ Chí Minh|01072021",
            "TRẦN VĂN BA",
            "male",
            id="empty-old-id",
        ),
        pytest.param(
            "079090000456|TRẦN VĂN BA|31121990|Nam|TP. Hồ Chí Minh|01072021",
            "TRẦN VĂN BA",
            "male",
            id="six-fields-without-old-id",
        ),
        pytest.param(
            "079090000456|123456789|TRẦN VĂN BA|31121990|Nam|Huế|01072021|01072031|X|",
            "TRẦN VĂN BA",
            "male",
            id="extra-trailing-fields",
        ),
        pytest.param(
            "\ufeff079090000456||Lê  Thị\u00a0Mai |29022000|nữ||01072021\r\n",
            "Lê Thị Mai",
            "female",
            id="bom-crlf-whitespace-leap-day-empty-address",
        ),
        pytest.param(
            unicodedata.normalize("NFD", "079090000456||ĐỖ MINH|01011990|NỮ|Huế|01072021"),
            "ĐỖ MINH",
            "female",
            id="whole-payload-nfd",
        ),
        pytest.param(
            "079090000456||DO MINH|01011990|Female|Hue|01072021",
            "DO MINH",
            "female",
            id="english-gender",
        ),
        pytest.param(
            "079090000456||DO MINH|01011990|Nu|Hue|01011990",
            "DO MINH",
            "female",
            id="ascii-gender-issued-on-birth-day",
        ),
    ],
)
def test_cccd_variants_are_accepted(payload: str, name: str, gender: str) -> None:
    result = credential(payload)
    assert result.kind == KIND_CCCD
    assert result.subject_id == "079090000456"
    assert result.display_name == name
    assert result.attributes == (("gender", gender),)


def test_cccd_nfd_name_comes_out_nfc() -> None:
    result = credential(CCCD_7.replace(NAME_NFC, NAME_NFD))
    assert NAME_NFD != NAME_NFC
    assert result.display_name == NAME_NFC


# --- CCCD: rejections ------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("00119000012|1|A|01011990|Nam|x|01012020", "cccd-bad-id"),
        ("123456789|A B|01011990|Nam|x|01012020", "cccd-bad-id"),
        ("001190000123|123456789|NGUYEN VAN A|01011990|Nam|Hà Nội", "cccd-bad-fields"),
        ("001190000123|NGUYEN VAN A|01011990|Nam|Hà Nội", "cccd-bad-fields"),
        ("001190000123|", "cccd-bad-fields"),
        ("001190000123||||||", "cccd-bad-name"),
        ("001190000123||NGUYEN\x00VAN|01011990|Nam|x|01012020", "cccd-bad-name"),
        ("001190000123||NGUYEN\tVAN|01011990|Nam|x|01012020", "cccd-bad-name"),
        ("001190000123||NGUYEN\u200bVAN|01011990|Nam|x|01012020", "cccd-bad-name"),
        ("001190000123||R2D2|01011990|Nam|x|01012020", "cccd-bad-name"),
        ("001190000123||" + "A" * 101 + "|01011990|Nam|x|01012020", "cccd-bad-name"),
        ("001190000123||A|31021990|Nam|x|01012020", "cccd-bad-birth-date"),
        ("001190000123||A|1990-01-0|Nam|x|01012020", "cccd-bad-birth-date"),
        ("001190000123||A|٠١٠١١٩٩٠|Nam|x|01012020", "cccd-bad-birth-date"),
        ("001190000123||A|03062024|Nam|x|01012020", "cccd-bad-birth-date"),
        ("001190000123||A|01011890|Nam|x|01012020", "cccd-bad-birth-date"),
        ("001190000123||A|01011990|Other|x|01012020", "cccd-bad-gender"),
        ("001190000123||A|01011990||x|01012020", "cccd-bad-gender"),
        ("001190000123||A|01011990|Nam|x|", "cccd-bad-issue-date"),
        ("001190000123||A|01011990|Nam|x|30022020", "cccd-bad-issue-date"),
        ("001190000123||A|01011990|Nam|x|31121989", "cccd-bad-issue-date"),
    ],
)
def test_cccd_rejections_have_their_own_reason(payload: str, reason: str) -> None:
    result = identify(payload)
    assert isinstance(result, Rejection)
    assert (result.kind, result.reason) == (KIND_CCCD, reason)
    assert result.detail
    assert "001190000123" not in result.detail


def test_cccd_with_broken_utf8_is_a_cccd_rejection() -> None:
    raw = b"001190000123||NGUY\xe1\xbb|01011990|Nam|x|01012020"
    assert identify(raw) == Rejection(KIND_CCCD, "cccd-bad-encoding", "payload is not valid UTF-8")


def test_cccd_birth_date_tomorrow_in_vietnam_is_tolerated() -> None:
    # at is UTC; 2024-06-02 is already "today" in Hanoi after 17:00 UTC.
    result = credential("001190000123||A|02062024|Nam|x|02062024")
    assert result.birth_date == date(2024, 6, 2)


# --- PC-Covid ---------------------------------------------------------------


def test_pccovid_unmasked_keeps_id_and_prefers_qid_as_subject() -> None:
    result = credential("079201001234|NGUYEN VAN AN|1990-12-01|0|QID-7f3a9c|")
    assert result == Credential(
        kind=KIND_PC_COVID,
        subject_id="QID-7f3a9c",
        display_name="NGUYEN VAN AN",
        masked_id="********1234",
        id_number="079201001234",
        birth_date=date(1990, 12, 1),
        attributes=(("declared_for", "self"),),
    )


def test_pccovid_masked_has_no_id_number_or_birth_date() -> None:
    result = credential("******001234|NGUYEN V** A*|1990-**-**|1|QID-7f3a9c|1#0912345678")
    assert result.subject_id == "QID-7f3a9c"
    assert result.display_name == "NGUYEN V** A*"
    assert result.masked_id == "********1234"
    assert result.id_number is None
    assert result.birth_date is None
    assert result.attributes == (("declared_for", "proxy"),)
    assert "0912345678" not in repr(result)


@pytest.mark.parametrize(
    ("payload", "subject_id", "name"),
    [
        pytest.param("******001234|AN|1990-01-01|0|", "******001234", "AN", id="no-qid"),
        pytest.param("C1234567|JOHN SMITH|1985-07-04||Q1", "Q1", "JOHN SMITH", id="passport"),
        pytest.param(
            unicodedata.normalize("NFD", "079201001234|Nguyễn An|****-**-**|0|Q|a|b|c"),
            "Q",
            "Nguyễn An",
            id="nfd-fully-masked-date-extra-fields",
        ),
        pytest.param("************|AN|1990-**-**|0|Q|", "Q", "AN", id="masked-id-with-qid"),
    ],
)
def test_pccovid_variants_are_accepted(payload: str, subject_id: str, name: str) -> None:
    result = credential(payload)
    assert result.kind == KIND_PC_COVID
    assert result.subject_id == subject_id
    assert result.display_name == name


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("079201001234|AN|1990-01-01|0", "pccovid-bad-fields"),
        ("079201001234|AN|1990-01-01", "pccovid-bad-fields"),
        ("079201001234|AN|1990-01-01|2|Q|", "pccovid-bad-fields"),
        ("0792|AN|1990-01-01|0|Q|", "pccovid-bad-id"),
        ("|AN|1990-01-01|0|Q|", "pccovid-bad-id"),
        ("0792 01001234|AN|1990-01-01|0|Q|", "pccovid-bad-id"),
        ("************|AN|1990-01-01|0||", "pccovid-bad-id"),
        ("079201001234|AN|1990-01-01|0|Q Q|", "pccovid-bad-qid"),
        ("079201001234||1990-01-01|0|Q|", "pccovid-bad-name"),
        ("079201001234|*** **|1990-01-01|0|Q|", "pccovid-bad-name"),
        ("079201001234|AN\x07|1990-01-01|0|Q|", "pccovid-bad-name"),
        ("079201001234|AN|1990-02-30|0|Q|", "pccovid-bad-birth-date"),
        ("079201001234|AN|2025-01-01|0|Q|", "pccovid-bad-birth-date"),
        ("079201001234|AN|1800-**-**|0|Q|", "pccovid-bad-birth-date"),
        ("079201001234|AN|1990-13-**|0|Q|", "pccovid-bad-birth-date"),
        ("079201001234|AN|1990-**-32|0|Q|", "pccovid-bad-birth-date"),
    ],
)
def test_pccovid_rejections_have_their_own_reason(payload: str, reason: str) -> None:
    result = identify(payload)
    assert isinstance(result, Rejection)
    assert (result.kind, result.reason) == (KIND_PC_COVID, reason)
    assert result.detail


def test_pccovid_with_broken_utf8_is_a_pccovid_rejection() -> None:
    result = identify(b"079201001234|\xff\xfe|1990-01-01|0|Q|")
    assert isinstance(result, Rejection)
    assert result.reason == "pccovid-bad-encoding"


def test_formats_do_not_claim_each_others_payloads() -> None:
    pc_covid = b"079201001234|NGUYEN VAN AN|1990-12-01|0|Q|"
    assert CccdFormat().parse(pc_covid, at=AT) is None
    assert PcCovidFormat().parse(CCCD_7.encode(), at=AT) is None
    # Priority does not matter between the two: the date field decides.
    reversed_registry = Registry([PcCovidFormat(), CccdFormat()])
    assert reversed_registry.identify(CCCD_7.encode(), at=AT) == identify(CCCD_7)
    assert reversed_registry.identify(pc_covid, at=AT) == identify(pc_covid)


# --- Registry ---------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"|",
        b"||||||",
        b"hello world",
        b"HC1:NCFOXN%TS3DH",
        b"https://example.com/?a=1|2",
        b"\x00\x01\x02\xff",
        b"\xef\xbb\xbf",
        "Nguyễn|Văn|A".encode(),
        b"12345678|A|01011990|Nam|x|01012020",
        b"0011900001234||A|01011990|Nam|x|01012020",
    ],
)
def test_unknown_payloads_are_unrecognised(registry: Registry, payload: bytes) -> None:
    result = registry.identify(payload, at=AT)
    assert isinstance(result, Rejection)
    assert (result.kind, result.reason) == (KIND_UNRECOGNISED, "unrecognised")


def test_payload_longer_than_a_qr_code_is_refused_before_parsing() -> None:
    registry = Registry([ExplodingFormat()])
    result = registry.identify(b"1" * (MAX_PAYLOAD_BYTES + 1), at=AT)
    assert isinstance(result, Rejection)
    assert (result.kind, result.reason) == (KIND_UNRECOGNISED, "payload-too-large")


def test_payload_of_exactly_qr_maximum_is_parsed(registry: Registry) -> None:
    result = registry.identify(b"1" * MAX_PAYLOAD_BYTES, at=AT)
    assert isinstance(result, Rejection)
    assert result.reason == "unrecognised"


class PrefixFormat:
    """A fake signed format: anything after ``TEST:`` is a subject id."""

    kind = "test"

    def parse(self, raw: bytes, *, at: datetime) -> Identified | None:
        if not raw.startswith(b"TEST:"):
            return None
        return Credential(kind=self.kind, subject_id="t-1", display_name="Test Person")


class ExplodingFormat:
    """A broken format whose exception message quotes the payload."""

    kind = "exploding"

    def parse(self, raw: bytes, *, at: datetime) -> Identified | None:
        raise ValueError(f"cannot parse {raw!r}")


class ContractBreakingFormat:
    """Returns a credential nobody can be matched by."""

    kind = "sloppy"

    def parse(self, raw: bytes, *, at: datetime) -> Identified | None:
        return Credential(kind=self.kind, subject_id="", display_name="x")


def test_format_registered_first_wins() -> None:
    registry = Registry([PrefixFormat(), *default_formats()])
    assert registry.identify(b"TEST:001190000123||A|01011990|Nam|x|01012020", at=AT) == (
        Credential(kind="test", subject_id="t-1", display_name="Test Person")
    )
    # Everything else still reaches the default formats.
    assert registry.identify(CCCD_7.encode(), at=AT) == identify(CCCD_7)


def test_parser_that_raises_becomes_parser_error_without_logging_payload(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = Registry([PrefixFormat(), ExplodingFormat(), *default_formats()])
    with caplog.at_level(logging.DEBUG, logger="kiosk.codes"):
        result = registry.identify(CCCD_7.encode(), at=AT)
    assert result == Rejection("exploding", "parser-error", "parser raised ValueError")
    assert "ValueError" in caplog.text
    assert "001190000123" not in caplog.text
    assert "NGUY" not in caplog.text


def test_parser_breaking_the_contract_becomes_parser_error() -> None:
    result = Registry([ContractBreakingFormat()]).identify(b"x", at=AT)
    assert isinstance(result, Rejection)
    assert (result.kind, result.reason) == ("sloppy", "parser-error")


def test_empty_registry_refuses_everything() -> None:
    result = Registry([]).identify(CCCD_7.encode(), at=AT)
    assert isinstance(result, Rejection)
    assert result.reason == "unrecognised"


# --- Helpers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("001190000123", "********0123"),
        ("123456789", "*****6789"),
        ("C1234567", "****4567"),
        ("123", "**3"),
        ("", ""),
    ],
)
def test_mask_id_keeps_at_most_last_four_and_half(value: str, masked: str) -> None:
    assert mask_id(value) == masked


def test_normalise_name_refuses_mask_unless_allowed() -> None:
    assert normalise_name("NGUYEN V**") is None
    assert normalise_name("NGUYEN V**", allow_mask=True) == "NGUYEN V**"


# --- Hostile input through the registry -------------------------------------

_FIELD_TEXT = st.one_of(
    st.text(max_size=20),
    st.from_regex(r"[0-9]{0,13}", fullmatch=True),
    st.from_regex(r"[0-9*]{4}-[0-9*]{2}-[0-9*]{2}", fullmatch=True),
    st.from_regex(r"[0-9]{8}", fullmatch=True),
    st.sampled_from(["", "Nam", "Nữ", NAME_NFD, NAME_NFC, "0", "1", "*", " ", "\x00"]),
)
_ID_FIRST = st.one_of(
    st.from_regex(r"[0-9]{9,13}", fullmatch=True),
    st.from_regex(r"[0-9A-Z*]{0,14}", fullmatch=True),
)


@st.composite
def _pipe_payloads(draw: st.DrawFn) -> bytes:
    fields = [draw(_ID_FIRST), *draw(st.lists(_FIELD_TEXT, max_size=10))]
    text = "|".join(fields)
    if draw(st.booleans()):
        text = unicodedata.normalize(draw(st.sampled_from(["NFC", "NFD", "NFKD"])), text)
    raw = text.encode("utf-8", errors="surrogatepass")
    prefix = draw(st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff", b" "]))
    return prefix + raw


_TEMPLATES = (
    CCCD_7,
    "079090000456|TRẦN VĂN BA|31121990|Nam|TP. Hồ Chí Minh|01072021",
    "079201001234|NGUYEN VAN AN|1990-12-01|0|QID-7f3a9c|",
    "******001234|NGUYEN V** A*|1990-**-**|1|QID-7f3a9c|1#0912345678",
)


@st.composite
def _mutated_payloads(draw: st.DrawFn) -> bytes:
    """Valid samples with a few fields replaced, dropped or appended, so the
    checks deep inside each parser are reached, not just the first one."""
    fields = draw(st.sampled_from(_TEMPLATES)).split("|")
    for _ in range(draw(st.integers(0, 2))):
        fields[draw(st.integers(0, len(fields) - 1))] = draw(_FIELD_TEXT)
    if draw(st.booleans()):
        del fields[draw(st.integers(1, len(fields) - 1)) :]
    fields += draw(st.lists(_FIELD_TEXT, max_size=2))
    return "|".join(fields).encode("utf-8", errors="surrogatepass")


@HOSTILE
@given(raw=st.binary(max_size=600))
def test_any_bytes_give_credential_or_rejection(raw: bytes) -> None:
    assert_well_formed(Registry(default_formats()).identify(raw, at=AT))


@HOSTILE
@given(text=st.text(max_size=300))
def test_any_text_gives_credential_or_rejection(text: str) -> None:
    raw = text.encode("utf-8", errors="surrogatepass")
    assert_well_formed(Registry(default_formats()).identify(raw, at=AT))


@HOSTILE
@given(raw=st.one_of(_pipe_payloads(), _mutated_payloads()))
def test_pipe_separated_fields_give_credential_or_rejection(raw: bytes) -> None:
    result = Registry(default_formats()).identify(raw, at=AT)
    assert_well_formed(result)
    if isinstance(result, Credential):
        assert result.kind in (KIND_CCCD, KIND_PC_COVID)
        assert result.masked_id is not None
        if result.id_number is not None:
            assert result.id_number not in result.masked_id


@HOSTILE
@given(
    id_number=st.from_regex(r"[0-9]{12}", fullmatch=True),
    name=st.text(
        alphabet=st.characters(categories=("Lu", "Ll", "Mn", "Zs")), min_size=1, max_size=40
    ),
    born=st.dates(min_value=date(1900, 1, 1), max_value=date(2024, 5, 31)),
    extra=st.lists(st.text(max_size=10).filter(lambda s: "|" not in s), max_size=3),
)
def test_generated_cccd_names_are_nfc_or_rejected(
    id_number: str, name: str, born: date, extra: list[str]
) -> None:
    dob = born.strftime("%d%m%Y")
    payload = "|".join([id_number, "", name, dob, "Nam", "x", dob, *extra])
    result = Registry(default_formats()).identify(payload.encode("utf-8", "surrogatepass"), at=AT)
    assert_well_formed(result)
    assert result.kind == KIND_CCCD
    if isinstance(result, Credential):
        assert result.birth_date == born
    else:
        assert result.reason == "cccd-bad-name"


def test_ten_kilobytes_of_pipes_is_too_large(registry: Registry) -> None:
    result = registry.identify(b"|" * 10_240, at=AT)
    assert isinstance(result, Rejection)
    assert result.reason == "payload-too-large"
