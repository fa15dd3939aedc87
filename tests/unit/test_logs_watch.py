"""The log watch as a component: its drain route, counting, checkpoints, metrics and health
(an HTTP drain source; no database, a real state file)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry

from migration_watch.config import Config
from migration_watch.http import Request
from migration_watch.logs.watch import LogWatch
from migration_watch.state import SqliteStateStore

T0 = datetime(2025, 10, 23, 9, 0, tzinfo=UTC)
SOURCE = {"name": "vercel", "type": "http", "token": "s3cret"}


def _lines(*records: dict[str, object]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def _request(body: bytes, token: str = "s3cret", query: str = "") -> Request:
    return Request(
        method="POST",
        path="/ingest/logs",
        query=query,
        headers={"authorization": f"Bearer {token}", "content-type": "application/x-ndjson"},
        body=body,
        client="127.0.0.1",
    )


def _watch(config: Config, path: Path) -> tuple[LogWatch, SqliteStateStore]:
    store = SqliteStateStore(path)
    return LogWatch(config, store, deployed_at=lambda: T0), store


def test_drain_route_counts_and_survives_a_restart(
    offline_config: Callable[..., Config], tmp_path: Path
) -> None:
    config = offline_config(logs={"sources": [SOURCE]})
    watch, store = _watch(config, tmp_path / "s.sqlite")
    try:
        (route,) = watch.routes()
        assert (route.method, route.path) == ("POST", "/ingest/logs")
        assert route.handler(_request(b"{}\n", token="wrong")).status == 401
        body = _lines(
            {"ts": "2025-10-23T10:00:00Z", "level": "error", "msg": "customer_id is null"},
            {"ts": "2025-10-23T10:00:01Z", "level": "info", "msg": "organization_id=7 ok"},
            {"ts": "2025-10-23T10:00:02Z", "level": "info", "msg": "plain"},
        )
        assert route.handler(_request(body)).status in (200, 202)
        assert route.handler(_request(body, query="source=nope")).status == 404
        watch.pump()
        reg = CollectorRegistry(auto_describe=False)
        reg.register(watch)
        lines = "migration_watch_log_lines_total"
        assert reg.get_sample_value(lines, {"source": "vercel", "class": "all"}) == 3
        assert reg.get_sample_value(lines, {"source": "vercel", "class": "error"}) == 1
        assert reg.get_sample_value(lines, {"source": "vercel", "class": "legacy_reference"}) == 1
        assert reg.get_sample_value(lines, {"source": "vercel", "class": "new_reference"}) == 1
        assert reg.get_sample_value(lines, {"source": "vercel", "class": "legacy_error"}) == 1
        health = watch.health()["logs"]["vercel"]
        assert (health["lines"], health["errors"], health["legacy_errors"]) == (3, 1, 1)
    finally:
        watch.close()
        store.close()
    again, store = _watch(config, tmp_path / "s.sqlite")
    try:
        assert again.health()["logs"]["vercel"]["lines"] == 3  # the checkpoint, restored
    finally:
        again.close()
        store.close()


def test_without_sources_it_contributes_nothing(
    offline_config: Callable[..., Config], tmp_path: Path
) -> None:
    watch, store = _watch(offline_config(), tmp_path / "s.sqlite")
    try:
        assert not watch.enabled
        assert watch.routes() == ()
        assert watch.health() == {}
        assert watch.window_results(T0) == []
    finally:
        watch.close()
        store.close()
