"""Alerting wired into the service: a broken index pages once, its repair resolves once;
`alerts test` and `alerts list` on the command line."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import yaml

from migration_watch.cli import main
from migration_watch.clock import ManualClock
from migration_watch.config import Config
from migration_watch.demo import sample
from migration_watch.service import Service
from tests.support import Receiver

from .conftest import sample_config_data

MakeConfig = Callable[..., Config]


def _alerting(url: str) -> dict[str, Any]:
    return {
        "receivers": [
            {"name": "oncall", "type": "webhook", "url": url, "secret": "whsec_" + "A" * 32}
        ],
        "rules": {"schema": {"severity": "critical", "for": 1}},
    }


def _events(receiver: Receiver, alertname: str) -> list[str]:
    out = []
    for r in receiver.requests:
        body = r.json
        data = body.get("data", {})
        if data.get("alertname") == alertname:
            out.append(body["type"])
    return out


def test_index_broken_then_repaired_notifies_once_each(
    db_dsn: str, pg_conn: psycopg.Connection[Any], make_config: MakeConfig
) -> None:
    receiver = Receiver().start()
    try:
        cfg = make_config(db_dsn, alerting=_alerting(receiver.url()))
        clock = ManualClock(sample.DEPLOYED_AT + timedelta(days=2))
        svc = Service(cfg, clock=clock, port=0)
        try:
            assert svc.week.run_extra() is not None
            assert _events(receiver, "MigrationWatchSchema") == []
            sample.invalidate_index(pg_conn, "idx_conversations_organization_id")
            clock.advance(timedelta(hours=1))
            svc.week.run_extra()
            assert _events(receiver, "MigrationWatchSchema") == ["alert.firing"]
            firing = next(
                r.json["data"]
                for r in receiver.requests
                if r.json["data"].get("alertname") == "MigrationWatchSchema"
            )
            assert "idx_conversations_organization_id" in firing["annotations"]["description"]
            clock.advance(timedelta(hours=1))
            svc.week.run_extra()  # still broken: no second page
            assert _events(receiver, "MigrationWatchSchema") == ["alert.firing"]
            pg_conn.execute("REINDEX INDEX idx_conversations_organization_id")
            clock.advance(timedelta(hours=1))
            svc.week.run_extra()
            assert _events(receiver, "MigrationWatchSchema") == ["alert.firing", "alert.resolved"]
            health = svc.alerting.health()
            assert "whsec_" not in json.dumps(health)
        finally:
            svc.stop()
    finally:
        receiver.stop()


def test_alerts_test_and_list_commands(tmp_path: Path, db_dsn: str) -> None:
    receiver = Receiver().start()
    try:
        data = sample_config_data(db_dsn, state={"path": str(tmp_path / "s.sqlite")})
        data["alerting"] = _alerting(receiver.url())
        cfg = tmp_path / "mw.yaml"
        cfg.write_text(yaml.safe_dump(data))
        out = io.StringIO()
        assert main(["alerts", "test", "--config", str(cfg)], out=out) == 0
        assert "oncall (webhook): OK HTTP 204" in out.getvalue()
        assert [r.json["type"] for r in receiver.requests] == ["alert.test"]
        out = io.StringIO()
        assert main(["alerts", "list", "--config", str(cfg), "--format", "json"], out=out) == 0
        assert json.loads(out.getvalue()) == []
        assert main(["alerts", "test", "--config", str(cfg), "--receiver", "nope"]) == 2
    finally:
        receiver.stop()
