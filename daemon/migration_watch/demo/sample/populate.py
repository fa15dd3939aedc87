"""Deterministic, server-side data for the app schema (:func:`populate`) and VACUUM ANALYZE."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import structlog
from psycopg import sql

from .catalog import Conn, has_column, table_exists
from .facts import DEPLOYED_AT, NEW_COLUMN, SCHEMA

__all__ = [
    "populate",
    "vacuum_analyze",
]

log = structlog.get_logger(__name__)


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
    if has_column(conn, table, NEW_COLUMN):
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
    if not table_exists(conn, "scraper_configs"):
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
    migrated = has_column(conn, "conversations", NEW_COLUMN)
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
