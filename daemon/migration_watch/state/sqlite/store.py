"""The embedded default state store: every SQLite section on one file."""

from __future__ import annotations

from .alerts import SqliteAlerts
from .baseline import SqliteBaseline
from .checkpoints import SqliteCheckpoints
from .meta import SqliteMeta
from .runs import SqliteRuns

__all__ = ["SqliteStateStore"]


class SqliteStateStore(SqliteMeta, SqliteRuns, SqliteBaseline, SqliteAlerts, SqliteCheckpoints):
    """The embedded state store: one SQLite file (see :mod:`.connection`), implementing
    :class:`~migration_watch.state.protocols.StateStore`.

    Each section is a :class:`~.connection.SqliteDatabase` with that section's methods, so
    they all share this one file's writer, readers and transactions. Safe to share between
    threads. ``wall`` supplies bookkeeping timestamps (``updated_at``, ``recorded_at``) when
    the caller gives none. ``busy_timeout`` (seconds) lets a CLI read while the daemon writes.
    """
