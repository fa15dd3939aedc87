"""``query_ratio``: how much of the application's SQL still uses the legacy column.

Reads ``pg_stat_statements`` (found through ``pg_extension``: Supabase installs it in the
``extensions`` schema) and classifies each statement touching a watched table by the columns it
mentions: ``legacy`` only, ``new`` only or ``both`` (fallback queries). Counts are deltas of
``calls`` between polls, robust to ``pg_stat_statements_reset()`` (``stats_reset`` changes, or a
statement's calls go down) and to evicted statements (a statement that reappears counts from 0).
The first poll after start-up has no previous snapshot and uses the cumulative counts (it says so).

migration-watch's own statements carry :data:`~migration_watch.db.SQL_TAG` and are ignored.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.rows import DictRow

from ..config import Config
from ..db import SQL_TAG, Database, pg_stat_statements_location, tagged
from ..results import Result

__all__ = [
    "USAGES",
    "PollDelta",
    "QueryRatioTracker",
    "RatioWindow",
    "Snapshot",
    "classify_statement",
    "count_deltas",
    "judge_query_ratio",
]

USAGES = ("legacy", "new", "both")
_TAG = SQL_TAG.strip()


def _word(name: str) -> str:
    return rf"(?<![\w$]){re.escape(name)}(?![\w$])"


def classify_statement(query: str, tables: Sequence[str], legacy: str, new: str) -> str | None:
    """``legacy`` | ``new`` | ``both`` for a statement on a watched table, else ``None``."""
    return _Classifier(tuple(tables), legacy, new).classify(query)


class _Classifier:
    def __init__(self, tables: tuple[str, ...], legacy: str, new: str) -> None:
        self.tables = re.compile("|".join(_word(t) for t in tables)) if tables else None
        self.legacy = re.compile(_word(legacy))
        self.new = re.compile(_word(new))

    def classify(self, query: str) -> str | None:
        if _TAG in query or self.tables is None or not self.tables.search(query):
            return None
        has_legacy = self.legacy.search(query) is not None
        has_new = self.new.search(query) is not None
        if has_legacy and has_new:
            return "both"
        if has_legacy:
            return "legacy"
        if has_new:
            return "new"
        return None


@dataclass(frozen=True)
class Snapshot:
    """``(userid, queryid) -> calls`` at one time, with the view's ``stats_reset``."""

    taken_at: datetime
    calls: Mapping[tuple[int, int], int]
    stats_reset: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at.isoformat(),
            "stats_reset": self.stats_reset.isoformat() if self.stats_reset else None,
            "calls": [[u, q, c] for (u, q), c in self.calls.items()],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Snapshot:
        return cls(
            taken_at=datetime.fromisoformat(data["taken_at"]),
            stats_reset=datetime.fromisoformat(data["stats_reset"])
            if data["stats_reset"]
            else None,
            calls={(int(u), int(q)): int(c) for u, q, c in data["calls"]},
        )


@dataclass(frozen=True)
class PollDelta:
    """Calls by usage since the previous poll."""

    at: datetime
    counts: Mapping[str, int]
    window_seconds: float | None
    cumulative: bool
    reset_detected: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def legacy_ratio(self) -> float | None:
        return None if self.total == 0 else self.counts.get("legacy", 0) / self.total


def count_deltas(
    prev: Snapshot | None,
    calls: Mapping[tuple[int, int], int],
    classes: Mapping[tuple[int, int], str | None],
    stats_reset: datetime | None,
) -> tuple[dict[str, int], bool]:
    """Calls by usage since ``prev`` (all of them without one), and whether the statistics were
    reset since (``stats_reset`` moved). A statement whose calls went down was reset or evicted
    and came back: it counts from 0."""
    reset = prev is not None and stats_reset is not None and stats_reset != prev.stats_reset
    counts = dict.fromkeys(USAGES, 0)
    for key, n in calls.items():
        usage = classes.get(key)
        if usage is None:
            continue
        if prev is None or reset:
            added = n
        else:
            before = prev.calls.get(key, 0)
            added = n - before if n >= before else n
        counts[usage] += added
    return counts, reset


@dataclass
class _Window:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(USAGES, 0))
    since: datetime | None = None
    cumulative: bool = False


class _Unavailable(Exception):
    """pg_stat_statements cannot be used (not installed, not loaded, not readable)."""


class QueryRatioTracker:
    """Keeps the last snapshot and accumulates deltas for the metrics and the check window.

    ``poll`` is called on every pulse and at every check run; ``check`` closes the check window.
    Thread-safe (the pulse and a run may overlap).
    """

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self._lock = threading.Lock()
        self._snapshot = snapshot
        self._classes: dict[tuple[int, int], str | None] = {}
        self._classifier: _Classifier | None = None
        self._classifier_key: tuple[Any, ...] | None = None
        #: Accumulated deltas since start-up (or as restored): the counter on /metrics.
        self.totals: dict[str, int] = dict.fromkeys(USAGES, 0)
        self.last_delta: PollDelta | None = None
        self.unavailable_reason: str | None = None
        self._window = _Window()

    @staticmethod
    def subjects(cfg: Config) -> list[tuple[str, str]]:
        return [("query_ratio", "database")] if cfg.checks.query_ratio.enabled else []

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    # ----------------------------------------------------------------- polling
    def poll(self, db: Database, cfg: Config, now: datetime) -> PollDelta | None:
        """Read pg_stat_statements once; ``None`` (with ``unavailable_reason``) when unusable.

        Raises :class:`DatabaseError` when the database cannot be reached.
        """
        try:
            with db.read_only() as cur:
                rows, stats_reset = self._read(cur, cfg)
        except _Unavailable as exc:
            with self._lock:
                self.unavailable_reason = str(exc)
            return None
        with self._lock:
            self.unavailable_reason = None
            return self._apply(rows, stats_reset, now)

    def _get_classifier(self, cfg: Config) -> _Classifier:
        m = cfg.migration
        key = (tuple(t.name for t in m.tables), m.legacy_column, m.new_column)
        if self._classifier is None or self._classifier_key != key:
            self._classifier = _Classifier(key[0], m.legacy_column, m.new_column)
            self._classifier_key = key
            self._classes.clear()
        return self._classifier

    def _read(
        self, cur: psycopg.Cursor[DictRow], cfg: Config
    ) -> tuple[list[tuple[int, int, int, str | None]], datetime | None]:
        found = pg_stat_statements_location(cur)
        if found is None:
            raise _Unavailable("extension pg_stat_statements is not installed in this database")
        schema, version = found
        classifier = self._get_classifier(cfg)
        try:
            with cur.connection.transaction():  # savepoint: a failure must not end the txn
                stats_reset = None
                if version >= (1, 9):
                    cur.execute(
                        tagged(
                            sql.SQL("SELECT stats_reset FROM {}.pg_stat_statements_info").format(
                                schema
                            )
                        )
                    )
                    r = cur.fetchone()
                    stats_reset = r["stats_reset"] if r else None
                # Text only when a statement is new to us: the text file can be large.
                cur.execute(
                    tagged(
                        sql.SQL(
                            "SELECT s.userid, s.queryid, s.calls"
                            " FROM {}.pg_stat_statements(false) s"
                            " WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database"
                            " WHERE datname = current_database())"
                        ).format(schema)
                    )
                )
                rows = cur.fetchall()
                # Other roles' statements show a NULL queryid without pg_read_all_stats: a
                # partial view would give a wrong ratio, so report it as unavailable.
                if any(r["queryid"] is None for r in rows):
                    raise _Unavailable(
                        "pg_stat_statements is not readable by this role"
                        " (GRANT pg_read_all_stats TO the migration-watch role)"
                    )
                need_text = any(
                    r["queryid"] is not None
                    and (int(r["userid"]), int(r["queryid"])) not in self._classes
                    for r in rows
                )
                texts: dict[tuple[int, int], str | None] = {}
                if need_text:
                    cur.execute(
                        tagged(
                            sql.SQL(
                                "SELECT s.userid, s.queryid, s.query"
                                " FROM {}.pg_stat_statements(true) s"
                                " WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database"
                                " WHERE datname = current_database())"
                            ).format(schema)
                        )
                    )
                    for r in cur.fetchall():
                        if r["queryid"] is not None:
                            texts[(int(r["userid"]), int(r["queryid"]))] = r["query"]
        except pg_errors.ObjectNotInPrerequisiteState as exc:
            raise _Unavailable(
                "pg_stat_statements is installed but not loaded"
                " (add it to shared_preload_libraries)"
            ) from exc
        except pg_errors.InsufficientPrivilege as exc:
            raise _Unavailable(
                "pg_stat_statements is not readable by this role (GRANT pg_read_all_stats)"
            ) from exc
        out: list[tuple[int, int, int, str | None]] = []
        for r in rows:
            if r["queryid"] is None:
                continue
            key = (int(r["userid"]), int(r["queryid"]))
            if key not in self._classes:
                text = texts.get(key)
                self._classes[key] = classifier.classify(text) if text else None
            out.append((key[0], key[1], int(r["calls"]), None))
        return out, stats_reset

    def _apply(
        self,
        rows: list[tuple[int, int, int, str | None]],
        stats_reset: datetime | None,
        now: datetime,
    ) -> PollDelta:
        prev = self._snapshot
        calls: dict[tuple[int, int], int] = {}
        for userid, queryid, n, _ in rows:
            calls[(userid, queryid)] = calls.get((userid, queryid), 0) + n
        cumulative = prev is None
        counts, reset = count_deltas(prev, calls, self._classes, stats_reset)
        self._snapshot = Snapshot(taken_at=now, calls=calls, stats_reset=stats_reset)
        window = None if prev is None else max(0.0, (now - prev.taken_at).total_seconds())
        delta = PollDelta(
            at=now,
            counts=counts,
            window_seconds=window,
            cumulative=cumulative,
            reset_detected=reset,
        )
        for u, n in counts.items():
            self.totals[u] += n
            self._window.counts[u] += n
        if self._window.since is None:
            self._window.since = prev.taken_at if prev is not None else now
            self._window.cumulative = cumulative
        self.last_delta = delta
        return delta

    # ----------------------------------------------------------------- the check
    def check(self, db: Database, cfg: Config, now: datetime) -> Result:
        """Poll, then report the window since the previous check run, and start a new one."""
        delta = self.poll(db, cfg, now)  # a DatabaseError propagates: the suite makes it error
        if delta is None:
            reason = self.unavailable_reason or "pg_stat_statements unavailable"
            return Result.skipped("query_ratio", "database", reason=reason)
        with self._lock:
            window = self._window
            self._window = _Window(since=now)
        closed = RatioWindow(
            counts=dict(window.counts), since=window.since or now, cumulative=window.cumulative
        )
        return judge_query_ratio(cfg, closed, now)


# --------------------------------------------------------------------------- judge (pure)


@dataclass(frozen=True)
class RatioWindow:
    """Calls by usage accumulated since ``since`` (``cumulative``: it began with the first poll
    after start-up, whose counts are cumulative)."""

    counts: Mapping[str, int]
    since: datetime
    cumulative: bool


def judge_query_ratio(cfg: Config, window: RatioWindow, now: datetime) -> Result:
    """``fail`` when the legacy-only share of the window's calls is above ``max_legacy_ratio``
    (no limit: always ``pass``, the ratio is reported)."""
    counts = window.counts
    total = sum(counts.values())
    ratio = None if total == 0 else counts["legacy"] / total
    observed: dict[str, Any] = {
        **counts,
        "legacy_ratio": None if ratio is None else round(ratio, 6),
        "window_seconds": round((now - window.since).total_seconds(), 3),
        "cumulative": window.cumulative,
    }
    limit = cfg.checks.query_ratio.max_legacy_ratio
    failed = limit is not None and ratio is not None and ratio > limit
    m = cfg.migration
    if ratio is None:
        message = "no statements on the watched tables in this window"
    else:
        message = (
            f"{ratio:.1%} of {total} calls use only {m.legacy_column}"
            f" ({counts['new']} {m.new_column}, {counts['both']} both)"
        )
    if window.cumulative:
        message += "; first poll since start-up: cumulative counts"
    return Result.pass_if(
        not failed,
        "query_ratio",
        "database",
        message,
        observed=observed,
        threshold={"max_legacy_ratio": limit},
        details={"since": window.since.isoformat()},
    )
