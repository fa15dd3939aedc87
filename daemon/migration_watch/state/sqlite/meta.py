"""The ``meta`` table on SQLite: free JSON values by key, and the deployment record."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..encoding import dumps, from_ts, loads, ts
from ..models import Deployment
from .connection import SqliteDatabase

__all__ = ["SqliteMeta"]


class SqliteMeta(SqliteDatabase):
    """Meta values and the deployment (:class:`~migration_watch.state.protocols.MetaStore`)."""

    def get_meta(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else loads(row["value"])

    def set_meta(self, key: str, value: Any) -> None:
        self.set_meta_many({key: value})

    def set_meta_many(self, items: Mapping[str, Any]) -> None:
        """Set several keys in one transaction (e.g. a snapshot and the counters from it)."""
        now = ts(self._wall())
        with self._write(durable=True) as conn:
            conn.executemany(
                "INSERT INTO meta (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                [(k, dumps(v), now) for k, v in items.items()],
            )

    def delete_meta(self, key: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM meta WHERE key = ?", (key,))

    def get_deployment(self) -> Deployment | None:
        """T0 and its source, as last persisted (e.g. by a deploy marker)."""
        value = self.get_meta("deployment")
        if not value:
            return None
        return Deployment(
            deployed_at=from_ts(value["deployed_at"]),
            source=value["source"],
            recorded_at=from_ts(value["recorded_at"]),
        )

    def set_deployment(
        self, deployed_at: datetime, source: str, *, recorded_at: datetime | None = None
    ) -> Deployment:
        recorded = recorded_at if recorded_at is not None else self._wall()
        value = {"deployed_at": ts(deployed_at), "source": source, "recorded_at": ts(recorded)}
        self.set_meta("deployment", value)
        return Deployment(from_ts(value["deployed_at"]), source, from_ts(value["recorded_at"]))
