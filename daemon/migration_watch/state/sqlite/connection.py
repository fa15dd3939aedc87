"""The SQLite file: its connections, transactions, identity checks and schema migrations.

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

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Self

import structlog

from migration_watch.clock import utcnow
from migration_watch.errors import StateError

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SqliteDatabase"]

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


class SqliteDatabase:
    """One SQLite state file, opened, checked and migrated: a writer under a lock, a pool of
    readers, and :meth:`_write` / :meth:`_read` transactions for the sections built on it.

    Safe to share between threads. ``wall`` supplies bookkeeping timestamps (``updated_at``,
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
        return f"{type(self).__name__}({str(self.path)!r})"

    def __enter__(self) -> Self:
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
