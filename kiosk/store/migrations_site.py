"""The schema's migrations for several gates and sites (0010 onwards), append
only: the outbox, the documents the hub sends down, site-wide presence, the
gates' status, the province's outbox and the site's self-assessment. Listed in order by
:data:`kiosk.store.migrations.MIGRATIONS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlite_utils import Database


def m0010_outbox(db: Database) -> None:
    """The outbox of a gate in a site: events not yet committed at the hub.

    ``upload_pending`` is set by the kiosk in the event's own INSERT when the
    gate belongs to a site, and cleared by ``gatekiosk sync`` only when the
    hub acknowledges it. The partial index holds the pending rows alone, in
    log order: the sync's query reads the oldest first without touching the
    uploaded history, and on a gate without a site the index stays empty.
    """
    db.execute("ALTER TABLE events ADD COLUMN upload_pending INTEGER NOT NULL DEFAULT 0")
    db.execute(
        "CREATE INDEX idx_events_upload_pending ON events (boot_ordinal, seq) "
        "WHERE upload_pending = 1"
    )


def m0011_site_documents(db: Database) -> None:
    """Several gates, one site: the documents the hub sends down and the
    one-time tokens gates join with.

    On a gate, ``site_documents_applied`` holds the version of each kind in
    force and ``site_revoked_codes`` the codes the hub revoked (issued on the
    hub, so this gate has no ``site_codes`` row for them). On the hub,
    ``site_documents_published`` is the version counter per kind with the
    signed bytes last published (sent again after a broker restart).
    Enrolment tokens are kept as SHA-256 hashes only.
    """
    db.execute(
        """
        CREATE TABLE site_documents_applied (
            kind           TEXT PRIMARY KEY NOT NULL,
            version        INTEGER NOT NULL CHECK (version >= 1),
            applied_at_utc TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE site_documents_published (
            kind             TEXT PRIMARY KEY NOT NULL,
            version          INTEGER NOT NULL CHECK (version >= 1),
            digest           TEXT NOT NULL,
            payload          BLOB NOT NULL,
            published_at_utc TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE site_revoked_codes (
            code_id        TEXT PRIMARY KEY NOT NULL,
            revoked_at_utc TEXT NOT NULL,
            revoked_by     TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE enrolment_tokens (
            token_hash     TEXT PRIMARY KEY NOT NULL,
            created_at_utc TEXT NOT NULL,
            expires_at_utc TEXT NOT NULL,
            created_by     TEXT NOT NULL,
            used_at_utc    TEXT,
            gate_id        TEXT
        )
        """
    )


def m0012_site_presence(db: Database) -> None:
    """Site-wide presence: the other gates' entries and exits (facts), the
    latest of them per subject by the site's order key, when each gate of
    the site was last heard (the site view is fresh as of the oldest of
    those), and how far this gate's own facts were published.

    A fact is what anti-passback needs and no more: no name, no masked id.
    """
    db.execute(
        """
        CREATE TABLE site_presence (
            event_id      TEXT PRIMARY KEY NOT NULL,
            gate_id       TEXT NOT NULL,
            subject_hash  TEXT NOT NULL,
            direction     TEXT NOT NULL CHECK (direction IN ('in', 'out')),
            at_utc        TEXT NOT NULL,
            boot_id       TEXT NOT NULL,
            seq           INTEGER NOT NULL CHECK (seq >= 1),
            received_at   TEXT NOT NULL
        )
        """
    )
    db.execute(
        "CREATE INDEX idx_site_presence_subject "
        "ON site_presence (subject_hash, at_utc, gate_id, boot_id, seq)"
    )
    db.execute("CREATE INDEX idx_site_presence_at_utc ON site_presence (at_utc)")
    # Derived from site_presence (the greatest order key per subject), kept so
    # that occupancy is one indexed count per scan.
    db.execute(
        """
        CREATE TABLE site_presence_latest (
            subject_hash  TEXT PRIMARY KEY NOT NULL,
            event_id      TEXT NOT NULL,
            gate_id       TEXT NOT NULL,
            direction     TEXT NOT NULL CHECK (direction IN ('in', 'out')),
            at_utc        TEXT NOT NULL,
            boot_id       TEXT NOT NULL,
            seq           INTEGER NOT NULL
        )
        """
    )
    db.execute(
        "CREATE INDEX idx_site_presence_latest_in ON site_presence_latest (direction, at_utc)"
    )
    db.execute(
        """
        CREATE TABLE site_peers (
            gate_id         TEXT PRIMARY KEY NOT NULL,
            last_heard_utc  TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE site_presence_meta (
            id               INTEGER PRIMARY KEY CHECK (id = 1),
            published_rowid  INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    db.execute("INSERT INTO site_presence_meta (id, published_rowid) VALUES (1, 0)")


def m0013_site_gates(db: Database) -> None:
    """On the hub: each gate's last retained status (online or its will,
    backlog, camera), as the broker relayed it, for the site dashboard.

    And a guard's "admit once" names its gate (NULL: this gate, as before);
    a request the hub sent to a gate keeps the hub's id (``remote_id``),
    so one sent twice is taken once.
    """
    # On the hub: each subject's latest allowed event in the site's order, so
    # ingesting keeps presence site-wide at one lookup an event.
    db.execute(
        """
        CREATE TABLE site_subject_latest (
            subject_hash TEXT PRIMARY KEY NOT NULL,
            at_utc       TEXT NOT NULL,
            gate_id      TEXT NOT NULL,
            boot_id      TEXT NOT NULL,
            seq          INTEGER NOT NULL,
            event_id     TEXT NOT NULL
        )
        """
    )
    db.execute("ALTER TABLE admit_requests ADD COLUMN gate_id TEXT")
    db.execute("ALTER TABLE admit_requests ADD COLUMN remote_id TEXT")
    db.execute(
        "CREATE UNIQUE INDEX idx_admit_requests_remote ON admit_requests (remote_id) "
        "WHERE remote_id IS NOT NULL"
    )
    db.execute(
        """
        CREATE TABLE site_gates (
            gate_id         TEXT PRIMARY KEY NOT NULL,
            online          INTEGER NOT NULL,
            status_at_utc   TEXT,
            backlog         INTEGER,
            camera_ok       INTEGER,
            camera_detail   TEXT,
            received_at_utc TEXT NOT NULL
        )
        """
    )


def m0014_province_outbox(db: Database) -> None:
    """The province outbox of a hub: site events not yet committed at the
    province's PostgreSQL (``gatekiosk uplink``).

    A mark of its own, apart from ``upload_pending`` (gate to hub), so the two
    uplinks never clear each other's. The mark is set by a trigger, only once
    ``province_uplink`` holds its row (``gatekiosk uplink`` enables it): every
    insert, whichever process makes it (the hub's ingest, the hub's own
    kiosk), is marked in its own transaction, and a gate with no province
    pays one look into an empty table per event. The partial index holds the
    pending rows alone, in rowid (arrival) order.
    """
    db.execute("ALTER TABLE events ADD COLUMN province_pending INTEGER NOT NULL DEFAULT 0")
    db.execute(
        "CREATE INDEX idx_events_province_pending ON events (province_pending) "
        "WHERE province_pending = 1"
    )
    db.execute(
        """
        CREATE TABLE province_uplink (
            id            INTEGER PRIMARY KEY CHECK (id = 1),
            enabled_at_utc TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TRIGGER events_province_pending AFTER INSERT ON events
        WHEN EXISTS (SELECT 1 FROM province_uplink)
        BEGIN
            UPDATE events SET province_pending = 1 WHERE rowid = NEW.rowid;
        END
        """
    )


def m0015_self_assessment(db: Database) -> None:
    """On the hub: the site's safety self-assessment (issue 18).

    ``province_checklists`` holds the checklist versions the uplink fetched
    from the province (newest version in force; older ones kept, since past
    ratings name them). ``self_assessments`` holds the ratings a manager
    made, each with its own id (a uuid hex, so a resend to the province
    changes nothing), the answers as JSON (``{"question id": true|false}``)
    and the score (the percentage of measures in place). ``province_pending``
    is cleared by the uplink after the province committed the rating;
    ``province_refused`` says why the province refused one, if it did.
    """
    db.execute(
        """
        CREATE TABLE province_checklists (
            version           INTEGER PRIMARY KEY CHECK (version >= 1),
            title             TEXT NOT NULL,
            questions         TEXT NOT NULL,
            stale_after_days  INTEGER NOT NULL CHECK (stale_after_days >= 1),
            published_at_utc  TEXT NOT NULL,
            fetched_at_utc    TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE self_assessments (
            id                 TEXT PRIMARY KEY NOT NULL,
            checklist_version  INTEGER NOT NULL REFERENCES province_checklists (version),
            made_at_utc        TEXT NOT NULL,
            made_by            TEXT NOT NULL,
            answers            TEXT NOT NULL,
            score              INTEGER NOT NULL CHECK (score BETWEEN 0 AND 100),
            province_pending   INTEGER NOT NULL DEFAULT 1 CHECK (province_pending IN (0, 1)),
            province_refused   TEXT
        )
        """
    )
    db.execute("CREATE INDEX idx_self_assessments_made_at ON self_assessments (made_at_utc)")
    db.execute(
        "CREATE INDEX idx_self_assessments_pending ON self_assessments (made_at_utc) "
        "WHERE province_pending = 1"
    )


def m0016_province_subject_hash(db: Database) -> None:
    """The province-wide subject hash of an event (issue 18), NULL unless the
    gate that recorded it has ``privacy.province_key_file`` set: computed at
    the gate, carried to the hub in the event's batch and on to the
    province's ``province.events.province_subject_hash``. Nullable, no
    index: nothing at the site looks an event up by it.
    """
    db.execute("ALTER TABLE events ADD COLUMN province_subject_hash TEXT")
