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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from psycopg import sql

from ..config import Config, TableConfig
from ..db import tagged
from ..results import Result, Status
from .catalog import TableInfo, absent_results

if TYPE_CHECKING:
    from . import CheckContext

__all__ = ["run", "subjects"]


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


def _absent(ctx: CheckContext, info: TableInfo, message: str) -> list[Result]:
    return absent_results(info, subjects(ctx.config, info.table), message)


def _use_estimate(ctx: CheckContext, info: TableInfo) -> bool:
    mode = info.table.count
    if mode == "exact":
        return False
    if mode == "estimate":
        return True
    limit = ctx.config.checks.coverage.auto_exact_below_rows
    return info.reltuples >= limit


def run(ctx: CheckContext, info: TableInfo) -> list[Result]:
    cfg = ctx.config
    m = cfg.migration
    t = info.table
    if not info.exists:
        return _absent(ctx, info, f"required table {t.qualified} does not exist")
    if not info.has(m.new_column):
        return _absent(ctx, info, f"column {m.new_column} is missing from {t.qualified}")
    if info.rls_hides_rows:
        return [
            Result(
                check=c,
                subject=s,
                status=Status.ERROR,
                message=info.rls_hides_rows,
                table=t.qualified,
            )
            for c, s in subjects(cfg, t)
        ]

    tbl = sql.Identifier(t.schema_, t.name)
    new = sql.Identifier(m.new_column)
    has_legacy = info.has(m.legacy_column)
    legacy = sql.Identifier(m.legacy_column)
    created_ok = t.created_at is not None and info.has(t.created_at)
    post_wanted = bool(t.created_at) and cfg.checks.post_deploy_writes.enabled
    deployed = ctx.deployed_at
    post_measured = post_wanted and created_ok and deployed is not None
    created = sql.Identifier(t.created_at) if t.created_at else sql.SQL("NULL")

    null_index = info.null_index_for(m.new_column)
    estimated = _use_estimate(ctx, info)
    pct = cfg.checks.coverage.sample_percent
    details: dict[str, Any] = {}
    legacy_count = sql.SQL("count({})").format(legacy) if has_legacy else sql.SQL("NULL::bigint")
    orphan_filter = (
        sql.SQL("count(*) FILTER (WHERE {} IS NOT NULL)").format(legacy)
        if has_legacy
        else sql.SQL("0::bigint")
    )
    post_filter = (
        sql.SQL("count(*) FILTER (WHERE {} >= %(deployed)s)").format(created)
        if post_measured
        else sql.SQL("NULL::bigint")
    )
    sample = sql.SQL(" TABLESAMPLE SYSTEM (%(pct)s)") if estimated else sql.SQL("")
    params: dict[str, Any] = {"deployed": deployed, "pct": pct}
    scale = 100.0 / pct if estimated else 1.0

    sample_ids: list[Any] = []
    sample_size = cfg.checks.orphans.sample_size
    with ctx.db.read_only() as cur:
        if null_index is not None:
            # Two passes, each the cheapest possible: totals, then the IS NULL rows by index.
            q_total = sql.SQL(
                "SELECT count(*) AS total, {legacy} AS with_legacy FROM {tbl}{s}"
            ).format(legacy=legacy_count, tbl=tbl, s=sample)
            cur.execute(tagged(q_total), params)
            row = cur.fetchone()
            assert row is not None
            total = round(row["total"] * scale)
            with_legacy = None if row["with_legacy"] is None else round(row["with_legacy"] * scale)
            q_null = sql.SQL(
                "SELECT count(*) AS missing, {orphans} AS orphans, {post} AS post"
                " FROM {tbl} WHERE {new} IS NULL"
            ).format(orphans=orphan_filter, post=post_filter, tbl=tbl, new=new)
            cur.execute(tagged(q_null), params)
            nrow = cur.fetchone()
            assert nrow is not None
            missing = int(nrow["missing"])
            orphans = int(nrow["orphans"])
            post = None if nrow["post"] is None else int(nrow["post"])
            null_exact = True
            details["missing_counted_via"] = (
                f"partial index {null_index.name} ({null_index.predicate})"
                if null_index.predicate
                else f"index {null_index.name}"
            )
            if null_index.predicate and missing == 0:
                details["proof"] = (
                    f"exact zero proven by the partial index {null_index.name}"
                    f" WHERE {null_index.predicate}"
                )
        else:
            # Sample ids come from the same pass (the oldest and the newest orphan: a backfill
            # miss and a code path still writing): a second LIMIT query would be another full
            # scan when orphans are rare or sit at the end of the table.
            pk_expr: sql.Composable = sql.SQL("NULL::text")
            if has_legacy and info.primary_key and sample_size > 0:
                pk_expr = sql.Identifier(info.primary_key)
                if info.columns.get(info.primary_key) == "uuid":  # no min/max for uuid in PG15
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
                legacy=legacy_count,
                new=new,
                legacy_nn=sql.SQL("{} IS NOT NULL").format(legacy)
                if has_legacy
                else sql.SQL("false"),
                post_all=(
                    sql.SQL("count(*) FILTER (WHERE {} IS NULL AND {} >= %(deployed)s)").format(
                        new, created
                    )
                    if post_measured
                    else sql.SQL("NULL::bigint")
                ),
                tbl=tbl,
                s=sample,
            )
            cur.execute(tagged(q_all), params)
            row = cur.fetchone()
            assert row is not None
            total = round(row["total"] * scale)
            with_legacy = None if row["with_legacy"] is None else round(row["with_legacy"] * scale)
            missing = round(row["missing"] * scale)
            orphans = round(row["orphans"] * scale)
            post = None if row["post"] is None else round(row["post"] * scale)
            null_exact = not estimated
            details["missing_counted_via"] = "table scan (no valid index on the new column)"
            for key in ("first_orphan", "last_orphan"):
                value = _jsonable(row[key])
                if value is not None and value not in sample_ids:
                    sample_ids.append(value)
        if (
            null_index is not None
            and orphans > 0
            and has_legacy
            and info.primary_key
            and sample_size > 0
        ):
            q_ids = sql.SQL(
                "SELECT {pk} AS id FROM {tbl}"
                " WHERE {new} IS NULL AND {legacy} IS NOT NULL LIMIT %(n)s"
            ).format(pk=sql.Identifier(info.primary_key), tbl=tbl, new=new, legacy=legacy)
            cur.execute(tagged(q_ids), {"n": sample_size})
            sample_ids = [_jsonable(r["id"]) for r in cur.fetchall()]

    with_new = max(0, total - missing)
    ratio = 1.0 if total == 0 else with_new / total
    if estimated:
        details["estimated"] = True
        details["sample_percent"] = pct
    results: list[Result] = []
    c = cfg.checks
    q = t.qualified
    if c.coverage.enabled:
        observed: dict[str, Any] = {
            "total": total,
            "with_new": with_new,
            "with_legacy": with_legacy,
            "missing_new": missing,
            "backfill_ratio": round(ratio, 6),
        }
        if estimated:
            observed["estimated"] = True
        ok = missing <= c.coverage.max_missing
        results.append(
            Result(
                check="coverage",
                subject=q,
                status=Status.PASS if ok else Status.FAIL,
                observed=observed,
                threshold={"max_missing": c.coverage.max_missing},
                details=dict(details),
                message=(
                    f"all {total} rows have {m.new_column}"
                    if missing == 0
                    else f"{missing} of {total} rows lack {m.new_column}"
                    f" (backfill {ratio:.2%}){'' if null_exact else ' (estimated)'}"
                ),
                table=q,
            )
        )
    if c.orphans.enabled:
        ok = orphans <= c.orphans.max_orphans
        observed = {"orphans": orphans}
        if not null_exact:
            observed["estimated"] = True
        results.append(
            Result(
                check="orphans",
                subject=q,
                status=Status.PASS if ok else Status.FAIL,
                observed=observed,
                threshold={"max_orphans": c.orphans.max_orphans},
                details={"sample_ids": sample_ids, **details},
                message=(
                    "no orphaned rows"
                    if orphans == 0
                    else f"{orphans} rows have {m.legacy_column} but no {m.new_column}"
                ),
                table=q,
            )
        )
    if post_wanted:
        if not created_ok:
            results.append(
                Result(
                    check="post_deploy_writes",
                    subject=q,
                    status=Status.ERROR,
                    message=f"column {t.created_at} (created_at) not found in {q}",
                    table=q,
                )
            )
        elif deployed is None:
            results.append(
                Result(
                    check="post_deploy_writes",
                    subject=q,
                    status=Status.SKIPPED,
                    message="deployment time unknown (set migration.deployed_at)",
                    table=q,
                )
            )
        else:
            assert post is not None
            ok = post <= c.post_deploy_writes.max_missing
            observed = {"post_deploy_missing": post}
            if not null_exact:
                observed["estimated"] = True
            results.append(
                Result(
                    check="post_deploy_writes",
                    subject=q,
                    status=Status.PASS if ok else Status.FAIL,
                    observed=observed,
                    threshold={"max_missing": c.post_deploy_writes.max_missing},
                    details={"deployed_at": deployed.isoformat(), **details},
                    message=(
                        f"no rows written since {deployed.isoformat()} lack {m.new_column}"
                        if post == 0
                        else f"{post} rows written since {deployed.isoformat()} lack"
                        f" {m.new_column}: a code path still writes only {m.legacy_column}"
                    ),
                    table=q,
                )
            )
    return results


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
