"""What the daemon needs from a state store, cut along its sections, one small interface each.

Each consumer names only what it calls: the log follower a :class:`CheckpointStore`, the log
watch a :class:`LogWatchStore` (checkpoints + meta), the alert machine an :class:`AlertStore`,
the alerting engine and its outbox an :class:`AlertingStore` (alerts and outbox + meta).
:class:`StateStore` is all of them plus ``location`` and ``close``: what a backend implements
(``SqliteStateStore``; a PostgreSQL store later) and what the contract tests run against.

Every method raises ``StateError`` on failure. Times passed in must be timezone-aware; times
returned are aware UTC.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from migration_watch.cadence import CompletedRun, RunState
from migration_watch.results import Result, Status

from .models import (
    AlertStateRow,
    Baseline,
    Deployment,
    LogCheckpoint,
    LogFileCheckpoint,
    OutboxItem,
    OutboxMessage,
    RunRecord,
    StoredResult,
    VerdictRecord,
)

__all__ = [
    "AlertStore",
    "AlertingStore",
    "BaselineStore",
    "CheckpointStore",
    "LogWatchStore",
    "MetaStore",
    "RunStore",
    "StateStore",
]


@runtime_checkable
class MetaStore(Protocol):
    """Free JSON values by key, and the deployment record (T0) kept among them."""

    def get_meta(self, key: str, default: Any = None) -> Any: ...
    def set_meta(self, key: str, value: Any) -> None: ...
    def set_meta_many(self, items: Mapping[str, Any]) -> None: ...
    def delete_meta(self, key: str) -> None: ...
    def get_deployment(self) -> Deployment | None: ...
    def set_deployment(
        self, deployed_at: datetime, source: str, *, recorded_at: datetime | None = None
    ) -> Deployment: ...


@runtime_checkable
class RunStore(Protocol):
    """Runs of the checks and their results."""

    def begin_run(
        self,
        *,
        state: RunState | str,
        started_at: datetime,
        planned_index: int | None = None,
        planned_at: datetime | None = None,
        delay_seconds: float = 0.0,
        superseded: Sequence[int] = (),
    ) -> int: ...
    def finish_run(
        self,
        run_id: int,
        results: Sequence[Result],
        *,
        finished_at: datetime,
        status: Status | None = None,
    ) -> RunRecord: ...
    def get_run(self, run_id: int) -> RunRecord | None: ...
    def completed_runs(self) -> dict[int, CompletedRun]: ...
    def extra_runs(self) -> list[datetime]: ...
    def unfinished_runs(self) -> list[RunRecord]: ...
    def run_history(self, *, limit: int | None = None) -> list[RunRecord]: ...
    def results_for_run(self, run_id: int) -> list[Result]: ...
    def result_history(
        self,
        check: str | None = None,
        *,
        subject: str | None = None,
        since: datetime | None = None,
    ) -> list[StoredResult]: ...


@runtime_checkable
class BaselineStore(Protocol):
    """The pre-deploy baseline and the verdicts."""

    def save_baseline(self, baseline: Baseline) -> None: ...
    def load_baseline(self) -> Baseline | None: ...
    def save_verdict(self, verdict: VerdictRecord) -> VerdictRecord: ...
    def load_verdict(self, *, final_only: bool = False) -> VerdictRecord | None: ...


@runtime_checkable
class AlertStore(Protocol):
    """Alert state and the outbox of notifications (one transition enqueues atomically)."""

    def get_alert(self, fingerprint: str) -> AlertStateRow | None: ...
    def list_alerts(self, states: Collection[str] | None = None) -> list[AlertStateRow]: ...
    def put_alert(
        self,
        row: AlertStateRow,
        *,
        enqueue: Sequence[OutboxMessage] = (),
        now: datetime | None = None,
    ) -> list[OutboxItem]: ...
    def delete_alert(self, fingerprint: str) -> bool: ...
    def outbox_enqueue(self, message: OutboxMessage, *, now: datetime) -> OutboxItem: ...
    def outbox_due(
        self,
        now: datetime,
        *,
        receiver: str | None = None,
        limit: int | None = None,
        in_order: bool = True,
    ) -> list[OutboxItem]: ...
    def outbox_list(self, *, include_failed: bool = True) -> list[OutboxItem]: ...
    def outbox_get(self, item_id: int) -> OutboxItem | None: ...
    def outbox_mark_attempt(
        self, item_id: int, *, at: datetime, error: str | None, next_attempt_at: datetime
    ) -> None: ...
    def outbox_mark_failed(self, item_id: int, *, at: datetime, error: str) -> None: ...
    def outbox_delete(self, item_id: int) -> bool: ...
    def outbox_size(self, *, include_failed: bool = False) -> int: ...
    def outbox_oldest_age(self, now: datetime) -> timedelta | None: ...


@runtime_checkable
class CheckpointStore(Protocol):
    """Where each log source is in its files, with the counters those lines produced."""

    def save_log_checkpoint(
        self,
        source: str,
        files: Sequence[LogFileCheckpoint],
        counters: Mapping[str, int | float],
        *,
        now: datetime | None = None,
    ) -> None: ...
    def load_log_checkpoint(self, source: str) -> LogCheckpoint | None: ...
    def log_checkpoints(self) -> dict[str, LogCheckpoint]: ...


@runtime_checkable
class LogWatchStore(CheckpointStore, MetaStore, Protocol):
    """What the log watch needs: the checkpoints, and meta for its time windows."""


@runtime_checkable
class AlertingStore(AlertStore, MetaStore, Protocol):
    """What the alerting engine and its outbox need: alerts and outbox, and meta for the
    receivers disabled at run time."""


@runtime_checkable
class StateStore(MetaStore, RunStore, BaselineStore, AlertStore, CheckpointStore, Protocol):
    """A whole state store: every section, where it lives, and ``close``."""

    @property
    def location(self) -> str:
        """Where the state lives (a path or a redacted DSN), for messages and ``/health``."""
        ...

    def close(self) -> None: ...
