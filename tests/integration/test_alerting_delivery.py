"""Delivery over real HTTP on 127.0.0.1: signatures, retries, order, permanent failures,
410, a SIGKILL between enqueue and delivery, secrets kept out of logs and /health."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector
from standardwebhooks.webhooks import Webhook

from migration_watch.alerting import Alerting, AlertingConfig
from migration_watch.clock import ManualClock
from migration_watch.errors import ConfigError
from migration_watch.results import Result, Status
from migration_watch.state import OutboxMessage, SqliteStateStore
from tests.support import Receiver, ok

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MIN = timedelta(minutes=1)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStateStore]:
    s = SqliteStateStore(tmp_path / "state.db")
    yield s
    s.close()


def R(check: str, status: Status, subject: str = "public.conversations", **obs: Any) -> Result:
    msg = f"index {obs['index']} is invalid" if "index" in obs else f"{check} {status}"
    return Result(check=check, subject=subject, status=status, observed=obs, message=msg)


def config(*receivers: dict[str, Any], **extra: Any) -> AlertingConfig:
    return AlertingConfig.model_validate(
        {"receivers": list(receivers), "retry": {"initial_backoff": "10s"}, **extra}
    )


def hook(url: str, **kw: Any) -> dict[str, Any]:
    return {"name": "hook", "type": "webhook", "url": url, "timeout": "2s", **kw}


def alerting(
    cfg: AlertingConfig, store: SqliteStateStore, clock: ManualClock, **kw: Any
) -> Alerting:
    kw.setdefault("rng", lambda: 0.0)
    return Alerting(cfg, store, wall=clock.now, migration_name="mig", **kw)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# --------------------------------------------------------------------------- signatures


def test_webhook_is_signed_per_standard_webhooks(
    receiver: Receiver, store: SqliteStateStore
) -> None:
    clock = ManualClock(_now())  # the reference verifier checks the timestamp against real time
    a = alerting(
        config(hook(receiver.url(), secret=SECRET, headers={"Authorization": "Bearer tok"})),
        store,
        clock,
        base_url="http://127.0.0.1:9719",
    )
    ts = a.evaluate([R("schema", Status.FAIL, index="idx_conv_org")], now=clock.now(), run_id=3)
    summary = a.deliver()
    assert (summary.sent, summary.pending) == (1, 0)
    (req,) = receiver.requests
    doc = Webhook(SECRET).verify(req.body, req.headers)  # raises if the signature is wrong
    assert req.headers["webhook-id"] == ts[0].notification_id
    assert req.headers["webhook-timestamp"] == str(int(clock.now().timestamp()))
    assert req.headers["authorization"] == "Bearer tok"
    assert req.headers["content-type"] == "application/json"
    assert doc["type"] == "alert.firing"
    data = doc["data"]
    assert data["labels"] == {
        "alertname": "MigrationWatchSchema",
        "severity": "critical",
        "check": "schema",
        "subject": "public.conversations",
    }
    assert data["annotations"]["description"] == (
        "public.conversations: index idx_conv_org is invalid"
    )
    assert data["annotations"]["runbook_url"] == "docs/runbook.md#migrationwatchschema"
    assert data["observed"] == {"index": "idx_conv_org"}
    assert (data["migration"], data["run_id"]) == ("mig", 3)
    assert data["generatorURL"] == "http://127.0.0.1:9719/health"
    # A tampered body does not verify.
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(req.body.replace(b"schema", b"schemA"), req.headers)
    a.close()


# --------------------------------------------------------------------------- down, then up


def _reserve_port() -> socket.socket:
    """A bound socket that does not listen: connections are refused, and the port stays ours."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    return s


def test_receiver_down_then_up_every_notification_once_in_order(store: SqliteStateStore) -> None:
    reserved = _reserve_port()
    port = reserved.getsockname()[1]
    clock = ManualClock(datetime(2025, 10, 23, 9, tzinfo=UTC))
    a = alerting(
        config(hook(f"http://127.0.0.1:{port}/hook"), retry={"max_backoff": "5m"}), store, clock
    )
    expected: list[str] = []
    # Ten pulses while the receiver is down; alerts fire and resolve in between.
    script = {
        0: [R("schema", Status.FAIL)],
        2: [R("orphans", Status.FAIL, subject="public.messages")],
        4: [R("schema", Status.PASS)],
        6: [R("coverage", Status.FAIL)],
        8: [R("orphans", Status.PASS, subject="public.messages")],
    }
    failed = 0
    for pulse in range(10):
        for t in a.evaluate(script.get(pulse, []), now=clock.now()):
            if t.notification_id:
                expected.append(t.notification_id)
        s = a.deliver()
        failed += s.failed
        assert s.sent == 0
        clock.advance(MIN)
    assert len(expected) == 5
    assert store.outbox_size() == 5
    assert failed >= 3
    health = a.health()["alerting"]
    assert health["outbox"]["pending"] == 5
    assert "ConnectError" in (health["receivers"][0]["last_error"] or "")

    reserved.close()
    r = Receiver(port=port).start()
    try:
        for _ in range(20):
            clock.advance(5 * MIN)
            a.deliver()
            if store.outbox_size() == 0:
                break
        assert r.ids() == expected  # every one, once, in order
        assert store.outbox_size() == 0
        assert a._outbox.counts[("hook", "sent")] == 5
        assert [req.json["type"] for req in r.requests] == [
            "alert.firing",
            "alert.firing",
            "alert.resolved",
            "alert.firing",
            "alert.resolved",
        ]
    finally:
        r.stop()
        a.close()


# --------------------------------------------------------------------------- 429, 5xx, 4xx, 410


def test_429_retry_after_is_honoured(receiver: Receiver, store: SqliteStateStore) -> None:
    receiver.respond = lambda i, _: (429, {"Retry-After": "120"}, b"") if i == 0 else (200, {}, b"")
    clock = ManualClock(datetime(2025, 10, 23, 9, tzinfo=UTC))
    a = alerting(config(hook(receiver.url())), store, clock)
    a.evaluate([R("rls", Status.FAIL)], now=clock.now())
    assert a.deliver().failed == 1
    (item,) = store.outbox_list()
    assert item.next_attempt_at == clock.now() + timedelta(seconds=120)
    assert item.last_error == "HTTP 429"
    clock.advance(timedelta(seconds=119))  # the backoff alone would have retried after 5 s
    assert a.deliver().sent == 0
    assert len(receiver.requests) == 1
    clock.advance(timedelta(seconds=1))
    assert a.deliver().sent == 1
    assert len(receiver.requests) == 2
    assert receiver.ids()[0] == receiver.ids()[1]  # same webhook-id on the retry
    a.close()


def test_503_with_an_http_date_and_5xx_backoff(receiver: Receiver, store: SqliteStateStore) -> None:
    clock = ManualClock(datetime(2025, 10, 23, 9, tzinfo=UTC))
    answers = [
        (503, {"Retry-After": "Thu, 23 Oct 2025 09:03:00 GMT"}, b""),
        (500, {}, b"oops"),
        (200, {}, b""),
    ]
    receiver.respond = lambda i, _: answers[i]
    a = alerting(config(hook(receiver.url())), store, clock)
    a.evaluate([R("rls", Status.FAIL)], now=clock.now())
    a.deliver()
    assert store.outbox_list()[0].next_attempt_at == datetime(2025, 10, 23, 9, 3, tzinfo=UTC)
    clock.set(datetime(2025, 10, 23, 9, 3, tzinfo=UTC))
    a.deliver()
    item = store.outbox_list()[0]
    # second attempt: 10 s * 2**1 with jitter 0 → 10 s
    assert item.next_attempt_at == clock.now() + timedelta(seconds=10)
    assert item.last_error == "HTTP 500: oops"
    clock.advance(timedelta(seconds=10))
    assert a.deliver().sent == 1
    a.close()


def test_400_is_not_retried_and_stays_visible(receiver: Receiver, store: SqliteStateStore) -> None:
    receiver.respond = lambda i, _: (400, {}, b"invalid payload") if i == 0 else (200, {}, b"")
    clock = ManualClock(datetime(2025, 10, 23, 9, tzinfo=UTC))
    a = alerting(config(hook(receiver.url())), store, clock)
    with structlog.testing.capture_logs() as logs:
        a.evaluate([R("rls", Status.FAIL)], now=clock.now())
        assert a.deliver().dropped == 1
    assert any(e["log_level"] == "error" and "permanently" in e["event"] for e in logs)
    for _ in range(5):
        clock.advance(timedelta(minutes=30))
        a.deliver()
    assert len(receiver.requests) == 1  # never retried
    (item,) = store.outbox_list()
    assert item.failed and item.last_error == "HTTP 400: invalid payload"
    h = a.health()["alerting"]["outbox"]
    assert (h["pending"], h["failed"]) == (0, 1)
    assert h["undelivered"][0]["last_error"] == "HTTP 400: invalid payload"
    # A failed item does not hold back the next notification.
    a.evaluate([R("rls", Status.PASS)], now=clock.now())
    assert a.deliver().sent == 1
    assert a._outbox.counts[("hook", "dropped")] == 1
    a.close()


def test_410_disables_the_receiver_until_its_url_changes(
    receiver: Receiver, store: SqliteStateStore
) -> None:
    receiver.respond = lambda i, _: (410, {}, b"gone")
    clock = ManualClock(datetime(2025, 10, 23, 9, tzinfo=UTC))
    a = alerting(config(hook(receiver.url())), store, clock)
    with structlog.testing.capture_logs() as logs:
        a.evaluate([R("rls", Status.FAIL)], now=clock.now())
        summary = a.deliver()
    assert summary.disabled == ("hook",)
    loud = [e for e in logs if "RECEIVER DISABLED" in e["event"]]
    assert loud and loud[0]["log_level"] == "error" and loud[0]["receiver"] == "hook"
    a.evaluate([R("rls", Status.PASS)], now=clock.now())
    a.deliver()
    assert len(receiver.requests) == 1  # nothing more is sent
    assert all(i.failed for i in store.outbox_list())
    assert a.health()["alerting"]["receivers"][0]["disabled"]
    a.close()
    # Restarted with the same URL: still disabled. With a new URL: enabled again.
    b = alerting(config(hook(receiver.url())), store, clock)
    assert b.health()["alerting"]["receivers"][0]["disabled"]
    b.close()
    receiver.respond = ok
    c = alerting(config(hook(receiver.url("/new-hook"))), store, clock)
    assert c.health()["alerting"]["receivers"][0]["disabled"] is None
    c.evaluate([R("schema", Status.FAIL)], now=clock.now())
    assert c.deliver().sent == 1
    c.close()


# --------------------------------------------------------------------------- SIGKILL


_CHILD = textwrap.dedent(
    """
    import json, sys
    from datetime import datetime
    from migration_watch.alerting import Alerting, AlertingConfig
    from migration_watch.results import Result, Status
    from migration_watch.state import SqliteStateStore

    path, cfg, now = sys.argv[1], json.loads(sys.argv[2]), datetime.fromisoformat(sys.argv[3])
    store = SqliteStateStore(path)
    a = Alerting(AlertingConfig.model_validate(cfg), store, wall=lambda: now,
                 migration_name="mig")
    ts = a.evaluate([Result("schema", "public.conversations", Status.FAIL, message="bad")],
                    now=now)
    print("IDS", json.dumps([t.notification_id for t in ts]), flush=True)
    sys.stdin.read()  # wait here, outbox non-empty, until killed
    """
)


def test_sigkill_after_enqueue_delivers_after_restart_with_the_same_id(
    receiver: Receiver, tmp_path: Path
) -> None:
    path = tmp_path / "state.db"
    now = datetime(2025, 10, 23, 9, tzinfo=UTC)
    cfg = {"receivers": [hook(receiver.url(), secret=SECRET)]}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), json.dumps(cfg), now.isoformat()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert child.stdout is not None
        line = b""
        while not line.startswith(b"IDS "):  # structlog's default logger prints to stdout too
            line = child.stdout.readline()
            assert line, "the child exited early"
        ids = json.loads(line[4:])
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()  # type: ignore[union-attr]
        child.stdin.close()  # type: ignore[union-attr]
    assert child.returncode == -signal.SIGKILL
    assert len(ids) == 1 and receiver.requests == []

    store = SqliteStateStore(path)
    clock = ManualClock(now + MIN)
    a = alerting(AlertingConfig.model_validate(cfg), store, clock)
    # The alert is remembered as firing: the same failure does not notify again.
    assert a.evaluate([R("schema", Status.FAIL)], now=clock.now()) == []
    assert a.deliver().sent == 1
    assert receiver.ids() == ids
    clock.advance(MIN)
    assert a.deliver().sent == 0
    assert len(receiver.requests) == 1
    a.close()
    store.close()


# --------------------------------------------------------------------------- secrets


class _Wrap(Collector):
    def __init__(self, a: Alerting) -> None:
        self.a = a

    def collect(self) -> Any:
        return self.a.collect()


def test_secrets_stay_out_of_logs_health_and_metrics(
    receiver: Receiver, store: SqliteStateStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the stdlib loggers of httpx/httpcore too
    url_token = "T0KEN-in-the-url-9f8e7d"
    header_token = "hdr-s3cret-4c5b6a"
    (tmp_path / "auth").write_text(f"Bearer {header_token}\n")
    # The receiver echoes the request path back in its error body, as some services do.
    receiver.respond = lambda i, req: [
        (400, {}, f"unknown hook {req.path}".encode()),
        (500, {}, b"x"),
    ][i % 2]
    refused = _reserve_port()
    cfg = config(
        hook(
            receiver.url(f"/services/{url_token}?key={url_token}"),
            secret=SECRET,
            header_files={"Authorization": str(tmp_path / "auth")},
        ),
        {
            "name": "chat",
            "type": "slack",
            "url": f"http://127.0.0.1:{refused.getsockname()[1]}/services/{url_token}",
        },
    )
    clock = ManualClock(datetime(2025, 10, 23, 9, tzinfo=UTC))
    registry = CollectorRegistry()
    with structlog.testing.capture_logs() as logs:
        a = alerting(cfg, store, clock)
        registry.register(_Wrap(a))
        a.evaluate([R("schema", Status.FAIL), R("rls", Status.FAIL)], now=clock.now())
        a.deliver()
        clock.advance(timedelta(hours=1))
        a.deliver()
        outcomes = a.send_test()
    refused.close()
    assert len(receiver.requests) >= 2
    shown = (
        json.dumps(
            [
                logs,
                a.health(),
                [s.to_json() for s in a.list_alerts()],
                [o.to_json() for o in outcomes],
                [(i.last_error, i.payload) for i in store.outbox_list()],
            ],
            default=str,
        )
        + generate_latest(registry).decode()
        + caplog.text
    )
    assert "[REDACTED]" in shown  # the echoed path was caught
    for secret in (url_token, header_token, SECRET, SECRET.removeprefix("whsec_")):
        assert secret not in shown
    a.close()


def test_notifications_for_a_removed_receiver_are_dropped_visibly(
    receiver: Receiver, store: SqliteStateStore
) -> None:
    clock = ManualClock(datetime(2025, 10, 23, 9, tzinfo=UTC))
    a = alerting(config(hook(receiver.url())), store, clock)
    a.evaluate([R("rls", Status.FAIL)], now=clock.now())
    a.close()
    b = alerting(
        config({"name": "chat", "type": "slack", "url": receiver.url("/chat")}), store, clock
    )
    b.deliver()
    (item,) = store.outbox_list()
    assert item.failed and item.last_error == "receiver no longer configured"
    assert receiver.requests == []
    b.close()


def test_an_unrenderable_item_is_dropped_and_does_not_block(
    receiver: Receiver, store: SqliteStateStore
) -> None:
    clock = ManualClock(datetime(2025, 10, 23, 9, tzinfo=UTC))
    store.outbox_enqueue(OutboxMessage("broken:hook", "hook", {"type": "x"}), now=clock.now())
    a = alerting(config(hook(receiver.url())), store, clock)
    a.evaluate([R("rls", Status.FAIL)], now=clock.now())
    summary = a.deliver()
    assert (summary.dropped, summary.sent) == (1, 1)
    assert store.outbox_list()[0].last_error == "cannot send: KeyError: 'id'"
    a.close()


# --------------------------------------------------------------------------- slack, test, repeat


def test_slack_message_over_http(receiver: Receiver, store: SqliteStateStore) -> None:
    clock = ManualClock(datetime(2025, 10, 23, 9, tzinfo=UTC))
    a = alerting(
        config({"name": "chat", "type": "slack", "url": receiver.url("/services/T/B/X")}),
        store,
        clock,
    )
    a.evaluate([R("post_deploy_writes", Status.FAIL, post_deploy_missing=3)], now=clock.now())
    a.deliver()
    a.evaluate([R("post_deploy_writes", Status.PASS)], now=clock.now())
    a.deliver()
    firing, resolved = (r.json for r in receiver.requests)
    assert firing["text"] == "[FIRING:1] MigrationWatchPostDeployWrites public.conversations"
    assert firing["attachments"][0]["color"] == "#E01E5A"
    fields = {f["title"]: f["value"] for f in firing["attachments"][0]["fields"]}
    assert fields["Value"] == "post_deploy_missing=3"
    assert fields["Runbook"] == "docs/runbook.md#migrationwatchpostdeploywrites"
    assert resolved["text"] == "[RESOLVED] MigrationWatchPostDeployWrites public.conversations"
    a.close()


def test_send_test_reports_each_receivers_answer(
    receiver: Receiver, store: SqliteStateStore
) -> None:
    refused = _reserve_port()
    clock = ManualClock(_now())
    a = alerting(
        config(
            hook(receiver.url(), secret=SECRET),
            {
                "name": "down",
                "type": "slack",
                "url": f"http://127.0.0.1:{refused.getsockname()[1]}/",
            },
        ),
        store,
        clock,
    )
    good, bad = a.send_test()
    assert (good.receiver, good.ok, good.status_code) == ("hook", True, 204)
    assert (bad.receiver, bad.ok, bad.status_code) == ("down", False, None)
    assert bad.error and "ConnectError" in bad.error
    (req,) = receiver.requests
    doc = Webhook(SECRET).verify(req.body, req.headers)
    assert doc["type"] == "alert.test"
    assert doc["data"]["labels"]["alertname"] == "MigrationWatchTest"
    assert store.outbox_list() == []  # tests bypass the outbox
    (only,) = a.send_test("hook")
    assert only.ok
    with pytest.raises(ConfigError, match="no receiver named 'nope'"):
        a.send_test("nope")
    refused.close()
    a.close()


def test_repeat_reaches_the_receiver(receiver: Receiver, store: SqliteStateStore) -> None:
    clock = ManualClock(datetime(2025, 10, 23, 9, tzinfo=UTC))
    a = alerting(
        config(hook(receiver.url()), rules={"schema": {"repeat_interval": "1h"}}), store, clock
    )
    a.evaluate([R("schema", Status.FAIL)], now=clock.now())
    for _ in range(3 * 60 + 1):  # three hours of pulses
        a.deliver()
        clock.advance(MIN)
    reminders = [r.json["data"]["repeat"] for r in receiver.requests]
    assert reminders == [0, 1, 2, 3]
    assert len(set(receiver.ids())) == 4
    a.close()
