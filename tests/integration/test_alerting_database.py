"""End to end on the real database: an index dropped mid-week → one firing notification →
index recreated → one resolved notification (real PostgreSQL, real HTTP receiver)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from migration_watch.alerting import Alerting, AlertingConfig
from migration_watch.clock import ManualClock
from migration_watch.config import Config
from migration_watch.db import Database
from migration_watch.demo import sample
from migration_watch.runner import Runner
from migration_watch.state import SqliteStateStore

INDEX = "idx_conversations_organization_id"


@pytest.fixture
def hook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            received.append(json.loads(body))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def test_index_dropped_mid_week_then_recreated(
    db_dsn: str,
    pg_conn: psycopg.Connection[Any],
    make_config: Callable[..., Config],
    hook: tuple[str, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    url, received = hook
    cfg = make_config(db_dsn)
    clock = ManualClock(sample.DEPLOYED_AT + timedelta(days=3))
    store = SqliteStateStore(tmp_path / "state.db")
    alerting = Alerting(
        AlertingConfig.model_validate(
            {"receivers": [{"name": "oncall", "type": "webhook", "url": url}]}
        ),
        store,
        wall=clock.now,
        migration_name=cfg.migration.name,
    )
    definition = pg_conn.execute(
        "SELECT pg_get_indexdef(%s::regclass)", (f"public.{INDEX}",)
    ).fetchone()
    assert definition is not None

    with Database(cfg.database) as db:
        runner = Runner(cfg, db, wall=clock.now)

        def run_and_alert() -> None:
            outcome = runner.run_once(clock.now())
            assert outcome is not None
            alerting.evaluate(outcome.results, now=outcome.started_at, day=4, phase="daily")
            alerting.deliver()
            clock.advance(timedelta(hours=1))

        run_and_alert()  # healthy
        assert received == []
        sample.drop_index(pg_conn, INDEX)
        run_and_alert()  # the index is gone
        run_and_alert()  # still gone: no second notification
        pg_conn.execute(definition[0])
        run_and_alert()  # recreated
        run_and_alert()

    assert [(m["type"], m["data"]["alertname"], m["data"]["subject"]) for m in received] == [
        ("alert.firing", "MigrationWatchSchema", "public.conversations"),
        ("alert.resolved", "MigrationWatchSchema", "public.conversations"),
    ]
    assert INDEX in received[0]["data"]["annotations"]["description"]
    assert received[0]["data"]["labels"]["severity"] == "critical"
    alerting.close()
    store.close()
