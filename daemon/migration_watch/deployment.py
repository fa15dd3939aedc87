"""The deployment time T0, resolved once and handed to everyone who reads it.

T0 comes from, in order of precedence, ``run --deployed-at`` (source ``cli``), a deploy marker
persisted in the state store (``POST /deployment``, ``mark-deployed``: source ``marker``) or
``migration.deployed_at`` (``config``). The service builds one :class:`DeploymentTime` first and
gives it (or its :meth:`DeploymentTime.deployed_at`) to the runner, the week and the log watch.
The store is read once and after each change, so scrapes and ``/health`` never query it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog

from .config import Config
from .state import Deployment as StoredDeployment
from .state import MetaStore

__all__ = ["Deployment", "DeploymentTime"]

log = structlog.get_logger(__name__)

_UNREAD = object()


@dataclass(frozen=True)
class Deployment:
    deployed_at: datetime
    source: str  # config | cli | marker


class DeploymentTime:
    """T0 as currently known; a deploy marker replaces a CLI or config T0."""

    def __init__(
        self, config: Config, store: MetaStore, *, cli_deployed_at: datetime | None = None
    ) -> None:
        self._config = config
        self._store = store
        self._cli = cli_deployed_at
        self._marker_cache: object = _UNREAD

    def _marker(self) -> StoredDeployment | None:
        if self._marker_cache is _UNREAD:
            self._marker_cache = self._store.get_deployment()
        return self._marker_cache  # type: ignore[return-value]

    def deployment(self) -> Deployment | None:
        if self._cli is not None:
            return Deployment(self._cli, "cli")
        marker = self._marker()
        if marker is not None:
            return Deployment(marker.deployed_at, marker.source)
        if self._config.migration.deployed_at is not None:
            return Deployment(self._config.migration.deployed_at, "config")
        return None

    def deployed_at(self) -> datetime | None:
        d = self.deployment()
        return None if d is None else d.deployed_at

    def mark(self, when: datetime, *, recorded_at: datetime) -> Deployment:
        """Persist a deploy marker at ``when``; from now on it is T0 (source ``marker``)."""
        self._store.set_deployment(when, "marker", recorded_at=recorded_at)
        self._marker_cache = _UNREAD
        self._cli = None
        log.info("deployment marked", deployed_at=when.isoformat())
        return Deployment(when, "marker")
