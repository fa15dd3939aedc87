"""Baseline and performance (checklist 5.4) on the real database: probe latency against the
baseline and the expected index in the plan, with a deliberately dropped index.

The table is grown to 200,000 conversations over 10,000 organizations (20 rows each, spread
over time) so that the regression is a property of the plan, not timing luck: with
``idx_conversations_organization_id`` the probe reads ~20 rows (a few hundredths of a ms);
without it PostgreSQL must scan the whole table (tens of ms).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import TypeAdapter, ValidationError

from migration_watch.baseline import measure_probe, record_baseline
from migration_watch.checks.latency import run_latency, subjects
from migration_watch.config import Config
from migration_watch.db import Database
from migration_watch.probes import (
    IndexPlanCheckConfig,
    LatencyCheckConfig,
    ProbeConfig,
    Probes,
    check_read_only_sql,
)
from migration_watch.results import Result, Status
from migration_watch.state import SqliteStateStore

MakeConfig = Callable[..., Config]
T0 = datetime(2025, 10, 23, 9, tzinfo=UTC)
INDEX = "idx_conversations_organization_id"
GROWN_ROWS = 200_000
GROWN_ORGS = 10_000
PROBE_SQL = (
    "SELECT id, created_at FROM conversations WHERE organization_id = %(org)s"
    " ORDER BY created_at DESC LIMIT 50"
)


def grow_conversations(conn: psycopg.Connection[Any]) -> str:
    """Add GROWN_ORGS organizations and GROWN_ROWS conversations (round-robin over them, so
    each organization's rows are spread over time); return one organization's id."""
    t = time.perf_counter()
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")  # FKs hold by construction
        conn.execute("SET LOCAL maintenance_work_mem = '64MB'")
        # Bulk load without the secondary indexes, then rebuild them (same definitions).
        rows = conn.execute(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index"
            " WHERE indrelid = 'public.conversations'::regclass AND NOT indisprimary"
        ).fetchall()
        for name, _ in rows:
            conn.execute(f"DROP INDEX {name}")
        conn.execute(
            "INSERT INTO organizations (id, name, slug, created_at)"
            " SELECT md5('grown:org:' || k)::uuid, 'Grown ' || k, 'grown-' || k,"
            "        timestamptz '2025-08-01'"
            " FROM generate_series(1, %s) AS k",
            (GROWN_ORGS,),
        )
        conn.execute(
            "INSERT INTO conversations (organization_id, session_id, created_at, updated_at)"
            " SELECT md5('grown:org:' || (1 + g %% %s))::uuid, 'grown-' || g, ts, ts"
            " FROM generate_series(1, %s) AS g,"
            "      LATERAL (SELECT timestamptz '2025-09-01' + g * interval '10 seconds') AS t(ts)",
            (GROWN_ORGS, GROWN_ROWS),
        )
        for _, definition in rows:
            conn.execute(definition)
    conn.execute("VACUUM (ANALYZE) conversations")
    org = conn.execute("SELECT md5('grown:org:7')::uuid::text").fetchone()
    assert org is not None
    assert time.perf_counter() - t < 10, "growing the table took too long"
    return str(org[0])


def by_check(results: list[Result]) -> dict[str, Result]:
    out = {r.check: r for r in results}
    assert len(out) == len(results), results
    return out


def probe(org: str, **extra: Any) -> ProbeConfig:
    return ProbeConfig.model_validate(
        {
            "name": "conversations_by_org",
            "sql": PROBE_SQL,
            "params": {"org": org},
            "table": "conversations",
            "expect_index": INDEX,
            **extra,
        }
    )


def test_dropped_index_fails_plan_and_latency(
    db_dsn: str, pg_conn: psycopg.Connection[Any], make_config: MakeConfig, tmp_path: Path
) -> None:
    org = grow_conversations(pg_conn)
    # Application traffic before the baseline: it ends up in the statement baseline.
    for _ in range(3):
        pg_conn.execute("SELECT id FROM conversations WHERE customer_id = %s", (org,))
        pg_conn.execute(
            "SELECT count(*) FROM public.conversations WHERE organization_id = %s", (org,)
        )
    pg_conn.execute("SELECT id FROM organizations LIMIT 1")  # not a watched table
    cfg = make_config(db_dsn)
    probes = (probe(org),)

    with Database(cfg.database) as db:
        baseline = record_baseline(db, cfg, probes, T0)
        # Stored and loaded back through the state store, as `baseline record` does.
        with SqliteStateStore(tmp_path / "state.db") as store:
            store.save_baseline(baseline)
            loaded = store.load_baseline()
        assert loaded is not None and loaded == baseline

        pb = loaded.probe("conversations_by_org")
        assert pb is not None and len(pb.timings) == 5 and pb.median_seconds > 0
        assert f"Bitmap Index Scan on {INDEX}" in pb.details["scan_nodes"], pb.details
        assert loaded.details["probe_errors"] == {}
        # Statements on the watched tables, by queryid with calls; ours and others excluded.
        texts = {s.query: s for s in loaded.statements}
        legacy = texts["SELECT id FROM conversations WHERE customer_id = $1"]
        new = texts["SELECT count(*) FROM public.conversations WHERE organization_id = $1"]
        assert legacy.calls == 3 and new.calls == 3 and legacy.mean_exec_seconds > 0
        assert not any("migration-watch" in q or "FROM organizations" in q for q in texts)
        stmt_info = loaded.details["statements"]
        assert stmt_info["available"] is True
        assert stmt_info["usage"][str(legacy.queryid)] == "legacy"
        assert stmt_info["usage"][str(new.queryid)] == "new"

        # With the index: both pass.
        healthy = by_check(run_latency(db, cfg, probes, loaded, T0 + timedelta(hours=1)))
        lat, plan = healthy["latency"], healthy["index_plan"]
        assert lat.status is Status.PASS, lat
        assert plan.status is Status.PASS, plan
        assert plan.observed["uses_index"] is True and plan.observed["seq_scan"] is False
        assert lat.subject == plan.subject == "probe:conversations_by_org"
        assert lat.table == "public.conversations" and lat.measured_at == T0 + timedelta(hours=1)
        assert lat.observed["baseline_seconds"] == pb.median_seconds
        assert lat.observed["executions"] == 5
        assert lat.threshold["max_seconds"] == pytest.approx(pb.median_seconds * 1.1)

        # The index disappears: a Seq Scan, and the latency regresses well above +10%.
        pg_conn.execute(f"DROP INDEX {INDEX}")
        broken = by_check(run_latency(db, cfg, probes, loaded, T0 + timedelta(hours=2)))
        lat, plan = broken["latency"], broken["index_plan"]
        assert plan.status is Status.FAIL, plan
        assert plan.observed["uses_index"] is False and plan.observed["seq_scan"] is True
        assert any("Seq Scan on conversations" in n for n in plan.observed["scan_nodes"])
        assert "Seq Scan on conversations instead of " + INDEX in plan.message
        assert any("Seq Scan on conversations" in line for line in plan.details["plan"])
        assert plan.details["baseline_scan_nodes"] == pb.details["scan_nodes"]
        assert lat.status is Status.FAIL, lat
        assert lat.observed["ratio"] > 1.1
        assert lat.observed["median_seconds"] > pb.median_seconds + 0.001
        assert "above the +10% limit" in lat.message


def test_without_baseline_and_changed_probe(
    db_dsn: str, pg_conn: psycopg.Connection[Any], make_config: MakeConfig
) -> None:
    row = pg_conn.execute("SELECT organization_id FROM conversations LIMIT 1").fetchone()
    assert row is not None
    org = str(row[0])
    cfg = make_config(db_dsn)
    p = probe(org, executions=3, warmup=0)
    with Database(cfg.database) as db:
        results = run_latency(db, cfg, [p], None, T0)
        lat = by_check(results)["latency"]
        assert lat.status is Status.SKIPPED and "no baseline" in lat.message
        assert lat.observed["median_seconds"] > 0 and lat.observed["baseline_seconds"] is None
        assert lat.observed["executions"] == 3

        baseline = record_baseline(db, cfg, [p], T0)
        changed = probe(org, sql=PROBE_SQL.replace("LIMIT 50", "LIMIT 10"), executions=1)
        lat = by_check(run_latency(db, cfg, [changed], baseline, T0))["latency"]
        assert lat.status is Status.SKIPPED and "not comparable" in lat.message

        # Checks switched off: nothing; index_plan alone measures once.
        off = LatencyCheckConfig(enabled=False)
        assert (
            run_latency(
                db,
                cfg,
                [p],
                baseline,
                T0,
                latency=off,
                index_plan=IndexPlanCheckConfig(enabled=False),
            )
            == []
        )
        only_plan = run_latency(db, cfg, [p], baseline, T0, latency=off)
        assert [r.check for r in only_plan] == ["index_plan"]
        assert subjects(cfg, [p], latency=off) == [("index_plan", "probe:conversations_by_org")]


def test_probe_errors_are_contained(db_dsn: str, make_config: MakeConfig) -> None:
    cfg = make_config(db_dsn)
    bad_table = ProbeConfig(name="missing", sql="SELECT * FROM no_such_table")
    # Passes the validator (a SELECT) but writes: the READ ONLY transaction refuses it.
    writes = ProbeConfig(name="writes", sql="SELECT nextval('conversations_id_seq')")
    good = ProbeConfig(name="ok", sql="SELECT count(*) FROM customer_configs", executions=1)
    with Database(cfg.database) as db:
        baseline = record_baseline(db, cfg, [bad_table, writes, good], T0)
        assert [p.name for p in baseline.probes] == ["ok"]
        assert "no_such_table" in baseline.details["probe_errors"]["missing"]
        assert "read-only transaction" in baseline.details["probe_errors"]["writes"]
        results = run_latency(db, cfg, [bad_table, writes, good], baseline, T0)
    status = {(r.subject, r.check): r.status for r in results}
    assert status == {
        ("probe:missing", "latency"): Status.ERROR,
        ("probe:writes", "latency"): Status.ERROR,
        ("probe:ok", "latency"): Status.PASS,
    }


def test_unreachable_database_errors_every_probe_once(make_config: MakeConfig) -> None:
    cfg = make_config("host=127.0.0.1 port=1 dbname=x user=x connect_timeout=1")
    cfg = cfg.model_copy(
        update={
            "database": cfg.database.model_copy(update={"connect_timeout": timedelta(seconds=1)})
        }
    )
    probes = [ProbeConfig(name=f"p{i}", sql="SELECT 1", expect_index="i") for i in range(3)]
    start = time.perf_counter()
    with Database(cfg.database) as db:
        results = run_latency(db, cfg, probes, None, T0)
    assert time.perf_counter() - start < 6  # one connection wait, not three
    assert len(results) == 6 and all(r.status is Status.ERROR for r in results)
    assert all("unreachable" in r.message or "refused" in r.message for r in results)


# --------------------------------------------------------------------------- probe config


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("UPDATE conversations SET status = 'x'", "not UPDATE"),
        ("SELECT 1; SELECT 2", "only one statement"),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "DELETE is not allowed"),
        ("SELECT * INTO copy FROM conversations", "INTO is not allowed"),
        ("SELECT * FROM conversations FOR UPDATE", "locking clauses"),
        ("SELECT 'unterminated", "unterminated string"),
        ("-- nothing", "empty statement"),
    ],
)
def test_probe_sql_rejected(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        check_read_only_sql(text)


def test_probe_sql_accepted() -> None:
    assert check_read_only_sql("select 1; -- trailing") == "select 1"
    assert check_read_only_sql("WITH x AS (SELECT 1) SELECT * FROM x")
    assert check_read_only_sql("(VALUES (1)) UNION TABLE t")
    assert check_read_only_sql(
        "SELECT 'a;update', \"delete\", $q$ ; insert $q$, E'\\'; drop' /* ; */ FROM t"
    )


def test_probe_config_validation() -> None:
    def problems(data: Any) -> list[str]:
        with pytest.raises(ValidationError) as info:
            TypeAdapter(Probes).validate_python(data)
        return [e["msg"] for e in info.value.errors()]

    ok = {"name": "p", "sql": "SELECT %(a)s, 'x%%'", "params": {"a": [1, 2]}}
    (p,) = TypeAdapter(Probes).validate_python([ok])
    assert p.executions == 5 and p.warmup == 1 and p.subject == "probe:p"
    assert problems([ok, ok]) == ["Value error, probe 'p' is listed twice"]
    assert "params has no 'b'" in problems([{**ok, "sql": "SELECT %(b)s"}])[0]
    assert "not used in sql" in problems([{**ok, "sql": "SELECT 1"}])[0]
    assert "named placeholders" in problems([{**ok, "sql": "SELECT %s"}])[0]
    assert problems([{**ok, "extra": 1}]) == ["Extra inputs are not permitted"]
    assert problems([{**ok, "executions": 0}])[0].startswith("Input should be greater")
    assert "DELETE" in problems([{**ok, "sql": "DELETE FROM t"}])[0]


def test_measure_probe_binds_parameters(db_dsn: str, make_config: MakeConfig) -> None:
    cfg = make_config(db_dsn)
    p = ProbeConfig(
        name="arr",
        sql="SELECT count(*) FROM conversations WHERE id = ANY(%(ids)s)"
        " AND status LIKE 'o%%' AND metadata @> '{}'::jsonb",
        params={"ids": [1, 2, 3]},
        executions=3,
        warmup=2,
    )
    with Database(cfg.database) as db:
        m = measure_probe(db, p)
    assert m.executions == 3 and m.warmup == 2 and len(m.planning) == 3
    assert m.median_seconds == sorted(m.timings)[1]
    top = m.plan[0]["Plan"]
    assert top["Node Type"] == "Aggregate" and top["Actual Rows"] == 1
