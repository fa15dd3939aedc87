"""Judgement tables of the verdict: every criterion at its boundaries (median vs best vs worst
final run, exactly at a threshold and one past it, stale / errored / empty histories, the week's
edges, pending before the end). Each case names the decision a plausible slip would change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from migration_watch.cadence import RunState
from migration_watch.results import Result, Status
from migration_watch.state import StoredResult
from migration_watch.verdict import CriterionStatus, Verdict, VerdictSettings, evaluate_verdict

from .test_verdict import END, T0, H

MET = CriterionStatus.MET
NOT_MET = CriterionStatus.NOT_MET
NOT_MEASURED = CriterionStatus.NOT_MEASURED
PENDING = CriterionStatus.PENDING
P, F, E, S = Status.PASS, Status.FAIL, Status.ERROR, Status.SKIPPED
US = timedelta(microseconds=1)
SUBJECT = "public.conversations"

#: One run's result for the subject under test: (status, observed), or None (no result).
Point = tuple[Status, dict[str, Any]] | None


def res(check: str, status: Status, subject: str = SUBJECT, **observed: Any) -> Result:
    return Result(check, subject, status, observed, message=f"{check} {status.value} msg")


def runs(check: str, points: Sequence[Point], subject: str = SUBJECT) -> list[StoredResult]:
    """Run ``i`` (id ``i + 1``) at T0 + (i + 1) h, one result of ``check`` on ``subject``."""
    out = []
    for i, point in enumerate(points):
        if point is None:
            # the run happened (it counts for the final runs) but measured something else
            result = res("other", P, "elsewhere")
        else:
            result = res(check, point[0], subject, **point[1])
        out.append(StoredResult(i + 1, RunState.DONE, i, T0 + (i + 1) * H, result))
    return out


def verdict(history: Sequence[StoredResult], now: Any = END, **settings: Any) -> Verdict:
    return evaluate_verdict(
        history, now=now, deployed_at=T0, verdict_at=END, settings=VerdictSettings(**settings)
    )


# --------------------------------------------------------------------------- latency


@dataclass(frozen=True)
class Lat:
    """Final-run latency ratios (oldest first), the expected status and why."""

    ratios: tuple[float | None, ...]
    expected: CriterionStatus
    why: str
    final_runs: int = 3
    tolerance: float = 0.10
    before: tuple[float, ...] = (5.0,)  # an outlier before the final runs, ignored
    statuses: tuple[Status, ...] = ()  # per final run; PASS by default
    summary: str = ""
    worst_run: int | None = None


LATENCY = [
    Lat(
        (1.00, 1.12, 1.30),
        NOT_MET,
        "median 1.12 > 1.10; the best run (1.00) would be met",
        summary="median ratio 1.12x > 1.10x over 3 run(s)",
        worst_run=3,
    ),
    Lat(
        (1.00, 1.05, 1.30),
        MET,
        "median 1.05; the worst (1.30) or the mean (1.117) would fail",
        summary="median ratio 1.05x ≤ 1.10x over 3 run(s)",
        worst_run=3,
    ),
    Lat(
        (1.30, 1.00, 1.12),
        NOT_MET,
        "unsorted: the middle run (1.00) is not the median",
        worst_run=1,
    ),
    Lat((1.12, 1.30, 1.00), NOT_MET, "the latest run (1.00) is not the median", worst_run=2),
    Lat(
        (1.00, 1.08, 1.13, 1.30),
        NOT_MET,
        "even count: (1.08+1.13)/2 = 1.105; median_low met",
        final_runs=4,
        summary="median ratio 1.10x > 1.10x over 4 run(s)",
    ),
    Lat(
        (1.00, 1.06, 1.13, 1.30),
        MET,
        "even count: 1.095; median_high (1.13) would fail",
        final_runs=4,
    ),
    Lat((1.02, 1.15), MET, "two final runs: the mean of both, 1.085", final_runs=2),
    Lat((1.10, 1.10, 1.10), MET, "exactly at 1 + tolerance is within"),
    Lat((1.10 + 5e-10,) * 3, MET, "within the float epsilon of the limit"),
    Lat((1.100001,) * 3, NOT_MET, "one past the limit"),
    Lat((1 + 0.10 + 1e-9,) * 3, MET, "exactly at the limit plus epsilon is still within"),
    Lat((1.00,) * 3, MET, "zero tolerance: equal to the baseline", tolerance=0.0),
    Lat((1.001,) * 3, NOT_MET, "zero tolerance: any slowdown", tolerance=0.0),
    Lat((1.25,) * 3, NOT_MET, "tolerance 0.20: 1.25 > 1.20", tolerance=0.20),
    Lat((1.19,) * 3, MET, "tolerance 0.20: 1.19 ≤ 1.20", tolerance=0.20),
    Lat(
        (1.0, 1.0, 1.0),
        MET,
        "the slow outlier before the final runs does not count",
        before=(9.0, 9.0),
    ),
    Lat(
        (None, 1.0, 1.0),
        MET,
        "a final pass with no ratio is left out: median of two 1.0",
        summary="over 2 run(s)",
    ),
    Lat(
        (None, 1.0),
        NOT_MET,
        "a failed final run without a ratio counts as infinitely slow",
        final_runs=2,
        statuses=(F, P),
    ),
    Lat(
        (None, 1.0, 1.0),
        MET,
        "one failed run without a ratio of three: median of 1, 1, inf",
        statuses=(F, P, P),
        summary="over 3 run(s)",
    ),
    Lat(
        (None, None, 1.0),
        NOT_MET,
        "two failed final runs without a ratio: median inf",
        statuses=(F, F, P),
        summary="over 3 run(s)",
    ),
    Lat(
        (None, 1.0),
        MET,
        "an errored final run without a ratio is left out",
        final_runs=2,
        statuses=(E, P),
        summary="over 1 run(s)",
    ),
]


@pytest.mark.parametrize("case", LATENCY, ids=lambda c: c.why)
def test_latency_is_judged_on_the_median_of_the_final_runs(case: Lat) -> None:
    statuses = case.statuses or (P,) * len(case.ratios)
    points: list[Point] = [(P, {"ratio": b}) for b in case.before]
    for ratio, status in zip(case.ratios, statuses, strict=True):
        points.append((status, {} if ratio is None else {"ratio": ratio}))
    v = verdict(
        runs("latency", points, "probe"),
        final_runs=case.final_runs,
        latency_tolerance=case.tolerance,
    )
    crit = v.criterion("latency")
    assert crit.status is case.expected, crit.summary
    assert case.summary in crit.summary
    if case.worst_run is not None:
        assert [e.run_id for e in crit.evidence] == [len(case.before) + case.worst_run]


def test_latency_ratio_from_median_and_baseline_seconds() -> None:
    def lat(median: float, baseline: float) -> Point:
        return (P, {"median_seconds": median, "baseline_seconds": baseline})

    v = verdict(runs("latency", [lat(0.0111, 0.01), lat(0.0111, 0.01)], "probe"))
    assert v.criterion("latency").status is NOT_MET  # 1.11 > 1.10
    v = verdict(runs("latency", [lat(0.0109, 0.01), lat(0.0109, 0.01)], "probe"))
    assert v.criterion("latency").status is MET  # 1.09; baseline/median would be 0.92 either way
    v = verdict(runs("latency", [lat(0.0100, 0.0089), lat(0.0100, 0.0089)], "probe"))
    assert v.criterion("latency").status is NOT_MET  # 1.12 (median / baseline, not inverse)
    # a zero baseline gives no ratio: nothing to judge
    v = verdict(runs("latency", [lat(0.01, 0.0), lat(0.01, 0.0)], "probe"))
    assert v.criterion("latency").status is NOT_MEASURED


@pytest.mark.parametrize(
    ("points", "summary"),
    [
        ([], "no probes to measure"),
        ([(S, {}), (S, {})], "no probes to measure"),  # not applicable
        ([(E, {}), (E, {})], "never measured (2 error result(s))"),
        ([(E, {"ratio": 1.0}), (E, {"ratio": 1.0})], "never measured (2 error result(s))"),
        ([(P, {"ratio": 1.0}), None, None], "no latency ratio in the final runs"),
        ([(P, {"ratio": 1.0}), (E, {}), (E, {})], "no latency ratio in the final runs"),
        ([(P, {}), (P, {})], "no latency ratio in the final runs"),
    ],
    ids=["empty", "skipped", "errors", "errors-with-ratio", "stale", "final-errors", "no-ratio"],
)
def test_latency_without_a_final_ratio_is_not_measured(points: list[Point], summary: str) -> None:
    crit = verdict(runs("latency", points, "probe")).criterion("latency")
    assert crit.status is NOT_MEASURED
    assert summary in crit.summary


# --------------------------------------------------------------------------- state criteria

OK_COV = {"total": 10, "missing_new": 0}
BAD_COV = {"total": 10, "missing_new": 1}
RLS_OK = {"rls_enabled": True, "policies_on_new": 1}
IDX_OK = {"exists": True, "valid": True, "ready": True, "covers_new": True}


@dataclass(frozen=True)
class St:
    """A per-subject criterion over one subject's runs (oldest first; final runs: last 2)."""

    criterion: str
    check: str
    points: tuple[Point, ...]
    expected: CriterionStatus
    why: str
    summary: str = ""
    evidence_runs: tuple[int, ...] | None = None
    settings: dict[str, Any] = field(default_factory=dict)


STATE = [
    # coverage: every measurement of the final runs pass with missing_new == 0
    St(
        "coverage",
        "coverage",
        ((P, OK_COV),) * 3,
        MET,
        "clean end state",
        "all 10 rows have the new column",
        (3,),
    ),
    St(
        "coverage",
        "coverage",
        ((F, BAD_COV), (P, OK_COV), (P, OK_COV)),
        MET,
        "a failure before the final runs is history",
    ),
    St(
        "coverage",
        "coverage",
        ((P, OK_COV), (F, BAD_COV), (P, OK_COV)),
        NOT_MET,
        "the first final run failing: one good run after a bad one is not enough",
        "1 of 10 rows lack the new column at the end of the week (run 2",
        (2, 3),
    ),
    St(
        "coverage",
        "coverage",
        ((P, OK_COV), (P, OK_COV), (F, BAD_COV)),
        NOT_MET,
        "the last run failing",
        evidence_runs=(3,),
    ),
    St(
        "coverage",
        "coverage",
        ((P, OK_COV), (P, OK_COV), (P, BAD_COV)),
        NOT_MET,
        "a pass status with missing_new == 1 is not clean",
    ),
    St(
        "coverage",
        "coverage",
        ((P, OK_COV), (P, OK_COV), (F, OK_COV)),
        NOT_MET,
        "a fail status with missing_new == 0 is not clean",
    ),
    St(
        "coverage",
        "coverage",
        ((P, OK_COV), (P, OK_COV), (P, {"total": 10})),
        NOT_MET,
        "a pass without missing_new is not a measurement of 100%",
    ),
    St(
        "coverage",
        "coverage",
        ((P, OK_COV), (E, {}), (P, OK_COV)),
        MET,
        "one errored final run is tolerated",
    ),
    St(
        "coverage",
        "coverage",
        ((P, OK_COV), (E, {}), (E, {})),
        NOT_MEASURED,
        "errored final runs: the end state is unknown",
        "not measured in the final runs",
    ),
    St(
        "coverage",
        "coverage",
        ((P, OK_COV), None, None),
        NOT_MEASURED,
        "measured only before the final runs",
        "not measured in the final runs",
        (1,),
    ),
    St(
        "coverage",
        "coverage",
        ((E, {}), (E, {}), (E, {})),
        NOT_MEASURED,
        "only errors: never met",
        "never measured (3 error result(s))",
        (3,),
    ),
    St(
        "coverage",
        "coverage",
        ((S, {}), (E, {}), (S, {})),
        NOT_MEASURED,
        "skipped: not applicable, no subject left",
        "no tables to measure",
    ),
    St(
        "coverage",
        "coverage",
        ((F, BAD_COV), (P, OK_COV)),
        NOT_MET,
        "final_runs=3 reaches back to the failure",
        settings={"final_runs": 3},
    ),
    St(
        "coverage",
        "coverage",
        ((P, OK_COV), (F, BAD_COV), (P, OK_COV)),
        MET,
        "final_runs=1: only the last run",
        settings={"final_runs": 1},
    ),
    St(
        "coverage",
        "coverage",
        ((P, OK_COV),),
        NOT_MEASURED,
        "an expected table without results",
        "public.absent: no results in the week",
        settings={"tables": (SUBJECT, "public.absent")},
    ),
    # orphans
    St("orphans", "orphans", ((P, {"orphans": 0}),) * 2, MET, "zero orphans", "0 orphaned rows"),
    St(
        "orphans",
        "orphans",
        ((P, {"orphans": 0}), (F, {"orphans": 1})),
        NOT_MET,
        "one orphan",
        "1 orphaned rows at the end",
    ),
    St("orphans", "orphans", ((P, {"orphans": 0}), (P, {})), NOT_MET, "no count at all"),
    # indexes
    St(
        "indexes",
        "schema",
        ((P, {"indexes": {"i": IDX_OK}}),) * 2,
        MET,
        "valid index",
        "1 index(es) present and valid",
    ),
    *(
        St(
            "indexes",
            "schema",
            ((P, {"indexes": {"i": IDX_OK}}), (F, {"indexes": {"i": {**IDX_OK, flag: False}}})),
            NOT_MET,
            f"{flag} false",
            f"i {text}",
        )
        for flag, text in (
            ("exists", "missing"),
            ("valid", "invalid"),
            ("ready", "not ready"),
            ("covers_new", "does not cover the new column"),
        )
    ),
    St(
        "indexes",
        "schema",
        ((P, {"indexes": {}}),) * 2,
        NOT_MEASURED,
        "no index expected nor seen",
        "no expected indexes to measure",
    ),
    St(
        "indexes",
        "schema",
        ((P, {"indexes": {}}),) * 2,
        MET,
        "an expected table with no index listed",
        settings={"index_tables": (SUBJECT,)},
    ),
    # rls
    St("rls", "rls", ((P, RLS_OK),) * 2, MET, "enabled, one policy", "1 policy(ies)"),
    St(
        "rls",
        "rls",
        ((P, RLS_OK), (P, {**RLS_OK, "policies_on_new": 0})),
        NOT_MET,
        "no policy on the new column",
    ),
    St(
        "rls",
        "rls",
        ((P, RLS_OK), (P, {**RLS_OK, "rls_enabled": False})),
        NOT_MET,
        "disabled",
        "row-level security disabled",
    ),
    St("rls", "rls", ((P, RLS_OK), (F, RLS_OK)), NOT_MET, "a failed status"),
    # legacy_column: every measurement of the week
    St(
        "legacy_column",
        "schema",
        ((P, {"legacy_column_present": True}),) * 3,
        MET,
        "kept",
        "all 3 measurement(s) of the week clean",
    ),
    St(
        "legacy_column",
        "schema",
        ((F, {"legacy_column_present": False}),) + ((P, {"legacy_column_present": True}),) * 2,
        NOT_MET,
        "dropped before the final runs, restored",
        "during the week (run 1",
        (1, 3),
    ),
    St(
        "legacy_column",
        "schema",
        ((P, {"legacy_column_present": True}), (E, {}), (E, {})),
        NOT_MEASURED,
        "present all week, not measured at the end",
    ),
    # post_deploy_writes
    St(
        "post_deploy_writes",
        "post_deploy_writes",
        ((P, {"post_deploy_missing": 0}),) * 2,
        MET,
        "none",
    ),
    St(
        "post_deploy_writes",
        "post_deploy_writes",
        ((P, {"post_deploy_missing": 0}), (F, {"post_deploy_missing": 1})),
        NOT_MET,
        "one row",
        "1 rows written after the deploy",
    ),
    # legacy_errors: every measurement of the week
    St("legacy_errors", "legacy_errors", ((P, {"legacy_errors": 0}),) * 3, MET, "zero"),
    St(
        "legacy_errors",
        "legacy_errors",
        ((F, {"legacy_errors": 1}),) + ((P, {"legacy_errors": 0}),) * 2,
        NOT_MET,
        "one error on day 1 is not forgiven",
        "1 legacy-column error(s) in the window",
        (1, 3),
    ),
    St(
        "legacy_errors",
        "legacy_errors",
        ((P, {}),) * 2,
        MET,
        "pass without a count",
        "no legacy-column errors",
    ),
    St("legacy_errors", "legacy_errors", ((P, {}), (F, {})), NOT_MET, "fail without a count"),
    St(
        "legacy_errors",
        "legacy_errors",
        ((P, {"legacy_errors": 0}), None, None),
        NOT_MEASURED,
        "clean but not in the final runs",
    ),
]


@pytest.mark.parametrize("case", STATE, ids=lambda c: f"{c.criterion}: {c.why}")
def test_state_criteria_at_their_boundaries(case: St) -> None:
    v = verdict(runs(case.check, case.points), **case.settings)
    crit = v.criterion(case.criterion)
    assert crit.status is case.expected, crit.summary
    assert case.summary in crit.summary
    if case.evidence_runs is not None:
        assert tuple(e.run_id for e in crit.evidence) == case.evidence_runs


# --------------------------------------------------------------------------- error budget


def _windows(*failed: bool) -> list[Point]:
    return [(F, {"errors": 50}) if bad else (P, {"errors": 1}) for bad in failed]


@pytest.mark.parametrize(
    ("points", "budget", "expected", "summary"),
    [
        (_windows(False, False, False), 0, MET, "0 of 3 window(s) over the error budget, 3 error"),
        (_windows(True, False, False), 0, NOT_MET, "1 window(s) over the error budget (allowed 0)"),
        (_windows(True, False, False), 1, MET, "1 of 3 window(s)"),
        (_windows(True, False, True), 1, NOT_MET, "2 window(s) over the error budget (allowed 1)"),
        (_windows(True, True, True), 3, MET, "3 of 3 window(s) over the error budget, 150 error"),
        ([(P, {"errors": 0}), None, None], 0, NOT_MEASURED, "not measured in the final runs"),
        ([(F, {"errors": 9}), None, None], 0, NOT_MET, "1 window(s)"),
        ([(E, {}), (E, {})], 0, NOT_MEASURED, "never measured"),
        ([(P, {}), (P, {})], 0, MET, "0 of 2 window(s) over the error budget"),
        ([], 0, NOT_MEASURED, "no log error measurements to measure"),
    ],
)
def test_error_budget_counts_failed_windows_against_the_budget(
    points: list[Point], budget: int, expected: CriterionStatus, summary: str
) -> None:
    v = verdict(runs("log_errors", points, "logs"), error_budget_failed_runs=budget)
    crit = v.criterion("error_budget")
    assert crit.status is expected, crit.summary
    assert summary in crit.summary


# --------------------------------------------------------------------------- query ratio


def qr(legacy: float, new: float, *, both: float = 0.0, cumulative: bool = False) -> dict[str, Any]:
    return {
        "legacy": legacy,
        "new": new,
        "both": both,
        "legacy_ratio": legacy / (legacy + new + both),
        "cumulative": cumulative,
    }


def ratio_runs(points: Sequence[tuple[float, dict[str, Any]]]) -> list[StoredResult]:
    """``(hours since T0, observed)``: one query_ratio window per run."""
    return [
        StoredResult(
            i + 1,
            RunState.DONE,
            i,
            T0 + hours * H,
            res("query_ratio", P, "database", **observed),
        )
        for i, (hours, observed) in enumerate(points)
    ]


@pytest.mark.parametrize(
    ("points", "expected", "summary"),
    [
        ([(1, qr(20, 80)), (120, qr(0, 100)), (144, qr(0, 100))], MET, "at zero at the end"),
        ([(1, qr(20, 80)), (120, qr(5, 95)), (144, qr(5, 95))], MET, "final legacy ratio 5.0% ≤"),
        (
            [(1, qr(20, 80)), (120, qr(5.0001, 94.9999)), (144, qr(5.0001, 94.9999))],
            NOT_MET,
            "above 5.0%",
        ),
        ([(1, qr(3, 97)), (120, qr(3, 97)), (144, qr(3, 97))], MET, "not rising"),
        ([(1, qr(3, 97)), (120, qr(3.01, 96.99)), (144, qr(3.01, 96.99))], NOT_MET, "rising"),
        # call-weighted: (1 + 90) / (100 + 1000) = 8.3%; the mean of 1% and 9% would be 5%
        ([(1, qr(20, 80)), (120, qr(1, 99)), (144, qr(90, 910))], NOT_MET, "above 5.0%"),
        # ... and the other way round: (10 + 1) / (100 + 1000) = 1%; the mean would be 5.05%
        ([(1, qr(20, 80)), (120, qr(10, 90)), (144, qr(1, 999))], MET, "final legacy ratio 1.0%"),
        # the first cumulative poll (100% legacy) is not day 1: day 1 is 3%, and flat
        ([(0, qr(50, 0, cumulative=True)), (1, qr(3, 97)), (144, qr(3, 97))], MET, "day 1: 3.0%"),
        # early days rising but day 1 was higher: first vs last measured day only
        ([(1, qr(4, 96)), (30, qr(1, 99)), (144, qr(2, 98))], MET, "day 1: 4.0% → day 7: 2.0%"),
    ],
    ids=[
        "zero",
        "at-threshold",
        "past-threshold",
        "flat",
        "rising",
        "weighted-high",
        "weighted-low",
        "cumulative",
        "first-vs-last-day",
    ],
)
def test_query_ratio_trend_at_its_thresholds(
    points: list[tuple[float, dict[str, Any]]], expected: CriterionStatus, summary: str
) -> None:
    crit = verdict(ratio_runs(points)).criterion("query_ratio_trend")
    assert crit.status is expected, crit.summary
    assert summary in crit.summary


@pytest.mark.parametrize(
    ("at", "day"),
    [
        (timedelta(0), 1),
        (24 * H - US, 1),
        (24 * H, 2),
        (24 * H + US, 2),
        (48 * H - US, 2),
        (48 * H, 3),
        (144 * H, 7),
        (168 * H - US, 7),
    ],
    ids=str,
)
def test_query_ratio_days_start_at_each_24h_after_t0(at: timedelta, day: int) -> None:
    history = ratio_runs([(at / H, qr(1, 99))])
    crit = verdict(history).criterion("query_ratio_trend")
    assert crit.evidence[0].value["first_day"] == day
    assert crit.evidence[0].value["last_day"] == day


def test_query_ratio_final_ratio_is_weighted_over_the_final_runs_only() -> None:
    """Day 7 holds two windows (144 h and 150 h, the final runs); ``both`` calls weigh too."""
    history = ratio_runs(
        [
            (1, qr(50, 50)),
            (2, qr(10, 290)),
            (24, qr(30, 70)),
            (144, qr(1, 49, both=50)),
            (150, qr(9, 291)),
        ]
    )
    crit = verdict(history).criterion("query_ratio_trend")
    value = crit.evidence[0].value
    assert value["final_ratio"] == pytest.approx(10 / 400)
    assert value["first_day_ratio"] == pytest.approx(60 / 400)
    assert value["last_day_ratio"] == pytest.approx(10 / 400)
    assert (value["first_day"], value["last_day"]) == (1, 7)
    assert crit.status is MET


def test_query_ratio_without_final_or_any_windows() -> None:
    stale = ratio_runs([(1, qr(1, 99)), (2, qr(0, 100))])
    stale.append(StoredResult(3, RunState.DONE, 2, T0 + 3 * H, res("other", P, "x")))
    stale.append(StoredResult(4, RunState.DONE, 3, T0 + 4 * H, res("other", P, "x")))
    crit = verdict(stale).criterion("query_ratio_trend")
    assert crit.status is NOT_MEASURED
    assert "no measured window at the end of the week" in crit.summary
    assert (
        verdict([]).criterion("query_ratio_trend").summary == "no query ratio results in the week"
    )
    only_cumulative = ratio_runs([(0, qr(1, 99, cumulative=True))])
    assert verdict(only_cumulative).criterion("query_ratio_trend").status is NOT_MEASURED


# --------------------------------------------------------------------------- the week's edges


@pytest.mark.parametrize(
    ("at", "counted"),
    [
        (T0 - US, False),
        (T0, True),
        (END, True),
        (END + US, False),
    ],
    ids=["before-t0", "at-t0", "at-end", "after-end"],
)
def test_a_run_at_the_edges_of_the_week(at: Any, counted: bool) -> None:
    """An unplanned run with legacy errors at the edge (a whole-week criterion): counted (not
    met) or ignored (met)."""
    good = [
        StoredResult(1, RunState.DONE, 0, T0 + H, res("legacy_errors", P, "logs", legacy_errors=0)),
        StoredResult(
            2, RunState.DONE, 1, END - H, res("legacy_errors", P, "logs", legacy_errors=0)
        ),
    ]
    edge = StoredResult(
        9, RunState.EXTRA, None, at, res("legacy_errors", F, "logs", legacy_errors=4)
    )
    v = verdict([*good, edge], now=END + H)
    assert v.runs_considered == (3 if counted else 2)
    assert v.criterion("legacy_errors").status is (NOT_MET if counted else MET)


def test_a_planned_run_after_the_end_counts_once_the_week_is_over() -> None:
    late = StoredResult(9, RunState.LATE, 5, END + H, res("orphans", F, orphans=4))
    good = StoredResult(1, RunState.DONE, 0, T0 + H, res("orphans", P, orphans=0))
    assert verdict([good, late], now=END + 2 * H).criterion("orphans").status is NOT_MET
    # before the end, the same late run is in the future of ``now``: ignored
    v = verdict([good, late], now=END - US)
    assert v.runs_considered == 1 and v.criterion("orphans").provisional is MET


@pytest.mark.parametrize(
    ("now", "final"),
    [(END - US, False), (END, True), (END + US, True), (T0, False)],
    ids=["just-before", "at-end", "just-after", "at-t0"],
)
def test_pending_until_exactly_the_verdict_time(now: Any, final: bool) -> None:
    history = runs("orphans", [(P, {"orphans": 0}), (F, {"orphans": 2})])
    v = verdict(history, now=now)
    assert v.final is final
    if final:
        assert v.outcome is NOT_MET and v.criterion("orphans").status is NOT_MET
    else:
        assert v.outcome is PENDING and v.criterion("orphans").status is PENDING
        # at T0 no run has started yet (the first one is at T0 + 1 h)
        expected = NOT_MEASURED if now == T0 else NOT_MET
        assert v.criterion("orphans").provisional is expected
    assert v.provisional_outcome is (NOT_MEASURED if now == T0 else NOT_MET)


def test_verdict_at_must_follow_the_deployment() -> None:
    with pytest.raises(ValueError, match="after deployed_at"):
        evaluate_verdict([], now=END, deployed_at=T0, verdict_at=T0)
    v = evaluate_verdict([], now=T0 + US, deployed_at=T0, verdict_at=T0 + US)
    assert v.final


# --------------------------------------------------------------------------- the outcome


def _coverage(missing: int) -> list[StoredResult]:
    status = P if missing == 0 else F
    return runs("coverage", [(status, {"total": 5, "missing_new": missing})] * 2)


@pytest.mark.parametrize(
    ("history", "required", "outcome", "not_measured_has_orphans"),
    [
        (_coverage(0), frozenset({"coverage"}), MET, True),
        (_coverage(0), frozenset({"coverage", "orphans"}), NOT_MEASURED, True),
        (_coverage(1), frozenset({"coverage", "orphans"}), NOT_MET, True),
        (_coverage(1), frozenset(), NOT_MET, True),
        ([], frozenset(), MET, True),
    ],
    ids=["optional-gap", "required-gap", "not-met-wins", "not-met-optional", "nothing"],
)
def test_outcome_not_met_then_required_not_measured_then_met(
    history: list[StoredResult],
    required: frozenset[str],
    outcome: CriterionStatus,
    not_measured_has_orphans: bool,
) -> None:
    v = verdict(history, required=required)
    assert v.outcome is outcome
    assert ("orphans" in v.not_measured) is not_measured_has_orphans
    assert ("coverage" in v.not_measured) is (not history)
    assert {c.criterion for c in v.criteria if c.required} == set(required)
