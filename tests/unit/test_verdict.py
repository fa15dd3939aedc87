"""The week's verdict, from recorded histories (as data, and through a real SQLite store)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from migration_watch.cadence import RunState, plan, verdict_at
from migration_watch.config import Config, parse_config
from migration_watch.results import Result, Status
from migration_watch.state import SqliteStateStore, StoredResult
from migration_watch.verdict import (
    CRITERIA,
    CriterionStatus,
    Verdict,
    VerdictSettings,
    evaluate_verdict,
)

H = timedelta(hours=1)
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
END = verdict_at(T0)
CONV = "public.conversations"
CONF = "public.customer_configs"
SCRAPER = "public.scraper_configs"
INDEX = "idx_conversations_organization_id"
PROBE = "conversation_list"

MET = CriterionStatus.MET
NOT_MET = CriterionStatus.NOT_MET
NOT_MEASURED = CriterionStatus.NOT_MEASURED
PENDING = CriterionStatus.PENDING

#: Results of one run: (planned index, time, hours since T0) -> results.
Scenario = Callable[[int, datetime, float], list[Result]]


def make_config(tables: list[dict[str, Any]] | None = None) -> Config:
    return parse_config(
        {
            "database": {"dsn": "postgresql://monitor@127.0.0.1:1/app"},
            "migration": {
                "name": "customer-id-to-organization-id",
                "legacy_column": "customer_id",
                "new_column": "organization_id",
                "tables": tables
                if tables is not None
                else [
                    {
                        "name": "conversations",
                        "created_at": "created_at",
                        "indexes": [INDEX],
                        "rls": True,
                    },
                    {"name": "customer_configs", "rls": True},
                    {
                        "name": "scraper_configs",
                        "required": False,
                        "indexes": ["idx_scraper_configs_organization_id"],
                    },
                ],
            },
        },
        env={},
    )


CONFIG = make_config()
SETTINGS = VerdictSettings.for_config(CONFIG, log_checks=True, probes=True)


def r(check: str, subject: str, status: Status = Status.PASS, **observed: Any) -> Result:
    return Result(
        check=check,
        subject=subject,
        status=status,
        observed=observed,
        message=f"{check} {status.value} on {subject}",
        table=subject if subject.startswith("public.") else None,
    )


def healthy(index: int, at: datetime, hours: float) -> list[Result]:
    """A good week: the backfill finishes on day 1, legacy queries fade out to zero."""
    missing = max(0, 40 - int(hours * 2))
    legacy = max(0, 100 - int(hours))
    new = 100 + int(hours)
    out = [
        r(
            "coverage",
            CONV,
            Status.PASS if missing == 0 else Status.FAIL,
            total=1000,
            with_new=1000 - missing,
            with_legacy=1000,
            missing_new=missing,
            backfill_ratio=(1000 - missing) / 1000,
        ),
        r("coverage", CONF, total=50, with_new=50, with_legacy=50, missing_new=0, backfill_ratio=1),
        r("coverage", SCRAPER, Status.SKIPPED),
        r("orphans", CONV, orphans=0),
        r("orphans", CONF, orphans=0),
        r("orphans", SCRAPER, Status.SKIPPED),
        r("post_deploy_writes", CONV, post_deploy_missing=0),
        r(
            "schema",
            CONV,
            new_column_type="uuid",
            legacy_column_present=True,
            indexes={INDEX: {"exists": True, "valid": True, "ready": True, "covers_new": True}},
        ),
        r("schema", CONF, new_column_type="uuid", legacy_column_present=True, indexes={}),
        r("schema", SCRAPER, Status.SKIPPED),
        r("rls", CONV, rls_enabled=True, policies_on_new=2, policies_on_legacy=0),
        r("rls", CONF, rls_enabled=True, policies_on_new=1, policies_on_legacy=1),
        r(
            "query_ratio",
            "database",
            legacy=legacy,
            new=new,
            both=10,
            legacy_ratio=legacy / (legacy + new + 10),
            window_seconds=3600,
            cumulative=index == 0,
        ),
        r("latency", PROBE, median_seconds=0.0102, baseline_seconds=0.01, ratio=1.02),
        r("legacy_errors", "logs", legacy_errors=0),
        r("log_errors", "logs", errors=2, lines=10_000),
    ]
    return out


def patched(base: Scenario, change: Callable[[Result, float], Result | None]) -> Scenario:
    """``base`` with each result passed through ``change`` (None drops it)."""

    def scenario(index: int, at: datetime, hours: float) -> list[Result]:
        out = []
        for result in base(index, at, hours):
            new = change(result, hours)
            if new is not None:
                out.append(new)
        return out

    return scenario


def history_for(
    scenario: Scenario, *, until: datetime = END, t0: datetime = T0
) -> list[StoredResult]:
    """The stored results a store would hold after the planned runs up to ``until``."""
    out: list[StoredResult] = []
    for run in plan(t0):
        if run.at > until:
            break
        hours = (run.at - t0) / H
        out += [
            StoredResult(run.index + 1, RunState.DONE, run.index, run.at, res)
            for res in scenario(run.index, run.at, hours)
        ]
    return out


def record_week(
    store: SqliteStateStore,
    scenario: Scenario,
    *,
    until: datetime = END,
    t0: datetime = T0,
    skip: frozenset[int] = frozenset(),
) -> int:
    """Run the plan up to ``until`` through a real store (skipped indices never run)."""
    count = 0
    for run in plan(t0):
        if run.at > until:
            break
        if run.index in skip:
            continue
        run_id = store.begin_run(
            state=RunState.DONE, started_at=run.at, planned_index=run.index, planned_at=run.at
        )
        hours = (run.at - t0) / H
        store.finish_run(
            run_id, scenario(run.index, run.at, hours), finished_at=run.at + 2 * H / 60
        )
        count += 1
    return count


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStateStore]:
    s = SqliteStateStore(tmp_path / "state.db", wall=lambda: T0)
    yield s
    s.close()


def evaluate(
    history: list[StoredResult],
    *,
    now: datetime = END,
    settings: VerdictSettings = SETTINGS,
) -> Verdict:
    return evaluate_verdict(history, now=now, deployed_at=T0, verdict_at=END, settings=settings)


def statuses(v: Verdict) -> dict[str, CriterionStatus]:
    return {c.criterion: c.status for c in v.criteria}


# --------------------------------------------------------------------------- whole weeks


def test_a_healthy_week_meets_every_criterion() -> None:
    v = evaluate(history_for(healthy))
    assert statuses(v) == dict.fromkeys(CRITERIA, MET)
    assert v.outcome is MET and v.final and v.not_measured == ()
    assert v.runs_considered == 32
    coverage = v.criterion("coverage")
    # evidence names the run, its time and the value: the last run, 144 h after T0
    ev = {e.subject: e for e in coverage.evidence}
    assert ev[CONV].run_id == 32 and ev[CONV].at == T0 + 144 * H
    assert ev[CONV].value["missing_new"] == 0
    assert SCRAPER not in ev  # optional table that does not exist: not applicable
    trend = v.criterion("query_ratio_trend")
    assert "at zero" in trend.summary


def test_recorded_history_with_one_criterion_not_met(store: SqliteStateStore) -> None:
    """A code path keeps writing rows without the new column until the end of the week."""

    def bug(result: Result, hours: float) -> Result:
        if result.check == "post_deploy_writes" and hours >= 5:
            return replace(result, status=Status.FAIL, observed={"post_deploy_missing": 7})
        return result

    record_week(store, patched(healthy, bug))
    v = evaluate(store.result_history())
    s = statuses(v)
    assert s.pop("post_deploy_writes") is NOT_MET
    assert set(s.values()) == {MET}
    assert v.outcome is NOT_MET
    crit = v.criterion("post_deploy_writes")
    first = crit.evidence[0]
    assert first.subject == CONV and first.value == {"post_deploy_missing": 7}
    # the first failing run of the final runs (T0+120h, run 31) and the latest one (run 32)
    runs = {r.id: r for r in store.run_history()}
    assert first.run_id is not None and runs[first.run_id].planned_at == T0 + 120 * H
    assert crit.evidence[-1].run_id == 32
    assert "7 rows written after the deploy" in crit.summary


def test_a_bug_fixed_and_backfilled_before_the_end_is_met() -> None:
    def bug(result: Result, hours: float) -> Result:
        if result.check == "post_deploy_writes" and 5 <= hours < 72:
            return replace(result, status=Status.FAIL, observed={"post_deploy_missing": 7})
        return result

    v = evaluate(history_for(patched(healthy, bug)))
    assert v.criterion("post_deploy_writes").status is MET
    assert v.outcome is MET


def test_error_only_history_is_not_measured_never_met() -> None:
    def rls_errors(result: Result, hours: float) -> Result:
        if result.check == "rls":
            return replace(result, status=Status.ERROR, observed={}, message="permission denied")
        return result

    v = evaluate(history_for(patched(healthy, rls_errors)))
    rls = v.criterion("rls")
    assert rls.status is NOT_MEASURED and rls.required
    assert "permission denied" in rls.summary
    assert rls.evidence and rls.evidence[0].status == "error"
    # a required criterion not measured: nobody can sign off
    assert v.outcome is NOT_MEASURED
    assert v.not_measured == ("rls",)


def test_optional_criteria_not_measured_leave_the_outcome_met() -> None:
    """Without log checks or probes the verdict is met, listing what was not measured."""

    def no_logs(result: Result, hours: float) -> Result | None:
        if result.check in ("legacy_errors", "log_errors"):
            return None
        if result.check == "latency":
            return replace(result, status=Status.ERROR, observed={}, message="timeout")
        return result

    settings = VerdictSettings.for_config(CONFIG)
    assert {"legacy_errors", "error_budget", "latency"}.isdisjoint(settings.required)
    v = evaluate(history_for(patched(healthy, no_logs)), settings=settings)
    assert v.outcome is MET
    assert v.not_measured == ("legacy_errors", "error_budget", "latency")
    for name in v.not_measured:
        assert v.criterion(name).status is NOT_MEASURED
    # the same history when logs and probes are configured: required, so not measured
    assert evaluate(history_for(patched(healthy, no_logs))).outcome is NOT_MEASURED


def test_pending_before_the_end_with_a_provisional_state() -> None:
    now = T0 + 50 * H
    v = evaluate(history_for(healthy, until=now), now=now)
    assert v.outcome is PENDING and not v.final
    assert all(c.status is PENDING for c in v.criteria)
    # provisional: as if the week ended now. The database is fine, but legacy queries are
    # still a fifth of the traffic on day 3.
    provisional = {c.criterion: c.provisional for c in v.criteria}
    trend = v.criterion("query_ratio_trend")
    assert provisional.pop("query_ratio_trend") is NOT_MET
    assert set(provisional.values()) == {MET}
    assert "above 5.0%" in trend.summary
    assert v.provisional_outcome is NOT_MET
    one_hot = v.one_hot()
    assert len(one_hot) == len(CRITERIA) * 4
    assert {(c, s) for c, s, value in one_hot if value == 1.0} == {(c, "pending") for c in CRITERIA}


def test_pending_provisional_not_met_mid_week() -> None:
    now = T0 + 10 * H  # the backfill is still running
    v = evaluate(history_for(healthy, until=now), now=now)
    assert v.outcome is PENDING
    assert v.provisional_outcome is NOT_MET
    assert v.criterion("coverage").status is PENDING
    assert v.criterion("coverage").provisional is NOT_MET


def test_before_the_deployment_everything_is_pending_and_unmeasured() -> None:
    v = evaluate([], now=T0 - H)
    assert v.outcome is PENDING
    assert all(c.provisional is NOT_MEASURED for c in v.criteria)
    assert v.runs_considered == 0


def test_final_runs_that_errored_leave_the_state_unmeasured() -> None:
    """Measured only early in the week: the end of the week is unknown, not assumed fine."""

    def late_errors(result: Result, hours: float) -> Result:
        if result.check == "orphans" and hours >= 96:
            return replace(result, status=Status.ERROR, observed={}, message="timeout")
        return result

    v = evaluate(history_for(patched(healthy, late_errors)))
    orphans = v.criterion("orphans")
    assert orphans.status is NOT_MEASURED
    assert "final runs" in orphans.summary

    # one errored final run is tolerated: the final runs are the last two
    def last_error(result: Result, hours: float) -> Result:
        if result.check == "orphans" and hours >= 144:
            return replace(result, status=Status.ERROR, observed={}, message="timeout")
        return result

    v = evaluate(history_for(patched(healthy, last_error)))
    assert v.criterion("orphans").status is MET
    # the optional table: skipped all week, then one error: still not applicable
    assert SCRAPER not in {e.subject for e in v.criterion("orphans").evidence}


def test_coverage_failing_at_a_final_run_is_not_met() -> None:
    def regress(result: Result, hours: float) -> Result:
        if result.check == "coverage" and result.subject == CONF and hours == 120:
            return replace(
                result, status=Status.FAIL, observed={**result.observed, "missing_new": 3}
            )
        return result

    v = evaluate(history_for(patched(healthy, regress)))
    cov = v.criterion("coverage")
    assert cov.status is NOT_MET
    assert cov.evidence[0].subject == CONF and cov.evidence[0].value["missing_new"] == 3
    assert cov.evidence[0].at == T0 + 120 * H


def test_legacy_column_dropped_mid_week_is_not_met_even_if_restored() -> None:
    def drop(result: Result, hours: float) -> Result:
        if result.check == "schema" and result.subject == CONV and hours == 36:
            return replace(
                result,
                status=Status.FAIL,
                observed={**result.observed, "legacy_column_present": False},
            )
        return result

    v = evaluate(history_for(patched(healthy, drop)))
    crit = v.criterion("legacy_column")
    assert crit.status is NOT_MET
    assert crit.evidence[0].at == T0 + 36 * H
    assert "during the week" in crit.summary
    # the schema check failed for the legacy column, but the indexes were fine
    assert v.criterion("indexes").status is MET


def test_an_invalid_index_at_the_end_is_not_met() -> None:
    def invalid(result: Result, hours: float) -> Result:
        if result.check == "schema" and result.subject == CONV and hours >= 144:
            flags = {"exists": True, "valid": False, "ready": True, "covers_new": True}
            return replace(
                result, status=Status.FAIL, observed={**result.observed, "indexes": {INDEX: flags}}
            )
        return result

    crit = evaluate(history_for(patched(healthy, invalid))).criterion("indexes")
    assert crit.status is NOT_MET
    assert f"{INDEX} invalid" in crit.summary


def test_a_missing_required_table_is_not_met_and_an_unmeasured_one_not_measured() -> None:
    def gone(result: Result, hours: float) -> Result | None:
        if result.subject == CONF and result.check == "coverage":
            return replace(result, status=Status.FAIL, observed={}, message="table missing")
        if result.subject == CONF and result.check == "orphans":
            return None  # never measured at all
        return result

    v = evaluate(history_for(patched(healthy, gone)))
    assert v.criterion("coverage").status is NOT_MET
    orphans = v.criterion("orphans")
    assert orphans.status is NOT_MEASURED
    assert "no results" in orphans.summary


def test_legacy_errors_any_time_in_the_week_is_not_met() -> None:
    def errors(result: Result, hours: float) -> Result:
        if result.check == "legacy_errors" and hours == 3:
            return replace(result, status=Status.FAIL, observed={"legacy_errors": 4})
        return result

    crit = evaluate(history_for(patched(healthy, errors))).criterion("legacy_errors")
    assert crit.status is NOT_MET
    assert crit.evidence[0].value == {"legacy_errors": 4}
    assert crit.evidence[0].at == T0 + 3 * H


def test_error_budget_counts_failing_windows() -> None:
    def spikes(result: Result, hours: float) -> Result:
        if result.check == "log_errors" and hours in (2, 36):
            return replace(result, status=Status.FAIL, observed={"errors": 300, "lines": 10_000})
        return result

    history = history_for(patched(healthy, spikes))
    crit = evaluate(history).criterion("error_budget")
    assert crit.status is NOT_MET
    assert "2 window(s)" in crit.summary
    assert [e.at for e in crit.evidence] == [T0 + 2 * H, T0 + 36 * H]
    lenient = replace(SETTINGS, error_budget_failed_runs=2)
    assert evaluate(history, settings=lenient).criterion("error_budget").status is MET


def test_latency_uses_the_median_ratio_of_the_final_runs() -> None:
    def slow(result: Result, hours: float) -> Result:
        if result.check == "latency" and hours >= 120:
            return replace(
                result,
                status=Status.FAIL,
                observed={"median_seconds": 0.0125, "baseline_seconds": 0.01},  # no ratio key
            )
        return result

    crit = evaluate(history_for(patched(healthy, slow))).criterion("latency")
    assert crit.status is NOT_MET
    assert "1.25x > 1.10x" in crit.summary

    def one_slow(result: Result, hours: float) -> Result:
        if result.check == "latency" and hours == 144:
            return replace(result, status=Status.FAIL, observed={"ratio": 1.15})
        return result

    # final runs: 1.02 and 1.15 -> median 1.085, within 10%
    assert evaluate(history_for(patched(healthy, one_slow))).criterion("latency").status is MET


def _ratio(first: float, last: float) -> Callable[[Result, float], Result]:
    """Legacy calls per 100 new ones: ``first`` on day 1, ``last`` from T0+120h, between
    them halfway."""

    def change(result: Result, hours: float) -> Result:
        if result.check != "query_ratio":
            return result
        legacy = first if hours < 24 else last if hours >= 120 else (first + last) / 2
        observed = {**result.observed, "legacy": legacy, "new": 100.0, "both": 0.0}
        observed["legacy_ratio"] = legacy / (legacy + 100.0)
        return replace(result, observed=observed)

    return change


def test_query_ratio_trend_rising_or_high_at_the_end_is_not_met() -> None:
    rising = evaluate(history_for(patched(healthy, _ratio(1.0, 5.0)))).criterion(
        "query_ratio_trend"
    )
    assert rising.status is NOT_MET  # final ratio below 5% but rising since day 1
    assert "rising" in rising.summary
    high = evaluate(history_for(patched(healthy, _ratio(50.0, 20.0)))).criterion(
        "query_ratio_trend"
    )
    assert high.status is NOT_MET  # falling, but still far above 5% at the end
    assert "above 5.0%" in high.summary
    low = evaluate(history_for(patched(healthy, _ratio(20.0, 4.0)))).criterion("query_ratio_trend")
    assert low.status is MET
    assert low.evidence[0].value["first_day"] == 1


def test_query_ratio_first_cumulative_poll_is_ignored() -> None:
    def only_first(result: Result, hours: float) -> Result | None:
        if result.check != "query_ratio":
            return result
        return result if hours == 0 else None  # only the cumulative first poll

    crit = evaluate(history_for(patched(healthy, only_first))).criterion("query_ratio_trend")
    assert crit.status is NOT_MEASURED


def test_query_ratio_falls_back_to_the_log_ratio() -> None:
    def logs_only(result: Result, hours: float) -> Result | None:
        if result.check == "query_ratio":
            return replace(result, status=Status.SKIPPED, observed={})
        return result

    def add_log_ratio(index: int, at: datetime, hours: float) -> list[Result]:
        ratio = 0.0 if hours >= 72 else 0.2
        return [
            *patched(healthy, logs_only)(index, at, hours),
            r("legacy_log_ratio", "logs", legacy_ratio=ratio),
        ]

    crit = evaluate(history_for(add_log_ratio)).criterion("query_ratio_trend")
    assert crit.status is MET
    assert crit.evidence[0].value["source"] == "legacy_log_ratio"


def test_results_outside_the_week_are_ignored() -> None:
    before = StoredResult(
        99, RunState.EXTRA, None, T0 - H, r("orphans", CONV, Status.FAIL, orphans=12)
    )
    after = StoredResult(
        100, RunState.EXTRA, None, END + H, r("orphans", CONV, Status.FAIL, orphans=12)
    )
    v = evaluate([before, *history_for(healthy), after])
    assert v.criterion("orphans").status is MET
    assert v.runs_considered == 32


def test_a_catch_up_run_after_the_verdict_time_counts(store: SqliteStateStore) -> None:
    """The daemon was down across the end: the last planned run ran late, after T0+168h."""

    def fixed_late(index: int, at: datetime, hours: float) -> list[Result]:
        out = healthy(index, at, hours)
        if hours < 140:  # orphans until the fix; the late run measures zero
            out = [
                replace(x, status=Status.FAIL, observed={"orphans": 2})
                if x.check == "orphans" and x.subject == CONV
                else x
                for x in out
            ]
        return out

    record_week(store, fixed_late, until=T0 + 120 * H)
    late_at = END + 2 * H
    run_id = store.begin_run(
        state=RunState.LATE,
        started_at=late_at,
        planned_index=31,
        planned_at=T0 + 144 * H,
        delay_seconds=26 * 3600,
    )
    store.finish_run(run_id, fixed_late(31, late_at, 170), finished_at=late_at)
    extra = store.begin_run(state=RunState.EXTRA, started_at=late_at + H)
    store.finish_run(extra, [r("orphans", CONV, Status.FAIL, orphans=9)], finished_at=late_at + H)
    v = evaluate(store.result_history(), now=late_at + 2 * H)
    assert v.runs_considered == 32  # the extra run after the week does not count
    orphans = v.criterion("orphans")
    # final runs: T0+120h (2 orphans) and the late T0+144h run (0): not a stable end state
    assert orphans.status is NOT_MET
    assert [e.run_id for e in orphans.evidence] == [31, run_id]
    assert orphans.evidence[-1].value == {"orphans": 0}


def test_verdict_round_trips_through_json_and_the_store(store: SqliteStateStore) -> None:
    v = evaluate(history_for(patched(healthy, _ratio(50.0, 20.0))))
    assert Verdict.from_json(v.to_json()) == v
    saved = store.save_verdict(v.to_record())
    loaded = store.load_verdict(final_only=True)
    assert loaded is not None and loaded.id == saved.id
    assert loaded.outcome == "not_met"
    assert Verdict.from_record(loaded) == v


def test_naive_times_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate_verdict([], now=datetime(2024, 5, 8), deployed_at=T0, verdict_at=END)
