"""Staff passes on the web: issuing, the list, revoking and the badge sheet.

The badges' codes are read back as the gate reads them (zxing on the PNG,
then the site's key ring).
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from admin_web.badge_logo import LOGO_FILE, LOGO_MAX_BYTES
from kiosk.clock import FakeClock
from kiosk.codes.base import Credential
from kiosk.keys import init_keys
from kiosk.store import SiteCode, Store
from tests.test_web_declare import decode_data_url, gate_decides, keys_dir, read_code, submit
from tests.web import AppWith, csrf_token, log_in

ROOT = Path(__file__).resolve().parent.parent
BADGES_CSS = ROOT / "admin_web" / "static" / "badges.css"


@pytest.fixture
def keys(app: Flask, clock: FakeClock) -> Path:
    init_keys(keys_dir(app), at=clock.now())
    return keys_dir(app)


def issue(client: FlaskClient, **overrides: str) -> tuple[int, str]:
    data = {
        "name": "Trần Thị Bích Ngọc",
        "staff_id": "NV-001",
        "organisation": "Công ty May Sài Gòn",
        "valid_from": "2026-01-05",
        "valid_until": "2027-01-04",
        "csrf_token": csrf_token(client, "/passes"),
    }
    data.update(overrides)
    response = client.post("/passes/new", data=data)
    return response.status_code, response.get_data(as_text=True)


def passes(store: Store, clock: FakeClock) -> list[SiteCode]:
    return store.site_codes("staff-pass", now=clock.now(), include_expired=True)


def badge_images(page: str) -> list[str]:
    return re.findall(r'<img class="qr" src="(data:image/png;base64,[^"]+)"', page)


def test_the_form_proposes_a_year_from_today(manager: FlaskClient) -> None:
    page = manager.get("/passes").get_data(as_text=True)
    assert 'name="valid_from" type="date" value="2026-01-05"' in page
    assert 'name="valid_until" type="date" value="2027-01-04"' in page


def test_a_manager_issues_a_pass_the_gate_accepts(
    app: Flask, manager: FlaskClient, web_store: Store, clock: FakeClock, keys: Path
) -> None:
    status, _page = issue(manager)
    assert status == 302
    [record] = passes(web_store, clock)
    assert record.issued_by == "manager1"
    assert record.answers == {"staff_id": "NV-001"}
    assert record.text is not None
    assert record.text.startswith("GK1:")
    # Local days: from midnight of the first day to midnight after the last (UTC+7).
    assert record.valid_from.isoformat() == "2026-01-04T17:00:00+00:00"
    assert record.expires_at.isoformat() == "2027-01-04T17:00:00+00:00"
    identified = read_code(app, web_store, clock, record.text.encode())
    assert isinstance(identified, Credential)
    assert identified.kind == "staff-pass"
    assert identified.subject_id == "staff:NV-001"
    page = manager.get("/passes").get_data(as_text=True)
    assert "Trần Thị Bích Ngọc" in page
    assert "04/01/2027" in page
    assert "active" in page
    [entry, *_] = web_store.audit_entries()
    assert (entry.actor, entry.action) == ("manager1", "staff-pass")


def test_a_pass_longer_than_a_year_is_refused(
    manager: FlaskClient, web_store: Store, clock: FakeClock, keys: Path
) -> None:
    status, page = issue(manager, valid_until="2027-01-06")
    assert status == 400
    assert "A pass is valid for a year at most." in page
    assert 'value="Trần Thị Bích Ngọc"' in page
    assert passes(web_store, clock) == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "", "Enter the name."),
        ("name", "R2-D2", "A name has letters and spaces only"),
        ("staff_id", "", "Enter the staff ID."),
        ("staff_id", "NV 001", "A staff ID has 1 to 32 letters"),
        ("organisation", "x" * 61, "Use at most 60 characters."),
        ("valid_from", "05/01/2026", "Enter a date."),
        ("valid_until", "2025-12-01", "The last day must not be before the first."),
    ],
)
def test_bad_values_are_refused_with_a_reason(
    manager: FlaskClient,
    web_store: Store,
    clock: FakeClock,
    keys: Path,
    field: str,
    value: str,
    message: str,
) -> None:
    status, page = issue(manager, **{field: value})
    assert status == 400
    assert message in page
    assert passes(web_store, clock) == []


def test_a_pass_that_ended_in_the_past_is_refused(manager: FlaskClient, keys: Path) -> None:
    status, page = issue(manager, valid_from="2025-01-01", valid_until="2025-06-30")
    assert status == 400
    assert "This pass would already have expired." in page


def test_without_keys_the_manager_is_told_what_to_run(manager: FlaskClient) -> None:
    status, page = issue(manager)
    assert status == 409
    assert "gatekiosk keys init" in page


def test_passes_are_for_managers(guard: FlaskClient, client: FlaskClient) -> None:
    assert guard.get("/passes").status_code == 403
    assert guard.get("/passes/badges").status_code == 403
    assert client.get("/passes").status_code == 302


def test_the_badge_sheet_prints_the_ticked_passes(
    app: Flask, manager: FlaskClient, web_store: Store, clock: FakeClock, keys: Path
) -> None:
    issue(manager, name="Lê Văn Nam", staff_id="NV-1")
    issue(manager, name="Phạm Thị Mai", staff_id="NV-2", organisation="<b>Kho</b> & Co")
    issue(manager, name="Võ Minh Tuấn", staff_id="NV-3")
    by_name = {p.name: p for p in passes(web_store, clock)}
    chosen = [by_name["Lê Văn Nam"].id, by_name["Phạm Thị Mai"].id]

    list_page = manager.get("/passes").get_data(as_text=True)
    assert list_page.count('form="badges-form"') == 3 + 1  # three checkboxes, one button
    response = manager.get("/passes/badges", query_string={"id": chosen})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    images = badge_images(page)
    assert len(images) == 2
    assert "Lê Văn Nam" in page
    assert "Phạm Thị Mai" in page
    assert "Võ Minh Tuấn" not in page
    assert "NV-1" in page
    assert "NV-2" in page
    assert "Valid until 04/01/2027" in page
    assert "&lt;b&gt;Kho&lt;/b&gt; &amp; Co" in page
    assert "<b>Kho</b>" not in page
    assert "badges.css" in page

    read = [read_code(app, web_store, clock, decode_data_url(src)) for src in images]
    assert all(isinstance(r, Credential) for r in read)
    assert {r.display_name for r in read if isinstance(r, Credential)} == {
        "Lê Văn Nam",
        "Phạm Thị Mai",
    }
    # The very codes that were issued: revoking a pass stops its badge.
    assert {dict(r.attributes)["code_id"] for r in read if isinstance(r, Credential)} == set(chosen)


def test_badges_are_printed_at_least_three_centimetres_on_a4() -> None:
    css = BADGES_CSS.read_text(encoding="utf-8")
    assert "@page { size: A4; margin: 1cm; }" in css
    match = re.search(r"\.badge img\.qr \{[^}]*width: ([0-9.]+)cm;[^}]*height: ([0-9.]+)cm;", css)
    assert match, "the badge QR has no size in cm"
    assert float(match.group(1)) >= 3
    assert float(match.group(2)) >= 3


def test_the_badge_sheet_without_a_choice_prints_every_active_pass(
    manager: FlaskClient, web_store: Store, clock: FakeClock, keys: Path
) -> None:
    issue(manager, name="Lê Văn Nam", staff_id="NV-1")
    issue(manager, name="Phạm Thị Mai", staff_id="NV-2")
    mai = next(p for p in passes(web_store, clock) if p.name == "Phạm Thị Mai")
    web_store.revoke_site_code(mai.id, by="manager1", at=clock.now())
    page = manager.get("/passes/badges").get_data(as_text=True)
    assert len(badge_images(page)) == 1
    assert "Lê Văn Nam" in page
    assert "Phạm Thị Mai" not in page


def test_a_revoked_pass_is_not_printed(
    manager: FlaskClient, web_store: Store, clock: FakeClock, keys: Path
) -> None:
    issue(manager)
    [record] = passes(web_store, clock)
    web_store.revoke_site_code(record.id, by="manager1", at=clock.now())
    page = manager.get("/passes/badges", query_string={"id": record.id}).get_data(as_text=True)
    assert badge_images(page) == []
    assert "Not printed:" in page


def test_revoking_a_pass_makes_the_gate_refuse_it(
    app: Flask,
    manager: FlaskClient,
    web_store: Store,
    clock: FakeClock,
    keys: Path,
) -> None:
    issue(manager)
    [record] = passes(web_store, clock)
    assert record.text is not None
    path = f"/passes/{record.id}/revoke"
    assert manager.post(path).status_code == 400  # no CSRF token
    response = manager.post(path, data={"csrf_token": csrf_token(manager, "/passes")})
    assert response.status_code == 302
    decision = gate_decides(app, web_store, clock, record.text.encode())
    assert not decision.allowed
    assert decision.reason == "sitecode-revoked"
    [entry, *_] = web_store.audit_entries()
    assert (entry.actor, entry.action, entry.detail["code"]) == ("manager1", "revoke", record.id)
    page = manager.get("/passes").get_data(as_text=True)
    assert "revoked by manager1" in page
    again = manager.post(path, data={"csrf_token": csrf_token(manager, "/passes")})
    assert again.status_code == 302
    assert "already revoked" in manager.get("/passes").get_data(as_text=True)


def test_only_passes_are_revoked_here(
    manager: FlaskClient, client: FlaskClient, web_store: Store, clock: FakeClock, keys: Path
) -> None:
    submit(client)
    [declaration] = web_store.site_codes("declaration", now=clock.now())
    token = csrf_token(manager, "/passes")
    for code_id in (declaration.id, "0011223344556677"):
        response = manager.post(f"/passes/{code_id}/revoke", data={"csrf_token": token})
        assert response.status_code == 404
    assert not web_store.is_revoked(declaration.id)


def test_a_pass_from_a_later_day_is_listed_as_not_valid_yet(
    manager: FlaskClient, keys: Path
) -> None:
    status, _page = issue(manager, valid_from="2026-02-01", valid_until="2026-12-31")
    assert status == 302
    assert "not valid yet" in manager.get("/passes").get_data(as_text=True)


# A 1x1 PNG and the first bytes of a JPEG: the logo is recognised by its bytes.
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def upload_logo(client: FlaskClient, data: bytes, name: str = "logo.png") -> str:
    response = client.post(
        "/passes/logo",
        data={"csrf_token": csrf_token(client, "/passes"), "file": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_badges_carry_the_site_name_and_the_uploaded_logo(
    app_with: AppWith, clock: FakeClock
) -> None:
    app = app_with({"gate.site_name": "Nhà máy Bình Dương"})
    init_keys(keys_dir(app), at=clock.now())
    manager = app.test_client()
    log_in(manager, "manager")
    issue(manager, name="Lê Văn Nam", staff_id="NV-1")
    page = manager.get("/passes/badges").get_data(as_text=True)
    assert '<p class="site-name"><bdi>Nhà máy Bình Dương</bdi></p>' in page
    assert 'class="logo"' not in page

    listed = upload_logo(manager, TINY_PNG)
    assert "The logo is saved" in listed
    page = manager.get("/passes/badges").get_data(as_text=True)
    assert '<img class="logo" src="data:image/png;base64,' in page
    store = app.extensions["gatekiosk"].store
    assert store.audit_entries(limit=1)[0].action == "badge-logo"

    removed = manager.post(
        "/passes/logo",
        data={"csrf_token": csrf_token(manager, "/passes"), "remove": "1"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "The logo is removed" in removed
    assert 'class="logo"' not in manager.get("/passes/badges").get_data(as_text=True)


def test_a_logo_that_is_not_a_small_png_or_jpeg_is_refused(
    app: Flask, manager: FlaskClient
) -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    assert "must be a PNG or JPEG" in upload_logo(manager, svg, "logo.png")
    too_big = TINY_PNG + b"\0" * (LOGO_MAX_BYTES + 1)
    assert "larger than 200 KB" in upload_logo(manager, too_big)
    assert not (app.extensions["gatekiosk"].settings.data_dir / LOGO_FILE).exists()


def test_the_badge_sheet_says_where_to_set_a_missing_site_name(
    manager: FlaskClient, keys: Path
) -> None:
    page = manager.get("/passes/badges").get_data(as_text=True)
    assert 'id="no-site-name"' in page
