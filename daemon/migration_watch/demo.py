"""``migration-watch demo``: the whole monitoring week in minutes, on a throw-away database.

Starts an :class:`~migration_watch.pgcluster.EphemeralCluster`, loads the sample app with a
partly backfilled dataset, runs a small traffic generator on the same (virtual) clock, and runs
the real :class:`~migration_watch.service.Service` with a
:class:`~migration_watch.cadence.ScaledClock` (7 days in about 5 minutes by default; the pulse
stays in real time). The story of the week:

* T0: 3% of the older conversations still lack ``organization_id``; a backfill job finishes
  them during the first 6 hours;
* T0 … T0+30h: one code path (the "widget" endpoint) still writes conversations with only
  ``customer_id`` — ``post_deploy_writes`` and ``orphans`` fail; at T0+30h the fix ships and the
  bad rows are backfilled, so the next run passes;
* application queries move from ``customer_id`` (80% at T0) to ``organization_id`` (100% from
  day 5), visible in ``query_ratio`` and ``migration_watch_statement_calls_total``.

It prints progress (day, next run, failing checks) and, at the end, the report's path.
"""

from __future__ import annotations

import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import psycopg
import structlog

from . import sample
from .clock import ScaledClock, speed_to_fit
from .config import Config, parse_config
from .logsetup import configure_logging
from .pgcluster import EphemeralCluster
from .report import write_reports
from .results import Status
from .service import Service

__all__ = ["DemoResult", "run_demo"]

log = structlog.get_logger(__name__)

WEEK = timedelta(days=7)
BACKFILL_DONE = timedelta(hours=6)
BUG_FIXED = timedelta(hours=30)
UNBACKFILLED_SHARE = 0.03


@dataclass(frozen=True)
class DemoResult:
    report_path: Path
    json_path: Path
    state_path: Path
    bug_detected_at: datetime | None
    bug_resolved_at: datetime | None
    verdict: str | None


def _legacy_share(elapsed: timedelta) -> float:
    """Share of application queries still on the legacy column, fading out over the week."""
    hours = elapsed.total_seconds() / 3600
    if hours >= 96:
        return 0.0
    return max(0.0, 0.8 * (1 - hours / 96))


class TrafficGenerator:
    """The sample app's traffic on the virtual clock (a thread; stop() to end it)."""

    def __init__(self, dsn: str, clock: ScaledClock, t0: datetime, *, seed: int = 7) -> None:
        self._dsn = dsn
        self._clock = clock
        self._t0 = t0
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-traffic", daemon=True)
        self._fixed = False
        self._backfilled = False
        self.bug_rows = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        with psycopg.connect(self._dsn, autocommit=True, application_name="demo-app") as conn:
            domains = [r[0] for r in conn.execute("SELECT id FROM public.domains ORDER BY id")]
            while not self._stop.wait(0.05):
                try:
                    self._step(conn, domains)
                except psycopg.Error as exc:  # the database is being stopped
                    log.debug("demo traffic step failed", error=str(exc))
                    if self._stop.is_set():
                        return

    def _step(self, conn: psycopg.Connection[Any], domains: list[Any]) -> None:
        now = self._clock.now()
        elapsed = now - self._t0
        if elapsed < BACKFILL_DONE or not self._backfilled:
            # the backfill job: a batch per step, all done by T0+6h
            conn.execute(
                "UPDATE public.conversations c SET organization_id = cc.organization_id"
                " FROM public.domains d JOIN public.customer_configs cc"
                " ON cc.id = d.customer_config_id"
                " WHERE c.id IN (SELECT id FROM public.conversations"
                "   WHERE organization_id IS NULL AND created_at < %s LIMIT %s)"
                " AND c.domain_id = d.id",
                (self._t0, 200 if elapsed < BACKFILL_DONE else 1_000_000),
            )
            self._backfilled = elapsed >= BACKFILL_DONE
        if elapsed < BUG_FIXED:
            # the bug: the widget endpoint still writes customer_id only
            if self._rng.random() < 0.5:
                domain = self._rng.choice(domains)
                conn.execute(
                    "INSERT INTO public.conversations"
                    " (domain_id, customer_id, session_id, created_at)"
                    " SELECT d.id, d.customer_id, 'widget', %s FROM public.domains d"
                    " WHERE d.id = %s",
                    (now, domain),
                )
                self.bug_rows += 1
        elif not self._fixed:
            conn.execute(
                "UPDATE public.conversations c SET organization_id = cc.organization_id"
                " FROM public.domains d JOIN public.customer_configs cc"
                " ON cc.id = d.customer_config_id"
                " WHERE c.domain_id = d.id AND c.organization_id IS NULL"
            )
            self._fixed = True
            log.info("demo: the widget endpoint fix shipped; bad rows backfilled")
        # healthy writes (new code) and reads
        domain = self._rng.choice(domains)
        conn.execute(
            "INSERT INTO public.conversations (domain_id, customer_id, organization_id,"
            " session_id, created_at)"
            " SELECT d.id, d.customer_id, cc.organization_id, 'app', %s FROM public.domains d"
            " JOIN public.customer_configs cc ON cc.id = d.customer_config_id WHERE d.id = %s",
            (now, domain),
        )
        for _ in range(4):
            if self._rng.random() < _legacy_share(elapsed):
                conn.execute(
                    "SELECT id, created_at FROM public.conversations WHERE customer_id ="
                    " (SELECT customer_id FROM public.domains WHERE id = %s)"
                    " ORDER BY created_at DESC LIMIT 20",
                    (domain,),
                )
            else:
                conn.execute(
                    "SELECT c.id, c.created_at FROM public.conversations c WHERE"
                    " c.organization_id = (SELECT cc.organization_id FROM public.domains d"
                    " JOIN public.customer_configs cc ON cc.id = d.customer_config_id"
                    " WHERE d.id = %s) ORDER BY c.created_at DESC LIMIT 20",
                    (domain,),
                )


def _demo_config(dsn: str, state: Path, listen: str, t0: datetime) -> Config:
    return parse_config(
        {
            "database": {"dsn": dsn, "statement_timeout": "10s"},
            "migration": {
                "name": "customer-id-to-organization-id (demo)",
                "legacy_column": sample.LEGACY_COLUMN,
                "new_column": sample.NEW_COLUMN,
                "deployed_at": t0.isoformat(),
                "tables": [
                    {
                        "name": "conversations",
                        "created_at": "created_at",
                        "indexes": ["idx_conversations_organization_id"],
                        "rls": True,
                    },
                    {"name": "customer_configs", "rls": True},
                    {
                        "name": "scraper_configs",
                        "required": False,
                        "indexes": ["idx_scraper_configs_organization_id"],
                    },
                ],
            },
            "http": {"listen": listen},
            "state": {"path": str(state)},
        },
        env={},
    )


def _prepare(cluster: EphemeralCluster, conversations: int, t0: datetime) -> str:
    cluster.create_database("demo_app")
    with psycopg.connect(cluster.dsn("demo_app"), autocommit=True) as conn:
        sample.build_scenario(conn, "healthy", conversations=conversations, deployed_at=t0)
        # partly backfilled: a few percent of the pre-deploy rows still lack organization_id
        conn.execute(
            "UPDATE public.conversations SET organization_id = NULL"
            " WHERE created_at < %s AND id %% %s = 0",
            (t0, round(1 / UNBACKFILLED_SHARE)),
        )
        conn.execute("SELECT extensions.pg_stat_statements_reset()")
    return cluster.dsn("demo_app")


def _progress(svc: Service) -> tuple[str, str]:
    """(what changed, the line to print): printed when the day, runs or failures change."""
    v = svc.runner.view()
    health = svc.week.health()
    cad = health.get("cadence") or {}
    failing = sorted({f"{r.check}" for r in v.results if r.status is Status.FAIL})
    nxt = cad.get("next_run")
    runs = cad.get("runs") or {}
    key = f"{cad.get('day')}|{runs}|{failing}"
    return key, (
        f"day {cad.get('day', '?')}/7  now {health['now'][:16]}  next run"
        f" {nxt[:16] if nxt else '-'}  runs done {runs.get('done', 0)} late"
        f" {runs.get('late', 0)}  failing: {', '.join(failing) or 'none'}"
    )


def run_demo(
    *,
    speed: float | None = None,
    duration: timedelta = timedelta(minutes=5),
    output_dir: Path | None = None,
    listen: str = "127.0.0.1:9719",
    conversations: int = 20_000,
    out: TextIO | None = None,
    pulse: timedelta = timedelta(seconds=2),
    on_progress: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the demo week; returns where the report is. ``speed`` overrides ``duration``."""
    out = out or sys.stdout
    speed = speed or speed_to_fit(WEEK, duration)
    output_dir = output_dir or Path("reports")
    output_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mw-demo-"))
    state = work / "state.sqlite"
    out.write(
        f"migration-watch demo: 7 days at {speed:g}x (about {WEEK / speed}), work dir {work}\n"
    )
    with EphemeralCluster() as cluster:
        t0 = datetime.now(UTC).replace(microsecond=0)
        out.write("starting PostgreSQL and loading the sample app...\n")
        dsn = _prepare(cluster, conversations, t0)
        config = _demo_config(dsn, state, listen, t0)
        clock = ScaledClock(start_real=datetime.now(UTC), start_virtual=t0, speed=speed)
        svc = Service(config, clock=clock, pulse=pulse)
        traffic = TrafficGenerator(cluster.dsn("demo_app"), clock, t0)
        svc.start()
        traffic.start()
        out.write(f"serving {svc.http.url}/metrics and {svc.http.url}/health\n")
        schedule = svc.week.schedule()
        assert schedule is not None
        end = schedule.verdict_at
        last = ""
        try:
            while clock.now() < end + timedelta(hours=1):
                key, line = _progress(svc)
                if key != last:
                    out.write(line + "\n")
                    out.flush()
                    if on_progress:
                        on_progress(line)
                    last = key
                if svc.wait(0.2):
                    break
            # the verdict fires at T0+168h; make sure it has been evaluated
            svc.week.tick()
            finished_at = clock.now()
        finally:
            traffic.stop()
            svc.stop()
        result = _finish(config, state, output_dir, out, finished_at)
    return result


def _finish(
    config: Config, state: Path, output_dir: Path, out: TextIO, now: datetime
) -> DemoResult:
    from .state import SqliteStateStore

    with SqliteStateStore(state) as store:
        history = store.result_history("post_deploy_writes")
        failing = [r for r in history if r.result.status is Status.FAIL]
        detected = failing[0].result.measured_at if failing else None
        after = [
            r
            for r in history
            if r.result.status is Status.PASS
            and detected is not None
            and r.result.measured_at is not None
            and r.result.measured_at > detected
        ]
        resolved = after[0].result.measured_at if after else None
        report_path, json_path, verdict = write_reports(config, store, output_dir, now=now)
    out.write(
        "\ninjected bug (widget endpoint writing customer_id only): detected "
        f"{detected.isoformat() if detected else 'never'}, resolved "
        f"{resolved.isoformat() if resolved else 'never'}\n"
    )
    if verdict:
        out.write(f"verdict: {verdict}\n")
    out.write(f"report: {report_path}\n")
    return DemoResult(report_path, json_path, state, detected, resolved, verdict)


def main_demo(speed: float | None, output_dir: Path | None, listen: str) -> int:
    configure_logging(level="warning", fmt="console")
    started = time.monotonic()
    result = run_demo(speed=speed, output_dir=output_dir, listen=listen)
    sys.stdout.write(f"done in {time.monotonic() - started:.0f}s\n")
    return 0 if result.report_path.exists() else 1
