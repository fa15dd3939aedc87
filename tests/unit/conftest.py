"""Fixtures of the unit tests: a log directory, a SQLite state store and a monotonic clock
for the ``file`` log follower tests (helpers in :mod:`tests.logs_support`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from migration_watch.state import SqliteStateStore
from tests.logs_support import Clock, close_opened


@pytest.fixture(autouse=True)
def _close_followers_and_appenders() -> Iterator[None]:
    yield
    close_opened()


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    return d


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStateStore]:
    s = SqliteStateStore(tmp_path / "state.sqlite")
    yield s
    s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()
