"""latency / index_plan: the plan walk, the threshold and the two judges (no database).

``test_analyze_plan`` and ``test_evaluate_latency_threshold_and_noise_floor`` moved here
unchanged from tests/integration/test_latency.py (they never touched PostgreSQL)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from migration_watch.baseline import (
    TIMING_METHOD,
    ProbeMeasurement,
    plan_summary,
    probe_fingerprint,
    scan_nodes,
)
from migration_watch.checks.latency import (
    analyze_plan,
    evaluate_latency,
    judge_index_plan,
    judge_latency,
)
from migration_watch.probes import LatencyCheckConfig, ProbeConfig
from migration_watch.results import Status
from migration_watch.state import ProbeBaseline

INDEX = "idx_conversations_organization_id"


def _plan(*nodes: dict[str, Any]) -> list[dict[str, Any]]:
    root = dict(nodes[0])
    cur = root
    for n in nodes[1:]:
        child = dict(n)
        cur["Plans"] = [child]
        cur = child
    return [{"Plan": root, "Execution Time": 1.0}]


def test_analyze_plan() -> None:
    index_scan = _plan(
        {"Node Type": "Limit"},
        {"Node Type": "Bitmap Heap Scan", "Relation Name": "conversations", "Alias": "c"},
        {"Node Type": "Bitmap Index Scan", "Index Name": INDEX},
    )
    v = analyze_plan(index_scan, "public." + INDEX, "public.conversations")
    assert v.ok and v.index_nodes == (f"Bitmap Index Scan on {INDEX}",)
    assert v.scan_nodes == ("Bitmap Heap Scan on conversations c", f"Bitmap Index Scan on {INDEX}")

    other_index = _plan(
        {"Node Type": "Limit"},
        {"Node Type": "Index Scan", "Index Name": "idx_conversations_created_at",
         "Relation Name": "conversations", "Scan Direction": "Backward"},
    )  # fmt: skip
    v = analyze_plan(other_index, INDEX, "conversations")
    assert not v.ok and not v.seq_scan
    assert v.scan_nodes == (
        "Index Scan Backward using idx_conversations_created_at on conversations",
    )

    seq = _plan(
        {"Node Type": "Gather Merge"},
        {"Node Type": "Seq Scan", "Relation Name": "conversations", "Parallel Aware": True},
    )
    v = analyze_plan(seq, INDEX, "conversations")
    assert v.seq_scan and not v.uses_index
    assert v.scan_nodes == ("Parallel Seq Scan on conversations",)
    # A Seq Scan of another table is not the probe's concern.
    assert not analyze_plan(seq, INDEX, "messages").seq_scan
    assert scan_nodes({"Plan": {"Node Type": "Result"}}) == []
    assert plan_summary(index_scan)[2] == f"    -> Bitmap Index Scan on {INDEX}"


def test_evaluate_latency_threshold_and_noise_floor() -> None:
    cfg = LatencyCheckConfig()  # +10%, 1 ms floor
    assert evaluate_latency(0.020, 0.010, cfg)[0] is Status.FAIL  # +100%, +10 ms
    status, ratio, limit = evaluate_latency(0.0109, 0.010, cfg)
    assert status is Status.PASS and ratio == pytest.approx(1.09) and limit == pytest.approx(0.011)
    assert evaluate_latency(0.0056, 0.005, cfg)[0] is Status.PASS  # +12% but only +0.6 ms
    assert evaluate_latency(0.0056, 0.005, LatencyCheckConfig(noise_floor=0))[0] is Status.FAIL
    assert evaluate_latency(0.00009, 0.00003, cfg)[0] is Status.PASS  # 3x of nothing
    assert evaluate_latency(0.5, 0.0, cfg)[1] is None
    assert LatencyCheckConfig.model_validate({"noise_floor": "250ms"}).noise_floor == timedelta(
        milliseconds=250
    )


def test_evaluate_latency_edges() -> None:
    no_floor = LatencyCheckConfig(noise_floor=0)
    limit = 0.010 * 1.1
    # Exactly at the limit passes; the next float above fails (">", not ">=").
    assert evaluate_latency(limit, 0.010, no_floor)[0] is Status.PASS
    assert evaluate_latency(math.nextafter(limit, 1.0), 0.010, no_floor)[0] is Status.FAIL
    # Above the limit but exactly at the noise floor passes; just above it fails.
    floor = LatencyCheckConfig(max_regression=0.0, noise_floor=timedelta(milliseconds=500))
    assert evaluate_latency(1.0, 0.5, floor)[0] is Status.PASS  # +0.5 s: at the floor
    assert evaluate_latency(math.nextafter(1.0, 2.0), 0.5, floor)[0] is Status.FAIL
    # Faster than the baseline never fails.
    assert evaluate_latency(0.001, 0.010, no_floor) == (Status.PASS, 0.1, pytest.approx(0.011))
    # A zero baseline: no ratio, and any change above the floor fails.
    assert evaluate_latency(0.5, 0.0, no_floor) == (Status.FAIL, None, 0.0)
    assert evaluate_latency(0.0, 0.0, no_floor) == (Status.PASS, None, 0.0)


# --------------------------------------------------------------------------- the judges

PROBE = ProbeConfig.model_validate(
    {
        "name": "by_org",
        "sql": "SELECT id FROM conversations WHERE organization_id = %(org)s",
        "params": {"org": "o1"},
        "table": "conversations",
        "expect_index": f"public.{INDEX}",
    }
)
INDEX_PLAN = _plan(
    {"Node Type": "Bitmap Heap Scan", "Relation Name": "conversations", "Alias": "c",
     "Shared Hit Blocks": 4, "Shared Read Blocks": 1},
    {"Node Type": "Bitmap Index Scan", "Index Name": INDEX},
)  # fmt: skip
SEQ_PLAN = _plan({"Node Type": "Seq Scan", "Relation Name": "conversations", "Alias": "c"})


def measured(timings: tuple[float, ...], plan: Any = INDEX_PLAN) -> ProbeMeasurement:
    return ProbeMeasurement(
        name="by_org",
        timings=timings,
        planning=(0.0001, 0.0003),
        plan=plan,
        warmup=1,
        wall_seconds=0.1,
    )


def baseline(median: float, **details: Any) -> ProbeBaseline:
    return ProbeBaseline(
        name="by_org",
        median_seconds=median,
        timings=(median,),
        details={"fingerprint": probe_fingerprint(PROBE), "method": TIMING_METHOD, **details},
    )


def test_latency_within_and_above_the_limit() -> None:
    cfg = LatencyCheckConfig()  # +10%, 1 ms floor
    m = measured((0.012, 0.010, 0.011))  # median 11 ms
    ok = judge_latency(PROBE, m, baseline(0.010), cfg)
    assert ok.status is Status.PASS and (ok.check, ok.subject) == ("latency", "probe:by_org")
    assert ok.observed == {
        "median_seconds": 0.011,
        "baseline_seconds": 0.010,
        "ratio": 1.1,
        "executions": 3,
        "min_seconds": 0.010,
        "max_seconds": 0.012,
        "planning_seconds": pytest.approx(0.0002),
    }
    assert ok.threshold == {
        "max_regression": 0.1,
        "noise_floor_seconds": 0.001,
        "max_seconds": pytest.approx(0.011),
    }
    assert ok.details["method"] == TIMING_METHOD and ok.details["timings"] == [0.012, 0.010, 0.011]
    assert ok.details["buffers"] == {"shared_hit": 4, "shared_read": 1}
    assert ok.details["baseline_recorded_timings"] == [0.010]
    assert ok.message == "median 11.000 ms vs baseline 10.000 ms (+10.0%), within the +10% limit"
    bad = judge_latency(PROBE, measured((0.030,)), baseline(0.010), cfg)
    assert bad.status is Status.FAIL and bad.observed["ratio"] == 3.0
    assert bad.message == "median 30.000 ms vs baseline 10.000 ms (+200.0%), above the +10% limit"


def test_latency_zero_baseline_has_no_ratio() -> None:
    r = judge_latency(PROBE, measured((0.004,)), baseline(0.0), LatencyCheckConfig())
    assert r.status is Status.FAIL and r.observed["ratio"] is None
    assert "(n/a)" in r.message


def test_latency_without_or_with_an_incomparable_baseline_is_skipped() -> None:
    cfg = LatencyCheckConfig()
    none = judge_latency(PROBE, measured((0.002,)), None, cfg)
    assert none.status is Status.SKIPPED
    assert none.message == (
        "no baseline recorded for probe by_org (run `migration-watch baseline record`);"
        " median 2.000 ms"
    )
    assert none.observed["median_seconds"] == 0.002 and none.observed["baseline_seconds"] is None
    assert none.threshold["max_seconds"] is None
    changed = judge_latency(PROBE, measured((0.002,)), baseline(0.001, fingerprint="x"), cfg)
    assert changed.status is Status.SKIPPED
    assert "(its SQL or params changed since it was recorded)" in changed.message
    assert changed.observed["baseline_seconds"] == 0.001 and changed.observed["ratio"] is None
    other = judge_latency(PROBE, measured((0.002,)), baseline(0.001, method="wall"), cfg)
    assert other.status is Status.SKIPPED and "(measured differently" in other.message
    # A baseline recorded before fingerprints existed is still compared.
    old = ProbeBaseline(name="by_org", median_seconds=0.002, timings=(0.002,))
    assert judge_latency(PROBE, measured((0.002,)), old, cfg).status is Status.PASS


def test_index_plan_judge() -> None:
    ok = judge_index_plan(PROBE, measured((0.001,)), baseline(0.001, scan_nodes=["a"]))
    assert ok.status is Status.PASS and (ok.check, ok.subject) == ("index_plan", "probe:by_org")
    assert ok.message == f"uses {INDEX}: Bitmap Index Scan on {INDEX}"
    assert ok.observed == {
        "uses_index": True,
        "seq_scan": False,
        "scan_nodes": ["Bitmap Heap Scan on conversations c", f"Bitmap Index Scan on {INDEX}"],
    }
    assert ok.threshold == {"expect_index": f"public.{INDEX}", "table": "conversations"}
    assert ok.details["baseline_scan_nodes"] == ["a"]
    assert ok.details["plan"] == plan_summary(INDEX_PLAN)
    seq = judge_index_plan(PROBE, measured((0.001,), SEQ_PLAN), None)
    assert seq.status is Status.FAIL
    assert seq.message == f"Seq Scan on conversations instead of {INDEX}"
    assert "baseline_scan_nodes" not in seq.details
    both = _plan(
        {"Node Type": "Append"},
        {"Node Type": "Seq Scan", "Relation Name": "conversations", "Alias": "c"},
    )
    both[0]["Plan"]["Plans"].append({"Node Type": "Index Scan", "Index Name": INDEX})
    r = judge_index_plan(PROBE, measured((0.001,), both), None)
    assert r.status is Status.FAIL
    assert r.message == (
        f"Seq Scan on conversations instead of {INDEX} (also Index Scan using {INDEX})"
    )
    empty = judge_index_plan(PROBE, measured((0.001,), _plan({"Node Type": "Result"})), None)
    assert empty.status is Status.FAIL and empty.message == f"{INDEX} is not used: no scan"
