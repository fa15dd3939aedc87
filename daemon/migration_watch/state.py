"""The durable state store: run history, baseline, verdicts, alert state, outbox, log offsets.

:class:`StateStore` is the interface (a Protocol, so a PostgreSQL store can come later and run
the same contract tests); :class:`SqliteStateStore` is the embedded default.

SQLite file
    WAL journal; one writer (a lock around a single write connection, ``BEGIN IMMEDIATE``);
    reads on a small pool of read-only connections (WAL readers never block the writer), each
    read in its own snapshot. Every method is safe to call from any thread. Commits that make a run
    count as done (and the deployment, baseline, verdict, alert transitions, enqueued
    notifications) run with ``synchronous=FULL``, i.e. fsynced; the frequent log checkpoints
    and outbox bookkeeping with ``NORMAL`` (atomic, and made durable by the next FULL commit).
    ``PRAGMA application_id`` marks the file as ours, ``PRAGMA user_version`` is the schema
    version, migrations are applied in order, each in one transaction. A file that is not an
    SQLite database, fails ``PRAGMA quick_check``, belongs to another application or has a
    newer schema version raises :class:`~migration_watch.errors.StateError` naming the file; it
    is never reset. Times are stored as ISO-8601 UTC text with microseconds (sortable), JSON as
    compact text.

Schema (version 1)
    meta(key PK, value JSON, updated_at)
        ``deployment`` = {deployed_at, source, recorded_at}; free keys for the rest
        (pg_stat_statements snapshot, ``statement_calls_total`` …).
    runs(id PK, planned_index NULL for extra, planned_at, started_at, finished_at NULL while
         running or if killed, state done|late|extra, delay_seconds, superseded JSON list of
         planned indices, status pass|fail|error|skipped NULL until finished)
        unique (planned_at) among finished runs: a planned run completes at most once. A run
        begun but never finished (killed) is not counted: ``completed_runs()`` omits it, so the
        cadence makes it due again.
    results(id PK, run_id → runs, check_name, subject, status, observed JSON, threshold JSON,
            details JSON, message, table_name, measured_at, duration_seconds)
        written in the same transaction that finishes the run.
    baseline(id = 1, recorded_at, details JSON)
    baseline_statements(queryid PK, query, mean_exec_seconds, calls)
    baseline_probes(name PK, median_seconds, timings JSON, plan JSON, details JSON)
    verdicts(id PK, computed_at, final 0|1, outcome, payload JSON)
    alerts(fingerprint PK, alertname, labels JSON, annotations JSON, state, active_since,
           fired_at, resolved_at, last_sent_at, last_evaluated_at, consecutive_failing,
           consecutive_passing, consecutive_errors, data JSON)
    outbox(id PK, idempotency_key UNIQUE, receiver, payload JSON, created_at, attempts,
           next_attempt_at, last_attempt_at, last_error, failed 0|1)
    log_sources(source PK, updated_at)
    log_files(source, seq, path, device, inode, fingerprint, offset, extra JSON; PK(source, seq))
    log_counters(source, name, value; PK(source, name))
        files and counters of a source are saved in one transaction (exactly-once counting).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

import structlog

from migration_watch.cadence import CompletedRun, RunState
from migration_watch.clock import utcnow
from migration_watch.errors import StateError
from migration_watch.results import Result, Status, overall_status

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "AlertStateRow",
    "Baseline",
    "DaemonLock",
    "Deployment",
    "LogCheckpoint",
    "LogFileCheckpoint",
    "OutboxItem",
    "OutboxMessage",
    "ProbeBaseline",
    "RunRecord",
    "SqliteStateStore",
    "StateStore",
    "StatementBaseline",
    "StoredResult",
    "VerdictRecord",
]

log = structlog.get_logger(__name__)

#: ``PRAGMA application_id`` of a migration-watch state file ("MWST").
APPLICATION_ID = 0x4D575354
#: The schema version this code writes (``PRAGMA user_version``).
SCHEMA_VERSION = 1
_SQLITE_MAGIC = b"SQLite format 3\x00"
_MAX_IDLE_READERS = 4
_RESTORE_HINT = (
    "restore it from a backup, or move it away to start afresh (it is never reset automatically)"
)
_RUN_STATES = frozenset({RunState.DONE.value, RunState.LATE.value, RunState.EXTRA.value})


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class Deployment:
    """T0 and where it came from (``config`` | ``cli`` | ``marker``)."""

    deployed_at: datetime
    source: str
    recorded_at: datetime


@dataclass(frozen=True)
class RunRecord:
    """One row of ``runs``. ``finished_at`` is None while running, or if the run was killed."""

    id: int
    planned_index: int | None
    planned_at: datetime | None
    started_at: datetime
    finished_at: datetime | None
    state: RunState
    delay_seconds: float
    superseded: tuple[int, ...]
    status: Status | None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


@dataclass(frozen=True)
class StoredResult:
    """A result with the run it belongs to, for per-check history."""

    run_id: int
    run_state: RunState
    planned_index: int | None
    run_started_at: datetime
    result: Result


@dataclass(frozen=True)
class StatementBaseline:
    """Pre-deploy mean execution time of one pg_stat_statements entry."""

    queryid: int
    query: str
    mean_exec_seconds: float
    calls: int


@dataclass(frozen=True)
class ProbeBaseline:
    """Pre-deploy timings and plan of one configured probe query."""

    name: str
    median_seconds: float
    timings: tuple[float, ...] = ()
    plan: Any = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Baseline:
    """The whole baseline; saving one replaces the previous one."""

    recorded_at: datetime
    statements: tuple[StatementBaseline, ...] = ()
    probes: tuple[ProbeBaseline, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    def statement(self, queryid: int) -> StatementBaseline | None:
        return next((s for s in self.statements if s.queryid == queryid), None)

    def probe(self, name: str) -> ProbeBaseline | None:
        return next((p for p in self.probes if p.name == name), None)


@dataclass(frozen=True)
class VerdictRecord:
    """A verdict as computed at ``computed_at``; ``final`` once the week is over.

    ``outcome`` and ``payload`` (criteria, evidence) are the verdict module's to define.
    """

    computed_at: datetime
    final: bool
    outcome: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None


@dataclass(frozen=True)
class AlertStateRow:
    """Persisted state of one alert (identity: ``fingerprint``).

    ``state`` is the alerting module's vocabulary (inactive, pending, firing, resolved);
    ``data`` is free-form for whatever else it needs to survive a restart.
    """

    fingerprint: str
    alertname: str
    labels: Mapping[str, str]
    state: str
    annotations: Mapping[str, str] = field(default_factory=dict)
    active_since: datetime | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    last_sent_at: datetime | None = None
    last_evaluated_at: datetime | None = None
    consecutive_failing: int = 0
    consecutive_passing: int = 0
    consecutive_errors: int = 0
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboxMessage:
    """A notification to enqueue; ``idempotency_key`` is the stable ``webhook-id``."""

    idempotency_key: str
    receiver: str
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class OutboxItem:
    """A notification in the outbox, deleted after a 2xx; ``failed`` = permanent failure."""

    id: int
    idempotency_key: str
    receiver: str
    payload: Mapping[str, Any]
    created_at: datetime
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_error: str | None
    failed: bool


@dataclass(frozen=True)
class LogFileCheckpoint:
    """Where the follower is in one file: identity (device, inode, fingerprint) and offset."""

    path: str
    inode: int
    fingerprint: str
    offset: int
    device: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LogCheckpoint:
    """A source's files and the counters they produced, saved and loaded together."""

    source: str
    files: tuple[LogFileCheckpoint, ...]
    counters: Mapping[str, int | float]
    updated_at: datetime


# --------------------------------------------------------------------------- interface


@runtime_checkable
class StateStore(Protocol):
    """What the daemon needs from a state store. Every method raises ``StateError`` on failure.

    Times passed in must be timezone-aware; times returned are aware UTC.
    """

    @property
    def location(self) -> str:
        """Where the state lives (a path or a redacted DSN), for messages and ``/health``."""
        ...

    def close(self) -> None: ...

    # meta
    def get_meta(self, key: str, default: Any = None) -> Any: ...
    def set_meta(self, key: str, value: Any) -> None: ...
    def set_meta_many(self, items: Mapping[str, Any]) -> None: ...
    def delete_meta(self, key: str) -> None: ...
    def get_deployment(self) -> Deployment | None: ...
    def set_deployment(
        self, deployed_at: datetime, source: str, *, recorded_at: datetime | None = None
    ) -> Deployment: ...

    # runs and results
    def begin_run(
        self,
        *,
        state: RunState | str,
        started_at: datetime,
        planned_index: int | None = None,
        planned_at: datetime | None = None,
        delay_seconds: float = 0.0,
        superseded: Sequence[int] = (),
    ) -> int: ...
    def finish_run(
        self,
        run_id: int,
        results: Sequence[Result],
        *,
        finished_at: datetime,
        status: Status | None = None,
    ) -> RunRecord: ...
    def get_run(self, run_id: int) -> RunRecord | None: ...
    def completed_runs(self) -> dict[int, CompletedRun]: ...
    def extra_runs(self) -> list[datetime]: ...
    def unfinished_runs(self) -> list[RunRecord]: ...
    def run_history(self, *, limit: int | None = None) -> list[RunRecord]: ...
    def results_for_run(self, run_id: int) -> list[Result]: ...
    def result_history(
        self,
        check: str | None = None,
        *,
        subject: str | None = None,
        since: datetime | None = None,
    ) -> list[StoredResult]: ...

    # baseline and verdict
    def save_baseline(self, baseline: Baseline) -> None: ...
    def load_baseline(self) -> Baseline | None: ...
    def save_verdict(self, verdict: VerdictRecord) -> VerdictRecord: ...
    def load_verdict(self, *, final_only: bool = False) -> VerdictRecord | None: ...

    # alerts and outbox
    def get_alert(self, fingerprint: str) -> AlertStateRow | None: ...
    def list_alerts(self, states: Collection[str] | None = None) -> list[AlertStateRow]: ...
    def put_alert(
        self,
        row: AlertStateRow,
        *,
        enqueue: Sequence[OutboxMessage] = (),
        now: datetime | None = None,
    ) -> list[OutboxItem]: ...
    def delete_alert(self, fingerprint: str) -> bool: ...
    def outbox_enqueue(self, message: OutboxMessage, *, now: datetime) -> OutboxItem: ...
    def outbox_due(
        self,
        now: datetime,
        *,
        receiver: str | None = None,
        limit: int | None = None,
        in_order: bool = True,
    ) -> list[OutboxItem]: ...
    def outbox_list(self, *, include_failed: bool = True) -> list[OutboxItem]: ...
    def outbox_get(self, item_id: int) -> OutboxItem | None: ...
    def outbox_mark_attempt(
        self, item_id: int, *, at: datetime, error: str | None, next_attempt_at: datetime
    ) -> None: ...
    def outbox_mark_failed(self, item_id: int, *, at: datetime, error: str) -> None: ...
    def outbox_delete(self, item_id: int) -> bool: ...
    def outbox_size(self, *, include_failed: bool = False) -> int: ...
    def outbox_oldest_age(self, now: datetime) -> timedelta | None: ...

    # logs
    def save_log_checkpoint(
        self,
        source: str,
        files: Sequence[LogFileCheckpoint],
        counters: Mapping[str, int | float],
        *,
        now: datetime | None = None,
    ) -> None: ...
    def load_log_checkpoint(self, source: str) -> LogCheckpoint | None: ...
    def log_checkpoints(self) -> dict[str, LogCheckpoint]: ...


# --------------------------------------------------------------------------- encoding


def _ts(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise StateError(f"naive datetime {value.isoformat()} given to the state store")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ts_opt(value: datetime | None) -> str | None:
    return None if value is None else _ts(value)


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _dt_opt(text: str | None) -> datetime | None:
    return None if text is None else _dt(text)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# --------------------------------------------------------------------------- migrations

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # version 1
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL)",
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            planned_index INTEGER,
            planned_at TEXT,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            state TEXT NOT NULL CHECK (state IN ('done', 'late', 'extra')),
            delay_seconds REAL NOT NULL DEFAULT 0,
            superseded TEXT NOT NULL DEFAULT '[]',
            status TEXT,
            CHECK ((state = 'extra') = (planned_index IS NULL)),
            CHECK ((state = 'extra') = (planned_at IS NULL))
        )""",
        """CREATE UNIQUE INDEX runs_planned_once ON runs (planned_at)
            WHERE finished_at IS NOT NULL AND planned_at IS NOT NULL""",
        """CREATE TABLE results (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            check_name TEXT NOT NULL,
            subject TEXT NOT NULL,
            status TEXT NOT NULL,
            observed TEXT NOT NULL,
            threshold TEXT NOT NULL,
            details TEXT NOT NULL,
            message TEXT NOT NULL,
            table_name TEXT,
            measured_at TEXT,
            duration_seconds REAL NOT NULL
        )""",
        "CREATE INDEX results_by_run ON results (run_id)",
        "CREATE INDEX results_by_check ON results (check_name, subject, run_id)",
        """CREATE TABLE baseline (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            recorded_at TEXT NOT NULL,
            details TEXT NOT NULL
        )""",
        """CREATE TABLE baseline_statements (
            queryid INTEGER PRIMARY KEY,
            query TEXT NOT NULL,
            mean_exec_seconds REAL NOT NULL,
            calls INTEGER NOT NULL
        )""",
        """CREATE TABLE baseline_probes (
            name TEXT PRIMARY KEY,
            median_seconds REAL NOT NULL,
            timings TEXT NOT NULL,
            plan TEXT NOT NULL,
            details TEXT NOT NULL
        )""",
        """CREATE TABLE verdicts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            computed_at TEXT NOT NULL,
            final INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            payload TEXT NOT NULL
        )""",
        """CREATE TABLE alerts (
            fingerprint TEXT PRIMARY KEY,
            alertname TEXT NOT NULL,
            labels TEXT NOT NULL,
            annotations TEXT NOT NULL,
            state TEXT NOT NULL,
            active_since TEXT,
            fired_at TEXT,
            resolved_at TEXT,
            last_sent_at TEXT,
            last_evaluated_at TEXT,
            consecutive_failing INTEGER NOT NULL DEFAULT 0,
            consecutive_passing INTEGER NOT NULL DEFAULT 0,
            consecutive_errors INTEGER NOT NULL DEFAULT 0,
            data TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            idempotency_key TEXT NOT NULL UNIQUE,
            receiver TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_attempt_at TEXT,
            last_error TEXT,
            failed INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX outbox_pending ON outbox (failed, receiver, id)",
        "CREATE TABLE log_sources (source TEXT PRIMARY KEY, updated_at TEXT NOT NULL)",
        """CREATE TABLE log_files (
            source TEXT NOT NULL REFERENCES log_sources (source) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            path TEXT NOT NULL,
            device INTEGER NOT NULL,
            inode INTEGER NOT NULL,
            fingerprint TEXT NOT NULL,
            "offset" INTEGER NOT NULL,
            extra TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (source, seq)
        )""",
        """CREATE TABLE log_counters (
            source TEXT NOT NULL REFERENCES log_sources (source) ON DELETE CASCADE,
            name TEXT NOT NULL,
            value NUMERIC NOT NULL,
            PRIMARY KEY (source, name)
        )""",
    ),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION, "one migration per schema version"

_RUN_COLUMNS = (
    "id, planned_index, planned_at, started_at, finished_at, state, delay_seconds, "
    "superseded, status"
)
_OUTBOX_COLUMNS = (
    "id, idempotency_key, receiver, payload, created_at, attempts, next_attempt_at, "
    "last_attempt_at, last_error, failed"
)
_ALERT_COLUMNS = (
    "fingerprint, alertname, labels, annotations, state, active_since, fired_at, resolved_at, "
    "last_sent_at, last_evaluated_at, consecutive_failing, consecutive_passing, "
    "consecutive_errors, data"
)


def _run_row(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        id=row["id"],
        planned_index=row["planned_index"],
        planned_at=_dt_opt(row["planned_at"]),
        started_at=_dt(row["started_at"]),
        finished_at=_dt_opt(row["finished_at"]),
        state=RunState(row["state"]),
        delay_seconds=row["delay_seconds"],
        superseded=tuple(_loads(row["superseded"])),
        status=Status(row["status"]) if row["status"] is not None else None,
    )


def _result_row(row: sqlite3.Row) -> Result:
    return Result(
        check=row["check_name"],
        subject=row["subject"],
        status=Status(row["status"]),
        observed=_loads(row["observed"]),
        threshold=_loads(row["threshold"]),
        details=_loads(row["details"]),
        message=row["message"],
        table=row["table_name"],
        measured_at=_dt_opt(row["measured_at"]),
        duration_seconds=row["duration_seconds"],
    )


def _outbox_row(row: sqlite3.Row) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        idempotency_key=row["idempotency_key"],
        receiver=row["receiver"],
        payload=_loads(row["payload"]),
        created_at=_dt(row["created_at"]),
        attempts=row["attempts"],
        next_attempt_at=_dt(row["next_attempt_at"]),
        last_attempt_at=_dt_opt(row["last_attempt_at"]),
        last_error=row["last_error"],
        failed=bool(row["failed"]),
    )


def _alert_row(row: sqlite3.Row) -> AlertStateRow:
    return AlertStateRow(
        fingerprint=row["fingerprint"],
        alertname=row["alertname"],
        labels=_loads(row["labels"]),
        state=row["state"],
        annotations=_loads(row["annotations"]),
        active_since=_dt_opt(row["active_since"]),
        fired_at=_dt_opt(row["fired_at"]),
        resolved_at=_dt_opt(row["resolved_at"]),
        last_sent_at=_dt_opt(row["last_sent_at"]),
        last_evaluated_at=_dt_opt(row["last_evaluated_at"]),
        consecutive_failing=row["consecutive_failing"],
        consecutive_passing=row["consecutive_passing"],
        consecutive_errors=row["consecutive_errors"],
        data=_loads(row["data"]),
    )


# --------------------------------------------------------------------------- SQLite store


class SqliteStateStore:
    """The embedded state store: one SQLite file (see the module docstring).

    Safe to share between threads. ``now`` supplies bookkeeping timestamps (``updated_at``,
    ``recorded_at``) when the caller gives none. ``busy_timeout`` (seconds) lets a CLI read
    while the daemon writes.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        wall: Callable[[], datetime] = utcnow,
        busy_timeout: float = 10.0,
    ) -> None:
        self.path = Path(path)
        self._wall = wall
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._writer = self._open()

    # -- lifecycle

    @property
    def location(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"SqliteStateStore({str(self.path)!r})"

    def __enter__(self) -> SqliteStateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with self._readers_lock:
                readers, self._readers = self._readers, []
            for conn in readers:
                conn.close()
            self._writer.close()

    @property
    def schema_version(self) -> int:
        with self._read() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def _fail(self, what: str, exc: BaseException | None = None, hint: str = "") -> StateError:
        detail = f": {exc}" if exc is not None else ""
        advice = f"; {hint}" if hint else ""
        return StateError(f"state file {self.path}: {what}{detail}{advice}")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._fail("cannot create its directory", exc) from exc
        self._check_header()
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise self._fail("cannot open", exc) from exc
        try:
            self._check_integrity(conn)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise self._fail(f"cannot switch to WAL mode (journal_mode is {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            hint = "" if isinstance(exc, sqlite3.OperationalError) else _RESTORE_HINT
            raise self._fail("is unusable", exc, hint) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_header(self) -> None:
        try:
            with self.path.open("rb") as fh:
                header = fh.read(len(_SQLITE_MAGIC))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._fail("cannot be read", exc) from exc
        if header and header != _SQLITE_MAGIC:
            raise self._fail("is not an SQLite database", hint=_RESTORE_HINT)

    def _check_integrity(self, conn: sqlite3.Connection) -> None:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
        if rows != ["ok"]:
            problems = "; ".join(map(str, rows[:5]))
            raise self._fail(f"failed PRAGMA quick_check ({problems})", hint=_RESTORE_HINT)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id not in (0, APPLICATION_ID):
            raise self._fail(
                f"belongs to another application (application_id {app_id:#x})",
                hint="point state.path elsewhere",
            )
        if version > SCHEMA_VERSION:
            raise self._fail(
                f"has schema version {version}, newer than this migration-watch supports "
                f"({SCHEMA_VERSION}); upgrade migration-watch"
            )
        if version == 0 and app_id == 0:
            tables = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
            ).fetchone()[0]
            if tables:
                raise self._fail(
                    "is an SQLite database but not a migration-watch state file",
                    hint="point state.path elsewhere",
                )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        while True:
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                if version >= SCHEMA_VERSION:
                    conn.execute("COMMIT")
                    return
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {version + 1}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            log.info("state_migrated", path=str(self.path), schema_version=version + 1)

    @contextmanager
    def _write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction under the writer lock; ``durable`` commits with FULL sync."""
        with self._lock:
            if self._closed:
                raise self._fail("the store is closed")
            conn = self._writer
            try:
                if durable:
                    conn.execute("PRAGMA synchronous = FULL")
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise self._fail("write failed", exc) from exc
            finally:
                if durable:
                    try:
                        conn.execute("PRAGMA synchronous = NORMAL")
                    except sqlite3.Error:  # pragma: no cover - closed underneath us
                        pass

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot on a pooled read connection (WAL: readers never block the
        writer). Idle readers are kept up to ``_MAX_IDLE_READERS``; the rest are closed, so
        short-lived threads (one per HTTP request) do not leak connections."""
        with self._readers_lock:
            if self._closed:
                raise self._fail("the store is closed")
            conn = self._readers.pop() if self._readers else None
        try:
            if conn is None:
                conn = self._connect()
                conn.execute("PRAGMA query_only = ON")
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise self._fail("read failed", exc) from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        with self._readers_lock:
            if self._closed or len(self._readers) >= _MAX_IDLE_READERS:
                conn.close()
            else:
                self._readers.append(conn)

    # -- meta

    def get_meta(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else _loads(row["value"])

    def set_meta(self, key: str, value: Any) -> None:
        self.set_meta_many({key: value})

    def set_meta_many(self, items: Mapping[str, Any]) -> None:
        """Set several keys in one transaction (e.g. a snapshot and the counters from it)."""
        now = _ts(self._wall())
        with self._write(durable=True) as conn:
            conn.executemany(
                "INSERT INTO meta (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                [(k, _dumps(v), now) for k, v in items.items()],
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
            deployed_at=_dt(value["deployed_at"]),
            source=value["source"],
            recorded_at=_dt(value["recorded_at"]),
        )

    def set_deployment(
        self, deployed_at: datetime, source: str, *, recorded_at: datetime | None = None
    ) -> Deployment:
        recorded = recorded_at if recorded_at is not None else self._wall()
        value = {"deployed_at": _ts(deployed_at), "source": source, "recorded_at": _ts(recorded)}
        self.set_meta("deployment", value)
        return Deployment(_dt(value["deployed_at"]), source, _dt(value["recorded_at"]))

    # -- runs and results

    def begin_run(
        self,
        *,
        state: RunState | str,
        started_at: datetime,
        planned_index: int | None = None,
        planned_at: datetime | None = None,
        delay_seconds: float = 0.0,
        superseded: Sequence[int] = (),
    ) -> int:
        """Record that a run started; returns its id. It counts as done only after
        :meth:`finish_run`. A planned index that already completed raises ``StateError``."""
        state = RunState(state)
        if state.value not in _RUN_STATES:
            raise ValueError(f"a run cannot start in state {state.value!r}")
        if (state is RunState.EXTRA) != (planned_index is None) or (planned_index is None) != (
            planned_at is None
        ):
            raise ValueError("extra runs have no planned index or time; planned runs need both")
        with self._write() as conn:
            if planned_at is not None:
                self._ensure_not_completed(conn, _ts(planned_at))
            cursor = conn.execute(
                "INSERT INTO runs (planned_index, planned_at, started_at, state, delay_seconds, "
                "superseded) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    planned_index,
                    _ts_opt(planned_at),
                    _ts(started_at),
                    state.value,
                    float(delay_seconds),
                    _dumps(sorted(superseded)),
                ),
            )
            run_id = cursor.lastrowid
        assert run_id is not None, "sqlite sets lastrowid after an INSERT"
        return run_id

    def _ensure_not_completed(self, conn: sqlite3.Connection, planned_at: str) -> None:
        row = conn.execute(
            "SELECT id, planned_index FROM runs WHERE planned_at = ? AND finished_at IS NOT NULL",
            (planned_at,),
        ).fetchone()
        if row is not None:
            raise self._fail(
                f"planned run {row['planned_index']} ({planned_at}) already ran (run {row['id']})"
            )

    def finish_run(
        self,
        run_id: int,
        results: Sequence[Result],
        *,
        finished_at: datetime,
        status: Status | None = None,
    ) -> RunRecord:
        """Store the run's results and mark it finished, in one fsynced transaction.

        ``status`` defaults to :func:`~migration_watch.results.overall_status` of the results.
        """
        final = status if status is not None else overall_status(results)
        with self._write(durable=True) as conn:
            row = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?",  # noqa: S608 - constant columns
                (run_id,),
            ).fetchone()
            if row is None:
                raise self._fail(f"no run with id {run_id}")
            if row["finished_at"] is not None:
                raise self._fail(f"run {run_id} is already finished")
            if row["planned_at"] is not None:
                self._ensure_not_completed(conn, row["planned_at"])
            conn.executemany(
                "INSERT INTO results (run_id, check_name, subject, status, observed, threshold, "
                "details, message, table_name, measured_at, duration_seconds) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        run_id,
                        r.check,
                        r.subject,
                        Status(r.status).value,
                        _dumps(dict(r.observed)),
                        _dumps(r.threshold),
                        _dumps(dict(r.details)),
                        r.message,
                        r.table,
                        _ts_opt(r.measured_at),
                        float(r.duration_seconds),
                    )
                    for r in results
                ],
            )
            conn.execute(
                "UPDATE runs SET finished_at = ?, status = ? WHERE id = ?",
                (_ts(finished_at), Status(final).value, run_id),
            )
            updated = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?",  # noqa: S608 - constant columns
                (run_id,),
            ).fetchone()
        return _run_row(updated)

    def get_run(self, run_id: int) -> RunRecord | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?",  # noqa: S608 - constant columns
                (run_id,),
            ).fetchone()
        return None if row is None else _run_row(row)

    def completed_runs(self) -> dict[int, CompletedRun]:
        """Finished planned runs by planned index: what :class:`~migration_watch.cadence.Schedule`
        needs. ``ran_at`` is the run's start time; for an index recorded under two cadences
        (phases changed mid-week) the newest record wins."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT planned_index, planned_at, state, started_at FROM runs "
                "WHERE finished_at IS NOT NULL AND planned_index IS NOT NULL ORDER BY id"
            ).fetchall()
        return {
            r["planned_index"]: CompletedRun(
                RunState(r["state"]), _dt(r["started_at"]), _dt(r["planned_at"])
            )
            for r in rows
        }

    def extra_runs(self) -> list[datetime]:
        """Start times of the finished extra (on-demand) runs, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT started_at FROM runs WHERE state = 'extra' AND finished_at IS NOT NULL "
                "ORDER BY id"
            ).fetchall()
        return [_dt(r["started_at"]) for r in rows]

    def unfinished_runs(self) -> list[RunRecord]:
        """Runs begun but never finished (running now, or killed)."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE finished_at IS NULL "  # noqa: S608
                "ORDER BY id"
            ).fetchall()
        return [_run_row(r) for r in rows]

    def run_history(self, *, limit: int | None = None) -> list[RunRecord]:
        """Every run (finished or not), oldest first; ``limit`` keeps the newest N."""
        query = f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY id DESC"  # noqa: S608
        params: tuple[int, ...] = ()
        if limit is not None:
            query += " LIMIT ?"
            params = (limit,)
        with self._read() as conn:
            rows = conn.execute(query, params).fetchall()
        return [_run_row(r) for r in reversed(rows)]

    def results_for_run(self, run_id: int) -> list[Result]:
        """The results of one run, in the order they were given."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT * FROM results WHERE run_id = ? ORDER BY id", (run_id,)
            ).fetchall()
        return [_result_row(r) for r in rows]

    def result_history(
        self,
        check: str | None = None,
        *,
        subject: str | None = None,
        since: datetime | None = None,
    ) -> list[StoredResult]:
        """Results of finished runs over time (oldest first), optionally for one check,
        one subject, and runs started at or after ``since``."""
        query = (
            "SELECT r.*, runs.state AS run_state, runs.planned_index AS run_planned_index, "
            "runs.started_at AS run_started_at FROM results r JOIN runs ON runs.id = r.run_id "
            "WHERE runs.finished_at IS NOT NULL"
        )
        params: list[Any] = []
        if check is not None:
            query += " AND r.check_name = ?"
            params.append(check)
        if subject is not None:
            query += " AND r.subject = ?"
            params.append(subject)
        if since is not None:
            query += " AND runs.started_at >= ?"
            params.append(_ts(since))
        query += " ORDER BY r.run_id, r.id"
        with self._read() as conn:
            rows = conn.execute(query, params).fetchall()
        return [
            StoredResult(
                run_id=r["run_id"],
                run_state=RunState(r["run_state"]),
                planned_index=r["run_planned_index"],
                run_started_at=_dt(r["run_started_at"]),
                result=_result_row(r),
            )
            for r in rows
        ]

    # -- baseline and verdict

    def save_baseline(self, baseline: Baseline) -> None:
        """Replace the stored baseline with ``baseline`` (one transaction)."""
        with self._write(durable=True) as conn:
            conn.execute("DELETE FROM baseline_statements")
            conn.execute("DELETE FROM baseline_probes")
            conn.execute(
                "INSERT INTO baseline (id, recorded_at, details) VALUES (1, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET recorded_at = excluded.recorded_at, "
                "details = excluded.details",
                (_ts(baseline.recorded_at), _dumps(dict(baseline.details))),
            )
            conn.executemany(
                "INSERT INTO baseline_statements (queryid, query, mean_exec_seconds, calls) "
                "VALUES (?, ?, ?, ?)",
                [(s.queryid, s.query, s.mean_exec_seconds, s.calls) for s in baseline.statements],
            )
            conn.executemany(
                "INSERT INTO baseline_probes (name, median_seconds, timings, plan, details) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        p.name,
                        p.median_seconds,
                        _dumps(list(p.timings)),
                        _dumps(p.plan),
                        _dumps(dict(p.details)),
                    )
                    for p in baseline.probes
                ],
            )

    def load_baseline(self) -> Baseline | None:
        with self._read() as conn:
            head = conn.execute("SELECT recorded_at, details FROM baseline").fetchone()
            if head is None:
                return None
            statements = conn.execute(
                "SELECT * FROM baseline_statements ORDER BY queryid"
            ).fetchall()
            probes = conn.execute("SELECT * FROM baseline_probes ORDER BY name").fetchall()
        return Baseline(
            recorded_at=_dt(head["recorded_at"]),
            statements=tuple(
                StatementBaseline(s["queryid"], s["query"], s["mean_exec_seconds"], s["calls"])
                for s in statements
            ),
            probes=tuple(
                ProbeBaseline(
                    name=p["name"],
                    median_seconds=p["median_seconds"],
                    timings=tuple(_loads(p["timings"])),
                    plan=_loads(p["plan"]),
                    details=_loads(p["details"]),
                )
                for p in probes
            ),
            details=_loads(head["details"]),
        )

    def save_verdict(self, verdict: VerdictRecord) -> VerdictRecord:
        """Append a verdict (provisional or final); returns it with its id."""
        with self._write(durable=True) as conn:
            cursor = conn.execute(
                "INSERT INTO verdicts (computed_at, final, outcome, payload) VALUES (?, ?, ?, ?)",
                (
                    _ts(verdict.computed_at),
                    int(verdict.final),
                    verdict.outcome,
                    _dumps(dict(verdict.payload)),
                ),
            )
            new_id = cursor.lastrowid
        return VerdictRecord(
            computed_at=_dt(_ts(verdict.computed_at)),
            final=verdict.final,
            outcome=verdict.outcome,
            payload=verdict.payload,
            id=new_id,
        )

    def load_verdict(self, *, final_only: bool = False) -> VerdictRecord | None:
        """The latest verdict (or the latest final one)."""
        query = "SELECT * FROM verdicts"
        if final_only:
            query += " WHERE final = 1"
        query += " ORDER BY id DESC LIMIT 1"
        with self._read() as conn:
            row = conn.execute(query).fetchone()
        if row is None:
            return None
        return VerdictRecord(
            computed_at=_dt(row["computed_at"]),
            final=bool(row["final"]),
            outcome=row["outcome"],
            payload=_loads(row["payload"]),
            id=row["id"],
        )

    # -- alerts

    def get_alert(self, fingerprint: str) -> AlertStateRow | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE fingerprint = ?",  # noqa: S608
                (fingerprint,),
            ).fetchone()
        return None if row is None else _alert_row(row)

    def list_alerts(self, states: Collection[str] | None = None) -> list[AlertStateRow]:
        """Every alert (or those in ``states``), by alert name then fingerprint."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts ORDER BY alertname, fingerprint"  # noqa: S608
            ).fetchall()
        alerts = [_alert_row(r) for r in rows]
        return alerts if states is None else [a for a in alerts if a.state in states]

    def put_alert(
        self,
        row: AlertStateRow,
        *,
        enqueue: Sequence[OutboxMessage] = (),
        now: datetime | None = None,
    ) -> list[OutboxItem]:
        """Insert or replace an alert's state and enqueue its notifications, atomically.

        Returns the outbox items (an idempotency key already present is not enqueued again).
        """
        created = now if now is not None else self._wall()
        with self._write(durable=bool(enqueue)) as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO alerts ({_ALERT_COLUMNS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.fingerprint,
                    row.alertname,
                    _dumps(dict(row.labels)),
                    _dumps(dict(row.annotations)),
                    row.state,
                    _ts_opt(row.active_since),
                    _ts_opt(row.fired_at),
                    _ts_opt(row.resolved_at),
                    _ts_opt(row.last_sent_at),
                    _ts_opt(row.last_evaluated_at),
                    row.consecutive_failing,
                    row.consecutive_passing,
                    row.consecutive_errors,
                    _dumps(dict(row.data)),
                ),
            )
            return [self._enqueue(conn, m, created) for m in enqueue]

    def delete_alert(self, fingerprint: str) -> bool:
        with self._write() as conn:
            cursor = conn.execute("DELETE FROM alerts WHERE fingerprint = ?", (fingerprint,))
            return cursor.rowcount > 0

    # -- outbox

    def _enqueue(
        self, conn: sqlite3.Connection, message: OutboxMessage, now: datetime
    ) -> OutboxItem:
        stamp = _ts(now)
        conn.execute(
            "INSERT INTO outbox (idempotency_key, receiver, payload, created_at, next_attempt_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
            (
                message.idempotency_key,
                message.receiver,
                _dumps(dict(message.payload)),
                stamp,
                stamp,
            ),
        )
        row = conn.execute(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE idempotency_key = ?",  # noqa: S608
            (message.idempotency_key,),
        ).fetchone()
        return _outbox_row(row)

    def outbox_enqueue(self, message: OutboxMessage, *, now: datetime) -> OutboxItem:
        """Durably enqueue a notification, due at ``now``. Idempotent on the key."""
        with self._write(durable=True) as conn:
            return self._enqueue(conn, message, now)

    def outbox_due(
        self,
        now: datetime,
        *,
        receiver: str | None = None,
        limit: int | None = None,
        in_order: bool = True,
    ) -> list[OutboxItem]:
        """Pending items whose ``next_attempt_at`` has come, oldest first.

        ``in_order``: per receiver, stop at the first item not yet due, so a receiver never
        gets a newer notification before an older one that is backing off.
        """
        query = f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE failed = 0"  # noqa: S608
        params: list[Any] = []
        if receiver is not None:
            query += " AND receiver = ?"
            params.append(receiver)
        query += " ORDER BY id"
        with self._read() as conn:
            rows = conn.execute(query, params).fetchall()
        cutoff = _ts(now)
        blocked: set[str] = set()
        due: list[OutboxItem] = []
        for row in rows:
            if row["receiver"] in blocked:
                continue
            if row["next_attempt_at"] <= cutoff:
                due.append(_outbox_row(row))
                if limit is not None and len(due) >= limit:
                    break
            elif in_order:
                blocked.add(row["receiver"])
        return due

    def outbox_list(self, *, include_failed: bool = True) -> list[OutboxItem]:
        """Every item (pending, and permanently failed unless excluded), oldest first."""
        query = f"SELECT {_OUTBOX_COLUMNS} FROM outbox"  # noqa: S608
        if not include_failed:
            query += " WHERE failed = 0"
        with self._read() as conn:
            rows = conn.execute(query + " ORDER BY id").fetchall()
        return [_outbox_row(r) for r in rows]

    def outbox_get(self, item_id: int) -> OutboxItem | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE id = ?",  # noqa: S608
                (item_id,),
            ).fetchone()
        return None if row is None else _outbox_row(row)

    def outbox_mark_attempt(
        self, item_id: int, *, at: datetime, error: str | None, next_attempt_at: datetime
    ) -> None:
        """Count a failed (retryable) attempt and schedule the next one."""
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_attempt_at = ?, last_error = ?, "
                "next_attempt_at = ? WHERE id = ?",
                (_ts(at), error, _ts(next_attempt_at), item_id),
            )

    def outbox_mark_failed(self, item_id: int, *, at: datetime, error: str) -> None:
        """A permanent failure: kept (visible in ``/health``) but never retried."""
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_attempt_at = ?, last_error = ?, "
                "failed = 1 WHERE id = ?",
                (_ts(at), error, item_id),
            )

    def outbox_delete(self, item_id: int) -> bool:
        """Remove a delivered item; False if it was not there."""
        with self._write() as conn:
            return conn.execute("DELETE FROM outbox WHERE id = ?", (item_id,)).rowcount > 0

    def outbox_size(self, *, include_failed: bool = False) -> int:
        query = (
            "SELECT count(*) FROM outbox"
            if include_failed
            else "SELECT count(*) FROM outbox WHERE failed = 0"
        )
        with self._read() as conn:
            return int(conn.execute(query).fetchone()[0])

    def outbox_oldest_age(self, now: datetime) -> timedelta | None:
        """Age of the oldest pending item; None when the outbox is empty."""
        with self._read() as conn:
            oldest = conn.execute("SELECT min(created_at) FROM outbox WHERE failed = 0").fetchone()[
                0
            ]
        return None if oldest is None else now - _dt(oldest)

    # -- logs

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
        stamp = _ts(now if now is not None else self._wall())
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
                        _dumps(dict(f.extra)),
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
                        extra=_loads(f["extra"]),
                    )
                    for f in files
                    if f["source"] == name
                ),
                counters={c["name"]: c["value"] for c in counters if c["source"] == name},
                updated_at=_dt(s["updated_at"]),
            )
        return out


class DaemonLock:
    """One daemon per state file: an exclusive ``flock`` on ``<state path>.lock``.

    Two daemons on one state file would run the cadence twice and count every log line
    twice. The kernel drops the lock when the process ends, SIGKILL included, so a stale lock
    file never blocks a restart. The file holds the owner's pid (for the error message).
    CLI commands that only read or write the store (``schedule``, ``report``,
    ``mark-deployed``…) do not take it.
    """

    def __init__(self, state_path: str | Path) -> None:
        self.state_path = Path(state_path)
        self.path = self.state_path.with_name(self.state_path.name + ".lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StateError` (exit 2) naming the holder's pid."""
        if self._fd is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(
                f"{self.path}: cannot create the daemon lock file: {exc.strerror or exc}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StateError(
                f"{self.state_path}: another migration-watch daemon (pid {holder}) is using "
                "this state file; stop it first, or give this one its own state.path"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (idempotent). The file stays: removing it would race a starter."""
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
