"""The report of a whole week (tests/report_story.py: a real store, the real alerting engine, a
real webhook receiver): the incident timeline, the log windows and the collapsed charts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from migration_watch.report import ReportData, build_report, render_html, render_markdown
from migration_watch.report.timeline import Notification, TimelineEntry
from migration_watch.results import Status
from migration_watch.state import SqliteStateStore
from tests.report_story import story_week
from tests.support import Receiver

from .test_report import _empty_report, check_html, validate
from .test_verdict import CONF, CONFIG, CONV, END, PROBE, SETTINGS, T0, H, healthy, record_week


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStateStore]:
    s = SqliteStateStore(tmp_path / "state.db", wall=lambda: T0)
    yield s
    s.close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[ReportData]:
    """The story's week, recorded once for this module (the tests only read it)."""
    s = SqliteStateStore(tmp_path_factory.mktemp("week") / "state.db", wall=lambda: T0)
    try:
        story_week(s, receiver)
        yield build_report(s, config=CONFIG, now=END, settings=SETTINGS)
    finally:
        s.close()


def hours(text: str | None) -> float | None:
    return None if text is None else (datetime.fromisoformat(text) - T0) / H


def test_the_timeline_has_every_interval_with_its_edges_and_notifications(
    week: ReportData, receiver: Receiver
) -> None:
    doc = validate(week)
    spans = [
        (e["check"], e["subject"], i["status"], hours(i["from"]), hours(i["to"]))
        for e in doc["timeline"]
        for i in e["intervals"]
    ]
    assert spans == [
        ("coverage", CONV, "fail", 0, 20),  # failing from the first run
        ("legacy_errors", "logs", "fail", 5, 36),
        ("log_errors", "logs", "fail", 5, 36),
        ("post_deploy_writes", CONV, "fail", 5, 36),
        ("orphans", CONF, "error", 36, 60),  # could not measure
        ("query_ratio", "database", "fail", 48, 60),  # flapping: two episodes
        ("query_ratio", "database", "fail", 72, 96),
        ("latency", PROBE, "fail", 120, None),  # still failing at the end
    ]
    by_check = {(e["check"], e["subject"]): e for e in doc["timeline"]}
    coverage = by_check[("coverage", CONV)]["intervals"][0]
    # the error run at 10h is inside: counted, neither closing nor splitting the interval
    assert (coverage["runs"], coverage["failing_runs"], coverage["unmeasured_runs"]) == (20, 19, 1)
    assert (coverage["worst"]["value"], coverage["worst"]["run_id"]) == (40, 1)
    post = by_check[("post_deploy_writes", CONV)]["intervals"][0]
    assert (post["worst"]["value"], hours(post["worst"]["at"])) == (72, 24)
    assert post["last_failing_at"] == (T0 + 24 * H).isoformat()
    assert post["duration_seconds"] == 31 * 3600
    latency = by_check[("latency", PROBE)]["intervals"][0]
    assert latency["still_failing"] and latency["duration_seconds"] == 24 * 3600

    def sent(check: str, subject: str) -> list[tuple[Any, ...]]:
        return [
            (n["event"], hours(n["at"]), n["kind"], n["interval"], n["receivers"])
            for n in by_check[(check, subject)]["notifications"]
        ]

    delivered = [{"name": "hook", "delivery": "delivered"}]
    assert sent("post_deploy_writes", CONV) == [
        ("firing", 5, "fail", 0, delivered),
        ("resolved", 36, "fail", 0, delivered),
    ]
    # log_errors fires after `for: 10` evaluations
    assert sent("log_errors", "logs")[0][:2] == ("firing", 14)
    assert sent("orphans", CONF) == [
        ("firing", 48, "error", 0, delivered),  # error_for: 2
        ("resolved", 60, "error", 0, delivered),
    ]
    assert [n[3] for n in sent("query_ratio", "database")] == [0, 0, 1, 1]
    # the receiver answers 503 after 100h: the latency alert is still queued
    assert sent("latency", PROBE) == [
        ("firing", 120, "fail", 0, [{"name": "hook", "delivery": "queued"}])
    ]
    ok = {
        n["notification_id"]
        for e in doc["timeline"]
        for n in e["notifications"]
        if n["receivers"][0]["delivery"] == "delivered"
    }
    # every firing and resolved notification the receiver accepted (repeats of a firing
    # alert are not listed; the latency one was refused with 503)
    answered = {
        q.headers["webhook-id"]
        for q in receiver.requests
        if q.json["type"] == "alert.resolved" or q.json["data"]["repeat"] == 0
    }
    assert ok == answered - {
        n["notification_id"] for n in by_check[("latency", PROBE)]["notifications"]
    }
    assert len(ok) == 14


def test_the_log_windows_per_hour_and_the_pre_deploy_rate(week: ReportData) -> None:
    logs = validate(week)["series"]["logs"]
    assert len(logs) == 32
    first, bug, day2 = logs[0], logs[6], logs[25]
    # the run at T0: no window before it (no `since`, not after T0): no rate
    assert (first["since"], first["hours"], first["errors_per_hour"]) == (None, None, None)
    assert (hours(bug["at"]), bug["hours"], bug["errors"], bug["lines"]) == (6, 1, 30, 600)
    assert bug["errors_per_hour"] == 30 and bug["pre_deploy_errors_per_hour"] == 6
    assert bug["legacy_errors_per_hour"] == 3
    # the window 24h → 36h: 12 hours
    assert (hours(day2["since"]), day2["hours"], day2["errors"]) == (24, 12, 72)
    assert day2["errors_per_hour"] == 6 and day2["expected_errors"] == pytest.approx(72)
    assert day2["legacy_references_per_hour"] == 14


def test_markdown_starts_with_the_timeline_and_sums_the_logs_per_day(week: ReportData) -> None:
    text = render_markdown(week)
    assert text.index("## Incident timeline") < text.index("## Progress")
    rows = [ln for ln in text.split("## Progress")[0].splitlines() if ln.startswith("| ")]
    assert len(rows) == 1 + 8  # the header and one row per interval
    latency = next(r for r in rows if r.startswith("| latency"))
    assert "| still failing |" in latency and "firing T0+120h → hook queued" in latency
    coverage = next(r for r in rows if r.startswith("| coverage"))
    assert "| 2024-05-01 09:00:00Z T0 | 2024-05-02 05:00:00Z T0+20h | 20h |" in coverage
    assert "19 of 20 (1 not measured)" in coverage
    assert "firing T0 → hook delivered; resolved T0+20h → hook delivered" in coverage
    orphans = next(r for r in rows if r.startswith("| orphans"))
    assert "not measured (error)" in orphans and "firing (error) T0+48h" in orphans
    logs = text.split("## Logs", 1)[1].split("## Checks", 1)[0]
    # day 1: the runs at T0 .. T0+24h; 600 lines an hour, 5 % errors during the bug
    # per hour of the windows with a known length (not the one ending at T0)
    assert "| 1 | 25 | 15000 | 630 | 26 | 6 | 37.5 | 60 |" in logs
    assert "| 2 | 2 | 14400 | 144 | 6 | 6 | 8 | 0 |" in logs
    assert "No log errors" not in logs


def test_html_draws_the_timeline_and_the_log_charts_and_collapses_flat_ones(
    week: ReportData,
) -> None:
    text = render_html(week)
    check_html(text)
    assert text.index('data-chart="timeline"') < text.index('id="progress"')
    timeline = re.search(r'<svg[^>]*data-chart="timeline".*?</svg>', text, re.S)
    assert timeline is not None
    bars = re.findall(r'<rect [^>]*rx="2" fill="(#[0-9a-f]+)"', timeline.group(0))
    assert bars.count("#ec7063") == 7 and bars.count("#f5b041") == 1  # failing, not measured
    # a mark per notification
    assert (timeline.group(0).count("firing at"), timeline.group(0).count("resolved at")) == (8, 7)
    assert "customer_configs" in timeline.group(0)
    assert re.search(
        r'<p class="flat" data-chart="missing:public\.customer_configs">.*'
        r"no rows missing all week</p>",
        text,
    )
    for marker in ("log_errors", "log_legacy"):
        chart = re.search(rf'<svg[^>]*data-chart="{marker}".*?</svg>', text, re.S)
        assert chart is not None and chart.group(0).count("<polyline") == 2
    errors = re.search(r'<svg[^>]*data-chart="log_errors".*?</svg>', text, re.S)
    assert errors is not None and "at the pre-deploy error rate" in errors.group(0)
    assert "<b>still failing</b>" in text


def test_quiet_logs_and_a_quiet_week_collapse_into_lines(store: SqliteStateStore) -> None:
    store.set_deployment(T0, "marker", recorded_at=T0)

    def quiet(index: int, at: Any, hours_: float) -> list[Any]:
        out = []
        for res in healthy(index, at, hours_):
            if res.check == "coverage" and res.subject == CONV:
                continue  # no backfill in progress: nothing fails
            if res.check == "log_errors":
                res = type(res)(
                    "log_errors",
                    "logs",
                    Status.PASS,
                    observed={"errors": 0, "lines": 500, "baseline_error_rate": 0.01},
                )
            out.append(res)
        return out

    record_week(store, quiet, until=T0 + 30 * H)
    data = build_report(store, config=CONFIG, now=T0 + 30 * H, settings=SETTINGS)
    validate(data)
    assert data.timeline == ()
    text = render_html(data)
    check_html(text)
    assert "Nothing failed so far: every measured result passed." in text
    assert re.search(r'<p class="flat" data-chart="log_errors">.*no log errors so far', text)
    assert re.search(r'<p class="flat" data-chart="log_legacy">.*no legacy references so far', text)
    assert 'data-chart="timeline"' in text and "<svg" in text  # the other charts remain
    markdown = render_markdown(data)
    assert "Nothing failed so far" in markdown
    assert "No log errors so far, no legacy references so far (12500 lines in 25 windows)." in (
        markdown
    )


def test_an_alert_without_results_gets_its_own_row(store: SqliteStateStore) -> None:
    """A monitor alert (database_up) has no stored results: a row of its notifications."""
    note = Notification(
        event="firing",
        at=T0 + 2 * H,
        wall_at=None,
        alertname="MigrationWatchDatabaseDown",
        kind="fail",
        severity="critical",
        notification_id="n1",
        receivers=(("hook", "failed"),),
    )
    data = replace(
        _empty_report(),
        deployed_at=T0,
        timeline=(TimelineEntry("database_up", "database", (), (note,)),),
    )
    doc = validate(data)
    assert doc["timeline"][0]["notifications"][0]["receivers"] == [
        {"name": "hook", "delivery": "failed"}
    ]
    markdown = render_markdown(data)
    assert (
        "| database\\_up | database | alert | 2024-05-01 11:00:00Z T0+2h | - | - | - | - |"
        " firing T0+2h → hook failed |" in markdown
    )
    text = render_html(data)
    check_html(text)
    assert "firing T0+2h → hook failed" in text and "still failing" not in text
