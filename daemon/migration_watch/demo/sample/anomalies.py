"""The anomalies one at a time: rows missing the new column, orphans, post-deploy writes,
broken indexes, legacy policies, RLS disabled, tables and columns dropped."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from psycopg import sql

from .catalog import Conn, RowId, row_id
from .facts import DEPLOYED_AT, LEGACY_COLUMN, SCHEMA, WATCHED_TABLES

__all__ = [
    "add_missing_without_legacy",
    "add_orphans",
    "add_post_deploy_rows",
    "disable_rls",
    "drop_index",
    "drop_legacy_column",
    "drop_optional_table",
    "invalidate_index",
    "legacy_policy",
]

log = structlog.get_logger(__name__)


def add_missing_without_legacy(
    conn: Conn, table: str, n: int, *, created_at: datetime | None = None
) -> list[RowId]:
    """Insert ``n`` rows with organization_id NULL and customer_id NULL; returns their ids.

    ``created_at``: the first row's (default one day before DEPLOYED_AT), then +1 s per row.
    """
    return _insert_anomalies(conn, table, n, created_at, legacy=False, kind="missing")


def add_orphans(
    conn: Conn, table: str, n: int, *, created_at: datetime | None = None
) -> list[RowId]:
    """Insert ``n`` orphans: organization_id NULL, customer_id NOT NULL; returns their ids.

    The customer (and, for conversations, the domain) is the first existing one by domain
    name — a code path that still writes only customer_id. ``created_at`` as above.
    """
    return _insert_anomalies(conn, table, n, created_at, legacy=True, kind="orphan")


def add_post_deploy_rows(
    conn: Conn, n: int, after: datetime = DEPLOYED_AT, *, table: str = "conversations"
) -> list[RowId]:
    """Insert ``n`` rows created at ``after`` + 0, 1, 2 … s with customer_id but no
    organization_id (post-deploy writes by old code; they are orphans too)."""
    return _insert_anomalies(conn, table, n, after, legacy=True, kind="post-deploy")


def _insert_anomalies(
    conn: Conn, table: str, n: int, created_at: datetime | None, *, legacy: bool, kind: str
) -> list[RowId]:
    if table not in WATCHED_TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {WATCHED_TABLES}")
    if n <= 0:
        return []
    params: dict[str, Any] = {
        "n": n,
        "ts": created_at if created_at is not None else DEPLOYED_AT - timedelta(days=1),
        "legacy": legacy,
        "tag": f"{table}:{kind}",
        "fallback": "00000000-0000-4000-8000-00000000cafe",
    }
    with conn.transaction():
        base = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(SCHEMA, table))
        ).fetchone()
        params["base"] = int(base[0]) if base else 0
        if table == "conversations":
            query = """
                WITH src AS (
                  SELECT d.id AS domain_id, d.customer_id FROM public.domains d
                  WHERE d.customer_id IS NOT NULL ORDER BY d.domain LIMIT 1
                )
                INSERT INTO public.conversations
                  (domain_id, customer_id, session_id, created_at, updated_at)
                SELECT CASE WHEN %(legacy)s THEN src.domain_id END,
                       CASE WHEN %(legacy)s THEN coalesce(src.customer_id, %(fallback)s::uuid) END,
                       'anomaly-' || %(tag)s::text || '-' || g,
                       %(ts)s::timestamptz + (g - 1) * interval '1 second',
                       %(ts)s::timestamptz + (g - 1) * interval '1 second'
                FROM generate_series(1, %(n)s::int) AS g LEFT JOIN src ON true
                ORDER BY g
                RETURNING id
                """
        else:
            query = """
                WITH src AS (
                  SELECT cc.customer_id FROM public.customer_configs cc
                  WHERE cc.customer_id IS NOT NULL ORDER BY cc.domain LIMIT 1
                )
                INSERT INTO public.{table} (id, customer_id, domain, created_at, updated_at)
                SELECT md5('anomaly:' || %(tag)s::text || ':' || (%(base)s::int + g))::uuid,
                       CASE WHEN %(legacy)s THEN coalesce(src.customer_id, %(fallback)s::uuid) END,
                       format('anomaly-%%s-%%s.example', replace(%(tag)s::text, ':', '-'),
                              %(base)s::int + g),
                       %(ts)s::timestamptz + (g - 1) * interval '1 second',
                       %(ts)s::timestamptz + (g - 1) * interval '1 second'
                FROM generate_series(1, %(n)s::int) AS g LEFT JOIN src ON true
                ORDER BY g
                RETURNING id
                """
        rows = conn.execute(
            sql.SQL(query).format(table=sql.Identifier(table)),
            params,
        ).fetchall()
    return [row_id(r[0]) for r in rows]


def drop_index(conn: Conn, name: str, *, schema: str = SCHEMA) -> None:
    """``DROP INDEX IF EXISTS schema.name``."""
    conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(schema, name)))


def invalidate_index(conn: Conn, name: str, *, ready: bool = True, schema: str = SCHEMA) -> None:
    """Mark an index invalid (``pg_index.indisvalid = false``), as a failed
    ``CREATE INDEX CONCURRENTLY`` leaves it; ``ready=False`` also clears ``indisready``.
    Superuser only (catalog update)."""
    with conn.transaction():
        cur = conn.execute(
            """
            UPDATE pg_catalog.pg_index SET indisvalid = false, indisready = %s
            WHERE indexrelid = (
              SELECT c.oid FROM pg_catalog.pg_class c
              JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'i')
            """,
            (ready, schema, name),
        )
        if cur.rowcount != 1:
            raise ValueError(f"index {schema}.{name} not found")


def legacy_policy(conn: Conn, table: str, *, replace: bool = False) -> str:
    """Create ``<table>_customer_access`` (USING/WITH CHECK ``customer_id = auth.uid()``), a
    policy still on the legacy column; returns its name. ``replace=True`` also drops the
    migration's ``<table>_organization_access``, leaving no policy on the new column."""
    name = f"{table}_customer_access"
    target = sql.Identifier(SCHEMA, table)
    with conn.transaction():
        conn.execute(sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(name), target))
        conn.execute(
            sql.SQL(
                "CREATE POLICY {} ON {} FOR ALL TO authenticated "
                "USING (customer_id = auth.uid()) WITH CHECK (customer_id = auth.uid())"
            ).format(sql.Identifier(name), target)
        )
        if replace:
            conn.execute(
                sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(
                    sql.Identifier(f"{table}_organization_access"), target
                )
            )
    return name


def disable_rls(conn: Conn, table: str) -> None:
    """``ALTER TABLE … DISABLE ROW LEVEL SECURITY`` (policies stay, but are not applied)."""
    conn.execute(
        sql.SQL("ALTER TABLE {} DISABLE ROW LEVEL SECURITY").format(sql.Identifier(SCHEMA, table))
    )


def drop_optional_table(conn: Conn, table: str = "scraper_configs") -> None:
    """``DROP TABLE IF EXISTS … CASCADE`` (the optional table is absent)."""
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA, table)))


def drop_legacy_column(conn: Conn, table: str) -> None:
    """Drop ``customer_id`` (and what depends on it) — the contract step done too early."""
    conn.execute(
        sql.SQL("ALTER TABLE {} DROP COLUMN IF EXISTS {} CASCADE").format(
            sql.Identifier(SCHEMA, table), sql.Identifier(LEGACY_COLUMN)
        )
    )
