"""``latency`` and ``index_plan``: the probe queries against their pre-deploy baseline.

Per probe (subject ``probe:<name>``), measured with
:func:`~migration_watch.baseline.measure_probe` exactly as the baseline was (median of the
server-side Execution Time of ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` runs in a read-only
transaction):

``latency``
    ``pass`` / ``fail`` against ``baseline * (1 + max_regression)`` (default +10%), ignoring
    differences below ``noise_floor``; ``skipped`` without a baseline for this probe, or when the
    probe's SQL or parameters changed since it was recorded (the median is still reported).
    Observed: ``median_seconds`` (the ``migration_watch_probe_latency_seconds`` gauge),
    ``baseline_seconds`` (``migration_watch_probe_baseline_seconds``), ``ratio``,
    ``executions``.
``index_plan`` (probes with ``expect_index``)
    ``pass`` when the plan has an Index Scan, Index Only Scan or Bitmap Index Scan on the
    expected index and no Seq Scan of the probe's ``table``; ``fail`` otherwise (a Seq Scan, or
    another index). Observed: ``uses_index``, ``seq_scan``, ``scan_nodes``; details: the plan
    summary.

A probe that cannot be measured gives ``error`` results for its checks; after a connection
failure the remaining probes are not tried (they would wait for the same timeout).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog

from ..baseline import (
    TIMING_METHOD,
    ProbeMeasurement,
    measure_probe,
    plan_nodes,
    plan_summary,
    probe_fingerprint,
    scan_nodes,
)
from ..config import Config
from ..db import Database
from ..errors import DatabaseError
from ..probes import IndexPlanCheckConfig, LatencyCheckConfig, ProbeConfig
from ..results import Result, ResultFields, Status
from ..state import Baseline, ProbeBaseline

__all__ = [
    "INDEX_SCAN_TYPES",
    "PlanVerdict",
    "analyze_plan",
    "check_settings",
    "evaluate_latency",
    "judge_index_plan",
    "judge_latency",
    "run_latency",
    "subjects",
]

log = structlog.get_logger(__name__)

#: Node types that count as using the expected index.
INDEX_SCAN_TYPES = frozenset({"Index Scan", "Index Only Scan", "Bitmap Index Scan"})
_CONNECTION_KINDS = frozenset({"unreachable", "auth"})


def check_settings(
    config: Config,
    latency: LatencyCheckConfig | None = None,
    index_plan: IndexPlanCheckConfig | None = None,
) -> tuple[LatencyCheckConfig, IndexPlanCheckConfig]:
    """The two checks' settings: given explicitly, else ``config.checks.latency`` /
    ``config.checks.index_plan``, else the defaults."""
    checks = config.checks
    lat = latency if latency is not None else getattr(checks, "latency", None)
    plan = index_plan if index_plan is not None else getattr(checks, "index_plan", None)
    return (
        lat if isinstance(lat, LatencyCheckConfig) else LatencyCheckConfig(),
        plan if isinstance(plan, IndexPlanCheckConfig) else IndexPlanCheckConfig(),
    )


def subjects(
    config: Config,
    probes: Sequence[ProbeConfig],
    *,
    latency: LatencyCheckConfig | None = None,
    index_plan: IndexPlanCheckConfig | None = None,
) -> list[tuple[str, str]]:
    """``(check, subject)`` pairs :func:`run_latency` produces (for ``error`` fallbacks)."""
    lat, plan = check_settings(config, latency, index_plan)
    out: list[tuple[str, str]] = []
    for p in probes:
        if lat.enabled:
            out.append(("latency", p.subject))
        if plan.enabled and p.expect_index is not None:
            out.append(("index_plan", p.subject))
    return out


# --------------------------------------------------------------------------- judge (pure)
# The measurement is :func:`~migration_watch.baseline.measure_probe` (a ProbeMeasurement), the
# same function that records the baseline, so both sides are measured alike.


def evaluate_latency(
    median: float, baseline: float, cfg: LatencyCheckConfig
) -> tuple[Status, float | None, float]:
    """(status, ratio median/baseline or None when the baseline is 0, limit in seconds)."""
    limit = baseline * (1.0 + cfg.max_regression)
    ratio = median / baseline if baseline > 0 else None
    regressed = median > limit and (median - baseline) > cfg.noise_floor.total_seconds()
    return (Status.FAIL if regressed else Status.PASS), ratio, limit


@dataclass(frozen=True)
class PlanVerdict:
    """What a plan says about a probe's expected index."""

    uses_index: bool
    seq_scan: bool
    scan_nodes: tuple[str, ...]
    index_nodes: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.uses_index and not self.seq_scan


def analyze_plan(plan: Any, index: str, table: str | None) -> PlanVerdict:
    """Walk an EXPLAIN JSON plan: is ``index`` scanned, is ``table`` sequentially scanned?

    Names are compared without schema (EXPLAIN's ``Index Name`` / ``Relation Name``).
    """
    index = index.rsplit(".", 1)[-1]
    table = None if table is None else table.rsplit(".", 1)[-1]
    uses: list[str] = []
    seq = False
    for n in plan_nodes(plan):
        if n.node_type in INDEX_SCAN_TYPES and n.index == index:
            uses.append(n.label())
        if table is not None and n.node_type == "Seq Scan" and n.relation == table:
            seq = True
    return PlanVerdict(
        uses_index=bool(uses),
        seq_scan=seq,
        scan_nodes=tuple(scan_nodes(plan)),
        index_nodes=tuple(uses),
    )


def judge_latency(
    probe: ProbeConfig,
    m: ProbeMeasurement,
    base: ProbeBaseline | None,
    cfg: LatencyCheckConfig,
) -> Result:
    """``latency`` of one probe: its median against the recorded baseline."""
    median = m.median_seconds
    observed: dict[str, Any] = {
        "median_seconds": median,
        "baseline_seconds": None,
        "ratio": None,
        "executions": m.executions,
        "min_seconds": min(m.timings),
        "max_seconds": max(m.timings),
        "planning_seconds": m.planning_seconds,
    }
    threshold: dict[str, Any] = {
        "max_regression": cfg.max_regression,
        "noise_floor_seconds": cfg.noise_floor.total_seconds(),
        "max_seconds": None,
    }
    details: dict[str, Any] = {
        "method": TIMING_METHOD,
        "timings": list(m.timings),
        "buffers": m.buffers(),
    }
    fields: ResultFields = {"observed": observed, "threshold": threshold, "details": details}
    if base is None:
        reason = (
            f"no baseline recorded for probe {probe.name}"
            f" (run `migration-watch baseline record`); median {median * 1000:.3f} ms"
        )
        return Result.skipped("latency", probe.subject, reason=reason, **fields)
    observed["baseline_seconds"] = base.median_seconds
    details["baseline_recorded_timings"] = list(base.timings)
    recorded = base.details.get("fingerprint")
    method = base.details.get("method", TIMING_METHOD)
    if (recorded is not None and recorded != probe_fingerprint(probe)) or method != TIMING_METHOD:
        why = "measured differently" if method != TIMING_METHOD else "its SQL or params changed"
        reason = (
            f"the baseline of probe {probe.name} is not comparable ({why} since it was"
            " recorded); record the baseline again"
        )
        return Result.skipped("latency", probe.subject, reason=reason, **fields)
    status, ratio, limit = evaluate_latency(median, base.median_seconds, cfg)
    observed["ratio"] = None if ratio is None else round(ratio, 6)
    threshold["max_seconds"] = limit
    change = "n/a" if ratio is None else f"{ratio - 1:+.1%}"
    verb = "above" if status is Status.FAIL else "within"
    message = (
        f"median {median * 1000:.3f} ms vs baseline {base.median_seconds * 1000:.3f} ms"
        f" ({change}), {verb} the +{cfg.max_regression:.0%} limit"
    )
    return Result.pass_if(status is Status.PASS, "latency", probe.subject, message, **fields)


def judge_index_plan(probe: ProbeConfig, m: ProbeMeasurement, base: ProbeBaseline | None) -> Result:
    """``index_plan`` of one probe: does its plan use the expected index, without a Seq Scan?"""
    assert probe.expect_index is not None
    v = analyze_plan(m.plan, probe.expect_index, probe.table)
    index = probe.index_name
    if v.ok:
        message = f"uses {index}: {', '.join(v.index_nodes)}"
    elif v.seq_scan:
        message = f"Seq Scan on {probe.table_name} instead of {index}" + (
            f" (also {', '.join(v.index_nodes)})" if v.uses_index else ""
        )
    else:
        others = ", ".join(v.scan_nodes) or "no scan"
        message = f"{index} is not used: {others}"
    details: dict[str, Any] = {"plan": plan_summary(m.plan)}
    if base is not None and "scan_nodes" in base.details:
        details["baseline_scan_nodes"] = list(base.details["scan_nodes"])
    return Result.pass_if(
        v.ok,
        "index_plan",
        probe.subject,
        message,
        observed={
            "uses_index": v.uses_index,
            "seq_scan": v.seq_scan,
            "scan_nodes": list(v.scan_nodes),
        },
        threshold={"expect_index": probe.expect_index, "table": probe.table},
        details=details,
    )


# --------------------------------------------------------------------------- the checks


def _watched_table(config: Config, probe: ProbeConfig) -> str | None:
    if probe.table is None:
        return None
    for t in config.migration.tables:
        if probe.table in (t.name, t.qualified):
            return t.qualified
    return probe.table


def run_latency(
    db: Database,
    config: Config,
    probes: Sequence[ProbeConfig],
    baseline: Baseline | None,
    now: datetime,
    *,
    latency: LatencyCheckConfig | None = None,
    index_plan: IndexPlanCheckConfig | None = None,
) -> list[Result]:
    """``latency`` and ``index_plan`` results for every probe. Never raises for a probe's
    failure: it becomes ``error`` results with the reason.

    ``latency`` / ``index_plan`` default to ``config.checks.latency`` / ``.index_plan``.
    """
    lat, plan = check_settings(config, latency, index_plan)
    results: list[Result] = []
    down: str | None = None
    for probe in probes:
        want_latency = lat.enabled
        want_plan = plan.enabled and probe.expect_index is not None
        if not (want_latency or want_plan):
            continue
        pairs = [c for c, ok in (("latency", want_latency), ("index_plan", want_plan)) if ok]
        table = _watched_table(config, probe)
        bound = log.bind(probe=probe.name)
        start = time.perf_counter()
        out: list[Result]
        try:
            if down is not None:
                raise DatabaseError(down, kind="unreachable")
            # index_plan alone needs one execution; latency reuses the median one's plan.
            m = (
                measure_probe(db, probe)
                if want_latency
                else measure_probe(db, probe, executions=1, warmup=0)
            )
            base = baseline.probe(probe.name) if baseline is not None else None
            out = []
            if want_latency:
                out.append(judge_latency(probe, m, base, lat))
            if want_plan:
                out.append(judge_index_plan(probe, m, base))
        except Exception as exc:  # noqa: BLE001 - a failing probe never kills the suite
            message = (
                str(exc)
                if isinstance(exc, DatabaseError)
                else db.redact(f"{type(exc).__name__}: {exc}")
            )
            if isinstance(exc, DatabaseError) and exc.kind in _CONNECTION_KINDS:
                down = message
            bound.warning("probe could not be measured", checks=pairs, error=message)
            out = [Result.errored(c, probe.subject, reason=message) for c in pairs]
        elapsed = time.perf_counter() - start
        for r in out:
            results.append(replace(r, table=table, measured_at=now, duration_seconds=elapsed))
            if r.status is Status.FAIL:
                bound.warning("probe check failed", check=r.check, message=r.message)
    return results
