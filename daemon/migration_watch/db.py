"""Safe access to the watched database.

Every transaction is ``READ ONLY`` and sets ``statement_timeout``, ``lock_timeout`` and
``idle_in_transaction_session_timeout`` with ``SET LOCAL`` semantics (``set_config(..., true)``),
because poolers in transaction mode (Supabase's) drop session settings. Connections are opened
with ``prepare_threshold=None`` (pooler-safe) and ``application_name`` set. Identifiers are only
ever composed with :mod:`psycopg.sql`; values are always bound parameters.

Every statement migration-watch sends starts with :data:`SQL_TAG` so that its own statements
can be told apart from the application's in ``pg_stat_statements``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, LiteralString

import psycopg
import psycopg_pool
import structlog
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.rows import DictRow, dict_row

from .config import DatabaseConfig
from .errors import DatabaseError

__all__ = ["SQL_TAG", "Database", "pg_stat_statements_location", "redact", "redact_dsn", "tagged"]

log = structlog.get_logger(__name__)

#: Leading comment of every statement migration-watch runs (kept by pg_stat_statements).
SQL_TAG = "/* migration-watch */ "


def tagged(query: LiteralString | sql.Composable) -> sql.Composed:
    """``query`` prefixed with :data:`SQL_TAG` (pg_stat_statements keeps the comment)."""
    body = sql.SQL(query) if isinstance(query, str) else query
    return sql.SQL(SQL_TAG) + body


def pg_stat_statements_location(
    cur: psycopg.Cursor[DictRow],
) -> tuple[sql.Identifier, tuple[int, ...]] | None:
    """Schema (as an identifier) and version of pg_stat_statements in this database, found
    through ``pg_extension`` (Supabase installs it in ``extensions``); None when absent."""
    cur.execute(
        tagged(
            "SELECT n.nspname, e.extversion FROM pg_catalog.pg_extension e"
            " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
            " WHERE e.extname = 'pg_stat_statements'"
        )
    )
    ext = cur.fetchone()
    if ext is None:
        return None
    version = tuple(int(p) for p in str(ext["extversion"]).split(".")[:2] if p.isdigit())
    return sql.Identifier(ext["nspname"]), version


_PASSWORD_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_PASSWORD_URL = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@\s]*)(@)", re.IGNORECASE)


def redact_dsn(dsn: str) -> str:
    """A DSN with its password replaced by ``***`` (URL and key=value forms)."""
    dsn = _PASSWORD_URL.sub(r"\1***\3", dsn)
    return _PASSWORD_KV.sub(r"\1***", dsn)


def redact(text: str, dsn: str | None) -> str:
    """Remove the DSN's password (and the DSN itself) from an arbitrary message."""
    if not dsn:
        return text
    try:
        password = psycopg.conninfo.conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        password = None
    text = text.replace(dsn, redact_dsn(dsn))
    if password:
        text = text.replace(str(password), "***")
    return redact_dsn(text)


def _interval_ms(seconds: float) -> str:
    return f"{max(0, round(seconds * 1000))}ms"


class Database:
    """A small pool of read-only connections to the watched database."""

    def __init__(self, cfg: DatabaseConfig) -> None:
        self._cfg = cfg
        self._dsn = cfg.dsn_value()
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[DictRow]] | None = None
        self._active: set[psycopg.Connection[DictRow]] = set()
        self._active_lock = threading.Lock()
        self._settings = (
            _interval_ms(cfg.statement_timeout.total_seconds()),
            _interval_ms(cfg.lock_timeout.total_seconds()),
            _interval_ms(cfg.idle_in_transaction_session_timeout.total_seconds()),
        )

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        if self._pool is not None:
            return
        kwargs = self._connect_kwargs()
        self._pool = psycopg_pool.ConnectionPool(
            self._dsn,
            connection_class=psycopg.Connection[DictRow],
            kwargs=kwargs,
            min_size=0,
            max_size=self._cfg.pool_size,
            open=False,
            configure=self._configure,
            check=psycopg_pool.ConnectionPool.check_connection,
            timeout=self._cfg.connect_timeout.total_seconds() + 1,
            max_idle=300,
            reconnect_timeout=max(5.0, self._cfg.connect_timeout.total_seconds()),
            name="migration-watch",
        )
        self._pool.open(wait=False)

    def cancel_running(self) -> None:
        """Cancel the statements in flight (used on shutdown so that it takes seconds)."""
        with self._active_lock:
            active = list(self._active)
        for conn in active:
            try:
                conn.cancel_safe(timeout=1.0)
            except psycopg.Error:
                pass

    def _connect_kwargs(self) -> dict[str, Any]:
        return {
            "prepare_threshold": None,
            "application_name": self._cfg.application_name,
            "connect_timeout": max(1, round(self._cfg.connect_timeout.total_seconds())),
            "row_factory": dict_row,
        }

    def close(self) -> None:
        self.cancel_running()
        if self._pool is not None:
            self._pool.close(timeout=2)
            self._pool = None

    def __enter__(self) -> Database:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _configure(conn: psycopg.Connection[DictRow]) -> None:
        conn.read_only = True  # every transaction starts with BEGIN READ ONLY

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def read_only(self) -> Iterator[psycopg.Cursor[DictRow]]:
        """A cursor inside a ``READ ONLY`` transaction with the configured timeouts.

        Errors are translated into :class:`DatabaseError` without secrets.
        """
        if self._pool is None:
            self.open()
        assert self._pool is not None
        try:
            with self._pool.connection() as conn:
                with self._active_lock:
                    self._active.add(conn)
                try:
                    with conn.transaction(), conn.cursor() as cur:
                        cur.execute(
                            tagged(
                                "SELECT set_config('statement_timeout', %s, true),"
                                " set_config('lock_timeout', %s, true),"
                                " set_config('idle_in_transaction_session_timeout', %s, true)"
                            ),
                            self._settings,
                        )
                        yield cur
                finally:
                    with self._active_lock:
                        self._active.discard(conn)
        except DatabaseError:
            raise
        except psycopg_pool.PoolTimeout as exc:
            raise self._diagnose() from exc
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    def _diagnose(self) -> DatabaseError:
        """The pool gave no connection in time: one direct attempt tells why (refused,
        authentication failed, unknown database...)."""
        try:
            with psycopg.connect(self._dsn, **self._connect_kwargs()):
                pass
        except psycopg.Error as exc:
            return self._translate(exc)
        return DatabaseError(
            "database unreachable: no pooled connection within "
            f"{self._cfg.connect_timeout.total_seconds():g}s",
            kind="unreachable",
        )

    def _translate(self, exc: psycopg.Error) -> DatabaseError:
        text = redact(
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, self._dsn
        )
        if isinstance(exc, pg_errors.QueryCanceled):
            return DatabaseError(f"statement timeout: {text}", kind="timeout")
        if isinstance(exc, pg_errors.LockNotAvailable):
            return DatabaseError(f"lock timeout: {text}", kind="timeout")
        if isinstance(exc, pg_errors.InsufficientPrivilege):
            return DatabaseError(f"permission denied: {text}", kind="permission", fatal=True)
        if isinstance(exc, pg_errors.InvalidPassword | pg_errors.InvalidAuthorizationSpecification):
            return DatabaseError(f"authentication failed: {text}", kind="auth", fatal=True)
        if isinstance(exc, psycopg.OperationalError):
            return DatabaseError(f"database unreachable: {text}", kind="unreachable")
        return DatabaseError(f"database error: {text}", kind="error")

    def ping(self) -> bool:
        """True when a trivial read-only query succeeds."""
        return self.probe() is None

    def probe(self) -> DatabaseError | None:
        """``None`` when a trivial read-only query succeeds, else the error (no secrets)."""
        try:
            with self.read_only() as cur:
                cur.execute(tagged("SELECT 1"))
            return None
        except DatabaseError as exc:
            log.debug("database probe failed", error=str(exc))
            return exc

    def redact(self, text: str) -> str:
        return redact(text, self._dsn)
