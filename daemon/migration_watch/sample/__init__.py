"""The sample application database: schema, the expand migration, data and known anomalies.

A Supabase-like app (``auth.users`` + ``auth.uid()``, organizations, organization_members,
customer_configs, domains, conversations, messages, scraper_configs, RLS) whose tenant key
moves from ``customer_id`` to ``organization_id``. Used by the tests, the benchmark and the demo.

Every function takes an autocommit psycopg connection as a superuser (the anomaly builders
touch catalogs; ``populate`` skips FK triggers while bulk loading) and runs its data
generation server-side (``INSERT … SELECT generate_series``), so millions of rows are quick.

Typical use::

    install_extensions(conn)                 # pg_stat_statements in schema "extensions"
    build_scenario(conn, "healthy")          # schema + data + migration; returns a Truth
    truth = apply_anomalies(conn)            # the documented anomalies, see ANOMALY_TRUTH
    assert truth["conversations"].orphans == 11

Vocabulary (new column ``organization_id``, legacy column ``customer_id``):
    missing_new             rows with organization_id NULL (whatever customer_id is)
    missing_without_legacy  organization_id NULL and customer_id NULL
    orphans                 organization_id NULL and customer_id NOT NULL (checklist 5.1 query 3)
    post_deploy_missing     created_at >= deployed_at and organization_id NULL
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Final

import psycopg
import structlog
from psycopg import sql

__all__ = [
    "ANOMALIES",
    "ANOMALY_TRUTH",
    "DEPLOYED_AT",
    "EXPECTED_INDEXES",
    "HEALTHY_TRUTH",
    "LEGACY_COLUMN",
    "NEW_COLUMN",
    "OPTIONAL_TABLES",
    "SCENARIOS",
    "SCHEMA",
    "WATCHED_TABLES",
    "IndexTruth",
    "PolicyTruth",
    "TableTruth",
    "Truth",
    "add_missing_without_legacy",
    "add_orphans",
    "add_post_deploy_rows",
    "apply_anomalies",
    "apply_migration",
    "build_scenario",
    "disable_rls",
    "drop_index",
    "drop_legacy_column",
    "drop_optional_table",
    "install_extensions",
    "invalidate_index",
    "legacy_policy",
    "load_schema",
    "migration_sql",
    "populate",
    "schema_sql",
    "truth",
    "vacuum_analyze",
]

log = structlog.get_logger(__name__)

Conn = psycopg.Connection[Any]
RowId = int | str  # bigint ids as int, uuid ids as str

SCHEMA: Final = "public"
LEGACY_COLUMN: Final = "customer_id"
NEW_COLUMN: Final = "organization_id"
#: The deploy time the sample data is laid out around (the config example's ``deployed_at``).
DEPLOYED_AT: Final = datetime(2025, 10, 23, 9, 0, tzinfo=UTC)
WATCHED_TABLES: Final = ("conversations", "customer_configs", "scraper_configs")
OPTIONAL_TABLES: Final = ("scraper_configs",)
EXPECTED_INDEXES: Final[Mapping[str, tuple[str, ...]]] = {
    "conversations": ("idx_conversations_organization_id",),
    "customer_configs": ("idx_customer_configs_organization_id",),
    "scraper_configs": ("idx_scraper_configs_organization_id",),
}
SCENARIOS: Final = ("pre_migration", "healthy", "anomalies")

#: What ``apply_anomalies`` adds, row counts per table and kind.
ANOMALIES: Final[Mapping[str, Mapping[str, int]]] = {
    "conversations": {"missing_without_legacy": 5, "orphans": 7, "post_deploy_orphans": 4},
    "customer_configs": {"missing_without_legacy": 1, "orphans": 2},
}

#: The numbers ``truth()`` returns for ``build_scenario(conn, "healthy")`` with default sizes
#: (3 organizations x 2 domains, 1000 conversations of which 100 after deploy).
HEALTHY_TRUTH: Final[Mapping[str, Mapping[str, Any]]] = {
    "conversations": {
        "total": 1000, "with_new": 1000, "with_legacy": 1000, "missing_new": 0,
        "missing_without_legacy": 0, "orphans": 0, "post_deploy_total": 100,
        "post_deploy_missing": 0, "policies_on_new": 1, "policies_on_legacy": 0,
        "backfill_ratio": 1.0, "rls_enabled": True, "orphan_ids": (),
        "indexes": {"idx_conversations_organization_id": {
            "exists": True, "valid": True, "ready": True, "covers_new": True}},
    },
    "customer_configs": {
        "total": 6, "with_new": 6, "with_legacy": 6, "missing_new": 0,
        "missing_without_legacy": 0, "orphans": 0, "post_deploy_total": 0,
        "post_deploy_missing": 0, "policies_on_new": 1, "policies_on_legacy": 0,
        "backfill_ratio": 1.0, "rls_enabled": True, "orphan_ids": (),
        "indexes": {"idx_customer_configs_organization_id": {
            "exists": True, "valid": True, "ready": True, "covers_new": True}},
    },
    "scraper_configs": {
        "total": 6, "with_new": 6, "with_legacy": 6, "missing_new": 0,
        "missing_without_legacy": 0, "orphans": 0, "post_deploy_total": 0,
        "post_deploy_missing": 0, "policies_on_new": 1, "policies_on_legacy": 0,
        "backfill_ratio": 1.0, "rls_enabled": True, "orphan_ids": (),
        "indexes": {"idx_scraper_configs_organization_id": {
            "exists": True, "valid": True, "ready": True, "covers_new": True}},
    },
}  # fmt: skip

#: The numbers ``truth()`` returns after ``apply_anomalies`` on the default healthy data.
#: Conversation ids: 1..1000 healthy, 1001..1005 missing without legacy, 1006..1012 orphans
#: (before deploy), 1013..1016 post-deploy orphans (created at DEPLOYED_AT + 0..3 s).
ANOMALY_TRUTH: Final[Mapping[str, Mapping[str, Any]]] = {
    "conversations": {
        "exists": True, "total": 1016, "with_new": 1000, "with_legacy": 1011,
        "missing_new": 16, "missing_without_legacy": 5, "orphans": 11,
        "orphan_ids": tuple(range(1006, 1017)), "backfill_ratio": 1000 / 1016,
        "post_deploy_total": 104,
        "post_deploy_missing": 4, "rls_enabled": True, "policies_on_new": 1,
        "policies_on_legacy": 1,
        "indexes": {"idx_conversations_organization_id": {
            "exists": True, "valid": False, "ready": True, "covers_new": True}},
    },
    "customer_configs": {
        "exists": True, "total": 9, "with_new": 6, "with_legacy": 8, "missing_new": 3,
        "missing_without_legacy": 1, "orphans": 2, "backfill_ratio": 6 / 9,
        "orphan_ids": ("a63a704d-c94c-88ce-c4eb-a2e698056f7e",
                       "f317b5ff-e53b-eaa4-d225-3a1740db143e"),
        "post_deploy_total": 0,
        "post_deploy_missing": 0, "rls_enabled": True, "policies_on_new": 0,
        "policies_on_legacy": 1,
        "indexes": {"idx_customer_configs_organization_id": {
            "exists": False, "valid": False, "ready": False, "covers_new": False}},
    },
    "scraper_configs": {"exists": False},
}  # fmt: skip


# -- SQL files ---------------------------------------------------------------------------


def schema_sql() -> str:
    """The text of ``schema.sql`` (the app before the migration)."""
    return resources.files(__name__).joinpath("schema.sql").read_text(encoding="utf-8")


def migration_sql() -> str:
    """The text of ``migration.sql`` (the expand migration, idempotent)."""
    return resources.files(__name__).joinpath("migration.sql").read_text(encoding="utf-8")


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


# -- data ------------------------------------------------------------------------------------


def populate(
    conn: Conn,
    *,
    organizations: int = 3,
    conversations: int = 1000,
    seed: int = 0,
    domains_per_org: int = 2,
    members_per_org: int = 3,
    messages_per_conversation: int = 2,
    post_deploy_conversations: int | None = None,
    deployed_at: datetime = DEPLOYED_AT,
    vacuum: bool = True,
) -> None:
    """Fill an empty app schema with deterministic, consistent data, server-side.

    Per organization: ``members_per_org`` users (the first is the owner = the legacy
    ``customer_id``), ``domains_per_org`` domains, each with one customer_config and one
    scraper_config (configs created 60 days before deploy). ``conversations`` rows spread over
    the domains round-robin (``seed`` rotates the assignment and salts the uuids): all but the
    last ``post_deploy_conversations`` (default ``conversations // 10``) lie in the 28 days
    before ``deployed_at``; the rest from ``deployed_at`` (the first exactly at it) over the two
    days after. Conversation ids are 1..N in ``created_at`` order on a fresh schema.

    Where ``organization_id`` already exists (migration applied), it is filled directly, so a
    bulk load needs no backfill; otherwise only ``customer_id`` is written. FK triggers are
    skipped during the load (``session_replication_role = replica``; data is consistent by
    construction); from 100,000 conversations on, the secondary indexes of conversations and
    messages are dropped for the load and rebuilt after it (same names and definitions). Then
    the tables are VACUUM ANALYZEd (``vacuum=False`` to skip). 1M conversations without
    messages take about 7 s on 2 cores.
    """
    if organizations < 1 or domains_per_org < 1 or members_per_org < 1:
        raise ValueError("organizations, domains_per_org and members_per_org must be >= 1")
    if conversations < 0 or messages_per_conversation < 0:
        raise ValueError("conversations and messages_per_conversation must be >= 0")
    post = conversations // 10 if post_deploy_conversations is None else post_deploy_conversations
    if not 0 <= post <= conversations:
        raise ValueError("post_deploy_conversations must be between 0 and conversations")
    params: dict[str, Any] = {
        "seed": str(seed),
        "orgs": organizations,
        "doms": domains_per_org,
        "members": members_per_org,
        "n": conversations,
        "pre": conversations - post,
        "post": post,
        "msgs": messages_per_conversation,
        "dep": deployed_at,
    }
    began = datetime.now(UTC)
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(
            """
            INSERT INTO public.organizations (id, name, slug, created_at)
            SELECT md5(%(seed)s::text || ':org:' || k)::uuid, 'Organization ' || k, 'org-' || k,
                   %(dep)s::timestamptz - interval '90 days' + k * interval '1 minute'
            FROM generate_series(1, %(orgs)s::int) AS k
            """,
            params,
        )
        conn.execute(
            """
            INSERT INTO auth.users (id, email, created_at)
            SELECT md5(%(seed)s::text || ':user:' || k || ':' || m)::uuid,
                   format('user%%s@org%%s.example', m, k),
                   %(dep)s::timestamptz - interval '90 days' + (k * 100 + m) * interval '1 minute'
            FROM generate_series(1, %(orgs)s::int) AS k, generate_series(1, %(members)s::int) AS m
            """,
            params,
        )
        conn.execute(
            """
            INSERT INTO public.organization_members (organization_id, user_id, role, created_at)
            SELECT md5(%(seed)s::text || ':org:' || k)::uuid,
                   md5(%(seed)s::text || ':user:' || k || ':' || m)::uuid,
                   CASE m WHEN 1 THEN 'owner' WHEN 2 THEN 'admin' ELSE 'member' END,
                   %(dep)s::timestamptz - interval '90 days' + (k * 100 + m) * interval '1 minute'
            FROM generate_series(1, %(orgs)s::int) AS k, generate_series(1, %(members)s::int) AS m
            """,
            params,
        )
        _insert_configs(conn, params)
        bulk = conversations >= _BULK_ROWS
        deferred = _drop_secondary_indexes(conn, ("conversations", "messages")) if bulk else []
        _insert_conversations(conn, params)
        if messages_per_conversation:
            conn.execute(
                """
                INSERT INTO public.messages (conversation_id, role, content, created_at)
                SELECT c.id, CASE WHEN j %% 2 = 1 THEN 'user' ELSE 'assistant' END,
                       'message ' || j || ' of conversation ' || c.id,
                       c.created_at + j * interval '30 seconds'
                FROM public.conversations AS c, generate_series(1, %(msgs)s::int) AS j
                """,
                params,
            )
        for definition in deferred:
            conn.execute(sql.SQL(definition))
    if vacuum:
        vacuum_analyze(conn)
    log.info(
        "sample_populated",
        organizations=organizations,
        conversations=conversations,
        seconds=round((datetime.now(UTC) - began).total_seconds(), 3),
    )


_BULK_ROWS: Final = 100_000


def _drop_secondary_indexes(conn: Conn, tables: Sequence[str]) -> list[str]:
    """Drop the valid non-unique indexes of ``tables``; return their definitions to recreate
    (a bulk load then builds each index once instead of maintaining it row by row)."""
    rows = conn.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = %s AND t.relname = ANY (%s)
          AND NOT i.indisunique AND NOT i.indisprimary AND i.indisvalid AND i.indisready
        ORDER BY 1
        """,
        (SCHEMA, list(tables)),
    ).fetchall()
    for row in rows:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(str(row[0]))))
    return [str(row[1]) for row in rows]


def _org_column(conn: Conn, table: str) -> tuple[sql.Composable, sql.Composable]:
    """(``, organization_id``, ``, <org uuid expr>``) when the table has the new column."""
    if _has_column(conn, table, NEW_COLUMN):
        return sql.SQL(", organization_id"), sql.SQL(", md5(%(seed)s::text || ':org:' || k)::uuid")
    return sql.SQL(""), sql.SQL("")


def _insert_configs(conn: Conn, params: Mapping[str, Any]) -> None:
    col, val = _org_column(conn, "customer_configs")
    conn.execute(
        sql.SQL(
            """
            INSERT INTO public.customer_configs
              (id, customer_id, domain, business_name, woocommerce_url, created_at, updated_at{col})
            SELECT md5(%(seed)s::text || ':config:' || k || ':' || d)::uuid,
                   md5(%(seed)s::text || ':user:' || k || ':1')::uuid,
                   format('shop%%s.org%%s.example', d, k),
                   format('Shop %%s of organization %%s', d, k),
                   format('https://shop%%s.org%%s.example', d, k),
                   %(dep)s::timestamptz - interval '60 days' + (k * 100 + d) * interval '1 minute',
                   %(dep)s::timestamptz - interval '60 days' + (k * 100 + d) * interval '1 minute'
                   {val}
            FROM generate_series(1, %(orgs)s::int) AS k, generate_series(1, %(doms)s::int) AS d
            """
        ).format(col=col, val=val),
        params,
    )
    conn.execute(
        """
        INSERT INTO public.domains (id, domain, customer_config_id, customer_id, created_at)
        SELECT md5(%(seed)s::text || ':domain:' || k || ':' || d)::uuid,
               format('shop%%s.org%%s.example', d, k),
               md5(%(seed)s::text || ':config:' || k || ':' || d)::uuid,
               md5(%(seed)s::text || ':user:' || k || ':1')::uuid,
               %(dep)s::timestamptz - interval '60 days' + (k * 100 + d) * interval '1 minute'
        FROM generate_series(1, %(orgs)s::int) AS k, generate_series(1, %(doms)s::int) AS d
        """,
        params,
    )
    if not _table_exists(conn, "scraper_configs"):
        return
    col, val = _org_column(conn, "scraper_configs")
    conn.execute(
        sql.SQL(
            """
            INSERT INTO public.scraper_configs
              (id, customer_id, domain, settings, created_at, updated_at{col})
            SELECT md5(%(seed)s::text || ':scraper:' || k || ':' || d)::uuid,
                   md5(%(seed)s::text || ':user:' || k || ':1')::uuid,
                   format('shop%%s.org%%s.example', d, k),
                   jsonb_build_object('max_pages', 100 * d, 'schedule', 'daily'),
                   %(dep)s::timestamptz - interval '60 days' + (k * 100 + d) * interval '1 minute',
                   %(dep)s::timestamptz - interval '60 days' + (k * 100 + d) * interval '1 minute'
                   {val}
            FROM generate_series(1, %(orgs)s::int) AS k, generate_series(1, %(doms)s::int) AS d
            """
        ).format(col=col, val=val),
        params,
    )


def _insert_conversations(conn: Conn, params: Mapping[str, Any]) -> None:
    if not params["n"]:
        return
    migrated = _has_column(conn, "conversations", NEW_COLUMN)
    col = sql.SQL(", organization_id") if migrated else sql.SQL("")
    val = sql.SQL(", ds.org_ids[1 + (g.i + %(seed)s::int) %% ds.n]") if migrated else sql.SQL("")
    # One-row CTE of arrays + generate_series: a nested loop that keeps g.i order, so the
    # identity ids follow created_at without a sort.
    conn.execute(
        sql.SQL(
            """
            WITH ds AS (
              SELECT array_agg(md5(%(seed)s::text || ':domain:' || k || ':' || d)::uuid
                               ORDER BY k, d) AS domain_ids,
                     array_agg(md5(%(seed)s::text || ':user:' || k || ':1')::uuid ORDER BY k, d)
                       AS customer_ids,
                     array_agg(md5(%(seed)s::text || ':org:' || k)::uuid ORDER BY k, d) AS org_ids,
                     count(*)::int AS n
              FROM generate_series(1, %(orgs)s::int) AS k, generate_series(1, %(doms)s::int) AS d
            )
            INSERT INTO public.conversations
              (domain_id, customer_id, session_id, status, created_at, updated_at{col})
            SELECT ds.domain_ids[1 + (g.i + %(seed)s::int) %% ds.n],
                   ds.customer_ids[1 + (g.i + %(seed)s::int) %% ds.n],
                   'session-' || g.i,
                   CASE WHEN g.i %% 5 = 0 THEN 'closed' ELSE 'open' END,
                   t.ts, t.ts {val}
            FROM ds
            CROSS JOIN generate_series(1, %(n)s::int) AS g(i)
            CROSS JOIN LATERAL (
              SELECT CASE
                WHEN g.i <= %(pre)s::int THEN
                  %(dep)s::timestamptz
                  - (%(pre)s::int - g.i + 1) * (interval '28 days' / greatest(%(pre)s::int, 1))
                ELSE
                  %(dep)s::timestamptz
                  + (g.i - %(pre)s::int - 1) * (interval '2 days' / greatest(%(post)s::int, 1))
              END AS ts
            ) AS t
            """
        ).format(col=col, val=val),
        params,
    )


def vacuum_analyze(conn: Conn) -> None:
    """VACUUM ANALYZE the app tables (needs an autocommit connection; else ANALYZE only)."""
    verb = sql.SQL("VACUUM (ANALYZE)") if conn.autocommit else sql.SQL("ANALYZE")
    for schema, table in _app_tables(conn):
        conn.execute(sql.SQL("{} {}").format(verb, sql.Identifier(schema, table)))


def _app_tables(conn: Conn) -> list[tuple[str, str]]:
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname IN ('public', 'auth') ORDER BY 1, 2
        """
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


# -- anomalies -------------------------------------------------------------------------------


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
    return [_row_id(r[0]) for r in rows]


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


# -- scenarios -------------------------------------------------------------------------------


def build_scenario(
    conn: Conn,
    name: str,
    *,
    deployed_at: datetime = DEPLOYED_AT,
    extensions: bool = True,
    **populate_args: Any,
) -> Truth:
    """Build a scenario in an empty database and return its truth.

    ``pre_migration``: schema + data (customer_id only). ``healthy``: then the migration
    (backfill via domain / owner membership). ``anomalies``: then ``apply_anomalies``.
    ``extensions``: install pg_stat_statements first. ``populate_args`` go to ``populate``.
    """
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; expected one of {SCENARIOS}")
    if extensions:
        install_extensions(conn)
    load_schema(conn)
    populate(conn, deployed_at=deployed_at, vacuum=False, **populate_args)
    if name != "pre_migration":
        apply_migration(conn)
    if name == "anomalies":
        return apply_anomalies(conn, deployed_at=deployed_at)
    vacuum_analyze(conn)
    return truth(conn, deployed_at=deployed_at)


def apply_anomalies(conn: Conn, *, deployed_at: datetime = DEPLOYED_AT) -> Truth:
    """Turn a healthy database into the ``anomalies`` scenario; returns its truth.

    In this order: conversations get 5 rows missing both columns, 7 orphans (a day before
    deploy) and 4 post-deploy orphans (at ``deployed_at`` + 0..3 s); customer_configs get 1
    row missing both and 2 orphans; ``idx_conversations_organization_id`` is marked invalid
    (still ready); ``idx_customer_configs_organization_id`` is dropped; conversations gains a
    legacy policy next to the new one; customer_configs' new policy is replaced by a legacy
    one; ``scraper_configs`` is dropped. On the default data the result is ``ANOMALY_TRUTH``.
    """
    before = deployed_at - timedelta(days=1)
    conv = ANOMALIES["conversations"]
    cfg = ANOMALIES["customer_configs"]
    add_missing_without_legacy(conn, "conversations", conv["missing_without_legacy"],
                               created_at=before)  # fmt: skip
    add_orphans(conn, "conversations", conv["orphans"], created_at=before)
    add_post_deploy_rows(conn, conv["post_deploy_orphans"], deployed_at)
    add_missing_without_legacy(conn, "customer_configs", cfg["missing_without_legacy"],
                               created_at=before)  # fmt: skip
    add_orphans(conn, "customer_configs", cfg["orphans"], created_at=before)
    invalidate_index(conn, "idx_conversations_organization_id")
    drop_index(conn, "idx_customer_configs_organization_id")
    legacy_policy(conn, "conversations")
    legacy_policy(conn, "customer_configs", replace=True)
    drop_optional_table(conn, "scraper_configs")
    vacuum_analyze(conn)
    log.debug("sample_anomalies_applied")
    return truth(conn, deployed_at=deployed_at)


# -- truth -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexTruth:
    """An expected index as the catalogs see it (all False when it does not exist)."""

    name: str
    exists: bool
    valid: bool
    ready: bool
    covers_new: bool  # organization_id is one of its key columns


@dataclass(frozen=True)
class PolicyTruth:
    """One RLS policy and which columns its USING / WITH CHECK expressions mention."""

    name: str
    command: str
    on_new: bool
    on_legacy: bool


@dataclass(frozen=True)
class TableTruth:
    """The facts about one watched table, computed by plain SQL.

    Counts that need a missing column are None (e.g. everything about organization_id
    before the migration; post-deploy counts without created_at). ``orphan_ids``: the first
    100 orphan primary keys in ascending order. ``backfill_ratio`` = with_new / total (1.0
    for an empty table, None without the new column).
    """

    schema: str
    name: str
    exists: bool
    new_column_present: bool = False
    legacy_column_present: bool = False
    new_column_type: str | None = None
    total: int | None = None
    with_new: int | None = None
    with_legacy: int | None = None
    missing_new: int | None = None
    missing_without_legacy: int | None = None
    orphans: int | None = None
    orphan_ids: tuple[RowId, ...] = ()
    post_deploy_total: int | None = None
    post_deploy_missing: int | None = None
    rls_enabled: bool = False
    policies: tuple[PolicyTruth, ...] = ()
    indexes: Mapping[str, IndexTruth] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def backfill_ratio(self) -> float | None:
        if self.with_new is None or self.total is None:
            return None
        return 1.0 if self.total == 0 else self.with_new / self.total

    @property
    def policies_on_new(self) -> int:
        return sum(p.on_new for p in self.policies)

    @property
    def policies_on_legacy(self) -> int:
        return sum(p.on_legacy for p in self.policies)


@dataclass(frozen=True)
class Truth:
    """The truth about every watched table; ``truth["conversations"]``."""

    deployed_at: datetime
    tables: Mapping[str, TableTruth]

    def __getitem__(self, table: str) -> TableTruth:
        return self.tables[table]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tables)

    def matches(self, expected: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Differences from a mapping shaped like ``ANOMALY_TRUTH`` (empty list = match)."""
        problems: list[str] = []
        for table, facts in expected.items():
            actual = self.tables[table]
            for key, want in facts.items():
                if key == "indexes":
                    for index, index_facts in want.items():
                        got_index = actual.indexes.get(index)
                        for ikey, iwant in index_facts.items():
                            got = getattr(got_index, ikey, None)
                            if got != iwant:
                                problems.append(
                                    f"{table}.indexes.{index}.{ikey}: {got!r} != {iwant!r}"
                                )
                    continue
                got = getattr(actual, key)
                if got != want:
                    problems.append(f"{table}.{key}: {got!r} != {want!r}")
        return problems


_WORD = "\\m{}\\M"


def truth(
    conn: Conn,
    *,
    deployed_at: datetime = DEPLOYED_AT,
    tables: Sequence[str] = WATCHED_TABLES,
    schema: str = SCHEMA,
    created_at_column: str = "created_at",
) -> Truth:
    """Compute the facts the checks must report, with straightforward SQL (no cleverness)."""
    return Truth(
        deployed_at=deployed_at,
        tables={t: _table_truth(conn, schema, t, deployed_at, created_at_column) for t in tables},
    )


def _table_truth(
    conn: Conn, schema: str, table: str, deployed_at: datetime, created_col: str
) -> TableTruth:
    oid_row = conn.execute(
        """
        SELECT c.oid, c.relrowsecurity FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
        """,
        (schema, table),
    ).fetchone()
    if oid_row is None:
        return TableTruth(schema=schema, name=table, exists=False, indexes=_index_truths(
            conn, schema, table, None))  # fmt: skip
    oid, rls_enabled = oid_row
    columns = {
        str(r[0]): str(r[1])
        for r in conn.execute(
            """
            SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
            WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped
            """,
            (oid,),
        ).fetchall()
    }
    has_new = NEW_COLUMN in columns
    has_legacy = LEGACY_COLUMN in columns
    has_created = created_col in columns
    rel = sql.Identifier(schema, table)
    new = sql.Identifier(NEW_COLUMN) if has_new else sql.SQL("NULL::int")
    legacy = sql.Identifier(LEGACY_COLUMN) if has_legacy else sql.SQL("NULL::int")
    created = sql.Identifier(created_col) if has_created else sql.SQL("NULL::timestamptz")
    row = conn.execute(
        sql.SQL(
            """
            SELECT count(*),
                   count({new}),
                   count({legacy}),
                   count(*) FILTER (WHERE {new} IS NULL),
                   count(*) FILTER (WHERE {new} IS NULL AND {legacy} IS NULL),
                   count(*) FILTER (WHERE {new} IS NULL AND {legacy} IS NOT NULL),
                   count(*) FILTER (WHERE {created} >= %(dep)s),
                   count(*) FILTER (WHERE {created} >= %(dep)s AND {new} IS NULL)
            FROM {rel}
            """
        ).format(new=new, legacy=legacy, created=created, rel=rel),
        {"dep": deployed_at},
    ).fetchone()
    assert row is not None
    total, with_new, with_legacy, missing, missing_both, orphans, post_total, post_missing = (
        int(v) for v in row
    )
    orphan_ids: tuple[RowId, ...] = ()
    if has_new and has_legacy:
        orphan_ids = tuple(
            _row_id(r[0])
            for r in conn.execute(
                sql.SQL(
                    "SELECT id FROM {} WHERE {} IS NULL AND {} IS NOT NULL ORDER BY id LIMIT 100"
                ).format(rel, sql.Identifier(NEW_COLUMN), sql.Identifier(LEGACY_COLUMN))
            ).fetchall()
        )
    policies = tuple(
        PolicyTruth(name=str(r[0]), command=str(r[1]), on_new=bool(r[2]), on_legacy=bool(r[3]))
        for r in conn.execute(
            """
            SELECT policyname, cmd,
                   coalesce(qual, '') || ' ' || coalesce(with_check, '') ~ %s,
                   coalesce(qual, '') || ' ' || coalesce(with_check, '') ~ %s
            FROM pg_policies WHERE schemaname = %s AND tablename = %s ORDER BY policyname
            """,
            (_WORD.format(re.escape(NEW_COLUMN)), _WORD.format(re.escape(LEGACY_COLUMN)),
             schema, table),
        ).fetchall()
    )  # fmt: skip
    return TableTruth(
        schema=schema,
        name=table,
        exists=True,
        new_column_present=has_new,
        legacy_column_present=has_legacy,
        new_column_type=columns.get(NEW_COLUMN),
        total=total,
        with_new=with_new if has_new else None,
        with_legacy=with_legacy if has_legacy else None,
        missing_new=missing if has_new else None,
        missing_without_legacy=missing_both if has_new and has_legacy else None,
        orphans=orphans if has_new and has_legacy else None,
        orphan_ids=orphan_ids,
        post_deploy_total=post_total if has_created else None,
        post_deploy_missing=post_missing if has_created and has_new else None,
        rls_enabled=bool(rls_enabled),
        policies=policies,
        indexes=_index_truths(conn, schema, table, oid),
    )


def _index_truths(conn: Conn, schema: str, table: str, oid: int | None) -> dict[str, IndexTruth]:
    result: dict[str, IndexTruth] = {}
    for name in EXPECTED_INDEXES.get(table, ()):
        row = (
            conn.execute(
                """
                SELECT i.indisvalid, i.indisready,
                       EXISTS (
                         SELECT 1 FROM pg_attribute a
                         WHERE a.attrelid = i.indrelid AND a.attname = %s
                           AND a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1]))
                FROM pg_index i
                JOIN pg_class c ON c.oid = i.indexrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = %s AND c.relname = %s AND i.indrelid = %s
                """,
                (NEW_COLUMN, schema, name, oid),
            ).fetchone()
            if oid is not None
            else None
        )
        if row is None:
            result[name] = IndexTruth(name, exists=False, valid=False, ready=False,
                                      covers_new=False)  # fmt: skip
        else:
            result[name] = IndexTruth(name, exists=True, valid=bool(row[0]), ready=bool(row[1]),
                                      covers_new=bool(row[2]))  # fmt: skip
    return result


# -- small helpers ---------------------------------------------------------------------------


def _row_id(value: object) -> RowId:
    return value if isinstance(value, int) else str(value)


def _table_exists(conn: Conn, table: str, schema: str = SCHEMA) -> bool:
    row = conn.execute(
        "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL", (schema, table)
    ).fetchone()
    return bool(row and row[0])


def _has_column(conn: Conn, table: str, column: str, schema: str = SCHEMA) -> bool:
    row = conn.execute(
        """
        SELECT EXISTS (
          SELECT 1 FROM information_schema.columns
          WHERE table_schema = %s AND table_name = %s AND column_name = %s)
        """,
        (schema, table, column),
    ).fetchone()
    return bool(row and row[0])
