"""The 7-day week: T0, the cadence runs, their durable record, extra runs and the verdict.

:class:`Week` sits between the scheduler and the :class:`~migration_watch.runner.Runner`. It is
driven by :meth:`tick` (fired by a :class:`~migration_watch.cadence.CadenceTrigger` and once at
start-up): it asks the pure :class:`~migration_watch.cadence.Schedule` which run is due given the
store's completed runs (a missed run is caught up once, marked ``late``; a run never executes
twice), runs the suite, and writes the results and the run's completion in one fsynced
transaction before the run counts as done. T0 comes from ``--deployed-at`` (source ``cli``), a
deploy marker persisted in the store (``marker``) or ``migration.deployed_at`` (``config``), in
that order of precedence.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from prometheus_client.core import Metric

from . import metrics
from .cadence import DEFAULT_GRACE, CompletedRun, RunState, Schedule
from .clock import Clock
from .component import Component
from .config import Config
from .deployment import Deployment, DeploymentTime
from .errors import StateError
from .runner import Runner, RunOutcome
from .state import StateStore
from .verdict import Verdict, VerdictSettings, evaluate_verdict

__all__ = ["Deployment", "RunInfo", "Week", "WeekListener"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RunInfo:
    """A recorded run, as given to the hooks."""

    run_id: int
    state: str  # done | late | extra
    outcome: RunOutcome
    superseded: tuple[int, ...] = ()
    delay: timedelta = timedelta(0)


class WeekListener(Protocol):
    """The events of the week, given to :class:`Week` at construction (the service's)."""

    def on_run(self, info: RunInfo) -> None:
        """After every recorded run."""

    def on_final_verdict(self, verdict: Verdict) -> None:
        """Once, when the final verdict is stored."""

    def on_schedule_change(self, schedule: Schedule | None) -> None:
        """After T0 changed (deploy marker)."""


class Week(Component):
    """Keeps the cadence for one deployment; thread-safe (one run at a time)."""

    def __init__(
        self,
        config: Config,
        runner: Runner,
        store: StateStore,
        clock: Clock,
        *,
        deployment: DeploymentTime | None = None,
        listener: WeekListener | None = None,
    ) -> None:
        self.config = config
        self.runner = runner
        self.store = store
        self.clock = clock
        #: T0 (the same object the runner and the log watch read).
        self.t0 = deployment or DeploymentTime(config, store)
        self._listener = listener
        self._lock = threading.Lock()
        self._phases = config.cadence.phases()
        self._runs_cache: tuple[dict[int, CompletedRun], list[datetime]] | None = None
        #: Whether log checks feed the verdict (log sources are configured).
        self.log_checks = bool(config.logs.sources)
        #: The latest verdict (provisional during the week, final after it).
        self.verdict: Verdict | None = None

    # ------------------------------------------------------------------ T0
    def deployment(self) -> Deployment | None:
        return self.t0.deployment()

    # The store is read once and after each change, so scrapes and /health never query it.
    def _runs(self) -> tuple[dict[int, CompletedRun], list[datetime]]:
        if self._runs_cache is None:
            self._runs_cache = (self.store.completed_runs(), self.store.extra_runs())
        return self._runs_cache

    def deployed_at(self) -> datetime | None:
        return self.t0.deployed_at()

    def schedule(self) -> Schedule | None:
        d = self.deployment()
        return None if d is None else Schedule(d.deployed_at, self._phases)

    def mark_deployed(self, at: datetime | None = None) -> Deployment:
        """Persist a deploy marker (``POST /deployment``); it replaces a CLI or config T0."""
        d = self.t0.mark(at or self.clock.now(), recorded_at=self.clock.now())
        if self._listener is not None:
            self._listener.on_schedule_change(self.schedule())
        return d

    def active(self, now: datetime | None = None) -> bool:
        """T0 is known and has passed: runs are planned."""
        t0 = self.deployed_at()
        return t0 is not None and t0 <= (now or self.clock.now())

    # ------------------------------------------------------------------ running
    def _grace(self) -> timedelta:
        return max(DEFAULT_GRACE, timedelta(seconds=2) * self.clock.speed)

    def tick(self) -> int | None:
        """Run the due cadence point, if any (coalesced catch-up), then the verdict when due.

        Returns the id of the run recorded, or None.
        """
        with self._lock:
            run_id = self._tick_locked()
            schedule = self.schedule()
            if (
                schedule is not None
                and schedule.is_over(self.clock.now())
                and (self.verdict is None or not self.verdict.final)
            ):
                self.refresh_verdict()
        return run_id

    def _tick_locked(self) -> int | None:
        schedule = self.schedule()
        if schedule is None:
            return None
        now = self.clock.now()
        self._runs_cache = None  # the source of truth for what ran, right before deciding
        due = schedule.due_run(now, self._runs()[0], grace=self._grace())
        if due is None:
            return None
        try:
            run_id = self.store.begin_run(
                state=due.state,
                started_at=now,
                planned_index=due.index,
                planned_at=due.at,
                delay_seconds=due.delay.total_seconds(),
                superseded=due.supersedes,
            )
        except StateError as exc:
            log.info("cadence run skipped", reason=str(exc))
            return None
        bound = log.bind(run_id=run_id, planned_at=due.at.isoformat(), state=due.state.value)
        if due.state is RunState.LATE:
            bound.warning(
                "late cadence run (catch-up)",
                delay_seconds=round(due.delay.total_seconds(), 3),
                superseded=list(due.supersedes),
            )
        self._execute(run_id, due.state.value, now, due.supersedes, due.delay)
        return run_id

    def run_extra(self) -> int | None:
        """An on-demand run (``SIGUSR1``, ``POST /run``); None while another run is in progress.

        Recorded with state ``extra``; it does not move the cadence.
        """
        if not self._lock.acquire(blocking=False):
            return None
        try:
            now = self.clock.now()
            run_id = self.store.begin_run(state=RunState.EXTRA, started_at=now)
            self._execute(run_id, RunState.EXTRA.value, now)
            return run_id
        finally:
            self._lock.release()

    def start_extra(self) -> int | None:
        """Like :meth:`run_extra` but returns the run id at once and runs in a thread."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            now = self.clock.now()
            run_id = self.store.begin_run(state=RunState.EXTRA, started_at=now)
        except BaseException:
            self._lock.release()
            raise

        def work() -> None:
            try:
                self._execute(run_id, RunState.EXTRA.value, now)
            except Exception:
                log.exception("extra run failed", run_id=run_id)
            finally:
                self._lock.release()

        threading.Thread(target=work, name=f"extra-run-{run_id}", daemon=True).start()
        return run_id

    @property
    def running(self) -> bool:
        return self._lock.locked()

    def _execute(
        self,
        run_id: int,
        state: str,
        now: datetime,
        superseded: tuple[int, ...] = (),
        delay: timedelta = timedelta(0),
    ) -> None:
        outcome = self.runner.run_once(now)
        assert outcome is not None  # blocking call
        self.store.finish_run(run_id, list(outcome.results), finished_at=self.clock.now())
        self._runs_cache = None
        log.info("run recorded", run_id=run_id, state=state, status=outcome.status.value)
        self.refresh_verdict()
        info = RunInfo(run_id, state, outcome, superseded, delay)
        if self._listener is not None:
            try:
                self._listener.on_run(info)
            except Exception:
                log.exception("run hook failed", run_id=run_id)

    def restore(self) -> None:
        """After a restart: serve the latest recorded run's results until the next run."""
        history = [r for r in self.store.run_history(limit=5) if r.finished_at is not None]
        if not history:
            return
        last = max(history, key=lambda r: r.started_at)
        results = self.store.results_for_run(last.id)
        if results:
            self.runner.restore(
                RunOutcome(
                    results=tuple(results),
                    started_at=last.started_at,
                    finished_at=last.finished_at or last.started_at,
                    duration_seconds=0.0,
                )
            )

    # ------------------------------------------------------------------ verdict
    def verdict_settings(self) -> VerdictSettings:
        return VerdictSettings.for_config(
            self.config, probes=bool(self.config.probes), log_checks=self.log_checks
        )

    def evaluate_verdict(self, now: datetime | None = None) -> Verdict | None:
        """The verdict over the recorded history (final from T0+168h on, else provisional)."""
        schedule = self.schedule()
        if schedule is None:
            return None
        now = now or self.clock.now()
        return evaluate_verdict(
            self.store.result_history(),
            now=now,
            deployed_at=schedule.deployed_at,
            verdict_at=schedule.verdict_at,
            settings=self.verdict_settings(),
        )

    def refresh_verdict(self) -> Verdict | None:
        """Recompute the verdict (after each run); at the end of the week store the final one
        once (a final verdict for this T0 is never recomputed)."""
        schedule = self.schedule()
        if schedule is None:
            self.verdict = None
            return None
        stored = self.store.load_verdict(final_only=True)
        if stored is not None:
            final = Verdict.from_record(stored)
            if final.deployed_at == schedule.deployed_at:
                self.verdict = final
                return final
        verdict = self.evaluate_verdict()
        if verdict is not None and verdict.final:
            self.store.save_verdict(verdict.to_record())
            if self._listener is not None:
                try:
                    self._listener.on_final_verdict(verdict)
                except Exception:
                    log.exception("final verdict hook failed")
            log.info(
                "final verdict",
                outcome=verdict.outcome.value,
                not_met=[c.criterion for c in verdict.criteria if c.status.value == "not_met"],
                not_measured=list(verdict.not_measured),
            )
        self.verdict = verdict
        return verdict

    # ------------------------------------------------------------------ reporting
    def tally(self, now: datetime | None = None) -> dict[str, int]:
        schedule = self.schedule()
        out = dict.fromkeys(("done", "late", "missed", "extra"), 0)
        if schedule is None:
            out["extra"] = len(self._runs()[1])
            return out
        counts = schedule.tally(now or self.clock.now(), *self._runs())
        for state in out:
            out[state] = counts[RunState(state)]
        return out

    def health(self) -> dict[str, Any]:
        now = self.clock.now()
        d = self.deployment()
        schedule = self.schedule()
        cadence: dict[str, Any] | None = None
        if schedule is not None:
            nxt = schedule.next_run(now)
            phase = schedule.phase_at(now)
            cadence = {
                "day": schedule.current_day(now),
                "phase": phase.name if phase else None,
                "next_run": nxt.at.isoformat() if nxt else None,
                "verdict_at": schedule.verdict_at.isoformat(),
                "over": schedule.is_over(now),
                "runs": self.tally(now),
            }
        v = self.verdict
        verdict = None
        if v is not None:
            verdict = {
                "outcome": v.outcome.value,
                "final": v.final,
                "provisional_outcome": v.provisional_outcome.value,
                "criteria": {c.criterion: c.status.value for c in v.criteria},
            }
        return {
            "verdict": verdict,
            "now": now.isoformat(),
            "deployment": None
            if d is None
            else {"deployed_at": d.deployed_at.isoformat(), "source": d.source},
            "cadence": cadence,
        }

    def ready_reason(self) -> str | None:
        """None when ready. Before T0 (unknown or future) only the database matters."""
        if not self.active():
            return None
        if self.runner.view().runs_completed:
            return None
        return "no check run completed yet"

    def collect(self) -> Iterator[Metric]:
        now = self.clock.now()
        schedule = self.schedule()
        day = metrics.gauge("cadence_day")
        nxt = metrics.gauge("next_run_timestamp_seconds")
        deployed = metrics.gauge("deployed_timestamp_seconds")
        if schedule is not None:
            deployed.add_metric([], schedule.deployed_at.timestamp())
            if now >= schedule.deployed_at:
                day.add_metric([], float(schedule.current_day(now)))
            run = schedule.next_run(now)
            if run is not None:
                nxt.add_metric([], run.at.timestamp())
        yield day
        yield nxt
        yield deployed
        runs = metrics.counter("runs")
        for state, n in self.tally(now).items():
            runs.add_metric([state], float(n))
        yield runs
        verdict = metrics.gauge("verdict")
        if self.verdict is not None:
            for criterion, status, value in self.verdict.one_hot():
                verdict.add_metric([criterion, status], value)
        yield verdict
