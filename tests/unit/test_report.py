"""``report``: built from a real SQLite store, rendered as JSON (schema), Markdown and HTML."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import pytest

from migration_watch.cadence import RunState, plan
from migration_watch.report import (
    FORMATS,
    ReportData,
    build_report,
    render,
    render_html,
    render_json,
    render_markdown,
)
from migration_watch.results import Result, Status
from migration_watch.state import SqliteStateStore
from migration_watch.verdict import CRITERIA, VerdictSettings, evaluate_verdict

from .test_verdict import (
    CONF,
    CONFIG,
    CONV,
    END,
    PROBE,
    SCRAPER,
    SETTINGS,
    T0,
    H,
    healthy,
    make_config,
    r,
    record_week,
)

SCHEMA = json.loads(
    resources.files("migration_watch").joinpath("schemas/report.schema.json").read_text()
)
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStateStore]:
    s = SqliteStateStore(tmp_path / "state.db", wall=lambda: T0)
    yield s
    s.close()


def validate(data: ReportData) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(render_json(data))
    errors = sorted(VALIDATOR.iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    return document


class _Tags(HTMLParser):
    """Counts open/close tags of the elements that must balance."""

    VOID = frozenset({"meta", "br", "rect", "line", "circle", "polyline", "path"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
            return
        self.stack.pop()


def check_html(text: str) -> None:
    parser = _Tags()
    parser.feed(text)
    parser.close()
    assert parser.problems == [] and parser.stack == []
    for svg in re.findall(r"<svg\b.*?</svg>", text, flags=re.DOTALL):
        ET.fromstring(svg)  # every chart is well-formed XML
    assert "<script" not in text
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", text)  # self-contained


def with_latency_and_late_runs(store: SqliteStateStore, until_hours: float) -> None:
    """Day 1 runs, the daemon down from T0+5h to T0+9h30 (catch-up run late), one extra run."""
    record_week(store, healthy, until=T0 + 4 * H)
    # the catch-up: planned index 9 (T0+9h) ran at T0+9h30, superseding 5..8
    run_id = store.begin_run(
        state=RunState.LATE,
        started_at=T0 + 9.5 * H,
        planned_index=9,
        planned_at=T0 + 9 * H,
        delay_seconds=1800,
        superseded=[5, 6, 7, 8],
    )
    store.finish_run(run_id, healthy(9, T0 + 9.5 * H, 9.5), finished_at=T0 + 9.6 * H)
    for run in plan(T0):
        if run.index <= 9 or run.at > T0 + until_hours * H:
            continue
        rid = store.begin_run(
            state=RunState.DONE, started_at=run.at, planned_index=run.index, planned_at=run.at
        )
        store.finish_run(rid, healthy(run.index, run.at, (run.at - T0) / H), finished_at=run.at)
    extra = store.begin_run(state=RunState.EXTRA, started_at=T0 + 12.5 * H)
    store.finish_run(
        extra,
        [r("coverage", CONV, Status.ERROR, message="connection refused")],
        finished_at=T0 + 12.6 * H,
    )


def test_mid_week_report_counts_runs_and_is_pending(store: SqliteStateStore) -> None:
    store.set_deployment(T0, "marker", recorded_at=T0)
    with_latency_and_late_runs(store, until_hours=20)
    now = T0 + 20.5 * H
    data = build_report(store, config=CONFIG, now=now, settings=SETTINGS)
    document = validate(data)
    assert data.deployment_source == "marker" and data.deployed_at == T0
    assert data.phase == "hourly" and data.day == 1
    assert data.next_run_at == T0 + 21 * H
    # runs 0-4, 9 (late), 10-20 done; 5-8 missed; 21.. planned; one extra
    assert data.tally == {
        "planned": 32 - 21,
        "due": 0,
        "done": 5 + 11,
        "late": 1,
        "missed": 4,
        "extra": 1,
    }
    late = next(row for row in data.runs if row.state == "late")
    assert late.index == 9 and late.delay_seconds == 1800 and late.run_id is not None
    assert data.verdict is not None and data.verdict.outcome.value == "pending"
    assert data.verdict_source == "computed"
    assert document["verdict"]["final"] is False
    coverage = next(c for c in data.checks if c.check == "coverage" and c.subject == CONV)
    assert coverage.counts["error"] == 1  # the extra run's connection error
    assert [p.status for p in coverage.points][:2] == ["fail", "fail"]
    # the series carry the error as a gap, and the cumulative first query-ratio poll is left out
    assert any(p.value is None for p in data.missing_rows[CONV])
    assert len(data.legacy_ratio) == 5 + 1 + 11 - 1
    assert data.latency[PROBE][0].baseline_seconds == 0.01


def test_json_report_after_the_week_uses_the_stored_final_verdict(
    store: SqliteStateStore,
) -> None:
    store.set_deployment(T0, "config", recorded_at=T0)
    record_week(store, healthy)
    final = evaluate_verdict(
        store.result_history(), now=END, deployed_at=T0, verdict_at=END, settings=SETTINGS
    )
    store.save_verdict(final.to_record())
    data = build_report(store, config=CONFIG, now=END + 5 * H, settings=SETTINGS)
    document = validate(data)
    assert data.verdict_source == "stored"
    assert data.verdict == final
    assert data.phase == "complete" and data.day == 8
    assert document["verdict"]["outcome"] == "met"
    assert [c["criterion"] for c in document["verdict"]["criteria"]] == list(CRITERIA)
    assert document["progress"]["runs"]["done"] == 32
    assert set(document["series"]["missing_rows"]) == {CONV, CONF, SCRAPER}


def test_json_report_without_a_deployment_time(store: SqliteStateStore) -> None:
    extra = store.begin_run(state=RunState.EXTRA, started_at=T0 - 2 * H)
    store.finish_run(extra, healthy(0, T0 - 2 * H, 0), finished_at=T0 - 2 * H)
    data = build_report(store, config=CONFIG, now=T0)
    document = validate(data)
    assert data.phase == "not_deployed" and data.verdict is None
    assert document["deployment"] == {"deployed_at": None, "source": None, "verdict_at": None}
    assert document["progress"]["runs"]["extra"] == 1
    assert "No verdict" in render_markdown(data)
    check_html(render_html(data))


def test_deployment_time_precedence(store: SqliteStateStore) -> None:
    config = make_config(
        [{"name": "conversations", "created_at": "created_at"}],
    ).model_copy(
        update={"migration": CONFIG.migration.model_copy(update={"deployed_at": T0 - 24 * H})}
    )
    assert build_report(store, config=config, now=T0).deployment_source == "config"
    store.set_deployment(T0, "marker", recorded_at=T0)
    assert build_report(store, config=config, now=T0).deployed_at == T0
    given = build_report(store, config=config, now=T0, deployed_at=T0 + H)
    assert (given.deployed_at, given.deployment_source) == (T0 + H, "cli")
    assert given.phase == "before_deploy" and given.day == 0


def test_html_has_one_missing_rows_chart_per_watched_table(store: SqliteStateStore) -> None:
    store.set_deployment(T0, "marker", recorded_at=T0)
    with_latency_and_late_runs(store, until_hours=80)
    data = build_report(store, config=CONFIG, now=T0 + 80 * H, settings=SETTINGS)
    text = render_html(data)
    check_html(text)
    for table in (CONV, CONF, SCRAPER):
        assert text.count(f'data-chart="missing:{table}"') == 1
    assert text.count('data-chart="legacy_ratio"') == 1
    assert text.count(f'data-chart="latency:{PROBE}"') == 1
    # customer_configs never misses a row: its chart is one line; the incident timeline and
    # the log errors are charts too
    assert text.count("<svg") == (3 - 1) + 1 + 1 + 1 + 1
    assert re.search(
        r'<p class="flat" data-chart="missing:public\.customer_configs">.*no rows missing so far',
        text,
    )
    assert text.count('data-chart="timeline"') == 1 and text.count('data-chart="log_errors"') == 1
    # a table with data draws a line; the optional table that does not exist says so
    conv_chart = re.search(
        r'<svg[^>]*data-chart="missing:public\.conversations".*?</svg>', text, re.S
    )
    assert conv_chart is not None and "<polyline" in conv_chart.group(0)
    scraper_chart = re.search(
        r'<svg[^>]*data-chart="missing:public\.scraper_configs".*?</svg>', text, re.S
    )
    assert scraper_chart is not None and "no data yet" in scraper_chart.group(0)
    assert "PENDING" in text and "day 4 of 7" in text


def test_everything_from_config_and_messages_is_escaped(store: SqliteStateStore) -> None:
    evil_table = '<img src=x onerror=alert(1)>&"t'
    config = make_config([{"name": evil_table, "schema": "public"}])
    subject = f"public.{evil_table}"
    store.set_deployment(T0, "marker", recorded_at=T0)
    rid = store.begin_run(state=RunState.DONE, started_at=T0, planned_index=0, planned_at=T0)
    store.finish_run(
        rid,
        [
            Result(
                check="coverage",
                subject=subject,
                status=Status.FAIL,
                observed={"total": 3, "missing_new": 1, "with_new": 2},
                message="</td><script>alert('x')</script> | pipe",
                table=subject,
            ),
            Result(
                check="latency",
                subject='probe"><svg onload=alert(1)>',
                status=Status.PASS,
                observed={"median_seconds": 0.2, "baseline_seconds": 0.2, "ratio": 1.0},
            ),
        ],
        finished_at=T0,
    )
    data = build_report(
        store, config=config, now=T0 + H, settings=VerdictSettings.for_config(config)
    )
    text = render_html(data)
    check_html(text)
    assert evil_table not in text and "<script" not in text and "<img" not in text
    assert "onload=alert(1)>" not in text
    assert 'data-chart="missing:public.&lt;img src=x onerror=alert(1)&gt;&amp;&quot;t"' in text
    markdown = render_markdown(data)
    assert "<img" not in markdown and "<script" not in markdown
    assert "\\| pipe" in markdown  # a pipe cannot break the table
    assert "&lt;img src=x onerror=alert(1)&gt;&amp;" in markdown
    validate(data)


def test_markdown_contains_the_verdict_table(store: SqliteStateStore) -> None:
    store.set_deployment(T0, "marker", recorded_at=T0)

    def bug(index: int, at: Any, hours: float) -> list[Result]:
        out = healthy(index, at, hours)
        if hours >= 5:
            out = [
                Result("post_deploy_writes", CONV, Status.FAIL, {"post_deploy_missing": 7})
                if x.check == "post_deploy_writes"
                else x
                for x in out
            ]
        return out

    record_week(store, bug)
    data = build_report(store, config=CONFIG, now=END, settings=SETTINGS)
    text = render_markdown(data)
    assert "## Verdict: **NOT MET**" in text
    assert "| Criterion | Status | Provisional | Required | Summary | Evidence |" in text
    verdict_section = text.split("## Verdict", 1)[1].split("## Checks", 1)[0]
    rows = {
        line.split("|")[1].strip(): line
        for line in verdict_section.splitlines()
        if line.startswith("| ")
    }
    for name in CRITERIA:
        assert name.replace("_", "\\_") in rows
    assert "NOT MET" in rows["post\\_deploy\\_writes"]
    assert "| MET |" in rows["coverage"]
    assert "run 31 at" in rows["post\\_deploy\\_writes"]  # evidence: which run
    assert "## Checks" in text and "## Runs" in text
    assert "32 done" in text


def test_render_dispatch() -> None:
    assert FORMATS == ("markdown", "html", "json")
    with pytest.raises(ValueError, match="unknown report format"):
        render(_empty_report(), "pdf")
    assert render(_empty_report(), "json").startswith("{")


def _empty_report() -> ReportData:
    return ReportData(
        generated_at=T0,
        migration="m",
        legacy_column="customer_id",
        new_column="organization_id",
        tables=(CONV,),
        deployed_at=None,
        deployment_source=None,
        verdict_at=None,
        phase="not_deployed",
        day=0,
        next_run_at=None,
        tally=dict.fromkeys(("planned", "due", "done", "late", "missed", "extra"), 0),
        runs=(),
        checks=(),
        missing_rows={CONV: ()},
        legacy_ratio=(),
        latency={},
        verdict=None,
    )


def test_empty_report_renders_everywhere() -> None:
    data = _empty_report()
    validate(data)
    text = render_html(data)
    check_html(text)
    assert text.count('data-chart="missing:public.conversations"') == 1
    assert "No run has finished yet." in render_markdown(data)
