"""Helpers for integration tests: a config for the sample app pointing at a test database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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


class Services:
    """Services built by a test, each stopped once at teardown (or by :meth:`stop`).

    ``services(cfg, start=True, clock=…, …)`` builds a :class:`Service` (``port=0`` unless
    given) and starts it when asked; ``services.restart(svc)`` stops it and builds the next one
    with the same configuration and arguments, as a restart of the process would (same state
    file, same clock).
    """

    def __init__(self) -> None:
        self._running: list[Any] = []
        self._args: dict[int, tuple[Config, dict[str, Any], bool]] = {}

    def __call__(self, config: Config, *, start: bool = False, **kwargs: Any) -> Any:
        from migration_watch.service import Service

        kwargs.setdefault("port", 0)
        svc = Service(config, **kwargs)
        self._running.append(svc)
        self._args[id(svc)] = (config, kwargs, start)
        if start:
            svc.start()
        return svc

    def stop(self, svc: Any) -> None:
        if svc in self._running:
            self._running.remove(svc)
            svc.stop()

    def restart(self, svc: Any, **changes: Any) -> Any:
        config, kwargs, start = self._args.pop(id(svc))
        self.stop(svc)
        start = changes.pop("start", start)
        return self(config, start=start, **{**kwargs, **changes})

    def stop_all(self) -> None:
        while self._running:
            self.stop(self._running[-1])


@pytest.fixture
def services() -> Iterator[Services]:
    """Build services for the test; every one still running is stopped afterwards."""
    made = Services()
    try:
        yield made
    finally:
        made.stop_all()
