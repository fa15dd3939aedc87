"""``migration-watch report``: the week so far (or the whole week) as Markdown, HTML or JSON.

:func:`build_report` reads the state store once and returns an immutable :class:`ReportData`:
deployment and verdict times, phase and day, every run's state (done, late, missed, extra,
planned, due), the per-check history (status over time per check and subject), the series the
charts draw, and the verdict (the stored final one once the week is over, else evaluated now:
``pending`` with its provisional state during the week). The renderers are pure functions of it:

* :func:`render_json`: validated by ``schemas/report.schema.json``;
* :func:`render_markdown`: tables (progress, verdict, checks, runs);
* :func:`render_html`: one self-contained file (inline CSS, inline SVG charts, no script, no
  external resource): missing rows per watched table (one chart each, ``data-chart="missing:
  <table>"``), the legacy query ratio (``data-chart="legacy_ratio"``) and probe latency against
  its baseline (``data-chart="latency:<probe>"``). Every text is escaped (table names and
  messages come from config and the database).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .cadence import DEFAULT_PHASES, Phase, RunState, Schedule
from .durations import format_duration
from .results import Status
from .state import RunRecord, StateStore, StoredResult
from .verdict import (
    CRITERION_TITLES,
    CriterionStatus,
    Verdict,
    VerdictSettings,
    evaluate_verdict,
)

if TYPE_CHECKING:
    from .config import Config

__all__ = [
    "FORMATS",
    "REPORT_VERSION",
    "CheckHistory",
    "CheckPoint",
    "LatencyPoint",
    "ReportData",
    "RunRow",
    "SeriesPoint",
    "build_report",
    "render",
    "render_html",
    "render_json",
    "render_markdown",
]

REPORT_VERSION = 1
FORMATS = ("markdown", "html", "json")
ReportFormat = Literal["markdown", "html", "json"]

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
}
_STATUS_ORDER = ("pass", "fail", "error", "skipped")
_RUN_STATES = tuple(s.value for s in RunState)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class CheckPoint:
    """One result of one check on one subject."""

    run_id: int
    at: datetime
    status: str
    value: float | None
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "at": self.at.isoformat(),
            "status": self.status,
            "value": self.value,
            "message": self.message,
        }


@dataclass(frozen=True)
class CheckHistory:
    """A check's results on one subject over time (oldest first)."""

    check: str
    subject: str
    points: tuple[CheckPoint, ...]

    @property
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(_STATUS_ORDER, 0)
        for p in self.points:
            out[p.status] = out.get(p.status, 0) + 1
        return out

    @property
    def latest(self) -> CheckPoint | None:
        return self.points[-1] if self.points else None

    def to_json(self) -> dict[str, Any]:
        latest = self.latest
        return {
            "check": self.check,
            "subject": self.subject,
            "counts": self.counts,
            "latest": None if latest is None else latest.to_json(),
            "history": [p.to_json() for p in self.points],
        }


@dataclass(frozen=True)
class SeriesPoint:
    """A chart point; ``value`` None marks a run whose check could not measure (error)."""

    run_id: int
    at: datetime
    value: float | None

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "at": self.at.isoformat(), "value": self.value}


@dataclass(frozen=True)
class LatencyPoint:
    """A probe's median latency and its baseline at one run (None when not measured)."""

    run_id: int
    at: datetime
    median_seconds: float | None
    baseline_seconds: float | None
    ratio: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "at": self.at.isoformat(),
            "median_seconds": self.median_seconds,
            "baseline_seconds": self.baseline_seconds,
            "ratio": self.ratio,
        }


@dataclass(frozen=True)
class RunRow:
    """One run of the plan (``index`` set) or an extra run, with its stored run when any."""

    index: int | None
    at: datetime
    day: int
    phase: str
    state: str
    ran_at: datetime | None = None
    delay_seconds: float | None = None
    run_id: int | None = None
    status: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "at": self.at.isoformat(),
            "day": self.day,
            "phase": self.phase,
            "state": self.state,
            "ran_at": None if self.ran_at is None else self.ran_at.isoformat(),
            "delay_seconds": self.delay_seconds,
            "run_id": self.run_id,
            "status": self.status,
        }


@dataclass(frozen=True)
class ReportData:
    """Everything a report shows, read once from the store at ``generated_at``.

    ``phase``: ``not_deployed`` (T0 unknown), ``before_deploy``, a cadence phase name, or
    ``complete`` (from the verdict time on). ``verdict_source``: ``stored`` (the final verdict
    saved at the end of the week) or ``computed`` (evaluated for this report).
    """

    generated_at: datetime
    migration: str
    legacy_column: str
    new_column: str
    tables: tuple[str, ...]
    deployed_at: datetime | None
    deployment_source: str | None
    verdict_at: datetime | None
    phase: str
    day: int
    next_run_at: datetime | None
    tally: Mapping[str, int]
    runs: tuple[RunRow, ...]
    checks: tuple[CheckHistory, ...]
    missing_rows: Mapping[str, tuple[SeriesPoint, ...]]
    legacy_ratio: tuple[SeriesPoint, ...]
    latency: Mapping[str, tuple[LatencyPoint, ...]]
    verdict: Verdict | None
    verdict_source: str | None = None
    latency_tolerance: float = 0.10
    state_location: str = ""
    unfinished_runs: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The document of ``report --format json`` (``schemas/report.schema.json``)."""
        return {
            "report_version": REPORT_VERSION,
            "generated_at": self.generated_at.isoformat(),
            "migration": {
                "name": self.migration,
                "legacy_column": self.legacy_column,
                "new_column": self.new_column,
                "tables": list(self.tables),
            },
            "deployment": {
                "deployed_at": _iso(self.deployed_at),
                "source": self.deployment_source,
                "verdict_at": _iso(self.verdict_at),
            },
            "progress": {
                "phase": self.phase,
                "day": self.day,
                "next_run_at": _iso(self.next_run_at),
                "runs": dict(self.tally),
                "unfinished_runs": self.unfinished_runs,
            },
            "runs": [r.to_json() for r in self.runs],
            "checks": [c.to_json() for c in self.checks],
            "series": {
                "missing_rows": {
                    t: [p.to_json() for p in pts] for t, pts in self.missing_rows.items()
                },
                "legacy_ratio": [p.to_json() for p in self.legacy_ratio],
                "latency": {k: [p.to_json() for p in pts] for k, pts in self.latency.items()},
            },
            "verdict": None if self.verdict is None else self.verdict.to_json(),
            "verdict_source": self.verdict_source,
        }


# --------------------------------------------------------------------------- building


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _number(observed: Mapping[str, Any], key: str | None) -> float | None:
    if key is None:
        return None
    value = observed.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _latency_ratio(observed: Mapping[str, Any]) -> float | None:
    ratio = _number(observed, "ratio")
    if ratio is not None:
        return ratio
    median = _number(observed, "median_seconds")
    baseline = _number(observed, "baseline_seconds")
    return median / baseline if median is not None and baseline else None


def _histories(history: Sequence[StoredResult]) -> tuple[CheckHistory, ...]:
    grouped: dict[tuple[str, str], list[CheckPoint]] = {}
    order: dict[str, int] = {}
    for stored in history:
        r = stored.result
        order.setdefault(r.check, len(order))
        observed = r.observed or {}
        value = (
            _latency_ratio(observed)
            if r.check == "latency"
            else _number(observed, _HEADLINE.get(r.check))
        )
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
            value = _number(observed, "missing_new") if measured else None
            if measured and value is None:
                continue  # e.g. a required table that does not exist: nothing to draw
            missing.setdefault(r.subject, []).append(SeriesPoint(run_id, at, value))
        elif r.check == "query_ratio":
            if not measured:
                ratio.append(SeriesPoint(run_id, at, None))
                continue
            value = _number(observed, "legacy_ratio")
            if value is not None and not observed.get("cumulative"):
                ratio.append(SeriesPoint(run_id, at, value))
        elif r.check == "latency":
            latency.setdefault(r.subject, []).append(
                LatencyPoint(
                    run_id,
                    at,
                    _number(observed, "median_seconds") if measured else None,
                    _number(observed, "baseline_seconds") if measured else None,
                    _latency_ratio(observed) if measured else None,
                )
            )
    return (
        {t: tuple(p) for t, p in missing.items()},
        tuple(ratio),
        {k: tuple(v) for k, v in sorted(latency.items())},
    )


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
    now = _aware(now, "now")
    m = config.migration
    tables = tuple(t.qualified for t in m.tables)
    settings = settings if settings is not None else VerdictSettings.for_config(config)
    source: str | None
    if deployed_at is not None:
        t0: datetime | None = _aware(deployed_at, "deployed_at")
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
    tally = dict.fromkeys(_RUN_STATES, 0)
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
        checks=_histories(history),
        missing_rows=missing,
        legacy_ratio=ratio,
        latency=latency,
        verdict=verdict,
        verdict_source=verdict_source,
        latency_tolerance=settings.latency_tolerance,
        state_location=store.location,
        unfinished_runs=sum(1 for r in records if not r.finished),
    )


# --------------------------------------------------------------------------- shared text


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _offset(value: datetime, t0: datetime | None) -> str:
    if t0 is None:
        return ""
    delta = value - t0
    return ("T0+" if delta >= timedelta(0) else "T0") + format_duration(delta)


def _value(value: float | None) -> str:
    if value is None:
        return "-"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def _status_label(status: CriterionStatus | str) -> str:
    return str(status).replace("_", " ").upper()


def _progress_line(data: ReportData) -> str:
    if data.phase == "not_deployed":
        return "deployment time (T0) unknown: no cadence yet"
    if data.phase == "before_deploy":
        return "before the deployment"
    if data.phase == "complete":
        return "week complete"
    days = data.day
    if data.deployed_at is not None and data.verdict_at is not None:
        days = math.ceil((data.verdict_at - data.deployed_at) / timedelta(hours=24))
    return f"day {data.day} of {days}, phase {data.phase}"


def _tally_line(data: ReportData) -> str:
    parts = [f"{data.tally.get(s, 0)} {s}" for s in _RUN_STATES if data.tally.get(s, 0)]
    if data.unfinished_runs:
        parts.append(f"{data.unfinished_runs} unfinished (running or killed)")
    return ", ".join(parts) or "none"


_TIMELINE_MARK = {"pass": "✓", "fail": "✗", "error": "!", "skipped": "·"}


def _timeline(points: Sequence[CheckPoint], width: int = 60) -> str:
    marks = "".join(_TIMELINE_MARK.get(p.status, "?") for p in points)
    return marks if len(marks) <= width else "…" + marks[-(width - 1) :]


# --------------------------------------------------------------------------- JSON


def render_json(data: ReportData) -> str:
    """``report --format json``: indented, UTF-8 (non-ASCII kept)."""
    return json.dumps(data.to_json(), indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- Markdown

_MD_SPECIAL = str.maketrans(
    {c: "\\" + c for c in "\\`*_[]|#"}
    | {"<": "&lt;", ">": "&gt;", "&": "&amp;", "\n": " ", "\r": " "},
)


def _md(text: object) -> str:
    """Escape Markdown in a table cell or a line; ``<``, ``>`` and ``&`` become entities so
    no text turns into inline HTML."""
    return str(text).translate(_MD_SPECIAL)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def render_markdown(data: ReportData) -> str:
    """``report --format markdown``: progress, verdict, per-check history and runs."""
    t0 = data.deployed_at
    lines = [
        f"# migration-watch report: {_md(data.migration)}",
        "",
        f"Generated {_when(data.generated_at)}. Migration {_md(data.legacy_column)} → "
        f"{_md(data.new_column)} on {', '.join(_md(t) for t in data.tables)}.",
        "",
        "## Progress",
        "",
    ]
    lines += _md_table(
        ["Item", "Value"],
        [
            [
                "Deployed (T0)",
                f"{_when(t0)} (source: {_md(data.deployment_source or '-')})",
            ],
            ["Verdict due", _when(data.verdict_at)],
            ["Now", _md(_progress_line(data))],
            ["Next run", _when(data.next_run_at)],
            ["Runs", _md(_tally_line(data))],
        ],
    )
    lines += ["", *_md_verdict(data), "", "## Checks", ""]
    if data.checks:
        lines += _md_table(
            ["Check", "Subject", "Latest", "Pass", "Fail", "Error", "Skipped", "History"],
            [
                [
                    _md(c.check),
                    _md(c.subject),
                    _md(
                        "-"
                        if c.latest is None
                        else f"{c.latest.status} ({_value(c.latest.value)}): {c.latest.message}"
                    ),
                    *(str(c.counts.get(s, 0)) for s in _STATUS_ORDER),
                    _md(_timeline(c.points)),
                ]
                for c in data.checks
            ],
        )
        lines += ["", "History: ✓ pass, ✗ fail, ! error, · skipped (oldest first)."]
    else:
        lines.append("No run has finished yet.")
    lines += ["", "## Runs", ""]
    if data.runs:
        lines += _md_table(
            ["#", "Planned at", "Day", "Phase", "State", "Ran at", "Delay", "Run", "Status"],
            [
                [
                    "extra" if r.index is None else str(r.index),
                    f"{_when(r.at)} {_offset(r.at, t0)}".strip(),
                    str(r.day),
                    _md(r.phase),
                    r.state,
                    _when(r.ran_at),
                    "-"
                    if r.delay_seconds is None
                    else format_duration(timedelta(seconds=round(r.delay_seconds))),
                    "-" if r.run_id is None else str(r.run_id),
                    r.status or "-",
                ]
                for r in data.runs
            ],
        )
    else:
        lines.append("No runs.")
    lines.append("")
    return "\n".join(lines)


def _md_verdict(data: ReportData) -> list[str]:
    v = data.verdict
    if v is None:
        return ["## Verdict", "", "No verdict: the deployment time (T0) is not known yet."]
    head = f"## Verdict: **{_status_label(v.outcome)}**"
    if not v.final:
        head += f" (provisional: {_status_label(v.provisional_outcome)}, due {_when(v.verdict_at)})"
    lines = [head, ""]
    rows = []
    for c in v.criteria:
        ev = c.evidence[0] if c.evidence else None
        where = (
            "-"
            if ev is None
            else f"run {ev.run_id if ev.run_id is not None else '-'} at {_when(ev.at)}, "
            f"{ev.subject}"
        )
        rows.append(
            [
                _md(c.criterion),
                _status_label(c.status),
                _status_label(c.provisional),
                "yes" if c.required else "no",
                _md(c.summary),
                _md(where),
            ]
        )
    lines += _md_table(
        ["Criterion", "Status", "Provisional", "Required", "Summary", "Evidence"], rows
    )
    if v.not_measured:
        lines += ["", "Not measured: " + ", ".join(_md(n) for n in v.not_measured) + "."]
    lines += ["", f"Computed {_when(v.computed_at)} over {v.runs_considered} run(s)."]
    return lines


# --------------------------------------------------------------------------- SVG charts

_W, _H = 720, 250
_ML, _MR, _MT, _MB = 64, 16, 44, 34
_PW, _PH = _W - _ML - _MR, _H - _MT - _MB


#: Text style as presentation attributes: a chart renders the same outside the page's CSS.
def _txt(size: int = 11, fill: str = "#566573", weight: str = "normal") -> str:
    return (
        f'font-family="system-ui, sans-serif" font-size="{size}" fill="{fill}" '
        f'font-weight="{weight}"'
    )


@dataclass(frozen=True)
class _Line:
    name: str
    color: str
    points: tuple[tuple[datetime, float], ...]
    dash: str = ""
    markers: bool = True


def _nice_top(value: float, floor: float) -> float:
    if not math.isfinite(value) or value <= floor:
        return floor
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 4, 8, 10):  # top / 4 stays a round tick
        if step * exp >= value:
            return float(step * exp)
    return float(10 * exp)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _svg_chart(
    *,
    marker: str,
    title: str,
    domain: tuple[datetime, datetime],
    lines: Sequence[_Line],
    gaps: Sequence[datetime] = (),
    y_floor: float = 1.0,
    y_cap: float | None = None,
    y_format: Callable[[float], str] = _value,
    t0: datetime | None = None,
) -> str:
    """A line chart (time on x) as an inline SVG element; every text escaped."""
    d0, d1 = domain
    span = max((d1 - d0).total_seconds(), 1.0)
    inside = [
        _Line(
            ln.name, ln.color, tuple(p for p in ln.points if d0 <= p[0] <= d1), ln.dash, ln.markers
        )
        for ln in lines
    ]
    values = [v for ln in inside for _, v in ln.points if math.isfinite(v)]
    top = _nice_top(max(values, default=0.0), y_floor)
    if y_cap is not None:
        top = min(top, y_cap)

    def x(t: datetime) -> float:
        return _ML + (t - d0).total_seconds() / span * _PW

    def y(v: float) -> float:
        return _MT + _PH - min(max(v, 0.0), top) / top * _PH

    out = [
        f'<svg class="chart" data-chart="{_e(marker)}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" '
        f'aria-label="{_e(title)}">',
        f"<title>{_e(title)}</title>",
        f'<text x="{_ML}" y="16" {_txt(13, "#1c2833", "600")}>{_e(title)}</text>',
        f'<rect x="{_ML}" y="{_MT}" width="{_PW}" height="{_PH}" fill="#fdfefe" stroke="#d5d8dc"/>',
    ]
    for k in range(5):
        v = top * k / 4
        yy = y(v)
        out.append(
            f'<line x1="{_ML}" y1="{yy:.1f}" x2="{_ML + _PW}" y2="{yy:.1f}" stroke="#eaecee"/>'
        )
        out.append(
            f'<text x="{_ML - 6}" y="{yy + 4:.1f}" {_txt()} text-anchor="end">'
            f"{_e(y_format(v))}</text>"
        )
    origin = t0 if t0 is not None else d0
    day = timedelta(hours=24)
    k = 0
    while origin + k * day <= d1 and k < 60:
        start = origin + k * day
        if start >= d0:
            xx = x(start)
            out.append(
                f'<line x1="{xx:.1f}" y1="{_MT}" x2="{xx:.1f}" y2="{_MT + _PH}" '
                'stroke="#d5d8dc" stroke-dasharray="2 3"/>'
            )
        mid = min(start + day / 2, d1)
        if start < d1 and start + day > d0:
            out.append(
                f'<text x="{x(max(mid, d0)):.1f}" y="{_H - 12}" {_txt()} text-anchor="middle">'
                f"day {k + 1}</text>"
            )
        k += 1
    legend_x = _ML
    for ln in inside:
        if not ln.points:
            continue
        pts = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in ln.points if math.isfinite(v))
        dash = f' stroke-dasharray="{_e(ln.dash)}"' if ln.dash else ""
        out.append(
            f'<polyline points="{pts}" fill="none" stroke="{_e(ln.color)}" stroke-width="2"{dash}/>'
        )
        if ln.markers:
            for t, v in ln.points:
                if not math.isfinite(v):
                    continue
                out.append(
                    f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="3" fill="{_e(ln.color)}">'
                    f"<title>{_e(f'{ln.name}: {y_format(v)} at {_when(t)}')}</title></circle>"
                )
        out.append(
            f'<rect x="{legend_x}" y="24" width="10" height="10" fill="{_e(ln.color)}"/>'
            f'<text x="{legend_x + 14}" y="33" {_txt()}>{_e(ln.name)}</text>'
        )
        legend_x += 28 + 7 * len(ln.name)
    shown_gaps = [t for t in gaps if d0 <= t <= d1]
    if shown_gaps:
        out.append(
            f'<path d="M{legend_x},24 l10,10 m0,-10 l-10,10" stroke="#d35400" stroke-width="2"/>'
            f'<text x="{legend_x + 14}" y="33" {_txt()}>not measured (error)</text>'
        )
    for t in shown_gaps:
        if d0 <= t <= d1:
            xx = x(t)
            out.append(
                f'<path d="M{xx - 4:.1f},{_MT + _PH - 8:.1f} l8,8 m0,-8 l-8,8" '
                'stroke="#d35400" stroke-width="2">'
                f"<title>{_e(f'not measured (error) at {_when(t)}')}</title></path>"
            )
    if not values and not gaps:
        out.append(
            f'<text x="{_ML + _PW / 2:.1f}" y="{_MT + _PH / 2:.1f}" {_txt(13, "#99a3a4")} '
            'text-anchor="middle">no data yet</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def _domain(data: ReportData, times: Sequence[datetime]) -> tuple[datetime, datetime]:
    if data.deployed_at is not None and data.verdict_at is not None:
        return data.deployed_at, data.verdict_at
    if times:
        lo, hi = min(times), max(times)
        return lo, hi if hi > lo else lo + timedelta(hours=1)
    return data.generated_at - timedelta(hours=1), data.generated_at


def _pct(v: float) -> str:
    return f"{v:.0%}" if v in (0.0, 1.0) else f"{v:.1%}"


def _secs(v: float) -> str:
    if v == 0:
        return "0"
    if v < 1:
        return f"{v * 1000:.3g} ms"
    return f"{v:.3g} s"


def _charts(data: ReportData) -> list[tuple[str, str]]:
    """(section heading, svg) pairs: one per table, the ratio, one per probe."""
    charts: list[tuple[str, str]] = []
    for table, points in data.missing_rows.items():
        measured = tuple((p.at, p.value) for p in points if p.value is not None)
        gaps = [p.at for p in points if p.value is None]
        charts.append(
            (
                f"Rows missing {data.new_column}: {table}",
                _svg_chart(
                    marker=f"missing:{table}",
                    title=f"{table}: rows without {data.new_column}",
                    domain=_domain(data, [p.at for p in points]),
                    lines=[_Line("missing rows", "#c0392b", measured)],
                    gaps=gaps,
                    y_floor=4.0,
                    t0=data.deployed_at,
                ),
            )
        )
    ratio_points = tuple((p.at, p.value) for p in data.legacy_ratio if p.value is not None)
    charts.append(
        (
            f"Share of queries using only {data.legacy_column}",
            _svg_chart(
                marker="legacy_ratio",
                title=f"legacy query ratio ({data.legacy_column} only)",
                domain=_domain(data, [p.at for p in data.legacy_ratio]),
                lines=[_Line("legacy ratio", "#8e44ad", ratio_points)],
                gaps=[p.at for p in data.legacy_ratio if p.value is None],
                y_floor=0.05,
                y_cap=1.0,
                y_format=_pct,
                t0=data.deployed_at,
            ),
        )
    )
    tolerance = 1 + data.latency_tolerance
    for probe, lpoints in data.latency.items():
        median = tuple((p.at, p.median_seconds) for p in lpoints if p.median_seconds is not None)
        baseline = tuple(
            (p.at, p.baseline_seconds) for p in lpoints if p.baseline_seconds is not None
        )
        allowed = tuple((t, v * tolerance) for t, v in baseline)
        charts.append(
            (
                f"Probe latency: {probe}",
                _svg_chart(
                    marker=f"latency:{probe}",
                    title=f"probe {probe}: median latency vs baseline",
                    domain=_domain(data, [p.at for p in lpoints]),
                    lines=[
                        _Line("median", "#2471a3", median),
                        _Line("baseline", "#7f8c8d", baseline, dash="6 4", markers=False),
                        _Line(
                            f"+{data.latency_tolerance:.0%} allowed",
                            "#e67e22",
                            allowed,
                            dash="2 3",
                            markers=False,
                        ),
                    ],
                    gaps=[p.at for p in lpoints if p.median_seconds is None],
                    y_floor=1e-6,
                    y_format=_secs,
                    t0=data.deployed_at,
                ),
            )
        )
    return charts


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;
max-width:1100px;padding:0 16px;color:#1c2833}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #d5d8dc}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #d5d8dc;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f4f6f7}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:12px}
.met,.pass,.done{background:#d5f5e3;color:#1e8449}.not_met,.fail,.missed{background:#fadbd8;
color:#922b21}.not_measured,.error,.late{background:#fdebd0;color:#9c640c}
.pending,.skipped,.planned,.due,.extra{background:#eaecee;color:#4d5656}
.tl{display:inline-block;width:9px;height:14px;margin-right:1px;border-radius:2px}
.tl.pass{background:#58d68d}.tl.fail{background:#ec7063}.tl.error{background:#f5b041}
.tl.skipped{background:#bfc9ca}
svg.chart{display:block;margin:8px 0 18px;max-width:100%;height:auto}
.muted{color:#717d7e}
"""


def _badge(status: str) -> str:
    return f'<span class="badge {_e(status)}">{_e(_status_label(status))}</span>'


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``rows`` cells are already-escaped HTML; ``header`` is plain text."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_verdict(data: ReportData) -> str:
    v = data.verdict
    if v is None:
        return "<h2>Verdict</h2><p>No verdict: the deployment time (T0) is not known yet.</p>"
    head = f"<h2>Verdict: {_badge(v.outcome.value)}"
    if not v.final:
        head += (
            f' <span class="muted">provisional {_badge(v.provisional_outcome.value)}, '
            f"due {_e(_when(v.verdict_at))}</span>"
        )
    head += "</h2>"
    rows = []
    for c in v.criteria:
        evidence = "<br>".join(
            _e(
                f"run {ev.run_id if ev.run_id is not None else '-'} at {_when(ev.at)}, "
                f"{ev.check} on {ev.subject}: {ev.note}"
                + (f" {json.dumps(dict(ev.value), default=str)}" if ev.value else "")
            )
            for ev in c.evidence
        )
        rows.append(
            [
                f'<b>{_e(c.criterion)}</b><br><span class="muted">'
                f"{_e(CRITERION_TITLES.get(c.criterion, ''))}</span>",
                _badge(c.status.value),
                _badge(c.provisional.value),
                "yes" if c.required else "no",
                _e(c.summary),
                evidence or "-",
            ]
        )
    out = head + _html_table(
        ["Criterion", "Status", "Provisional", "Required", "Summary", "Evidence"], rows
    )
    if v.not_measured:
        out += f"<p>Not measured: {_e(', '.join(v.not_measured))}.</p>"
    out += (
        f'<p class="muted">Computed {_e(_when(v.computed_at))} over {v.runs_considered} '
        f"run(s) ({_e(data.verdict_source or '-')}).</p>"
    )
    return out


def _html_cell(p: CheckPoint) -> str:
    tip = f"run {p.run_id} at {_when(p.at)}: {p.status} ({_value(p.value)}) {p.message}"
    return f'<span class="tl {_e(p.status)}" title="{_e(tip)}"></span>'


def _html_latest(p: CheckPoint) -> str:
    return f"{_badge(p.status)} {_e(_value(p.value))}: {_e(p.message)}"


def render_html(data: ReportData) -> str:
    """``report --format html``: one self-contained file (inline CSS and SVG, no script)."""
    t0 = data.deployed_at
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>migration-watch report: {_e(data.migration)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>migration-watch report: {_e(data.migration)}</h1>",
        f'<p class="muted">Generated {_e(_when(data.generated_at))}. Migration '
        f"<code>{_e(data.legacy_column)}</code> → <code>{_e(data.new_column)}</code> on "
        + ", ".join(f"<code>{_e(t)}</code>" for t in data.tables)
        + ".</p>",
        "<h2>Progress</h2>",
        _html_table(
            ["Item", "Value"],
            [
                [
                    "Deployed (T0)",
                    f"{_e(_when(t0))} (source: {_e(data.deployment_source or '-')})",
                ],
                ["Verdict due", _e(_when(data.verdict_at))],
                ["Now", _e(_progress_line(data))],
                ["Next run", _e(_when(data.next_run_at))],
                ["Runs", _e(_tally_line(data))],
            ],
        ),
        _html_verdict(data),
        "<h2>Charts</h2>",
    ]
    for heading, svg in _charts(data):
        parts.append(f"<h3>{_e(heading)}</h3>")
        parts.append(svg)
    parts.append("<h2>Checks</h2>")
    if data.checks:
        rows = []
        for c in data.checks:
            cells = "".join(_html_cell(p) for p in c.points)
            latest = c.latest
            rows.append(
                [
                    _e(c.check),
                    _e(c.subject),
                    "-" if latest is None else _html_latest(latest),
                    *(str(c.counts.get(s, 0)) for s in _STATUS_ORDER),
                    cells,
                ]
            )
        parts.append(
            _html_table(
                ["Check", "Subject", "Latest", "Pass", "Fail", "Error", "Skipped", "History"],
                rows,
            )
        )
    else:
        parts.append("<p>No run has finished yet.</p>")
    parts.append("<h2>Runs</h2>")
    if data.runs:
        parts.append(
            _html_table(
                ["#", "Planned at", "Day", "Phase", "State", "Ran at", "Delay", "Run", "Status"],
                [
                    [
                        "extra" if r.index is None else str(r.index),
                        _e(f"{_when(r.at)} {_offset(r.at, t0)}".strip()),
                        str(r.day),
                        _e(r.phase),
                        _badge(r.state),
                        _e(_when(r.ran_at)),
                        "-"
                        if r.delay_seconds is None
                        else _e(format_duration(timedelta(seconds=round(r.delay_seconds)))),
                        "-" if r.run_id is None else str(r.run_id),
                        "-" if r.status is None else _badge(r.status),
                    ]
                    for r in data.runs
                ],
            )
        )
    else:
        parts.append("<p>No runs.</p>")
    parts.append(
        f'<p class="muted">State: {_e(data.state_location)}. Report version {REPORT_VERSION}.</p>'
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


_RENDERERS: Mapping[str, Callable[[ReportData], str]] = {
    "markdown": render_markdown,
    "html": render_html,
    "json": render_json,
}


def render(data: ReportData, fmt: str = "markdown") -> str:
    """Render in one of :data:`FORMATS` (``ValueError`` otherwise)."""
    try:
        renderer = _RENDERERS[fmt]
    except KeyError:
        raise ValueError(
            f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}"
        ) from None
    return renderer(data)


def write_reports(
    config: Config, store: StateStore, output_dir: Path, *, now: datetime
) -> tuple[Path, Path, str | None]:
    """Write ``migration-watch-report.html`` and ``.json`` into ``output_dir``; returns both
    paths and the verdict's outcome (used by the demo)."""
    data = build_report(store, config=config, now=now, phases=config.cadence.phases())
    output_dir.mkdir(parents=True, exist_ok=True)
    html_path = output_dir / "migration-watch-report.html"
    json_path = output_dir / "migration-watch-report.json"
    html_path.write_text(render_html(data), encoding="utf-8")
    json_path.write_text(render_json(data), encoding="utf-8")
    doc = data.to_json()
    verdict = doc.get("verdict") or {}
    outcome = verdict.get("outcome") if isinstance(verdict, dict) else None
    return html_path, json_path, outcome
