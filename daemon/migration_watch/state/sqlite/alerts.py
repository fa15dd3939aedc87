"""The ``alerts`` and ``outbox`` tables on SQLite (an alert transition enqueues atomically)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from ..encoding import dumps, from_ts, from_ts_opt, loads, ts, ts_opt
from ..models import AlertStateRow, OutboxItem, OutboxMessage
from .connection import SqliteDatabase

__all__ = ["SqliteAlerts"]

_ALERT_COLUMNS = (
    "fingerprint, alertname, labels, annotations, state, active_since, fired_at, resolved_at, "
    "last_sent_at, last_evaluated_at, consecutive_failing, consecutive_passing, "
    "consecutive_errors, data"
)
_OUTBOX_COLUMNS = (
    "id, idempotency_key, receiver, payload, created_at, attempts, next_attempt_at, "
    "last_attempt_at, last_error, failed"
)


def _alert_row(row: sqlite3.Row) -> AlertStateRow:
    return AlertStateRow(
        fingerprint=row["fingerprint"],
        alertname=row["alertname"],
        labels=loads(row["labels"]),
        state=row["state"],
        annotations=loads(row["annotations"]),
        active_since=from_ts_opt(row["active_since"]),
        fired_at=from_ts_opt(row["fired_at"]),
        resolved_at=from_ts_opt(row["resolved_at"]),
        last_sent_at=from_ts_opt(row["last_sent_at"]),
        last_evaluated_at=from_ts_opt(row["last_evaluated_at"]),
        consecutive_failing=row["consecutive_failing"],
        consecutive_passing=row["consecutive_passing"],
        consecutive_errors=row["consecutive_errors"],
        data=loads(row["data"]),
    )


def _outbox_row(row: sqlite3.Row) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        idempotency_key=row["idempotency_key"],
        receiver=row["receiver"],
        payload=loads(row["payload"]),
        created_at=from_ts(row["created_at"]),
        attempts=row["attempts"],
        next_attempt_at=from_ts(row["next_attempt_at"]),
        last_attempt_at=from_ts_opt(row["last_attempt_at"]),
        last_error=row["last_error"],
        failed=bool(row["failed"]),
    )


class SqliteAlerts(SqliteDatabase):
    """Alert state and the outbox (:class:`~migration_watch.state.protocols.AlertStore`)."""

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
                    dumps(dict(row.labels)),
                    dumps(dict(row.annotations)),
                    row.state,
                    ts_opt(row.active_since),
                    ts_opt(row.fired_at),
                    ts_opt(row.resolved_at),
                    ts_opt(row.last_sent_at),
                    ts_opt(row.last_evaluated_at),
                    row.consecutive_failing,
                    row.consecutive_passing,
                    row.consecutive_errors,
                    dumps(dict(row.data)),
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
        stamp = ts(now)
        conn.execute(
            "INSERT INTO outbox (idempotency_key, receiver, payload, created_at, next_attempt_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
            (
                message.idempotency_key,
                message.receiver,
                dumps(dict(message.payload)),
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
        cutoff = ts(now)
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
                (ts(at), error, ts(next_attempt_at), item_id),
            )

    def outbox_mark_failed(self, item_id: int, *, at: datetime, error: str) -> None:
        """A permanent failure: kept (visible in ``/health``) but never retried."""
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_attempt_at = ?, last_error = ?, "
                "failed = 1 WHERE id = ?",
                (ts(at), error, item_id),
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
        return None if oldest is None else now - from_ts(oldest)
