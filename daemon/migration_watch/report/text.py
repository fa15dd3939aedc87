"""Text shared by the Markdown and HTML renderers: times, offsets from T0, numbers,
status labels, the progress and run-tally lines and the per-check timeline."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from ..durations import format_duration
from ..verdict import CriterionStatus
from .model import RUN_STATES, CheckPoint, ReportData

__all__ = [
    "offset_text",
    "progress_line",
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
