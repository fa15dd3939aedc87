"""Unit-test fixtures: configurations that need no database (an unreachable DSN)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from migration_watch.config import Config, parse_config


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
