"""query_ratio: classification, call deltas and the judge (no database).

``test_classification`` moved here unchanged from tests/integration/test_query_ratio.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from migration_watch.checks.query_ratio import (
    RatioWindow,
    Snapshot,
    classify_statement,
    count_deltas,
    judge_query_ratio,
)
from migration_watch.config import Config, parse_config
from migration_watch.results import Status

T0 = datetime(2025, 10, 23, 9, tzinfo=UTC)


def config(limit: float | None = None) -> Config:
    return parse_config(
        {
            "database": {"dsn": "postgresql://mw:pw@127.0.0.1/app"},
            "migration": {
                "name": "m",
                "legacy_column": "customer_id",
                "new_column": "organization_id",
                "tables": [{"name": "conversations"}],
            },
            "checks": {"query_ratio": {"max_legacy_ratio": limit}},
        },
        env={},
    )


def test_classification() -> None:
    tables = ("conversations", "scraper_configs")
    c = "customer_id"
    n = "organization_id"
    assert (
        classify_statement("SELECT * FROM conversations WHERE customer_id = $1", tables, c, n)
        == "legacy"
    )
    assert (
        classify_statement('SELECT "public"."conversations"."organization_id" FROM x', tables, c, n)
        == "new"
    )
    assert (
        classify_statement("SELECT * FROM conversations WHERE customer_ids = $1", tables, c, n)
        is None
    )
    assert classify_statement("SELECT customer_id FROM orders", tables, c, n) is None
    assert (
        classify_statement(
            "/* migration-watch */ SELECT customer_id FROM conversations", tables, c, n
        )
        is None
    )


# --------------------------------------------------------------------------- deltas

CLASSES: dict[tuple[int, int], str | None] = {(1, 10): "legacy", (1, 11): "new", (1, 12): None}


def snap(calls: dict[tuple[int, int], int], reset: datetime | None = T0) -> Snapshot:
    return Snapshot(taken_at=T0, calls=calls, stats_reset=reset)


def test_first_poll_counts_everything_classified() -> None:
    counts, reset = count_deltas(None, {(1, 10): 5, (1, 11): 2, (1, 12): 9}, CLASSES, T0)
    assert counts == {"legacy": 5, "new": 2, "both": 0} and reset is False


def test_deltas_since_the_previous_snapshot() -> None:
    prev = snap({(1, 10): 5, (1, 11): 2})
    calls = {(1, 10): 8, (1, 11): 2, (1, 12): 100}
    assert count_deltas(prev, calls, CLASSES, T0) == ({"legacy": 3, "new": 0, "both": 0}, False)


def test_a_statement_whose_calls_went_down_counts_from_zero() -> None:
    prev = snap({(1, 10): 5, (1, 11): 7})
    # (1, 10) was evicted and came back with 2 calls; (1, 11) is new to the previous view: all.
    counts, _ = count_deltas(prev, {(1, 10): 2, (1, 11): 7}, CLASSES, T0)
    assert counts["legacy"] == 2 and counts["new"] == 0
    fresh, _ = count_deltas(snap({}), {(1, 11): 4}, CLASSES, T0)
    assert fresh["new"] == 4


def test_a_moved_stats_reset_counts_everything_again() -> None:
    prev = snap({(1, 10): 5})
    later = T0 + timedelta(hours=1)
    counts, reset = count_deltas(prev, {(1, 10): 6}, CLASSES, later)
    assert reset is True and counts["legacy"] == 6
    # No stats_reset in the view (pg_stat_statements < 1.9): never a reset.
    counts, reset = count_deltas(prev, {(1, 10): 6}, CLASSES, None)
    assert reset is False and counts["legacy"] == 1


# --------------------------------------------------------------------------- judge


def window(legacy: int, new: int, both: int, **kw: Any) -> RatioWindow:
    return RatioWindow(
        counts={"legacy": legacy, "new": new, "both": both},
        since=kw.get("since", T0),
        cumulative=kw.get("cumulative", False),
    )


@pytest.mark.parametrize(
    ("legacy", "limit", "status"),
    [
        (1, None, Status.PASS),  # no limit: reported, never failed
        (1, 0.25, Status.PASS),  # exactly at the limit
        (2, 0.25, Status.FAIL),
        (0, 0.0, Status.PASS),
        (1, 0.0, Status.FAIL),
    ],
)
def test_threshold_edges(legacy: int, limit: float | None, status: Status) -> None:
    r = judge_query_ratio(config(limit), window(legacy, 4 - legacy, 0), T0)
    assert r.status is status
    assert r.observed["legacy_ratio"] == legacy / 4
    assert r.threshold == {"max_legacy_ratio": limit}


def test_observed_and_message() -> None:
    r = judge_query_ratio(config(0.5), window(2, 3, 1), T0 + timedelta(seconds=90.0004))
    assert (r.check, r.subject) == ("query_ratio", "database")
    assert r.observed == {
        "legacy": 2,
        "new": 3,
        "both": 1,
        "legacy_ratio": 0.333333,
        "window_seconds": 90.0,
        "cumulative": False,
    }
    assert r.details == {"since": T0.isoformat()}
    assert r.message == "33.3% of 6 calls use only customer_id (3 organization_id, 1 both)"


def test_empty_and_cumulative_windows() -> None:
    empty = judge_query_ratio(config(0.0), window(0, 0, 0), T0)
    assert empty.status is Status.PASS and empty.observed["legacy_ratio"] is None
    assert empty.message == "no statements on the watched tables in this window"
    first = judge_query_ratio(config(), window(1, 0, 0, cumulative=True), T0)
    assert first.observed["cumulative"] is True
    assert first.message == (
        "100.0% of 1 calls use only customer_id (0 organization_id, 0 both);"
        " first poll since start-up: cumulative counts"
    )
