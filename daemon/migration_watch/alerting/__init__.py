"""Alerting: rules, the alert state machine, the durable outbox and the notifiers.

The engine (:class:`Alerting`) lives in :mod:`.engine`; this face only re-exports.
"""

from __future__ import annotations

from .engine import (
    Alerting,
    AlertingConfig,
    AlertKind,
    AlertState,
    AlertSummary,
    DeliverySummary,
    Event,
    ReceiverConfig,
    RouteConfig,
    Rule,
    RuleConfig,
    RulesConfig,
    TestOutcome,
    Transition,
    alert_name,
    fingerprint,
)

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
