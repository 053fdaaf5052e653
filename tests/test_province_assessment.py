"""The safety self-assessment against a real PostgreSQL and a real hub
database: the province publishes a checklist (each publish a new version),
the uplink brings the newest to the hub, a manager's rating goes up exactly
once, a site cannot rate for another, an unknown version is refused clearly."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.types.json import Jsonb

from kiosk.cli import cli
from kiosk.clock import FakeClock
from kiosk.province.assessment import AssessmentLink
from kiosk.province.checklist import (
    ChecklistError,
    load_checklist,
    parse_checklist,
    publish_checklist,
)
from kiosk.province.outbox import ProvinceOutbox
from kiosk.province.uplink import Uplink, UplinkSettings
from kiosk.store import Store
from kiosk.store.self_assessment import (
    AssessmentRefused,
    ChecklistQuestion,
    HubChecklist,
    score_of,
)
from tests.postgres_fixture import PostgresServer, Province, postgres_fixture, province_fixture  # noqa: F401
from tests.province_hub import ingest, make_events

NOW = datetime(2026, 2, 1, 3, 0, tzinfo=UTC)
SAMPLE = Path(__file__).parent.parent / "deploy" / "province-checklist.toml"

CHECKLIST_TOML = """
title = "Tiêu chí an toàn / Safety criteria"
stale_after_days = 14

[[questions]]
id = "sanitiser"
vi = "Có dung dịch sát khuẩn tay tại cổng"
en = "Hand sanitiser at the gate"

[[questions]]
id = "qr-check"
vi = "Quét mã QR mọi người đến"
en = "Every visitor's QR code is checked"

[[questions]]
id = "masks"
vi = "Đeo khẩu trang"
en = "Masks worn"
"""


def document(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "title": "Tiêu chí / Criteria",
        "stale_after_days": 30,
        "questions": [{"id": "sanitiser", "vi": "Sát khuẩn tay", "en": "Hand sanitiser"}],
    }
    base.update(changes)
    return base


def uplink_of(store: Store, dsn: str) -> Uplink:
    return Uplink(ProvinceOutbox(store.connection), UplinkSettings(dsn=dsn), clock=FakeClock(NOW))


def publish(province: Province, tmp_path: Path, text: str = CHECKLIST_TOML) -> int:
    path = tmp_path / "checklist.toml"
    path.write_text(text, encoding="utf-8")
    return publish_checklist(province.owner_dsn, load_checklist(path))


def pending_marks(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT province_pending FROM self_assessments").fetchall()
    return [int(row[0]) for row in rows]


# ----------------------------------------------------------------------------- publishing


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"title": ""}, "title: thiếu hoặc không phải chuỗi ký tự / missing or not a text"),
        ({"title": "x" * 301}, "title: dài 301 ký tự, tối đa 300 / 301 characters long"),
        ({"stale_after_days": 0}, "stale_after_days 0: số ngày từ 1 đến 3650 / a number of days"),
        ({"stale_after_days": True}, "stale_after_days True"),
        ({"questions": []}, "questions: cần từ 1 đến 50 câu hỏi / 1 to 50 questions needed"),
        (
            {"questions": [{"id": f"q{i}", "vi": "v", "en": "e"} for i in range(51)]},
            "1 to 50 questions needed",
        ),
        (
            {"questions": [{"id": "Bad Id", "vi": "v", "en": "e"}]},
            "questions[1].id 'Bad Id': 1-40 chữ thường, chữ số, '_' hoặc '-' / 1 to 40 lower-case",
        ),
        ({"questions": [{"id": "a" * 41, "vi": "v", "en": "e"}]}, "questions[1].id"),
        ({"questions": [{"id": "a", "vi": "v"}]}, "questions[1].en: thiếu"),
        ({"questions": [{"id": "a", "vi": "v" * 301, "en": "e"}]}, "questions[1].vi: dài 301"),
        (
            {"questions": [{"id": "a", "vi": "v", "en": "e"}, {"id": "a", "vi": "w", "en": "f"}]},
            "questions: id 'a' bị trùng / id 'a' used twice",
        ),
        ({"questions": [{"id": "a", "vi": "v", "en": "e", "x": 1}]}, "unknown key(s): x"),
        ({"extra": 1}, "khóa không hợp lệ / unknown key(s): extra"),
    ],
)
def test_a_checklist_is_checked_with_a_bilingual_message(
    changes: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ChecklistError) as refused:
        parse_checklist(document(**changes))
    assert fragment in str(refused.value)


def test_the_sample_checklist_in_deploy_is_valid_and_vietnamese_first() -> None:
    checklist = load_checklist(SAMPLE)
    ids = [q.id for q in checklist.questions]
    assert {"sanitiser", "qr-check", "stall-distance", "masks", "cleaning", "checker"} <= set(ids)
    assert checklist.title.startswith("Bộ tiêu chí")
    assert all(q.vi and q.en for q in checklist.questions)


def test_a_broken_file_is_refused_by_the_cli_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "checklist.toml"
    path.write_text('title = "x"\n[[questions]]\nid = "a"\nvi = "v"\nen = "e"\nid = "b"\n')
    result = CliRunner().invoke(cli, ["province", "checklist", "dbname=none", str(path)])
    assert result.exit_code == 1
    assert "Error:" in result.output
    assert "không phải TOML hợp lệ / not valid TOML" in result.output


def test_an_invalid_checklist_publishes_nothing(province: Province, tmp_path: Path) -> None:
    path = tmp_path / "checklist.toml"
    path.write_text(CHECKLIST_TOML.replace('id = "masks"', 'id = "sanitiser"'), encoding="utf-8")
    result = CliRunner().invoke(cli, ["province", "checklist", province.owner_dsn, str(path)])
    assert result.exit_code == 1
    assert "Error: questions: id 'sanitiser' bị trùng / id 'sanitiser' used twice" in result.output
    missing = CliRunner().invoke(
        cli, ["province", "checklist", province.owner_dsn, str(tmp_path / "none.toml")]
    )
    assert missing.exit_code == 1
    assert "không đọc được tệp / cannot read the file" in missing.output
    assert province.query("SELECT count(*) FROM province.checklists") == [(0,)]


def test_each_publish_is_a_new_version_and_the_old_one_stays(
    province: Province, tmp_path: Path
) -> None:
    path = tmp_path / "checklist.toml"
    path.write_text(CHECKLIST_TOML, encoding="utf-8")
    first = CliRunner().invoke(cli, ["province", "checklist", province.owner_dsn, str(path)])
    assert first.exit_code == 0, first.output
    assert "phiên bản 1 (3 câu) / checklist version 1 published (3 questions)" in first.output
    path.write_text(CHECKLIST_TOML.replace("stale_after_days = 14", "stale_after_days = 7"))
    second = CliRunner().invoke(cli, ["province", "checklist", province.owner_dsn, str(path)])
    assert "checklist version 2 published" in second.output
    rows = province.query(
        "SELECT version, stale_after_days, questions->0->>'vi' FROM province.checklists "
        "ORDER BY version"
    )
    assert rows == [(1, 14, "Có dung dịch sát khuẩn tay tại cổng"), (2, 7, rows[0][2])]


# ----------------------------------------------------------------------------- the uplink


def test_the_uplink_brings_the_newest_checklist_to_the_hub(
    province: Province, tmp_path: Path
) -> None:
    dsn = province.add_site("market-a")
    with Store.open(tmp_path / "hub.db") as store:
        uplink_of(store, dsn).drain_once()
        assert store.self_assessment.latest_checklist() is None  # none published yet
        publish(province, tmp_path)
        uplink_of(store, dsn).drain_once()
        first = store.self_assessment.latest_checklist()
        assert first is not None
        assert (first.version, first.stale_after_days, first.fetched_at) == (1, 14, NOW)
        assert first.questions[0] == ChecklistQuestion(
            "sanitiser", "Có dung dịch sát khuẩn tay tại cổng", "Hand sanitiser at the gate"
        )
        publish(province, tmp_path, CHECKLIST_TOML.replace("Đeo khẩu trang", "Khẩu trang"))
        publish(province, tmp_path, CHECKLIST_TOML.replace("Đeo khẩu trang", "Khẩu trang!"))
        uplink_of(store, dsn).drain_once()
        newest = store.self_assessment.latest_checklist()
        assert newest is not None
        assert newest.version == 3  # the newest, not each in between
        assert newest.questions[2].vi == "Khẩu trang!"
        assert store.self_assessment.checklist(1) == first  # kept: old ratings name it


def test_a_rating_goes_up_exactly_once_and_a_resend_is_harmless(
    province: Province, tmp_path: Path
) -> None:
    dsn = province.add_site("market-a")
    publish(province, tmp_path)
    with Store.open(tmp_path / "hub.db") as store:
        uplink_of(store, dsn).drain_once()
        rating = store.self_assessment.save_assessment(
            checklist_version=1,
            answers={"sanitiser": True, "qr-check": True, "masks": False},
            made_by="manager1",
            at=NOW,
        )
        assert rating.score == 67
        assert pending_marks(tmp_path / "hub.db") == [1]
        uplink_of(store, dsn).drain_once()
        assert pending_marks(tmp_path / "hub.db") == [0]
        # As if the hub died between the province's commit and its own mark.
        with sqlite3.connect(tmp_path / "hub.db") as conn:
            conn.execute("UPDATE self_assessments SET province_pending = 1")
        with psycopg.connect(dsn) as conn:
            again = AssessmentLink(conn, store.self_assessment, "market-a").sync(NOW)
        assert (again.sent, again.inserted, again.refused) == (1, 0, 0)
        assert store.self_assessment.assessments()[0].province_pending is False
    rows = province.query(
        "SELECT site_id, id, checklist_version, made_at, answers, score FROM province.assessments"
    )
    assert rows == [
        (
            "market-a",
            rating.id,
            1,
            NOW,
            {"sanitiser": True, "qr-check": True, "masks": False},
            67,
        )
    ]


def test_a_site_cannot_insert_or_read_a_rating_for_another_site(
    province: Province, tmp_path: Path
) -> None:
    dsn_a = province.add_site("market-a")
    dsn_b = province.add_site("market-b")
    publish(province, tmp_path)
    with psycopg.connect(dsn_b) as conn:
        conn.execute(
            "INSERT INTO province.assessments (site_id, id, checklist_version, made_at, "
            "answers, score) VALUES ('market-b', 'b1', 1, now(), '{}', 50)"
        )
    with psycopg.connect(dsn_a) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute(
                "INSERT INTO province.assessments (site_id, id, checklist_version, made_at, "
                "answers, score) VALUES ('market-b', 'forged', 1, now(), %s, 100)",
                (Jsonb({"sanitiser": True}),),
            )
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM province.assessments").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE province.assessments SET score = 0")
    assert province.query("SELECT site_id, id, score FROM province.assessments") == [
        ("market-b", "b1", 50)
    ]


def test_a_rating_for_an_unknown_version_is_refused_clearly(
    province: Province, tmp_path: Path
) -> None:
    dsn = province.add_site("market-a")
    with Store.open(tmp_path / "hub.db") as store:
        with pytest.raises(AssessmentRefused) as refused:
            store.self_assessment.save_assessment(
                checklist_version=7, answers={"a": True}, made_by="manager1", at=NOW
            )
        assert str(refused.value) == (
            "bộ câu hỏi phiên bản 7 chưa có trên máy chủ khu vực / "
            "checklist version 7 is not on this hub"
        )
        # The province's own key refuses it too.
        with (
            psycopg.connect(dsn) as conn,
            pytest.raises(psycopg.errors.ForeignKeyViolation, match="checklist_version"),
        ):
            conn.execute(
                "INSERT INTO province.assessments (site_id, id, checklist_version, made_at, "
                "answers, score) VALUES ('market-a', 'x', 99, now(), '{}', 0)"
            )
        # A hub holding a version the province no longer knows (its database
        # rebuilt): the rating is marked refused with the reason; events flow on.
        store.self_assessment.keep_checklist(
            HubChecklist(5, "Old", (ChecklistQuestion("a", "v", "e"),), 30, NOW, NOW)
        )
        orphan = store.self_assessment.save_assessment(
            checklist_version=5, answers={"a": True}, made_by="manager1", at=NOW
        )
        good_version = publish(province, tmp_path)
        ingest(store, make_events(10))
        stats = uplink_of(store, dsn).drain_once()
        assert stats.inserted == 10
        kept = store.self_assessment.assessments()[0]
        assert kept.id == orphan.id
        assert kept.province_pending is False
        assert kept.province_refused == (
            "cấp tỉnh không có bộ câu hỏi phiên bản 5 / the province has no checklist version 5"
        )
        assert good_version == 1
    assert province.query("SELECT count(*) FROM province.assessments") == [(0,)]


def test_answers_must_match_the_checklist_and_nothing_is_half_saved(tmp_path: Path) -> None:
    with Store.open(tmp_path / "hub.db") as store:
        store.self_assessment.keep_checklist(
            HubChecklist(
                1,
                "T",
                (ChecklistQuestion("a", "v", "e"), ChecklistQuestion("b", "v", "e")),
                30,
                NOW,
                NOW,
            )
        )
        for answers in ({"a": True}, {"a": True, "b": False, "c": True}):
            with pytest.raises(AssessmentRefused, match="do not match the checklist"):
                store.self_assessment.save_assessment(
                    checklist_version=1, answers=answers, made_by="m", at=NOW
                )
        assert store.self_assessment.assessments() == []
        assert store.self_assessment.pending() == []


def test_ratings_are_listed_newest_first_and_pending_oldest_first(tmp_path: Path) -> None:
    with Store.open(tmp_path / "hub.db") as store:
        store.self_assessment.keep_checklist(
            HubChecklist(1, "T", (ChecklistQuestion("a", "v", "e"),), 30, NOW, NOW)
        )
        made = [
            store.self_assessment.save_assessment(
                checklist_version=1,
                answers={"a": i % 2 == 0},
                made_by="m",
                at=NOW + timedelta(days=i),
            )
            for i in range(3)
        ]
        assert [r.id for r in store.self_assessment.assessments()] == [m.id for m in made[::-1]]
        assert [r.id for r in store.self_assessment.pending()] == [m.id for m in made]
        assert [r.score for r in made] == [100, 0, 100]


@pytest.mark.parametrize(
    ("yes", "total", "score"), [(0, 1, 0), (1, 1, 100), (1, 3, 33), (2, 3, 67), (1, 2, 50)]
)
def test_the_score_is_the_rounded_percentage_of_measures_in_place(
    yes: int, total: int, score: int
) -> None:
    assert score_of({str(i): i < yes for i in range(total)}) == score
