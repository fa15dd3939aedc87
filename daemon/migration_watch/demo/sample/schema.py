"""The app's SQL: ``schema.sql`` (before the migration), ``migration.sql`` (the expand
migration) and the extension Supabase installs."""

from __future__ import annotations

from importlib import resources

import structlog
from psycopg import sql

from .catalog import Conn

__all__ = [
    "apply_migration",
    "install_extensions",
    "load_schema",
    "migration_sql",
    "schema_sql",
]

log = structlog.get_logger(__name__)

#: The package the ``.sql`` files sit in (next to this module).
_PACKAGE = __name__.rpartition(".")[0]


def schema_sql() -> str:
    """The text of ``schema.sql`` (the app before the migration)."""
    return resources.files(_PACKAGE).joinpath("schema.sql").read_text(encoding="utf-8")


def migration_sql() -> str:
    """The text of ``migration.sql`` (the expand migration, idempotent)."""
    return resources.files(_PACKAGE).joinpath("migration.sql").read_text(encoding="utf-8")


def install_extensions(conn: Conn) -> None:
    """``CREATE EXTENSION pg_stat_statements`` in schema ``extensions``, as Supabase does."""
    with conn.transaction():
        conn.execute("CREATE SCHEMA IF NOT EXISTS extensions")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA extensions")


def load_schema(conn: Conn) -> None:
    """Create the app schema (pre-migration: tenant key ``customer_id``, RLS on it)."""
    with conn.transaction():
        conn.execute(sql.SQL(schema_sql()))
    log.debug("sample_schema_loaded")


def apply_migration(conn: Conn) -> None:
    """Run the expand migration: add, backfill and index organization_id; move the policies."""
    with conn.transaction():
        conn.execute(sql.SQL(migration_sql()))
    log.debug("sample_migration_applied")
