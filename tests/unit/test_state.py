"""The state store's contract: every test here runs against every backend.

A backend is a factory ``(tmp_path, wall) -> StateStore`` in :data:`BACKENDS`; the ``store``
fixture is parametrised over them, so adding a backend (PostgreSQL: a factory that reaches its
database through ``request.getfixturevalue``) runs this whole suite against it. What only the
SQLite file has (header, corruption, schema version, WAL, paths) is in ``test_state_sqlite.py``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Generic, Protocol

import pytest

from migration_watch.cadence import CompletedRun, RunState, Schedule
from migration_watch.errors import StateError
from migration_watch.results import Result, Status
from migration_watch.state import (
    AlertingStore,
    AlertStateRow,
    AlertStore,
    Baseline,
    BaselineStore,
    CheckpointStore,
    LogFileCheckpoint,
    LogWatchStore,
    MetaStore,
    OutboxMessage,
    ProbeBaseline,
    RunStore,
    SqliteStateStore,
    StatementBaseline,
    StateStore,
    VerdictRecord,
)

H = timedelta(hours=1)
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)

Wall = Callable[[], datetime]
StoreFactory = Callable[[Path, Wall], StateStore]


def sqlite_store(tmp_path: Path, wall: Wall) -> StateStore:
    return SqliteStateStore(tmp_path / "state.db", wall=wall)


#: Every backend by name: a factory opening (or reopening) the store kept under ``tmp_path``.
BACKENDS: dict[str, StoreFactory] = {"sqlite": sqlite_store}


@pytest.fixture(params=list(BACKENDS))
def make_store(request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    """Opens stores of one backend; each is closed after the test (closing is idempotent)."""
    factory = BACKENDS[request.param]
    opened: list[StateStore] = []

    def make(tmp_path: Path, wall: Wall) -> StateStore:
        opened.append(factory(tmp_path, wall))
        return opened[-1]

    yield make
    for backend in opened:
        backend.close()


@pytest.fixture
def store(make_store: StoreFactory, tmp_path: Path) -> StateStore:
    """A fresh store of every backend, for the contract tests; its wall clock says T0."""
    return make_store(tmp_path, lambda: T0)


def result(check: str, subject: str, status: Status = Status.PASS, **observed: object) -> Result:
    return Result(
        check=check,
        subject=subject,
        status=status,
        observed=observed,
        threshold={"max": 0},
        details={"index": "idx_conversations_org"},
        message=f"{check} on {subject}",
        table=subject,
        measured_at=T0 + H,
        duration_seconds=0.25,
    )


def run_planned(store: StateStore, index: int, results: list[Result], at: datetime) -> int:
    run_id = store.begin_run(state="done", started_at=at, planned_index=index, planned_at=at)
    store.finish_run(run_id, results, finished_at=at + timedelta(seconds=3))
    return run_id


# --------------------------------------------------------------------------- contract: meta


def test_meta_round_trip(store: StateStore) -> None:
    assert store.get_meta("missing") is None
    assert store.get_meta("missing", 42) == 42
    snapshot = {"queries": [{"queryid": -123456789012345, "calls": 10}], "at": "x"}
    store.set_meta("pg_stat_statements", snapshot)
    assert store.get_meta("pg_stat_statements") == snapshot
    store.set_meta_many({"statement_calls_total": {"legacy": 5, "new": 7}, "other": [1, 2]})
    assert store.get_meta("statement_calls_total") == {"legacy": 5, "new": 7}
    store.set_meta("other", None)
    assert store.get_meta("other", "default") is None  # a stored null is not "missing"
    store.delete_meta("other")
    assert store.get_meta("other", "default") == "default"


def test_deployment(store: StateStore) -> None:
    assert store.get_deployment() is None
    at = datetime(2024, 5, 1, 11, 0, tzinfo=datetime.now().astimezone().tzinfo)
    saved = store.set_deployment(at, "marker")
    assert saved.deployed_at == at
    loaded = store.get_deployment()
    assert loaded is not None
    assert loaded.deployed_at == at
    assert loaded.deployed_at.tzinfo is UTC
    assert loaded.source == "marker"
    assert loaded.recorded_at == T0


# --------------------------------------------------------------------------- contract: runs


def test_run_with_results_round_trips(store: StateStore) -> None:
    observed_at = datetime(2024, 5, 1, 10, tzinfo=UTC)
    results = [
        result("coverage", "public.conversations", missing=0, ratio=Decimal("1.0")),
        result("orphans", "public.messages", Status.FAIL, orphans=3, seen=observed_at),
        Result("schema", "public.messages.idx", Status.ERROR, message="timeout"),
    ]
    run_id = store.begin_run(
        state=RunState.LATE,
        started_at=T0 + 9 * H,
        planned_index=9,
        planned_at=T0 + 9 * H - timedelta(minutes=20),
        delay_seconds=1200,
        superseded=[8, 6, 7],
    )
    assert store.completed_runs() == {}
    [unfinished] = store.unfinished_runs()
    assert unfinished.id == run_id
    assert not unfinished.finished
    record = store.finish_run(run_id, results, finished_at=T0 + 9 * H + timedelta(seconds=4))
    assert record.finished
    assert record.status is Status.ERROR  # overall status: an error is never a pass
    assert record.superseded == (6, 7, 8)
    assert record.delay_seconds == 1200
    assert store.unfinished_runs() == []
    assert store.get_run(run_id) == record
    assert store.completed_runs() == {
        9: CompletedRun(RunState.LATE, T0 + 9 * H, T0 + 9 * H - timedelta(minutes=20))
    }

    loaded = store.results_for_run(run_id)
    assert [(r.check, r.subject, r.status) for r in loaded] == [
        (r.check, r.subject, r.status) for r in results
    ]
    first = loaded[0]
    assert first.observed == {"missing": 0, "ratio": 1.0}
    assert first.threshold == {"max": 0}
    assert first.details == {"index": "idx_conversations_org"}
    assert first.message == "coverage on public.conversations"
    assert first.table == "public.conversations"
    assert first.measured_at == T0 + H
    assert first.duration_seconds == 0.25
    assert loaded[1].observed == {"orphans": 3, "seen": observed_at.isoformat()}
    assert loaded[2] == results[2]


def test_a_planned_run_completes_at_most_once(store: StateStore) -> None:
    run_planned(store, 0, [], T0)
    with pytest.raises(
        StateError, match=r"planned run 0 \(2024-05-01T09:00:00.000000Z\) already ran \(run 1\)"
    ):
        store.begin_run(state="done", started_at=T0 + H, planned_index=0, planned_at=T0)
    # two attempts started (one was killed or raced): only one can finish
    first = store.begin_run(state="done", started_at=T0 + H, planned_index=1, planned_at=T0 + H)
    second = store.begin_run(state="late", started_at=T0 + H, planned_index=1, planned_at=T0 + H)
    store.finish_run(second, [], finished_at=T0 + H)
    with pytest.raises(StateError, match=r"planned run 1 .* already ran"):
        store.finish_run(first, [result("coverage", "t")], finished_at=T0 + H)
    assert store.results_for_run(first) == []  # the failed finish wrote nothing
    with pytest.raises(StateError, match="already finished"):
        store.finish_run(second, [], finished_at=T0 + H)
    with pytest.raises(StateError, match="no run with id"):
        store.finish_run(9999, [], finished_at=T0)


def test_run_arguments_are_checked(store: StateStore) -> None:
    with pytest.raises(ValueError, match="cannot start in state"):
        store.begin_run(state="missed", started_at=T0, planned_index=0)
    with pytest.raises(ValueError, match="no planned index"):
        store.begin_run(state="extra", started_at=T0, planned_index=0)
    with pytest.raises(ValueError, match="no planned index"):
        store.begin_run(state="done", started_at=T0)
    with pytest.raises(StateError, match="naive"):
        store.begin_run(state="extra", started_at=datetime(2024, 1, 1))


def test_extra_runs_are_separate(store: StateStore) -> None:
    run_planned(store, 0, [], T0)
    extra = store.begin_run(state="extra", started_at=T0 + 30 * timedelta(minutes=1))
    store.finish_run(extra, [result("schema", "public.t")], finished_at=T0 + H)
    assert store.extra_runs() == [T0 + timedelta(minutes=30)]
    assert set(store.completed_runs()) == {0}
    schedule = Schedule(T0)
    now = T0 + H + timedelta(minutes=1)
    due = schedule.due_run(now, store.completed_runs())
    assert due is not None
    assert due.index == 1
    rows = schedule.run_states(now, store.completed_runs(), store.extra_runs())
    assert [r.state.value for r in rows[:3]] == ["done", "extra", "due"]


def test_history_and_results_over_time(store: StateStore) -> None:
    for i in range(4):
        status = Status.FAIL if i == 2 else Status.PASS
        run_planned(
            store,
            i,
            [
                result("coverage", "public.a", status, missing=i),
                result("coverage", "public.b", missing=0),
                result("schema", "public.a"),
            ],
            T0 + i * H,
        )
    store.begin_run(state="done", started_at=T0 + 4 * H, planned_index=4, planned_at=T0 + 4 * H)
    history = store.run_history()
    assert [r.planned_index for r in history] == [0, 1, 2, 3, 4]
    assert [r.status for r in history] == [Status.PASS, Status.PASS, Status.FAIL, Status.PASS, None]
    assert [r.planned_index for r in store.run_history(limit=2)] == [3, 4]

    coverage_a = store.result_history("coverage", subject="public.a")
    assert [h.result.observed["missing"] for h in coverage_a] == [0, 1, 2, 3]
    assert [h.planned_index for h in coverage_a] == [0, 1, 2, 3]
    assert coverage_a[2].result.status is Status.FAIL
    assert coverage_a[2].run_started_at == T0 + 2 * H
    assert coverage_a[2].run_state is RunState.DONE
    assert len(store.result_history("coverage")) == 8
    assert len(store.result_history()) == 12
    assert len(store.result_history("schema", since=T0 + 2 * H)) == 2


# --------------------------------------------------------------------------- contract: baseline


def test_baseline_round_trip_and_replace(store: StateStore) -> None:
    assert store.load_baseline() is None
    plan = [{"Plan": {"Node Type": "Index Scan", "Index Name": "idx_org"}}]
    baseline = Baseline(
        recorded_at=T0 - H,
        statements=(
            StatementBaseline(
                -9_000_000_000_000_000_000, "SELECT * FROM a WHERE x = $1", 0.0012, 50
            ),
            StatementBaseline(42, "SELECT 1", 0.00001, 3),
        ),
        probes=(ProbeBaseline("conversations_by_org", 0.004, (0.005, 0.004, 0.004), plan),),
        details={"source": "pg_stat_statements"},
    )
    store.save_baseline(baseline)
    loaded = store.load_baseline()
    assert loaded is not None
    assert loaded.recorded_at == baseline.recorded_at
    assert set(loaded.statements) == set(baseline.statements)
    assert loaded.statement(42) == StatementBaseline(42, "SELECT 1", 0.00001, 3)
    probe = loaded.probe("conversations_by_org")
    assert probe is not None
    assert probe.timings == (0.005, 0.004, 0.004)
    assert probe.plan == plan
    assert loaded.details == {"source": "pg_stat_statements"}

    store.save_baseline(Baseline(recorded_at=T0, statements=(StatementBaseline(7, "q", 1.0, 1),)))
    replaced = store.load_baseline()
    assert replaced is not None
    assert replaced.recorded_at == T0
    assert [s.queryid for s in replaced.statements] == [7]
    assert replaced.probes == ()


def test_verdicts(store: StateStore) -> None:
    assert store.load_verdict() is None
    provisional = store.save_verdict(
        VerdictRecord(T0 + 100 * H, False, "pending", {"coverage": {"status": "met"}})
    )
    assert provisional.id is not None
    final = store.save_verdict(VerdictRecord(T0 + 168 * H, True, "not_met", {"rls": "not_met"}))
    assert store.load_verdict() == final
    assert store.load_verdict(final_only=True) == final
    store.save_verdict(VerdictRecord(T0 + 170 * H, False, "pending", {}))
    assert store.load_verdict(final_only=True) == final
    latest = store.load_verdict()
    assert latest is not None
    assert latest.computed_at == T0 + 170 * H


# --------------------------------------------------------------------------- contract: alerts


def alert(fingerprint: str, state: str = "firing", **changes: object) -> AlertStateRow:
    row = AlertStateRow(
        fingerprint=fingerprint,
        alertname="MigrationWatchSchema",
        labels={"alertname": "MigrationWatchSchema", "severity": "critical"},
        state=state,
        annotations={"summary": "index missing"},
        active_since=T0,
        fired_at=T0 + H,
        last_sent_at=T0 + H,
        consecutive_failing=2,
        data={"observed": {"index": "idx_org"}},
    )
    return dataclasses.replace(row, **changes)  # type: ignore[arg-type]


def test_alert_state_round_trip(store: StateStore) -> None:
    assert store.get_alert("a1") is None
    store.put_alert(alert("a1"))
    store.put_alert(alert("b2", "pending", alertname="MigrationWatchCoverage"))
    assert store.get_alert("a1") == alert("a1")
    updated = alert("a1", "resolved", resolved_at=T0 + 5 * H, consecutive_passing=1)
    store.put_alert(updated)
    assert store.get_alert("a1") == updated
    assert [a.fingerprint for a in store.list_alerts()] == ["b2", "a1"]
    assert [a.fingerprint for a in store.list_alerts({"pending", "firing"})] == ["b2"]
    assert store.delete_alert("b2")
    assert not store.delete_alert("b2")


def test_alert_transition_and_notification_are_atomic(store: StateStore) -> None:
    message = OutboxMessage("msg-1", "oncall", {"type": "alert.firing"})
    items = store.put_alert(alert("a1"), enqueue=[message], now=T0 + H)
    assert [i.idempotency_key for i in items] == ["msg-1"]
    bad = OutboxMessage("msg-3", None, {})  # type: ignore[arg-type]
    with pytest.raises(StateError):
        store.put_alert(
            alert("a1", "resolved"),
            enqueue=[OutboxMessage("msg-2", "oncall", {}), bad],
        )
    current = store.get_alert("a1")
    assert current is not None
    assert current.state == "firing"  # rolled back with the failed enqueue
    assert [i.idempotency_key for i in store.outbox_list()] == ["msg-1"]


# --------------------------------------------------------------------------- contract: outbox


def test_outbox_ordering_backoff_and_failures(store: StateStore) -> None:
    for n in range(3):
        store.outbox_enqueue(OutboxMessage(f"hook-{n}", "oncall", {"n": n}), now=T0 + n * H)
    store.outbox_enqueue(OutboxMessage("chat-0", "chat", {"n": 0}), now=T0 + 3 * H)
    again = store.outbox_enqueue(OutboxMessage("hook-0", "oncall", {"n": 99}), now=T0 + 9 * H)
    assert again.payload == {"n": 0}  # idempotent: same key, same item, not doubled
    assert store.outbox_size() == 4

    now = T0 + 4 * H
    assert [i.idempotency_key for i in store.outbox_due(now)] == [
        "hook-0",
        "hook-1",
        "hook-2",
        "chat-0",
    ]
    assert [i.idempotency_key for i in store.outbox_due(now, receiver="chat")] == ["chat-0"]
    assert len(store.outbox_due(now, limit=2)) == 2

    head = store.outbox_due(now)[0]
    store.outbox_mark_attempt(head.id, at=now, error="503", next_attempt_at=now + 10 * H)
    # the oncall receiver is blocked behind its oldest item; chat is not
    assert [i.idempotency_key for i in store.outbox_due(now)] == ["chat-0"]
    unordered = store.outbox_due(now, in_order=False)
    assert [i.idempotency_key for i in unordered] == ["hook-1", "hook-2", "chat-0"]
    retried = store.outbox_get(head.id)
    assert retried is not None
    assert (retried.attempts, retried.last_error) == (1, "503")
    assert retried.last_attempt_at == now
    assert [i.idempotency_key for i in store.outbox_due(now + 10 * H)][:3] == [
        "hook-0",
        "hook-1",
        "hook-2",
    ]

    store.outbox_mark_failed(head.id, at=now, error="400 Bad Request")
    assert store.outbox_size() == 3
    assert store.outbox_size(include_failed=True) == 4
    assert [i.idempotency_key for i in store.outbox_due(now)] == ["hook-1", "hook-2", "chat-0"]
    failed = [i for i in store.outbox_list() if i.failed]
    assert [(i.idempotency_key, i.attempts) for i in failed] == [("hook-0", 2)]
    assert len(store.outbox_list(include_failed=False)) == 3

    assert store.outbox_oldest_age(now) == 3 * H  # hook-1, the oldest pending
    for item in store.outbox_due(now):
        assert store.outbox_delete(item.id)
    assert not store.outbox_delete(head.id + 1000)
    assert store.outbox_size() == 0
    assert store.outbox_oldest_age(now) is None


# --------------------------------------------------------------------------- contract: logs


def test_log_checkpoint_round_trip(store: StateStore) -> None:
    assert store.load_log_checkpoint("app") is None
    files = [
        LogFileCheckpoint("/var/log/app/app.jsonl", 1234, "ab12", 4096, device=2049),
        LogFileCheckpoint("/var/log/app/app.jsonl.1", 999, "cd34", 10_000, extra={"rotated": True}),
    ]
    store.save_log_checkpoint("app", files, {"lines.all": 120, "lines.error": 3}, now=T0)
    store.save_log_checkpoint("drain", [], {"lines.all": 5})
    loaded = store.load_log_checkpoint("app")
    assert loaded is not None
    assert loaded.files == tuple(files)
    assert loaded.counters == {"lines.all": 120, "lines.error": 3}
    assert loaded.updated_at == T0

    # the rotated file went idle: replace the file set, advance counters (absolute totals)
    store.save_log_checkpoint("app", files[:1], {"lines.all": 130, "bytes": 2.5e9})
    loaded = store.load_log_checkpoint("app")
    assert loaded is not None
    assert loaded.files == tuple(files[:1])
    assert loaded.counters == {"lines.all": 130, "lines.error": 3, "bytes": 2.5e9}
    assert set(store.log_checkpoints()) == {"app", "drain"}


def test_log_checkpoint_is_all_or_nothing(store: StateStore) -> None:
    good = LogFileCheckpoint("/a.log", 1, "f", 100)
    store.save_log_checkpoint("app", [good], {"lines.all": 10})
    broken = LogFileCheckpoint("/a.log", None, "f", 200)  # type: ignore[arg-type]
    with pytest.raises(StateError):
        store.save_log_checkpoint("app", [broken], {"lines.all": 20})
    loaded = store.load_log_checkpoint("app")
    assert loaded is not None
    assert loaded.files == (good,)
    assert loaded.counters == {"lines.all": 10}


def test_concurrent_writers_and_readers(store: StateStore) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                store.outbox_enqueue(OutboxMessage(f"{n}-{i}", f"r{n}", {"i": i}), now=T0)
                store.save_log_checkpoint(f"s{n}", [], {"lines": i})
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(50):
                store.outbox_due(T0)
                store.log_checkpoints()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.outbox_size() == 75
    for n in range(3):
        keys = [i.idempotency_key for i in store.outbox_due(T0, receiver=f"r{n}")]
        assert keys == [f"{n}-{i}" for i in range(25)]
        checkpoint = store.load_log_checkpoint(f"s{n}")
        assert checkpoint is not None
        assert checkpoint.counters == {"lines": 24}


def test_closed_store_refuses(store: StateStore) -> None:
    store.close()
    store.close()  # idempotent
    with pytest.raises(StateError, match="closed"):
        store.get_meta("x")
    with pytest.raises(StateError, match="closed"):
        store.set_meta("x", 1)


def test_survives_reopening(make_store: StoreFactory, tmp_path: Path) -> None:
    first = make_store(tmp_path, lambda: T0)
    first.set_deployment(T0, "cli")
    run_planned(first, 0, [result("coverage", "public.a", missing=1)], T0)
    first.put_alert(alert("a1"))
    first.outbox_enqueue(OutboxMessage("k", "oncall", {"x": 1}), now=T0)
    first.save_log_checkpoint("app", [LogFileCheckpoint("/a", 1, "f", 9)], {"n": 9})
    first.close()
    second = make_store(tmp_path, lambda: T0)
    deployment = second.get_deployment()
    assert deployment is not None
    assert deployment.deployed_at == T0
    assert set(second.completed_runs()) == {0}
    assert second.result_history("coverage")[0].result.observed == {"missing": 1}
    assert second.get_alert("a1") == alert("a1")
    assert second.outbox_size() == 1
    checkpoint = second.load_log_checkpoint("app")
    assert checkpoint is not None
    assert checkpoint.counters == {"n": 9}


def test_json_encoding_of_odd_values(store: StateStore) -> None:
    when = datetime(2024, 5, 1, tzinfo=UTC)
    store.set_meta(
        "odd",
        {
            "when": when,
            "delta": timedelta(minutes=1),
            "decimal": Decimal("2.5"),
            "status": Status.FAIL,
            "set": {1},
            "tuple": (1, 2),
            "bytes": b"\x01",
            "nan": float("nan"),
        },
    )
    odd = store.get_meta("odd")
    assert odd["when"] == when.isoformat()
    assert odd["delta"] == 60.0
    assert odd["decimal"] == 2.5
    assert odd["status"] == "fail"
    assert odd["set"] == [1]
    assert odd["tuple"] == [1, 2]
    assert odd["bytes"] == "01"
    assert odd["nan"] != odd["nan"]
    assert json.loads(json.dumps({"ok": True})) == {"ok": True}


def test_store_is_every_protocol(store: StateStore) -> None:
    for protocol in (
        StateStore,
        MetaStore,
        RunStore,
        BaselineStore,
        AlertStore,
        CheckpointStore,
        LogWatchStore,
        AlertingStore,
    ):
        assert isinstance(store, protocol), protocol.__name__
    assert isinstance(store.location, str)
    assert store.location


# --------------------------------------------------------------------------- the protocols

#: The members of each section's protocol; StateStore is all of them, plus location and close.
SECTIONS: dict[Any, set[str]] = {
    MetaStore: {
        "get_meta",
        "set_meta",
        "set_meta_many",
        "delete_meta",
        "get_deployment",
        "set_deployment",
    },
    RunStore: {
        "begin_run",
        "finish_run",
        "get_run",
        "completed_runs",
        "extra_runs",
        "unfinished_runs",
        "run_history",
        "results_for_run",
        "result_history",
    },
    BaselineStore: {"save_baseline", "load_baseline", "save_verdict", "load_verdict"},
    AlertStore: {
        "get_alert",
        "list_alerts",
        "put_alert",
        "delete_alert",
        "outbox_enqueue",
        "outbox_due",
        "outbox_list",
        "outbox_get",
        "outbox_mark_attempt",
        "outbox_mark_failed",
        "outbox_delete",
        "outbox_size",
        "outbox_oldest_age",
    },
    CheckpointStore: {"save_log_checkpoint", "load_log_checkpoint", "log_checkpoints"},
}


def members(protocol: Any) -> set[str]:
    """The public members a protocol declares, its bases' included."""
    return {
        name
        for cls in protocol.__mro__
        if cls not in (Protocol, Generic, object)
        for name in vars(cls)
        if not name.startswith("_")
    }


def test_state_store_is_the_union_of_the_section_protocols() -> None:
    for protocol, expected in SECTIONS.items():
        assert members(protocol) == expected, protocol.__name__
    union = set().union(*SECTIONS.values())
    assert sum(map(len, SECTIONS.values())) == len(union) == 35  # no member in two sections
    assert members(StateStore) == union | {"location", "close"}
    assert members(LogWatchStore) == SECTIONS[CheckpointStore] | SECTIONS[MetaStore]
    assert members(AlertingStore) == SECTIONS[AlertStore] | SECTIONS[MetaStore]
