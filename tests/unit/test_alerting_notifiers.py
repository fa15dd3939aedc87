"""Payload rendering, signatures, response classification and backoff (no network)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from migration_watch.alerting.config import signing_key
from migration_watch.alerting.notifiers import (
    SendResult,
    alertmanager_alert,
    notification_payload,
    sign,
    slack_message,
    webhook_body,
)
from migration_watch.alerting.outbox import Backoff, classify, retry_after_delay

NOW = datetime(2025, 10, 23, 10, 0, tzinfo=UTC)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def payload(status: str = "firing", **alert: Any) -> dict[str, Any]:
    base = {
        "alertname": "MigrationWatchSchema",
        "fingerprint": "0123456789abcdef",
        "status": status,
        "labels": {
            "alertname": "MigrationWatchSchema",
            "severity": "critical",
            "check": "schema",
            "subject": "public.conversations",
        },
        "annotations": {
            "summary": "An expected index or column is missing or invalid",
            "description": "public.conversations: index idx_conversations_org is invalid",
            "runbook_url": "https://git.example/runbook.md#migrationwatchschema",
        },
        "startsAt": "2025-10-23T09:00:00.000000Z",
        "endsAt": "2025-10-23T09:30:00.000000Z" if status == "resolved" else None,
        "check": "schema",
        "subject": "public.conversations",
        "severity": "critical",
        "value": "indexes={...}",
        "resolution": "all indexes valid" if status == "resolved" else None,
        "repeat": 0,
    }
    base.update(alert)
    return notification_payload(
        notification_id="msg_abc",
        type_=f"alert.{status}",
        timestamp=NOW,
        alert=base,
        context={"migration": "m", "phase": "daily", "day": 4, "run_id": 7, "generatorURL": None},
    )


def test_webhook_body_shape() -> None:
    doc = json.loads(webhook_body(payload()))
    assert set(doc) == {"type", "timestamp", "data"}
    assert doc["type"] == "alert.firing"
    assert doc["timestamp"] == "2025-10-23T10:00:00.000000Z"
    data = doc["data"]
    assert data["id"] == "msg_abc"
    assert data["labels"]["alertname"] == "MigrationWatchSchema"
    assert data["annotations"]["runbook_url"].endswith("#migrationwatchschema")
    assert (data["migration"], data["phase"], data["day"], data["run_id"]) == ("m", "daily", 4, 7)


def test_signature_matches_the_reference_implementation() -> None:
    body = webhook_body(payload())
    ours = sign(signing_key(SECRET), "msg_abc", int(NOW.timestamp()), body)
    theirs = Webhook(SECRET).sign("msg_abc", NOW, body.decode())
    assert ours == theirs
    assert ours.startswith("v1,")


def test_slack_message() -> None:
    msg = slack_message(payload())
    att = msg["attachments"][0]
    assert msg["text"] == "[FIRING:1] MigrationWatchSchema public.conversations"
    assert att["color"] == "#E01E5A"
    assert att["title_link"] == "https://git.example/runbook.md#migrationwatchschema"
    assert "index idx_conversations_org is invalid" in att["text"]
    assert {"title": "Value", "value": "indexes={...}", "short": False} in att["fields"]
    assert "day 4" in att["footer"]
    resolved = slack_message(payload("resolved"))
    assert resolved["text"] == "[RESOLVED] MigrationWatchSchema public.conversations"
    assert resolved["attachments"][0]["color"] == "#2EB67D"
    assert "Now: all indexes valid" in resolved["attachments"][0]["text"]
    reminder = slack_message(payload(repeat=2))
    assert reminder["text"].endswith("(reminder 2)")


def test_alertmanager_alert_times() -> None:
    ttl = timedelta(minutes=5)
    firing = alertmanager_alert(payload(), now=NOW, ttl=ttl)
    assert firing["startsAt"] == "2025-10-23T09:00:00.000000Z"
    assert firing["endsAt"] == "2025-10-23T10:05:00.000000Z"
    assert "generatorURL" not in firing
    resolved = alertmanager_alert(payload("resolved"), now=NOW, ttl=ttl)
    assert resolved["endsAt"] == "2025-10-23T09:30:00.000000Z"
    # A resolution time after now is clamped to now.
    early = alertmanager_alert(payload("resolved"), now=NOW - timedelta(hours=1), ttl=ttl)
    assert early["endsAt"] == "2025-10-23T09:00:00.000000Z"
    assert early["startsAt"] <= early["endsAt"]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (200, "delivered"),
        (202, "delivered"),
        (204, "delivered"),
        (None, "retry"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (400, "permanent"),
        (401, "permanent"),
        (404, "permanent"),
        (301, "permanent"),
        (410, "gone"),
    ],
)
def test_classify(code: int | None, expected: str) -> None:
    assert classify(SendResult(receiver="r", status_code=code)) == expected


def test_retry_after() -> None:
    assert retry_after_delay("120", NOW) == timedelta(seconds=120)
    assert retry_after_delay("Thu, 23 Oct 2025 10:02:00 GMT", NOW) == timedelta(minutes=2)
    assert retry_after_delay("Thu, 23 Oct 2025 09:00:00 GMT", NOW) == timedelta(0)
    assert retry_after_delay("soon", NOW) is None
    assert retry_after_delay(None, NOW) is None


def test_backoff_is_exponential_capped_and_jittered() -> None:
    values = iter([0.0, 1.0, 0.5, 1.0])
    b = Backoff(timedelta(seconds=10), timedelta(minutes=10), rng=lambda: next(values))
    assert b.delay(0) == timedelta(seconds=5)  # jitter 0 → half
    assert b.delay(1) == timedelta(seconds=20)  # jitter 1 → full
    assert b.delay(2) == timedelta(seconds=30)  # 40 s * 0.75
    assert b.delay(30) == timedelta(minutes=10)  # capped
