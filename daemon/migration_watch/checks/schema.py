"""``schema`` (columns and expected indexes of a table) and ``index_usage`` (per index).

The legacy column must still exist during the week: it is the rollback path. Each expected index
must exist, be valid and ready (``pg_index.indisvalid``/``indisready``: a failed
``CREATE INDEX CONCURRENTLY`` leaves an invalid one) and cover the new column.

The measurement is the suite's catalog lookup (:func:`~.catalog.fetch_table_info`):
:func:`judge_schema` is pure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import Config, TableConfig
from ..results import Result
from .catalog import TableInfo, absent_results

if TYPE_CHECKING:
    from .suite import CheckContext

__all__ = ["judge_schema", "run", "subjects"]


def subjects(cfg: Config, table: TableConfig) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if cfg.checks.schema_.enabled:
        out.append(("schema", table.qualified))
    if cfg.checks.index_usage.enabled:
        out += [("index_usage", f"{table.qualified}.{i}") for i in table.indexes]
    return out


def run(ctx: CheckContext, info: TableInfo) -> list[Result]:
    """Nothing to measure beyond the catalog lookup the suite already made: judge it."""
    return judge_schema(ctx.config, info)


# --------------------------------------------------------------------------- judge (pure)


def judge_schema(cfg: Config, info: TableInfo) -> list[Result]:
    """``schema`` and the ``index_usage`` results of one table, from its catalog entry."""
    if not info.exists:
        return absent_results(info, subjects(cfg, info.table), "")
    results: list[Result] = []
    if cfg.checks.schema_.enabled:
        results.append(_schema(cfg, info))
    if cfg.checks.index_usage.enabled:
        results += [_index_usage(info, name) for name in info.table.indexes]
    return results


def _index_states(cfg: Config, info: TableInfo) -> tuple[dict[str, dict[str, bool]], list[str]]:
    """Each expected index's state, and what is wrong with them."""
    new = cfg.migration.new_column
    new_attnum = info.attnums.get(new)
    indexes: dict[str, dict[str, bool]] = {}
    problems: list[str] = []
    for name in info.table.indexes:
        idx = info.indexes.get(name)
        if idx is None:
            indexes[name] = {"exists": False, "valid": False, "ready": False, "covers_new": False}
            problems.append(f"index {name} does not exist")
            continue
        covers = idx.covers(new_attnum)
        indexes[name] = {
            "exists": True,
            "valid": idx.valid,
            "ready": idx.ready,
            "covers_new": covers,
        }
        if not idx.valid:
            problems.append(f"index {name} is invalid")
        if not idx.ready:
            problems.append(f"index {name} is not ready")
        if not covers:
            problems.append(f"index {name} does not cover {new}")
    return indexes, problems


def _schema(cfg: Config, info: TableInfo) -> Result:
    m = cfg.migration
    t = info.table
    required = cfg.checks.schema_.require_legacy_column
    indexes, problems = _index_states(cfg, info)
    legacy_present = info.has(m.legacy_column)
    if not info.has(m.new_column):
        problems.insert(0, f"column {m.new_column} is missing")
    if not legacy_present and required:
        problems.insert(0, f"legacy column {m.legacy_column} was dropped (it is the rollback path)")
    observed: dict[str, Any] = {
        "new_column_type": info.columns.get(m.new_column),
        "legacy_column_present": legacy_present,
        "indexes": indexes,
    }
    return Result.pass_if(
        not problems,
        "schema",
        t.qualified,
        "; ".join(problems)
        if problems
        else f"{m.new_column} ({observed['new_column_type']}) and"
        f" {len(t.indexes)} expected index(es) in place",
        observed=observed,
        threshold={"indexes": list(t.indexes), "legacy_column_required": required},
        details={"problems": problems} if problems else {},
        table=t.qualified,
    )


def _index_usage(info: TableInfo, name: str) -> Result:
    q = info.table.qualified
    subject = f"{q}.{name}"
    idx = info.indexes.get(name)
    if idx is None:
        reason = f"index {name} does not exist"
        return Result.skipped(
            "index_usage", subject, reason=reason, table=q, details={"index": name}
        )
    return Result.passed(
        "index_usage",
        subject,
        f"{idx.idx_scan or 0} scans of {name} since statistics reset",
        observed={"idx_scan": idx.idx_scan, "valid": idx.valid},
        details={"index": name},
        table=q,
    )
