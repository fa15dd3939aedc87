"""A whole week told through a real SQLite store, the real alerting engine and a real webhook
receiver, for the report's tests (incident timeline, log charts, the browser screenshot).

The story, in hours from T0 (the plan: hourly on day 1, then 36, 48, 60, 72, 96, 120, 144):

* ``coverage`` on conversations fails from the first run while the backfill runs (40 rows
  missing, 2 fewer an hour), with an ``error`` run at 10h inside; passes from 20h;
* the widget bug: ``post_deploy_writes`` fails 5h..29h (3 new rows an hour), passes from 36h;
  the application logs 5 % errors instead of 1 % and errors referencing ``customer_id``;
* ``orphans`` on customer_configs cannot be measured at 36h and 48h (an error interval and
  its error alert), measured again at 60h;
* ``query_ratio`` flaps: fails at 48h and 72h, passes at 60h and from 96h;
* ``latency`` regresses at 120h and is still failing at the end;
* the receiver answers 503 after 100h: the last firing stays queued in the outbox.

customer_configs never misses a row: its chart collapses into one line.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from migration_watch.alerting import Alerting, AlertingConfig
from migration_watch.cadence import RunState, plan
from migration_watch.clock import ManualClock
from migration_watch.results import Result, Status
from migration_watch.state import SqliteStateStore
from tests.support import Received, Receiver
from tests.unit.test_verdict import CONF, CONV, END, PROBE, T0, H, healthy, r

__all__ = ["BUG_FROM", "BUG_UNTIL", "LINES_PER_HOUR", "story_week"]

BUG_FROM, BUG_UNTIL = 5.0, 30.0
LINES_PER_HOUR = 600


def _story(index: int, at: datetime, hours: float, window_hours: float) -> list[Result]:
    bug = BUG_FROM <= hours < BUG_UNTIL
    out: list[Result] = []
    for res in healthy(index, at, hours):
        if res.check in ("log_errors", "legacy_errors"):
            continue
        if res.check == "coverage" and res.subject == CONV and hours == 10:
            res = Result("coverage", CONV, Status.ERROR, message="connection refused")
        elif res.check == "post_deploy_writes" and bug:
            res = r("post_deploy_writes", CONV, Status.FAIL, post_deploy_missing=int(hours * 3))
        elif res.check == "orphans" and res.subject == CONF and hours in (36, 48):
            res = Result(
                "orphans",
                CONF,
                Status.ERROR,
                message="permission denied for table customer_configs",
            )
        elif res.check == "query_ratio" and hours in (48, 72):
            res = replace(res, status=Status.FAIL, message="legacy queries rose again")
        elif res.check == "latency" and hours >= 120:
            res = r(
                "latency", PROBE, Status.FAIL, median_seconds=0.02, baseline_seconds=0.01, ratio=2.0
            )
        out.append(res)
    lines = int(LINES_PER_HOUR * window_hours)
    errors = int(lines * (0.05 if bug else 0.01))
    legacy_errors = int(3 * window_hours) if bug else 0
    legacy_refs = int(max(0.0, 50 - hours) * window_hours)
    since = None if index == 0 else (at - window_hours * H).isoformat()
    details = {"since": since, "lines": lines}
    out += [
        Result(
            "log_errors",
            "logs",
            Status.FAIL if bug else Status.PASS,
            observed={
                "errors": errors,
                "lines": lines,
                "error_rate": errors / lines if lines else 0.0,
                "baseline_source": "logs",
                "baseline_error_rate": 0.01,
                "baseline_lines": 6000,
            },
            details=details,
            message=f"{errors} errors in {lines} lines",
        ),
        Result(
            "legacy_errors",
            "logs",
            Status.FAIL if legacy_errors else Status.PASS,
            observed={"legacy_errors": legacy_errors},
            details=details,
            message=f"{legacy_errors} errors referencing customer_id",
        ),
        Result(
            "legacy_log_ratio",
            "logs",
            Status.PASS,
            observed={"legacy": legacy_refs, "new": lines - legacy_refs, "fallback": 0},
            details=details,
        ),
    ]
    return out


def _unavailable(_: int, __: Received) -> tuple[int, dict[str, str], bytes]:
    return 503, {}, b"down for maintenance"


def story_week(store: SqliteStateStore, receiver: Receiver, *, until: datetime = END) -> None:
    """Record the story's runs up to ``until``, evaluating and delivering alerts after each
    (wall clock: one minute after the run). ``receiver`` answers 503 after 100h."""
    store.set_deployment(T0, "marker", recorded_at=T0)
    clock = ManualClock(T0)
    alerting = Alerting(
        AlertingConfig.model_validate(
            {"receivers": [{"name": "hook", "type": "webhook", "url": receiver.url()}]}
        ),
        store,
        wall=clock.now,
        migration_name="customer-id-to-organization-id",
    )
    previous: datetime | None = None
    try:
        for run in plan(T0):
            if run.at > until:
                break
            hours = (run.at - T0) / H
            window = 1.0 if previous is None else (run.at - previous) / H
            previous = run.at
            results = _story(run.index, run.at, hours, window)
            run_id = store.begin_run(
                state=RunState.DONE, started_at=run.at, planned_index=run.index, planned_at=run.at
            )
            store.finish_run(run_id, results, finished_at=run.at + timedelta(minutes=1))
            if hours > 100:
                receiver.respond = _unavailable
            clock.set(run.at + timedelta(minutes=1))
            alerting.evaluate(results, now=run.at, run_id=run_id)
            alerting.deliver()
    finally:
        alerting.close()
