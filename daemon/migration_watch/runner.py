"""The runner: runs the check suite and the pulse, and keeps the latest answers in memory.

Scrapes and ``/health`` only read :meth:`Runner.view`, an immutable copy; they never touch the
database. One run at a time (a lock); the pulse may overlap a run.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from .checks import CheckContext, QueryRatioTracker, run_suite
from .checks.latency import run_latency
from .clock import utcnow
from .config import Config
from .db import Database
from .errors import DatabaseError
from .results import Result, Status, overall_status
from .state import Baseline

__all__ = ["RunOutcome", "Runner", "RunnerView"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    results: tuple[Result, ...]
    started_at: datetime
    finished_at: datetime
    duration_seconds: float

    @property
    def status(self) -> Status:
        return overall_status(self.results)


@dataclass(frozen=True)
class RunnerView:
    """An immutable picture of the latest answers (what scrapes and /health read)."""

    results: tuple[Result, ...] = ()
    last_run: RunOutcome | None = None
    runs_completed: int = 0
    database_up: bool | None = None
    database_checked_at: datetime | None = None
    database_error: str | None = None
    check_errors_total: dict[str, int] = field(default_factory=dict)
    last_success: dict[str, datetime] = field(default_factory=dict)
    check_durations: dict[str, float] = field(default_factory=dict)
    statement_calls_total: dict[str, int] = field(default_factory=dict)
    legacy_statement_ratio: float | None = None
    query_ratio_unavailable: str | None = None


class Runner:
    """Runs the suite and the pulse against one database, with an injected clock."""

    def __init__(
        self,
        config: Config,
        db: Database,
        *,
        wall: Callable[[], datetime] = utcnow,
        ratio: QueryRatioTracker | None = None,
        deployed_at: Callable[[], datetime | None] | None = None,
        baseline: Callable[[], Baseline | None] | None = None,
        extra_checks: Sequence[Callable[[datetime], list[Result]]] = (),
    ) -> None:
        self.config = config
        self.db = db
        self.wall = wall
        self.ratio = ratio or QueryRatioTracker()
        #: T0 as currently known (it may change: deploy marker).
        self.deployed_at: Callable[[], datetime | None] = deployed_at or (
            lambda: config.migration.deployed_at
        )
        #: The recorded baseline for the latency checks (the service reads the state store).
        self.baseline: Callable[[], Baseline | None] = baseline or (lambda: None)
        #: Further checks run with the suite (log windows...): ``now`` → results.
        self.extra_checks = tuple(extra_checks)
        self._run_lock = threading.Lock()
        self._lock = threading.Lock()
        self._view = RunnerView()

    # ------------------------------------------------------------------ reading
    def view(self) -> RunnerView:
        with self._lock:
            return self._view

    def _update(self, **changes: object) -> None:
        with self._lock:
            self._view = _replace(self._view, **changes)

    @property
    def running(self) -> bool:
        return self._run_lock.locked()

    # ------------------------------------------------------------------ the suite
    def run_once(self, now: datetime | None = None, *, block: bool = True) -> RunOutcome | None:
        """Run every check once. Returns ``None`` when ``block=False`` and a run is in progress."""
        if not self._run_lock.acquire(blocking=block):
            return None
        try:
            return self._run(now or self.wall())
        finally:
            self._run_lock.release()

    def _run(self, now: datetime) -> RunOutcome:
        started = time.perf_counter()
        problem = self._refresh_database(now)
        ctx = CheckContext(
            config=self.config,
            db=self.db,
            now=now,
            deployed_at=self.deployed_at(),
            ratio=self.ratio,
        )
        results_list = run_suite(ctx, unreachable=problem)
        if self.config.probes:
            results_list += run_latency(
                self.db, self.config, self.config.probes, self.baseline(), now
            )
        for extra in self.extra_checks:
            try:
                results_list += extra(now)
            except Exception:
                log.exception("extra check failed")
        results = tuple(results_list)
        duration = time.perf_counter() - started
        outcome = RunOutcome(
            results=results, started_at=now, finished_at=now, duration_seconds=duration
        )
        self._record(outcome)
        log.info(
            "check run finished",
            status=outcome.status.value,
            checks=len(results),
            failing=sum(r.status is Status.FAIL for r in results),
            errors=sum(r.status is Status.ERROR for r in results),
            duration_seconds=round(duration, 3),
        )
        return outcome

    def restore(self, outcome: RunOutcome) -> None:
        """Serve a previously recorded run's results (after a restart) until the next run."""
        with self._lock:
            self._view = _replace(self._view, results=outcome.results, last_run=outcome)

    def _record(self, outcome: RunOutcome) -> None:
        with self._lock:
            v = self._view
            errors = dict(v.check_errors_total)
            success = dict(v.last_success)
            durations: dict[str, float] = {}
            per_check: dict[str, list[Result]] = {}
            for r in outcome.results:
                per_check.setdefault(r.check, []).append(r)
            for check, rs in per_check.items():
                durations[check] = sum(r.duration_seconds for r in rs)
                n_err = sum(r.status is Status.ERROR for r in rs)
                if n_err:
                    errors[check] = errors.get(check, 0) + n_err
                else:
                    errors.setdefault(check, 0)
                    success[check] = outcome.started_at
            self._view = _replace(
                v,
                results=outcome.results,
                last_run=outcome,
                runs_completed=v.runs_completed + 1,
                check_errors_total=errors,
                last_success=success,
                check_durations=durations,
                statement_calls_total=dict(self.ratio.totals),
                legacy_statement_ratio=self._ratio_value(),
                query_ratio_unavailable=self.ratio.unavailable_reason,
            )

    def _ratio_value(self) -> float | None:
        d = self.ratio.last_delta
        return None if d is None else d.legacy_ratio

    # ------------------------------------------------------------------ the pulse
    def _refresh_database(self, now: datetime) -> DatabaseError | None:
        problem = self.db.probe()
        self._update(
            database_up=problem is None,
            database_checked_at=now,
            database_error=None if problem is None else str(problem),
        )
        return problem

    def pulse(self, now: datetime | None = None) -> None:
        """Refresh the cheap signals: database up, pg_stat_statements deltas."""
        now = now or self.wall()
        if self._refresh_database(now) is not None:
            return
        if not self.config.checks.query_ratio.enabled:
            return
        try:
            self.ratio.poll(self.db, self.config, now)
        except DatabaseError as exc:
            log.warning("pulse: pg_stat_statements poll failed", error=str(exc))
        self._update(
            statement_calls_total=dict(self.ratio.totals),
            legacy_statement_ratio=self._ratio_value(),
            query_ratio_unavailable=self.ratio.unavailable_reason,
        )


def _replace(view: RunnerView, **changes: object) -> RunnerView:
    return dataclasses.replace(view, **changes)  # type: ignore[arg-type]


def results_by_check(results: Sequence[Result]) -> dict[str, list[Result]]:
    out: dict[str, list[Result]] = {}
    for r in results:
        out.setdefault(r.check, []).append(r)
    return out
