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

from .build import build_report
from .html import render_html
from .markdown import render_markdown
from .model import (
    FORMATS,
    REPORT_VERSION,
    CheckHistory,
    CheckPoint,
    LatencyPoint,
    ReportData,
    ReportFormat,
    RunRow,
    SeriesPoint,
)
from .output import render, render_json, write_reports

__all__ = [
    "FORMATS",
    "REPORT_VERSION",
    "CheckHistory",
    "CheckPoint",
    "LatencyPoint",
    "ReportData",
    "ReportFormat",
    "RunRow",
    "SeriesPoint",
    "build_report",
    "render",
    "render_html",
    "render_json",
    "render_markdown",
    "write_reports",
]
