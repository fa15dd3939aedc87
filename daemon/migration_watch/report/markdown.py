"""``report --format markdown``: progress, verdict, per-check history and runs as tables;
every cell escaped (no text turns into Markdown or inline HTML)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from ..durations import format_duration
from .model import STATUS_ORDER, ReportData
from .text import (
    offset_text,
    progress_line,
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
    """``report --format markdown``: progress, verdict, per-check history and runs."""
    t0 = data.deployed_at
    lines = [
        f"# migration-watch report: {_md(data.migration)}",
        "",
        f"Generated {when_text(data.generated_at)}. Migration {_md(data.legacy_column)} → "
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
                f"{when_text(t0)} (source: {_md(data.deployment_source or '-')})",
            ],
            ["Verdict due", when_text(data.verdict_at)],
            ["Now", _md(progress_line(data))],
            ["Next run", when_text(data.next_run_at)],
            ["Runs", _md(tally_line(data))],
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
