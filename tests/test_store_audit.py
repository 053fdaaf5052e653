"""A state change and its audit row are one transaction, on real SQLite files."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kiosk.errors import StoreError
from kiosk.store import AuditNote, SiteCode, Store, TrustedRow

T0 = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)
ALICE = "a1" * 32


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "gate.db", boot_id="boot-a") as opened:
        yield opened


def note(action: str, **detail: object) -> AuditNote:
    return AuditNote("manager1", action, dict(detail), T0)


def refuse_audit_rows(store: Store) -> None:
    """Make every audit insert fail, as a full disk might at that moment."""
    store.connection.conn.execute(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit "
        "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
    )


def test_a_change_and_its_audit_row_commit_together(store: Store) -> None:
    statements: list[str] = []
    store.connection.conn.set_trace_callback(statements.append)
    replaced = store.add_to_denylist(
        ALICE, label="A.", note="theft", at=T0, audit=note("denylist-add", label="A.")
    )
    store.connection.conn.set_trace_callback(None)
    assert replaced is False
    assert [s.split()[0] for s in statements].count("BEGIN") == 1
    assert [s.split()[0] for s in statements][-1] == "COMMIT"
    [entry] = store.audit_entries()
    assert (entry.actor, entry.action, entry.at) == ("manager1", "denylist-add", T0)
    assert entry.detail == {"label": "A.", "replaced": False}


def test_adding_again_says_in_the_audit_row_that_it_replaced(store: Store) -> None:
    store.add_to_denylist(ALICE, label="A.", note="theft", at=T0)
    assert store.add_to_denylist(ALICE, label="A.", note="again", at=T0, audit=note("denylist-add"))
    assert [e.detail for e in store.audit_entries()] == [{"replaced": True}]


def test_when_the_audit_row_fails_the_change_is_rolled_back(store: Store) -> None:
    store.add_to_denylist(ALICE, label="A.", note="theft", at=T0)
    manager = store.add_user("manager1", role="manager", password_hash="x", at=T0)
    version = store.settings_version()
    refuse_audit_rows(store)
    with pytest.raises(StoreError, match="audit refused"):
        store.remove_from_denylist(ALICE, audit=note("denylist-remove"))
    with pytest.raises(StoreError, match="audit refused"):
        store.save_site_settings({"gate.mode": "exit"}, by="m", at=T0, audit=note("settings"))
    with pytest.raises(StoreError, match="audit refused"):
        store.set_user_disabled(manager.id, True, audit=note("user-disable"))
    with pytest.raises(StoreError, match="audit refused"):
        store.add_user("guard1", role="guard", password_hash="x", at=T0, audit=note("user-add"))
    assert store.is_denylisted(ALICE)
    assert (store.settings_version(), store.site_settings()) == (version, {})
    assert store.user_by_name("manager1") == manager
    assert store.user_by_name("guard1") is None
    assert store.audit_entries() == []


def test_no_audit_row_for_a_change_that_did_not_happen(store: Store) -> None:
    assert not store.remove_from_denylist(ALICE, audit=note("denylist-remove"))
    assert not store.revoke_site_code("nope", by="m", at=T0, audit=note("revoke"))
    assert store.remove_trusted_certificates(b"12345678", audit=note("trust-remove")) == 0
    assert store.audit_entries() == []


def test_trust_changes_count_their_rows_in_the_audit(store: Store) -> None:
    row = TrustedRow(0, b"12345678", "VN", "CN=test", T0, T0, b"der", T0, "m")
    assert store.add_trusted_certificates([row], by="m", at=T0, audit=note("trust-import")) == 1
    assert store.remove_trusted_certificates(b"12345678", audit=note("trust-remove")) == 1
    entries = store.audit_entries()
    assert [(e.action, e.row_count, e.detail) for e in entries] == [
        ("trust-remove", 1, {}),
        ("trust-import", 1, {"added": 1}),
    ]


def test_an_admission_request_is_audited_with_its_id(store: Store, tmp_path: Path) -> None:
    request_id = store.request_admit(
        actor="guard1", reason="lost card", display_name=None, at=T0, audit=note("admit")
    )
    [entry] = store.audit_entries()
    assert entry.detail == {"request": request_id}
    conn = sqlite3.connect(tmp_path / "gate.db")
    try:
        assert conn.execute("SELECT count(*) FROM admit_requests").fetchone() == (1,)
    finally:
        conn.close()


def issued_code(code_id: str) -> SiteCode:
    return SiteCode(
        id=code_id,
        kind="declaration",
        issued_at=T0,
        valid_from=T0,
        expires_at=T0,
        name="Nguyễn Văn An",
        phone="0912345678",
        organisation=None,
        answers={"fever": False},
        verdict="ok",
        issued_by="guard1",
    )


def test_an_issued_code_and_its_audit_row_commit_together(store: Store) -> None:
    store.save_site_code(issued_code("c1"), audit=note("declaration", verdict="ok"))
    [entry] = store.audit_entries()
    assert (entry.action, entry.detail) == ("declaration", {"verdict": "ok", "code": "c1"})
    assert store.site_code("c1") is not None


def test_an_issued_code_whose_audit_row_fails_is_not_kept(store: Store) -> None:
    refuse_audit_rows(store)
    with pytest.raises(StoreError):
        store.save_site_code(issued_code("c1"), audit=note("declaration"))
    assert store.site_code("c1") is None
