"""``report --format markdown``: the incident timeline, progress, verdict, the log windows per
day, per-check history and runs as tables; every cell escaped (no text turns into Markdown or
inline HTML)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from ..durations import format_duration
from .model import STATUS_ORDER, ReportData
from .text import (
    INCIDENT_HEADER,
    incident_rows,
    log_days,
    offset_text,
    progress_line,
    so_far,
    status_label,
    tally_line,
    timeline,
    value_text,
    when_text,
)

__all__ = ["render_markdown"]

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
    """``report --format markdown``: timeline, progress, verdict, logs, checks and runs."""
    t0 = data.deployed_at
    lines = [
        f"# migration-watch report: {_md(data.migration)}",
        "",
        f"Generated {when_text(data.generated_at)}. Migration {_md(data.legacy_column)} → "
        f"{_md(data.new_column)} on {', '.join(_md(t) for t in data.tables)}.",
        "",
        *_md_timeline(data),
        "",
        "## Progress",
        "",
    ]
    lines += _md_table(
        ["Item", "Value"],
        [
            [
                "Deployed (T0)",
                f"{when_text(t0)} (source: {_md(data.deployment_source or '-')})",
            ],
            ["Verdict due", when_text(data.verdict_at)],
            ["Now", _md(progress_line(data))],
            ["Next run", when_text(data.next_run_at)],
            ["Runs", _md(tally_line(data))],
        ],
    )
    lines += ["", *_md_verdict(data), *_md_logs(data), "", "## Checks", ""]
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
                        else f"{c.latest.status} ({value_text(c.latest.value)}): {c.latest.message}"
                    ),
                    *(str(c.counts.get(s, 0)) for s in STATUS_ORDER),
                    _md(timeline(c.points)),
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
                    f"{when_text(r.at)} {offset_text(r.at, t0)}".strip(),
                    str(r.day),
                    _md(r.phase),
                    r.state,
                    when_text(r.ran_at),
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
    head = f"## Verdict: **{status_label(v.outcome)}**"
    if not v.final:
        head += (
            f" (provisional: {status_label(v.provisional_outcome)}, due {when_text(v.verdict_at)})"
        )
    lines = [head, ""]
    rows = []
    for c in v.criteria:
        ev = c.evidence[0] if c.evidence else None
        where = (
            "-"
            if ev is None
            else f"run {ev.run_id if ev.run_id is not None else '-'} at {when_text(ev.at)}, "
            f"{ev.subject}"
        )
        rows.append(
            [
                _md(c.criterion),
                status_label(c.status),
                status_label(c.provisional),
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
    lines += ["", f"Computed {when_text(v.computed_at)} over {v.runs_considered} run(s)."]
    return lines


def _md_timeline(data: ReportData) -> list[str]:
    lines = ["## Incident timeline", ""]
    rows = incident_rows(data)
    if not rows:
        if data.checks:
            lines.append(f"Nothing failed {so_far(data)}: every measured result passed.")
        else:
            lines.append("No run has finished yet.")
        return lines
    lines += _md_table(
        INCIDENT_HEADER,
        [
            [
                _md(r.check),
                _md(r.subject),
                _md(r.what),
                _md(r.start),
                _md(r.end),
                _md(r.duration),
                _md(r.runs),
                _md(r.worst),
                "; ".join(_md(n) for n in r.notifications) or "-",
            ]
            for r in rows
        ],
    )
    lines += [
        "",
        "From: the first failing run; to: the first passing run after it. An error or skipped "
        "run inside an interval neither ends nor splits it (counted as not measured).",
    ]
    return lines


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _md_logs(data: ReportData) -> list[str]:
    if not data.logs:
        return []
    lines = ["", "## Logs", ""]
    days = log_days(data.logs, data.deployed_at)
    total_lines = sum(d.lines for d in days)
    errors = sum(d.errors for d in days)
    legacy = sum(d.legacy_references for d in days)
    legacy_errors = sum(d.legacy_errors for d in days)
    quiet = []
    if errors == 0:
        quiet.append(f"no log errors {so_far(data)}")
    if legacy == 0 and legacy_errors == 0:
        quiet.append(f"no legacy references {so_far(data)}")
    if len(quiet) == 2:
        lines.append(
            f"{quiet[0].capitalize()}, {quiet[1]} ({total_lines} lines in "
            f"{len(data.logs)} windows)."
        )
        return lines
    lines += _md_table(
        [
            "Day",
            "Windows",
            "Lines",
            "Errors",
            "Errors/h",
            "Pre-deploy rate/h",
            "Legacy refs/h",
            "Legacy errors",
        ],
        [
            [
                "before T0" if d.day == 0 else str(d.day),
                str(d.windows),
                str(d.lines),
                str(d.errors),
                _rate(d.errors_per_hour),
                _rate(d.pre_deploy_errors_per_hour),
                _rate(d.legacy_references_per_hour),
                str(d.legacy_errors),
            ]
            for d in days
        ],
    )
    lines += [
        "",
        "Per hour of the windows that ended that day; pre-deploy rate/h: the errors those lines "
        "would hold at the error rate before the deployment.",
    ]
    if quiet:
        lines += ["", quiet[0].capitalize() + "."]
    return lines
