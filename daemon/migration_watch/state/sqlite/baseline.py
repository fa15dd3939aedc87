"""The baseline and ``verdicts`` tables on SQLite."""

from __future__ import annotations

from ..encoding import dumps, from_ts, loads, ts
from ..models import Baseline, ProbeBaseline, StatementBaseline, VerdictRecord
from .connection import SqliteDatabase

__all__ = ["SqliteBaseline"]


class SqliteBaseline(SqliteDatabase):
    """The baseline and the verdicts (:class:`~migration_watch.state.protocols.BaselineStore`)."""

    def save_baseline(self, baseline: Baseline) -> None:
        """Replace the stored baseline with ``baseline`` (one transaction)."""
        with self._write(durable=True) as conn:
            conn.execute("DELETE FROM baseline_statements")
            conn.execute("DELETE FROM baseline_probes")
            conn.execute(
                "INSERT INTO baseline (id, recorded_at, details) VALUES (1, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET recorded_at = excluded.recorded_at, "
                "details = excluded.details",
                (ts(baseline.recorded_at), dumps(dict(baseline.details))),
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
                        dumps(list(p.timings)),
                        dumps(p.plan),
                        dumps(dict(p.details)),
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
            recorded_at=from_ts(head["recorded_at"]),
            statements=tuple(
                StatementBaseline(s["queryid"], s["query"], s["mean_exec_seconds"], s["calls"])
                for s in statements
            ),
            probes=tuple(
                ProbeBaseline(
                    name=p["name"],
                    median_seconds=p["median_seconds"],
                    timings=tuple(loads(p["timings"])),
                    plan=loads(p["plan"]),
                    details=loads(p["details"]),
                )
                for p in probes
            ),
            details=loads(head["details"]),
        )

    def save_verdict(self, verdict: VerdictRecord) -> VerdictRecord:
        """Append a verdict (provisional or final); returns it with its id."""
        with self._write(durable=True) as conn:
            cursor = conn.execute(
                "INSERT INTO verdicts (computed_at, final, outcome, payload) VALUES (?, ?, ?, ?)",
                (
                    ts(verdict.computed_at),
                    int(verdict.final),
                    verdict.outcome,
                    dumps(dict(verdict.payload)),
                ),
            )
            new_id = cursor.lastrowid
        return VerdictRecord(
            computed_at=from_ts(ts(verdict.computed_at)),
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
            computed_at=from_ts(row["computed_at"]),
            final=bool(row["final"]),
            outcome=row["outcome"],
            payload=loads(row["payload"]),
            id=row["id"],
        )
