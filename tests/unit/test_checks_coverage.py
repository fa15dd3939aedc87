"""coverage / orphans / post_deploy_writes: the plan and the judge, without a database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from migration_watch.checks.catalog import IndexInfo, TableInfo
from migration_watch.checks.coverage import (
    CoverageCounts,
    CoveragePlan,
    judge_coverage,
    plan_coverage,
    subjects,
    unmeasurable,
    use_estimate,
)
from migration_watch.config import Config, parse_config
from migration_watch.results import Result, Status

T0 = datetime(2025, 10, 23, 9, tzinfo=UTC)
NEW, LEGACY = "organization_id", "customer_id"
# attnums: id 1, customer_id 2, organization_id 3, created_at 4
COLUMNS = {"id": "uuid", LEGACY: "uuid", NEW: "uuid", "created_at": "timestamp with time zone"}
ATTNUMS = {"id": 1, LEGACY: 2, NEW: 3, "created_at": 4}
PLAIN = IndexInfo("idx_new", valid=True, ready=True, keys=(3,), predicate=None, idx_scan=7)
PARTIAL = IndexInfo(
    "idx_new_null", valid=True, ready=True, keys=(1,), predicate=f"({NEW} IS NULL)", idx_scan=0
)


def config(checks: dict[str, Any] | None = None, **table: Any) -> Config:
    return parse_config(
        {
            "database": {"dsn": "postgresql://mw:pw@127.0.0.1/app"},
            "migration": {
                "name": "m",
                "legacy_column": LEGACY,
                "new_column": NEW,
                "tables": [{"name": "conversations", "created_at": "created_at", **table}],
            },
            "checks": checks or {},
        },
        env={},
    )


def info(cfg: Config, **over: Any) -> TableInfo:
    fields: dict[str, Any] = {
        "table": cfg.migration.tables[0],
        "exists": True,
        "oid": 1,
        "reltuples": 1000.0,
        "columns": dict(COLUMNS),
        "attnums": dict(ATTNUMS),
        "primary_key": "id",
        "indexes": {},
    }
    fields.update(over)
    return TableInfo(**fields)


def counts(**over: Any) -> CoverageCounts:
    fields: dict[str, Any] = {
        "total": 10,
        "with_legacy": 10,
        "missing": 0,
        "orphans": 0,
        "post_deploy_missing": 0,
        "nulls_in_counting_pass": True,
    }
    fields.update(over)
    return CoverageCounts(**fields)


def judge(
    cfg: Config, ti: TableInfo, n: CoverageCounts, deployed: datetime | None = T0
) -> dict[str, Result]:
    plan = plan_coverage(cfg, ti, deployed)
    return {r.check: r for r in judge_coverage(cfg, ti, plan, n)}


# --------------------------------------------------------------------------- plan


@pytest.mark.parametrize(
    ("mode", "reltuples", "expected"),
    [
        ("exact", 1e12, False),
        ("estimate", 0.0, True),
        ("auto", 99.0, False),  # one below auto_exact_below_rows
        ("auto", 100.0, True),  # exactly at it: estimate
        ("auto", 101.0, True),
        ("auto", -1.0, False),  # never analyzed
    ],
)
def test_use_estimate_edges(mode: str, reltuples: float, expected: bool) -> None:
    cfg = config({"coverage": {"auto_exact_below_rows": 100}}, count=mode)
    assert use_estimate(cfg, info(cfg, reltuples=reltuples)) is expected


def test_plan_samples_only_when_estimating() -> None:
    cfg = config({"coverage": {"sample_percent": 2.5}}, count="estimate")
    assert plan_coverage(cfg, info(cfg), T0).sample_percent == 2.5
    exact = config({"coverage": {"sample_percent": 2.5}})
    assert plan_coverage(exact, info(exact), T0).sample_percent is None


def test_plan_prefers_the_partial_null_index_and_measures_post_deploy_only_with_t0() -> None:
    cfg = config()
    ti = info(cfg, indexes={"idx_new": PLAIN, "idx_new_null": PARTIAL})
    plan = plan_coverage(cfg, ti, T0)
    assert plan.null_index == PARTIAL
    assert plan.post_measured and plan.created_at == "created_at" and plan.deployed_at == T0
    assert plan.has_legacy and plan.wants_orphan_ids and plan.primary_key_is_uuid
    unknown = plan_coverage(cfg, ti, None)
    assert not unknown.post_measured and unknown.created_at is None
    no_col = info(cfg, columns={k: v for k, v in COLUMNS.items() if k != "created_at"})
    assert not plan_coverage(cfg, no_col, T0).post_measured
    off = config({"post_deploy_writes": {"enabled": False}})
    assert not plan_coverage(off, info(off), T0).post_measured


def test_plan_skips_orphan_ids_without_a_key_legacy_or_sample_size() -> None:
    cfg = config()
    assert not plan_coverage(cfg, info(cfg, primary_key=None), T0).wants_orphan_ids
    no_legacy = info(cfg, columns={k: v for k, v in COLUMNS.items() if k != LEGACY})
    plan = plan_coverage(cfg, no_legacy, T0)
    assert not plan.has_legacy and not plan.wants_orphan_ids
    zero = config({"orphans": {"sample_size": 0}})
    assert not plan_coverage(zero, info(zero), T0).wants_orphan_ids


def test_invalid_index_does_not_serve_is_null() -> None:
    cfg = config()
    broken = IndexInfo("idx_new", valid=False, ready=True, keys=(3,), predicate=None, idx_scan=0)
    assert plan_coverage(cfg, info(cfg, indexes={"idx_new": broken}), T0).null_index is None


def test_subjects_follow_the_enabled_checks() -> None:
    cfg = config()
    t = cfg.migration.tables[0]
    q = "public.conversations"
    assert subjects(cfg, t) == [("coverage", q), ("orphans", q), ("post_deploy_writes", q)]
    off = config({"coverage": {"enabled": False}, "orphans": {"enabled": False}})
    assert subjects(off, off.migration.tables[0]) == [("post_deploy_writes", q)]
    no_created = config(created_at=None)
    assert subjects(no_created, no_created.migration.tables[0]) == [("coverage", q), ("orphans", q)]


# --------------------------------------------------------------------------- unmeasurable


def test_unmeasurable_tables() -> None:
    cfg = config()
    assert unmeasurable(cfg, info(cfg)) is None
    absent = unmeasurable(cfg, TableInfo(table=cfg.migration.tables[0], exists=False))
    assert absent is not None and [r.status for r in absent] == [Status.FAIL] * 3
    assert absent[0].message == "required table public.conversations does not exist"
    opt = config(required=False)
    skipped = unmeasurable(opt, TableInfo(table=opt.migration.tables[0], exists=False))
    assert skipped is not None and {r.status for r in skipped} == {Status.SKIPPED}
    assert skipped[0].message == "optional table public.conversations does not exist"
    no_new = unmeasurable(cfg, info(cfg, columns={"id": "uuid"}))
    assert no_new is not None and {r.status for r in no_new} == {Status.FAIL}
    assert no_new[0].message == f"column {NEW} is missing from public.conversations"
    hidden = unmeasurable(cfg, info(cfg, rls_hides_rows="RLS hides rows"))
    assert hidden is not None
    assert [(r.check, r.status, r.message, r.table) for r in hidden] == [
        (c, Status.ERROR, "RLS hides rows", "public.conversations")
        for c in ("coverage", "orphans", "post_deploy_writes")
    ]


# --------------------------------------------------------------------------- judge


@pytest.mark.parametrize(
    ("missing", "limit", "status"),
    [(0, 0, Status.PASS), (1, 0, Status.FAIL), (3, 3, Status.PASS), (4, 3, Status.FAIL)],
)
def test_coverage_threshold_edges(missing: int, limit: int, status: Status) -> None:
    cfg = config({"coverage": {"max_missing": limit}})
    r = judge(cfg, info(cfg), counts(total=10, missing=missing))["coverage"]
    assert r.status is status
    assert r.threshold == {"max_missing": limit}
    assert r.observed["missing_new"] == missing and r.observed["with_new"] == 10 - missing


def test_coverage_numbers_and_messages() -> None:
    cfg = config()
    ok = judge(cfg, info(cfg), counts(total=10, with_legacy=8))["coverage"]
    assert ok.observed == {
        "total": 10,
        "with_new": 10,
        "with_legacy": 8,
        "missing_new": 0,
        "backfill_ratio": 1.0,
    }
    assert ok.message == f"all 10 rows have {NEW}" and ok.table == "public.conversations"
    bad = judge(cfg, info(cfg), counts(total=3, missing=1))["coverage"]
    assert bad.observed["backfill_ratio"] == 0.666667
    assert bad.message == f"1 of 3 rows lack {NEW} (backfill 66.67%)"
    empty = judge(cfg, info(cfg), counts(total=0, with_legacy=0))["coverage"]
    assert empty.observed["backfill_ratio"] == 1.0 and empty.status is Status.PASS
    # More missing than counted (rows added between passes): never a negative with_new.
    odd = judge(cfg, info(cfg), counts(total=2, missing=3))["coverage"]
    assert odd.observed["with_new"] == 0 and odd.observed["backfill_ratio"] == 0.0


def test_sampled_table_scan_scales_every_count_by_100_over_percent() -> None:
    cfg = config({"coverage": {"sample_percent": 25.0}}, count="estimate")
    n = counts(total=50, with_legacy=40, missing=3, orphans=2, post_deploy_missing=1)
    res = judge(cfg, info(cfg), n)
    cov = res["coverage"]
    assert cov.observed == {
        "total": 200,
        "with_new": 188,
        "with_legacy": 160,
        "missing_new": 12,
        "backfill_ratio": 0.94,
        "estimated": True,
    }
    assert cov.message == f"12 of 200 rows lack {NEW} (backfill 94.00%) (estimated)"
    assert cov.details == {
        "missing_counted_via": "table scan (no valid index on the new column)",
        "estimated": True,
        "sample_percent": 25.0,
    }
    assert res["orphans"].observed == {"orphans": 8, "estimated": True}
    assert res["post_deploy_writes"].observed == {"post_deploy_missing": 4, "estimated": True}


def test_sampled_counts_round_to_whole_rows() -> None:
    cfg = config({"coverage": {"sample_percent": 3.0}}, count="estimate")
    cov = judge(cfg, info(cfg), counts(total=7, with_legacy=None, missing=1))["coverage"]
    assert cov.observed["total"] == 233  # 7 * 100 / 3 = 233.33
    assert cov.observed["missing_new"] == 33
    assert cov.observed["with_legacy"] is None


def test_sampled_totals_with_exact_null_counts_by_index() -> None:
    cfg = config({"coverage": {"sample_percent": 10.0}}, count="estimate")
    ti = info(cfg, indexes={"idx_new": PLAIN})
    n = counts(total=100, with_legacy=90, missing=5, orphans=4, nulls_in_counting_pass=False)
    res = judge(cfg, ti, n)
    cov = res["coverage"]
    assert cov.observed["total"] == 1000 and cov.observed["with_legacy"] == 900
    assert cov.observed["missing_new"] == 5 and cov.observed["estimated"] is True
    assert cov.message == f"5 of 1000 rows lack {NEW} (backfill 99.50%)"  # no "(estimated)"
    assert cov.details["missing_counted_via"] == "index idx_new"
    assert res["orphans"].observed == {"orphans": 4}
    assert res["post_deploy_writes"].observed == {"post_deploy_missing": 0}


def test_exact_counts_are_not_scaled() -> None:
    cfg = config({"coverage": {"sample_percent": 10.0}})
    res = judge(cfg, info(cfg), counts(total=10, missing=2, orphans=1))
    assert res["coverage"].observed["total"] == 10 and res["coverage"].observed["missing_new"] == 2
    assert "estimated" not in res["coverage"].observed
    assert "estimated" not in res["coverage"].details
    assert res["orphans"].observed == {"orphans": 1}


def test_partial_index_proves_an_exact_zero_only() -> None:
    cfg = config()
    ti = info(cfg, indexes={"idx_new_null": PARTIAL})
    zero = judge(cfg, ti, counts(nulls_in_counting_pass=False))["coverage"]
    assert zero.details == {
        "missing_counted_via": f"partial index idx_new_null (({NEW} IS NULL))",
        "proof": f"exact zero proven by the partial index idx_new_null WHERE ({NEW} IS NULL)",
    }
    some = judge(cfg, ti, counts(missing=1, nulls_in_counting_pass=False))["coverage"]
    assert "proof" not in some.details


@pytest.mark.parametrize(
    ("orphans", "limit", "status"),
    [(0, 0, Status.PASS), (1, 0, Status.FAIL), (2, 2, Status.PASS), (3, 2, Status.FAIL)],
)
def test_orphans_threshold_edges(orphans: int, limit: int, status: Status) -> None:
    cfg = config({"orphans": {"max_orphans": limit}})
    n = counts(missing=orphans, orphans=orphans, sample_ids=("a", "b"))
    r = judge(cfg, info(cfg), n)["orphans"]
    assert r.status is status and r.observed == {"orphans": orphans}
    assert r.threshold == {"max_orphans": limit}
    assert r.details["sample_ids"] == ["a", "b"]
    expected = "no orphaned rows" if orphans == 0 else f"{orphans} rows have {LEGACY} but no {NEW}"
    assert r.message == expected


@pytest.mark.parametrize(
    ("post", "limit", "status"),
    [(0, 0, Status.PASS), (1, 0, Status.FAIL), (5, 5, Status.PASS), (6, 5, Status.FAIL)],
)
def test_post_deploy_threshold_edges(post: int, limit: int, status: Status) -> None:
    cfg = config({"post_deploy_writes": {"max_missing": limit}})
    r = judge(cfg, info(cfg), counts(missing=post, post_deploy_missing=post))["post_deploy_writes"]
    assert r.status is status and r.observed == {"post_deploy_missing": post}
    assert r.threshold == {"max_missing": limit}
    assert r.details["deployed_at"] == T0.isoformat()
    if post == 0:
        assert r.message == f"no rows written since {T0.isoformat()} lack {NEW}"
    else:
        assert r.message == (
            f"{post} rows written since {T0.isoformat()} lack {NEW}:"
            f" a code path still writes only {LEGACY}"
        )


def test_post_deploy_unknown_t0_is_skipped_and_missing_column_an_error() -> None:
    cfg = config()
    skipped = judge(cfg, info(cfg), counts(post_deploy_missing=None), deployed=None)
    r = skipped["post_deploy_writes"]
    assert r.status is Status.SKIPPED
    assert r.message == "deployment time unknown (set migration.deployed_at)"
    no_col = info(cfg, columns={k: v for k, v in COLUMNS.items() if k != "created_at"})
    err = judge(cfg, no_col, counts(post_deploy_missing=None))["post_deploy_writes"]
    assert err.status is Status.ERROR
    assert err.message == "column created_at (created_at) not found in public.conversations"
    # The other two are still judged.
    assert skipped["coverage"].status is Status.PASS


def test_disabled_checks_give_no_result() -> None:
    cfg = config({"orphans": {"enabled": False}, "post_deploy_writes": {"enabled": False}})
    assert list(judge(cfg, info(cfg), counts())) == ["coverage"]
    plan: CoveragePlan = plan_coverage(cfg, info(cfg), T0)
    assert not plan.post_measured
