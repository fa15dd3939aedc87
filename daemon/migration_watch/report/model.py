"""The report's data: :class:`ReportData` and its rows, points and histories, each with its
part of the JSON document (``schemas/report.schema.json``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from ..cadence import RunState
from ..clock import isoformat_or_none as _iso
from ..verdict import Verdict

if TYPE_CHECKING:
    from .timeline import TimelineEntry

__all__ = [
    "FORMATS",
    "REPORT_VERSION",
    "RUN_STATES",
    "STATUS_ORDER",
    "CheckHistory",
    "CheckPoint",
    "LatencyPoint",
    "LogWindow",
    "ReportData",
    "ReportFormat",
    "RunRow",
    "SeriesPoint",
]

REPORT_VERSION = 1
FORMATS = ("markdown", "html", "json")
ReportFormat = Literal["markdown", "html", "json"]
#: Result statuses in column order; run states in tally order.
STATUS_ORDER = ("pass", "fail", "error", "skipped")
RUN_STATES = tuple(s.value for s in RunState)


@dataclass(frozen=True)
class CheckPoint:
    """One result of one check on one subject."""

    run_id: int
    at: datetime
    status: str
    value: float | None
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "at": self.at.isoformat(),
            "status": self.status,
            "value": self.value,
            "message": self.message,
        }


@dataclass(frozen=True)
class CheckHistory:
    """A check's results on one subject over time (oldest first)."""

    check: str
    subject: str
    points: tuple[CheckPoint, ...]

    @property
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUS_ORDER, 0)
        for p in self.points:
            out[p.status] = out.get(p.status, 0) + 1
        return out

    @property
    def latest(self) -> CheckPoint | None:
        return self.points[-1] if self.points else None

    def to_json(self) -> dict[str, Any]:
        latest = self.latest
        return {
            "check": self.check,
            "subject": self.subject,
            "counts": self.counts,
            "latest": None if latest is None else latest.to_json(),
            "history": [p.to_json() for p in self.points],
        }


@dataclass(frozen=True)
class SeriesPoint:
    """A chart point; ``value`` None marks a run whose check could not measure (error)."""

    run_id: int
    at: datetime
    value: float | None

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "at": self.at.isoformat(), "value": self.value}


@dataclass(frozen=True)
class LatencyPoint:
    """A probe's median latency and its baseline at one run (None when not measured)."""

    run_id: int
    at: datetime
    median_seconds: float | None
    baseline_seconds: float | None
    ratio: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "at": self.at.isoformat(),
            "median_seconds": self.median_seconds,
            "baseline_seconds": self.baseline_seconds,
            "ratio": self.ratio,
        }


@dataclass(frozen=True)
class LogWindow:
    """The log lines of one run's window (``since`` → ``at``), from its ``log_errors``,
    ``legacy_errors`` and ``legacy_log_ratio`` results; None where a check did not measure.

    ``expected_errors``: the errors the window's lines would hold at the pre-deploy error rate
    (``baseline_error_rate * lines``), the line the errors are drawn against.
    """

    run_id: int
    at: datetime
    since: datetime | None
    lines: int | None
    errors: int | None
    expected_errors: float | None
    legacy_references: int | None
    new_references: int | None
    legacy_errors: int | None

    @property
    def hours(self) -> float | None:
        if self.since is None or self.at <= self.since:
            return None
        return (self.at - self.since).total_seconds() / 3600

    def per_hour(self, value: float | None) -> float | None:
        hours = self.hours
        return None if value is None or hours is None else value / hours

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "at": self.at.isoformat(),
            "since": _iso(self.since),
            "hours": self.hours,
            "lines": self.lines,
            "errors": self.errors,
            "expected_errors": self.expected_errors,
            "legacy_references": self.legacy_references,
            "new_references": self.new_references,
            "legacy_errors": self.legacy_errors,
            "errors_per_hour": self.per_hour(self.errors),
            "pre_deploy_errors_per_hour": self.per_hour(self.expected_errors),
            "legacy_references_per_hour": self.per_hour(self.legacy_references),
            "legacy_errors_per_hour": self.per_hour(self.legacy_errors),
        }


@dataclass(frozen=True)
class RunRow:
    """One run of the plan (``index`` set) or an extra run, with its stored run when any."""

    index: int | None
    at: datetime
    day: int
    phase: str
    state: str
    ran_at: datetime | None = None
    delay_seconds: float | None = None
    run_id: int | None = None
    status: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "at": self.at.isoformat(),
            "day": self.day,
            "phase": self.phase,
            "state": self.state,
            "ran_at": None if self.ran_at is None else self.ran_at.isoformat(),
            "delay_seconds": self.delay_seconds,
            "run_id": self.run_id,
            "status": self.status,
        }


@dataclass(frozen=True)
class ReportData:
    """Everything a report shows, read once from the store at ``generated_at``.

    ``phase``: ``not_deployed`` (T0 unknown), ``before_deploy``, a cadence phase name, or
    ``complete`` (from the verdict time on). ``verdict_source``: ``stored`` (the final verdict
    saved at the end of the week) or ``computed`` (evaluated for this report).
    """

    generated_at: datetime
    migration: str
    legacy_column: str
    new_column: str
    tables: tuple[str, ...]
    deployed_at: datetime | None
    deployment_source: str | None
    verdict_at: datetime | None
    phase: str
    day: int
    next_run_at: datetime | None
    tally: Mapping[str, int]
    runs: tuple[RunRow, ...]
    checks: tuple[CheckHistory, ...]
    missing_rows: Mapping[str, tuple[SeriesPoint, ...]]
    legacy_ratio: tuple[SeriesPoint, ...]
    latency: Mapping[str, tuple[LatencyPoint, ...]]
    verdict: Verdict | None
    verdict_source: str | None = None
    latency_tolerance: float = 0.10
    state_location: str = ""
    unfinished_runs: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: The incident timeline (:mod:`.timeline`), earliest first.
    timeline: tuple[TimelineEntry, ...] = ()
    #: One window per run that summarised the logs, oldest first.
    logs: tuple[LogWindow, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The document of ``report --format json`` (``schemas/report.schema.json``)."""
        return {
            "report_version": REPORT_VERSION,
            "generated_at": self.generated_at.isoformat(),
            "migration": {
                "name": self.migration,
                "legacy_column": self.legacy_column,
                "new_column": self.new_column,
                "tables": list(self.tables),
            },
            "deployment": {
                "deployed_at": _iso(self.deployed_at),
                "source": self.deployment_source,
                "verdict_at": _iso(self.verdict_at),
            },
            "progress": {
                "phase": self.phase,
                "day": self.day,
                "next_run_at": _iso(self.next_run_at),
                "runs": dict(self.tally),
                "unfinished_runs": self.unfinished_runs,
            },
            "runs": [r.to_json() for r in self.runs],
            "checks": [c.to_json() for c in self.checks],
            "series": {
                "missing_rows": {
                    t: [p.to_json() for p in pts] for t, pts in self.missing_rows.items()
                },
                "legacy_ratio": [p.to_json() for p in self.legacy_ratio],
                "latency": {k: [p.to_json() for p in pts] for k, pts in self.latency.items()},
                "logs": [w.to_json() for w in self.logs],
            },
            "timeline": [e.to_json() for e in self.timeline],
            "verdict": None if self.verdict is None else self.verdict.to_json(),
            "verdict_source": self.verdict_source,
        }
