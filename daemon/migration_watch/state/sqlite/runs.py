"""The ``runs`` and ``results`` tables on SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from migration_watch.cadence import CompletedRun, RunState
from migration_watch.results import Result, Status, overall_status

from ..encoding import dumps, from_ts, from_ts_opt, loads, ts, ts_opt
from ..models import RunRecord, StoredResult
from .connection import SqliteDatabase

__all__ = ["SqliteRuns"]

_RUN_STATES = frozenset({RunState.DONE.value, RunState.LATE.value, RunState.EXTRA.value})
_RUN_COLUMNS = (
    "id, planned_index, planned_at, started_at, finished_at, state, delay_seconds, "
    "superseded, status"
)


def _run_row(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        id=row["id"],
        planned_index=row["planned_index"],
        planned_at=from_ts_opt(row["planned_at"]),
        started_at=from_ts(row["started_at"]),
        finished_at=from_ts_opt(row["finished_at"]),
        state=RunState(row["state"]),
        delay_seconds=row["delay_seconds"],
        superseded=tuple(loads(row["superseded"])),
        status=Status(row["status"]) if row["status"] is not None else None,
    )


def _result_row(row: sqlite3.Row) -> Result:
    return Result(
        check=row["check_name"],
        subject=row["subject"],
        status=Status(row["status"]),
        observed=loads(row["observed"]),
        threshold=loads(row["threshold"]),
        details=loads(row["details"]),
        message=row["message"],
        table=row["table_name"],
        measured_at=from_ts_opt(row["measured_at"]),
        duration_seconds=row["duration_seconds"],
    )


class SqliteRuns(SqliteDatabase):
    """Runs and their results (:class:`~migration_watch.state.protocols.RunStore`)."""

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
                self._ensure_not_completed(conn, ts(planned_at))
            cursor = conn.execute(
                "INSERT INTO runs (planned_index, planned_at, started_at, state, delay_seconds, "
                "superseded) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    planned_index,
                    ts_opt(planned_at),
                    ts(started_at),
                    state.value,
                    float(delay_seconds),
                    dumps(sorted(superseded)),
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
                        dumps(dict(r.observed)),
                        dumps(r.threshold),
                        dumps(dict(r.details)),
                        r.message,
                        r.table,
                        ts_opt(r.measured_at),
                        float(r.duration_seconds),
                    )
                    for r in results
                ],
            )
            conn.execute(
                "UPDATE runs SET finished_at = ?, status = ? WHERE id = ?",
                (ts(finished_at), Status(final).value, run_id),
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
                RunState(r["state"]), from_ts(r["started_at"]), from_ts(r["planned_at"])
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
        return [from_ts(r["started_at"]) for r in rows]

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
            params.append(ts(since))
        query += " ORDER BY r.run_id, r.id"
        with self._read() as conn:
            rows = conn.execute(query, params).fetchall()
        return [
            StoredResult(
                run_id=r["run_id"],
                run_state=RunState(r["run_state"]),
                planned_index=r["run_planned_index"],
                run_started_at=from_ts(r["run_started_at"]),
                result=_result_row(r),
            )
            for r in rows
        ]
