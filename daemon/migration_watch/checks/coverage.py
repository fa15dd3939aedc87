"""``coverage``, ``orphans`` and ``post_deploy_writes``: the checklist's Phase 5.1 queries.

One measurement per table feeds the three checks, at the cheapest plan the catalogs allow:

* a valid index makes ``new IS NULL`` an index scan: the missing / orphan / post-deploy counts
  come from ``... WHERE new IS NULL`` (exact, cheap while few rows are missing; a partial index
  ``WHERE new IS NULL`` proves an exact zero without touching the table), and the totals from one
  ``count(*), count(legacy)`` pass;
* without one, a single scan with ``FILTER`` aggregates measures everything at once.

``count: estimate`` (or ``auto`` above ``auto_exact_below_rows``) replaces the full pass by a
``TABLESAMPLE SYSTEM`` sample scaled up, flagged ``estimated: true``; the ``IS NULL`` counts stay
exact whenever an index serves them.

Three parts: :func:`plan_coverage` (pure: config + catalog → what to count and how),
:func:`measure_coverage` (the SQL: the counts as PostgreSQL returns them, sampled or not) and
:func:`judge_coverage` (pure: counts + thresholds → results, scaling sampled counts up).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.rows import DictRow

from ..config import Config, TableConfig
from ..db import tagged
from ..results import Result
from .catalog import IndexInfo, TableInfo, absent_results

if TYPE_CHECKING:
    from .suite import CheckContext

__all__ = [
    "CoverageCounts",
    "CoveragePlan",
    "judge_coverage",
    "measure_coverage",
    "plan_coverage",
    "run",
    "subjects",
    "unmeasurable",
    "use_estimate",
]


def subjects(cfg: Config, table: TableConfig) -> list[tuple[str, str]]:
    c = cfg.checks
    out: list[tuple[str, str]] = []
    if c.coverage.enabled:
        out.append(("coverage", table.qualified))
    if c.orphans.enabled:
        out.append(("orphans", table.qualified))
    if c.post_deploy_writes.enabled and table.created_at:
        out.append(("post_deploy_writes", table.qualified))
    return out


def run(ctx: CheckContext, info: TableInfo) -> list[Result]:
    """The three checks of one table: plan, measure in one read-only transaction, judge."""
    blocked = unmeasurable(ctx.config, info)
    if blocked is not None:
        return blocked
    plan = plan_coverage(ctx.config, info, ctx.deployed_at)
    with ctx.db.read_only() as cur:
        counts = measure_coverage(cur, plan)
    return judge_coverage(ctx.config, info, plan, counts)


# --------------------------------------------------------------------------- plan (pure)


def unmeasurable(cfg: Config, info: TableInfo) -> list[Result] | None:
    """The results when the table cannot be counted at all (absent, no new column, rows hidden
    from this role), else ``None``."""
    t = info.table
    m = cfg.migration
    if not info.exists:
        return absent_results(
            info, subjects(cfg, t), f"required table {t.qualified} does not exist"
        )
    if not info.has(m.new_column):
        return absent_results(
            info, subjects(cfg, t), f"column {m.new_column} is missing from {t.qualified}"
        )
    if info.rls_hides_rows:
        reason = info.rls_hides_rows
        return [Result.errored(c, s, reason=reason, table=t.qualified) for c, s in subjects(cfg, t)]
    return None


def use_estimate(cfg: Config, info: TableInfo) -> bool:
    """Count a ``TABLESAMPLE`` instead of every row: ``count: estimate``, or ``auto`` once the
    planner's row estimate reaches ``auto_exact_below_rows``."""
    mode = info.table.count
    if mode == "exact":
        return False
    if mode == "estimate":
        return True
    return info.reltuples >= cfg.checks.coverage.auto_exact_below_rows


@dataclass(frozen=True)
class CoveragePlan:
    """What to count on one table, and how (decided from the config and the catalogs)."""

    schema: str
    table: str
    new_column: str
    legacy_column: str
    #: The legacy column exists (else ``with_legacy`` is not measured and there are no orphans).
    has_legacy: bool
    #: The ``created_at`` column to compare with T0, when ``post_deploy_writes`` can be measured.
    created_at: str | None
    deployed_at: datetime | None
    #: The index that serves ``new IS NULL``; ``None``: one table scan counts everything.
    null_index: IndexInfo | None
    #: ``TABLESAMPLE SYSTEM`` percent of the counting pass; ``None``: every row is counted.
    sample_percent: float | None
    #: How many orphan ids to report (0: none).
    sample_size: int
    primary_key: str | None
    primary_key_is_uuid: bool

    @property
    def post_measured(self) -> bool:
        return self.created_at is not None and self.deployed_at is not None

    @property
    def wants_orphan_ids(self) -> bool:
        return self.has_legacy and self.primary_key is not None and self.sample_size > 0


def plan_coverage(cfg: Config, info: TableInfo, deployed_at: datetime | None) -> CoveragePlan:
    m = cfg.migration
    t = info.table
    created_ok = t.created_at is not None and info.has(t.created_at)
    post_measured = (
        bool(t.created_at)
        and cfg.checks.post_deploy_writes.enabled
        and created_ok
        and deployed_at is not None
    )
    pk = info.primary_key
    return CoveragePlan(
        schema=t.schema_,
        table=t.name,
        new_column=m.new_column,
        legacy_column=m.legacy_column,
        has_legacy=info.has(m.legacy_column),
        created_at=t.created_at if post_measured else None,
        deployed_at=deployed_at if post_measured else None,
        null_index=info.null_index_for(m.new_column),
        sample_percent=cfg.checks.coverage.sample_percent if use_estimate(cfg, info) else None,
        sample_size=cfg.checks.orphans.sample_size,
        primary_key=pk,
        primary_key_is_uuid=pk is not None and info.columns.get(pk) == "uuid",
    )


# --------------------------------------------------------------------------- measure


@dataclass(frozen=True)
class CoverageCounts:
    """The counts as PostgreSQL returned them: when ``sampled``, ``total`` and ``with_legacy``
    (and, from a table scan, the ``IS NULL`` counts too) cover the sample only."""

    total: int
    with_legacy: int | None
    missing: int
    orphans: int
    post_deploy_missing: int | None
    #: ``missing`` / ``orphans`` / ``post_deploy_missing`` came from the counting pass (a table
    #: scan, sampled when the plan samples) rather than exactly through the index.
    nulls_in_counting_pass: bool
    sample_ids: tuple[Any, ...] = ()


def measure_coverage(cur: psycopg.Cursor[DictRow], plan: CoveragePlan) -> CoverageCounts:
    """Run the plan's queries (the cheapest the catalogs allow) in the open transaction."""
    if plan.null_index is None:
        return _count_by_scan(cur, plan)
    counts = _count_by_index(cur, plan)
    if counts.orphans > 0 and plan.wants_orphan_ids:
        counts = replace(counts, sample_ids=_orphan_ids(cur, plan))
    return counts


class _Sql:
    """The identifiers and fragments the plan's queries share (all through ``sql.Identifier``)."""

    def __init__(self, plan: CoveragePlan) -> None:
        self.tbl = sql.Identifier(plan.schema, plan.table)
        self.new = sql.Identifier(plan.new_column)
        self.legacy = sql.Identifier(plan.legacy_column)
        self.created: sql.Composable = (
            sql.Identifier(plan.created_at) if plan.created_at else sql.SQL("NULL")
        )
        self.legacy_count = (
            sql.SQL("count({})").format(self.legacy) if plan.has_legacy else sql.SQL("NULL::bigint")
        )
        self.sample = (
            sql.SQL(" TABLESAMPLE SYSTEM (%(pct)s)")
            if plan.sample_percent is not None
            else sql.SQL("")
        )
        self.params: dict[str, Any] = {"deployed": plan.deployed_at, "pct": plan.sample_percent}


def _one(cur: psycopg.Cursor[DictRow], query: sql.Composable, params: dict[str, Any]) -> DictRow:
    cur.execute(tagged(query), params)
    row = cur.fetchone()
    assert row is not None
    return row


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _count_by_index(cur: psycopg.Cursor[DictRow], plan: CoveragePlan) -> CoverageCounts:
    """Two passes, each the cheapest possible: totals, then the IS NULL rows by index."""
    q = _Sql(plan)
    orphan_filter = (
        sql.SQL("count(*) FILTER (WHERE {} IS NOT NULL)").format(q.legacy)
        if plan.has_legacy
        else sql.SQL("0::bigint")
    )
    post_filter = (
        sql.SQL("count(*) FILTER (WHERE {} >= %(deployed)s)").format(q.created)
        if plan.post_measured
        else sql.SQL("NULL::bigint")
    )
    q_total = sql.SQL("SELECT count(*) AS total, {legacy} AS with_legacy FROM {tbl}{s}").format(
        legacy=q.legacy_count, tbl=q.tbl, s=q.sample
    )
    row = _one(cur, q_total, q.params)
    q_null = sql.SQL(
        "SELECT count(*) AS missing, {orphans} AS orphans, {post} AS post"
        " FROM {tbl} WHERE {new} IS NULL"
    ).format(orphans=orphan_filter, post=post_filter, tbl=q.tbl, new=q.new)
    nrow = _one(cur, q_null, q.params)
    return CoverageCounts(
        total=int(row["total"]),
        with_legacy=_int_or_none(row["with_legacy"]),
        missing=int(nrow["missing"]),
        orphans=int(nrow["orphans"]),
        post_deploy_missing=_int_or_none(nrow["post"]),
        nulls_in_counting_pass=False,
    )


def _count_by_scan(cur: psycopg.Cursor[DictRow], plan: CoveragePlan) -> CoverageCounts:
    """One scan with ``FILTER`` aggregates.

    Sample ids come from the same pass (the oldest and the newest orphan: a backfill miss and a
    code path still writing): a second LIMIT query would be another full scan when orphans are
    rare or sit at the end of the table."""
    q = _Sql(plan)
    pk_expr: sql.Composable = sql.SQL("NULL::text")
    if plan.wants_orphan_ids:
        assert plan.primary_key is not None
        pk_expr = sql.Identifier(plan.primary_key)
        if plan.primary_key_is_uuid:  # no min/max for uuid in PG15
            pk_expr = sql.SQL("{}::text").format(pk_expr)
    q_all = sql.SQL(
        "SELECT count(*) AS total, {legacy} AS with_legacy,"
        " count(*) FILTER (WHERE {new} IS NULL) AS missing,"
        " count(*) FILTER (WHERE {new} IS NULL AND {legacy_nn}) AS orphans,"
        " min({pk}) FILTER (WHERE {new} IS NULL AND {legacy_nn}) AS first_orphan,"
        " max({pk}) FILTER (WHERE {new} IS NULL AND {legacy_nn}) AS last_orphan,"
        " {post_all} AS post FROM {tbl}{s}"
    ).format(
        pk=pk_expr,
        legacy=q.legacy_count,
        new=q.new,
        legacy_nn=sql.SQL("{} IS NOT NULL").format(q.legacy)
        if plan.has_legacy
        else sql.SQL("false"),
        post_all=(
            sql.SQL("count(*) FILTER (WHERE {} IS NULL AND {} >= %(deployed)s)").format(
                q.new, q.created
            )
            if plan.post_measured
            else sql.SQL("NULL::bigint")
        ),
        tbl=q.tbl,
        s=q.sample,
    )
    row = _one(cur, q_all, q.params)
    ids: list[Any] = []
    for key in ("first_orphan", "last_orphan"):
        value = _jsonable(row[key])
        if value is not None and value not in ids:
            ids.append(value)
    return CoverageCounts(
        total=int(row["total"]),
        with_legacy=_int_or_none(row["with_legacy"]),
        missing=int(row["missing"]),
        orphans=int(row["orphans"]),
        post_deploy_missing=_int_or_none(row["post"]),
        nulls_in_counting_pass=True,
        sample_ids=tuple(ids),
    )


def _orphan_ids(cur: psycopg.Cursor[DictRow], plan: CoveragePlan) -> tuple[Any, ...]:
    q = _Sql(plan)
    assert plan.primary_key is not None
    q_ids = sql.SQL(
        "SELECT {pk} AS id FROM {tbl} WHERE {new} IS NULL AND {legacy} IS NOT NULL LIMIT %(n)s"
    ).format(pk=sql.Identifier(plan.primary_key), tbl=q.tbl, new=q.new, legacy=q.legacy)
    cur.execute(tagged(q_ids), {"n": plan.sample_size})
    return tuple(_jsonable(r["id"]) for r in cur.fetchall())


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


# --------------------------------------------------------------------------- judge (pure)


@dataclass(frozen=True)
class _Estimate:
    """The counts scaled up to the whole table (unchanged when every row was counted)."""

    total: int
    with_legacy: int | None
    missing: int
    orphans: int
    post: int | None
    #: The ``IS NULL`` counts are exact (not scaled from a sample).
    nulls_exact: bool


def _scale_up(plan: CoveragePlan, n: CoverageCounts) -> _Estimate:
    estimated = plan.sample_percent is not None
    scale = 100.0 / plan.sample_percent if plan.sample_percent is not None else 1.0
    null_scale = scale if n.nulls_in_counting_pass else 1.0
    return _Estimate(
        total=round(n.total * scale),
        with_legacy=None if n.with_legacy is None else round(n.with_legacy * scale),
        missing=round(n.missing * null_scale),
        orphans=round(n.orphans * null_scale),
        post=None if n.post_deploy_missing is None else round(n.post_deploy_missing * null_scale),
        nulls_exact=not (estimated and n.nulls_in_counting_pass),
    )


def _how_counted(plan: CoveragePlan, e: _Estimate) -> dict[str, Any]:
    details: dict[str, Any] = {}
    idx = plan.null_index
    if idx is None:
        details["missing_counted_via"] = "table scan (no valid index on the new column)"
    elif idx.predicate:
        details["missing_counted_via"] = f"partial index {idx.name} ({idx.predicate})"
        if e.missing == 0:
            details["proof"] = (
                f"exact zero proven by the partial index {idx.name} WHERE {idx.predicate}"
            )
    else:
        details["missing_counted_via"] = f"index {idx.name}"
    if plan.sample_percent is not None:
        details["estimated"] = True
        details["sample_percent"] = plan.sample_percent
    return details


def judge_coverage(
    cfg: Config, info: TableInfo, plan: CoveragePlan, counts: CoverageCounts
) -> list[Result]:
    """``coverage``, ``orphans`` and ``post_deploy_writes`` of one table from its counts."""
    c = cfg.checks
    e = _scale_up(plan, counts)
    details = _how_counted(plan, e)
    results: list[Result] = []
    if c.coverage.enabled:
        results.append(_coverage(cfg, info, plan, e, details))
    if c.orphans.enabled:
        results.append(_orphans(cfg, info, e, details, list(counts.sample_ids)))
    if info.table.created_at and c.post_deploy_writes.enabled:
        results.append(_post_deploy(cfg, info, plan, e, details))
    return results


def _coverage(
    cfg: Config, info: TableInfo, plan: CoveragePlan, e: _Estimate, details: dict[str, Any]
) -> Result:
    q = info.table.qualified
    new = cfg.migration.new_column
    limit = cfg.checks.coverage.max_missing
    with_new = max(0, e.total - e.missing)
    ratio = 1.0 if e.total == 0 else with_new / e.total
    observed: dict[str, Any] = {
        "total": e.total,
        "with_new": with_new,
        "with_legacy": e.with_legacy,
        "missing_new": e.missing,
        "backfill_ratio": round(ratio, 6),
    }
    if plan.sample_percent is not None:
        observed["estimated"] = True
    return Result.pass_if(
        e.missing <= limit,
        "coverage",
        q,
        f"all {e.total} rows have {new}"
        if e.missing == 0
        else f"{e.missing} of {e.total} rows lack {new}"
        f" (backfill {ratio:.2%}){'' if e.nulls_exact else ' (estimated)'}",
        observed=observed,
        threshold={"max_missing": limit},
        details=dict(details),
        table=q,
    )


def _orphans(
    cfg: Config, info: TableInfo, e: _Estimate, details: dict[str, Any], sample_ids: list[Any]
) -> Result:
    q = info.table.qualified
    m = cfg.migration
    limit = cfg.checks.orphans.max_orphans
    observed: dict[str, Any] = {"orphans": e.orphans}
    if not e.nulls_exact:
        observed["estimated"] = True
    return Result.pass_if(
        e.orphans <= limit,
        "orphans",
        q,
        "no orphaned rows"
        if e.orphans == 0
        else f"{e.orphans} rows have {m.legacy_column} but no {m.new_column}",
        observed=observed,
        threshold={"max_orphans": limit},
        details={"sample_ids": sample_ids, **details},
        table=q,
    )


def _post_deploy(
    cfg: Config, info: TableInfo, plan: CoveragePlan, e: _Estimate, details: dict[str, Any]
) -> Result:
    t = info.table
    q = t.qualified
    m = cfg.migration
    if not info.has(t.created_at):
        reason = f"column {t.created_at} (created_at) not found in {q}"
        return Result.errored("post_deploy_writes", q, reason=reason, table=q)
    deployed = plan.deployed_at
    if deployed is None or e.post is None:
        reason = "deployment time unknown (set migration.deployed_at)"
        return Result.skipped("post_deploy_writes", q, reason=reason, table=q)
    limit = cfg.checks.post_deploy_writes.max_missing
    observed: dict[str, Any] = {"post_deploy_missing": e.post}
    if not e.nulls_exact:
        observed["estimated"] = True
    since = deployed.isoformat()
    return Result.pass_if(
        e.post <= limit,
        "post_deploy_writes",
        q,
        f"no rows written since {since} lack {m.new_column}"
        if e.post == 0
        else f"{e.post} rows written since {since} lack"
        f" {m.new_column}: a code path still writes only {m.legacy_column}",
        observed=observed,
        threshold={"max_missing": limit},
        details={"deployed_at": since, **details},
        table=q,
    )
