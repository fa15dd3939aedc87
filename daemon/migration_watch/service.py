"""The long-running service: scheduler + HTTP server + signals, wired together.

Threads, chosen once: APScheduler's ``BackgroundScheduler`` runs the suite and the pulse, a
threaded HTTP server answers scrapes and probes from memory, the database is reached through a
small sync pool. ``SIGTERM``/``SIGINT`` stop everything within a few seconds (statements in
flight are cancelled).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from .config import Config
from .db import Database
from .http import HttpServer
from .metrics import build_registry
from .runner import Runner

__all__ = ["Service"]

log = structlog.get_logger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Service:
    """migration-watch's ``run``: builds the parts from a :class:`Config` and runs them."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], datetime] = _utcnow,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.db = Database(config.database)
        self.runner = Runner(config, self.db, clock=clock)
        self.registry, self.collector = build_registry(config, self.runner)
        self.http = HttpServer(
            self.runner,
            self.registry,
            host=host if host is not None else config.http.host,
            port=port if port is not None else config.http.port,
        )
        self.http.ready_checks.append(
            lambda: None if self.runner.view().runs_completed else "no check run completed yet"
        )
        self.scheduler = BackgroundScheduler(timezone=UTC)
        self._stop = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.db.open()
        self.http.start()
        svc = self.config.service
        now = datetime.now(UTC)
        self.scheduler.add_job(
            self._pulse,
            IntervalTrigger(seconds=svc.pulse.total_seconds(), timezone=UTC),
            id="pulse",
            next_run_time=now,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self.scheduler.add_job(
            self._run,
            IntervalTrigger(seconds=svc.interval.total_seconds(), timezone=UTC),
            id="suite",
            next_run_time=now + timedelta(milliseconds=50),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self.scheduler.start()
        log.info(
            "service started",
            migration=self.config.migration.name,
            url=self.http.url,
            interval_seconds=svc.interval.total_seconds(),
        )

    def _pulse(self) -> None:
        try:
            self.runner.pulse()
        except Exception:
            log.exception("pulse failed")

    def _run(self) -> None:
        try:
            self.runner.run_once(block=False)
        except Exception:
            log.exception("check run failed")

    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        if signum is not None:
            log.info("stopping", signal=signal.Signals(signum).name)
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

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
