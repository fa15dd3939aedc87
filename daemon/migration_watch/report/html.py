"""``report --format html``: one self-contained file (inline CSS, inline SVG charts, no
script, no external resource); every text escaped."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..durations import format_duration
from ..verdict import CRITERION_TITLES
from .model import REPORT_VERSION, STATUS_ORDER, CheckPoint, LogWindow, ReportData
from .text import (
    INCIDENT_HEADER,
    incident_rows,
    offset_text,
    progress_line,
    so_far,
    status_label,
    tally_line,
    value_text,
    when_text,
)

__all__ = ["render_html"]

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
    y_format: Callable[[float], str] = value_text,
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
                    f"<title>{_e(f'{ln.name}: {y_format(v)} at {when_text(t)}')}</title></circle>"
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
                f"<title>{_e(f'not measured (error) at {when_text(t)}')}</title></path>"
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


def _flat(marker: str, heading: str, text: str) -> str:
    """A chart that stayed at zero, collapsed into one line (it keeps its ``data-chart``)."""
    return (
        f'<p class="flat" data-chart="{_e(marker)}"><span class="ok">✓</span> '
        f"<b>{_e(heading)}</b>: {_e(text)}</p>"
    )


def _gaps_note(count: int) -> str:
    return "" if not count else f" ({count} run{'s' if count != 1 else ''} not measured)"


def _all_zero(values: Sequence[float]) -> bool:
    return bool(values) and all(v == 0 for v in values)


def _charts(data: ReportData) -> list[tuple[str, str]]:
    """(section heading, svg) pairs: one per table, the ratio, one per probe, the logs; a
    chart that stayed at zero is one line (heading "")."""
    charts: list[tuple[str, str]] = []
    when = so_far(data)
    for table, points in data.missing_rows.items():
        measured = tuple((p.at, p.value) for p in points if p.value is not None)
        gaps = [p.at for p in points if p.value is None]
        heading = f"Rows missing {data.new_column}: {table}"
        if _all_zero([v for _, v in measured]):
            charts.append(
                (
                    "",
                    _flat(
                        f"missing:{table}",
                        heading,
                        f"no rows missing {when}{_gaps_note(len(gaps))}",
                    ),
                )
            )
            continue
        charts.append(
            (
                heading,
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
    ratio_heading = f"Share of queries using only {data.legacy_column}"
    if _all_zero([v for _, v in ratio_points]):
        charts.append(
            (
                "",
                _flat(
                    "legacy_ratio", ratio_heading, f"no query used only {data.legacy_column} {when}"
                ),
            )
        )
    else:
        charts.append(
            (
                ratio_heading,
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
    charts += _log_charts(data)
    return charts


def _per_hour(
    data: ReportData, value: Callable[[LogWindow], float | None]
) -> tuple[tuple[datetime, float], ...]:
    out = []
    for w in data.logs:
        rate = w.per_hour(value(w))
        if rate is not None:
            out.append((w.at, rate))
    return tuple(out)


def _log_charts(data: ReportData) -> list[tuple[str, str]]:
    """Errors and legacy references per hour of each log window (none without log sources)."""
    if not data.logs:
        return []
    when = so_far(data)
    charts: list[tuple[str, str]] = []
    domain = _domain(data, [w.at for w in data.logs])
    gaps = [w.at for w in data.logs if w.errors is None]
    errors = [w.errors for w in data.logs if w.errors is not None]
    lines_read = sum(w.lines or 0 for w in data.logs)
    heading = "Log errors per hour"
    if _all_zero([float(e) for e in errors]):
        charts.append(
            (
                "",
                _flat(
                    "log_errors",
                    heading,
                    f"no log errors {when} ({lines_read} lines read){_gaps_note(len(gaps))}",
                ),
            )
        )
    else:
        charts.append(
            (
                heading,
                _svg_chart(
                    marker="log_errors",
                    title="log errors per hour",
                    domain=domain,
                    lines=[
                        _Line("errors / h", "#c0392b", _per_hour(data, lambda w: w.errors)),
                        _Line(
                            "at the pre-deploy error rate",
                            "#7f8c8d",
                            _per_hour(data, lambda w: w.expected_errors),
                            dash="6 4",
                            markers=False,
                        ),
                    ],
                    gaps=gaps,
                    y_floor=4.0,
                    t0=data.deployed_at,
                ),
            )
        )
    legacy = [
        float(v) for w in data.logs for v in (w.legacy_references, w.legacy_errors) if v is not None
    ]
    heading = f"Log lines referencing {data.legacy_column} per hour"
    if not legacy or _all_zero(legacy):
        charts.append(
            (
                "",
                _flat(
                    "log_legacy",
                    heading,
                    f"no legacy references {when}"
                    if legacy
                    else "not measured (no legacy_log_ratio result)",
                ),
            )
        )
    else:
        charts.append(
            (
                heading,
                _svg_chart(
                    marker="log_legacy",
                    title=f"log lines referencing {data.legacy_column} per hour",
                    domain=domain,
                    lines=[
                        _Line(
                            "references / h",
                            "#8e44ad",
                            _per_hour(data, lambda w: w.legacy_references),
                        ),
                        _Line("errors / h", "#c0392b", _per_hour(data, lambda w: w.legacy_errors)),
                    ],
                    y_floor=4.0,
                    t0=data.deployed_at,
                ),
            )
        )
    return charts


# --------------------------------------------------------------------------- the timeline

_TW, _TL, _TR, _TT, _ROW = 1000, 250, 16, 34, 22


def _timeline_svg(data: ReportData) -> str:
    """One row per check and subject: a bar per interval (red failing, orange not measured,
    open-ended while still failing), a triangle per notification (up firing, down resolved)."""
    entries = data.timeline
    times = [i.start for e in entries for i in e.intervals]
    times += [i.end or i.last_result_at for e in entries for i in e.intervals]
    times += [n.at for e in entries for n in e.notifications]
    d0, d1 = _domain(data, times)
    d0, d1 = min([d0, *times]), max([d1, *times])
    span = max((d1 - d0).total_seconds(), 1.0)
    pw = _TW - _TL - _TR
    height = _TT + _ROW * len(entries) + 24

    def x(t: datetime) -> float:
        return _TL + (t - d0).total_seconds() / span * pw

    out = [
        f'<svg class="chart timeline" data-chart="timeline" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {_TW} {height}" width="{_TW}" height="{height}" role="img" '
        'aria-label="incident timeline">',
        "<title>incident timeline</title>",
        f'<rect x="{_TL}" y="{_TT}" width="{pw}" height="{_ROW * len(entries)}" '
        'fill="#fdfefe" stroke="#d5d8dc"/>',
    ]
    origin = data.deployed_at or d0
    day = timedelta(hours=24)
    k = -math.ceil(max((origin - d0) / day, 0))
    while origin + k * day <= d1 and k < 60:
        start = origin + k * day
        if start >= d0:
            xx = x(start)
            out.append(
                f'<line x1="{xx:.1f}" y1="{_TT}" x2="{xx:.1f}" y2="{_TT + _ROW * len(entries)}" '
                'stroke="#d5d8dc" stroke-dasharray="2 3"/>'
            )
            label = "T0" if k == 0 and data.deployed_at is not None else f"day {k + 1}"
            if xx > _TL + pw - 30:
                break
            out.append(f'<text x="{xx + 3:.1f}" y="{_TT - 8}" {_txt(10)}>{_e(label)}</text>')
        k += 1
    legend = [("#ec7063", "failing"), ("#f5b041", "not measured (error)")]
    lx = _TL
    for color, name in legend:
        out.append(
            f'<rect x="{lx}" y="6" width="10" height="10" fill="{color}"/>'
            f'<text x="{lx + 14}" y="15" {_txt()}>{_e(name)}</text>'
        )
        lx += 28 + 7 * len(name)
    out.append(
        f'<path d="M{lx},16 l5,-9 l5,9 z" fill="#922b21"/>'
        f'<text x="{lx + 14}" y="15" {_txt()}>firing</text>'
        f'<path d="M{lx + 66},7 l5,9 l5,-9 z" fill="#1e8449"/>'
        f'<text x="{lx + 80}" y="15" {_txt()}>resolved</text>'
    )
    for row, e in enumerate(entries):
        y = _TT + row * _ROW
        label = f"{e.check} {e.subject}"
        short = label if len(label) <= 36 else label[:35] + "…"
        out.append(
            f'<text x="{_TL - 8}" y="{y + 15}" {_txt()} text-anchor="end">{_e(short)}'
            f"<title>{_e(label)}</title></text>"
        )
        if row:
            out.append(f'<line x1="{_TL}" y1="{y}" x2="{_TL + pw}" y2="{y}" stroke="#eaecee"/>')
        for i in e.intervals:
            end = i.end or i.last_result_at
            x0, x1 = x(i.start), x(end)
            color = "#ec7063" if i.status == "fail" else "#f5b041"
            what = "failing" if i.status == "fail" else "not measured"
            until = "still failing" if i.end is None else f"until {when_text(i.end)}"
            tip = (
                f"{e.check} {e.subject}: {what} from {when_text(i.start)} {until}; worst "
                f"{value_text(i.worst.value)} at {when_text(i.worst.at)}: {i.worst.message}"
            )
            out.append(
                f'<rect x="{x0:.1f}" y="{y + 5}" width="{max(x1 - x0, 3):.1f}" height="12" '
                f'rx="2" fill="{color}"><title>{_e(tip)}</title></rect>'
            )
            if i.end is None:
                out.append(
                    f'<path d="M{max(x1, x0 + 3):.1f},{y + 5} l7,6 l-7,6 z" fill="{color}"/>'
                )
        for n in e.notifications:
            xx = x(n.at)
            receivers = ", ".join(f"{r} {d}" for r, d in n.receivers) or "no receiver"
            tip = f"{n.alertname} {n.event} at {when_text(n.at)} → {receivers}"
            if n.event == "firing":
                shape, fill = f"M{xx - 5:.1f},{y + 21} l5,-8 l5,8 z", "#922b21"
            else:
                shape, fill = f"M{xx - 5:.1f},{y + 1} l5,8 l5,-8 z", "#1e8449"
            out.append(f'<path d="{shape}" fill="{fill}"><title>{_e(tip)}</title></path>')
    out.append("</svg>")
    return "\n".join(out)


def _when_cell(at: datetime | None, t0: datetime | None) -> str:
    """A time as its offset from T0, the UTC date and time below it (full time on hover)."""
    if at is None:
        return "-"
    offset = "T0" if at == t0 else offset_text(at, t0)
    short = at.astimezone(UTC).strftime("%m-%d %H:%MZ")
    if not offset:
        return f'<span title="{_e(when_text(at))}">{_e(short)}</span>'
    return (
        f'<span title="{_e(when_text(at))}">{_e(offset)}</span><br>'
        f'<span class="muted">{_e(short)}</span>'
    )


def _html_timeline(data: ReportData) -> str:
    out = ['<h2 id="timeline">Incident timeline</h2>']
    rows = incident_rows(data)
    if not rows:
        if data.checks:
            out.append(
                f'<p class="flat" data-chart="timeline"><span class="ok">✓</span> Nothing failed '
                f"{_e(so_far(data))}: every measured result passed.</p>"
            )
        else:
            out.append("<p>No run has finished yet.</p>")
        return "\n".join(out)
    out.append(_timeline_svg(data))
    t0 = data.deployed_at
    out.append(
        _html_table(
            ["Check / subject", *INCIDENT_HEADER[2:]],
            [
                [
                    f'<b>{_e(r.check)}</b><br><span class="muted">{_e(r.subject)}</span>',
                    _badge(r.status) if r.status != "alert" else _e(r.what),
                    _when_cell(r.start_at, t0),
                    "<b>still failing</b>"
                    if r.end_at is None and r.status != "alert"
                    else _when_cell(r.end_at, t0),
                    _e(r.duration),
                    _e(r.runs),
                    _e(r.worst),
                    "<br>".join(_e(n) for n in r.notifications) or "-",
                ]
                for r in rows
            ],
            css="incidents",
        )
    )
    out.append(
        '<p class="muted">From: the first failing run; to: the first passing run after it. An '
        "error or skipped run inside an interval neither ends nor splits it (counted as not "
        "measured).</p>"
    )
    return "\n".join(out)


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
.flat{margin:6px 0}.ok{color:#1e8449;font-weight:700}
td{overflow-wrap:break-word}table.incidents{width:100%}
table.incidents td:nth-child(2),table.incidents td:nth-child(3),table.incidents td:nth-child(4)
{white-space:nowrap}
.muted{color:#717d7e}
"""


def _badge(status: str) -> str:
    return f'<span class="badge {_e(status)}">{_e(status_label(status))}</span>'


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], css: str = "") -> str:
    """``rows`` cells are already-escaped HTML; ``header`` is plain text."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    cls = f' class="{_e(css)}"' if css else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_verdict(data: ReportData) -> str:
    v = data.verdict
    if v is None:
        return "<h2>Verdict</h2><p>No verdict: the deployment time (T0) is not known yet.</p>"
    head = f"<h2>Verdict: {_badge(v.outcome.value)}"
    if not v.final:
        head += (
            f' <span class="muted">provisional {_badge(v.provisional_outcome.value)}, '
            f"due {_e(when_text(v.verdict_at))}</span>"
        )
    head += "</h2>"
    rows = []
    for c in v.criteria:
        evidence = "<br>".join(
            _e(
                f"run {ev.run_id if ev.run_id is not None else '-'} at {when_text(ev.at)}, "
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
        f'<p class="muted">Computed {_e(when_text(v.computed_at))} over {v.runs_considered} '
        f"run(s) ({_e(data.verdict_source or '-')}).</p>"
    )
    return out


def _html_cell(p: CheckPoint) -> str:
    tip = f"run {p.run_id} at {when_text(p.at)}: {p.status} ({value_text(p.value)}) {p.message}"
    return f'<span class="tl {_e(p.status)}" title="{_e(tip)}"></span>'


def _html_latest(p: CheckPoint) -> str:
    return f"{_badge(p.status)} {_e(value_text(p.value))}: {_e(p.message)}"


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
        f'<p class="muted">Generated {_e(when_text(data.generated_at))}. Migration '
        f"<code>{_e(data.legacy_column)}</code> → <code>{_e(data.new_column)}</code> on "
        + ", ".join(f"<code>{_e(t)}</code>" for t in data.tables)
        + ".</p>",
        _html_timeline(data),
        '<h2 id="progress">Progress</h2>',
        _html_table(
            ["Item", "Value"],
            [
                [
                    "Deployed (T0)",
                    f"{_e(when_text(t0))} (source: {_e(data.deployment_source or '-')})",
                ],
                ["Verdict due", _e(when_text(data.verdict_at))],
                ["Now", _e(progress_line(data))],
                ["Next run", _e(when_text(data.next_run_at))],
                ["Runs", _e(tally_line(data))],
            ],
        ),
        _html_verdict(data),
        '<h2 id="charts">Charts</h2>',
    ]
    for heading, svg in _charts(data):
        if heading:
            parts.append(f"<h3>{_e(heading)}</h3>")
        parts.append(svg)
    parts.append('<h2 id="checks">Checks</h2>')
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
                    *(str(c.counts.get(s, 0)) for s in STATUS_ORDER),
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
    parts.append('<h2 id="runs">Runs</h2>')
    if data.runs:
        parts.append(
            _html_table(
                ["#", "Planned at", "Day", "Phase", "State", "Ran at", "Delay", "Run", "Status"],
                [
                    [
                        "extra" if r.index is None else str(r.index),
                        _e(f"{when_text(r.at)} {offset_text(r.at, t0)}".strip()),
                        str(r.day),
                        _e(r.phase),
                        _badge(r.state),
                        _e(when_text(r.ran_at)),
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
