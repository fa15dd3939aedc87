"""The check suite: families of checks over the watched tables, each guarded.

A family (``coverage``, ``schema``, ``rls``, ``query_ratio``) measures one table (or the
database) in its own read-only transaction and returns :class:`~migration_watch.results.Result`s.
A family that raises never stops the suite: its checks become ``error`` results with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import structlog

from ..config import Config, TableConfig
from ..db import Database
from ..errors import DatabaseError
from ..results import Result
from . import coverage, rls, schema
from .catalog import TableInfo, fetch_table_info
from .query_ratio import QueryRatioTracker

__all__ = ["CHECK_NAMES", "CheckContext", "QueryRatioTracker", "run_suite"]

log = structlog.get_logger(__name__)

#: Every check name the core suite can produce, in report order.
CHECK_NAMES = (
    "coverage",
    "orphans",
    "post_deploy_writes",
    "schema",
    "index_usage",
    "rls",
    "query_ratio",
    "latency",
    "index_plan",
)


@dataclass
class CheckContext:
    """What one run of the suite needs. ``now`` is injected (never read from a clock here)."""

    config: Config
    db: Database
    now: datetime
    deployed_at: datetime | None
    ratio: QueryRatioTracker
    tables: dict[str, TableInfo] = field(default_factory=dict)


_TableFamily = tuple[
    str,
    Callable[[Config, TableConfig], list[tuple[str, str]]],
    Callable[[CheckContext, TableInfo], list[Result]],
]

_FAMILIES: Sequence[_TableFamily] = (
    ("coverage", coverage.subjects, coverage.run),
    ("schema", schema.subjects, schema.run),
    ("rls", rls.subjects, rls.run),
)


def _error_results(
    pairs: list[tuple[str, str]], message: str, table: str | None, now: datetime
) -> list[Result]:
    return [Result.errored(c, s, reason=message, table=table, measured_at=now) for c, s in pairs]


def _describe(exc: BaseException, db: Database) -> str:
    if isinstance(exc, DatabaseError):
        return str(exc)
    return db.redact(f"{type(exc).__name__}: {exc}")


def run_suite(ctx: CheckContext, *, unreachable: DatabaseError | None = None) -> list[Result]:
    """Run every enabled check once. Never raises for a check's failure.

    ``unreachable``: the database already failed a probe; every check is ``error`` at once
    (no second wait for a connection).
    """
    cfg = ctx.config
    results: list[Result] = []
    try:
        if unreachable is not None:
            raise unreachable
        with ctx.db.read_only() as cur:
            ctx.tables = {
                t.qualified: fetch_table_info(cur, t, cfg.migration) for t in cfg.migration.tables
            }
    except Exception as exc:  # noqa: BLE001 - the catalog failing turns every check into error
        message = _describe(exc, ctx.db)
        log.warning("catalog lookup failed", error=message)
        for t in cfg.migration.tables:
            for _, subjects, _ in _FAMILIES:
                results += _error_results(subjects(cfg, t), message, t.qualified, ctx.now)
        results += _error_results(QueryRatioTracker.subjects(cfg), message, None, ctx.now)
        return results

    for t in cfg.migration.tables:
        info = ctx.tables[t.qualified]
        for family, subjects, run in _FAMILIES:
            pairs = subjects(cfg, t)
            if not pairs:
                continue
            bound = log.bind(check=family, table=t.qualified)
            start = time.perf_counter()
            try:
                out = run(ctx, info)
            except Exception as exc:  # noqa: BLE001 - a failing check never kills the suite
                message = _describe(exc, ctx.db)
                bound.warning("check could not be measured", error=message)
                out = _error_results(pairs, message, t.qualified, ctx.now)
            elapsed = time.perf_counter() - start
            results += [replace(r, duration_seconds=elapsed, measured_at=ctx.now) for r in out]

    if QueryRatioTracker.subjects(cfg):
        start = time.perf_counter()
        try:
            out = [ctx.ratio.check(ctx.db, cfg, ctx.now)]
        except Exception as exc:  # noqa: BLE001 - see above
            message = _describe(exc, ctx.db)
            log.warning("check could not be measured", check="query_ratio", error=message)
            out = _error_results(QueryRatioTracker.subjects(cfg), message, None, ctx.now)
        elapsed = time.perf_counter() - start
        results += [replace(r, duration_seconds=elapsed, measured_at=ctx.now) for r in out]
    order = {name: i for i, name in enumerate(CHECK_NAMES)}
    results.sort(key=lambda r: order.get(r.check, len(order)))
    return results
