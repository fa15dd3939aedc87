"""Prometheus metrics: a custom collector over the runner's latest answers.

A scrape only reads :meth:`Runner.view` (an immutable copy): it never touches the database.
Values of a check that could not be measured in the latest run are left out (absent, not stale);
its ``migration_watch_check_status{status="error"}`` says why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from . import __version__
from .checks.query_ratio import USAGES
from .config import Config
from .results import Result, Status
from .runner import Runner

__all__ = ["METRIC_NAMES", "MigrationWatchCollector", "build_registry", "exported_metric_names"]

_P = "migration_watch_"

#: Every metric family this module exports (the README's metrics reference documents each).
METRIC_NAMES = (
    "migration_watch_build_info",
    "migration_watch_migration_info",
    "migration_watch_database_up",
    "migration_watch_table_rows",
    "migration_watch_rows_missing",
    "migration_watch_rows_orphaned",
    "migration_watch_rows_post_deploy_missing",
    "migration_watch_backfill_ratio",
    "migration_watch_check_status",
    "migration_watch_index_scans",
    "migration_watch_index_valid",
    "migration_watch_rls_enabled",
    "migration_watch_rls_policies",
    "migration_watch_statement_calls_total",
    "migration_watch_legacy_statement_ratio",
    "migration_watch_check_duration_seconds",
    "migration_watch_run_duration_seconds",
    "migration_watch_last_run_timestamp_seconds",
    "migration_watch_last_success_timestamp_seconds",
    "migration_watch_check_errors_total",
    "migration_watch_runs_completed_total",
    "migration_watch_probe_latency_seconds",
    "migration_watch_probe_baseline_seconds",
)


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
        #: Later features (cadence, logs, alerting) add their own families here.
        self.extra: list[Callable[[], Iterable[Metric]]] = []

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        v = self._runner.view()
        m = self._config.migration
        info = InfoMetricFamily(_P + "build", "Version of migration-watch.", labels=["version"])
        info.add_metric([__version__], {})
        yield info
        mig = GaugeMetricFamily(
            _P + "migration_info",
            "The watched migration (always 1).",
            labels=["name", "legacy_column", "new_column"],
        )
        mig.add_metric([m.name, m.legacy_column, m.new_column], 1.0)
        yield mig

        up = GaugeMetricFamily(
            _P + "database_up", "1 if the watched database answered the latest probe, else 0."
        )
        if v.database_up is not None:
            up.add_metric([], 1.0 if v.database_up else 0.0)
        yield up

        measured = [r for r in v.results if r.status is not Status.ERROR]
        yield from self._table_values(measured)

        status = GaugeMetricFamily(
            _P + "check_status",
            "Latest status of each check and subject, one-hot over pass|fail|error|skipped.",
            labels=["check", "subject", "status"],
        )
        for r in v.results:
            for s in Status:
                status.add_metric([r.check, r.subject, s.value], 1.0 if r.status is s else 0.0)
        yield status

        calls = CounterMetricFamily(
            _P + "statement_calls",
            "Calls of statements on the watched tables by column usage (pg_stat_statements"
            " deltas accumulated since start-up).",
            labels=["usage"],
        )
        for u in USAGES:
            calls.add_metric([u], float(v.statement_calls_total.get(u, 0)))
        yield calls
        ratio = GaugeMetricFamily(
            _P + "legacy_statement_ratio",
            "Share of calls using only the legacy column over the latest poll interval.",
        )
        if v.legacy_statement_ratio is not None:
            ratio.add_metric([], v.legacy_statement_ratio)
        yield ratio

        dur = GaugeMetricFamily(
            _P + "check_duration_seconds",
            "Time spent measuring each check in the latest run.",
            labels=["check"],
        )
        for check, seconds in sorted(v.check_durations.items()):
            dur.add_metric([check], seconds)
        yield dur
        run_dur = GaugeMetricFamily(
            _P + "run_duration_seconds", "Wall time of the latest full check run."
        )
        last_run = GaugeMetricFamily(
            _P + "last_run_timestamp_seconds", "Unix time of the latest full check run."
        )
        if v.last_run is not None:
            run_dur.add_metric([], v.last_run.duration_seconds)
            last_run.add_metric([], v.last_run.started_at.timestamp())
        yield run_dur
        yield last_run
        success = GaugeMetricFamily(
            _P + "last_success_timestamp_seconds",
            "Unix time of the latest run in which the check could be measured (no error).",
            labels=["check"],
        )
        for check, at in sorted(v.last_success.items()):
            success.add_metric([check], at.timestamp())
        yield success
        errors = CounterMetricFamily(
            _P + "check_errors",
            "Check results that could not be measured (status error), by check.",
            labels=["check"],
        )
        for check, n in sorted(v.check_errors_total.items()):
            errors.add_metric([check], float(n))
        yield errors
        runs = CounterMetricFamily(_P + "runs_completed", "Full check runs completed.")
        runs.add_metric([], float(v.runs_completed))
        yield runs
        for extra in self.extra:
            yield from extra()

    def _table_values(self, results: list[Result]) -> Iterator[Metric]:
        families = {
            "table_rows": ("Rows in the watched table.", "coverage", "total"),
            "rows_missing": ("Rows whose new column is NULL.", "coverage", "missing_new"),
            "rows_orphaned": (
                "Rows with the legacy column set but the new column NULL.",
                "orphans",
                "orphans",
            ),
            "rows_post_deploy_missing": (
                "Rows created at or after the deployment without the new column.",
                "post_deploy_writes",
                "post_deploy_missing",
            ),
            "backfill_ratio": (
                "Share of rows that have the new column (0-1).",
                "coverage",
                "backfill_ratio",
            ),
        }
        for name, (doc, check, key) in families.items():
            fam = GaugeMetricFamily(_P + name, doc, labels=["table"])
            for r in results:
                if r.check == check and r.status is not Status.SKIPPED:
                    value = _num(r.observed.get(key))
                    if value is not None:
                        fam.add_metric([r.subject], value)
            yield fam
        scans = GaugeMetricFamily(
            _P + "index_scans",
            "Index scans of each expected index since statistics reset (pg_stat_user_indexes).",
            labels=["table", "index"],
        )
        valid = GaugeMetricFamily(
            _P + "index_valid",
            "1 if the expected index exists and is valid and ready, else 0.",
            labels=["table", "index"],
        )
        rls_on = GaugeMetricFamily(
            _P + "rls_enabled", "1 if row-level security is enabled on the table.", labels=["table"]
        )
        policies = GaugeMetricFamily(
            _P + "rls_policies",
            "RLS policies referencing the new or the legacy column.",
            labels=["table", "column"],
        )
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
        probe_latency = GaugeMetricFamily(
            _P + "probe_latency_seconds",
            "Median server execution time of each probe query in the latest run.",
            labels=["probe"],
        )
        probe_baseline = GaugeMetricFamily(
            _P + "probe_baseline_seconds",
            "Recorded baseline of each probe query (migration-watch baseline record).",
            labels=["probe"],
        )
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
    config: Config, runner: Runner
) -> tuple[CollectorRegistry, MigrationWatchCollector]:
    """A fresh registry holding only migration-watch's collector (no process/GC collectors,
    so every exported name carries the ``migration_watch_`` prefix)."""
    registry = CollectorRegistry(auto_describe=False)
    collector = MigrationWatchCollector(config, runner)
    registry.register(collector)
    return registry, collector


def exported_metric_names(registry: CollectorRegistry) -> frozenset[str]:
    """The sample names a registry exports (counters with ``_total``, info with ``_info``),
    whether or not the families have samples right now."""
    names: set[str] = set()
    for family in registry.collect():
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        names.add(family.name + suffix)
    return frozenset(names)
