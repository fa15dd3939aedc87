"""The exporter: the runner's latest answers as Prometheus families, and the registry.

A scrape only reads :meth:`Runner.view` (an immutable copy): it never touches the database.
Values of a check that could not be measured in the latest run are left out (absent, not stale);
its ``migration_watch_check_status{status="error"}`` says why. Every family comes from the
catalogue in :mod:`migration_watch.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from . import __version__
from .checks.query_ratio import USAGES
from .config import Config
from .metrics import counter, gauge, info
from .results import Result, Status
from .runner import Runner

__all__ = ["MigrationWatchCollector", "build_registry"]


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, int | float) and not (isinstance(v, float) and math.isnan(v)):
        return float(v)
    return None


class MigrationWatchCollector(Collector):
    """Yields every ``migration_watch_*`` family from the runner's latest view."""

    def __init__(self, config: Config, runner: Runner) -> None:
        self._config = config
        self._runner = runner

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        v = self._runner.view()
        m = self._config.migration
        build = info("build")
        build.add_metric([__version__], {})
        yield build
        mig = gauge("migration_info")
        mig.add_metric([m.name, m.legacy_column, m.new_column], 1.0)
        yield mig

        up = gauge("database_up")
        if v.database_up is not None:
            up.add_metric([], 1.0 if v.database_up else 0.0)
        yield up

        measured = [r for r in v.results if r.status is not Status.ERROR]
        yield from self._table_values(measured)

        status = gauge("check_status")
        for r in v.results:
            for s in Status:
                status.add_metric([r.check, r.subject, s.value], 1.0 if r.status is s else 0.0)
        yield status

        calls = counter("statement_calls")
        for u in USAGES:
            calls.add_metric([u], float(v.statement_calls_total.get(u, 0)))
        yield calls
        ratio = gauge("legacy_statement_ratio")
        if v.legacy_statement_ratio is not None:
            ratio.add_metric([], v.legacy_statement_ratio)
        yield ratio

        dur = gauge("check_duration_seconds")
        for check, seconds in sorted(v.check_durations.items()):
            dur.add_metric([check], seconds)
        yield dur
        run_dur = gauge("run_duration_seconds")
        last_run = gauge("last_run_timestamp_seconds")
        if v.last_run is not None:
            run_dur.add_metric([], v.last_run.duration_seconds)
            last_run.add_metric([], v.last_run.started_at.timestamp())
        yield run_dur
        yield last_run
        success = gauge("last_success_timestamp_seconds")
        for check, at in sorted(v.last_success.items()):
            success.add_metric([check], at.timestamp())
        yield success
        errors = counter("check_errors")
        for check, n in sorted(v.check_errors_total.items()):
            errors.add_metric([check], float(n))
        yield errors
        runs = counter("runs_completed")
        runs.add_metric([], float(v.runs_completed))
        yield runs

    def _table_values(self, results: list[Result]) -> Iterator[Metric]:
        # family -> (check, observed key) it is read from
        families = {
            "table_rows": ("coverage", "total"),
            "rows_missing": ("coverage", "missing_new"),
            "rows_orphaned": ("orphans", "orphans"),
            "rows_post_deploy_missing": ("post_deploy_writes", "post_deploy_missing"),
            "backfill_ratio": ("coverage", "backfill_ratio"),
        }
        for name, (check, key) in families.items():
            fam = gauge(name)
            for r in results:
                if r.check == check and r.status is not Status.SKIPPED:
                    value = _num(r.observed.get(key))
                    if value is not None:
                        fam.add_metric([r.subject], value)
            yield fam
        scans = gauge("index_scans")
        valid = gauge("index_valid")
        rls_on = gauge("rls_enabled")
        policies = gauge("rls_policies")
        for r in results:
            if r.check == "index_usage" and r.status is Status.PASS and r.table:
                n = _num(r.observed.get("idx_scan"))
                if n is not None:
                    scans.add_metric([r.table, str(r.details.get("index", ""))], n)
            elif r.check == "schema" and r.status is not Status.SKIPPED:
                for index, state in dict(r.observed.get("indexes") or {}).items():
                    ok = all(state.get(k) for k in ("exists", "valid", "ready"))
                    valid.add_metric([r.subject, index], 1.0 if ok else 0.0)
            elif r.check == "rls" and r.status is not Status.SKIPPED:
                rls_on.add_metric([r.subject], 1.0 if r.observed.get("rls_enabled") else 0.0)
                policies.add_metric([r.subject, "new"], float(r.observed.get("policies_on_new", 0)))
                policies.add_metric(
                    [r.subject, "legacy"], float(r.observed.get("policies_on_legacy", 0))
                )
        probe_latency = gauge("probe_latency_seconds")
        probe_baseline = gauge("probe_baseline_seconds")
        for r in results:
            if r.check == "latency":
                name = r.subject.removeprefix("probe:")
                latency = _num(r.observed.get("median_seconds"))
                base = _num(r.observed.get("baseline_seconds"))
                if latency is not None:
                    probe_latency.add_metric([name], latency)
                if base is not None:
                    probe_baseline.add_metric([name], base)
        yield scans
        yield valid
        yield rls_on
        yield policies
        yield probe_latency
        yield probe_baseline


def build_registry(
    config: Config, runner: Runner, components: Iterable[Collector] = ()
) -> tuple[CollectorRegistry, MigrationWatchCollector]:
    """A fresh registry holding migration-watch's collectors only: the runner's view first,
    then each component's families, each registered once (no process/GC collectors, so every
    exported name carries the ``migration_watch_`` prefix)."""
    registry = CollectorRegistry(auto_describe=False)
    collector = MigrationWatchCollector(config, runner)
    registry.register(collector)
    for component in components:
        registry.register(component)
    return registry, collector
