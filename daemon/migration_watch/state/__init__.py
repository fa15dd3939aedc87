"""The durable state store: run history, baseline, verdicts, alert state, outbox, log offsets.

:mod:`.protocols` holds the interfaces (a small one per section, :class:`StateStore` the
whole); :mod:`.models` the rows; :mod:`.sqlite` the embedded default backend
(:class:`SqliteStateStore`), and the contract tests run against every backend;
:mod:`.lock` the one-daemon-per-state-file lock.
"""

from .lock import DaemonLock
from .models import (
    AlertStateRow,
    Baseline,
    Deployment,
    LogCheckpoint,
    LogFileCheckpoint,
    OutboxItem,
    OutboxMessage,
    ProbeBaseline,
    RunRecord,
    StatementBaseline,
    StoredResult,
    VerdictRecord,
)
from .protocols import (
    AlertingStore,
    AlertStore,
    BaselineStore,
    CheckpointStore,
    LogWatchStore,
    MetaStore,
    RunStore,
    StateStore,
)
from .sqlite import APPLICATION_ID, SCHEMA_VERSION, SqliteStateStore

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "AlertStateRow",
    "AlertStore",
    "AlertingStore",
    "Baseline",
    "BaselineStore",
    "CheckpointStore",
    "DaemonLock",
    "Deployment",
    "LogCheckpoint",
    "LogFileCheckpoint",
    "LogWatchStore",
    "MetaStore",
    "OutboxItem",
    "OutboxMessage",
    "ProbeBaseline",
    "RunRecord",
    "RunStore",
    "SqliteStateStore",
    "StateStore",
    "StatementBaseline",
    "StoredResult",
    "VerdictRecord",
]
