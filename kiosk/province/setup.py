"""The province server: its schema, and one login role per site.

The schema (``schema.sql`` beside this module) is applied by the database's
owner with ``gatekiosk province init DSN``; it is safe to apply again. Each
site then gets its own login role (``gatekiosk province add-site``), a
member of ``province_site``, whose row-level security lets it insert and
read its own site's rows only.

Example::

    init_schema("postgresql://postgres@/province")
    add_site("postgresql://postgres@/province", SiteRole("market-3", "Chợ Bến Thành",
             role_name="site_market_3", password="..."))
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date, datetime
from importlib import resources

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

_SITE_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")
_ROLE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class SiteRole:
    """A site known to the province, and the login its hub connects with."""

    site_id: str
    name: str
    role_name: str
    password: str | None = None
    """None: no password (the server authenticates the role otherwise, e.g. by certificate)."""


def default_role_name(site_id: str) -> str:
    """``site_`` and the site id in lower case, other characters as ``_``."""
    return "site_" + re.sub(r"[^a-z0-9_]", "_", site_id.lower())


def schema_sql() -> str:
    """The schema's text (``schema.sql``)."""
    return resources.files("kiosk.province").joinpath("schema.sql").read_text(encoding="utf-8")


def init_schema(dsn: str) -> None:
    """Create or update the province schema, roles, functions and policies.

    Run as the database's owner (or a superuser). Idempotent.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(schema_sql().encode())
    log.info("province schema applied")


def add_site(dsn: str, site: SiteRole) -> bool:
    """Register ``site`` and create its login role; False if it was already there.

    Run as the schema's owner. The role may do nothing but insert and read
    its own site's events and report its health.
    """
    if not _SITE_ID.fullmatch(site.site_id):
        raise ValueError(f"site id {site.site_id!r}: 1 to 32 letters, digits, '.', '_' or '-'")
    if not _ROLE.fullmatch(site.role_name):
        raise ValueError(f"role name {site.role_name!r}: lower-case letters, digits and '_'")
    with psycopg.connect(dsn) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_roles WHERE rolname = %s", (site.role_name,)
        ).fetchone()
        if exists is None:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE province_site").format(
                    sql.Identifier(site.role_name),
                    sql.Literal(site.password) if site.password else sql.SQL("NULL"),
                )
            )
        cursor = conn.execute(
            "INSERT INTO province.sites (id, name, role_name) VALUES (%s, %s, %s) "
            "ON CONFLICT (id) DO NOTHING",
            (site.site_id, site.name, site.role_name),
        )
        return cursor.rowcount == 1


def add_reader(dsn: str, role_name: str, password: str | None) -> None:
    """Create a login for the authority's web, a member of ``province_reader``."""
    if not _ROLE.fullmatch(role_name):
        raise ValueError(f"role name {role_name!r}: lower-case letters, digits and '_'")
    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role_name,)).fetchone():
            return
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE province_reader").format(
                sql.Identifier(role_name),
                sql.Literal(password) if password else sql.SQL("NULL"),
            )
        )


def month_of(at: datetime) -> date:
    """The first day of ``at``'s month in UTC: the partition an event lands in."""
    return date(at.year, at.month, 1)


def partition_name(month: date) -> str:
    """The partition holding ``month``'s events, as ``province.ensure_month`` names it."""
    return f"events_{month.year:04d}_{month.month:02d}"
