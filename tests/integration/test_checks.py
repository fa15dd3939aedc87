"""Every check against the truth of the sample database (real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from migration_watch.config import Config
from migration_watch.db import Database
from migration_watch.demo import sample
from migration_watch.errors import DatabaseError
from migration_watch.results import Result, Status
from migration_watch.runner import Runner

MakeConfig = Callable[..., Config]


def run(cfg: Config) -> dict[tuple[str, str], Result]:
    with Database(cfg.database) as db:
        outcome = Runner(cfg, db).run_once()
        assert outcome is not None
    return {(r.check, r.subject): r for r in outcome.results}


def test_healthy_database_passes_with_true_numbers(db_dsn: str, make_config: MakeConfig) -> None:
    res = run(make_config(db_dsn))
    for (check, subject), r in res.items():
        assert r.status in (Status.PASS,), (check, subject, r.message)
    for table, facts in sample.HEALTHY_TRUTH.items():
        cov = res[("coverage", f"public.{table}")].observed
        assert cov["total"] == facts["total"]
        assert cov["with_new"] == facts["with_new"]
        assert cov["with_legacy"] == facts["with_legacy"]
        assert cov["missing_new"] == 0 and cov["backfill_ratio"] == 1.0
        assert res[("orphans", f"public.{table}")].observed["orphans"] == 0
    post = res[("post_deploy_writes", "public.conversations")]
    assert post.observed == {"post_deploy_missing": 0}
    schema = res[("schema", "public.conversations")].observed
    assert schema["new_column_type"] == "bigint" or schema["new_column_type"]
    assert schema["legacy_column_present"] is True
    assert schema["indexes"]["idx_conversations_organization_id"] == {
        "exists": True,
        "valid": True,
        "ready": True,
        "covers_new": True,
    }
    assert res[("rls", "public.conversations")].observed["policies_on_new"] == 1
    idx = res[("index_usage", "public.conversations.idx_conversations_organization_id")]
    assert isinstance(idx.observed["idx_scan"], int)


def test_anomalies_are_measured_exactly(
    db_dsn: str, pg_conn: psycopg.Connection[Any], make_config: MakeConfig
) -> None:
    truth = sample.apply_anomalies(pg_conn)
    assert truth.matches(sample.ANOMALY_TRUTH) == []
    res = run(make_config(db_dsn))
    conv, cc = truth["conversations"], truth["customer_configs"]

    c = res[("coverage", "public.conversations")]
    assert c.status is Status.FAIL
    assert c.observed == {
        "total": conv.total,
        "with_new": conv.with_new,
        "with_legacy": conv.with_legacy,
        "missing_new": conv.missing_new,
        "backfill_ratio": round(conv.backfill_ratio or 0, 6),
    }
    # The invalid index cannot serve IS NULL: one table scan measured everything.
    assert "table scan" in c.details["missing_counted_via"]
    o = res[("orphans", "public.conversations")]
    assert o.status is Status.FAIL and o.observed["orphans"] == conv.orphans == 11
    # Without a usable index the samples come from the counting pass: oldest and newest orphan.
    assert o.details["sample_ids"] == [min(conv.orphan_ids), max(conv.orphan_ids)]
    p = res[("post_deploy_writes", "public.conversations")]
    assert p.status is Status.FAIL and p.observed["post_deploy_missing"] == conv.post_deploy_missing
    s = res[("schema", "public.conversations")]
    assert s.status is Status.FAIL and "idx_conversations_organization_id is invalid" in s.message
    assert s.observed["indexes"]["idx_conversations_organization_id"]["valid"] is False

    c2 = res[("coverage", "public.customer_configs")]
    assert c2.status is Status.FAIL
    assert (c2.observed["total"], c2.observed["missing_new"]) == (cc.total, cc.missing_new)
    assert res[("orphans", "public.customer_configs")].observed["orphans"] == cc.orphans
    s2 = res[("schema", "public.customer_configs")]
    assert s2.status is Status.FAIL
    assert s2.observed["indexes"]["idx_customer_configs_organization_id"]["exists"] is False
    r2 = res[("rls", "public.customer_configs")]
    assert r2.status is Status.FAIL
    assert r2.observed == {"rls_enabled": True, "policies_on_new": 0, "policies_on_legacy": 1}
    r1 = res[("rls", "public.conversations")]
    assert r1.status is Status.PASS
    assert (r1.observed["policies_on_new"], r1.observed["policies_on_legacy"]) == (1, 1)

    for check in ("coverage", "orphans", "schema"):
        assert res[(check, "public.scraper_configs")].status is Status.SKIPPED
    iu = res[("index_usage", "public.scraper_configs.idx_scraper_configs_organization_id")]
    assert iu.status is Status.SKIPPED


def test_valid_index_counts_by_index_and_partial_index_proves_zero(
    db_dsn: str, pg_conn: psycopg.Connection[Any], make_config: MakeConfig
) -> None:
    sample.add_orphans(pg_conn, "conversations", 3)
    res = run(make_config(db_dsn))
    o = res[("orphans", "public.conversations")]
    assert o.observed["orphans"] == 3
    assert o.details["missing_counted_via"] == "index idx_conversations_organization_id"
    pg_conn.execute("DELETE FROM conversations WHERE organization_id IS NULL")
    pg_conn.execute(
        "CREATE INDEX conv_org_null ON conversations (id) WHERE organization_id IS NULL"
    )
    c = run(make_config(db_dsn))[("coverage", "public.conversations")]
    assert c.observed["missing_new"] == 0
    assert "exact zero proven by the partial index conv_org_null" in c.details["proof"]


def test_estimate_mode_is_flagged(db_dsn: str, make_config: MakeConfig) -> None:
    data_tables: list[dict[str, Any]] = [
        {"name": "conversations", "count": "estimate", "created_at": "created_at"},
    ]
    cfg = make_config(
        db_dsn,
        migration={
            "name": "m",
            "legacy_column": "customer_id",
            "new_column": "organization_id",
            "tables": data_tables,
        },
        checks={"coverage": {"sample_percent": 100}},
    )
    c = run(cfg)[("coverage", "public.conversations")]
    assert c.observed["estimated"] is True
    assert c.observed["total"] == sample.HEALTHY_TRUTH["conversations"]["total"]


def test_missing_required_table_fails_and_missing_optional_is_skipped(
    db_dsn: str, pg_conn: psycopg.Connection[Any], make_config: MakeConfig
) -> None:
    sample.drop_optional_table(pg_conn)
    cfg = make_config(db_dsn)
    tables = [t.model_dump(by_alias=True) for t in cfg.migration.tables]
    tables.append({"name": "not_there"})
    migration = {**cfg.migration.model_dump(by_alias=True, mode="json"), "tables": tables}
    res = run(make_config(db_dsn, migration=migration))
    assert res[("coverage", "public.not_there")].status is Status.FAIL
    assert (
        "required table public.not_there does not exist"
        in res[("coverage", "public.not_there")].message
    )
    assert res[("coverage", "public.scraper_configs")].status is Status.SKIPPED


def test_dropped_legacy_column_fails_schema(
    db_dsn: str, pg_conn: psycopg.Connection[Any], make_config: MakeConfig
) -> None:
    sample.drop_legacy_column(pg_conn, "customer_configs")
    res = run(make_config(db_dsn))
    s = res[("schema", "public.customer_configs")]
    assert s.status is Status.FAIL
    assert s.observed["legacy_column_present"] is False
    assert "rollback path" in s.message
    assert res[("coverage", "public.customer_configs")].observed["with_legacy"] is None


def test_injection_shaped_table_names_are_quoted(
    db_dsn: str, pg_conn: psycopg.Connection[Any], make_config: MakeConfig
) -> None:
    evil = 'conversations"; DROP TABLE conversations; --'
    migration = {
        "name": "m",
        "legacy_column": "customer_id",
        "new_column": "organization_id",
        "tables": [
            {"name": evil, "required": False, "created_at": "x'); DROP TABLE messages; --"},
            {"name": "conversations", "schema": "public; DROP SCHEMA public CASCADE"},
        ],
    }
    res = run(make_config(db_dsn, migration=migration))
    assert res[("coverage", f"public.{evil}")].status is Status.SKIPPED
    assert (
        res[("coverage", "public; DROP SCHEMA public CASCADE.conversations")].status is Status.FAIL
    )
    assert pg_conn.execute("SELECT count(*) FROM conversations").fetchone() == (
        sample.HEALTHY_TRUTH["conversations"]["total"],
    )
    assert pg_conn.execute("SELECT to_regclass('public.messages')").fetchone() != (None,)


def test_sessions_are_read_only_with_timeouts(db_dsn: str, make_config: MakeConfig) -> None:
    cfg = make_config(db_dsn)
    with Database(cfg.database) as db:
        with db.read_only() as cur:
            cur.execute("SHOW transaction_read_only")
            assert cur.fetchone() == {"transaction_read_only": "on"}
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone() == {"statement_timeout": "10s"}
            cur.execute("SHOW lock_timeout")
            assert cur.fetchone() == {"lock_timeout": "1s"}
            cur.execute("SELECT current_setting('application_name') AS a")
            assert cur.fetchone() == {"a": "migration-watch"}
        with pytest.raises(DatabaseError, match="read-only"), db.read_only() as cur:
            cur.execute("DELETE FROM conversations")
        # SET LOCAL semantics: nothing leaks into the next transaction of the pooled session.
        with db.read_only() as cur:
            cur.execute("SELECT current_setting('statement_timeout') AS s")
            assert cur.fetchone() == {"s": "10s"}


def test_statement_timeout_is_an_error_not_a_pass(db_dsn: str, make_config: MakeConfig) -> None:
    cfg = make_config(db_dsn, database={"dsn": db_dsn, "statement_timeout": "50ms"})
    with Database(cfg.database) as db:
        with pytest.raises(DatabaseError) as err, db.read_only() as cur:
            cur.execute("SELECT pg_sleep(1)")
        assert err.value.kind == "timeout"
