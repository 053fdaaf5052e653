"""The Vietnamese catalog: complete, compiled, consistent, and in use.

The messages are found the way ``pybabel extract -F babel.cfg`` finds them,
so a new ``_()`` anywhere in the admin web fails here until it is translated
and the catalog recompiled (the commands are at the top of babel.cfg).
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from flask.testing import FlaskClient

from admin_web import catalog_extra
from kiosk.accounts import AccountError, add_user, reset_password
from kiosk.clock import FakeClock
from kiosk.config import EDITABLE_ON_WEB, SETTINGS
from kiosk.messages import message_for
from kiosk.store import Store
from tests.web import csrf_token, record

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "admin_web" / "translations"
VI_PO = TRANSLATIONS / "vi" / "LC_MESSAGES" / "messages.po"
VI_MO = TRANSLATIONS / "vi" / "LC_MESSAGES" / "messages.mo"

Key = tuple[str, str | None]
"""A message's identity in a catalog: (msgid, context)."""

# A printf-style conversion as Python's ``%`` operator reads it.
PLACEHOLDER = re.compile(
    r"%(?:\((?P<name>[^)]*)\))?"  # mapping key
    r"[#0 +-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?"  # flags, width, precision, length
    r"(?P<type>[diouxXeEfFgGcrsa%])"
)


# ----------------------------------------------------------------------------- helpers


def extracted() -> dict[Key, tuple[str, ...]]:
    """Every message in the code and templates, as babel.cfg configures extraction:
    the msgid (and plural) of each, by (msgid, context)."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as config:
        method_map, options_map = parse_mapping_cfg(config, "babel.cfg")
    messages: dict[Key, tuple[str, ...]] = {}
    for _filename, _lineno, message, _comments, context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=DEFAULT_KEYWORDS
    ):
        ids = forms(message)
        if ids[0]:
            messages[(ids[0], context)] = ids
    return messages


def vi_catalog() -> Catalog:
    with VI_PO.open("rb") as po:
        return read_po(po, locale="vi")


def forms(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """A msgid or translation as a tuple, one item per plural form.

    Plurals are tuples in a catalog read from a .po, lists in one read from a .mo.
    """
    if value is None:
        return ("",)
    return (value,) if isinstance(value, str) else tuple(value)


def translations(catalog: Catalog) -> dict[Key, tuple[str, ...]]:
    """The catalog's translations (header left out), each as a tuple of plural forms."""
    return {
        (forms(message.id)[0], message.context): forms(message.string)
        for message in catalog
        if message.id
    }


def placeholders(text: str) -> set[tuple[str | None, str]]:
    """The ``%`` conversions in ``text`` as (name, type); ``%%`` included."""
    return {(m["name"], m["type"]) for m in PLACEHOLDER.finditer(text)}


def speaking(client: FlaskClient, language: str | None) -> FlaskClient:
    """The client as a browser that asks for ``language`` (None: asks for none)."""
    client.environ_base.pop("HTTP_ACCEPT_LANGUAGE", None)
    if language is not None:
        client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    return client


def text(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response.get_data(as_text=True)


def choose_language(client: FlaskClient, code: str, back_to: str = "/login") -> None:
    response = client.post(
        f"/lang/{code}", data={"csrf_token": csrf_token(client, back_to), "next": back_to}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == back_to


# ----------------------------------------------------------------------------- the catalog


def test_extraction_finds_the_admin_webs_messages() -> None:
    """A check of the check: babel.cfg reaches Python views, lazy labels,
    templates, plurals and the hand-listed run-time strings."""
    found = extracted()
    for msgid in (
        "Wrong user name or password.",  # admin_web/auth.py, gettext as _
        "Gate name",  # admin_web/admin.py, lazy_gettext as _l
        "Dashboard",  # templates/base.html
        "%(num)d event",  # templates/log.html, ngettext
        "Most people inside at once; 0 for no limit.",  # catalog_extra.py, N_
    ):
        assert (msgid, None) in found, msgid
    assert found[("%(num)d event", None)] == ("%(num)d event", "%(num)d events")
    assert len(found) > 200


def test_every_message_has_a_vietnamese_translation() -> None:
    catalog = vi_catalog()
    assert catalog.num_plurals == 1
    assert catalog.plural_expr == "0"
    missing, fuzzy = [], []
    for key, ids in extracted().items():
        message = catalog.get(*key)
        if message is None:
            missing.append(key[0])
            continue
        if message.fuzzy:
            fuzzy.append(key[0])
        strings = forms(message.string)
        if not all(s.strip() for s in strings):
            missing.append(key[0])
        if len(ids) > 1:
            assert isinstance(message.id, tuple), f"{key[0]!r} lost its plural"
            assert message.id == ids, f"{key[0]!r} has another plural in the catalog"
            assert len(strings) == catalog.num_plurals, key[0]
    assert not missing, f"untranslated (run the commands at the top of babel.cfg): {missing}"
    assert not fuzzy, f"fuzzy, to be checked by a translator: {fuzzy}"


def test_the_catalog_holds_no_message_the_code_no_longer_has() -> None:
    stale = set(translations(vi_catalog())) - set(extracted())
    assert not stale, f"run pybabel update (see babel.cfg); stale: {sorted(k[0] for k in stale)}"


def test_the_shipped_mo_is_compiled_from_the_po() -> None:
    catalog = vi_catalog()
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    expected = translations(read_mo(compiled))
    with VI_MO.open("rb") as shipped:
        actual = translations(read_mo(shipped))
    assert actual == expected, "run: pybabel compile -d admin_web/translations"
    assert len(actual) == len(translations(catalog))


def test_translations_keep_the_placeholders_of_their_msgid() -> None:
    for message in vi_catalog():
        if not message.id:
            continue
        ids, strings = forms(message.id), forms(message.string)
        # Vietnamese has one form, used for every count: it follows the plural msgid.
        expected = placeholders(ids[-1])
        for string in strings:
            assert placeholders(string) == expected, (ids[0], string)
            # Templates always apply ``%`` (Jinja's new-style gettext): a stray
            # percent sign would break the page.
            assert "%" not in PLACEHOLDER.sub("", string), (ids[0], string)


def test_run_time_strings_match_what_the_code_produces(web_store: Store) -> None:
    """catalog_extra repeats texts that live elsewhere; it must not drift from them."""
    helps = {setting.name: setting.help for setting in SETTINGS}
    assert tuple(helps[name] for name in EDITABLE_ON_WEB) == catalog_extra.SETTING_HELP

    at = datetime(2026, 1, 5, tzinfo=UTC)
    raised: list[str] = []
    attempts = [
        ("a b", "guard", "long-enough-1"),  # a bad name
        ("lan", "boss", "long-enough-1"),  # no such role
        ("lan", "guard", "short"),
        ("lan-long-name", "guard", "LAN-LONG-NAME"),  # the name as password
    ]
    for name, role, password in attempts:
        with pytest.raises(AccountError) as error:
            add_user(web_store, name, role=role, password=password, at=at)
        raised.append(str(error.value))
    user = web_store.user_by_name("guard1")
    assert user is not None
    with pytest.raises(AccountError) as error:
        reset_password(web_store, user, "tiny", at=at)
    raised.append(str(error.value))
    assert set(raised) == set(catalog_extra.ACCOUNT_ERRORS)


# ----------------------------------------------------------------------------- in the pages


@pytest.fixture
def browser(client: FlaskClient) -> FlaskClient:
    """A visitor whose browser states no language."""
    return speaking(client, None)


def test_pages_are_vietnamese_by_default(browser: FlaskClient) -> None:
    page = text(browser, "/login")
    assert '<html lang="vi">' in page
    assert "Đăng nhập" in page
    assert "Tên đăng nhập" in page
    assert "Log in" not in page


def test_a_browser_that_asks_for_english_gets_english(browser: FlaskClient) -> None:
    page = text(speaking(browser, "en-US,en;q=0.9"), "/login")
    assert '<html lang="en">' in page
    assert "Log in" in page
    assert "Đăng nhập" not in page


def test_a_language_the_site_lacks_falls_back_to_vietnamese(browser: FlaskClient) -> None:
    page = text(speaking(browser, "fr-FR,fr;q=0.9"), "/login")
    assert "Đăng nhập" in page


def test_the_chosen_language_wins_over_the_browsers(browser: FlaskClient) -> None:
    choose_language(browser, "en")
    assert "Log in" in text(browser, "/login")
    speaking(browser, "vi")
    assert "Log in" in text(browser, "/login")
    choose_language(browser, "vi")
    speaking(browser, "en")
    assert "Đăng nhập" in text(browser, "/login")


def test_a_managers_pages_are_vietnamese(manager: FlaskClient) -> None:
    page = text(speaking(manager, None), "/")
    for word in (
        "Tổng quan",
        "Nhật ký ra vào",
        "Ai đã ở trong",
        "Cho vào một lần",
        "Cài đặt",
        "Danh sách cấm",
        "Người dùng",
        "Nhật ký thao tác",
        "Màn hình cổng",
        "Đăng xuất",
        "(quản lý)",
        "Lượt vào",  # also in the chart, passed from Python
        "Bị từ chối",
    ):
        assert word in page, word
    assert "Dashboard" not in page
    choose_language(manager, "en", back_to="/")
    page = text(manager, "/")
    assert "Dashboard" in page
    assert "Tổng quan" not in page


def test_setting_help_is_translated_at_run_time(manager: FlaskClient) -> None:
    vietnamese = text(speaking(manager, None), "/settings")
    assert "Số người tối đa ở bên trong cùng lúc; 0 là không giới hạn." in vietnamese
    assert "Most people inside at once" not in vietnamese
    english = text(speaking(manager, "en"), "/settings")
    assert "Most people inside at once; 0 for no limit." in english


def test_account_errors_are_translated(manager: FlaskClient) -> None:
    speaking(manager, None)
    response = manager.post(
        "/users/add",
        data={
            "csrf_token": csrf_token(manager, "/"),
            "name": "lan",
            "role": "guard",
            "password": "short",
            "password2": "short",
        },
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Mật khẩu phải có ít nhất 10 ký tự." in page
    assert "at least 10 characters" not in page


def test_times_read_the_same_in_both_languages(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    """The pages format times with fixed numeric patterns in the site's time
    zone (admin_web.presenting.local), not with locale-dependent formats:
    the same instant reads the same in Vietnamese and in English."""
    record(web_store, clock, at=datetime(2026, 1, 5, 23, 30, tzinfo=UTC))
    vietnamese = text(speaking(manager, None), "/log")
    english = text(speaking(manager, "en"), "/log")
    assert "sự kiện" in vietnamese
    assert "1 event" in english
    for page in (vietnamese, english):
        assert "06/01/2026 06:30:00" in page


def test_reasons_are_shown_in_the_pages_language(
    manager: FlaskClient, web_store: Store, clock: FakeClock
) -> None:
    """Reasons come from kiosk.messages (both languages), not from the catalog."""
    record(web_store, clock, decision="deny", reason="denylisted")
    vietnamese = text(speaking(manager, None), "/log")
    assert message_for("denylisted").vi in vietnamese
    assert message_for("denylisted").en not in vietnamese
    english = text(speaking(manager, "en"), "/log")
    assert message_for("denylisted").en in english
