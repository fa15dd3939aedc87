"""The alert state machine: inactive → pending → firing → resolved, persisted in the store.

:func:`step` is the pure transition function; :class:`AlertMachine` applies it to check results
and keeps every alert's state in the state store (``alerts`` rows), enqueueing the
notifications of a transition in the same transaction (``put_alert(..., enqueue=...)``), so a
crash can neither lose a notification nor send one twice.

``for`` and ``keep_firing_for`` count evaluations, not seconds:

- *active* evaluations (the alert's condition holds) count up; at ``need`` the alert fires
  (``need == 1``: on the first one, through ``pending`` in the same step);
- *clear* evaluations count up while firing; at ``keep`` the alert resolves; a clear
  evaluation while pending drops the alert back to ``inactive`` silently (no flapping);
- *hold* evaluations (``error``: could not measure) change nothing except breaking a run of
  clear ones: an error never resolves an alert.

Repeats: a firing alert is notified again every ``repeat_interval`` (wall clock, from the last
notification), checked on every delivery round, so a restart neither re-notifies early nor
forgets (``last_sent_at`` is persisted).

History: every firing and resolved notification is also appended to the row's
``data["history"]`` (the last :data:`HISTORY_LIMIT`: event, check time ``at``, wall time
``wall_at``, notification id, receivers), so the report can show each episode of an alert
that flapped; the outbox forgets a notification once it is delivered.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog

from ..results import Result, Status
from ..state import AlertStateRow, AlertStore, OutboxMessage
from .fingerprint import fingerprint
from .rules import Rule, format_value, render

__all__ = [
    "HISTORY_LIMIT",
    "AlertKind",
    "AlertMachine",
    "AlertState",
    "Event",
    "MessageFactory",
    "Signal",
    "Transition",
    "alert_labels",
    "step",
]

log = structlog.get_logger(__name__)

#: How many firing/resolved events an alert row keeps in ``data["history"]``.
HISTORY_LIMIT = 100


class AlertState(enum.StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class Signal(enum.StrEnum):
    """What one evaluation says about one alert."""

    ACTIVE = "active"
    CLEAR = "clear"
    HOLD = "hold"


class AlertKind(enum.StrEnum):
    """``fail``: the check failed. ``error``: it could not be measured, repeatedly.
    ``escalated``: the failure lasted long enough for the more severe form."""

    FAIL = "fail"
    ERROR = "error"
    ESCALATED = "escalated"


class Event(enum.StrEnum):
    """A notification-worthy moment."""

    FIRING = "firing"
    RESOLVED = "resolved"
    REPEAT = "repeat"


def step(
    state: AlertState,
    active: int,
    clear: int,
    signal: Signal,
    *,
    need: int,
    keep: int,
    inhibited: bool = False,
) -> tuple[AlertState, int, int, Event | None]:
    """One evaluation of one alert: ``(state, active count, clear count, event)``.

    ``inhibited`` keeps an alert from firing (it stays pending) while something else already
    explains it (the database being down explains every check's ``error``).
    """
    if signal is Signal.ACTIVE:
        active += 1
        clear = 0
        if state is AlertState.FIRING:
            return state, active, clear, None
        if active >= need and not inhibited:
            return AlertState.FIRING, active, clear, Event.FIRING
        return AlertState.PENDING, active, clear, None
    if signal is Signal.CLEAR:
        if state is AlertState.PENDING:
            return AlertState.INACTIVE, 0, 0, None
        if state is AlertState.FIRING:
            clear += 1
            if clear >= keep:
                return AlertState.RESOLVED, 0, clear, Event.RESOLVED
            return state, 0, clear, None
        return state, 0, clear, None
    # HOLD: nothing measured; only a run of clear evaluations is broken.
    return state, active, 0, None


def _signal(kind: AlertKind, status: Status) -> Signal:
    if kind is AlertKind.ERROR:
        return Signal.ACTIVE if status is Status.ERROR else Signal.CLEAR
    if status is Status.FAIL:
        return Signal.ACTIVE
    if status in (Status.ERROR, Status.SKIPPED):
        # A resolved notice needs a real pass: "could not measure" and "not applicable"
        # confirm nothing, so they hold the alert as it is.
        return Signal.HOLD
    return Signal.CLEAR


def alert_labels(rule: Rule, kind: AlertKind, check: str, subject: str) -> dict[str, str]:
    """The identity of one alert: alertname, severity, check, subject (+ condition, extras)."""
    severity = {
        AlertKind.FAIL: rule.severity,
        AlertKind.ERROR: rule.error_severity,
        AlertKind.ESCALATED: rule.escalate_severity,
    }[kind]
    labels = dict(rule.labels)
    labels.update(alertname=rule.alertname, severity=severity, check=check, subject=subject)
    if kind is AlertKind.ERROR:
        labels["condition"] = "error"
    # Prometheus/Alertmanager semantics: an empty label value is the same as no label.
    return {k: v for k, v in labels.items() if v != ""}


@dataclass(frozen=True)
class Transition:
    """A change of one alert's state (and the notification it caused, if any)."""

    alertname: str
    fingerprint: str
    labels: Mapping[str, str]
    rule: str
    kind: AlertKind
    subject: str
    previous: AlertState
    state: AlertState
    at: datetime
    event: Event | None = None
    notification_id: str | None = None
    receivers: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "alertname": self.alertname,
            "fingerprint": self.fingerprint,
            "labels": dict(self.labels),
            "rule": self.rule,
            "kind": self.kind.value,
            "subject": self.subject,
            "previous": self.previous.value,
            "state": self.state.value,
            "at": self.at.isoformat(),
            "event": self.event.value if self.event else None,
            "notification_id": self.notification_id,
            "receivers": list(self.receivers),
        }


#: Builds the outbox messages of an event: ``(row after the transition, event, wall now)`` →
#: ``(notification id, messages)``. Routing and payloads are the caller's business.
MessageFactory = Callable[[AlertStateRow, Event, datetime], tuple[str | None, list[OutboxMessage]]]

_SEVERITY_ORDER = {Status.FAIL: 3, Status.ERROR: 2, Status.PASS: 1, Status.SKIPPED: 0}


class AlertMachine:
    """Applies the rules to results and keeps alert state in the store. Not thread-safe on its
    own: the caller serialises :meth:`evaluate` and :meth:`repeat_due` (one lock)."""

    def __init__(
        self,
        rules: Mapping[str, Rule],
        store: AlertStore,
        messages: MessageFactory,
        *,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        self.rules = rules
        self.store = store
        self._messages = messages
        self._context = dict(context or {})

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self,
        results: Sequence[Result],
        *,
        now: datetime,
        wall_now: datetime,
        run_id: int | None = None,
        day: int | None = None,
        phase: str | None = None,
    ) -> list[Transition]:
        """Evaluate every result that has an enabled rule; returns the state changes."""
        latest: dict[tuple[str, str], Result] = {}
        for r in results:
            rule = self.rules.get(r.check)
            if rule is None or not rule.enabled:
                continue
            key = (r.check, r.subject)
            prev = latest.get(key)
            # The same subject twice in one batch: the worst status counts.
            if prev is None or _SEVERITY_ORDER[r.status] >= _SEVERITY_ORDER[prev.status]:
                latest[key] = r
        if not latest:
            return []
        rows = {row.fingerprint: row for row in self.store.list_alerts()}
        # database_up first: a database known to be down holds the other checks' error alerts.
        ordered = sorted(latest.values(), key=lambda r: (r.check != "database_up", r.check))
        extra = {"run_id": run_id, "day": day, "phase": phase}
        transitions: list[Transition] = []
        db_down: bool | None = None
        for result in ordered:
            rule = self.rules[result.check]
            if result.check != "database_up" and db_down is None:
                db_down = self._database_down(rows)
            for kind in (AlertKind.FAIL, AlertKind.ERROR, AlertKind.ESCALATED):
                if kind is AlertKind.ESCALATED and not rule.escalates:
                    continue
                inhibited = kind is AlertKind.ERROR and rule.source == "database" and bool(db_down)
                t = self._apply(rule, kind, result, rows, now, wall_now, extra, inhibited)
                if t is not None:
                    transitions.append(t)
        return transitions

    def _database_down(self, rows: Mapping[str, AlertStateRow]) -> bool:
        rule = self.rules.get("database_up")
        if rule is None or not rule.enabled:
            return False
        return any(
            row.alertname == rule.alertname
            and row.data.get("kind") == AlertKind.FAIL.value
            and row.state in (AlertState.PENDING.value, AlertState.FIRING.value)
            for row in rows.values()
        )

    def _apply(
        self,
        rule: Rule,
        kind: AlertKind,
        result: Result,
        rows: dict[str, AlertStateRow],
        now: datetime,
        wall_now: datetime,
        extra: Mapping[str, Any],
        inhibited: bool,
    ) -> Transition | None:
        labels = alert_labels(rule, kind, result.check, result.subject)
        fp = fingerprint(labels)
        signal = _signal(kind, result.status)
        row = rows.get(fp)
        if row is None and signal is not Signal.ACTIVE:
            return None
        if row is None:
            row = AlertStateRow(
                fingerprint=fp,
                alertname=rule.alertname,
                labels=labels,
                state=AlertState.INACTIVE.value,
                data={"rule": rule.key, "kind": kind.value, "notifications": 0, "episodes": 0},
            )
        previous = AlertState(row.state)
        if kind is AlertKind.ERROR:
            need, keep, active = rule.error_for, 1, row.consecutive_errors
        else:
            need = rule.for_ if kind is AlertKind.FAIL else rule.escalate_after
            keep, active = rule.keep_firing_for, row.consecutive_failing
        state, active, clear, event = step(
            previous,
            active,
            row.consecutive_passing,
            signal,
            need=need,
            keep=keep,
            inhibited=inhibited,
        )
        if signal is not Signal.ACTIVE and previous in (AlertState.INACTIVE, AlertState.RESOLVED):
            return None  # nothing to remember: no alert, and this evaluation raises none

        data = dict(row.data)
        data.update(
            rule=rule.key,
            kind=kind.value,
            check=result.check,
            subject=result.subject,
            severity=labels["severity"],
            status=result.status.value,
            **{k: v for k, v in extra.items() if v is not None},
        )
        annotations = dict(row.annotations)
        if signal is Signal.ACTIVE:
            annotations = self._annotations(rule, kind, result, labels, active)
            data.update(
                message=result.message,
                value=format_value(result.observed) or result.message,
                observed=dict(result.observed),
            )
        elif signal is Signal.CLEAR:
            data["cleared_by"] = {"status": result.status.value, "message": result.message}
        else:
            data["held_by"] = {"status": result.status.value, "message": result.message}

        changes: dict[str, Any] = {
            "state": state.value,
            "last_evaluated_at": now,
            "annotations": annotations,
        }
        if kind is AlertKind.ERROR:
            changes["consecutive_errors"] = active
            changes["consecutive_passing"] = clear
        else:
            changes["consecutive_failing"] = active
            changes["consecutive_passing"] = clear
            changes["consecutive_errors"] = (
                row.consecutive_errors + 1 if result.status is Status.ERROR else 0
            )
        if previous in (AlertState.INACTIVE, AlertState.RESOLVED) and state in (
            AlertState.PENDING,
            AlertState.FIRING,
        ):
            changes["active_since"] = now
            data.pop("cleared_by", None)
        if event is Event.FIRING:
            changes.update(fired_at=now, resolved_at=None, last_sent_at=wall_now)
            data.update(
                repeats=0,
                fired_wall_at=wall_now.isoformat(),
                episodes=int(data.get("episodes", 0)) + 1,
            )
            data.pop("resolved_wall_at", None)
        elif event is Event.RESOLVED:
            changes.update(resolved_at=now)
            data["resolved_wall_at"] = wall_now.isoformat()
        new_row = replace(row, **changes, data=data)

        notification_id: str | None = None
        messages: list[OutboxMessage] = []
        if event is not None:
            new_row = replace(
                new_row,
                data={**new_row.data, "notifications": int(data.get("notifications", 0)) + 1},
            )
            notification_id, messages = self._messages(new_row, event, wall_now)
            history = list(new_row.data.get("history") or ())
            history.append(
                {
                    "event": event.value,
                    "at": now.isoformat(),
                    "wall_at": wall_now.isoformat(),
                    "notification_id": notification_id,
                    "receivers": [m.receiver for m in messages],
                }
            )
            new_row = replace(new_row, data={**new_row.data, "history": history[-HISTORY_LIMIT:]})
        self.store.put_alert(new_row, enqueue=messages, now=wall_now)
        rows[fp] = new_row
        if event is not None:
            bound = log.bind(alertname=rule.alertname, subject=result.subject, kind=kind.value)
            bound.info(
                "alert " + event.value,
                fingerprint=fp,
                severity=labels["severity"],
                notifications=len(messages),
            )
        if state is previous:
            return None
        return Transition(
            alertname=rule.alertname,
            fingerprint=fp,
            labels=labels,
            rule=rule.key,
            kind=kind,
            subject=result.subject,
            previous=previous,
            state=state,
            at=now,
            event=event,
            notification_id=notification_id,
            receivers=tuple(m.receiver for m in messages),
        )

    def _annotations(
        self,
        rule: Rule,
        kind: AlertKind,
        result: Result,
        labels: Mapping[str, str],
        count: int,
    ) -> dict[str, str]:
        message = result.message or f"the {result.check} check reported {result.status.value}"
        ctx: dict[str, Any] = {
            **self._context,
            "alertname": rule.alertname,
            "rule": rule.key,
            "check": result.check,
            "subject": result.subject,
            "severity": labels["severity"],
            "status": result.status.value,
            "message": message,
            "value": format_value(result.observed) or message,
            "observed": dict(result.observed),
            "details": dict(result.details),
            "threshold": result.threshold,
            "count": count,
            "labels": dict(labels),
        }
        templates = dict(rule.annotations)
        if kind is AlertKind.ERROR:
            templates["summary"] = f"The {result.check} check cannot be measured"
            templates["description"] = (
                "{subject}: {message} (could not measure for {count} consecutive evaluations;"
                " a firing alert of this check stays firing until it is measured again)"
            )
        elif kind is AlertKind.ESCALATED:
            templates["summary"] = templates.get("summary", "") + " (sustained)"
        return {k: render(v, ctx) for k, v in templates.items()}

    # ------------------------------------------------------------------ repeats and retirement
    def repeat_due(self, wall_now: datetime) -> int:
        """Enqueue a repeat for every firing alert whose last notification is older than its
        rule's ``repeat_interval``. Returns how many alerts were repeated."""
        count = 0
        for row in self.store.list_alerts([AlertState.FIRING.value]):
            rule = self.rules.get(str(row.data.get("rule", "")))
            if rule is None or not rule.enabled:
                continue
            if row.last_sent_at is not None and wall_now - row.last_sent_at < rule.repeat_interval:
                continue
            data = {
                **row.data,
                "repeats": int(row.data.get("repeats", 0)) + 1,
                "notifications": int(row.data.get("notifications", 0)) + 1,
            }
            new_row = replace(row, last_sent_at=wall_now, data=data)
            _, messages = self._messages(new_row, Event.REPEAT, wall_now)
            self.store.put_alert(new_row, enqueue=messages, now=wall_now)
            count += 1
        return count

    def retire_stale(self, now: datetime) -> list[str]:
        """Alerts that no rule can produce any more (rule disabled or changed, labels changed)
        go back to ``inactive`` silently. Returns their fingerprints."""
        retired = []
        for row in self.store.list_alerts([AlertState.PENDING.value, AlertState.FIRING.value]):
            rule = self.rules.get(str(row.data.get("rule", "")))
            current = None
            if rule is not None and rule.enabled:
                try:
                    kind = AlertKind(str(row.data.get("kind")))
                except ValueError:
                    kind = None
                if kind is not None and (kind is not AlertKind.ESCALATED or rule.escalates):
                    current = fingerprint(
                        alert_labels(
                            rule,
                            kind,
                            str(row.data.get("check", "")),
                            str(row.data.get("subject", "")),
                        )
                    )
            if current == row.fingerprint:
                continue
            self.store.put_alert(
                replace(
                    row,
                    state=AlertState.INACTIVE.value,
                    consecutive_failing=0,
                    consecutive_passing=0,
                    consecutive_errors=0,
                    data={**row.data, "retired_at": now.isoformat()},
                ),
                now=now,
            )
            log.warning(
                "alert retired: its rule is disabled or its labels changed",
                alertname=row.alertname,
                fingerprint=row.fingerprint,
            )
            retired.append(row.fingerprint)
        return retired
