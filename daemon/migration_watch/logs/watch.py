"""Application logs in the service: drains, file followers, exact totals, window checks.

:class:`LogWatch` owns every configured log source: ``http`` drains (``POST /ingest/logs``,
counted by :meth:`pump` on the pulse) and ``file`` sources (a
:class:`~migration_watch.logs.follower.LogFollower`). Totals per source are persisted in the
state store with the offsets that produced them, so ``/metrics`` counters continue exactly after
a restart.

With ``deployed_at`` (T0), each source also counts the lines older than T0 into a pre-deploy
Counts (a subset of its totals, persisted with them; see :mod:`.logs.deploy`). Each cadence run
summarises the window since the previous run — post-deploy lines only — into three checks:

* ``log_errors``: the window's error rate against the error rate of the pre-deploy lines of the
  same logs when there are at least ``logs.classes.baseline_min_lines`` of them (which needs
  ``start_at: beginning`` or a file holding pre-deploy lines, or a drain replaying them), else
  against ``logs.classes.baseline_error_rate``, else ``skipped``; ``fail`` above the baseline
  + 10 %. ``observed`` says which baseline was used (``baseline_source: logs | config``),
* ``legacy_errors``: errors that reference the legacy column (the checklist's
  "customer_id related errors"), ``fail`` when > 0,
* ``legacy_log_ratio``: legacy / (legacy + new) references, reported for the verdict's trend.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import structlog
from prometheus_client.core import Metric

from .. import metrics
from ..component import Component, Route
from ..config import Config
from ..configbase import _read_secret_file
from ..http import Request, Response
from ..results import Result, Status
from ..state import LogWatchStore
from .classify import Classifier, Counts, Samples
from .config import FileSourceConfig, HttpSourceConfig
from .deploy import (
    DeployGate,
    TimestampReader,
    pre_deploy_counters,
    pre_deploy_from_counters,
)
from .drain import DrainIngest
from .follower import LogFollower

__all__ = ["LOG_CLASSES", "LogWatch"]

log = structlog.get_logger(__name__)

LOG_CLASSES = ("error", "legacy_reference", "new_reference", "legacy_error", "fallback")
_WINDOW_KEY = "logs.window_totals"
#: Error-rate tolerance above the baseline before ``log_errors`` fails.
ERROR_RATE_TOLERANCE = 0.10


class _Drain:
    def __init__(
        self, source: HttpSourceConfig, classifier: Classifier, totals: Counts, pre: Counts
    ) -> None:
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
        self.pre = pre
        self.gate = DeployGate(
            TimestampReader.for_source(source),
            ordered=False,
            max_line_bytes=classifier.max_line_bytes,
        )
        self.samples = Samples()

    def counters(self) -> dict[str, int]:
        return {**self.totals.to_dict(), **pre_deploy_counters(self.pre)}


class LogWatch(Component):
    """Every log source of the configuration, and their checks and metrics."""

    def __init__(
        self,
        config: Config,
        store: LogWatchStore,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        deployed_at: Callable[[], datetime | None] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self._deployed_at = deployed_at
        self._t0_failed = False
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
                totals, pre = self._restore(source.name)
                self.drains[source.name] = _Drain(source, classifier, totals, pre)
            else:
                file_sources.append(source)
        if file_sources:
            self.follower = LogFollower(
                logs,
                m.legacy_column,
                m.new_column,
                store,
                monotonic=monotonic,
                deployed_at=deployed_at,
            )

    @property
    def enabled(self) -> bool:
        return bool(self.config.logs.sources)

    def _restore(self, source: str) -> tuple[Counts, Counts]:
        """A drain's totals and pre-deploy counts, as last saved."""
        cp = self.store.load_log_checkpoint(source)
        if cp is None:
            return Counts(), Counts()
        totals = Counts.from_dict({k: int(v) for k, v in cp.counters.items() if "." not in k})
        return totals, pre_deploy_from_counters(cp.counters)

    def deployed_at(self) -> datetime | None:
        """T0 as known now (None when unknown or when it cannot be read)."""
        if self._deployed_at is None:
            return None
        try:
            t0 = self._deployed_at()
        except Exception as exc:  # noqa: BLE001 - the store may fail; count as post-deploy
            if not self._t0_failed:
                log.warning("log_deployed_at_failed", error=str(exc))
            self._t0_failed = True
            return None
        self._t0_failed = False
        return t0

    # ------------------------------------------------------------------ HTTP drain
    def routes(self) -> Sequence[Route]:
        if not self.drains:
            return ()
        limit = max(d.source.max_body_bytes for d in self.drains.values())
        return (Route("POST", "/ingest/logs", self._ingest, body_limit=limit),)

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
        t0 = self.deployed_at() if self.drains else None
        for name, drain in self.drains.items():
            with self._lock:
                drain.gate.set_t0(t0)
                n = drain.ingest.consume(
                    drain.classifier,
                    drain.totals,
                    samples=drain.samples,
                    gate=drain.gate,
                    pre=drain.pre,
                )
                if n:
                    self.store.save_log_checkpoint(name, [], drain.counters())
        if self.follower is not None:
            # A backlog is read in bounded slices (8 MiB a source): a few slices per call,
            # so a scrape never waits long for the GIL.
            for _ in range(4):
                if self.follower.poll() > 0.0:
                    break

    def totals(self) -> dict[str, Counts]:
        """Every line read, per source (what ``/metrics`` shows)."""
        return {name: both[0] for name, both in self._counts().items()}

    def pre_deploy(self) -> dict[str, Counts]:
        """The lines older than the deployment, per source (a subset of :meth:`totals`)."""
        return {name: both[1] for name, both in self._counts().items()}

    def _counts(self) -> dict[str, tuple[Counts, Counts]]:
        """``(totals, pre_deploy)`` per source, read together."""
        return self._view()[0]

    def sources_state(self) -> dict[str, dict[str, Any]]:
        """Per source: type, up, error, lag and rotations (no counts)."""
        return self._view()[1]

    def _view(self) -> tuple[dict[str, tuple[Counts, Counts]], dict[str, dict[str, Any]]]:
        """Counts and states of every source from one follower snapshot."""
        counts: dict[str, tuple[Counts, Counts]] = {}
        states: dict[str, dict[str, Any]] = {}
        with self._lock:
            for name, drain in self.drains.items():
                counts[name] = (drain.totals.copy(), drain.pre.copy())
                states[name] = {
                    "type": "http", "up": True, "lag_bytes": 0, "rotations": 0, "error": None
                }  # fmt: skip
        if self.follower is not None:
            for name, state in self.follower.snapshot().items():
                counts[name] = (state.totals.copy(), state.pre_deploy.copy())
                states[name] = {
                    "type": "file",
                    "up": state.up,
                    "lag_bytes": state.lag_bytes,
                    "rotations": state.rotations,
                    "error": state.error,
                }
        return counts, states

    # ------------------------------------------------------------------ the window checks
    def window_results(self, now: datetime) -> list[Result]:
        """The three log checks over the window since the previous run (then a new window).

        The window holds the post-deploy lines read since the previous run: the change of
        each source's totals minus the change of its pre-deploy counts.
        """
        if not self.enabled:
            return []
        counts = self._counts()
        previous = self.store.get_meta(_WINDOW_KEY) or {}
        prev_totals: dict[str, Any] = dict(previous.get("sources", {}))
        prev_pre: dict[str, Any] = dict(previous.get("pre_deploy", {}))
        stored_totals, stored_pre = dict(prev_totals), dict(prev_pre)
        window = Counts()
        excluded = Counts()  # pre-deploy lines read during the window
        baseline = Counts()
        since = previous.get("at")
        for name, (total, pre) in counts.items():
            pre_before = Counts.from_dict(prev_pre.get(name, {}))
            delta = total - Counts.from_dict(prev_totals.get(name, {}))
            pre_delta = pre - pre_before
            if delta.lines < 0 or pre_delta.lines < 0:
                # Not loaded yet (a restart before the source's first poll): the store holds
                # both, so counters never go back; its lines go to the next window.
                baseline.add(pre_before)
                continue
            window.add(delta - pre_delta)
            excluded.add(pre_delta)
            baseline.add(pre)
            stored_totals[name], stored_pre[name] = total.to_dict(), pre.to_dict()
        self.store.set_meta(
            _WINDOW_KEY,
            {"at": now.isoformat(), "sources": stored_totals, "pre_deploy": stored_pre},
        )
        details = {
            "since": since,
            "lines": window.lines,
            "bytes": window.bytes,
            "pre_deploy_lines_excluded": excluded.lines,
        }
        results = [self._log_errors(window, baseline, details, now)]
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

    def _log_errors(
        self, window: Counts, pre: Counts, details: dict[str, Any], now: datetime
    ) -> Result:
        """``log_errors``: the window's error rate against the pre-deploy or configured one."""
        classes = self.config.logs.classes
        rate = window.error / window.lines if window.lines else 0.0
        seen = f"{window.error} errors in {window.lines} lines ({rate:.3%})"
        baseline: float | None
        if pre.lines >= classes.baseline_min_lines:
            source: str | None = "logs"
            baseline = pre.error / pre.lines
            against = (
                f"the pre-deploy baseline {baseline:.3%} ({pre.error} of {pre.lines} lines"
                " before the deployment)"
            )
        elif classes.baseline_error_rate is not None:
            source, baseline = "config", classes.baseline_error_rate
            against = f"the configured baseline {baseline:.3%}"
        else:
            source, baseline = None, None
        observed: dict[str, Any] = {
            "errors": window.error,
            "lines": window.lines,
            "error_rate": rate,
            "baseline_source": source,
            "baseline_error_rate": baseline,
            "baseline_lines": pre.lines,
        }
        details = {
            **details,
            "baseline_source": source,
            "baseline_errors": pre.error,
            "baseline_lines": pre.lines,
            "baseline_min_lines": classes.baseline_min_lines,
        }
        if baseline is None:
            if self.deployed_at() is None:
                why = "the deployment time (T0) is unknown, so no log line is pre-deploy"
            else:
                why = (
                    f"{pre.lines} pre-deploy log lines (logs.classes.baseline_min_lines"
                    f" = {classes.baseline_min_lines})"
                )
            status = Status.SKIPPED
            message = f"{seen}; no baseline: {why}, and no logs.classes.baseline_error_rate"
        else:
            limit = baseline * (1 + ERROR_RATE_TOLERANCE)
            failed = window.error > 0 and rate > limit
            status = Status.FAIL if failed else Status.PASS
            message = f"error rate {rate:.3%} ({window.error} of {window.lines} lines) vs {against}"
            if source == "config" and pre.lines:
                message += (
                    f"; {pre.lines} pre-deploy log lines are fewer than"
                    f" baseline_min_lines = {classes.baseline_min_lines}"
                )
        return Result(
            check="log_errors",
            subject="logs",
            status=status,
            observed=observed,
            threshold={
                "baseline_error_rate": baseline,
                "baseline_source": source,
                "tolerance": ERROR_RATE_TOLERANCE,
            },
            details=details,
            message=message,
            measured_at=now,
        )

    # ------------------------------------------------------------------ reporting
    def collect(self) -> Iterator[Metric]:
        counts, state = self._view()
        totals = {name: both[0] for name, both in counts.items()}
        lines = metrics.counter("log_lines")
        nbytes = metrics.counter("log_bytes")
        parse = metrics.counter("log_parse_errors")
        trunc = metrics.counter("log_truncated_lines")
        rot = metrics.counter("log_rotations")
        lag = metrics.gauge("log_lag_bytes")
        up = metrics.gauge("log_source_up")
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
        counts, states = self._view()
        out: dict[str, Any] = {}
        for name, s in states.items():
            c, pre = counts.get(name, (Counts(), Counts()))
            out[name] = {
                **s,
                "lines": c.lines,
                "errors": c.error,
                "legacy_errors": c.legacy_error,
                "pre_deploy_lines": pre.lines,
            }
        return {"logs": out}

    def close(self) -> None:
        if self.follower is not None:
            self.follower.close()
