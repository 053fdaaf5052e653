"""Importing a trust list file into the site's database: a use case the web
and the CLI share, below both (the parsing is :mod:`kiosk.trust`'s)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from kiosk.store import AuditNote, Store, TrustedRow
from kiosk.trust import ParsedTrustFile, TrustedCertificate, parse_trust_file


def _row(cert: TrustedCertificate, *, by: str, at: Any) -> TrustedRow:
    return TrustedRow(
        id=0,
        kid=cert.kid,
        country=cert.country,
        subject=cert.subject,
        not_before=cert.not_before,
        not_after=cert.not_after,
        der=cert.der,
        added_at=at,
        added_by=by,
    )


@dataclass(frozen=True)
class TrustImport:
    """What importing a trust list file did."""

    parsed: ParsedTrustFile
    added: int


def import_trust_file(
    store: Store, data: bytes, *, by: str, at: Any, audit: AuditNote | None = None
) -> TrustImport:
    """Parse a trust list file (PEM bundle or JSON, see kiosk.trust) and add
    its certificates; a running kiosk picks them up within seconds. Raises
    TrustError for a file that is not a trust list, StoreError.

    ``audit``, completed with the numbers ``found``, ``skipped`` and
    ``added``, is written with the certificates, in one transaction (none
    if the file held no certificate)."""
    parsed = parse_trust_file(data)
    rows = [_row(cert, by=by, at=at) for cert in parsed.certificates]
    if audit is not None:
        found = {"found": len(rows), "skipped": len(parsed.problems)}
        audit = replace(audit, detail={**audit.detail, **found})
    added = store.add_trusted_certificates(rows, by=by, at=at, audit=audit) if rows else 0
    return TrustImport(parsed=parsed, added=added)
