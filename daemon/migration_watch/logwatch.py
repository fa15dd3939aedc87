"""Application logs in the service: drains, file followers, exact totals, window checks.

:class:`LogWatch` owns every configured log source: ``http`` drains (``POST /ingest/logs``,
counted by :meth:`pump` on the pulse) and ``file`` sources (a
:class:`~migration_watch.logs.follower.LogFollower`). Totals per source are persisted in the
state store with the offsets that produced them, so ``/metrics`` counters continue exactly after
a restart. Each cadence run summarises the window since the previous run into three checks:

* ``log_errors``: the window's error rate against ``logs.classes.baseline_error_rate``
  (``skipped`` when no baseline is configured),
* ``legacy_errors``: errors that reference the legacy column (the checklist's
  "customer_id related errors"), ``fail`` when > 0,
* ``legacy_log_ratio``: legacy / (legacy + new) references, reported for the verdict's trend.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .config import Config
from .configbase import _read_secret_file
from .http import HttpServer, Request, Response
from .logs.classify import Classifier, Counts, Samples
from .logs.config import FileSourceConfig, HttpSourceConfig
from .logs.drain import DrainIngest
from .logs.follower import LogFollower
from .results import Result, Status
from .state import StateStore

__all__ = ["LOG_CLASSES", "LogWatch"]

log = structlog.get_logger(__name__)

_P = "migration_watch_"
LOG_CLASSES = ("error", "legacy_reference", "new_reference", "legacy_error", "fallback")
_WINDOW_KEY = "logs.window_totals"
#: Error-rate tolerance above the baseline before ``log_errors`` fails.
ERROR_RATE_TOLERANCE = 0.10


class _Drain:
    def __init__(self, source: HttpSourceConfig, classifier: Classifier, totals: Counts) -> None:
        token = source.token.get_secret_value() if source.token else None
        if source.token_file is not None:
            token = _read_secret_file(source.token_file)
        secret = source.hmac_secret.get_secret_value() if source.hmac_secret else None
        if source.hmac_secret_file is not None:
            secret = _read_secret_file(source.hmac_secret_file)
        self.source = source
        self.ingest = DrainIngest(source, token=token, hmac_secret=secret)
        self.classifier = classifier
        self.totals = totals
        self.samples = Samples()


class LogWatch:
    """Every log source of the configuration, and their checks and metrics."""

    def __init__(
        self,
        config: Config,
        store: StateStore,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.store = store
        logs = config.logs
        m = config.migration
        self._lock = threading.Lock()
        self.drains: dict[str, _Drain] = {}
        self.follower: LogFollower | None = None
        file_sources: list[FileSourceConfig] = []
        for source in logs.sources:
            if isinstance(source, HttpSourceConfig):
                classifier = Classifier.for_source(
                    source, m.legacy_column, m.new_column, logs.classes
                )
                self.drains[source.name] = _Drain(source, classifier, self._restore(source.name))
            else:
                file_sources.append(source)
        if file_sources:
            self.follower = LogFollower(logs, m.legacy_column, m.new_column, store, clock=monotonic)

    @property
    def enabled(self) -> bool:
        return bool(self.config.logs.sources)

    def _restore(self, source: str) -> Counts:
        cp = self.store.load_log_checkpoint(source)
        if cp is None:
            return Counts()
        return Counts.from_dict({k: int(v) for k, v in cp.counters.items() if k != "rotations"})

    # ------------------------------------------------------------------ HTTP drain
    def install(self, http: HttpServer) -> None:
        if not self.drains:
            return
        limit = max(d.source.max_body_bytes for d in self.drains.values())
        http.add_route("POST", "/ingest/logs", self._ingest, body_limit=limit)

    def _ingest(self, request: Request) -> Response:
        name = ""
        for part in request.query.split("&"):
            key, _, value = part.partition("=")
            if key == "source":
                name = value
        if not name and len(self.drains) == 1:
            name = next(iter(self.drains))
        drain = self.drains.get(name)
        if drain is None:
            return Response.json(
                {"error": "unknown source: pass ?source=NAME", "sources": sorted(self.drains)},
                404,
            )
        resp = drain.ingest.handle(request.headers, request.body)
        return Response.json(resp.body, resp.status, dict(resp.headers))

    # ------------------------------------------------------------------ counting
    def pump(self) -> None:
        """Count what the drains queued and follow the files (called on a short timer)."""
        for name, drain in self.drains.items():
            with self._lock:
                n = drain.ingest.consume(drain.classifier, drain.totals, samples=drain.samples)
                if n:
                    self.store.save_log_checkpoint(name, [], drain.totals.to_dict())
        if self.follower is not None:
            # A backlog is read in bounded slices (8 MiB a source): a few slices per call,
            # so a scrape never waits long for the GIL.
            for _ in range(4):
                if self.follower.poll() > 0.0:
                    break

    def totals(self) -> dict[str, Counts]:
        out: dict[str, Counts] = {}
        with self._lock:
            for name, drain in self.drains.items():
                out[name] = drain.totals.copy()
        if self.follower is not None:
            for name, state in self.follower.snapshot().items():
                out[name] = state.totals.copy()
        return out

    def _sources_state(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name in self.drains:
            out[name] = {"type": "http", "up": True, "lag_bytes": 0, "rotations": 0, "error": None}
        if self.follower is not None:
            for name, state in self.follower.snapshot().items():
                out[name] = {
                    "type": "file",
                    "up": state.up,
                    "lag_bytes": state.lag_bytes,
                    "rotations": state.rotations,
                    "error": state.error,
                }
        return out

    # ------------------------------------------------------------------ the window checks
    def window_results(self, now: datetime) -> list[Result]:
        """The three log checks over the window since the previous run (then a new window)."""
        if not self.enabled:
            return []
        totals = self.totals()
        previous = self.store.get_meta(_WINDOW_KEY) or {}
        window = Counts()
        since = previous.get("at")
        for name, counts in totals.items():
            before = Counts.from_dict(previous.get("sources", {}).get(name, {}))
            delta = counts - before
            if delta.lines < 0:  # counters cannot go back; a reset store starts over
                delta = counts
            window.add(delta)
        self.store.set_meta(
            _WINDOW_KEY,
            {"at": now.isoformat(), "sources": {n: c.to_dict() for n, c in totals.items()}},
        )
        details = {"since": since, "lines": window.lines, "bytes": window.bytes}
        rate = window.error / window.lines if window.lines else 0.0
        baseline = self.config.logs.classes.baseline_error_rate
        results: list[Result] = []
        if baseline is None:
            status, message = (
                Status.SKIPPED,
                f"{window.error} errors in {window.lines} lines ({rate:.3%}); no baseline error"
                " rate (set logs.classes.baseline_error_rate)",
            )
        else:
            limit = baseline * (1 + ERROR_RATE_TOLERANCE)
            failed = window.error > 0 and rate > limit
            status = Status.FAIL if failed else Status.PASS
            message = (
                f"error rate {rate:.3%} ({window.error} of {window.lines} lines) vs baseline"
                f" {baseline:.3%}"
            )
        results.append(
            Result(
                check="log_errors",
                subject="logs",
                status=status,
                observed={"errors": window.error, "lines": window.lines, "error_rate": rate},
                threshold={"baseline_error_rate": baseline, "tolerance": ERROR_RATE_TOLERANCE},
                details=details,
                message=message,
                measured_at=now,
            )
        )
        legacy_col = self.config.migration.legacy_column
        results.append(
            Result(
                check="legacy_errors",
                subject="logs",
                status=Status.FAIL if window.legacy_error else Status.PASS,
                observed={"legacy_errors": window.legacy_error},
                threshold={"max": 0},
                details=details,
                message=(
                    f"{window.legacy_error} errors referencing {legacy_col}"
                    if window.legacy_error
                    else f"no errors referencing {legacy_col}"
                ),
                measured_at=now,
            )
        )
        refs = window.legacy_reference + window.new_reference
        ratio = window.legacy_reference / refs if refs else None
        results.append(
            Result(
                check="legacy_log_ratio",
                subject="logs",
                status=Status.PASS,
                observed={
                    "legacy": window.legacy_reference,
                    "new": window.new_reference,
                    "fallback": window.fallback,
                    "legacy_ratio": ratio,
                },
                details=details,
                message=(
                    "no column references in this window"
                    if ratio is None
                    else f"{ratio:.1%} of {refs} column references use {legacy_col}"
                ),
                measured_at=now,
            )
        )
        return results

    # ------------------------------------------------------------------ reporting
    def collect(self) -> Iterator[Metric]:
        totals = self.totals()
        state = self._sources_state()
        lines = CounterMetricFamily(
            _P + "log_lines",
            "Log lines read by source and class (class all: every line).",
            labels=["source", "class"],
        )
        nbytes = CounterMetricFamily(_P + "log_bytes", "Log bytes read.", labels=["source"])
        parse = CounterMetricFamily(
            _P + "log_parse_errors", "Log lines that could not be parsed.", labels=["source"]
        )
        trunc = CounterMetricFamily(
            _P + "log_truncated_lines",
            "Log lines longer than max_line_bytes (classified on their first part).",
            labels=["source"],
        )
        rot = CounterMetricFamily(
            _P + "log_rotations", "Rotations detected (rename or truncate).", labels=["source"]
        )
        lag = GaugeMetricFamily(
            _P + "log_lag_bytes",
            "Bytes written but not read yet (size - offset).",
            labels=["source"],
        )
        up = GaugeMetricFamily(
            _P + "log_source_up", "1 if the log source can be read.", labels=["source"]
        )
        for name, c in sorted(totals.items()):
            lines.add_metric([name, "all"], float(c.lines))
            for cls in LOG_CLASSES:
                lines.add_metric([name, cls], float(getattr(c, cls)))
            nbytes.add_metric([name], float(c.bytes))
            parse.add_metric([name], float(c.parse_errors))
            trunc.add_metric([name], float(c.truncated))
            s = state.get(name, {})
            rot.add_metric([name], float(s.get("rotations", 0)))
            lag.add_metric([name], float(s.get("lag_bytes", 0)))
            up.add_metric([name], 1.0 if s.get("up", True) else 0.0)
        yield from (lines, nbytes, parse, trunc, rot, lag, up)

    def health(self) -> dict[str, Any]:
        if not self.enabled:
            return {}
        totals = self.totals()
        out: dict[str, Any] = {}
        for name, s in self._sources_state().items():
            c = totals.get(name, Counts())
            out[name] = {**s, "lines": c.lines, "errors": c.error, "legacy_errors": c.legacy_error}
        return {"logs": out}

    def close(self) -> None:
        if self.follower is not None:
            self.follower.close()
