"""The rows a state store takes and returns (frozen dataclasses, the same for every backend)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from migration_watch.cadence import RunState
from migration_watch.results import Result, Status

__all__ = [
    "AlertStateRow",
    "Baseline",
    "Deployment",
    "LogCheckpoint",
    "LogFileCheckpoint",
    "OutboxItem",
    "OutboxMessage",
    "ProbeBaseline",
    "RunRecord",
    "StatementBaseline",
    "StoredResult",
    "VerdictRecord",
]


@dataclass(frozen=True)
class Deployment:
    """T0 and where it came from (``config`` | ``cli`` | ``marker``)."""

    deployed_at: datetime
    source: str
    recorded_at: datetime


@dataclass(frozen=True)
class RunRecord:
    """One row of ``runs``. ``finished_at`` is None while running, or if the run was killed."""

    id: int
    planned_index: int | None
    planned_at: datetime | None
    started_at: datetime
    finished_at: datetime | None
    state: RunState
    delay_seconds: float
    superseded: tuple[int, ...]
    status: Status | None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


@dataclass(frozen=True)
class StoredResult:
    """A result with the run it belongs to, for per-check history."""

    run_id: int
    run_state: RunState
    planned_index: int | None
    run_started_at: datetime
    result: Result


@dataclass(frozen=True)
class StatementBaseline:
    """Pre-deploy mean execution time of one pg_stat_statements entry."""

    queryid: int
    query: str
    mean_exec_seconds: float
    calls: int


@dataclass(frozen=True)
class ProbeBaseline:
    """Pre-deploy timings and plan of one configured probe query."""

    name: str
    median_seconds: float
    timings: tuple[float, ...] = ()
    plan: Any = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Baseline:
    """The whole baseline; saving one replaces the previous one."""

    recorded_at: datetime
    statements: tuple[StatementBaseline, ...] = ()
    probes: tuple[ProbeBaseline, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    def statement(self, queryid: int) -> StatementBaseline | None:
        return next((s for s in self.statements if s.queryid == queryid), None)

    def probe(self, name: str) -> ProbeBaseline | None:
        return next((p for p in self.probes if p.name == name), None)


@dataclass(frozen=True)
class VerdictRecord:
    """A verdict as computed at ``computed_at``; ``final`` once the week is over.

    ``outcome`` and ``payload`` (criteria, evidence) are the verdict module's to define.
    """

    computed_at: datetime
    final: bool
    outcome: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None


@dataclass(frozen=True)
class AlertStateRow:
    """Persisted state of one alert (identity: ``fingerprint``).

    ``state`` is the alerting module's vocabulary (inactive, pending, firing, resolved);
    ``data`` is free-form for whatever else it needs to survive a restart.
    """

    fingerprint: str
    alertname: str
    labels: Mapping[str, str]
    state: str
    annotations: Mapping[str, str] = field(default_factory=dict)
    active_since: datetime | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    last_sent_at: datetime | None = None
    last_evaluated_at: datetime | None = None
    consecutive_failing: int = 0
    consecutive_passing: int = 0
    consecutive_errors: int = 0
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboxMessage:
    """A notification to enqueue; ``idempotency_key`` is the stable ``webhook-id``."""

    idempotency_key: str
    receiver: str
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class OutboxItem:
    """A notification in the outbox, deleted after a 2xx; ``failed`` = permanent failure."""

    id: int
    idempotency_key: str
    receiver: str
    payload: Mapping[str, Any]
    created_at: datetime
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_error: str | None
    failed: bool


@dataclass(frozen=True)
class LogFileCheckpoint:
    """Where the follower is in one file: identity (device, inode, fingerprint) and offset."""

    path: str
    inode: int
    fingerprint: str
    offset: int
    device: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LogCheckpoint:
    """A source's files and the counters they produced, saved and loaded together."""

    source: str
    files: tuple[LogFileCheckpoint, ...]
    counters: Mapping[str, int | float]
    updated_at: datetime
