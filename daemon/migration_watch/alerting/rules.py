"""Alert rules: one per check (plus the monitor's own signals), firing from the check status.

A rule never has thresholds of its own: the check decides ``pass`` / ``fail`` / ``error`` /
``skipped`` and the rule only decides how many evaluations make an alert (``for``), how many
make it resolve (``keep_firing_for``), its severity and its text. The alert name is
``MigrationWatch`` + the CamelCase rule key (``post_deploy_writes`` →
``MigrationWatchPostDeployWrites``).

Checks measured at cadence runs (slow, deliberate) fire on the first failing run (``for: 1``);
signals refreshed on every pulse (database reachability, log error counts, log sources) wait a
few evaluations (pulses) before firing, so one bad minute does not page.

Each rule yields up to three alerts per subject, told apart by labels:

- the *fail* alert (``severity`` of the rule) on ``fail``; an ``error`` or a ``skipped`` holds
  it as it is (a resolved notice is only sent after a real ``pass``);
- the *error* alert (label ``condition="error"``) on a sustained ``error`` (``error_for``
  consecutive evaluations); any measurement (pass, fail, skipped) resolves it;
- the *escalated* alert (``escalate_severity``, e.g. critical) when the failure lasts
  ``escalate_after`` evaluations (``log_errors``, ``legacy_errors``: "critical when sustained").
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from ..results import Result, Status
from .config import RULE_KEYS, AlertingConfig, Severity

__all__ = [
    "DEFAULT_RULES",
    "Rule",
    "RuleDefaults",
    "Source",
    "alert_name",
    "build_rules",
    "database_up_result",
    "format_value",
    "log_source_result",
    "render",
    "run_missed_result",
    "verdict_results",
]

#: What measures a rule's results: the watched database (at cadence runs or pulses), the
#: application logs, or the monitor itself. Error alerts of ``database`` rules are held while
#: the database is known to be down (``database_up`` pending or firing): one alert says it.
Source = Literal["database", "logs", "monitor"]


def alert_name(rule_key: str) -> str:
    """``post_deploy_writes`` → ``MigrationWatchPostDeployWrites``."""
    return "MigrationWatch" + "".join(part.capitalize() for part in rule_key.split("_") if part)


@dataclass(frozen=True)
class RuleDefaults:
    """The built-in behaviour of one rule key."""

    severity: Severity
    summary: str
    source: Source
    for_: int = 1
    keep_firing_for: int = 1
    error_for: int = 2
    escalate_after: int = 0
    escalate_severity: Severity = "critical"
    #: ``True``: evaluated on every pulse (``for`` counts pulses), else at cadence runs.
    pulse: bool = False


#: Defaults of every rule key (the checklist's rollback triggers).
DEFAULT_RULES: Mapping[str, RuleDefaults] = {
    "coverage": RuleDefaults(
        "critical", "Rows are missing the new column after the backfill", "database"
    ),
    "orphans": RuleDefaults(
        "critical", "Orphaned rows: legacy column set but new column NULL", "database"
    ),
    "post_deploy_writes": RuleDefaults(
        "critical", "Rows written after the deploy lack the new column", "database"
    ),
    "schema": RuleDefaults(
        "critical", "An expected index or column is missing or invalid", "database"
    ),
    "rls": RuleDefaults("critical", "Row level security does not use the new column", "database"),
    "query_ratio": RuleDefaults(
        "warning", "Queries on the legacy column are not falling", "database"
    ),
    "latency": RuleDefaults(
        "warning", "Probe query latency regressed against the pre-deploy baseline", "database"
    ),
    "index_plan": RuleDefaults(
        "warning", "A probe query no longer uses the expected index", "database"
    ),
    "log_errors": RuleDefaults(
        "warning",
        "Application error rate above the pre-deploy baseline",
        "logs",
        for_=10,
        error_for=10,
        escalate_after=60,
        pulse=True,
    ),
    "legacy_errors": RuleDefaults(
        "warning",
        "Legacy-column-related errors in the application logs",
        "logs",
        for_=1,
        error_for=10,
        escalate_after=60,
        pulse=True,
    ),
    "database_up": RuleDefaults(
        "critical",
        "migration-watch cannot reach the database",
        "monitor",
        for_=5,
        error_for=5,
        pulse=True,
    ),
    "run_missed": RuleDefaults("warning", "A scheduled migration-watch run was missed", "monitor"),
    "log_source": RuleDefaults(
        "warning",
        "An application log source cannot be read",
        "monitor",
        for_=10,
        error_for=10,
        pulse=True,
    ),
    "verdict": RuleDefaults(
        "critical", "A success criterion of the migration week is not met", "monitor"
    ),
}
assert tuple(DEFAULT_RULES) == RULE_KEYS, "a default for every rule key, in order"


@dataclass(frozen=True)
class Rule:
    """One rule with the configuration applied."""

    key: str
    alertname: str
    enabled: bool
    severity: Severity
    for_: int
    keep_firing_for: int
    repeat_interval: timedelta
    error_for: int
    error_severity: Severity
    escalate_after: int
    escalate_severity: Severity
    source: Source
    pulse: bool
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def escalates(self) -> bool:
        return self.escalate_after > 0 and self.escalate_severity != self.severity


def build_rules(config: AlertingConfig) -> dict[str, Rule]:
    """Every rule key with its defaults and the configuration's overrides."""
    rules: dict[str, Rule] = {}
    for key, d in DEFAULT_RULES.items():
        c = config.rules.get(key)
        name = alert_name(key)
        annotations = {
            "summary": d.summary,
            "description": "{subject}: {message}",
            "runbook_url": f"{config.runbook_url}#{name.lower()}",
        }
        labels = dict(config.labels)
        if c is not None:
            annotations.update(c.annotations)
            labels.update(c.labels)

        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        rules[key] = Rule(
            key=key,
            alertname=name,
            enabled=pick(c.enabled if c else None, True),
            severity=pick(c.severity if c else None, d.severity),
            for_=pick(c.for_ if c else None, d.for_),
            keep_firing_for=pick(c.keep_firing_for if c else None, d.keep_firing_for),
            repeat_interval=pick(c.repeat_interval if c else None, config.repeat_interval),
            error_for=pick(c.error_for if c else None, d.error_for),
            error_severity=pick(c.error_severity if c else None, "warning"),
            escalate_after=pick(c.escalate_after if c else None, d.escalate_after),
            escalate_severity=pick(c.escalate_severity if c else None, d.escalate_severity),
            source=d.source,
            pulse=d.pulse,
            labels=labels,
            annotations=annotations,
        )
    return rules


# --------------------------------------------------------------------------- templates

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}")


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.4g}"
    if isinstance(value, str | int):
        return str(value)
    return json.dumps(value, default=str, separators=(",", ":"), sort_keys=True)


def format_value(observed: Mapping[str, Any], *, limit: int = 300) -> str:
    """The observed values in one short line: ``missing_new=12, backfill_ratio=0.9988``."""
    text = ", ".join(f"{k}={_scalar(v)}" for k, v in observed.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(template: str, context: Mapping[str, Any]) -> str:
    """Fill ``{name}`` and ``{name.key}`` placeholders; unknown ones are left as they are."""

    def repl(m: re.Match[str]) -> str:
        value: Any = context
        for part in m.group(1).split("."):
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            else:
                return m.group(0)
        return _scalar(value)

    return _PLACEHOLDER.sub(repl, template)


# --------------------------------------------------------------------------- monitor results


def database_up_result(
    up: bool, *, error: str | None = None, now: datetime | None = None
) -> Result:
    """The ``database_up`` rule's input from a pulse's probe (``fail`` while unreachable)."""
    return Result(
        check="database_up",
        subject="database",
        status=Status.PASS if up else Status.FAIL,
        observed={"database_up": 1 if up else 0},
        message="the database answered" if up else f"the database is unreachable: {error or '?'}",
        measured_at=now,
    )


def run_missed_result(
    missed: int, *, late_by: timedelta | None = None, now: datetime | None = None
) -> Result:
    """``run_missed``: ``fail`` when a run just caught up ``missed`` (> 0) planned runs."""
    observed: dict[str, Any] = {"missed": missed}
    if late_by is not None:
        observed["late_by_seconds"] = round(late_by.total_seconds(), 3)
    return Result(
        check="run_missed",
        subject="cadence",
        status=Status.FAIL if missed > 0 else Status.PASS,
        observed=observed,
        message=(
            f"{missed} planned run(s) missed while the daemon was down; a late run replaced them"
            if missed > 0
            else "runs on schedule"
        ),
        measured_at=now,
    )


def log_source_result(
    source: str, up: bool | None, *, error: str | None = None, now: datetime | None = None
) -> Result:
    """``log_source``: ``fail`` while a source cannot be read; ``None``: not known (error)."""
    status = Status.ERROR if up is None else (Status.PASS if up else Status.FAIL)
    return Result(
        check="log_source",
        subject=source,
        status=status,
        observed={} if up is None else {"log_source_up": 1 if up else 0},
        message=(
            f"log source {source} is readable"
            if up
            else f"log source {source} cannot be read: {error or 'unknown state'}"
        ),
        measured_at=now,
    )


def verdict_results(
    criteria: Mapping[str, str],
    *,
    evidence: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> list[Result]:
    """``verdict``: one result per criterion; ``not_met`` fails, ``met`` passes, the rest
    (``not_measured``, ``pending``) are ``skipped``."""
    out = []
    for criterion, status in criteria.items():
        s = {"not_met": Status.FAIL, "met": Status.PASS}.get(status, Status.SKIPPED)
        note = (evidence or {}).get(criterion, "")
        out.append(
            Result(
                check="verdict",
                subject=criterion,
                status=s,
                observed={"criterion": criterion, "status": status},
                message=f"criterion {criterion}: {status}" + (f" ({note})" if note else ""),
                measured_at=now,
            )
        )
    return out
