"""``migration-watch demo``: the cluster, the sample app, the service on a scaled clock and
the traffic, the progress lines, and the report at the end (the story is in the package
docstring, :mod:`migration_watch.demo`)."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import psycopg

from ..clock import ScaledClock, speed_to_fit
from ..config import Config, parse_config
from ..logsetup import configure_logging
from ..pgcluster import EphemeralCluster
from ..report import write_reports
from ..results import Status
from ..service import Service
from . import sample
from .traffic import TrafficGenerator

__all__ = ["DemoResult", "main_demo", "run_demo"]

WEEK = timedelta(days=7)
UNBACKFILLED_SHARE = 0.03


@dataclass(frozen=True)
class DemoResult:
    """What the demo left: the report files, the state, when the injected bug was detected and
    resolved (measured times of ``post_deploy_writes``), and the verdict's outcome."""

    report_path: Path
    json_path: Path
    state_path: Path
    bug_detected_at: datetime | None
    bug_resolved_at: datetime | None
    verdict: str | None


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
    from ..state import SqliteStateStore

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
