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
- a staff pass: allowed (entries and exits pair on the staff id);
- an EU-format vaccination certificate (``HC1:``, as Vietnam's vaccine
  passport), signed by a demo signing certificate made at start and put in
  the trust list in place of the previous run's: allowed (``ok``);
- the same certificate with the given name edited after signing:
  ``hcert-bad-signature``.

Example::

    signed = signed_demo_visitors(store, settings.keys_dir, site_id="demo", now=clock.now())
    for visitor in signed.in_order():
        print(visitor.label, visitor.expected)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kiosk.codes import hcert
from kiosk.codes.cose import decode_base45_zlib, encode_base45_zlib, sign1
from kiosk.codes.sitecodes import (
    PREFIX,
    REASON_BAD_SIGNATURE,
    REASON_EXPIRED,
    REASON_REFUSED_ANSWERS,
)
from kiosk.declarations import DEFAULT_QUESTIONS, issue_declaration, issue_staff_pass
from kiosk.samples import SampleVisitor, sample_dcc, sample_hc1_claims
from kiosk.store import Store, TrustedRow
from kiosk.trust import kid_of

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

# The demo's vaccine passport: a Vietnamese name, family name first.
HCERT_FAMILY = "Nguyễn"
HCERT_GIVEN = "Thị Mai"
HCERT_GIVEN_FORGED = "Thị Mia"
HCERT_DOB = "1990-04-12"
DEMO_DSC_SUBJECT = "CN=gatekiosk demo DSC,O=gatekiosk demo,C=VN"


@dataclass(frozen=True)
class SignedDemoVisitors:
    """The demo's signed samples; ``expected`` on each is the decision's reason."""

    valid: SampleVisitor
    expired: SampleVisitor
    tampered: SampleVisitor
    refused: SampleVisitor
    staff: SampleVisitor
    hcert_valid: SampleVisitor
    hcert_tampered: SampleVisitor

    def certificates(self) -> tuple[SampleVisitor, ...]:
        """The two ``HC1:`` samples (valid, then tampered)."""
        return (self.hcert_valid, self.hcert_tampered)

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
    vaccine_passport = demo_vaccine_passport(store, now=now)
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
        hcert_valid=SampleVisitor("vaccine passport (HC1)", vaccine_passport, "ok"),
        hcert_tampered=SampleVisitor(
            "vaccine passport with the name edited",
            tamper_name(vaccine_passport, HCERT_GIVEN, HCERT_GIVEN_FORGED, prefix=hcert.PREFIX),
            hcert.REASON_BAD_SIGNATURE,
        ),
    )


def tamper_name(text: str, name: str, forged: str, *, prefix: str = PREFIX) -> str:
    """``text`` with the signed name replaced by ``forged`` (same length in
    UTF-8, so the structure stays well formed and only the signature fails)."""
    old, new = name.encode("utf-8"), forged.encode("utf-8")
    if len(old) != len(new):
        raise ValueError("the forged name must have the same length in UTF-8")
    signed = decode_base45_zlib(text, prefix)
    if old not in signed:
        raise ValueError("the name is not in the code")
    return encode_base45_zlib(signed.replace(old, new, 1), prefix)


def demo_vaccine_passport(store: Store, *, now: datetime) -> str:
    """A complete vaccination certificate (``HC1:``) for the demo visitor,
    signed by a fresh demo signing certificate (P-256, self-signed, with the
    vaccination key usage) that replaces the previous run's in the trust list."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gatekiosk demo"),
            x509.NameAttribute(NameOID.COMMON_NAME, "gatekiosk demo DSC"),
        ]
    )
    usage = x509.ObjectIdentifier("1.3.6.1.4.1.1847.2021.1.2")  # may sign vaccinations
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    for row in store.trusted_certificates():
        if row.added_by == ISSUED_BY:
            store.remove_trusted_certificates(row.kid)
    store.add_trusted_certificates(
        [
            TrustedRow(
                id=0,
                kid=kid_of(der),
                country="VN",
                subject=DEMO_DSC_SUBJECT,
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                der=der,
                added_at=now,
                added_by=ISSUED_BY,
            )
        ],
        by=ISSUED_BY,
        at=now,
    )
    dcc = sample_dcc(
        "v",
        at=now,
        nam={"fn": HCERT_FAMILY, "gn": HCERT_GIVEN, "fnt": "NGUYEN", "gnt": "THI<MAI"},
        dob=HCERT_DOB,
    )
    claims = sample_hc1_claims(
        dcc, issued=now - timedelta(hours=1), expires=now + timedelta(days=180)
    )
    signed = sign1(cbor2.dumps(claims), key, kid=kid_of(der))
    return encode_base45_zlib(signed, hcert.PREFIX)
