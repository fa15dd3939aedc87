"""Alerting: rules over check results → alert state machine → durable outbox → notifiers.

:class:`Alerting` is the one object the service, the HTTP server and the CLI use::

    alerting = Alerting(config.alerting, store, wall=utcnow, migration_name=config.migration.name,
                        base_url="http://host:9719")
    alerting.evaluate(outcome.results, now=outcome.started_at, run_id=run_id, day=day,
                      phase=phase)             # after every run (and every pulse's signals)
    alerting.deliver()                         # on every pulse
    # a Component: its families (notifications_total, outbox_*, alerts), its /health section
    # and its pulse (delivery) are registered once by the service

Times: ``evaluate``'s ``now`` is the evaluation's time (the cadence's, possibly virtual); the
``wall`` is the wall clock used for delivery (outbox times, retries, repeats, signatures).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import httpx
import structlog
from prometheus_client.core import Metric

from .. import metrics
from ..clock import utcnow
from ..component import Component
from ..errors import ConfigError
from ..results import Result
from ..state import AlertingStore, AlertStateRow, OutboxItem, OutboxMessage
from .config import AlertingConfig, ReceiverConfig, RouteConfig, RuleConfig, RulesConfig
from .fingerprint import fingerprint
from .machine import AlertKind, AlertMachine, AlertState, Event, Transition
from .notifiers import Notifier, build_notifier, iso, notification_payload
from .outbox import DeliverySummary, Outbox
from .rules import Rule, alert_name, build_rules

__all__ = [
    "AlertKind",
    "AlertState",
    "AlertSummary",
    "Alerting",
    "AlertingConfig",
    "DeliverySummary",
    "Event",
    "ReceiverConfig",
    "RouteConfig",
    "Rule",
    "RuleConfig",
    "RulesConfig",
    "TestOutcome",
    "Transition",
    "alert_name",
    "fingerprint",
]

log = structlog.get_logger(__name__)

# httpx logs every request line (with the full URL, a secret for Slack-style webhooks) at INFO.
if logging.getLogger("httpx").level == logging.NOTSET:
    logging.getLogger("httpx").setLevel(logging.WARNING)

_SEVERITIES = ("critical", "warning", "info")
_ACTIVE = (AlertState.PENDING.value, AlertState.FIRING.value)
_UNDELIVERED_SHOWN = 50


def _iso_opt(dt: datetime | None) -> str | None:
    return None if dt is None else iso(dt)


def _reiso(text: Any) -> str | None:
    if not text:
        return None
    return iso(datetime.fromisoformat(str(text).replace("Z", "+00:00")))


@dataclass(frozen=True)
class AlertSummary:
    """One alert as ``alerts list`` and ``/health`` show it."""

    alertname: str
    fingerprint: str
    state: str
    severity: str
    check: str
    subject: str
    kind: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    value: str
    active_since: datetime | None
    fired_at: datetime | None
    resolved_at: datetime | None
    last_sent_at: datetime | None
    last_evaluated_at: datetime | None
    consecutive_failing: int
    consecutive_passing: int
    consecutive_errors: int

    @classmethod
    def from_row(cls, row: AlertStateRow) -> AlertSummary:
        d = row.data
        return cls(
            alertname=row.alertname,
            fingerprint=row.fingerprint,
            state=row.state,
            severity=str(row.labels.get("severity", d.get("severity", ""))),
            check=str(row.labels.get("check", d.get("check", ""))),
            subject=str(row.labels.get("subject", d.get("subject", ""))),
            kind=str(d.get("kind", "")),
            labels=dict(row.labels),
            annotations=dict(row.annotations),
            value=str(d.get("value", "")),
            active_since=row.active_since,
            fired_at=row.fired_at,
            resolved_at=row.resolved_at,
            last_sent_at=row.last_sent_at,
            last_evaluated_at=row.last_evaluated_at,
            consecutive_failing=row.consecutive_failing,
            consecutive_passing=row.consecutive_passing,
            consecutive_errors=row.consecutive_errors,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "alertname": self.alertname,
            "fingerprint": self.fingerprint,
            "state": self.state,
            "severity": self.severity,
            "check": self.check,
            "subject": self.subject,
            "kind": self.kind,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "value": self.value,
            "active_since": _iso_opt(self.active_since),
            "fired_at": _iso_opt(self.fired_at),
            "resolved_at": _iso_opt(self.resolved_at),
            "last_sent_at": _iso_opt(self.last_sent_at),
            "last_evaluated_at": _iso_opt(self.last_evaluated_at),
            "consecutive_failing": self.consecutive_failing,
            "consecutive_passing": self.consecutive_passing,
            "consecutive_errors": self.consecutive_errors,
        }


@dataclass(frozen=True)
class TestOutcome:
    """The receiver's answer to ``alerts test``."""

    receiver: str
    type: str
    ok: bool
    status_code: int | None
    error: str | None
    body: str
    notification_id: str
    duration_seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver,
            "type": self.type,
            "ok": self.ok,
            "status_code": self.status_code,
            "error": self.error,
            "body": self.body,
            "notification_id": self.notification_id,
            "duration_seconds": round(self.duration_seconds, 3),
        }


@dataclass(frozen=True)
class _Snapshot:
    alerts: tuple[AlertStateRow, ...] = ()
    outbox: tuple[OutboxItem, ...] = ()
    taken_at: datetime | None = None


class Alerting(Component):
    """The alerting engine: evaluate results, keep alert state, deliver notifications.

    Thread-safe: ``evaluate`` (run thread), ``deliver`` (pulse thread), ``send_test``,
    ``health`` and ``collect`` (HTTP threads) may overlap. ``health`` and ``collect`` read an
    in-memory snapshot refreshed after every evaluation and delivery (no disk I/O on a scrape).
    """

    def __init__(
        self,
        config: AlertingConfig,
        store: AlertingStore,
        *,
        wall: Callable[[], datetime] = utcnow,
        migration_name: str,
        base_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        rng: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.wall = wall
        self.migration_name = migration_name
        self.base_url = base_url.rstrip("/") if base_url else None
        self.rules: dict[str, Rule] = build_rules(config)
        self._notifiers: dict[str, Notifier] = {
            r.name: build_notifier(r, transport=transport) for r in config.receivers
        }
        self._outbox = Outbox(store, self._notifiers, config.retry, rng=rng)
        self._machine = AlertMachine(
            self.rules, store, self._messages, context={"migration": migration_name}
        )
        self._state_lock = threading.Lock()
        self._delivery_lock = threading.Lock()
        self._keepalive_ok: dict[str, bool] = {}
        self._snapshot = _Snapshot()
        self._started = False  # stale alerts are retired on the first evaluate/deliver
        self._refresh()

    def close(self) -> None:
        """Close the receivers' HTTP clients (the store is the caller's)."""
        for notifier in self._notifiers.values():
            notifier.close()

    def __enter__(self) -> Alerting:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ routing and payloads
    @property
    def receivers(self) -> tuple[str, ...]:
        return tuple(self._notifiers)

    def route(self, labels: Mapping[str, str]) -> list[str]:
        """Receivers of an alert: the first matching route's, else every receiver."""
        plain = dict(labels)
        for route in self.config.routes:
            if route.matches(plain):
                return list(route.receivers)
        return list(self._notifiers)

    def _context(self, data: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "migration": self.migration_name,
            "phase": data.get("phase"),
            "day": data.get("day"),
            "run_id": data.get("run_id"),
            "generatorURL": f"{self.base_url}/health" if self.base_url else None,
        }

    def _alert(self, row: AlertStateRow, status: str) -> dict[str, Any]:
        d = row.data
        cleared = d.get("cleared_by") or {}
        return {
            "alertname": row.alertname,
            "fingerprint": row.fingerprint,
            "status": status,
            "labels": dict(row.labels),
            "annotations": dict(row.annotations),
            "startsAt": _reiso(d.get("fired_wall_at")) or _iso_opt(row.fired_at),
            "endsAt": (_reiso(d.get("resolved_wall_at")) or _iso_opt(row.resolved_at))
            if status == "resolved"
            else None,
            "firedAt": _iso_opt(row.fired_at),
            "resolvedAt": _iso_opt(row.resolved_at) if status == "resolved" else None,
            "rule": d.get("rule"),
            "kind": d.get("kind"),
            "check": row.labels.get("check", d.get("check")),
            "subject": row.labels.get("subject", d.get("subject")),
            "severity": row.labels.get("severity", d.get("severity")),
            "value": d.get("value", ""),
            "message": d.get("message", ""),
            "observed": d.get("observed", {}),
            "repeat": int(d.get("repeats", 0) or 0),
            "resolution": cleared.get("message") if status == "resolved" else None,
        }

    def _messages(
        self, row: AlertStateRow, event: Event, wall_now: datetime
    ) -> tuple[str | None, list[OutboxMessage]]:
        status = "resolved" if event is Event.RESOLVED else "firing"
        receivers = self.route(row.labels)
        if event is Event.RESOLVED:
            receivers = [r for r in receivers if self._notifiers[r].config.send_resolved]
        if event is Event.REPEAT:
            # Alertmanager repeats by itself (and is kept alive on every pulse).
            receivers = [r for r in receivers if self._notifiers[r].type != "alertmanager"]
        seed = f"{row.fingerprint}|{row.data.get('notifications')}|{event.value}|{iso(wall_now)}"
        nid = "msg_" + hashlib.sha256(seed.encode()).hexdigest()[:32]
        payload = notification_payload(
            notification_id=nid,
            type_=f"alert.{status}",
            timestamp=wall_now,
            alert=self._alert(row, status),
            context=self._context(row.data),
        )
        return nid, [OutboxMessage(f"{nid}:{r}", r, payload) for r in receivers]

    def _start(self) -> None:
        # Only the daemon evaluates and delivers: a CLI's ``alerts list`` or ``alerts test``
        # never writes to the store.
        if not self._started:
            now = self.wall()
            self._machine.retire_stale(now)
            self._outbox.drop_orphans(now)
            self._started = True

    # ------------------------------------------------------------------ the public surface
    def evaluate(
        self,
        results: Sequence[Result],
        *,
        now: datetime,
        run_id: int | None = None,
        day: int | None = None,
        phase: str | None = None,
    ) -> list[Transition]:
        """Apply the rules to ``results`` (a run's, or a pulse's signals); persist the alert
        states and enqueue their notifications. Returns the state changes."""
        if not self.config.enabled:
            return []
        with self._state_lock:
            self._start()
            transitions = self._machine.evaluate(
                results, now=now, wall_now=self.wall(), run_id=run_id, day=day, phase=phase
            )
        self._refresh()
        return transitions

    def pulse(self) -> None:
        """The pulse's face: one delivery round."""
        self.deliver()

    def deliver(self, now: datetime | None = None) -> DeliverySummary:
        """One delivery round (every pulse): enqueue due repeats, drain the outbox in order,
        re-post firing (and recently resolved) alerts to Alertmanager receivers."""
        now = now or self.wall()
        if not self.config.enabled:
            return DeliverySummary(pending=self.store.outbox_size())
        with self._delivery_lock:
            with self._state_lock:
                self._start()
                repeats = self._machine.repeat_due(now)
            busy = self._queued_receivers()
            summary = self._outbox.deliver(now)
            # A receiver that had queued notifications this round got the news from them.
            keepalives = self._keepalive(now, skip=busy | self._queued_receivers())
        self._refresh()
        return replace(
            summary,
            repeats=repeats,
            keepalives=keepalives,
            pending=self.store.outbox_size(),
        )

    def _queued_receivers(self) -> set[str]:
        return {item.receiver for item in self.store.outbox_list(include_failed=False)}

    def _keepalive(self, now: datetime, *, skip: Collection[str]) -> int:
        managers = [
            n
            for n in self._notifiers.values()
            if n.type == "alertmanager" and not self._outbox.is_disabled(n.name)
        ]
        if not managers:
            return 0
        rows = self.store.list_alerts([AlertState.FIRING.value, AlertState.RESOLVED.value])
        posted = 0
        for notifier in managers:
            if notifier.name in skip:
                continue  # queued notifications first: a keep-alive must not overtake them
            window = notifier.config.resend_resolved_for
            payloads = []
            for row in rows:
                if notifier.name not in self.route(row.labels):
                    continue
                if row.state == AlertState.RESOLVED.value:
                    resolved = row.data.get("resolved_wall_at")
                    if not resolved or not notifier.config.send_resolved:
                        continue
                    if now - datetime.fromisoformat(str(resolved)) > window:
                        continue
                payloads.append(
                    notification_payload(
                        notification_id=f"keepalive:{row.fingerprint}",
                        type_=f"alert.{row.state}",
                        timestamp=now,
                        alert=self._alert(row, row.state),
                        context=self._context(row.data),
                    )
                )
            if not payloads:
                continue
            result = notifier.send_many(payloads, now=now)
            was_ok = self._keepalive_ok.get(notifier.name, True)
            self._keepalive_ok[notifier.name] = result.ok
            if result.ok:
                posted += len(payloads)
            elif was_ok:
                log.warning(
                    "alertmanager keep-alive failed",
                    receiver=notifier.name,
                    error=result.describe(),
                )
        return posted

    def send_test(
        self, receiver: str | None = None, *, now: datetime | None = None
    ) -> list[TestOutcome]:
        """Send a clearly marked test notification (directly, not through the outbox) to one
        receiver or all; returns each receiver's answer."""
        if receiver is not None and receiver not in self._notifiers:
            known = ", ".join(self._notifiers) or "none configured"
            raise ConfigError(f"no receiver named {receiver!r} (receivers: {known})")
        names = [receiver] if receiver is not None else list(self._notifiers)
        now = now or self.wall()
        nid = "msg_test_" + hashlib.sha256(iso(now).encode()).hexdigest()[:24]
        labels = {
            "alertname": "MigrationWatchTest",
            "severity": "info",
            "check": "test",
            "subject": "test",
            "test": "true",
        }
        alert = {
            "alertname": "MigrationWatchTest",
            "fingerprint": fingerprint(labels),
            "status": "test",
            "labels": labels,
            "annotations": {
                "summary": "migration-watch test notification",
                "description": "A test sent by `migration-watch alerts test`: no action needed.",
                "runbook_url": self.config.runbook_url,
            },
            "startsAt": iso(now),
            "endsAt": None,
            "check": "test",
            "subject": "test",
            "severity": "info",
            "value": "test",
            "message": "test notification",
            "observed": {},
            "repeat": 0,
        }
        payload = notification_payload(
            notification_id=nid,
            type_="alert.test",
            timestamp=now,
            alert=alert,
            context={**self._context({}), "test": True},
        )
        out = []
        for name in names:
            notifier = self._notifiers[name]
            result = notifier.send(payload, now=now)
            log.info(
                "test notification sent",
                receiver=name,
                ok=result.ok,
                status_code=result.status_code,
                error=result.error,
            )
            out.append(
                TestOutcome(
                    receiver=name,
                    type=notifier.type,
                    ok=result.ok,
                    status_code=result.status_code,
                    error=result.error,
                    body=result.body,
                    notification_id=nid,
                    duration_seconds=result.duration_seconds,
                )
            )
        return out

    def list_alerts(
        self, states: Collection[str] | None = ("pending", "firing", "resolved")
    ) -> list[AlertSummary]:
        """Alerts from the store (``states=None``: all, including inactive ones)."""
        return [AlertSummary.from_row(r) for r in self.store.list_alerts(states)]

    # ------------------------------------------------------------------ health and metrics
    def _refresh(self) -> None:
        snapshot = _Snapshot(
            alerts=tuple(self.store.list_alerts()),
            outbox=tuple(self.store.outbox_list(include_failed=True)),
            taken_at=self.wall(),
        )
        self._snapshot = snapshot

    def health(self) -> dict[str, Any]:
        """``{"alerting": {...}}`` for ``/health``: firing alerts, undelivered notifications,
        receivers' state. No URLs, secrets or header values."""
        snap = self._snapshot
        now = self.wall()
        firing = [
            {
                "alertname": r.alertname,
                "severity": r.labels.get("severity"),
                "check": r.labels.get("check"),
                "subject": r.labels.get("subject"),
                "kind": r.data.get("kind"),
                "since": _iso_opt(r.fired_at),
                "summary": r.annotations.get("summary"),
                "value": r.data.get("value"),
                "fingerprint": r.fingerprint,
            }
            for r in snap.alerts
            if r.state == AlertState.FIRING.value
        ]
        pending = [i for i in snap.outbox if not i.failed]
        failed = [i for i in snap.outbox if i.failed]
        oldest = min((i.created_at for i in pending), default=None)
        undelivered = [
            {
                "notification_id": i.payload.get("id"),
                "receiver": i.receiver,
                "type": i.payload.get("type"),
                "alertname": i.payload.get("alert", {}).get("alertname"),
                "subject": i.payload.get("alert", {}).get("subject"),
                "created_at": iso(i.created_at),
                "attempts": i.attempts,
                "next_attempt_at": None if i.failed else iso(i.next_attempt_at),
                "last_error": i.last_error,
                "failed": i.failed,
            }
            for i in (failed + pending)[:_UNDELIVERED_SHOWN]
        ]
        return {
            "alerting": {
                "enabled": self.config.enabled,
                "firing": firing,
                "pending_alerts": sum(r.state == AlertState.PENDING.value for r in snap.alerts),
                "outbox": {
                    "pending": len(pending),
                    "failed": len(failed),
                    "oldest_age_seconds": None
                    if oldest is None
                    else round(max((now - oldest).total_seconds(), 0.0), 3),
                    "undelivered": undelivered,
                },
                "receivers": [s.to_json() for s in self._outbox.status.values()],
            }
        }

    def collect(self) -> Iterable[Metric]:
        """The alerting families (append to ``MigrationWatchCollector.extra``)."""
        snap = self._snapshot
        now = self.wall()
        sent = metrics.counter("notifications")
        for (receiver, result), n in sorted(self._outbox.counts.items()):
            sent.add_metric([receiver, result], float(n))
        yield sent
        pending = [i for i in snap.outbox if not i.failed]
        size = metrics.gauge("outbox_size")
        size.add_metric([], float(len(pending)))
        yield size
        age = metrics.gauge("outbox_oldest_age_seconds")
        oldest = min((i.created_at for i in pending), default=None)
        age.add_metric([], 0.0 if oldest is None else max((now - oldest).total_seconds(), 0.0))
        yield age
        alerts = metrics.gauge("alerts")
        counts = {(s, sev): 0 for s in _ACTIVE for sev in _SEVERITIES}
        for r in snap.alerts:
            key = (r.state, str(r.labels.get("severity", "")))
            if key in counts:
                counts[key] += 1
        for (state, severity), n in counts.items():
            alerts.add_metric([state, severity], float(n))
        yield alerts
