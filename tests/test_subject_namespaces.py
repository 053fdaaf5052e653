"""Subjects are namespaced by kind (issue 14, finding 1): a code of one kind
never moves another kind's person, except a chip ID card and a personal QR
showing the same full 12-digit ID number, which are one person.

Through the camera: real codes rendered into frames, the real decoder, the
gate built by the composition root, a real SQLite file.
"""

# ruff: noqa: F811 -- the fixtures site and gates are imported from test_kiosk_sitecodes

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kiosk.codes import Credential
from kiosk.codes.base import KIND_HCERT
from kiosk.privacy import (
    legacy_subject_hash,
    load_or_create_key,
    subject_hash,
    subject_of,
    typed_id_subject,
)
from kiosk.samples import VISITOR_CCCD
from kiosk.scanner import Outcome
from tests.test_kiosk_sitecodes import decisions, filmed, gates, site  # noqa: F401

KEY = b"k" * 32
AT = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)


def personal_qr(qid: str, id_field: str = "************", name: str = "Nguyễn Văn Giả") -> str:
    """The national personal QR (1405/QĐ-BTTTT): anyone can make one, nothing is signed."""
    return f"{id_field}|{name}|1990-01-01|0|{qid}|"


def test_a_personal_qr_naming_a_staff_pass_does_not_move_the_staff_member(site, gates):
    staff = site.staff_pass(staff_id="NV-0042")
    forged = personal_qr("STAFF:NV-0042")

    outcomes = filmed(site, gates, staff.text, forged, staff.text)

    assert decisions(outcomes) == [
        ("allow", "in", "ok", "staff-pass"),
        ("allow", "in", "ok", "pc-covid"),  # its own subject: an entry, not the staff's exit
        ("allow", "out", "ok-exit", "staff-pass"),  # the staff member was still inside
    ]
    hashes = [o.event.subject_hash for o in outcomes if o.event]
    assert hashes[0] == hashes[2] != hashes[1]


def test_a_personal_qr_naming_a_declaration_does_not_move_its_holder(site, gates):
    declaration = site.declare("Phạm Thu Hà")
    forged = personal_qr(declaration.record.id)  # the code id is readable from any photo

    outcomes = filmed(site, gates, declaration.text, forged, declaration.text)

    assert [d[1] for d in decisions(outcomes)] == ["in", "in", "out"]


def test_an_id_card_and_a_personal_qr_with_the_same_full_number_are_one_person(site, gates):
    same_person = personal_qr("QID-123", id_field="079201000123", name="Nguyễn Văn An")

    outcomes: list[Outcome] = filmed(site, gates, VISITOR_CCCD.payload, same_person)

    assert decisions(outcomes) == [
        ("allow", "in", "ok", "cccd"),
        ("allow", "out", "ok-exit", "pc-covid"),
    ]


def credential(kind: str, subject_id: str, id_number: str | None = None) -> Credential:
    return Credential(kind=kind, subject_id=subject_id, display_name="A", id_number=id_number)


@pytest.mark.parametrize(
    ("forged", "real"),
    [
        (credential("pc-covid", "STAFF:S-001"), credential("staff-pass", "staff:S-001")),
        (
            credential("pc-covid", "HCERT:NGUYEN<<AN:1990-01-01"),
            credential(KIND_HCERT, "hcert:NGUYEN<<AN:1990-01-01"),
        ),
        (credential("pc-covid", "0123456789abcdef"), credential("declaration", "0123456789abcdef")),
        # A QID of twelve digits is not an ID number: the ID field is masked.
        (
            credential("pc-covid", "079201000123"),
            credential("cccd", "079201000123", "079201000123"),
        ),
        (
            credential("staff-pass", "staff:079201000123"),
            credential("cccd", "079201000123", "079201000123"),
        ),
    ],
)
def test_no_kind_can_spell_another_kinds_subject(forged: Credential, real: Credential) -> None:
    assert subject_hash(KEY, subject_of(forged)) != subject_hash(KEY, subject_of(real))


def test_only_a_full_twelve_digit_number_is_a_person() -> None:
    card = credential("cccd", "079201000123", "079201000123")
    shown_in_full = credential("pc-covid", "QID-1", "079201000123")
    old_cmnd = credential("pc-covid", "025123456", "025123456")
    assert subject_of(card) == subject_of(shown_in_full) == "person:079201000123"
    assert subject_of(old_cmnd) == "pc-covid:025123456"
    assert typed_id_subject("079201000123") == "person:079201000123"
    assert typed_id_subject("C1234567") == "pc-covid:C1234567"


def test_a_subject_without_a_namespace_cannot_be_hashed() -> None:
    with pytest.raises(ValueError, match="namespaced"):
        subject_hash(KEY, "079201000123")
    with pytest.raises(ValueError, match="namespaced"):
        subject_hash(KEY, "staff:S-001")  # the old spelling, not a kind


def test_a_denylist_entry_made_before_the_upgrade_still_refuses_its_person(site, gates):
    """Before issue 14 the hash was of the bare id: such entries keep refusing."""
    card = credential("cccd", "079201000123", "079201000123")
    key = load_or_create_key(site.settings.key_path)  # the gate reads the same file
    site.web.add_to_denylist(
        legacy_subject_hash(key, card), label="old entry", note="", at=site.clock.now()
    )

    [outcome] = filmed(site, gates, VISITOR_CCCD.payload)

    assert decisions([outcome]) == [("deny", "in", "denylisted", "cccd")]


def test_denylisting_a_forged_code_does_not_denylist_the_real_person(site, gates):
    staff = site.staff_pass(staff_id="NV-0042")
    forged = personal_qr("STAFF:NV-0042")
    [forged_entry] = filmed(site, gates, forged)
    assert forged_entry.event is not None
    assert forged_entry.event.subject_hash is not None
    site.web.add_to_denylist(
        forged_entry.event.subject_hash, label="forger", note="", at=site.clock.now()
    )

    outcomes = filmed(site, gates, forged, staff.text, forged)

    assert decisions(outcomes) == [
        ("allow", "out", "ok-exit", "pc-covid"),  # a denylisted person may still leave
        ("allow", "in", "ok", "staff-pass"),  # the real staff member is not denylisted
        ("deny", "in", "denylisted", "pc-covid"),
    ]
