"""The metric catalogue: every family the daemon exports, declared once (name, type, help,
labels, owner), and the factories the collectors build their families with.

A leaf module (prometheus-client only), so every part can import it. The collectors are
:class:`migration_watch.exporter.MigrationWatchCollector` (the runner's view) and the
components' ``collect`` faces (week, alerting, logs); the README's metrics table and the tests
of ``alerts/`` and ``dashboards/`` are checked against :data:`CATALOGUE`.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

__all__ = [
    "CATALOGUE",
    "METRIC_NAMES",
    "FamilySpec",
    "counter",
    "exported_metric_names",
    "gauge",
    "info",
]

PREFIX = "migration_watch_"
_COUNTER, _GAUGE, _INFO = "counter", "gauge", "info"


@dataclass(frozen=True)
class FamilySpec:
    """One metric family: its name (without the prefix nor ``_total``/``_info``), type, help
    text and label names. The only place a family is declared."""

    name: str
    type: str  # counter | gauge | info
    help: str
    labels: tuple[str, ...] = ()
    #: The part that exports it: runner | week | alerting | logs.
    owner: str = "runner"

    @property
    def family_name(self) -> str:
        return PREFIX + self.name

    @property
    def sample_name(self) -> str:
        """The name a scrape shows (``_total`` for counters, ``_info`` for info)."""
        return self.family_name + {_COUNTER: "_total", _INFO: "_info"}.get(self.type, "")


def _spec(name: str, type_: str, help_: str, *labels: str, owner: str = "runner") -> FamilySpec:
    return FamilySpec(name, type_, help_, labels, owner)


#: Every family the daemon exports, grouped by the part that exports it; the README's metrics
#: table, the tests of ``alerts/`` and ``dashboards/`` and every collector read it.
CATALOGUE: tuple[FamilySpec, ...] = (
    # the runner's latest answers (MigrationWatchCollector)
    _spec("build", _INFO, "Version of migration-watch.", "version"),
    _spec(
        "migration_info",
        _GAUGE,
        "The watched migration (always 1).",
        "name",
        "legacy_column",
        "new_column",
    ),
    _spec("database_up", _GAUGE, "1 if the watched database answered the latest probe, else 0."),
    _spec("table_rows", _GAUGE, "Rows in the watched table.", "table"),
    _spec("rows_missing", _GAUGE, "Rows whose new column is NULL.", "table"),
    _spec(
        "rows_orphaned",
        _GAUGE,
        "Rows with the legacy column set but the new column NULL.",
        "table",
    ),
    _spec(
        "rows_post_deploy_missing",
        _GAUGE,
        "Rows created at or after the deployment without the new column.",
        "table",
    ),
    _spec("backfill_ratio", _GAUGE, "Share of rows that have the new column (0-1).", "table"),
    _spec(
        "check_status",
        _GAUGE,
        "Latest status of each check and subject, one-hot over pass|fail|error|skipped.",
        "check",
        "subject",
        "status",
    ),
    _spec(
        "index_scans",
        _GAUGE,
        "Index scans of each expected index since statistics reset (pg_stat_user_indexes).",
        "table",
        "index",
    ),
    _spec(
        "index_valid",
        _GAUGE,
        "1 if the expected index exists and is valid and ready, else 0.",
        "table",
        "index",
    ),
    _spec("rls_enabled", _GAUGE, "1 if row-level security is enabled on the table.", "table"),
    _spec(
        "rls_policies",
        _GAUGE,
        "RLS policies referencing the new or the legacy column.",
        "table",
        "column",
    ),
    _spec(
        "statement_calls",
        _COUNTER,
        "Calls of statements on the watched tables by column usage (pg_stat_statements"
        " deltas accumulated since start-up).",
        "usage",
    ),
    _spec(
        "legacy_statement_ratio",
        _GAUGE,
        "Share of calls using only the legacy column over the latest poll interval.",
    ),
    _spec(
        "check_duration_seconds",
        _GAUGE,
        "Time spent measuring each check in the latest run.",
        "check",
    ),
    _spec("run_duration_seconds", _GAUGE, "Wall time of the latest full check run."),
    _spec("last_run_timestamp_seconds", _GAUGE, "Unix time of the latest full check run."),
    _spec(
        "last_success_timestamp_seconds",
        _GAUGE,
        "Unix time of the latest run in which the check could be measured (no error).",
        "check",
    ),
    _spec(
        "check_errors",
        _COUNTER,
        "Check results that could not be measured (status error), by check.",
        "check",
    ),
    _spec("runs_completed", _COUNTER, "Full check runs completed."),
    _spec(
        "probe_latency_seconds",
        _GAUGE,
        "Median server execution time of each probe query in the latest run.",
        "probe",
    ),
    _spec(
        "probe_baseline_seconds",
        _GAUGE,
        "Recorded baseline of each probe query (migration-watch baseline record).",
        "probe",
    ),
    # the week (week.Week)
    _spec(
        "cadence_day", _GAUGE, "Day of the monitoring week (1-7; 8 after the week).", owner="week"
    ),
    _spec(
        "next_run_timestamp_seconds",
        _GAUGE,
        "Unix time of the next planned cadence run.",
        owner="week",
    ),
    _spec("deployed_timestamp_seconds", _GAUGE, "Unix time of the deployment (T0).", owner="week"),
    _spec(
        "runs",
        _COUNTER,
        "Cadence runs by state (done, late, missed, extra).",
        "state",
        owner="week",
    ),
    _spec(
        "verdict",
        _GAUGE,
        "Success criteria of the week, one-hot over met|not_met|not_measured|pending.",
        "criterion",
        "status",
        owner="week",
    ),
    # alerting (alerting.engine.Alerting)
    _spec(
        "notifications",
        _COUNTER,
        "Notification delivery attempts by receiver and result (sent: 2xx; failed: will be"
        " retried; dropped: permanent failure or receiver disabled).",
        "receiver",
        "result",
        owner="alerting",
    ),
    _spec(
        "outbox_size", _GAUGE, "Notifications waiting in the outbox for delivery.", owner="alerting"
    ),
    _spec(
        "outbox_oldest_age_seconds",
        _GAUGE,
        "Age of the oldest notification waiting in the outbox (0 when empty).",
        owner="alerting",
    ),
    _spec(
        "alerts",
        _GAUGE,
        "Alerts of the daemon's own rules by state (pending, firing) and severity.",
        "state",
        "severity",
        owner="alerting",
    ),
    # application logs (logs.watch.LogWatch)
    _spec(
        "log_lines",
        _COUNTER,
        "Log lines read by source and class (class all: every line).",
        "source",
        "class",
        owner="logs",
    ),
    _spec("log_bytes", _COUNTER, "Log bytes read.", "source", owner="logs"),
    _spec(
        "log_parse_errors", _COUNTER, "Log lines that could not be parsed.", "source", owner="logs"
    ),
    _spec(
        "log_truncated_lines",
        _COUNTER,
        "Log lines longer than max_line_bytes (classified on their first part).",
        "source",
        owner="logs",
    ),
    _spec(
        "log_rotations",
        _COUNTER,
        "Rotations detected (rename or truncate).",
        "source",
        owner="logs",
    ),
    _spec(
        "log_lag_bytes",
        _GAUGE,
        "Bytes written but not read yet (size - offset).",
        "source",
        owner="logs",
    ),
    _spec("log_source_up", _GAUGE, "1 if the log source can be read.", "source", owner="logs"),
)

_BY_NAME = {spec.name: spec for spec in CATALOGUE}
_CLASSES = {_COUNTER: CounterMetricFamily, _GAUGE: GaugeMetricFamily, _INFO: InfoMetricFamily}

#: The sample names of the runner's families (:class:`MigrationWatchCollector`); the other
#: parts' names are in :data:`CATALOGUE` under their owner.
METRIC_NAMES = tuple(spec.sample_name for spec in CATALOGUE if spec.owner == "runner")


def _new(name: str, type_: str) -> Metric:
    spec = _BY_NAME[name]  # KeyError: the family is not declared in the catalogue
    if spec.type != type_:
        raise TypeError(f"{spec.family_name} is a {spec.type}, not a {type_}")
    family: Metric = _CLASSES[type_](spec.family_name, spec.help, labels=list(spec.labels))
    return family


def gauge(name: str) -> GaugeMetricFamily:
    """A new, empty gauge family for the catalogue entry ``name``."""
    family = _new(name, _GAUGE)
    assert isinstance(family, GaugeMetricFamily)
    return family


def counter(name: str) -> CounterMetricFamily:
    """A new, empty counter family for the catalogue entry ``name``."""
    family = _new(name, _COUNTER)
    assert isinstance(family, CounterMetricFamily)
    return family


def info(name: str) -> InfoMetricFamily:
    """A new, empty info family for the catalogue entry ``name``."""
    family = _new(name, _INFO)
    assert isinstance(family, InfoMetricFamily)
    return family


def exported_metric_names(registry: CollectorRegistry) -> frozenset[str]:
    """The sample names a registry exports (counters with ``_total``, info with ``_info``),
    whether or not the families have samples right now."""
    names: set[str] = set()
    for family in registry.collect():
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        names.add(family.name + suffix)
    return frozenset(names)
