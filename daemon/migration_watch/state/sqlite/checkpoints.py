"""The ``log_sources``, ``log_files`` and ``log_counters`` tables on SQLite."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from ..encoding import dumps, from_ts, loads, ts
from ..models import LogCheckpoint, LogFileCheckpoint
from .connection import SqliteDatabase

__all__ = ["SqliteCheckpoints"]


class SqliteCheckpoints(SqliteDatabase):
    """Log sources' files and counters, saved together
    (:class:`~migration_watch.state.protocols.CheckpointStore`)."""

    def save_log_checkpoint(
        self,
        source: str,
        files: Sequence[LogFileCheckpoint],
        counters: Mapping[str, int | float],
        *,
        now: datetime | None = None,
    ) -> None:
        """Replace the source's file positions and set its counters, in one transaction.

        ``counters`` are absolute totals; counters not named keep their stored value.
        """
        stamp = ts(now if now is not None else self._wall())
        with self._write() as conn:
            conn.execute(
                "INSERT INTO log_sources (source, updated_at) VALUES (?, ?) "
                "ON CONFLICT (source) DO UPDATE SET updated_at = excluded.updated_at",
                (source, stamp),
            )
            conn.execute("DELETE FROM log_files WHERE source = ?", (source,))
            conn.executemany(
                'INSERT INTO log_files (source, seq, path, device, inode, fingerprint, "offset", '
                "extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        source,
                        seq,
                        f.path,
                        f.device,
                        f.inode,
                        f.fingerprint,
                        f.offset,
                        dumps(dict(f.extra)),
                    )
                    for seq, f in enumerate(files)
                ],
            )
            conn.executemany(
                "INSERT INTO log_counters (source, name, value) VALUES (?, ?, ?) "
                "ON CONFLICT (source, name) DO UPDATE SET value = excluded.value",
                [(source, name, value) for name, value in counters.items()],
            )

    def load_log_checkpoint(self, source: str) -> LogCheckpoint | None:
        return self._log_checkpoints(source).get(source)

    def log_checkpoints(self) -> dict[str, LogCheckpoint]:
        """Every source's checkpoint."""
        return self._log_checkpoints(None)

    def _log_checkpoints(self, only: str | None) -> dict[str, LogCheckpoint]:
        where, params = ("WHERE source = ?", (only,)) if only is not None else ("", ())
        with self._read() as conn:
            sources = conn.execute(
                f"SELECT source, updated_at FROM log_sources {where} ORDER BY source",  # noqa: S608
                params,
            ).fetchall()
            files = conn.execute(
                f"SELECT * FROM log_files {where} ORDER BY source, seq",  # noqa: S608
                params,
            ).fetchall()
            counters = conn.execute(
                f"SELECT source, name, value FROM log_counters {where} ORDER BY source, name",  # noqa: S608
                params,
            ).fetchall()
        out: dict[str, LogCheckpoint] = {}
        for s in sources:
            name = s["source"]
            out[name] = LogCheckpoint(
                source=name,
                files=tuple(
                    LogFileCheckpoint(
                        path=f["path"],
                        inode=f["inode"],
                        fingerprint=f["fingerprint"],
                        offset=f["offset"],
                        device=f["device"],
                        extra=loads(f["extra"]),
                    )
                    for f in files
                    if f["source"] == name
                ),
                counters={c["name"]: c["value"] for c in counters if c["source"] == name},
                updated_at=from_ts(s["updated_at"]),
            )
        return out
