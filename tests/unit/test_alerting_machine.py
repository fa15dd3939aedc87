"""Alert identity, the state machine, rules over results, repeats, restarts, routing, metrics."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from migration_watch.alerting import Alerting, AlertingConfig, AlertKind, AlertState
from migration_watch.alerting.fingerprint import fingerprint, fingerprint_int
from migration_watch.alerting.machine import HISTORY_LIMIT, Event, Signal, step
from migration_watch.alerting.rules import (
    database_up_result,
    format_value,
    log_source_result,
    render,
    run_missed_result,
    verdict_results,
)
from migration_watch.clock import ManualClock
from migration_watch.results import Result, Status
from migration_watch.state import SqliteStateStore

T0 = datetime(2025, 10, 23, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
PASS, FAIL, ERROR, SKIPPED = Status.PASS, Status.FAIL, Status.ERROR, Status.SKIPPED

# --------------------------------------------------------------------------- fingerprints


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # prometheus/common model/metric_test.go (Metric.Fingerprint == LabelSet.Fingerprint)
        ({}, 14695981039346656037),
        (
            {"first_name": "electro", "occupation": "robot", "manufacturer": "westinghouse"},
            5911716720268894962,
        ),
        ({"x": "y"}, 8241431561484471700),
        ({"a": "bb", "b": "c"}, 3016285359649981711),
        ({"a": "b", "bb": "c"}, 7122421792099404749),
    ],
)
def test_fingerprint_known_vectors(labels: dict[str, str], expected: int) -> None:
    assert fingerprint_int(labels) == expected
    assert fingerprint(labels) == f"{expected:016x}"


def test_fingerprint_ignores_insertion_order_and_separates_names_from_values() -> None:
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"})
    assert fingerprint({"a": "bc"}) != fingerprint({"ab": "c"})


# --------------------------------------------------------------------------- the pure step


def test_step_table() -> None:
    IN, P, F, R = (AlertState.INACTIVE, AlertState.PENDING, AlertState.FIRING, AlertState.RESOLVED)
    A, C, H = Signal.ACTIVE, Signal.CLEAR, Signal.HOLD
    assert step(IN, 0, 0, A, need=1, keep=1) == (F, 1, 0, Event.FIRING)
    assert step(IN, 0, 0, A, need=3, keep=1) == (P, 1, 0, None)
    assert step(P, 2, 0, A, need=3, keep=1) == (F, 3, 0, Event.FIRING)
    assert step(P, 2, 0, A, need=3, keep=1, inhibited=True) == (P, 3, 0, None)
    assert step(P, 2, 0, C, need=3, keep=1) == (IN, 0, 0, None)
    assert step(P, 2, 0, H, need=3, keep=1) == (P, 2, 0, None)
    assert step(F, 3, 0, A, need=3, keep=1) == (F, 4, 0, None)
    assert step(F, 3, 0, C, need=3, keep=2) == (F, 0, 1, None)
    assert step(F, 0, 1, C, need=3, keep=2) == (R, 0, 2, Event.RESOLVED)
    assert step(F, 0, 1, H, need=3, keep=2) == (F, 0, 0, None)  # error breaks the pass run
    assert step(F, 5, 0, H, need=3, keep=1) == (F, 5, 0, None)  # error never resolves
    assert step(R, 0, 1, A, need=1, keep=1) == (F, 1, 0, Event.FIRING)


# --------------------------------------------------------------------------- fixtures


def R(check: str, status: Status, subject: str = "public.conversations", **obs: Any) -> Result:
    return Result(
        check=check, subject=subject, status=status, observed=obs, message=f"{check} {status}"
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStateStore]:
    s = SqliteStateStore(tmp_path / "state.db")
    try:
        yield s
    finally:
        s.close()


def make(store: SqliteStateStore, clock: ManualClock, **overrides: Any) -> Alerting:
    data: dict[str, Any] = {
        "receivers": [
            {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/hook"},
            {"name": "chat", "type": "slack", "url": "http://127.0.0.1:9/chat"},
        ],
        "routes": [
            {"match": {"severity": "critical"}, "receivers": ["hook"]},
            {"match": {"condition": "error"}, "receivers": ["chat"]},
        ],
    }
    data.update(overrides)
    return Alerting(
        AlertingConfig.model_validate(data),
        store,
        wall=clock.now,
        migration_name="customer-id-to-organization-id",
        base_url="http://127.0.0.1:9719",
    )


def outbox(store: SqliteStateStore) -> list[tuple[str, str, str, str]]:
    """(receiver, type, alertname, subject) of every queued notification, in order."""
    return [
        (
            i.receiver,
            str(i.payload["type"]),
            str(i.payload["alert"]["alertname"]),
            str(i.payload["alert"]["labels"].get("subject")),
        )
        for i in store.outbox_list()
    ]


def states(a: Alerting) -> dict[tuple[str, str, str], str]:
    return {(s.alertname, s.subject, s.kind): s.state for s in a.list_alerts(None)}


# --------------------------------------------------------------------------- firing and resolving


def test_cadence_check_fires_on_first_failing_run_and_resolves_on_pass(
    store: SqliteStateStore, clock: ManualClock
) -> None:
    a = make(store, clock)
    ts = a.evaluate([R("schema", FAIL, index="idx")], now=T0, run_id=1, day=1, phase="hourly")
    assert [(t.alertname, t.previous, t.state, t.event) for t in ts] == [
        ("MigrationWatchSchema", AlertState.INACTIVE, AlertState.FIRING, Event.FIRING)
    ]
    assert ts[0].receivers == ("hook",)  # critical → first route
    assert ts[0].labels == {
        "alertname": "MigrationWatchSchema",
        "severity": "critical",
        "check": "schema",
        "subject": "public.conversations",
    }
    assert ts[0].fingerprint == fingerprint(ts[0].labels)
    item = store.outbox_list()[0]
    assert item.idempotency_key == f"{ts[0].notification_id}:hook"
    p = item.payload
    assert p["id"] == ts[0].notification_id
    assert p["type"] == "alert.firing"
    assert p["alert"]["annotations"]["runbook_url"] == "docs/runbook.md#migrationwatchschema"
    assert p["alert"]["annotations"]["description"] == "public.conversations: schema fail"
    assert p["alert"]["value"] == "index=idx"
    assert p["context"] == {
        "migration": "customer-id-to-organization-id",
        "phase": "hourly",
        "day": 1,
        "run_id": 1,
        "generatorURL": "http://127.0.0.1:9719/health",
    }
    # Still failing at the next run: no new notification.
    assert a.evaluate([R("schema", FAIL)], now=T0 + HOUR) == []
    assert len(store.outbox_list()) == 1
    ts = a.evaluate([R("schema", PASS)], now=T0 + 2 * HOUR)
    assert [(t.state, t.event) for t in ts] == [(AlertState.RESOLVED, Event.RESOLVED)]
    assert outbox(store) == [
        ("hook", "alert.firing", "MigrationWatchSchema", "public.conversations"),
        ("hook", "alert.resolved", "MigrationWatchSchema", "public.conversations"),
    ]
    resolved = store.outbox_list()[1].payload["alert"]
    assert resolved["status"] == "resolved"
    assert resolved["resolution"] == "schema pass"
    assert resolved["endsAt"] is not None
    # Passing results with no alert are not stored at all.
    a.evaluate([R("coverage", PASS), R("rls", SKIPPED)], now=T0 + 3 * HOUR)
    assert len(store.list_alerts()) == 1


def test_for_counts_evaluations_and_flapping_never_fires(
    store: SqliteStateStore, clock: ManualClock
) -> None:
    a = make(store, clock, rules={"coverage": {"for": 3}})
    for i, status in enumerate([FAIL, FAIL, PASS, FAIL, FAIL, PASS, FAIL, PASS]):
        a.evaluate([R("coverage", status)], now=T0 + i * HOUR)
    assert store.outbox_list() == []
    assert states(a) == {("MigrationWatchCoverage", "public.conversations", "fail"): "inactive"}
    seen = [
        t.state
        for i in range(3)
        for t in a.evaluate([R("coverage", FAIL)], now=T0 + (10 + i) * HOUR)
    ]
    assert seen == [AlertState.PENDING, AlertState.FIRING]
    assert len(store.outbox_list()) == 1


def test_keep_firing_for_and_flapping_while_firing(
    store: SqliteStateStore, clock: ManualClock
) -> None:
    a = make(store, clock, rules={"orphans": {"keep_firing_for": 2}})
    seq = [FAIL, PASS, FAIL, PASS, ERROR, PASS, PASS]
    events = []
    for i, status in enumerate(seq):
        ts = a.evaluate([R("orphans", status)], now=T0 + i * HOUR)
        events += [t.event for t in ts if t.event is not None]
    # Fires once; a single pass (or a pass, an error, a pass) is not enough to resolve.
    assert events == [Event.FIRING, Event.RESOLVED]
    assert [o[1] for o in outbox(store)] == ["alert.firing", "alert.resolved"]


def test_every_firing_and_resolved_event_is_kept_in_the_rows_history(
    store: SqliteStateStore, clock: ManualClock
) -> None:
    """The outbox forgets a delivered notification; the row keeps each episode (the report's
    incident timeline reads it), bounded to the last HISTORY_LIMIT events."""
    a = make(store, clock)
    for i, status in enumerate([FAIL, FAIL, PASS, ERROR, FAIL, PASS]):
        clock.set(T0 + i * HOUR + timedelta(seconds=5))
        a.evaluate([R("schema", status)], now=T0 + i * HOUR)
    (row,) = [r for r in store.list_alerts() if r.data.get("kind") == "fail"]
    history = row.data["history"]
    assert [(h["event"], h["at"]) for h in history] == [
        ("firing", T0.isoformat()),
        ("resolved", (T0 + 2 * HOUR).isoformat()),
        ("firing", (T0 + 4 * HOUR).isoformat()),
        ("resolved", (T0 + 5 * HOUR).isoformat()),
    ]
    assert history[0]["wall_at"] == (T0 + timedelta(seconds=5)).isoformat()
    assert all(h["receivers"] == ["hook"] for h in history)
    assert [h["notification_id"] for h in history] == [i.payload["id"] for i in store.outbox_list()]
    for i in range(HISTORY_LIMIT):
        status = FAIL if i % 2 == 0 else PASS
        a.evaluate([R("schema", status)], now=T0 + (10 + i) * HOUR)
    (row,) = [r for r in store.list_alerts() if r.data.get("kind") == "fail"]
    assert len(row.data["history"]) == HISTORY_LIMIT
    assert row.data["history"][-1]["at"] == (T0 + (9 + HISTORY_LIMIT) * HOUR).isoformat()


def test_error_never_resolves_and_raises_its_own_alert_when_sustained(
    store: SqliteStateStore, clock: ManualClock
) -> None:
    a = make(store, clock)
    a.evaluate([R("coverage", FAIL)], now=T0)
    for i in range(1, 4):
        a.evaluate([R("coverage", ERROR)], now=T0 + i * HOUR)
    st = states(a)
    assert st[("MigrationWatchCoverage", "public.conversations", "fail")] == "firing"
    assert st[("MigrationWatchCoverage", "public.conversations", "error")] == "firing"
    error_alert = next(s for s in a.list_alerts() if s.kind == "error")
    assert error_alert.labels["condition"] == "error"
    assert error_alert.severity == "warning"
    assert error_alert.annotations["summary"] == "The coverage check cannot be measured"
    assert (
        "could not measure for 2 consecutive"
        in (store.outbox_list()[1].payload["alert"]["annotations"]["description"])
    )
    # error alert → chat (route on condition), fail alert → hook (critical)
    assert [(o[0], o[1]) for o in outbox(store)] == [
        ("hook", "alert.firing"),
        ("chat", "alert.firing"),
    ]
    # Measured again and still failing: the error alert resolves, the fail alert stays.
    ts = a.evaluate([R("coverage", FAIL)], now=T0 + 5 * HOUR)
    assert [(t.kind, t.state) for t in ts] == [(AlertKind.ERROR, AlertState.RESOLVED)]
    ts = a.evaluate([R("coverage", PASS)], now=T0 + 6 * HOUR)
    assert [(t.kind, t.state) for t in ts] == [(AlertKind.FAIL, AlertState.RESOLVED)]


def test_skipped_holds_a_firing_alert_until_a_real_pass(
    store: SqliteStateStore, clock: ManualClock
) -> None:
    a = make(store, clock)
    a.evaluate([R("coverage", FAIL)], now=T0)
    ts = a.evaluate([R("coverage", Status.SKIPPED)], now=T0 + HOUR)
    assert ts == []
    assert states(a)[("MigrationWatchCoverage", "public.conversations", "fail")] == "firing"
    ts = a.evaluate([R("coverage", PASS)], now=T0 + 2 * HOUR)
    assert [(t.kind, t.state) for t in ts] == [(AlertKind.FAIL, AlertState.RESOLVED)]


def test_a_single_error_is_not_an_alert(store: SqliteStateStore, clock: ManualClock) -> None:
    a = make(store, clock)
    a.evaluate([R("rls", ERROR)], now=T0)
    a.evaluate([R("rls", PASS)], now=T0 + HOUR)
    assert store.outbox_list() == []
    assert states(a) == {("MigrationWatchRls", "public.conversations", "error"): "inactive"}


def test_database_down_holds_the_checks_error_alerts(
    store: SqliteStateStore, clock: ManualClock
) -> None:
    a = make(store, clock)
    names: list[str] = []
    for i in range(8):  # database_up fires at the 5th pulse
        now = T0 + i * timedelta(minutes=1)
        ts = a.evaluate(
            [database_up_result(False, error="connection refused"), R("coverage", ERROR)],
            now=now,
        )
        names += [t.alertname for t in ts if t.event is Event.FIRING]
    assert names == ["MigrationWatchDatabaseUp"]
    st = states(a)
    assert st[("MigrationWatchCoverage", "public.conversations", "error")] == "pending"
    # The database is back: both clear, the database alert resolves.
    ts = a.evaluate([database_up_result(True), R("coverage", PASS)], now=T0 + 10 * HOUR)
    assert {(t.alertname, t.state) for t in ts} == {
        ("MigrationWatchDatabaseUp", AlertState.RESOLVED),
        ("MigrationWatchCoverage", AlertState.INACTIVE),
    }


def test_sustained_log_errors_escalate_to_critical(
    store: SqliteStateStore, clock: ManualClock
) -> None:
    a = make(store, clock, rules={"log_errors": {"for": 2, "escalate_after": 4}})
    fired = []
    for i in range(5):
        ts = a.evaluate([R("log_errors", FAIL, subject="app")], now=T0 + i * timedelta(minutes=1))
        fired += [(i, t.labels["severity"]) for t in ts if t.event is Event.FIRING]
    assert fired == [(1, "warning"), (3, "critical")]
    ts = a.evaluate([R("log_errors", PASS, subject="app")], now=T0 + HOUR)
    assert sorted(t.labels["severity"] for t in ts if t.event is Event.RESOLVED) == [
        "critical",
        "warning",
    ]


def test_same_subject_twice_in_a_batch_worst_status_wins(
    store: SqliteStateStore, clock: ManualClock
) -> None:
    a = make(store, clock)
    ts = a.evaluate([R("schema", PASS), R("schema", FAIL), R("index_usage", FAIL)], now=T0)
    assert [t.alertname for t in ts] == ["MigrationWatchSchema"]  # index_usage has no rule


def test_disabled_rule_and_alerting(store: SqliteStateStore, clock: ManualClock) -> None:
    a = make(store, clock, rules={"schema": {"enabled": False}})
    assert a.evaluate([R("schema", FAIL)], now=T0) == []
    b = make(store, clock, enabled=False)
    assert b.evaluate([R("coverage", FAIL)], now=T0) == []
    assert store.list_alerts() == []


def test_monitor_results() -> None:
    assert database_up_result(True).status is PASS
    assert database_up_result(False, error="x").status is FAIL
    assert run_missed_result(2).status is FAIL
    assert run_missed_result(0).status is PASS
    assert log_source_result("app", None).status is ERROR
    assert log_source_result("app", False).status is FAIL
    rs = verdict_results({"coverage": "met", "orphans": "not_met", "latency": "not_measured"})
    assert [(r.subject, r.status) for r in rs] == [
        ("coverage", PASS),
        ("orphans", FAIL),
        ("latency", SKIPPED),
    ]


def test_templates() -> None:
    ctx = {"subject": "public.t", "observed": {"missing_new": 12, "ratio": 0.99876}}
    assert render("{subject}: {observed.missing_new} ({observed.ratio}) {nope}", ctx) == (
        "public.t: 12 (0.9988) {nope}"
    )
    assert format_value({"a": 1, "b": True, "c": None, "d": 2.0}) == "a=1, b=true, c=null, d=2"


# --------------------------------------------------------------------------- repeats and restarts


def test_repeat_while_firing_every_repeat_interval_and_across_a_restart(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "state.db"
    store = SqliteStateStore(path)
    a = make(store, clock)
    a.evaluate([R("schema", FAIL)], now=T0)
    assert a.deliver(T0 + 3 * HOUR).repeats == 0
    store.close()
    # Restart 3h59m after firing: no early repeat, the alert is still firing.
    store = SqliteStateStore(path)
    clock.set(T0 + 3 * HOUR + timedelta(minutes=59))
    b = make(store, clock)
    assert b.evaluate([R("schema", FAIL)], now=clock.now()) == []
    assert b.deliver(clock.now()).repeats == 0
    assert [o[1] for o in outbox(store)] == ["alert.firing"]
    summary = b.deliver(T0 + 4 * HOUR)
    assert summary.repeats == 1
    items = store.outbox_list()
    assert [i.payload["type"] for i in items] == ["alert.firing", "alert.firing"]
    assert items[1].payload["alert"]["repeat"] == 1
    assert items[1].payload["id"] != items[0].payload["id"]
    assert b.deliver(T0 + 7 * HOUR).repeats == 0
    assert b.deliver(T0 + 8 * HOUR).repeats == 1
    store.close()


def test_changed_rules_retire_stale_alerts(tmp_path: Path, clock: ManualClock) -> None:
    store = SqliteStateStore(tmp_path / "state.db")
    a = make(store, clock)
    a.evaluate([R("schema", FAIL), R("rls", FAIL)], now=T0)
    b = make(store, clock, rules={"schema": {"enabled": False}, "rls": {"labels": {"x": "y"}}})
    # Listing never writes (the CLI builds an Alerting too).
    assert {s.alertname for s in b.list_alerts(["firing"])} == {
        "MigrationWatchRls",
        "MigrationWatchSchema",
    }
    assert b.deliver(T0 + 5 * HOUR).repeats == 0  # retired on the first delivery round
    assert {s.alertname: s.state for s in b.list_alerts(None)} == {
        "MigrationWatchRls": "inactive",
        "MigrationWatchSchema": "inactive",
    }
    store.close()


# --------------------------------------------------------------------------- routing


def test_routes_first_match_wins_no_match_all_receivers_and_send_resolved(
    store: SqliteStateStore, clock: ManualClock
) -> None:
    a = make(
        store,
        clock,
        receivers=[
            {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/hook"},
            {
                "name": "chat",
                "type": "slack",
                "url": "http://127.0.0.1:9/c",
                "send_resolved": False,
            },
        ],
        routes=[
            {"match_re": {"check": "query_.*"}, "receivers": ["chat"]},
            {"match": {"severity": "warning"}, "receivers": ["hook"]},
        ],
    )
    assert a.route({"severity": "warning", "check": "query_ratio"}) == ["chat"]
    assert a.route({"severity": "warning", "check": "latency"}) == ["hook"]
    assert a.route({"severity": "critical", "check": "schema"}) == ["hook", "chat"]
    a.evaluate([R("schema", FAIL)], now=T0)
    a.evaluate([R("schema", PASS)], now=T0 + HOUR)
    assert [(o[0], o[1]) for o in outbox(store)] == [
        ("hook", "alert.firing"),
        ("chat", "alert.firing"),
        ("hook", "alert.resolved"),
    ]


# --------------------------------------------------------------------------- health and metrics


class _Wrap(Collector):
    def __init__(self, a: Alerting) -> None:
        self.a = a

    def collect(self) -> Any:
        return self.a.collect()


def test_metrics_and_health(store: SqliteStateStore, clock: ManualClock) -> None:
    a = make(store, clock)
    registry = CollectorRegistry()
    registry.register(_Wrap(a))
    a.evaluate([R("schema", FAIL), R("latency", FAIL, subject="dashboard")], now=T0)
    a.evaluate([R("log_errors", FAIL, subject="app")], now=T0)
    clock.advance(timedelta(seconds=90))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("migration_watch_alerts", state="firing", severity="critical") == 1
    assert value("migration_watch_alerts", state="firing", severity="warning") == 1
    assert value("migration_watch_alerts", state="pending", severity="warning") == 1
    assert value("migration_watch_alerts", state="pending", severity="critical") == 1  # escalation
    assert value("migration_watch_alerts", state="firing", severity="info") == 0
    assert value("migration_watch_outbox_size") == 3  # schema → hook; latency → hook + chat
    assert value("migration_watch_outbox_oldest_age_seconds") == 90
    assert value("migration_watch_notifications_total", receiver="hook", result="sent") == 0
    h = a.health()["alerting"]
    assert sorted(f["alertname"] for f in h["firing"]) == [
        "MigrationWatchLatency",
        "MigrationWatchSchema",
    ]
    assert h["outbox"]["pending"] == 3
    assert h["outbox"]["oldest_age_seconds"] == 90
    assert [r["name"] for r in h["receivers"]] == ["hook", "chat"]
    assert "127.0.0.1:9" not in repr(h)
