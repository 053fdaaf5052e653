"""Codes the site issued (declarations, staff passes) and the certificates it trusts.

Every change to the trust list bumps the settings version, so the running
kiosk reloads it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from kiosk.store.audit import write_audit
from kiosk.store.connection import Connection
from kiosk.store.values import AuditNote, SiteCode, TrustedRow, from_text, to_text


class CodeRepository:
    """The site_codes and trusted_certificates tables, over the store's one connection."""

    def __init__(self, db: Connection) -> None:
        self._db = db

    # ----------------------------------------------------------------- the site's own codes

    def save_site_code(self, code: SiteCode, *, audit: AuditNote | None = None) -> None:
        """Keep a declaration or staff pass the site issued (for revocation and
        the managers' lists); the code itself carries what the gate needs.
        ``audit``, completed with the code's id, is written in the same
        transaction."""
        with self._db.write("save the issued code") as conn:
            conn.execute(
                "INSERT INTO site_codes (id, kind, issued_at_utc, valid_from_utc, "
                "expires_at_utc, name, phone, organisation, answers_json, verdict, issued_by, "
                "text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    code.id,
                    code.kind,
                    to_text(code.issued_at),
                    to_text(code.valid_from),
                    to_text(code.expires_at),
                    code.name,
                    code.phone,
                    code.organisation,
                    json.dumps(code.answers, ensure_ascii=False),
                    code.verdict,
                    code.issued_by,
                    code.text,
                ),
            )
            write_audit(conn, audit, code=code.id)

    def site_code(self, code_id: str) -> SiteCode | None:
        rows = self._db.read(
            "read an issued code",
            f"SELECT {SITE_CODE_COLUMNS} FROM site_codes WHERE id = ?",
            (code_id,),
        )
        return site_code_from_row(rows[0]) if rows else None

    def site_codes(
        self, kind: str, *, now: datetime, include_expired: bool = False
    ) -> list[SiteCode]:
        """Issued codes of one kind, newest first; by default only unexpired ones."""
        rows = self._db.read(
            "read issued codes",
            f"SELECT {SITE_CODE_COLUMNS} FROM site_codes WHERE kind = ? "
            "AND (? OR expires_at_utc > ?) ORDER BY issued_at_utc DESC",
            (kind, int(include_expired), to_text(now)),
        )
        return [site_code_from_row(r) for r in rows]

    def is_revoked(self, code_id: str) -> bool:
        """Whether a manager revoked this declaration or pass (the gate asks per scan)."""
        rows = self._db.read(
            "check a revocation",
            "SELECT 1 FROM site_codes WHERE id = ? AND revoked_at_utc IS NOT NULL "
            "UNION ALL SELECT 1 FROM site_revoked_codes WHERE code_id = ?",
            (code_id, code_id),
        )
        return bool(rows)

    def revoke_site_code(
        self, code_id: str, *, by: str, at: datetime, audit: AuditNote | None = None
    ) -> bool:
        """Revoke; False if there is no such code or it was revoked already.

        ``audit`` is written in the same transaction, if the code was revoked now.
        """
        with self._db.write("revoke the code") as conn:
            cursor = conn.execute(
                "UPDATE site_codes SET revoked_at_utc = ?, revoked_by = ? "
                "WHERE id = ? AND revoked_at_utc IS NULL",
                (to_text(at), by, code_id),
            )
            if cursor.rowcount > 0:
                write_audit(conn, audit)
            return cursor.rowcount > 0

    def purge_site_codes_before(self, cutoff: datetime, *, limit: int) -> int:
        """Delete up to ``limit`` issued codes that expired before ``cutoff``
        (retention), in one short transaction. Fewer than ``limit``: none left."""
        with self._db.write("purge old issued codes") as conn:
            cursor = conn.execute(
                "DELETE FROM site_codes WHERE rowid IN (SELECT rowid FROM site_codes "
                "WHERE expires_at_utc < ? LIMIT ?)",
                (to_text(cutoff), limit),
            )
            return cursor.rowcount

    # ----------------------------------------------------------------- trusted certificates
    # (HC1: signing certificates; every change bumps the settings version so
    # the running kiosk reloads its trust list)

    def add_trusted_certificates(
        self,
        certificates: list[TrustedRow],
        *,
        by: str,
        at: datetime,
        audit: AuditNote | None = None,
    ) -> int:
        """Add certificates (``id``, ``added_*`` of the rows are ignored);
        returns how many were new. One transaction; the kiosk reloads.

        ``audit`` is written in the same transaction, with the number added
        as its row count and as ``"added"`` in its detail.
        """
        added = 0
        with self._db.write("add trusted certificates") as conn:
            for cert in certificates:
                cursor = conn.execute(
                    "INSERT INTO trusted_certificates (kid, country, subject, not_before_utc, "
                    "not_after_utc, der, added_at_utc, added_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (der) DO NOTHING",
                    (
                        cert.kid,
                        cert.country,
                        cert.subject,
                        to_text(cert.not_before),
                        to_text(cert.not_after),
                        cert.der,
                        to_text(at),
                        by,
                    ),
                )
                added += cursor.rowcount
            if added:
                conn.execute("UPDATE settings_meta SET version = version + 1 WHERE id = 1")
            write_audit(conn, audit, row_count=added, added=added)
        return added

    def trusted_certificates(self) -> list[TrustedRow]:
        """Every trusted certificate, by country then key id."""
        rows = self._db.read(
            "read trusted certificates",
            "SELECT id, kid, country, subject, not_before_utc, not_after_utc, der, "
            "added_at_utc, added_by FROM trusted_certificates ORDER BY country, kid, id",
            (),
        )
        return [
            TrustedRow(
                id=int(r[0]),
                kid=bytes(r[1]),
                country=r[2],
                subject=r[3],
                not_before=from_text(r[4]),
                not_after=from_text(r[5]),
                der=bytes(r[6]),
                added_at=from_text(r[7]),
                added_by=r[8],
            )
            for r in rows
        ]

    def remove_trusted_certificates(self, kid: bytes, *, audit: AuditNote | None = None) -> int:
        """Remove every trusted certificate with key id ``kid``; returns how many.

        ``audit`` is written in the same transaction, if any was removed, with
        the number as its row count.
        """
        with self._db.write("remove trusted certificates") as conn:
            cursor = conn.execute("DELETE FROM trusted_certificates WHERE kid = ?", (kid,))
            if cursor.rowcount:
                conn.execute("UPDATE settings_meta SET version = version + 1 WHERE id = 1")
                write_audit(conn, audit, row_count=cursor.rowcount)
            return cursor.rowcount


SITE_CODE_COLUMNS = (
    "id, kind, issued_at_utc, valid_from_utc, expires_at_utc, name, phone, organisation, "
    "answers_json, verdict, issued_by, revoked_at_utc, revoked_by, text"
)


def site_code_from_row(row: tuple[Any, ...]) -> SiteCode:
    return SiteCode(
        id=row[0],
        kind=row[1],
        issued_at=from_text(row[2]),
        valid_from=from_text(row[3]),
        expires_at=from_text(row[4]),
        name=row[5],
        phone=row[6],
        organisation=row[7],
        answers=json.loads(row[8]),
        verdict=row[9],
        issued_by=row[10],
        revoked_at=from_text(row[11]) if row[11] else None,
        revoked_by=row[12],
        text=row[13],
    )
