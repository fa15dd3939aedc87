"""``schema`` (columns and expected indexes of a table) and ``index_usage`` (per index).

The legacy column must still exist during the week: it is the rollback path. Each expected index
must exist, be valid and ready (``pg_index.indisvalid``/``indisready``: a failed
``CREATE INDEX CONCURRENTLY`` leaves an invalid one) and cover the new column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import Config, TableConfig
from ..results import Result, Status
from .catalog import TableInfo, absent_results

if TYPE_CHECKING:
    from . import CheckContext

__all__ = ["run", "subjects"]


def subjects(cfg: Config, table: TableConfig) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if cfg.checks.schema_.enabled:
        out.append(("schema", table.qualified))
    if cfg.checks.index_usage.enabled:
        out += [("index_usage", f"{table.qualified}.{i}") for i in table.indexes]
    return out


def run(ctx: CheckContext, info: TableInfo) -> list[Result]:
    cfg = ctx.config
    m = cfg.migration
    t = info.table
    if not info.exists:
        return absent_results(info, subjects(cfg, t), "")
    q = t.qualified
    results: list[Result] = []
    new_attnum = info.attnums.get(m.new_column)
    indexes: dict[str, dict[str, bool]] = {}
    problems: list[str] = []
    for name in t.indexes:
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
            problems.append(f"index {name} does not cover {m.new_column}")
    if cfg.checks.schema_.enabled:
        legacy_present = info.has(m.legacy_column)
        if not info.has(m.new_column):
            problems.insert(0, f"column {m.new_column} is missing")
        if not legacy_present and cfg.checks.schema_.require_legacy_column:
            problems.insert(
                0, f"legacy column {m.legacy_column} was dropped (it is the rollback path)"
            )
        observed: dict[str, Any] = {
            "new_column_type": info.columns.get(m.new_column),
            "legacy_column_present": legacy_present,
            "indexes": indexes,
        }
        results.append(
            Result(
                check="schema",
                subject=q,
                status=Status.FAIL if problems else Status.PASS,
                observed=observed,
                threshold={
                    "indexes": list(t.indexes),
                    "legacy_column_required": cfg.checks.schema_.require_legacy_column,
                },
                details={"problems": problems} if problems else {},
                message="; ".join(problems)
                if problems
                else f"{m.new_column} ({observed['new_column_type']}) and"
                f" {len(t.indexes)} expected index(es) in place",
                table=q,
            )
        )
    if cfg.checks.index_usage.enabled:
        for name in t.indexes:
            idx = info.indexes.get(name)
            subject = f"{q}.{name}"
            if idx is None:
                results.append(
                    Result(
                        check="index_usage",
                        subject=subject,
                        status=Status.SKIPPED,
                        message=f"index {name} does not exist",
                        table=q,
                        details={"index": name},
                    )
                )
                continue
            results.append(
                Result(
                    check="index_usage",
                    subject=subject,
                    status=Status.PASS,
                    observed={"idx_scan": idx.idx_scan, "valid": idx.valid},
                    details={"index": name},
                    message=f"{idx.idx_scan or 0} scans of {name} since statistics reset",
                    table=q,
                )
            )
    return results
