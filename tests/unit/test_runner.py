"""The runner against a database that is not there: every check errors, none passes, the
checks given at construction still run, and the view tells what happened."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from migration_watch.config import Config
from migration_watch.db import Database
from migration_watch.results import Result, Status
from migration_watch.runner import Runner

T = datetime(2025, 10, 23, 10, 0, tzinfo=UTC)


def test_unreachable_database_gives_errors_never_a_pass(
    offline_config: Callable[..., Config],
) -> None:
    config = offline_config()
    seen: list[datetime] = []

    def window(now: datetime) -> list[Result]:
        seen.append(now)
        return [Result("log_errors", "drain", Status.PASS)]

    def broken(now: datetime) -> list[Result]:
        raise RuntimeError("boom")

    with Database(config.database) as db:
        runner = Runner(config, db, wall=lambda: T, extra_checks=(broken, window))
        outcome = runner.run_once()
    assert outcome is not None
    db_results = [r for r in outcome.results if r.check != "log_errors"]
    assert db_results and all(r.status is Status.ERROR for r in db_results)
    assert outcome.results[-1].check == "log_errors"  # a failing extra check did not stop it
    assert seen == [T]
    assert outcome.status is Status.ERROR
    v = runner.view()
    assert v.database_up is False and v.database_error
    assert v.runs_completed == 1 and v.last_run is outcome
    assert v.check_errors_total["coverage"] == 1
    assert v.check_errors_total.get("log_errors", 0) == 0
    assert "log_errors" in v.last_success and "coverage" not in v.last_success


def test_t0_and_baseline_are_read_through_what_it_was_given(
    offline_config: Callable[..., Config],
) -> None:
    config = offline_config()
    t0 = datetime(2025, 10, 24, tzinfo=UTC)
    runner = Runner(
        config, Database(config.database), deployed_at=lambda: t0, baseline=lambda: None
    )
    assert runner.deployed_at() == t0
    assert runner.baseline() is None
    default = Runner(config, Database(config.database))
    assert default.deployed_at() == config.migration.deployed_at
    assert default.extra_checks == ()
