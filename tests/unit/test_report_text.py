"""``report.text``: the times, numbers, labels and lines both renderers print."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from migration_watch.report import CheckPoint
from migration_watch.report.text import (
    offset_text,
    progress_line,
    status_label,
    tally_line,
    timeline,
    value_text,
    when_text,
)

from .test_report import _empty_report
from .test_verdict import END, T0, H


def test_times_are_utc_and_offsets_count_from_t0() -> None:
    assert when_text(None) == "-"
    plus_two = timezone(timedelta(hours=2))
    assert when_text(datetime(2024, 5, 1, 11, 0, 5, tzinfo=plus_two)) == "2024-05-01 09:00:05Z"
    assert offset_text(T0 + 1.5 * H, T0) == "T0+1h30m"
    assert offset_text(T0 - 2 * H, T0) == "T0-2h"
    assert offset_text(T0, None) == ""


def test_numbers_print_whole_when_whole_else_four_digits() -> None:
    assert value_text(None) == "-"
    assert value_text(3.0) == "3"
    assert value_text(-2.0) == "-2"
    assert value_text(0.12345) == "0.1235"
    assert value_text(1e20) == "1e+20"  # too large to print as a whole number


def test_status_labels_and_timeline() -> None:
    assert status_label("not_measured") == "NOT MEASURED"
    points = [CheckPoint(i, T0 + i * H, "pass" if i % 2 else "fail", None, "") for i in range(70)]
    line = timeline(points)
    assert len(line) == 60 and line.startswith("…") and line.endswith("✓")
    assert timeline(points[:3]) == "✗✓✗"
    assert (
        timeline([CheckPoint(0, T0, "error", None, ""), CheckPoint(1, T0, "?", None, "")]) == "!?"
    )


def test_progress_and_tally_lines() -> None:
    data = _empty_report()
    assert progress_line(data) == "deployment time (T0) unknown: no cadence yet"
    assert tally_line(data) == "none"
    running = replace(
        data,
        phase="hourly",
        day=2,
        deployed_at=T0,
        verdict_at=END,
        tally={**data.tally, "done": 3, "missed": 1},
        unfinished_runs=1,
    )
    assert progress_line(running) == "day 2 of 7, phase hourly"
    assert tally_line(running) == "3 done, 1 missed, 1 unfinished (running or killed)"
    assert progress_line(replace(data, phase="complete")) == "week complete"
    assert progress_line(replace(data, phase="before_deploy")) == "before the deployment"
