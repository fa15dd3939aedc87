"""schema / index_usage judged from a catalog entry (no database)."""

from __future__ import annotations

from typing import Any

from migration_watch.checks.catalog import IndexInfo, TableInfo
from migration_watch.checks.schema import judge_schema, subjects
from migration_watch.config import Config, parse_config
from migration_watch.results import Result, Status

NEW, LEGACY = "organization_id", "customer_id"
Q = "public.conversations"
GOOD = IndexInfo("idx_new", valid=True, ready=True, keys=(3,), predicate=None, idx_scan=42)


def config(checks: dict[str, Any] | None = None, indexes: tuple[str, ...] = ("idx_new",)) -> Config:
    return parse_config(
        {
            "database": {"dsn": "postgresql://mw:pw@127.0.0.1/app"},
            "migration": {
                "name": "m",
                "legacy_column": LEGACY,
                "new_column": NEW,
                "tables": [{"name": "conversations", "indexes": list(indexes)}],
            },
            "checks": checks or {},
        },
        env={},
    )


def info(cfg: Config, **over: Any) -> TableInfo:
    fields: dict[str, Any] = {
        "table": cfg.migration.tables[0],
        "exists": True,
        "columns": {"id": "uuid", LEGACY: "uuid", NEW: "bigint"},
        "attnums": {"id": 1, LEGACY: 2, NEW: 3},
        "indexes": {"idx_new": GOOD},
    }
    fields.update(over)
    return TableInfo(**fields)


def by_subject(results: list[Result]) -> dict[str, Result]:
    return {r.subject: r for r in results}


def test_everything_in_place_passes() -> None:
    cfg = config()
    res = by_subject(judge_schema(cfg, info(cfg)))
    s = res[Q]
    assert s.status is Status.PASS
    assert s.message == f"{NEW} (bigint) and 1 expected index(es) in place"
    assert s.observed == {
        "new_column_type": "bigint",
        "legacy_column_present": True,
        "indexes": {"idx_new": {"exists": True, "valid": True, "ready": True, "covers_new": True}},
    }
    assert s.threshold == {"indexes": ["idx_new"], "legacy_column_required": True}
    assert s.details == {}
    u = res[f"{Q}.idx_new"]
    assert (u.check, u.status, u.table) == ("index_usage", Status.PASS, Q)
    assert u.observed == {"idx_scan": 42, "valid": True} and u.details == {"index": "idx_new"}
    assert u.message == "42 scans of idx_new since statistics reset"


def test_each_index_problem_is_named_in_order() -> None:
    cfg = config(indexes=("idx_bad", "idx_missing"))
    bad = IndexInfo("idx_bad", valid=False, ready=False, keys=(1,), predicate=None, idx_scan=None)
    res = by_subject(judge_schema(cfg, info(cfg, indexes={"idx_bad": bad})))
    s = res[Q]
    assert s.status is Status.FAIL
    problems = [
        "index idx_bad is invalid",
        "index idx_bad is not ready",
        f"index idx_bad does not cover {NEW}",
        "index idx_missing does not exist",
    ]
    assert s.details == {"problems": problems} and s.message == "; ".join(problems)
    assert s.observed["indexes"]["idx_missing"] == dict.fromkeys(
        ("exists", "valid", "ready", "covers_new"), False
    )
    # index_usage: an existing index always passes (usage is reported, not judged) ...
    used = res[f"{Q}.idx_bad"]
    assert (
        used.status is Status.PASS and used.message == "0 scans of idx_bad since statistics reset"
    )
    # ... a missing one is skipped.
    gone = res[f"{Q}.idx_missing"]
    assert gone.status is Status.SKIPPED and gone.message == "index idx_missing does not exist"
    assert gone.details == {"index": "idx_missing"} and gone.observed == {}


def test_columns_come_first_and_legacy_requirement_is_configurable() -> None:
    cfg = config()
    no_cols = info(cfg, columns={"id": "uuid"}, attnums={"id": 1})
    s = by_subject(judge_schema(cfg, no_cols))[Q]
    assert s.status is Status.FAIL
    assert s.details["problems"][:2] == [
        f"legacy column {LEGACY} was dropped (it is the rollback path)",
        f"column {NEW} is missing",
    ]
    assert s.observed["new_column_type"] is None and s.observed["legacy_column_present"] is False
    relaxed = config({"schema": {"require_legacy_column": False}})
    dropped = info(relaxed, columns={"id": "uuid", NEW: "bigint"})
    r = by_subject(judge_schema(relaxed, dropped))[Q]
    assert r.status is Status.PASS and r.threshold["legacy_column_required"] is False


def test_disabled_checks_and_absent_table() -> None:
    cfg = config({"index_usage": {"enabled": False}})
    assert [r.check for r in judge_schema(cfg, info(cfg))] == ["schema"]
    assert subjects(cfg, cfg.migration.tables[0]) == [("schema", Q)]
    only_usage = config({"schema": {"enabled": False}})
    assert [r.check for r in judge_schema(only_usage, info(only_usage))] == ["index_usage"]
    absent = judge_schema(cfg, TableInfo(table=cfg.migration.tables[0], exists=False))
    assert [(r.check, r.status) for r in absent] == [("schema", Status.FAIL)]
