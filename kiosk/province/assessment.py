"""The uplink's part in the site's safety self-assessment (issue 18).

Down: the newest checklist the province published (``province.checklists``)
into the hub's database, so a manager can fill it on the hub's admin web.
Up: the ratings made there, each ``INSERT ... ON CONFLICT DO NOTHING`` by
its id (made at the hub), the hub's pending marks cleared only after the
province's COMMIT: a rating is sent until it is committed, and a resend
changes nothing. Row-level security lets a site's login insert its own
site's ratings only.

A rating the province refuses for good (it has no such checklist version,
as after its database was rebuilt) is marked refused at the hub, with the
reason shown on the hub's page, instead of blocking the uplink.

:class:`~kiosk.province.uplink.ProvinceSession` runs :meth:`AssessmentLink.sync`
on each connection and then with every health report.

Example::

    link = AssessmentLink(conn, store.self_assessment, site_id="market-3")
    link.sync(now)   # SyncResult(checklist_version=4, sent=1, inserted=1, refused=0)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from kiosk.store.self_assessment import (
    ChecklistQuestion,
    HubChecklist,
    SelfAssessment,
    SelfAssessmentRepository,
)

log = logging.getLogger(__name__)

SEND_BATCH = 100
"""Ratings per transaction at the province (a site makes a few a month)."""

_NEWER_CHECKLIST = (
    "SELECT version, title, questions, stale_after_days, published_at "
    "FROM province.checklists WHERE version > %s ORDER BY version DESC LIMIT 1"
)
_INSERT_RATING = (
    "INSERT INTO province.assessments "
    "(site_id, id, checklist_version, made_at, answers, score) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)


@dataclass(frozen=True)
class SyncResult:
    """What one sync did: the checklist version newly fetched (None: none
    newer), ratings sent, of them new at the province, and refused for good."""

    checklist_version: int | None
    sent: int
    inserted: int
    refused: int


class AssessmentLink:
    """The self-assessment over one connection to the province, as one site's login."""

    def __init__(
        self,
        conn: psycopg.Connection[tuple[object, ...]],
        ratings: SelfAssessmentRepository,
        site_id: str,
    ) -> None:
        self._conn = conn
        self._ratings = ratings
        self._site_id = site_id

    def sync(self, now: datetime) -> SyncResult:
        """Fetch a newer checklist if there is one, then send the pending ratings."""
        version = self.fetch_checklist(now)
        sent = inserted = refused = 0
        while True:
            batch = self._ratings.pending(limit=SEND_BATCH)
            if not batch:
                break
            done_inserted, done_refused = self._send(batch)
            sent += len(batch) - done_refused
            inserted += done_inserted
            refused += done_refused
            if len(batch) < SEND_BATCH:
                break
        return SyncResult(version, sent, inserted, refused)

    def fetch_checklist(self, now: datetime) -> int | None:
        """Keep the province's newest checklist at the hub if it is newer than
        the hub's; its version, or None when the hub is up to date.

        One indexed look at the province when nothing changed.
        """
        have = self._ratings.latest_version() or 0
        row = self._conn.execute(_NEWER_CHECKLIST, (have,)).fetchone()
        self._conn.commit()
        if row is None:
            return None
        version, title, questions, stale_after_days, published_at = row
        assert isinstance(questions, list)  # jsonb, an array by the table's CHECK
        assert isinstance(published_at, datetime)
        checklist = HubChecklist(
            version=int(str(version)),
            title=str(title),
            questions=tuple(
                ChecklistQuestion(str(q["id"]), str(q["vi"]), str(q["en"])) for q in questions
            ),
            stale_after_days=int(str(stale_after_days)),
            published_at=published_at,
            fetched_at=now,
        )
        self._ratings.keep_checklist(checklist)
        log.info("self-assessment checklist version %d fetched from the province", version)
        return checklist.version

    def _send(self, batch: list[SelfAssessment]) -> tuple[int, int]:
        """Insert ``batch`` in one transaction at the province, then clear the
        marks at the hub; (inserted, refused)."""
        inserted = 0
        refusals: dict[str, str] = {}
        with self._conn.transaction(), self._conn.cursor() as cursor:
            for rating in batch:
                try:
                    with self._conn.transaction():  # a savepoint: one refusal spares the rest
                        cursor.execute(
                            _INSERT_RATING,
                            (
                                self._site_id,
                                rating.id,
                                rating.checklist_version,
                                rating.made_at,
                                Jsonb(dict(rating.answers)),
                                rating.score,
                            ),
                        )
                        inserted += cursor.rowcount
                except psycopg.errors.ForeignKeyViolation:
                    refusals[rating.id] = (
                        f"cấp tỉnh không có bộ câu hỏi phiên bản {rating.checklist_version} / "
                        f"the province has no checklist version {rating.checklist_version}"
                    )
        self._ratings.mark_sent([r.id for r in batch if r.id not in refusals])
        for rating_id, reason in refusals.items():
            log.warning("self-assessment %s refused by the province: %s", rating_id, reason)
            self._ratings.mark_refused(rating_id, reason)
        return inserted, len(refusals)
