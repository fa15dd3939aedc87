"""The README's least-privilege role is enough for every check (and pg_monitor is not needed)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from migration_watch.config import Config
from migration_watch.db import Database
from migration_watch.results import Status
from migration_watch.runner import Runner

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_grants() -> str:
    text = README.read_text()
    m = re.search(r"<!-- least-privilege -->\s*```sql\n(.*?)```", text, re.S)
    assert m, "README has no least-privilege SQL block"
    return m.group(1)


def test_readme_role_runs_every_check(
    pg_conn: psycopg.Connection[Any],
    db_name: str,
    make_config: Callable[..., Config],
) -> None:
    statements = readme_grants()
    assert "pg_monitor" not in statements.replace("-- not pg_monitor", "")
    statements = statements.replace("change-me", "lp-secret-1")
    pg_conn.execute("DROP ROLE IF EXISTS migration_watch")
    pg_conn.execute(statements)
    try:
        pg_conn.execute("SELECT id FROM conversations WHERE customer_id IS NOT NULL LIMIT 1")
        dsn = (
            f"host={pg_conn.info.host} port={pg_conn.info.port} dbname={db_name}"
            " user=migration_watch password=lp-secret-1"
        )
        cfg = make_config(dsn)
        with Database(cfg.database) as db:
            outcome = Runner(cfg, db).run_once()
        assert outcome is not None
        bad = [
            (r.check, r.subject, r.message) for r in outcome.results if r.status is not Status.PASS
        ]
        assert bad == []
        ratio = next(r for r in outcome.results if r.check == "query_ratio")
        assert ratio.observed["legacy"] >= 1
        member = pg_conn.execute(
            "SELECT pg_has_role('migration_watch', 'pg_stat_scan_tables', 'MEMBER')"
        ).fetchone()
        assert member == (False,)
    finally:
        pg_conn.execute("DROP OWNED BY migration_watch")
        pg_conn.execute("DROP ROLE migration_watch")


def test_rls_hiding_rows_is_an_error_not_a_pass(
    pg_conn: psycopg.Connection[Any],
    db_name: str,
    make_config: Callable[..., Config],
) -> None:
    pg_conn.execute("DROP ROLE IF EXISTS mw_hidden")
    pg_conn.execute("CREATE ROLE mw_hidden LOGIN PASSWORD 'hidden-pw'")
    pg_conn.execute("GRANT pg_read_all_stats TO mw_hidden")
    pg_conn.execute("GRANT USAGE ON SCHEMA public, extensions TO mw_hidden")
    pg_conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO mw_hidden")
    try:
        dsn = (
            f"host={pg_conn.info.host} port={pg_conn.info.port} dbname={db_name}"
            " user=mw_hidden password=hidden-pw"
        )
        cfg = make_config(dsn)
        with Database(cfg.database) as db:
            outcome = Runner(cfg, db).run_once()
        assert outcome is not None
        cov = next(
            r
            for r in outcome.results
            if r.check == "coverage" and r.subject == "public.conversations"
        )
        assert cov.status is Status.ERROR
        assert "hides rows from role mw_hidden" in cov.message
    finally:
        pg_conn.execute("DROP OWNED BY mw_hidden")
        pg_conn.execute("DROP ROLE mw_hidden")
