"""The long-running service: scheduler + HTTP server + signals, wired together.

Threads, chosen once: APScheduler's ``BackgroundScheduler`` fires the cadence (a
:class:`~migration_watch.cadence.CadenceTrigger` in real time, mapped from the virtual clock) and
the pulse (real time, never scaled); a threaded HTTP server answers scrapes and probes from
memory; the database is reached through a small sync pool; the state store has one writer lock.
``SIGTERM``/``SIGINT`` stop everything within a few seconds (statements in flight are
cancelled); ``SIGUSR1`` asks for an extra run.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import SecretStr

from .alerting import Alerting
from .alerting.rules import (
    database_up_result,
    log_source_result,
    run_missed_result,
    verdict_results,
)
from .cadence import Schedule
from .checks.query_ratio import QueryRatioTracker, Snapshot
from .clock import Clock, SystemClock, utcnow
from .component import Component, Route
from .config import Config
from .db import Database
from .deployment import DeploymentTime
from .errors import ConfigError
from .exporter import build_registry
from .http import HttpServer, Listener, Request, Response, is_admin
from .logs.config import FileSourceConfig
from .logs.watch import LogWatch
from .runner import Runner
from .state import DaemonLock, SqliteStateStore, StateStore
from .trigger import CadenceTrigger
from .verdict import Verdict
from .week import RunInfo, Week

__all__ = ["AdminEndpoints", "Service"]

log = structlog.get_logger(__name__)

_SNAPSHOT_KEY = "pg_stat_statements.snapshot"
_TOTALS_KEY = "pg_stat_statements.totals"


class Service:
    """migration-watch's ``run``: builds the parts from a :class:`Config` and runs them.

    Construction order is the data flow: the state store, T0 (:class:`DeploymentTime`, read by
    the runner, the week and the log watch), the log watch (its window checks run with the
    suite), the runner, the listening socket (its URL goes into alert payloads), alerting, the
    week (its events come back to this service, a :class:`WeekListener`), then the registry and
    the HTTP server, each given the components once.
    """

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        deployed_at: datetime | None = None,
        store: StateStore | None = None,
        host: str | None = None,
        port: int | None = None,
        pulse: timedelta | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        #: Held while this service owns its state file (see DaemonLock).
        self.daemon_lock: DaemonLock | None = None
        if store is None:
            self.daemon_lock = DaemonLock(config.state.path)
            self.daemon_lock.acquire()
            try:
                store = SqliteStateStore(config.state.path, wall=self.clock.now)
            except BaseException:
                self.daemon_lock.release()
                raise
        self.store: StateStore = store
        self.db = Database(config.database)
        self.t0 = DeploymentTime(config, self.store, cli_deployed_at=deployed_at)
        self.logs = LogWatch(
            config, self.store, monotonic=monotonic, deployed_at=self.t0.deployed_at
        )
        self.runner = Runner(
            config,
            self.db,
            wall=self.clock.now,
            ratio=self._restore_ratio(),
            deployed_at=self.t0.deployed_at,
            baseline=self.store.load_baseline,
            extra_checks=(self.logs.window_results,),
        )
        bind_host = host if host is not None else config.http.host
        bind_port = port if port is not None else config.http.port
        try:
            listener = Listener(bind_host, bind_port)
        except OSError as exc:
            self.store.close()
            if self.daemon_lock is not None:
                self.daemon_lock.release()
            raise ConfigError(
                f"http.listen: cannot listen on {bind_host}:{bind_port}: {exc.strerror or exc}",
                source=config.source,
            ) from None
        self.alerting = Alerting(
            config.alerting,
            self.store,
            wall=utcnow,  # delivery, retries, repeats: wall time
            migration_name=config.migration.name,
            base_url=listener.url,
        )
        self.week = Week(
            config, self.runner, self.store, self.clock, deployment=self.t0, listener=self
        )
        #: Every part with metrics, /health, readiness, routes or pulse work, in that order.
        self.components: tuple[Component, ...] = (
            self.week,
            self.alerting,
            self.logs,
            AdminEndpoints(self.week, config.http.admin_token),
        )
        self.registry, self.collector = build_registry(config, self.runner, self.components)
        self.http = HttpServer(
            self.runner, self.registry, listener=listener, components=self.components
        )
        self.pulse_interval = pulse or config.service.pulse
        self.scheduler = BackgroundScheduler(timezone=UTC)
        self._stop = threading.Event()

    # ------------------------------------------------------------------ state
    def _restore_ratio(self) -> QueryRatioTracker:
        raw = self.store.get_meta(_SNAPSHOT_KEY)
        tracker = QueryRatioTracker(snapshot=Snapshot.from_json(raw) if raw else None)
        totals = self.store.get_meta(_TOTALS_KEY)
        if isinstance(totals, dict):
            for usage, n in totals.items():
                if usage in tracker.totals:
                    tracker.totals[usage] = int(n)
        return tracker

    def _persist_ratio(self) -> None:
        snap = self.runner.ratio.snapshot
        if snap is None:
            return
        self.store.set_meta_many(
            {_SNAPSHOT_KEY: snap.to_json(), _TOTALS_KEY: dict(self.runner.ratio.totals)}
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.db.open()
        self.week.restore()
        self.week.refresh_verdict()
        self.http.start()
        now = datetime.now(UTC)
        self.scheduler.add_job(
            self._pulse,
            IntervalTrigger(seconds=self.pulse_interval.total_seconds(), timezone=UTC),
            id="pulse",
            next_run_time=now,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        if self.logs.enabled:
            self.scheduler.add_job(
                self._pump_logs,
                IntervalTrigger(seconds=self._log_poll_seconds(), timezone=UTC),
                id="logs",
                next_run_time=now,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        # Start-up: one catch-up tick (a run missed while down runs once, marked late).
        self.scheduler.add_job(
            self._startup_tick, DateTrigger(run_date=now, timezone=UTC), id="catch-up"
        )
        self.on_schedule_change(self.week.schedule())
        self.scheduler.start()
        d = self.week.deployment()
        log.info(
            "service started",
            migration=self.config.migration.name,
            url=self.http.url,
            deployed_at=d.deployed_at.isoformat() if d else None,
            deployed_at_source=d.source if d else None,
            speed=self.clock.speed,
        )

    def on_schedule_change(self, schedule: Schedule | None) -> None:
        if schedule is None:
            return
        trigger = CadenceTrigger(schedule, self.clock)
        if self.scheduler.get_job("cadence") is None:
            self.scheduler.add_job(
                self._tick,
                trigger,
                id="cadence",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        else:
            self.scheduler.reschedule_job("cadence", trigger=trigger)
        if self.scheduler.running:
            self.scheduler.add_job(self._tick, DateTrigger(run_date=datetime.now(UTC)))

    # ------------------------------------------------------------------ alerting
    def _cadence_labels(self) -> tuple[int | None, str | None]:
        schedule = self.week.schedule()
        if schedule is None:
            return None, None
        now = self.clock.now()
        phase = schedule.phase_at(now)
        return schedule.current_day(now), phase.name if phase else None

    def on_run(self, info: RunInfo) -> None:
        results = list(info.outcome.results)
        if info.state != "extra":
            results.append(
                run_missed_result(len(info.superseded), late_by=info.delay, now=self.clock.now())
            )
        day, phase = self._cadence_labels()
        self.alerting.evaluate(
            results, now=self.clock.now(), run_id=info.run_id, day=day, phase=phase
        )
        self.alerting.deliver()

    def on_final_verdict(self, verdict: Verdict) -> None:
        criteria = {c.criterion: c.status.value for c in verdict.criteria}
        evidence = {c.criterion: c.summary for c in verdict.criteria}
        day, phase = self._cadence_labels()
        self.alerting.evaluate(
            verdict_results(criteria, evidence=evidence, now=self.clock.now()),
            now=self.clock.now(),
            day=day,
            phase=phase,
        )
        self.alerting.deliver()

    def _pulse(self) -> None:
        try:
            self.runner.pulse()
            self._persist_ratio()
            v = self.runner.view()
            now = self.clock.now()
            signals = []
            if v.database_up is not None:
                signals.append(database_up_result(v.database_up, error=v.database_error, now=now))
            for name, state in self.logs.sources_state().items():
                signals.append(log_source_result(name, state["up"], error=state["error"], now=now))
            if signals:
                day, phase = self._cadence_labels()
                self.alerting.evaluate(signals, now=now, day=day, phase=phase)
        except Exception:
            log.exception("pulse failed")
        for component in self.components:
            try:
                component.pulse()
            except Exception:
                log.exception("pulse work failed", component=type(component).__name__)

    def _log_poll_seconds(self) -> float:
        polls = [
            s.poll_interval.total_seconds()
            for s in self.config.logs.sources
            if isinstance(s, FileSourceConfig)
        ]
        return max(0.05, min(polls, default=0.25))

    def _pump_logs(self) -> None:
        try:
            self.logs.pump()
        except Exception:
            log.exception("log pump failed")

    def _startup_tick(self) -> None:
        self._tick()
        log.info("start-up catch-up done", runs=self.week.tally())

    def _tick(self) -> None:
        try:
            self.week.tick()
            self._persist_ratio()
        except Exception:
            log.exception("cadence tick failed")

    # ------------------------------------------------------------------ signals
    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        if signum is not None:
            log.info("stopping", signal=signal.Signals(signum).name)
        self._stop.set()

    def _sigusr1(self, signum: int, frame: FrameType | None) -> None:
        run_id = self.week.start_extra()
        log.info("extra run requested (SIGUSR1)", run_id=run_id, started=run_id is not None)

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGUSR1, self._sigusr1)

    def wait(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        try:
            self.scheduler.shutdown(wait=False)
        except Exception:  # noqa: BLE001 - not started
            pass
        self.db.cancel_running()
        self.http.stop()
        self.db.close()
        self.alerting.close()
        self.logs.close()
        self.store.close()
        if self.daemon_lock is not None:
            self.daemon_lock.release()
        log.info("service stopped")

    def serve_forever(self) -> None:
        """Start, block until SIGTERM/SIGINT, stop."""
        self.install_signal_handlers()
        self.start()
        try:
            while not self._stop.wait(0.5):
                pass
        finally:
            self.stop()


class AdminEndpoints(Component):
    """``POST /run`` (an extra run) and ``POST /deployment`` (the deploy marker): the bearer
    token when one is configured, else loopback clients only."""

    def __init__(self, week: Week, token: SecretStr | None) -> None:
        self._week = week
        self._token = token.get_secret_value() if token is not None else None

    def routes(self) -> Sequence[Route]:
        return (
            Route("POST", "/run", self._post_run, body_limit=4096),
            Route("POST", "/deployment", self._post_deployment, body_limit=4096),
        )

    def _post_run(self, request: Request) -> Response:
        if not is_admin(request, self._token):
            return Response.json({"error": "unauthorized"}, 401)
        run_id = self._week.start_extra()
        if run_id is None:
            return Response.json({"error": "a run is in progress"}, 409)
        return Response.json({"run_id": run_id, "state": "extra"}, 202)

    def _post_deployment(self, request: Request) -> Response:
        if not is_admin(request, self._token):
            return Response.json({"error": "unauthorized"}, 401)
        at: datetime | None = None
        if request.body.strip():
            try:
                body: Any = json.loads(request.body)
                raw = body.get("at") if isinstance(body, dict) else None
                if raw is not None:
                    at = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
                    if at.tzinfo is None:
                        raise ValueError("timezone missing")
                    at = at.astimezone(UTC)
            except (ValueError, AttributeError) as exc:
                return Response.json({"error": f"invalid body: {exc}"}, 400)
        d = self._week.mark_deployed(at)
        return Response.json({"deployed_at": d.deployed_at.isoformat(), "source": d.source})
