"""The runner's view as Prometheus families (no database: a restored run is served)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from migration_watch.config import Config
from migration_watch.db import Database
from migration_watch.exporter import build_registry
from migration_watch.results import Result, Status
from migration_watch.runner import Runner, RunOutcome

T = datetime(2025, 10, 23, 10, 0, tzinfo=UTC)
TABLE = "public.conversations"


def _outcome(*results: Result) -> RunOutcome:
    return RunOutcome(results=results, started_at=T, finished_at=T, duration_seconds=0.25)


def _registry(config: Config, *results: Result):  # type: ignore[no-untyped-def]
    runner = Runner(config, Database(config.database))
    runner.restore(_outcome(*results))
    registry, _ = build_registry(config, runner)
    return registry


def test_table_values_come_from_their_checks(offline_config: Callable[..., Config]) -> None:
    reg = _registry(
        offline_config(),
        Result(
            "coverage",
            TABLE,
            Status.FAIL,
            observed={"total": 10, "missing_new": 3, "backfill_ratio": 0.7},
        ),
        Result("orphans", TABLE, Status.PASS, observed={"orphans": 0}),
        Result("post_deploy_writes", TABLE, Status.FAIL, observed={"post_deploy_missing": 2}),
    )
    assert reg.get_sample_value("migration_watch_table_rows", {"table": TABLE}) == 10
    assert reg.get_sample_value("migration_watch_rows_missing", {"table": TABLE}) == 3
    assert reg.get_sample_value("migration_watch_backfill_ratio", {"table": TABLE}) == 0.7
    assert reg.get_sample_value("migration_watch_rows_orphaned", {"table": TABLE}) == 0
    assert reg.get_sample_value("migration_watch_rows_post_deploy_missing", {"table": TABLE}) == 2
    status = {"check": "coverage", "subject": TABLE}
    assert reg.get_sample_value("migration_watch_check_status", {**status, "status": "fail"}) == 1
    assert reg.get_sample_value("migration_watch_check_status", {**status, "status": "pass"}) == 0


def test_an_errored_check_leaves_its_values_absent(offline_config: Callable[..., Config]) -> None:
    reg = _registry(
        offline_config(),
        Result("coverage", TABLE, Status.ERROR, observed={"total": 10, "missing_new": 3}),
    )
    assert reg.get_sample_value("migration_watch_table_rows", {"table": TABLE}) is None
    assert reg.get_sample_value("migration_watch_rows_missing", {"table": TABLE}) is None
    labels = {"check": "coverage", "subject": TABLE, "status": "error"}
    assert reg.get_sample_value("migration_watch_check_status", labels) == 1


def test_index_rls_and_probe_families(offline_config: Callable[..., Config]) -> None:
    reg = _registry(
        offline_config(),
        Result(
            "schema",
            TABLE,
            Status.FAIL,
            observed={
                "indexes": {
                    "ok_idx": {"exists": True, "valid": True, "ready": True},
                    "bad_idx": {"exists": True, "valid": False, "ready": True},
                }
            },
        ),
        Result(
            "rls",
            TABLE,
            Status.PASS,
            observed={"rls_enabled": True, "policies_on_new": 2, "policies_on_legacy": 1},
        ),
        Result(
            "latency",
            "probe:inbox",
            Status.PASS,
            observed={"median_seconds": 0.004, "baseline_seconds": 0.005},
        ),
    )
    valid = "migration_watch_index_valid"
    assert reg.get_sample_value(valid, {"table": TABLE, "index": "ok_idx"}) == 1
    assert reg.get_sample_value(valid, {"table": TABLE, "index": "bad_idx"}) == 0
    assert reg.get_sample_value("migration_watch_rls_enabled", {"table": TABLE}) == 1
    policies = "migration_watch_rls_policies"
    assert reg.get_sample_value(policies, {"table": TABLE, "column": "new"}) == 2
    assert reg.get_sample_value(policies, {"table": TABLE, "column": "legacy"}) == 1
    assert (
        reg.get_sample_value("migration_watch_probe_latency_seconds", {"probe": "inbox"}) == 0.004
    )
    assert (
        reg.get_sample_value("migration_watch_probe_baseline_seconds", {"probe": "inbox"}) == 0.005
    )


def test_run_timestamps_and_info(offline_config: Callable[..., Config]) -> None:
    reg = _registry(offline_config(), Result("coverage", TABLE, Status.PASS))
    assert reg.get_sample_value("migration_watch_last_run_timestamp_seconds") == T.timestamp()
    assert reg.get_sample_value("migration_watch_run_duration_seconds") == 0.25
    assert reg.get_sample_value("migration_watch_database_up") is None  # never probed
    labels = {"name": "m", "legacy_column": "customer_id", "new_column": "organization_id"}
    assert reg.get_sample_value("migration_watch_migration_info", labels) == 1
    for usage in ("legacy", "new", "both"):
        assert reg.get_sample_value("migration_watch_statement_calls_total", {"usage": usage}) == 0
