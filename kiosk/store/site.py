"""The site's own state: settings and their version, the denylist, guards'
admissions by hand, and each gate's health.

Settings edited on the web reach the running kiosk through the database: a
version counter (``settings_meta``) that every change bumps and the kiosk
polls.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from kiosk.store.audit import write_audit
from kiosk.store.connection import Connection
from kiosk.store.events import EventRepository
from kiosk.store.values import (
    AdmitRequest,
    AuditNote,
    DenylistEntry,
    Event,
    KioskHealth,
    NewEvent,
    from_text,
    to_text,
)


class SiteRepository:
    """Settings, denylist, admit requests and kiosk health, over the store's one
    connection; ``events`` records a guard's admission in the same transaction."""

    def __init__(self, db: Connection, *, events: EventRepository) -> None:
        self._db = db
        self._events = events

    # ----------------------------------------------------------------- settings

    def settings_version(self) -> int:
        """The settings counter; the kiosk reloads settings when it changes."""
        rows = self._db.read("read the settings version", "SELECT version FROM settings_meta", ())
        return int(rows[0][0])

    def bump_settings_version(self) -> int:
        """Tell running kiosks that settings changed; returns the new version."""
        with self._db.write("bump the settings version") as conn:
            conn.execute("UPDATE settings_meta SET version = version + 1 WHERE id = 1")
            (version,) = conn.execute("SELECT version FROM settings_meta WHERE id = 1").fetchone()
        return int(version)

    def site_settings(self) -> dict[str, Any]:
        """Settings changed on the web, by name (``"gate.mode"``); they override the file."""
        rows = self._db.read("read site settings", "SELECT name, value_json FROM site_settings", ())
        return {str(name): json.loads(value) for name, value in rows}

    def save_site_settings(
        self, values: dict[str, Any], *, by: str, at: datetime, audit: AuditNote | None = None
    ) -> int:
        """Store changed settings and bump the version the kiosk polls; returns it.

        ``audit`` is written in the same transaction.
        """
        with self._db.write("save site settings") as conn:
            for name, value in values.items():
                conn.execute(
                    "INSERT INTO site_settings (name, value_json, updated_at_utc, updated_by) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                    "value_json = excluded.value_json, updated_at_utc = excluded.updated_at_utc, "
                    "updated_by = excluded.updated_by",
                    (name, json.dumps(value), to_text(at), by),
                )
            conn.execute("UPDATE settings_meta SET version = version + 1 WHERE id = 1")
            (version,) = conn.execute("SELECT version FROM settings_meta WHERE id = 1").fetchone()
            write_audit(conn, audit)
        return int(version)

    # ----------------------------------------------------------------- denylist

    def is_denylisted(self, subject_hash: str) -> bool:
        rows = self._db.read(
            "read the denylist",
            "SELECT 1 FROM denylist WHERE subject_hash = ?",
            (subject_hash,),
        )
        return bool(rows)

    def add_to_denylist(
        self,
        subject_hash: str,
        *,
        label: str,
        note: str,
        at: datetime,
        added_by: str | None = None,
        audit: AuditNote | None = None,
    ) -> bool:
        """Deny this person from now on; adding again replaces label, note and time.

        Returns whether the person was on the list already (``"replaced"`` in
        the detail of ``audit``, which is written in the same transaction).
        """
        added_at = to_text(at)
        with self._db.write("update the denylist") as conn:
            replaced = bool(
                conn.execute(
                    "SELECT 1 FROM denylist WHERE subject_hash = ?", (subject_hash,)
                ).fetchone()
            )
            conn.execute(
                """
                INSERT INTO denylist (subject_hash, label, note, added_at_utc, added_by)
                VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (subject_hash) DO UPDATE SET
                    label = excluded.label,
                    note = excluded.note,
                    added_at_utc = excluded.added_at_utc,
                    added_by = excluded.added_by
                """,
                (subject_hash, label, note, added_at, added_by),
            )
            write_audit(conn, audit, replaced=replaced)
        return replaced

    def remove_from_denylist(self, subject_hash: str, *, audit: AuditNote | None = None) -> bool:
        """Lift a denial; ``False`` if the person was not on the list.

        ``audit`` is written in the same transaction, if a denial was lifted.
        """
        with self._db.write("update the denylist") as conn:
            cursor = conn.execute("DELETE FROM denylist WHERE subject_hash = ?", (subject_hash,))
            if cursor.rowcount > 0:
                write_audit(conn, audit)
            return cursor.rowcount > 0

    # ----------------------------------------------------------------- health
    def denylist_entries(self) -> list[DenylistEntry]:
        rows = self._db.read(
            "read the denylist",
            "SELECT subject_hash, label, note, added_at_utc, added_by FROM denylist "
            "ORDER BY added_at_utc DESC",
            (),
        )
        return [DenylistEntry(r[0], r[1], r[2], from_text(r[3]), r[4]) for r in rows]

    def write_health(self, health: KioskHealth) -> None:
        """Replace the health row of ``health.gate_id`` (one row per gate)."""
        with self._db.write("write kiosk health") as conn:
            conn.execute(
                """
                INSERT INTO kiosk_health (
                    gate_id, updated_at_utc, last_frame_at_utc, fps, camera, camera_ok,
                    camera_detail, decoder, pin_backend, clock_synced, fault
                ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (gate_id) DO UPDATE SET
                    updated_at_utc = excluded.updated_at_utc,
                    last_frame_at_utc = excluded.last_frame_at_utc,
                    fps = excluded.fps,
                    camera = excluded.camera,
                    camera_ok = excluded.camera_ok,
                    camera_detail = excluded.camera_detail,
                    decoder = excluded.decoder,
                    pin_backend = excluded.pin_backend,
                    clock_synced = excluded.clock_synced,
                    fault = excluded.fault
                """,
                (
                    health.gate_id,
                    to_text(health.updated_at),
                    None if health.last_frame_at is None else to_text(health.last_frame_at),
                    float(health.fps),
                    health.camera,
                    int(health.camera_ok),
                    health.camera_detail,
                    health.decoder,
                    health.pin_backend,
                    int(health.clock_synced),
                    health.fault,
                ),
            )

    def read_health(self, gate_id: str) -> KioskHealth | None:
        rows = self._db.read(
            "read kiosk health",
            "SELECT gate_id, updated_at_utc, last_frame_at_utc, fps, camera, camera_ok, "
            "camera_detail, decoder, pin_backend, clock_synced, fault "
            "FROM kiosk_health WHERE gate_id = ?",
            (gate_id,),
        )
        if not rows:
            return None
        (
            gate,
            updated_at,
            last_frame_at,
            fps,
            camera,
            camera_ok,
            camera_detail,
            decoder,
            pin_backend,
            clock_synced,
            fault,
        ) = rows[0]
        return KioskHealth(
            gate_id=gate,
            updated_at=from_text(updated_at),
            last_frame_at=None if last_frame_at is None else from_text(last_frame_at),
            fps=float(fps),
            camera=camera,
            camera_ok=bool(camera_ok),
            camera_detail=camera_detail,
            decoder=decoder,
            pin_backend=pin_backend,
            clock_synced=bool(clock_synced),
            fault=fault,
        )

    # ----------------------------------------------------------------- settings, upkeep

    # ----------------------------------------------------------------- admissions by hand

    def request_admit(
        self,
        *,
        actor: str,
        reason: str,
        display_name: str | None,
        at: datetime,
        audit: AuditNote | None = None,
        gate_id: str | None = None,
    ) -> int:
        """A guard's "admit once" from the web; the kiosk carries it out.

        ``gate_id``: on a site's hub, the gate to open (the hub's sync sends
        it there); None for this gate. Returns the request's id, which is
        also ``"request"`` in the detail of ``audit`` (same transaction).
        """
        with self._db.write("request an admission") as conn:
            cursor = conn.execute(
                "INSERT INTO admit_requests (requested_at_utc, actor, reason, display_name, "
                "gate_id) VALUES (?, ?, ?, ?, ?)",
                (to_text(at), actor, reason, display_name, gate_id),
            )
            request_id = int(cursor.lastrowid or 0)
            write_audit(conn, audit, request=request_id)
            return request_id

    def receive_admit(
        self, *, remote_id: str, actor: str, reason: str, display_name: str | None, at: datetime
    ) -> bool:
        """Keep a request the hub sent for this gate, once by its ``remote_id``; whether new."""
        with self._db.write("receive an admission") as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO admit_requests (requested_at_utc, actor, reason, "
                "display_name, remote_id) VALUES (?, ?, ?, ?, ?)",
                (to_text(at), actor, reason, display_name, remote_id),
            )
            return cursor.rowcount > 0

    def admits_for_gates(self, *, now: datetime, max_age_s: float) -> list[AdmitRequest]:
        """On a hub: pending requests naming a gate, not older than ``max_age_s``."""
        rows = self._db.read(
            "read the gates' admission requests",
            "SELECT id, requested_at_utc, actor, reason, display_name, status, gate_id "
            "FROM admit_requests WHERE status = 'pending' AND gate_id IS NOT NULL "
            "AND requested_at_utc >= ? ORDER BY id",
            (to_text(now - timedelta(seconds=max_age_s)),),
        )
        return [AdmitRequest(int(r[0]), from_text(r[1]), *r[2:]) for r in rows]

    def pending_admits(
        self, *, now: datetime, max_age_s: float, gate_id: str | None = None
    ) -> list[AdmitRequest]:
        """Requests to carry out now; older ones are marked expired (the visitor left).

        With ``gate_id``, only the requests for this gate (naming it or none):
        on a hub that is also a gate, the others wait for their own gates.
        """
        cutoff = to_text(now - timedelta(seconds=max_age_s))
        with self._db.write("read admission requests") as conn:
            conn.execute(
                "UPDATE admit_requests SET status = 'expired', handled_at_utc = ? "
                "WHERE status = 'pending' AND requested_at_utc < ?",
                (to_text(now), cutoff),
            )
            rows = conn.execute(
                "SELECT id, requested_at_utc, actor, reason, display_name, status, gate_id "
                "FROM admit_requests WHERE status = 'pending' "
                "AND (?1 IS NULL OR gate_id IS NULL OR gate_id = ?1) ORDER BY id",
                (gate_id,),
            ).fetchall()
        return [
            AdmitRequest(int(r[0]), from_text(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in rows
        ]

    def admit_request(self, request_id: int) -> AdmitRequest | None:
        rows = self._db.read(
            "read an admission request",
            "SELECT id, requested_at_utc, actor, reason, display_name, status, gate_id "
            "FROM admit_requests WHERE id = ?",
            (request_id,),
        )
        return AdmitRequest(int(rows[0][0]), from_text(rows[0][1]), *rows[0][2:]) if rows else None

    def record_admit(self, request: AdmitRequest, event: NewEvent) -> Event:
        """Record the manual entry and mark the request done, in one transaction."""
        with self._db.write("record the admission") as conn:
            recorded = self._events.insert(conn, event)
            conn.execute(
                "UPDATE admit_requests SET status = 'done', handled_at_utc = ?, event_id = ? "
                "WHERE id = ?",
                (to_text(recorded.at), recorded.id, request.id),
            )
        return recorded
