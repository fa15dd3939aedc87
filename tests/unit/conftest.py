"""Fixtures of the unit tests (no database):

- ``offline_config(**overrides)``: a valid :class:`Config` whose database is never reached;
- ``logdir``, ``store``, ``clock``: a log directory, a SQLite state store and a monotonic clock
  for the ``file`` log follower tests (helpers in :mod:`tests.logs_support`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from migration_watch.config import Config, parse_config
from migration_watch.state import SqliteStateStore
from tests.logs_support import Clock, close_opened


def offline_config_data(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """A valid configuration whose database is never reached (port 1, 1 s connect timeout)."""
    data: dict[str, Any] = {
        "database": {"dsn": "host=127.0.0.1 port=1 dbname=x", "connect_timeout": "1s"},
        "migration": {
            "name": "m",
            "legacy_column": "customer_id",
            "new_column": "organization_id",
            "deployed_at": "2025-10-23T09:00:00Z",
            "tables": [{"name": "conversations"}],
        },
        "http": {"listen": "127.0.0.1:0"},
        "state": {"path": str(tmp_path / "state.sqlite")},
    }
    data.update(overrides)
    return data


@pytest.fixture
def offline_config(tmp_path: Path) -> Callable[..., Config]:
    """``offline_config(**overrides)`` → a :class:`Config` (top-level keys replaced)."""

    def make(**overrides: Any) -> Config:
        return parse_config(offline_config_data(tmp_path, **overrides), env={})

    return make


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
