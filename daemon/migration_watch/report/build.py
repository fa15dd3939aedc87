"""Building the report from the state store: :func:`build_report`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..cadence import DEFAULT_PHASES, Phase, RunState, Schedule
from ..clock import require_aware
from ..results import Status
from ..state import RunRecord, StateStore, StoredResult
from ..verdict import Verdict, VerdictSettings, evaluate_verdict
from ..verdict.history import latency_ratio, num
from .model import (
    RUN_STATES,
    CheckHistory,
    CheckPoint,
    LatencyPoint,
    LogWindow,
    ReportData,
    RunRow,
    SeriesPoint,
)
from .timeline import build_timeline

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["build_report"]

#: The headline number of each check (drawn in histories and tooltips).
_HEADLINE: Mapping[str, str] = {
    "coverage": "missing_new",
    "orphans": "orphans",
    "post_deploy_writes": "post_deploy_missing",
    "rls": "policies_on_new",
    "index_usage": "idx_scan",
    "query_ratio": "legacy_ratio",
    "latency": "ratio",
    "legacy_errors": "legacy_errors",
    "log_errors": "errors",
    "legacy_log_ratio": "legacy_ratio",
    "http": "duration_seconds",
}


def _sum_subjects(key: str) -> Callable[[Mapping[str, Any]], float | None]:
    def headline(observed: Mapping[str, Any]) -> float | None:
        subjects = observed.get("subjects")
        if not isinstance(subjects, Mapping):
            return None
        values = [num(v, key) for v in subjects.values() if isinstance(v, Mapping)]
        found = [v for v in values if v is not None]
        return sum(found) if found else None

    return headline


def _count_of(key: str) -> Callable[[Mapping[str, Any]], float | None]:
    def headline(observed: Mapping[str, Any]) -> float | None:
        value = observed.get(key)
        return float(len(value)) if isinstance(value, list) else None

    return headline


#: Headlines that are not one number of ``observed``: the RLS probe's rows of another
#: organization (all subjects), the regressed statements.
_HEADLINE_FN: Mapping[str, Callable[[Mapping[str, Any]], float | None]] = {
    "latency": latency_ratio,
    "rls_probe": _sum_subjects("foreign"),
    "statement_latency": _count_of("regressed"),
}


def _headline(check: str, observed: Mapping[str, Any]) -> float | None:
    fn = _HEADLINE_FN.get(check)
    if fn is not None:
        return fn(observed)
    return num(observed, _HEADLINE[check]) if check in _HEADLINE else None


def _histories(history: Sequence[StoredResult]) -> tuple[CheckHistory, ...]:
    grouped: dict[tuple[str, str], list[CheckPoint]] = {}
    order: dict[str, int] = {}
    for stored in history:
        r = stored.result
        order.setdefault(r.check, len(order))
        value = _headline(r.check, r.observed or {})
        grouped.setdefault((r.check, r.subject), []).append(
            CheckPoint(
                run_id=stored.run_id,
                at=stored.run_started_at,
                status=Status(r.status).value,
                value=value,
                message=r.message,
            )
        )
    keys = sorted(grouped, key=lambda k: (order[k[0]], k[1]))
    return tuple(
        CheckHistory(c, s, tuple(sorted(grouped[(c, s)], key=lambda p: (p.at, p.run_id))))
        for c, s in keys
    )


def _series(
    history: Sequence[StoredResult], tables: Sequence[str]
) -> tuple[
    dict[str, tuple[SeriesPoint, ...]],
    tuple[SeriesPoint, ...],
    dict[str, tuple[LatencyPoint, ...]],
]:
    missing: dict[str, list[SeriesPoint]] = {t: [] for t in tables}
    ratio: list[SeriesPoint] = []
    latency: dict[str, list[LatencyPoint]] = {}
    for stored in sorted(history, key=lambda s: (s.run_started_at, s.run_id)):
        r = stored.result
        status = Status(r.status)
        if status is Status.SKIPPED:
            continue
        measured = status in (Status.PASS, Status.FAIL)
        observed = r.observed or {}
        at, run_id = stored.run_started_at, stored.run_id
        if r.check == "coverage":
            value = num(observed, "missing_new") if measured else None
            if measured and value is None:
                continue  # e.g. a required table that does not exist: nothing to draw
            missing.setdefault(r.subject, []).append(SeriesPoint(run_id, at, value))
        elif r.check == "query_ratio":
            if not measured:
                ratio.append(SeriesPoint(run_id, at, None))
                continue
            value = num(observed, "legacy_ratio")
            if value is not None and not observed.get("cumulative"):
                ratio.append(SeriesPoint(run_id, at, value))
        elif r.check == "latency":
            latency.setdefault(r.subject, []).append(
                LatencyPoint(
                    run_id,
                    at,
                    num(observed, "median_seconds") if measured else None,
                    num(observed, "baseline_seconds") if measured else None,
                    latency_ratio(observed) if measured else None,
                )
            )
    return (
        {t: tuple(p) for t, p in missing.items()},
        tuple(ratio),
        {k: tuple(v) for k, v in sorted(latency.items())},
    )


_LOG_CHECKS = ("log_errors", "legacy_errors", "legacy_log_ratio")


def _int(observed: Mapping[str, Any], key: str) -> int | None:
    value = num(observed, key)
    return None if value is None else int(value)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _measured(by_check: Mapping[str, StoredResult], check: str) -> Mapping[str, Any] | None:
    stored = by_check.get(check)
    if stored is None or Status(stored.result.status) is Status.ERROR:
        return None
    return stored.result.observed or {}


def _log_windows(history: Sequence[StoredResult], t0: datetime | None) -> tuple[LogWindow, ...]:
    """A window per run with log results. Its start: the ``since`` the log watch recorded, else
    the previous window's end, else T0 (the first window after the deployment)."""
    runs: dict[int, dict[str, StoredResult]] = {}
    for stored in history:
        if stored.result.check in _LOG_CHECKS:
            runs.setdefault(stored.run_id, {})[stored.result.check] = stored
    out: list[LogWindow] = []
    previous: datetime | None = None
    ordered = sorted(
        runs.items(), key=lambda kv: (next(iter(kv[1].values())).run_started_at, kv[0])
    )
    for run_id, by_check in ordered:
        at = next(iter(by_check.values())).run_started_at
        since: datetime | None = None
        for stored in by_check.values():
            since = since or _parse_time((stored.result.details or {}).get("since"))
        if since is None:
            since = (
                previous if previous is not None else (t0 if t0 is not None and t0 < at else None)
            )
        previous = at

        errors_obs = _measured(by_check, "log_errors")
        legacy_obs = _measured(by_check, "legacy_errors")
        ratio_obs = _measured(by_check, "legacy_log_ratio")
        lines = errors = None
        expected: float | None = None
        if errors_obs is not None:
            lines, errors = _int(errors_obs, "lines"), _int(errors_obs, "errors")
            rate = num(errors_obs, "baseline_error_rate")
            if rate is not None and lines is not None:
                expected = rate * lines
        out.append(
            LogWindow(
                run_id=run_id,
                at=at,
                since=since,
                lines=lines,
                errors=errors,
                expected_errors=expected,
                legacy_references=None if ratio_obs is None else _int(ratio_obs, "legacy"),
                new_references=None if ratio_obs is None else _int(ratio_obs, "new"),
                legacy_errors=None if legacy_obs is None else _int(legacy_obs, "legacy_errors"),
            )
        )
    return tuple(out)


def _run_rows(
    schedule: Schedule | None, now: datetime, store: StateStore, records: Sequence[RunRecord]
) -> list[RunRow]:
    finished = [r for r in records if r.finished]
    by_planned = {r.planned_at: r for r in finished if r.planned_at is not None}
    extras_by_start = {r.started_at: r for r in finished if r.state is RunState.EXTRA}
    if schedule is None:
        return [
            RunRow(
                index=r.planned_index,
                at=r.planned_at or r.started_at,
                day=0,
                phase="-",
                state=r.state.value,
                ran_at=r.started_at,
                delay_seconds=r.delay_seconds,
                run_id=r.id,
                status=None if r.status is None else r.status.value,
            )
            for r in finished
        ]
    rows: list[RunRow] = []
    for s in schedule.run_states(now, store.completed_runs(), store.extra_runs()):
        record = by_planned.get(s.at) if s.index is not None else extras_by_start.get(s.at)
        rows.append(
            RunRow(
                index=s.index,
                at=s.at,
                day=s.day,
                phase=s.phase,
                state=s.state.value,
                ran_at=s.ran_at,
                delay_seconds=None if s.delay is None else s.delay.total_seconds(),
                run_id=None if record is None else record.id,
                status=None if record is None or record.status is None else record.status.value,
            )
        )
    return rows


def build_report(
    store: StateStore,
    *,
    config: Config,
    now: datetime,
    deployed_at: datetime | None = None,
    deployment_source: str | None = None,
    phases: Sequence[Phase] = DEFAULT_PHASES,
    settings: VerdictSettings | None = None,
) -> ReportData:
    """Read the store and assemble a report as of ``now`` (virtual time when scaled).

    T0 is ``deployed_at`` when given (source ``deployment_source``, default ``cli``), else the
    store's deployment record, else ``config.migration.deployed_at`` (source ``config``).
    ``settings`` default to :meth:`VerdictSettings.for_config`.
    """
    now = require_aware(now, "now")
    m = config.migration
    tables = tuple(t.qualified for t in m.tables)
    settings = settings if settings is not None else VerdictSettings.for_config(config)
    source: str | None
    if deployed_at is not None:
        t0: datetime | None = require_aware(deployed_at, "deployed_at")
        source = deployment_source or "cli"
    elif (stored_deployment := store.get_deployment()) is not None:
        t0, source = stored_deployment.deployed_at, stored_deployment.source
    elif m.deployed_at is not None:
        t0, source = m.deployed_at, "config"
    else:
        t0, source = None, None

    history = store.result_history()
    records = store.run_history()
    schedule = Schedule(t0, phases) if t0 is not None else None
    rows = _run_rows(schedule, now, store, records)
    tally = dict.fromkeys(RUN_STATES, 0)
    for row in rows:
        tally[row.state] = tally.get(row.state, 0) + 1

    verdict: Verdict | None = None
    verdict_source: str | None = None
    if schedule is None:
        phase, day, next_run_at, verdict_at_ = "not_deployed", 0, None, None
    else:
        verdict_at_ = schedule.verdict_at
        day = schedule.current_day(now)
        nxt = schedule.next_run(now)
        next_run_at = None if nxt is None else nxt.at
        if now < schedule.deployed_at:
            phase = "before_deploy"
        elif schedule.is_over(now):
            phase = "complete"
        else:
            current = schedule.phase_at(now)
            phase = current.name if current is not None else "complete"
        stored = store.load_verdict(final_only=True) if schedule.is_over(now) else None
        if stored is not None:
            candidate = Verdict.from_record(stored)
            if candidate.deployed_at == schedule.deployed_at:
                verdict, verdict_source = candidate, "stored"
        if verdict is None:
            verdict = evaluate_verdict(
                history,
                now=now,
                deployed_at=schedule.deployed_at,
                verdict_at=schedule.verdict_at,
                settings=settings,
            )
            verdict_source = "computed"

    missing, ratio, latency = _series(history, tables)
    checks = _histories(history)
    timeline = build_timeline(checks, store.list_alerts(), store.outbox_list(include_failed=True))
    return ReportData(
        generated_at=now,
        migration=m.name,
        legacy_column=m.legacy_column,
        new_column=m.new_column,
        tables=tables,
        deployed_at=t0,
        deployment_source=source,
        verdict_at=verdict_at_,
        phase=phase,
        day=day,
        next_run_at=next_run_at,
        tally=tally,
        runs=tuple(rows),
        checks=checks,
        missing_rows=missing,
        legacy_ratio=ratio,
        latency=latency,
        verdict=verdict,
        verdict_source=verdict_source,
        latency_tolerance=settings.latency_tolerance,
        state_location=store.location,
        unfinished_runs=sum(1 for r in records if not r.finished),
        timeline=timeline,
        logs=_log_windows(history, t0),
    )
