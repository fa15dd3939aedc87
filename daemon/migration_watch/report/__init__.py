"""``migration-watch report``: the week so far (or the whole week) as Markdown, HTML or JSON.

:func:`build_report` reads the state store once and returns an immutable :class:`ReportData`:
deployment and verdict times, phase and day, every run's state (done, late, missed, extra,
planned, due), the per-check history (status over time per check and subject), the incident
timeline (:mod:`.timeline`: each interval a check failed on a subject, the notifications sent
for it), the series the charts draw (the log windows among them), and the verdict (the stored
final one once the week is over, else evaluated now: ``pending`` with its provisional state
during the week). The renderers are pure functions of it:

* :func:`render_json`: validated by ``schemas/report.schema.json``;
* :func:`render_markdown`: tables (incident timeline, progress, verdict, logs per day, checks,
  runs);
* :func:`render_html`: one self-contained file (inline CSS, inline SVG charts, no script, no
  external resource): the incident timeline (``data-chart="timeline"``), missing rows per
  watched table (one chart each, ``data-chart="missing:<table>"``), the legacy query ratio
  (``data-chart="legacy_ratio"``), probe latency against its baseline
  (``data-chart="latency:<probe>"``), log errors and legacy references per hour
  (``data-chart="log_errors"``, ``"log_legacy"``); a chart that stays at zero is one line
  (``<p class="flat" data-chart=...>``). Every text is escaped (table names and messages come
  from config and the database).
"""

from .build import build_report
from .html import render_html
from .markdown import render_markdown
from .model import (
    FORMATS,
    REPORT_VERSION,
    CheckHistory,
    CheckPoint,
    LatencyPoint,
    LogWindow,
    ReportData,
    ReportFormat,
    RunRow,
    SeriesPoint,
)
from .output import render, render_json, write_reports
from .timeline import Interval, Notification, TimelineEntry, build_timeline

__all__ = [
    "FORMATS",
    "REPORT_VERSION",
    "CheckHistory",
    "CheckPoint",
    "Interval",
    "LatencyPoint",
    "LogWindow",
    "Notification",
    "ReportData",
    "ReportFormat",
    "RunRow",
    "SeriesPoint",
    "TimelineEntry",
    "build_report",
    "build_timeline",
    "render",
    "render_html",
    "render_json",
    "render_markdown",
    "write_reports",
]
