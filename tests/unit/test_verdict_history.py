"""``verdict.history``: the rules every criterion shares (not applicable, never measured, how
subjects combine, which runs are final)."""

from __future__ import annotations

from migration_watch.results import Status
from migration_watch.verdict import CriterionStatus, Evidence
from migration_watch.verdict.history import (
    History,
    Item,
    Outcome,
    combine,
    not_applicable,
    num,
    unmeasured,
)

from .test_verdict import CONV, SCRAPER, T0, H, r

MET = CriterionStatus.MET
NOT_MET = CriterionStatus.NOT_MET
NOT_MEASURED = CriterionStatus.NOT_MEASURED


def item(run_id: int, status: Status, subject: str = CONV, **observed: object) -> Item:
    return Item(run_id, T0 + run_id * H, r("coverage", subject, status, **observed))


def test_final_runs_are_the_last_distinct_runs_in_time_order() -> None:
    items = [item(1, Status.PASS), item(2, Status.PASS), item(2, Status.FAIL, SCRAPER)]
    items.append(item(3, Status.ERROR))
    h = History(items, final_runs=2)
    assert h.final_ids == {2, 3}
    assert not h.in_final(items[0]) and h.in_final(items[2])
    assert list(h.subjects("coverage", ())) == [CONV, SCRAPER]
    # expected subjects: the ones without any result are there, empty
    assert h.subjects("coverage", ["public.absent"]) == {"public.absent": []}


def test_a_subject_only_skipped_or_errored_with_a_skip_is_not_applicable() -> None:
    assert not_applicable([item(1, Status.SKIPPED), item(2, Status.ERROR)])
    assert not not_applicable([item(1, Status.SKIPPED), item(2, Status.FAIL)])
    assert not not_applicable([item(1, Status.ERROR)])
    assert not not_applicable([])


def test_unmeasured_points_at_the_last_error() -> None:
    assert unmeasured([]) == Outcome(NOT_MEASURED, "no results in the week")
    first, last = item(1, Status.ERROR), item(2, Status.ERROR)
    out = unmeasured([first, last])
    assert out.status is NOT_MEASURED
    assert out.summary == f"never measured (2 error result(s)): {last.result.message}"
    assert [e.run_id for e in out.evidence] == [2]


def test_combine_not_met_wins_then_not_measured_then_met() -> None:
    ev = Evidence("coverage", CONV, 1, T0, "fail")
    met, gap, bad = Outcome(MET, "ok"), Outcome(NOT_MEASURED, "gap"), Outcome(NOT_MET, "bad", (ev,))
    assert combine([], "tables") == Outcome(NOT_MEASURED, "no tables to measure")
    assert combine([("a", met), ("b", gap), ("c", bad)], "t") == Outcome(NOT_MET, "c: bad", (ev,))
    assert combine([("a", met), ("b", gap)], "t").summary == "b: gap"
    assert combine([("a", met), ("b", met)], "t") == Outcome(MET, "a: ok; b: ok")


def test_num_takes_the_first_numeric_key_and_never_a_bool() -> None:
    assert num({"a": True, "b": 2}, "a", "b") == 2.0
    assert num({"a": "3"}, "a") is None
    assert num({}, "a") is None
