"""Text shared by the Markdown and HTML renderers: times, offsets from T0, numbers,
status labels, the progress and run-tally lines, the per-check timeline, the incident rows,
the log days and the one-line summaries of charts that stayed at zero."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..durations import format_duration
from ..verdict import CriterionStatus
from .model import RUN_STATES, CheckPoint, LogWindow, ReportData
from .timeline import Interval, Notification, TimelineEntry

__all__ = [
    "INCIDENT_HEADER",
    "IncidentRow",
    "LogDay",
    "incident_rows",
    "log_days",
    "notification_text",
    "offset_text",
    "progress_line",
    "so_far",
    "status_label",
    "tally_line",
    "timeline",
    "value_text",
    "when_text",
]


def when_text(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def offset_text(value: datetime, t0: datetime | None) -> str:
    if t0 is None:
        return ""
    delta = value - t0
    return ("T0+" if delta >= timedelta(0) else "T0") + format_duration(delta)


def value_text(value: float | None) -> str:
    if value is None:
        return "-"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def status_label(status: CriterionStatus | str) -> str:
    return str(status).replace("_", " ").upper()


def progress_line(data: ReportData) -> str:
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


def tally_line(data: ReportData) -> str:
    parts = [f"{data.tally.get(s, 0)} {s}" for s in RUN_STATES if data.tally.get(s, 0)]
    if data.unfinished_runs:
        parts.append(f"{data.unfinished_runs} unfinished (running or killed)")
    return ", ".join(parts) or "none"


_TIMELINE_MARK = {"pass": "✓", "fail": "✗", "error": "!", "skipped": "·"}


def timeline(points: Sequence[CheckPoint], width: int = 60) -> str:
    marks = "".join(_TIMELINE_MARK.get(p.status, "?") for p in points)
    return marks if len(marks) <= width else "…" + marks[-(width - 1) :]


def so_far(data: ReportData) -> str:
    """``all week`` once the week is over, else ``so far``."""
    return "all week" if data.phase == "complete" else "so far"


def _short(text: str, limit: int = 140) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


INCIDENT_HEADER = (
    "Check",
    "Subject",
    "What",
    "From",
    "To",
    "Duration",
    "Runs",
    "Worst",
    "Notifications",
)


@dataclass(frozen=True)
class IncidentRow:
    """One row of the incident table: an interval (or an entry's unmatched notifications)."""

    check: str
    subject: str
    what: str
    start: str
    end: str
    start_at: datetime
    end_at: datetime | None
    duration: str
    runs: str
    worst: str
    notifications: tuple[str, ...]
    status: str


def notification_text(n: Notification, t0: datetime | None) -> str:
    when = _offset(n.at, t0) or when_text(n.at)
    to = ", ".join(f"{name} {delivery}" for name, delivery in n.receivers) or "no receiver"
    kind = "" if n.kind == "fail" else f" ({n.kind})"
    return f"{n.event}{kind} {when} → {to}"


def _offset(at: datetime, t0: datetime | None) -> str:
    return "T0" if at == t0 else offset_text(at, t0)


def _time_cell(at: datetime, t0: datetime | None) -> str:
    return f"{when_text(at)} {_offset(at, t0)}".strip()


def _interval_row(e: TimelineEntry, index: int, i: Interval, t0: datetime | None) -> IncidentRow:
    runs = f"{i.bad_runs} of {i.runs}"
    if i.unmeasured_runs:
        runs += f" ({i.unmeasured_runs} not measured)"
    worst = value_text(i.worst.value) if i.worst.value is not None else ""
    message = _short(i.worst.message)
    worst = f"{worst}: {message}" if worst and message else worst or message or "-"
    return IncidentRow(
        check=e.check,
        subject=e.subject,
        what="failing" if i.status == "fail" else "not measured (error)",
        start=_time_cell(i.start, t0),
        end="still failing" if i.end is None else _time_cell(i.end, t0),
        start_at=i.start,
        end_at=i.end,
        duration=("≥ " if i.end is None else "")
        + format_duration(timedelta(seconds=round(i.duration_seconds))),
        runs=runs,
        worst=worst,
        notifications=tuple(
            notification_text(n, t0) for n in e.notifications if n.interval == index
        ),
        status=i.status,
    )


def incident_rows(data: ReportData) -> list[IncidentRow]:
    """The timeline as table rows, earliest first: one per interval, plus one per entry for
    notifications that match no interval."""
    t0 = data.deployed_at
    rows: list[IncidentRow] = []
    for e in data.timeline:
        rows += [_interval_row(e, k, i, t0) for k, i in enumerate(e.intervals)]
        loose = [n for n in e.notifications if n.interval is None]
        if loose:
            rows.append(
                IncidentRow(
                    check=e.check,
                    subject=e.subject,
                    what="alert",
                    start=_time_cell(loose[0].at, t0),
                    end="-",
                    start_at=loose[0].at,
                    end_at=None,
                    duration="-",
                    runs="-",
                    worst="-",
                    notifications=tuple(notification_text(n, t0) for n in loose),
                    status="alert",
                )
            )
    return rows


@dataclass(frozen=True)
class LogDay:
    """The log windows that ended on one day of the week (day 0: before T0), summed; the
    hourly rates are over the windows of a known length only."""

    day: int
    windows: int
    lines: int
    errors: int
    legacy_references: int
    legacy_errors: int
    errors_per_hour: float | None
    pre_deploy_errors_per_hour: float | None
    legacy_references_per_hour: float | None


def _rate(windows: Sequence[LogWindow], value: Callable[[LogWindow], float | None]) -> float | None:
    timed = [(w.hours, value(w)) for w in windows if w.hours is not None]
    known = [(h, v) for h, v in timed if v is not None]
    hours = sum(h for h, _ in known)
    return sum(v for _, v in known) / hours if known and hours > 0 else None


def log_days(windows: Sequence[LogWindow], t0: datetime | None) -> list[LogDay]:
    days: dict[int, list[LogWindow]] = {}
    for w in windows:
        day = 0 if t0 is None or w.at < t0 else max(1, math.ceil((w.at - t0) / timedelta(hours=24)))
        days.setdefault(day, []).append(w)
    return [
        LogDay(
            day=day,
            windows=len(ws),
            lines=sum(w.lines or 0 for w in ws),
            errors=sum(w.errors or 0 for w in ws),
            legacy_references=sum(w.legacy_references or 0 for w in ws),
            legacy_errors=sum(w.legacy_errors or 0 for w in ws),
            errors_per_hour=_rate(ws, lambda w: w.errors),
            pre_deploy_errors_per_hour=_rate(ws, lambda w: w.expected_errors),
            legacy_references_per_hour=_rate(ws, lambda w: w.legacy_references),
        )
        for day, ws in sorted(days.items())
    ]
