"""Several gates, one site: the documents the hub sends down, and the
one-time tokens gates join with.

On a gate, applying a document is one transaction that replaces every row
of its kind *and* records the version now in force, so a reader (the kiosk,
the web) sees the old rows or the new ones, never a mix, and a crash never
leaves rows of one version recorded as another. Applying settings or the
trust list bumps the settings version the kiosk already polls.

On the hub, each kind's version counter sits beside the digest of the body
it was signed over, so a version is spent only when the content changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kiosk.store.audit import write_audit
from kiosk.store.connection import Connection
from kiosk.store.values import AuditNote, DenylistEntry, TrustedRow, from_text, to_text

_BUMP = "UPDATE settings_meta SET version = version + 1 WHERE id = 1"


@dataclass(frozen=True)
class RevokedCode:
    """A declaration or pass the site revoked (by its code id)."""

    code_id: str
    revoked_at: datetime
    revoked_by: str


@dataclass(frozen=True)
class PublishedDocument:
    """What the hub last published of one kind: the signed bytes and what they cover."""

    kind: str
    version: int
    digest: str
    payload: bytes
    published_at: datetime


@dataclass(frozen=True)
class EnrolmentToken:
    """A one-time token as stored (its hash only)."""

    token_hash: str
    created_at: datetime
    expires_at: datetime
    created_by: str
    used_at: datetime | None
    gate_id: str | None


class SiteDocumentRepository:
    """Document versions, revoked codes and enrolment tokens over the store's connection."""

    def __init__(self, db: Connection) -> None:
        self._db = db

    # ----------------------------------------------------------------- gate: versions in force

    def applied_versions(self) -> dict[str, int]:
        """The version in force of each kind this gate applied, by kind."""
        rows = self._db.read(
            "read the site's document versions",
            "SELECT kind, version FROM site_documents_applied",
            (),
        )
        return {str(kind): int(version) for kind, version in rows}

    def record_applied(self, kind: str, version: int, *, at: datetime) -> None:
        """Record a version applied outside the database (the keys folder)."""
        with self._db.write("record a site document") as conn:
            _record(conn, kind, version, at)

    def apply_settings(self, version: int, values: dict[str, Any], *, at: datetime) -> None:
        """Replace the site's settings with ``values`` (name -> value) and bump
        the settings version; this gate's own ``gate.id`` stays as it is."""
        with self._db.write("apply the site's settings") as conn:
            conn.execute("DELETE FROM site_settings WHERE name != 'gate.id'")
            for name, value in values.items():
                conn.execute(
                    "INSERT INTO site_settings (name, value_json, updated_at_utc, updated_by) "
                    "VALUES (?, ?, ?, 'hub') ON CONFLICT (name) DO NOTHING",
                    (name, json.dumps(value), to_text(at)),
                )
            conn.execute(_BUMP)
            _record(conn, "settings", version, at)

    def apply_denylist(self, version: int, entries: list[DenylistEntry], *, at: datetime) -> None:
        """Replace the whole denylist with the site's."""
        with self._db.write("apply the site's denylist") as conn:
            conn.execute("DELETE FROM denylist")
            conn.executemany(
                "INSERT OR REPLACE INTO denylist "
                "(subject_hash, label, note, added_at_utc, added_by) VALUES (?, ?, ?, ?, ?)",
                [
                    (e.subject_hash, e.label, e.note, to_text(e.added_at), e.added_by)
                    for e in entries
                ],
            )
            _record(conn, "denylist", version, at)

    def apply_revocations(self, version: int, revoked: list[RevokedCode], *, at: datetime) -> None:
        """Replace the codes the site revoked."""
        with self._db.write("apply the site's revocations") as conn:
            conn.execute("DELETE FROM site_revoked_codes")
            conn.executemany(
                "INSERT OR REPLACE INTO site_revoked_codes (code_id, revoked_at_utc, revoked_by) "
                "VALUES (?, ?, ?)",
                [(r.code_id, to_text(r.revoked_at), r.revoked_by) for r in revoked],
            )
            _record(conn, "revocations", version, at)

    def apply_trust(self, version: int, rows: list[TrustedRow], *, at: datetime) -> None:
        """Replace the trust list and bump the settings version (the kiosk reloads it)."""
        with self._db.write("apply the site's trust list") as conn:
            conn.execute("DELETE FROM trusted_certificates")
            conn.executemany(
                "INSERT OR IGNORE INTO trusted_certificates (kid, country, subject, "
                "not_before_utc, not_after_utc, der, added_at_utc, added_by) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.kid,
                        r.country,
                        r.subject,
                        to_text(r.not_before),
                        to_text(r.not_after),
                        r.der,
                        to_text(r.added_at),
                        r.added_by,
                    )
                    for r in rows
                ],
            )
            conn.execute(_BUMP)
            _record(conn, "trust", version, at)

    def revoked_codes(self) -> list[RevokedCode]:
        """Every code revoked here (issued codes) or by the site (documents), by id."""
        rows = self._db.read(
            "read revocations",
            "SELECT id, revoked_at_utc, revoked_by FROM site_codes "
            "WHERE revoked_at_utc IS NOT NULL "
            "UNION SELECT code_id, revoked_at_utc, revoked_by FROM site_revoked_codes "
            "ORDER BY 1",
            (),
        )
        return [RevokedCode(str(r[0]), from_text(r[1]), str(r[2] or "")) for r in rows]

    # ----------------------------------------------------------------- hub: what was published

    def published(self) -> dict[str, PublishedDocument]:
        """The latest document of each kind the hub signed, by kind."""
        rows = self._db.read(
            "read the published documents",
            "SELECT kind, version, digest, payload, published_at_utc FROM site_documents_published",
            (),
        )
        return {
            str(r[0]): PublishedDocument(
                str(r[0]), int(r[1]), str(r[2]), bytes(r[3]), from_text(r[4])
            )
            for r in rows
        }

    def save_published(self, document: PublishedDocument) -> None:
        """Keep ``document`` as its kind's latest; an older version never replaces a newer."""
        with self._db.write("record a published document") as conn:
            conn.execute(
                "INSERT INTO site_documents_published "
                "(kind, version, digest, payload, published_at_utc) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (kind) DO UPDATE SET version = excluded.version, "
                "digest = excluded.digest, payload = excluded.payload, "
                "published_at_utc = excluded.published_at_utc "
                "WHERE excluded.version > site_documents_published.version",
                (
                    document.kind,
                    document.version,
                    document.digest,
                    document.payload,
                    to_text(document.published_at),
                ),
            )

    # ----------------------------------------------------------------- hub: enrolment tokens

    def add_enrolment_token(
        self,
        token_hash: str,
        *,
        created_at: datetime,
        expires_at: datetime,
        created_by: str,
        audit: AuditNote | None = None,
    ) -> None:
        """Keep a new token's hash; ``audit`` in the same transaction."""
        with self._db.write("create an enrolment token") as conn:
            conn.execute(
                "INSERT INTO enrolment_tokens "
                "(token_hash, created_at_utc, expires_at_utc, created_by) VALUES (?, ?, ?, ?)",
                (token_hash, to_text(created_at), to_text(expires_at), created_by),
            )
            write_audit(conn, audit)

    def redeem_enrolment_token(
        self, token_hash: str, *, gate_id: str, now: datetime, audit: AuditNote | None = None
    ) -> bool:
        """Use the token once: True only for an unused, unexpired one, which
        is marked used in the same statement (two gates racing with one token:
        one wins)."""
        with self._db.write("use an enrolment token") as conn:
            cursor = conn.execute(
                "UPDATE enrolment_tokens SET used_at_utc = ?, gate_id = ? "
                "WHERE token_hash = ? AND used_at_utc IS NULL AND expires_at_utc > ?",
                (to_text(now), gate_id, token_hash, to_text(now)),
            )
            if cursor.rowcount == 1:
                write_audit(conn, audit)
            return cursor.rowcount == 1

    def enrolment_tokens(self, *, limit: int = 20) -> list[EnrolmentToken]:
        """The latest tokens, newest first (for the hub's page)."""
        rows = self._db.read(
            "read enrolment tokens",
            "SELECT token_hash, created_at_utc, expires_at_utc, created_by, used_at_utc, gate_id "
            "FROM enrolment_tokens ORDER BY created_at_utc DESC LIMIT ?",
            (limit,),
        )
        return [
            EnrolmentToken(
                str(r[0]),
                from_text(r[1]),
                from_text(r[2]),
                str(r[3]),
                None if r[4] is None else from_text(r[4]),
                r[5],
            )
            for r in rows
        ]


def _record(conn: Any, kind: str, version: int, at: datetime) -> None:
    conn.execute(
        "INSERT INTO site_documents_applied (kind, version, applied_at_utc) VALUES (?, ?, ?) "
        "ON CONFLICT (kind) DO UPDATE SET version = excluded.version, "
        "applied_at_utc = excluded.applied_at_utc",
        (kind, version, to_text(at)),
    )
