"""The demo's signed visitors: declarations and a staff pass made at start-up.

The static samples (:mod:`kiosk.samples`) cannot hold the site's own codes:
those are signed with the demo's own keys, made when the demo starts, and
valid for a day. Each is issued through :mod:`kiosk.declarations`, so it
also appears in the site's records on the admin page, as a guard's would.

What the gate decides for each, with the demo's settings (mode ``both``):

- a valid declaration: allowed (``ok``; on its next showing, leaving);
- a declaration made two days ago: ``sitecode-expired``;
- a valid declaration whose name was edited after signing (the bytes
  re-encoded, so it still reads as a ``GK1:`` code):
  ``sitecode-bad-signature``;
- a declaration that answers "yes" to symptoms: ``sitecode-refused-answers``;
- a staff pass: allowed (entries and exits pair on the staff id).

Example::

    signed = signed_demo_visitors(store, settings.keys_dir, site_id="demo", now=clock.now())
    for visitor in signed.in_order():
        print(visitor.label, visitor.expected)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from kiosk.codes.cose import decode_base45_zlib, encode_base45_zlib
from kiosk.codes.sitecodes import (
    PREFIX,
    REASON_BAD_SIGNATURE,
    REASON_EXPIRED,
    REASON_REFUSED_ANSWERS,
)
from kiosk.declarations import DEFAULT_QUESTIONS, issue_declaration, issue_staff_pass
from kiosk.samples import SampleVisitor
from kiosk.store import Store

ISSUED_BY = "demo"
DEMO_PHONE = "0901234567"
"""A made-up number (the code never carries it; the site's record does)."""
DECLARATION_VALIDITY = timedelta(hours=24)
STAFF_PASS_DAYS = 180

VALID_NAME = "Phạm Thu Hà"
TAMPERED_NAME = "Đỗ Văn Nam"
TAMPERED_TO = "Đỗ Văn Lam"
"""The name the forger typed over the signed one (same length in UTF-8)."""
EXPIRED_NAME = "Vũ Minh Khoa"
REFUSED_NAME = "Bùi Thị Lan"
STAFF_NAME = "Trần Quốc Bảo"
STAFF_ID = "NV-0042"
STAFF_ORGANISATION = "Tổ bảo trì"


@dataclass(frozen=True)
class SignedDemoVisitors:
    """The demo's signed samples; ``expected`` on each is the decision's reason."""

    valid: SampleVisitor
    expired: SampleVisitor
    tampered: SampleVisitor
    refused: SampleVisitor
    staff: SampleVisitor

    def in_order(self) -> tuple[SampleVisitor, ...]:
        return (self.valid, self.expired, self.tampered, self.refused, self.staff)


def signed_demo_visitors(
    store: Store, keys_dir: Path, *, site_id: str, now: datetime
) -> SignedDemoVisitors:
    """Issue the demo's declarations and staff pass with the site key in
    ``keys_dir`` (which must exist: see ``init_keys``), recorded in ``store``.
    Raises KeysError or DeclarationError like the web would."""
    all_fine = {q.key: False for q in DEFAULT_QUESTIONS}

    def declaration(name: str, *, at: datetime, answers: dict[str, bool]) -> str:
        issued = issue_declaration(
            store,
            keys_dir,
            site_id=site_id,
            name=name,
            phone=DEMO_PHONE,
            answers=answers,
            questions=DEFAULT_QUESTIONS,
            validity=DECLARATION_VALIDITY,
            at=at,
            issued_by=ISSUED_BY,
        )
        return issued.text

    valid = declaration(VALID_NAME, at=now, answers=all_fine)
    expired = declaration(EXPIRED_NAME, at=now - timedelta(days=2), answers=all_fine)
    forged = tamper_name(
        declaration(TAMPERED_NAME, at=now, answers=all_fine), TAMPERED_NAME, TAMPERED_TO
    )
    refused = declaration(REFUSED_NAME, at=now, answers={**all_fine, "symptoms": True})
    staff = issue_staff_pass(
        store,
        keys_dir,
        site_id=site_id,
        name=STAFF_NAME,
        staff_id=STAFF_ID,
        organisation=STAFF_ORGANISATION,
        valid_from=now - timedelta(hours=1),
        valid_until=now + timedelta(days=STAFF_PASS_DAYS),
        at=now,
        issued_by=ISSUED_BY,
    ).text
    return SignedDemoVisitors(
        valid=SampleVisitor("health declaration", valid, "ok"),
        expired=SampleVisitor("health declaration made two days ago", expired, REASON_EXPIRED),
        tampered=SampleVisitor(
            "health declaration with the name edited", forged, REASON_BAD_SIGNATURE
        ),
        refused=SampleVisitor(
            "health declaration answering yes to symptoms", refused, REASON_REFUSED_ANSWERS
        ),
        staff=SampleVisitor("staff pass", staff, "ok"),
    )


def tamper_name(text: str, name: str, forged: str) -> str:
    """``text`` with the signed name replaced by ``forged`` (same length in
    UTF-8, so the structure stays well formed and only the signature fails)."""
    old, new = name.encode("utf-8"), forged.encode("utf-8")
    if len(old) != len(new):
        raise ValueError("the forged name must have the same length in UTF-8")
    signed = decode_base45_zlib(text, PREFIX)
    if old not in signed:
        raise ValueError("the name is not in the code")
    return encode_base45_zlib(signed.replace(old, new, 1), PREFIX)
