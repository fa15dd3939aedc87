"""Helpers for integration tests: a config for the sample app pointing at a test database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from migration_watch.config import Config, parse_config
from migration_watch.demo import sample


def sample_config_data(dsn: str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "database": {"dsn": dsn, "statement_timeout": "10s", "connect_timeout": "2s"},
        "migration": {
            "name": "customer-id-to-organization-id",
            "legacy_column": sample.LEGACY_COLUMN,
            "new_column": sample.NEW_COLUMN,
            "deployed_at": sample.DEPLOYED_AT.isoformat(),
            "tables": [
                {
                    "name": "conversations",
                    "created_at": "created_at",
                    "indexes": list(sample.EXPECTED_INDEXES["conversations"]),
                    "rls": True,
                },
                {
                    "name": "customer_configs",
                    "indexes": list(sample.EXPECTED_INDEXES["customer_configs"]),
                    "rls": True,
                },
                {
                    "name": "scraper_configs",
                    "required": False,
                    "indexes": list(sample.EXPECTED_INDEXES["scraper_configs"]),
                },
            ],
        },
        "http": {"listen": "127.0.0.1:0"},
    }
    for key, value in overrides.items():
        data[key] = value
    return data


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    def _make(dsn: str, **overrides: Any) -> Config:
        overrides.setdefault("state", {"path": str(tmp_path / "state.sqlite")})
        return parse_config(sample_config_data(dsn, **overrides), env={})

    return _make
