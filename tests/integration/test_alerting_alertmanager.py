"""Against a real Alertmanager on 127.0.0.1 (Debian's prometheus-alertmanager): fingerprints
match its own, alerts posted by the daemon arrive with their labels and annotations, are kept
alive, and disappear once resolved."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from migration_watch.alerting import Alerting, AlertingConfig
from migration_watch.alerting.fingerprint import fingerprint
from migration_watch.results import Result, Status
from migration_watch.state import SqliteStateStore
from tests.support import free_port, require_tool, tool_process


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = require_tool("alertmanager", "prometheus-alertmanager")
    root = tmp_path_factory.mktemp("alertmanager")
    (root / "am.yml").write_text('route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n')
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"--config.file={root / 'am.yml'}",
        f"--storage.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with tool_process(argv, ready_url=f"{url}/-/ready", log_path=root / "log", timeout=20):
        yield url


def _alerts(url: str, **filters: str) -> list[dict[str, Any]]:
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("filter", f'{k}="{v}"') for k, v in filters.items()
    ]
    r = httpx.get(f"{url}/api/v2/alerts", params=params, timeout=5)
    r.raise_for_status()
    result: list[dict[str, Any]] = r.json()
    return result


@pytest.mark.parametrize(
    "labels",
    [
        {"x": "y"},
        {"first_name": "electro", "occupation": "robot", "manufacturer": "westinghouse"},
        {"a": "bb", "b": "c", "case": "1"},
        {"a": "b", "bb": "c", "case": "2"},
        {
            "alertname": "MigrationWatchSchema",
            "severity": "critical",
            "check": "schema",
            "subject": "public.café_ünïcode",
            "condition": "error",
        },
    ],
)
def test_fingerprints_match_alertmanagers(alertmanager: str, labels: dict[str, str]) -> None:
    r = httpx.post(f"{alertmanager}/api/v2/alerts", json=[{"labels": labels}], timeout=5)
    assert r.status_code == 200, r.text
    found = [a for a in _alerts(alertmanager) if a["labels"] == labels]
    assert len(found) == 1
    assert found[0]["fingerprint"] == fingerprint(labels)


def test_daemon_alerts_reach_alertmanager_and_resolve(alertmanager: str, tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "state.db")
    cfg = AlertingConfig.model_validate(
        {
            "receivers": [
                {"name": "am", "type": "alertmanager", "url": alertmanager, "alert_ttl": "10m"}
            ],
            "labels": {"env": "test"},
        }
    )
    # Alertmanager judges startsAt/endsAt by its own (real) clock.
    a = Alerting(
        cfg,
        store,
        wall=lambda: datetime.now(UTC),
        migration_name="customer-id-to-organization-id",
        base_url="http://127.0.0.1:9719",
    )
    failing = Result(
        "schema",
        "public.conversations",
        Status.FAIL,
        observed={"index": "idx_conversations_organization_id"},
        message="index idx_conversations_organization_id is invalid",
    )
    (t,) = a.evaluate([failing], now=datetime.now(UTC), run_id=1)
    summary = a.deliver()
    assert (summary.sent, summary.keepalives) == (1, 0)  # the queued one first
    (got,) = _alerts(alertmanager, alertname="MigrationWatchSchema", env="test")
    assert got["labels"] == {
        "alertname": "MigrationWatchSchema",
        "severity": "critical",
        "check": "schema",
        "subject": "public.conversations",
        "env": "test",
    }
    assert got["fingerprint"] == t.fingerprint
    assert got["annotations"]["description"] == (
        "public.conversations: index idx_conversations_organization_id is invalid"
    )
    assert got["annotations"]["runbook_url"] == "docs/runbook.md#migrationwatchschema"
    assert got["generatorURL"] == "http://127.0.0.1:9719/health"
    assert got["status"]["state"] == "active"
    ends = datetime.fromisoformat(got["endsAt"].replace("Z", "+00:00"))
    assert timedelta(minutes=9) < ends - datetime.now(UTC) <= timedelta(minutes=10)
    # Every pulse re-posts firing alerts (keep-alive).
    assert a.deliver().keepalives == 1
    # Resolved: posted with endsAt <= now, then no longer active in Alertmanager.
    a.evaluate([Result("schema", "public.conversations", Status.PASS)], now=datetime.now(UTC))
    summary = a.deliver()
    assert (summary.sent, summary.keepalives) == (1, 0)
    assert _alerts(alertmanager, alertname="MigrationWatchSchema", env="test") == []
    # The resolution is repeated for a few minutes (resend_resolved_for), then no more.
    assert a.deliver().keepalives == 1
    assert a.deliver(datetime.now(UTC) + timedelta(minutes=6)).keepalives == 0
    assert _alerts(alertmanager, alertname="MigrationWatchSchema", env="test") == []
    a.close()
    store.close()
