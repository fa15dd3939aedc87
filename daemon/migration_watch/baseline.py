"""The pre-deploy baseline: pg_stat_statements means and probe timings and plans.

Timing method (the same for the baseline and every ``latency`` check, see :func:`measure_probe`):
each probe runs as ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) <probe>`` inside one ``READ ONLY``
transaction, ``warmup`` times unmeasured then ``executions`` times; its latency is the **median
of the server-side "Execution Time"** of those executions. Server-side time leaves out network
round trips, client parsing and pool waits, which are noise here; the median ignores a run that
a checkpoint or a busy neighbour slowed down; the warm-up keeps a cold cache or the first
catalog lookups out of the sample. Planning time is recorded too (``planning_seconds``), not
compared. The plan kept is the one of the median execution.

Statements: for every pg_stat_statements entry whose text names a watched table (migration-watch's
own statements excluded), the mean execution time over its lifetime counts, merged by
``queryid`` (over roles and top-level/nested entries, weighted by calls).
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import structlog
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.rows import DictRow

from .checks.query_ratio import classify_statement
from .config import Config
from .db import SQL_TAG, Database, pg_stat_statements_location, tagged
from .errors import DatabaseError
from .probes import ProbeConfig
from .state import Baseline, ProbeBaseline, StatementBaseline

__all__ = [
    "TIMING_METHOD",
    "PlanNode",
    "ProbeMeasurement",
    "measure_probe",
    "plan_nodes",
    "plan_summary",
    "probe_fingerprint",
    "record_baseline",
    "scan_nodes",
]

log = structlog.get_logger(__name__)

#: How probe latencies are measured; stored with the baseline, compared by the check.
TIMING_METHOD = "explain_analyze_execution_time_median"
_EXPLAIN = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ")
_TAG = SQL_TAG.strip()
#: Errors after which trying the next probe is pointless.
_CONNECTION_KINDS = frozenset({"unreachable", "auth"})


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class PlanNode:
    """One node of an EXPLAIN JSON plan, with its depth (0 = top)."""

    depth: int
    node: Mapping[str, Any]

    @property
    def node_type(self) -> str:
        return str(self.node.get("Node Type", "?"))

    @property
    def relation(self) -> str | None:
        r = self.node.get("Relation Name")
        return None if r is None else str(r)

    @property
    def index(self) -> str | None:
        r = self.node.get("Index Name")
        return None if r is None else str(r)

    def label(self) -> str:
        """EXPLAIN-text style: ``Index Scan Backward using idx on conversations``."""
        kind = self.node_type
        if self.node.get("Parallel Aware"):
            kind = f"Parallel {kind}"
        if self.node.get("Scan Direction") == "Backward":
            kind += " Backward"
        if self.index is not None:
            if kind.startswith(("Bitmap Index Scan", "Parallel Bitmap Index Scan")):
                return f"{kind} on {self.index}"
            kind += f" using {self.index}"
        if self.relation is not None:
            alias = self.node.get("Alias")
            kind += f" on {self.relation}" + (
                f" {alias}" if alias and alias != self.relation else ""
            )
        return kind


def _root(plan: Any) -> Mapping[str, Any] | None:
    if isinstance(plan, list) and plan:
        plan = plan[0]
    if isinstance(plan, Mapping):
        inner = plan.get("Plan", plan)
        if isinstance(inner, Mapping):
            return inner
    return None


def plan_nodes(plan: Any) -> Iterator[PlanNode]:
    """Every node of an EXPLAIN ``FORMAT JSON`` plan (the list, its element or a ``Plan``),
    depth first, sub-plans and init-plans included."""
    root = _root(plan)
    if root is None:
        return
    stack: list[tuple[int, Mapping[str, Any]]] = [(0, root)]
    while stack:
        depth, node = stack.pop()
        yield PlanNode(depth, node)
        children = node.get("Plans") or []
        stack.extend((depth + 1, c) for c in reversed(children) if isinstance(c, Mapping))


def scan_nodes(plan: Any) -> list[str]:
    """The labels of the plan's scan nodes (``Seq Scan on t``, ``Bitmap Index Scan on i`` …)."""
    return [n.label() for n in plan_nodes(plan) if n.node_type.endswith("Scan")]


def plan_summary(plan: Any) -> list[str]:
    """One indented line per node, with actual rows, loops and time when analysed."""
    lines = []
    for n in plan_nodes(plan):
        extras = []
        if "Actual Rows" in n.node:
            extras.append(f"rows={n.node['Actual Rows']}")
            extras.append(f"loops={n.node.get('Actual Loops', 1)}")
        if "Actual Total Time" in n.node:
            extras.append(f"time={n.node['Actual Total Time']}ms")
        if "Filter" in n.node:
            extras.append(f"filter={n.node['Filter']}")
        text = ("  " * n.depth) + ("-> " if n.depth else "") + n.label()
        lines.append(text + (f" ({' '.join(extras)})" if extras else ""))
    return lines


# --------------------------------------------------------------------------- probes


@dataclass(frozen=True)
class ProbeMeasurement:
    """The outcome of one :func:`measure_probe` call (seconds, server-side)."""

    name: str
    timings: tuple[float, ...]
    planning: tuple[float, ...]
    plan: Any
    warmup: int
    wall_seconds: float

    @property
    def median_seconds(self) -> float:
        return float(statistics.median(self.timings))

    @property
    def planning_seconds(self) -> float:
        return float(statistics.median(self.planning)) if self.planning else 0.0

    @property
    def executions(self) -> int:
        return len(self.timings)

    def buffers(self) -> dict[str, int]:
        """Shared buffers of the kept plan's top node (hit / read)."""
        root = _root(self.plan) or {}
        return {
            "shared_hit": int(root.get("Shared Hit Blocks", 0)),
            "shared_read": int(root.get("Shared Read Blocks", 0)),
        }


def probe_fingerprint(probe: ProbeConfig) -> str:
    """A short hash of the probe's SQL and parameters: a baseline of another query is not
    comparable."""
    payload = json.dumps(
        {"sql": probe.sql, "params": probe.params}, sort_keys=True, default=str, ensure_ascii=False
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _ms(value: Any) -> float:
    """EXPLAIN's milliseconds (3 decimals) as seconds, without float noise."""
    return round(float(value) / 1000.0, 9)


def _explain_once(cur: psycopg.Cursor[DictRow], query: sql.Composed, params: Any) -> Any:
    cur.execute(query, params)
    row = cur.fetchone()
    if row is None:  # pragma: no cover - EXPLAIN always returns a row
        raise DatabaseError("EXPLAIN returned no plan")
    return next(iter(row.values()))


def measure_probe(
    db: Database,
    probe: ProbeConfig,
    *,
    executions: int | None = None,
    warmup: int | None = None,
) -> ProbeMeasurement:
    """Run the probe ``warmup`` + ``executions`` times (defaults from the probe) under
    ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` in one read-only transaction.

    Raises :class:`~migration_watch.errors.DatabaseError`.
    """
    n = probe.executions if executions is None else executions
    w = probe.warmup if warmup is None else warmup
    if n < 1:
        raise ValueError("executions must be >= 1")
    # The probe's text was validated as one read-only statement (probes.check_read_only_sql);
    # it is the configured query itself, only its values are parameters.
    query = tagged(_EXPLAIN + sql.SQL(probe.sql))
    params = dict(probe.params)
    runs: list[tuple[float, float, Any]] = []
    start = time.perf_counter()
    with db.read_only() as cur:
        for i in range(w + n):
            doc = _explain_once(cur, query, params)
            if i < w:
                continue
            top = doc[0] if isinstance(doc, list) and doc else doc
            if not isinstance(top, Mapping) or "Execution Time" not in top:
                raise DatabaseError(f"probe {probe.name}: EXPLAIN returned no Execution Time")
            runs.append(
                (
                    _ms(top["Execution Time"]),
                    _ms(top.get("Planning Time", 0)),
                    doc,
                )
            )
    wall = time.perf_counter() - start
    # The plan of the median execution (the lower middle one for an even count).
    ordered = sorted(range(len(runs)), key=lambda k: runs[k][0])
    kept = runs[ordered[(len(ordered) - 1) // 2]][2]
    return ProbeMeasurement(
        name=probe.name,
        timings=tuple(r[0] for r in runs),
        planning=tuple(r[1] for r in runs),
        plan=kept,
        warmup=w,
        wall_seconds=wall,
    )


def _probe_baseline(m: ProbeMeasurement, probe: ProbeConfig) -> ProbeBaseline:
    return ProbeBaseline(
        name=probe.name,
        median_seconds=m.median_seconds,
        timings=m.timings,
        plan=m.plan,
        details={
            "method": TIMING_METHOD,
            "fingerprint": probe_fingerprint(probe),
            "sql": probe.sql,
            "params": dict(probe.params),
            "executions": m.executions,
            "warmup": m.warmup,
            "planning_seconds": m.planning_seconds,
            "scan_nodes": scan_nodes(m.plan),
            "buffers": m.buffers(),
        },
    )


# --------------------------------------------------------------------------- statements


def _table_pattern(config: Config) -> re.Pattern[str]:
    names = sorted({t.name for t in config.migration.tables}, key=len, reverse=True)
    return re.compile("|".join(rf"(?<![\w$]){re.escape(n)}(?![\w$])" for n in names))


def _statement_baselines(
    db: Database, config: Config
) -> tuple[list[StatementBaseline], dict[str, Any]]:
    """Statements on the watched tables with their mean execution time; the details say
    whether pg_stat_statements was usable."""
    info: dict[str, Any] = {"source": "pg_stat_statements", "available": False}
    with db.read_only() as cur:
        found = pg_stat_statements_location(cur)
        if found is None:
            info["reason"] = "extension pg_stat_statements is not installed in this database"
            return [], info
        schema, version = found
        total = sql.SQL("total_exec_time" if version >= (1, 8) else "total_time")
        try:
            with cur.connection.transaction():  # savepoint: a failure must not end the txn
                cur.execute(
                    tagged(
                        sql.SQL(
                            "SELECT s.queryid, s.calls, s.{total} AS total_ms, s.query"
                            " FROM {schema}.pg_stat_statements(true) s"
                            " WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database"
                            " WHERE datname = current_database()) AND s.calls > 0"
                        ).format(total=total, schema=schema)
                    )
                )
                rows = cur.fetchall()
        except pg_errors.ObjectNotInPrerequisiteState:
            info["reason"] = (
                "pg_stat_statements is installed but not loaded (shared_preload_libraries)"
            )
            return [], info
        except pg_errors.InsufficientPrivilege:
            info["reason"] = "pg_stat_statements is not readable by this role"
            return [], info
    tables = _table_pattern(config)
    m = config.migration
    merged: dict[int, list[Any]] = {}
    hidden = 0
    for r in rows:
        if r["queryid"] is None or r["query"] is None:
            hidden += 1
            continue
        text = str(r["query"])
        if _TAG in text or not tables.search(text):
            continue
        entry = merged.setdefault(int(r["queryid"]), [0, 0.0, text])
        entry[0] += int(r["calls"])
        entry[1] += float(r["total_ms"])
    statements = [
        StatementBaseline(
            queryid=qid,
            query=text,
            mean_exec_seconds=total_ms / calls / 1000.0,
            calls=calls,
        )
        for qid, (calls, total_ms, text) in sorted(merged.items())
    ]
    info["available"] = True
    info["extversion"] = ".".join(str(p) for p in version)
    info["hidden_statements"] = hidden  # other roles' entries without pg_read_all_stats
    info["usage"] = {
        str(s.queryid): classify_statement(
            s.query, [t.name for t in m.tables], m.legacy_column, m.new_column
        )
        or "other"
        for s in statements
    }
    return statements, info


# --------------------------------------------------------------------------- baseline


def record_baseline(
    db: Database, config: Config, probes: Sequence[ProbeConfig], now: datetime
) -> Baseline:
    """Measure the baseline (does not store it: ``state.save_baseline(...)``).

    Statement means come from pg_stat_statements (``details["statements"]`` says whether it
    was usable); each probe is measured with :func:`measure_probe`. A probe that cannot be
    measured is left out and named in ``details["probe_errors"]``; an unreachable database
    raises :class:`~migration_watch.errors.DatabaseError`.
    """
    bound = log.bind(probes=len(probes))
    statements, stmt_info = _statement_baselines(db, config)
    probe_baselines: list[ProbeBaseline] = []
    errors: dict[str, str] = {}
    for probe in probes:
        try:
            m = measure_probe(db, probe)
        except DatabaseError as exc:
            if exc.kind in _CONNECTION_KINDS:
                raise
            errors[probe.name] = str(exc)
            bound.warning("probe could not be measured", probe=probe.name, error=str(exc))
            continue
        probe_baselines.append(_probe_baseline(m, probe))
        bound.info(
            "probe baseline recorded",
            probe=probe.name,
            median_seconds=m.median_seconds,
            scan_nodes=scan_nodes(m.plan),
        )
    bound.info("baseline recorded", statements=len(statements), probe_errors=len(errors))
    return Baseline(
        recorded_at=now,
        statements=tuple(statements),
        probes=tuple(probe_baselines),
        details={"method": TIMING_METHOD, "statements": stmt_info, "probe_errors": errors},
    )
