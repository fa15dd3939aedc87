"""query_ratio: pg_stat_statements deltas, resets, our own statements ignored, unavailable."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from migration_watch.checks.query_ratio import QueryRatioTracker
from migration_watch.config import Config
from migration_watch.db import Database
from migration_watch.results import Status

MakeConfig = Callable[..., Config]
T0 = datetime(2025, 10, 23, 9, tzinfo=UTC)
ZERO = "00000000-0000-0000-0000-000000000000"


def traffic(conn: psycopg.Connection[Any], legacy: int, new: int, both: int) -> None:
    for _ in range(legacy):
        conn.execute("SELECT id FROM conversations WHERE customer_id = %s", (ZERO,))
    for _ in range(new):
        conn.execute(
            "SELECT id FROM conversations WHERE organization_id = %s",
            (ZERO,),
        )
    for _ in range(both):
        conn.execute(
            "SELECT id FROM public.conversations WHERE organization_id = %s OR customer_id = %s",
            (ZERO, ZERO),
        )


def test_deltas_between_polls_and_reset(
    db_dsn: str, pg_conn: psycopg.Connection[Any], make_config: MakeConfig
) -> None:
    cfg = make_config(db_dsn)
    tracker = QueryRatioTracker()
    with Database(cfg.database) as db:
        first = tracker.poll(db, cfg, T0)
        assert first is not None and first.cumulative
        traffic(pg_conn, legacy=6, new=3, both=1)
        d = tracker.poll(db, cfg, T0 + timedelta(seconds=60))
        assert d is not None and not d.cumulative
        assert dict(d.counts) == {"legacy": 6, "new": 3, "both": 1}
        assert d.legacy_ratio == 0.6 and d.window_seconds == 60
        # The check reports the window since the previous check (both polls here).
        r = tracker.check(db, cfg, T0 + timedelta(seconds=120))
        assert r.status is Status.PASS
        assert (r.observed["legacy"], r.observed["new"], r.observed["both"]) == (
            first.counts["legacy"] + 6,
            first.counts["new"] + 3,
            first.counts["both"] + 1,
        )
        assert r.observed["cumulative"] is True and r.observed["window_seconds"] == 120
        # A reset never produces negative deltas; counts restart from zero.
        pg_conn.execute("SELECT extensions.pg_stat_statements_reset()")
        traffic(pg_conn, legacy=2, new=4, both=0)
        d = tracker.poll(db, cfg, T0 + timedelta(seconds=180))
        assert d is not None and d.reset_detected
        assert dict(d.counts) == {"legacy": 2, "new": 4, "both": 0}
        r = tracker.check(db, cfg, T0 + timedelta(seconds=240))
        assert (r.observed["legacy"], r.observed["new"]) == (2, 4)
        assert r.observed["cumulative"] is False and r.observed["legacy_ratio"] == round(2 / 6, 6)
        assert tracker.totals["legacy"] == first.counts["legacy"] + 8


def test_threshold_fails_and_snapshot_round_trips(
    db_dsn: str, pg_conn: psycopg.Connection[Any], make_config: MakeConfig
) -> None:
    cfg = make_config(db_dsn, checks={"query_ratio": {"max_legacy_ratio": 0.5}})
    tracker = QueryRatioTracker()
    with Database(cfg.database) as db:
        tracker.poll(db, cfg, T0)
        assert tracker.snapshot is not None
        restored = QueryRatioTracker(
            snapshot=type(tracker.snapshot).from_json(tracker.snapshot.to_json())
        )
        traffic(pg_conn, legacy=3, new=1, both=0)
        r = tracker.check(db, cfg, T0 + timedelta(minutes=1))
        assert r.status is Status.FAIL  # includes the cumulative first poll, legacy-heavy
        r2 = restored.check(db, cfg, T0 + timedelta(minutes=1))
        assert (r2.observed["legacy"], r2.observed["new"]) == (3, 1)
        assert r2.observed["cumulative"] is False and r2.status is Status.FAIL


def test_skipped_when_extension_missing(
    db_dsn: str, pg_conn: psycopg.Connection[Any], make_config: MakeConfig
) -> None:
    pg_conn.execute("DROP EXTENSION pg_stat_statements")
    cfg = make_config(db_dsn)
    with Database(cfg.database) as db:
        r = QueryRatioTracker().check(db, cfg, T0)
    assert r.status is Status.SKIPPED
    assert "not installed" in r.message


def test_skipped_when_not_readable(
    db_dsn: str, db_name: str, pg_conn: psycopg.Connection[Any], make_config: MakeConfig
) -> None:
    pg_conn.execute("DROP ROLE IF EXISTS mw_nostats")
    pg_conn.execute("CREATE ROLE mw_nostats LOGIN PASSWORD 'pw-nostats'")
    pg_conn.execute("GRANT USAGE ON SCHEMA extensions TO mw_nostats")
    traffic(pg_conn, legacy=1, new=1, both=0)
    host = pg_conn.info.host
    port = pg_conn.info.port
    dsn = f"host={host} port={port} dbname={db_name} user=mw_nostats password=pw-nostats"
    cfg = make_config(dsn)
    try:
        with Database(cfg.database) as db:
            r = QueryRatioTracker().check(db, cfg, T0)
        assert r.status is Status.SKIPPED
        assert "pg_read_all_stats" in r.message
    finally:
        pg_conn.execute("DROP OWNED BY mw_nostats")
        pg_conn.execute("DROP ROLE mw_nostats")
