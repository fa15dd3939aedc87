"""The incident timeline builder: intervals at their edges, and the notifications of each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from migration_watch.report.model import CheckHistory, CheckPoint
from migration_watch.report.timeline import build_timeline, intervals, notifications
from migration_watch.state import AlertStateRow, OutboxItem

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


def pts(spec: str, values: list[float | None] | None = None) -> tuple[CheckPoint, ...]:
    """``spec``: one letter per hourly run from T0 (P pass, F fail, E error, S skipped)."""
    status = {"P": "pass", "F": "fail", "E": "error", "S": "skipped"}
    vals = values if values is not None else [None] * len(spec)
    return tuple(
        CheckPoint(run_id=i + 1, at=T0 + i * H, status=status[c], value=v, message=f"run {i + 1}")
        for i, (c, v) in enumerate(zip(spec, vals, strict=True))
    )


def spans(check: str, spec: str, values: list[float | None] | None = None) -> list[Any]:
    return [
        (i.status, (i.start - T0) / H, None if i.end is None else (i.end - T0) / H)
        for i in intervals(check, pts(spec, values))
    ]


def test_a_failure_in_the_first_run_opens_at_that_run_and_closes_at_the_first_pass() -> None:
    (i,) = intervals("coverage", pts("FFP", [40, 38, 0]))
    assert (i.status, i.start, i.end, i.last_bad_at) == ("fail", T0, T0 + 2 * H, T0 + H)
    assert (i.runs, i.bad_runs, i.unmeasured_runs) == (2, 2, 0)
    assert i.duration_seconds == 2 * 3600 and not i.still_failing
    assert (i.worst.run_id, i.worst.value) == (1, 40)


def test_a_failure_still_open_at_the_end_has_no_end() -> None:
    (i,) = intervals("coverage", pts("PPFFS", [0, 0, 3, 7, None]))
    assert i.start == T0 + 2 * H and i.end is None and i.still_failing
    # measured up to the last result (a skipped one counts as seen, not as failing)
    assert i.last_bad_at == T0 + 3 * H and i.last_result_at == T0 + 4 * H
    assert i.duration_seconds == 2 * 3600
    assert i.worst.value == 7 and i.to_json()["to"] is None


def test_errors_and_skips_between_failures_neither_close_nor_split_an_interval() -> None:
    (i,) = intervals("orphans", pts("FESFP", [2, None, None, 5, 0]))
    assert (i.start, i.end) == (T0, T0 + 4 * H)
    assert (i.runs, i.bad_runs, i.unmeasured_runs) == (4, 2, 2)
    assert i.worst.value == 5


def test_errors_outside_a_failure_form_an_error_interval() -> None:
    assert spans("coverage", "PEEP") == [("error", 1, 3)]
    # an error stretch ended by a failure: the fail interval starts at that run
    assert spans("coverage", "EEFFP") == [("error", 0, 2), ("fail", 2, 4)]
    assert spans("coverage", "EE") == [("error", 0, None)]
    (err,) = intervals("coverage", pts("PESEP"))
    assert (err.bad_runs, err.unmeasured_runs) == (2, 1)
    # skipped alone (not applicable) is no incident
    assert spans("coverage", "SSPS") == []
    assert spans("coverage", "") == []


def test_flapping_gives_one_interval_per_episode() -> None:
    assert spans("query_ratio", "FPFPPF") == [("fail", 0, 1), ("fail", 2, 3), ("fail", 5, None)]
    assert spans("query_ratio", "PPPP") == []


def test_worst_value_direction_ties_and_missing_values() -> None:
    (i,) = intervals("coverage", pts("FFFP", [5, 9, 9, 0]))
    assert i.worst.run_id == 2  # ties go to the earliest
    (i,) = intervals("rls", pts("FFP", [1, 0, 2]))  # fewer policies on the new column is worse
    assert i.worst.value == 0
    (i,) = intervals("index_usage", pts("FF", [12, 3]))
    assert i.worst.value == 3
    (i,) = intervals("schema", pts("FF", [None, None]))
    assert i.worst.run_id == 1  # no value: the first failing result
    (i,) = intervals("coverage", pts("FF", [None, 4]))
    assert i.worst.value == 4


def row(
    check: str,
    subject: str,
    history: list[dict[str, Any]] | None = None,
    kind: str = "fail",
    **fields: Any,
) -> AlertStateRow:
    labels = {"alertname": f"MW{check}", "severity": "critical", "check": check, "subject": subject}
    if kind == "error":
        labels["condition"] = "error"
    data: dict[str, Any] = {"kind": kind}
    if history is not None:
        data["history"] = history
    return AlertStateRow(
        fingerprint=f"{check}|{subject}|{kind}",
        alertname=f"MW{check}",
        labels=labels,
        state=fields.pop("state", "resolved"),
        data=data,
        **fields,
    )


def event(name: str, hours: float, nid: str, receivers: list[str]) -> dict[str, Any]:
    return {
        "event": name,
        "at": (T0 + hours * H).isoformat(),
        "wall_at": (T0 + hours * H + timedelta(seconds=1)).isoformat(),
        "notification_id": nid,
        "receivers": receivers,
    }


def item(key: str, *, failed: bool) -> OutboxItem:
    return OutboxItem(
        id=1,
        idempotency_key=key,
        receiver=key.split(":")[1],
        payload={},
        created_at=T0,
        attempts=3,
        next_attempt_at=T0,
        last_attempt_at=T0,
        last_error="HTTP 500" if failed else None,
        failed=failed,
    )


def test_notifications_are_matched_to_their_interval_with_each_receivers_delivery() -> None:
    conv = "public.conversations"
    history = CheckHistory("coverage", conv, pts("FFPEFP"))
    rows = [
        row(
            "coverage",
            conv,
            [
                event("firing", 0, "n1", ["hook", "chat"]),
                event("resolved", 2, "n2", ["hook"]),
                event("firing", 4, "n3", ["hook"]),
                {"event": "repeat", "at": (T0 + 4.5 * H).isoformat()},  # not an episode edge
                {"event": "firing", "at": "not a time"},  # unreadable: left out
            ],
        ),
        row("coverage", conv, [event("firing", 3, "e1", ["chat"])], kind="error"),
    ]
    outbox = [item("n1:chat", failed=True), item("n3:hook", failed=False)]
    (entry,) = build_timeline([history], rows, outbox)
    assert [(i.status, (i.start - T0) / H) for i in entry.intervals] == [
        ("fail", 0),
        ("error", 3),
        ("fail", 4),
    ]
    got = [(n.event, (n.at - T0) / H, n.kind, n.interval, n.receivers) for n in entry.notifications]
    assert got == [
        ("firing", 0, "fail", 0, (("hook", "delivered"), ("chat", "failed"))),
        ("resolved", 2, "fail", 0, (("hook", "delivered"),)),
        ("firing", 3, "error", 1, (("chat", "delivered"),)),
        ("firing", 4, "fail", 2, (("hook", "queued"),)),
    ]
    assert entry.notifications[0].wall_at == T0 + timedelta(seconds=1)


def test_a_row_without_history_gives_its_latest_episode_and_alerts_alone_get_an_entry() -> None:
    old = row("schema", "public.conversations", fired_at=T0 + H, resolved_at=T0 + 3 * H)
    firing = row("schema", "public.other", state="firing", fired_at=T0 + 2 * H, resolved_at=None)
    found = notifications([old, firing], [])
    assert [(n.event, n.at, n.receivers) for n in found[("schema", "public.conversations")]] == [
        ("firing", T0 + H, ()),
        ("resolved", T0 + 3 * H, ()),
    ]
    assert [n.event for n in found[("schema", "public.other")]] == ["firing"]
    # a monitor alert with no stored results (database_up) and a check with intervals
    db = row("database_up", "database", [event("firing", 5, "d1", ["hook"])])
    history = CheckHistory("coverage", "public.t", pts("PF"))
    quiet = CheckHistory("orphans", "public.t", pts("PPP"))
    entries = build_timeline([quiet, history], [db], [])
    assert [(e.check, e.subject) for e in entries] == [
        ("coverage", "public.t"),  # began at T0+1h
        ("database_up", "database"),  # began at T0+5h
    ]
    assert entries[1].intervals == () and entries[1].notifications[0].interval is None
    # a notification before any interval of its kind matches none
    (entry,) = build_timeline(
        [CheckHistory("coverage", "public.t", pts("PPF"))],
        [row("coverage", "public.t", [event("firing", 0.5, "x", [])])],
        [],
    )
    assert entry.notifications[0].interval is None
    assert entry.to_json()["notifications"][0]["receivers"] == []
