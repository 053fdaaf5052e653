"""On the hub: the site's safety self-assessment (issue 18, migration 0015).

The province publishes a versioned checklist (``gatekiosk province
checklist``); ``gatekiosk uplink`` fetches the newest version into
``province_checklists``; a manager answers it yes/no per measure on the
hub's admin web, which keeps the rating in ``self_assessments`` with its
score, the percentage of measures in place. The uplink then sends each
pending rating (idempotent by its id) and clears its mark after the
province's commit, as it does for events.

Example::

    repo = SelfAssessmentRepository(store.connection)
    repo.keep_checklist(checklist)                  # the uplink, from the province
    rating = repo.save_assessment(checklist_version=3, answers={"sanitiser": True},
                                  made_by="manager1", at=now, audit=None)
    rating.score                                    # 100
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from kiosk.errors import GateError
from kiosk.store.audit import write_audit
from kiosk.store.connection import Connection
from kiosk.store.values import AuditNote, from_text, to_text

_IDS_PER_STATEMENT = 500  # under SQLite's smallest bound-parameter limit (999)


class AssessmentRefused(GateError):
    """A rating that cannot be kept: its checklist version is not on this hub,
    or its answers do not match the checklist's questions."""


@dataclass(frozen=True)
class ChecklistQuestion:
    """One measure the province asks about: its id and its text in both languages."""

    id: str
    vi: str
    en: str


@dataclass(frozen=True)
class HubChecklist:
    """A checklist version as the hub fetched it from the province.

    ``stale_after_days``: a rating older than this, or made on an older
    version, counts as stale at the province.
    """

    version: int
    title: str
    questions: tuple[ChecklistQuestion, ...]
    stale_after_days: int
    published_at: datetime
    fetched_at: datetime


@dataclass(frozen=True)
class SelfAssessment:
    """One rating of the site, as a manager made it on the hub.

    ``answers``: question id to whether the measure is in place; ``score``:
    the percentage of measures in place (0-100). ``province_pending``: not
    yet committed at the province; ``province_refused``: why the province
    refused it (then it is no longer pending).
    """

    id: str
    checklist_version: int
    made_at: datetime
    made_by: str
    answers: Mapping[str, bool]
    score: int
    province_pending: bool
    province_refused: str | None = None


def score_of(answers: Mapping[str, bool]) -> int:
    """The percentage of measures in place, rounded half up (0 for no answers)."""
    if not answers:
        return 0
    in_place = sum(1 for value in answers.values() if value)
    return (200 * in_place + len(answers)) // (2 * len(answers))


_ASSESSMENT_COLUMNS = (
    "id, checklist_version, made_at_utc, made_by, answers, score, province_pending, "
    "province_refused"
)
_CHECKLIST_COLUMNS = "version, title, questions, stale_after_days, published_at_utc, fetched_at_utc"


class SelfAssessmentRepository:
    """The province_checklists and self_assessments tables, over the store's one connection."""

    def __init__(self, db: Connection) -> None:
        self._db = db

    # ----------------------------------------------------------------- checklists

    def keep_checklist(self, checklist: HubChecklist) -> bool:
        """Keep a version fetched from the province; False if it was here already.

        A version, once published, never changes at the province, so the
        first copy is kept.
        """
        with self._db.write("keep the province's checklist") as conn:
            cursor = conn.execute(
                f"INSERT OR IGNORE INTO province_checklists ({_CHECKLIST_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    checklist.version,
                    checklist.title,
                    json.dumps(
                        [{"id": q.id, "vi": q.vi, "en": q.en} for q in checklist.questions],
                        ensure_ascii=False,
                    ),
                    checklist.stale_after_days,
                    to_text(checklist.published_at),
                    to_text(checklist.fetched_at),
                ),
            )
            return cursor.rowcount == 1

    def latest_version(self) -> int | None:
        """The newest checklist version on this hub; None before the first fetch."""
        rows = self._db.read(
            "read the checklist version", "SELECT max(version) FROM province_checklists", ()
        )
        return None if rows[0][0] is None else int(rows[0][0])

    def latest_checklist(self) -> HubChecklist | None:
        """The checklist in force: the newest version fetched; None before the first."""
        rows = self._db.read(
            "read the checklist",
            f"SELECT {_CHECKLIST_COLUMNS} FROM province_checklists ORDER BY version DESC LIMIT 1",
            (),
        )
        return _checklist(rows[0]) if rows else None

    def checklist(self, version: int) -> HubChecklist | None:
        rows = self._db.read(
            "read the checklist",
            f"SELECT {_CHECKLIST_COLUMNS} FROM province_checklists WHERE version = ?",
            (version,),
        )
        return _checklist(rows[0]) if rows else None

    # ----------------------------------------------------------------- ratings

    def save_assessment(
        self,
        *,
        checklist_version: int,
        answers: Mapping[str, bool],
        made_by: str,
        at: datetime,
        audit: AuditNote | None = None,
    ) -> SelfAssessment:
        """Keep a rating of ``checklist_version``, pending for the province.

        Every question of that version must be answered and nothing else:
        otherwise :class:`AssessmentRefused`, and nothing is written. The
        score is computed here. ``audit`` is written in the same
        transaction, its detail completed with the rating's id, version and
        score.
        """
        with self._db.write("keep the self-assessment") as conn:
            row = conn.execute(
                "SELECT questions FROM province_checklists WHERE version = ?",
                (checklist_version,),
            ).fetchone()
            if row is None:
                raise AssessmentRefused(
                    f"bộ câu hỏi phiên bản {checklist_version} chưa có trên máy chủ khu vực / "
                    f"checklist version {checklist_version} is not on this hub"
                )
            expected = {str(q["id"]) for q in json.loads(row[0])}
            if set(answers) != expected:
                raise AssessmentRefused(
                    "câu trả lời không khớp với các câu hỏi của bộ câu hỏi / "
                    "the answers do not match the checklist's questions"
                )
            rating = SelfAssessment(
                id=uuid.uuid4().hex,
                checklist_version=checklist_version,
                made_at=at,
                made_by=made_by,
                answers={key: bool(value) for key, value in answers.items()},
                score=score_of(answers),
                province_pending=True,
            )
            conn.execute(
                f"INSERT INTO self_assessments ({_ASSESSMENT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, 1, NULL)",
                (
                    rating.id,
                    rating.checklist_version,
                    to_text(at),
                    made_by,
                    json.dumps(dict(rating.answers), ensure_ascii=False),
                    rating.score,
                ),
            )
            write_audit(
                conn, audit, id=rating.id, checklist_version=checklist_version, score=rating.score
            )
        return rating

    def assessments(self, *, limit: int = 50) -> list[SelfAssessment]:
        """The site's latest ratings, newest first."""
        rows = self._db.read(
            "read the self-assessments",
            f"SELECT {_ASSESSMENT_COLUMNS} FROM self_assessments "
            "ORDER BY made_at_utc DESC, rowid DESC LIMIT ?",
            (limit,),
        )
        return [_assessment(row) for row in rows]

    def pending(self, *, limit: int = 100) -> list[SelfAssessment]:
        """Ratings not yet committed at the province, oldest first."""
        rows = self._db.read(
            "read the self-assessments for the province",
            f"SELECT {_ASSESSMENT_COLUMNS} FROM self_assessments "
            "WHERE province_pending = 1 ORDER BY made_at_utc, rowid LIMIT ?",
            (limit,),
        )
        return [_assessment(row) for row in rows]

    def mark_sent(self, ids: Sequence[str]) -> int:
        """Clear the pending mark of these ratings; how many changed.

        Call only after the province committed them.
        """
        changed = 0
        with self._db.write("mark self-assessments sent to the province") as conn:
            for start in range(0, len(ids), _IDS_PER_STATEMENT):
                chunk = tuple(ids[start : start + _IDS_PER_STATEMENT])
                cursor = conn.execute(
                    "UPDATE self_assessments SET province_pending = 0 "
                    f"WHERE province_pending = 1 AND id IN ({', '.join('?' * len(chunk))})",
                    chunk,
                )
                changed += cursor.rowcount
        return changed

    def mark_refused(self, rating_id: str, reason: str) -> None:
        """The province refused this rating for good: stop sending it, keep why."""
        with self._db.write("mark a self-assessment refused by the province") as conn:
            conn.execute(
                "UPDATE self_assessments SET province_pending = 0, province_refused = ? "
                "WHERE id = ?",
                (reason, rating_id),
            )


def _checklist(row: Sequence[object]) -> HubChecklist:
    version, title, questions, stale_after_days, published_at, fetched_at = row
    return HubChecklist(
        version=int(str(version)),
        title=str(title),
        questions=tuple(
            ChecklistQuestion(str(q["id"]), str(q["vi"]), str(q["en"]))
            for q in json.loads(str(questions))
        ),
        stale_after_days=int(str(stale_after_days)),
        published_at=from_text(str(published_at)),
        fetched_at=from_text(str(fetched_at)),
    )


def _assessment(row: Sequence[object]) -> SelfAssessment:
    rating_id, version, made_at, made_by, answers, score, pending, refused = row
    return SelfAssessment(
        id=str(rating_id),
        checklist_version=int(str(version)),
        made_at=from_text(str(made_at)),
        made_by=str(made_by),
        answers={str(k): bool(v) for k, v in json.loads(str(answers)).items()},
        score=int(str(score)),
        province_pending=bool(pending),
        province_refused=None if refused is None else str(refused),
    )
