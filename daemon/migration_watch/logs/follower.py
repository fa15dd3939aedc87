"""Continuous, exactly-once following of ``file`` log sources.

:class:`SourceFollower` follows one ``file`` source, :class:`LogFollower` every file source of
a :class:`~.config.LogsConfig`. Both are synchronous and start no thread: the service calls
:meth:`LogFollower.poll` on a short timer, tests call it with an injected monotonic clock.
Steps 1-3 below are :class:`~.discovery.FileDiscovery` (which files, rotations) and
:class:`~.reader.FileReader` (bytes into lines); the follower runs them and does step 4.

What one :meth:`SourceFollower.poll` does
    1. Every ``glob_interval``: evaluate the patterns; a regular file not yet followed is
       opened (from 0, or at its end for ``start_at: end`` when the source has never been
       checkpointed; "end" means after the last complete line, so a partial last line is
       counted once its newline arrives). Files starting with the gzip magic are ignored.
    2. ``os.stat`` each followed path. A path that is gone or names another inode (rename +
       create, delete + create, a retargeted symlink) makes the file *rotated*: it keeps being
       read through its open descriptor (lines the app still writes there are not lost) until
       nothing was added for ``rotated_idle``; then its held-back partial line is counted and
       it is closed (unless the patterns match it again under its new name). The path is
       re-checked on every poll, so the new file there is read at once, from 0.
    3. Read what is new in ``read_chunk_bytes`` reads, rotated files first, at most
       ``max_bytes_per_poll`` in all (``PollStats.more`` says there is more). A file smaller
       than what was read, or whose first bytes no longer match its fingerprint (same inode,
       other content), was truncated (copytruncate): read again from 0, counted as a rotation.
    4. Save the offsets and the absolute totals in one state-store transaction
       (:meth:`~migration_watch.state.CheckpointStore.save_log_checkpoint`), when they changed.

Pre-deploy lines
    With ``deployed_at`` (T0, read once per poll; it may change at runtime), each file has a
    :class:`~.deploy.DeployGate`: while its lines are older than T0 they are also counted in
    the source's ``pre_deploy`` Counts (a subset of its totals); once a line at or after T0
    has been seen, the file's later lines are post-deploy without reading their timestamps
    (logs are appended in time order). The timestamp of that line is kept in the file's
    checkpoint (``extra["t0_passed"]``, µs), the pre-deploy counts with the totals (counters
    ``pre_deploy.<name>``), so a restart neither re-reads timestamps nor loses the counts.

Exactly once
    A file's checkpointed offset is ``position - stream.pending`` (the partial last line is
    re-read, never half counted) plus ``stream.skipping`` (in ``extra``), with its device,
    inode and fingerprint (``"<n>:<blake2b-128 of the first n bytes>"``, n up to
    ``fingerprint_bytes``, growing with the file). Totals (``lines``, ``bytes``, each class,
    ``parse_errors``, ``truncated``, ``rotations``, ``pre_deploy.*``) are saved in the same
    transaction, so after a SIGKILL the follower resumes from a state where offsets and
    totals agree. On start-up each checkpointed file is looked for at its path, then in its
    directory, by inode and fingerprint (the device is not compared: it may change across
    reboots), and drained from its offset; one no longer found is logged as lost. Once a
    source has a checkpoint, every new file is read from 0 (it appeared after the follower
    started).

Limits (as in Filebeat): a rotated file moved to another directory while the daemon is down
is not found; lines written to a rotated file after ``rotated_idle`` of silence are not read;
with copytruncate, lines written between the copy and the truncation are in the copy only.

Status: a source is ``up`` when at least one file is followed at a matched path and nothing
failed (open, stat, read); otherwise ``error`` says why (missing directory, no file matching,
permission denied…). Never fatal: an unexpected exception is logged, reported, and the source
restarts from its last checkpoint on the next poll.

Thread safety: :meth:`SourceFollower.poll` and :meth:`~SourceFollower.close` are serialized by a
lock; :meth:`SourceFollower.state` (and :meth:`LogFollower.snapshot`) read an immutable state
published at the end of each poll and may be called from any thread.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

import structlog

from migration_watch.errors import StateError
from migration_watch.state import CheckpointStore, LogFileCheckpoint

from ..clock import utcnow
from .classify import Classifier
from .config import FileSourceConfig, LogsConfig
from .counts import Counts, Samples
from .deploy import TimestampReader, pre_deploy_counters, pre_deploy_from_counters
from .discovery import FileDiscovery, FollowedFile, read_order, why
from .reader import Streams

__all__ = [
    "DEFAULT_MAX_BYTES_PER_POLL",
    "FileState",
    "LogFollower",
    "PollStats",
    "SourceFollower",
    "SourceState",
]

log = structlog.get_logger(__name__)

#: Bytes read per source and :meth:`SourceFollower.poll` (keeps each call short).
DEFAULT_MAX_BYTES_PER_POLL = 8 * 1024 * 1024
#: A source is due once this share of its ``poll_interval`` has passed (timer jitter).
_DUE_SHARE = 0.9


# --------------------------------------------------------------------------- public state


@dataclass(frozen=True)
class FileState:
    """One followed file: where it is, how far it was counted, how big it was last seen."""

    path: str
    offset: int
    size: int
    rotated: bool = False  # no longer at a matched path: read until idle, then closed


@dataclass(frozen=True)
class PollStats:
    """What one poll did: bytes read, lines counted (``counts``), whether more is waiting."""

    bytes_read: int = 0
    counts: Counts = field(default_factory=Counts)
    more: bool = False
    checkpointed: bool = False
    pre_deploy: Counts = field(default_factory=Counts)  # the part of ``counts`` before T0


@dataclass(frozen=True)
class SourceState:
    """A source's published state (read by metrics and ``/health``); ``totals`` is a copy."""

    name: str
    up: bool
    error: str | None
    totals: Counts
    rotations: int
    lag_bytes: int
    files: tuple[FileState, ...] = ()
    samples: Mapping[str, list[str]] = field(default_factory=dict)
    checkpoint_error: str | None = None
    polled_at: datetime | None = None
    #: The lines of ``totals`` older than the deployment (a copy).
    pre_deploy: Counts = field(default_factory=Counts)


def _file_state(f: FollowedFile) -> FileState:
    return FileState(
        path=f.path,
        offset=f.offset,
        size=f.reader.seen_size,
        rotated=not f.live,
    )


# --------------------------------------------------------------------------- one source


class SourceFollower:
    """Follows the files of one ``file`` source (see the module docstring): runs a
    :class:`~.discovery.FileDiscovery` and a :class:`~.reader.FileReader` per file, keeps the
    totals, checkpoints and publishes the state."""

    def __init__(
        self,
        source: FileSourceConfig,
        classifier: Classifier,
        store: CheckpointStore,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utcnow,
        samples: Samples | None = None,
        max_bytes_per_poll: int = DEFAULT_MAX_BYTES_PER_POLL,
        deployed_at: Callable[[], datetime | None] | None = None,
    ) -> None:
        self.source = source
        self.name = source.name
        self.classifier = classifier
        self.store = store
        self.samples = (
            samples
            if samples is not None
            else Samples(classifier.classes.samples, classifier.classes.sample_chars)
        )
        self.max_bytes_per_poll = max(1, max_bytes_per_poll)
        self._monotonic = monotonic
        self._wall = wall
        self._chunk = source.read_chunk_bytes
        self._poll_interval = source.poll_interval.total_seconds()
        self._log = log.bind(source=self.name)
        self._lock = threading.Lock()
        self._deployed_at = deployed_at
        self._t0: datetime | None = None
        self._t0_failed = False
        streams = Streams(classifier, self.samples, TimestampReader.for_source(source))
        self._discovery = FileDiscovery(source, streams, self._log)

        self._totals = Counts()
        self._pre = Counts()
        self._started = False
        self._closed = False
        self._next_poll = -math.inf
        self._more = False
        self._polls = 0
        self._problems: list[str] = []
        self._saved: tuple[list[LogFileCheckpoint], dict[str, int]] | None = None
        self._checkpoint_error: str | None = None
        self._was_up: bool | None = None
        self._pub_samples = Samples(self.samples.per_kind, self.samples.chars)
        self._state = SourceState(
            name=self.name,
            up=False,
            error="not polled yet",
            totals=Counts(),
            rotations=0,
            lag_bytes=0,
        )

    # ------------------------------------------------------------------ reading the state

    def state(self) -> SourceState:
        """The state published by the last poll, with its samples (redacted)."""
        return replace(self._state, samples=self._pub_samples.snapshot())

    @property
    def totals(self) -> Counts:
        return self._state.totals.copy()

    @property
    def pre_deploy(self) -> Counts:
        """The lines of :attr:`totals` older than the deployment."""
        return self._state.pre_deploy.copy()

    @property
    def rotations(self) -> int:
        return self._state.rotations

    @property
    def lag_bytes(self) -> int:
        return self._state.lag_bytes

    @property
    def up(self) -> bool:
        return self._state.up

    @property
    def error(self) -> str | None:
        return self._state.error

    @property
    def files(self) -> tuple[FileState, ...]:
        return self._state.files

    def due(self, now: float) -> bool:
        """Whether a poll is due: ``poll_interval`` passed, or the last poll left data."""
        return self._more or now >= self._next_poll

    def next_due(self) -> float:
        """The clock time of the next poll (``-inf`` when more data is waiting)."""
        return -math.inf if self._more else self._next_poll

    # ------------------------------------------------------------------ polling

    def poll(self) -> PollStats:
        """Read what is new (bounded), checkpoint, publish the state. Never raises."""
        with self._lock:
            if self._closed:
                return PollStats()
            now = self._monotonic()
            self._next_poll = now + self._poll_interval * _DUE_SHARE
            self._problems = []
            self._more = False
            self._polls += 1
            delta = Counts()
            pre = Counts()
            bytes_read = 0
            checkpointed = False
            self._read_t0()
            try:
                if not self._started:
                    self._start(now)
                bytes_read = self._poll_files(now, delta, pre)
                self._totals.add(delta)
                self._pre.add(pre)
                checkpointed = self._checkpoint()
            except StateError as exc:  # loading the checkpoint failed: retried next poll
                self._log.warning("log_checkpoint_load_failed", error=str(exc))
                self._reset()
                self._publish(now, failure=f"cannot load the checkpoint: {exc}")
                return PollStats()
            except Exception as exc:  # noqa: BLE001 - never fatal; resume from the checkpoint
                self._log.exception("log_follower_failed")
                self._reset()
                self._publish(now, failure=f"internal error: {exc!r}")
                return PollStats()
            if delta.lines:
                pub = Samples(self.samples.per_kind, self.samples.chars)
                pub.merge(self.samples)
                self._pub_samples = pub
            self._publish(now)
            return PollStats(
                bytes_read=bytes_read,
                counts=delta,
                more=self._more,
                checkpointed=checkpointed,
                pre_deploy=pre,
            )

    def _read_t0(self) -> None:
        """T0 as known now; on failure the previous one is kept (and logged once)."""
        if self._deployed_at is None:
            return
        try:
            self._t0 = self._deployed_at()
        except Exception as exc:  # noqa: BLE001 - the store may fail; keep counting
            if not self._t0_failed:
                self._log.warning("log_deployed_at_failed", error=str(exc))
            self._t0_failed = True
        else:
            self._t0_failed = False

    def close(self) -> None:
        """Close every descriptor (idempotent). The last poll's checkpoint stays valid."""
        with self._lock:
            self._closed = True
            self._reset()

    def _reset(self) -> None:
        self._discovery.reset()
        self._started = False
        self._saved = None

    def _start(self, now: float) -> None:
        """Load the checkpoint: the totals, and the files resumed from their offsets."""
        self._reset()
        cp = self.store.load_log_checkpoint(self.name)
        discovery = self._discovery
        if cp is None:
            self._totals = Counts()
            self._pre = Counts()
            discovery.rotations = 0
        else:
            self._totals = Counts.from_dict({k: int(v) for k, v in cp.counters.items()})
            self._pre = pre_deploy_from_counters(cp.counters)
            discovery.rotations = int(cp.counters.get("rotations", 0))
            for entry in cp.files:
                discovery.resume(entry, now, self._problems)
        self._started = True
        discovery.glob(now, initial=cp is None)
        self._log.info(
            "log_source_started",
            checkpoint=cp is not None,
            files=len(discovery.files),
            lines=self._totals.lines,
        )

    def _poll_files(self, now: float, delta: Counts, pre: Counts) -> int:
        discovery = self._discovery
        discovery.refresh(now, self._problems)
        budget = self.max_bytes_per_poll
        read = 0
        for f in read_order(discovery.files, self._polls):
            n = self._read(f, now, budget, delta, pre)
            read += n
            budget -= n
        if budget <= 0:
            self._more = True
        discovery.close_idle(now, more=self._more, delta=delta, pre=pre)
        return read

    def _read(self, f: FollowedFile, now: float, budget: int, delta: Counts, pre: Counts) -> int:
        """Read up to ``budget`` new bytes of ``f`` into ``delta`` (and its pre-deploy lines
        into ``pre``); the bytes read."""
        if not f.opened:
            return 0
        try:
            self._discovery.check_content(f)
        except OSError as exc:
            self._problems.append(f"{f.path}: {why(exc)}")
            return 0
        read, error = f.reader.read(budget, self._chunk, delta, pre, self._t0)
        if error is not None:
            self._problems.append(f"{f.path}: {why(error)}")
        if read:
            f.last_active = now
        return read

    # ------------------------------------------------------------------ checkpoint, state

    def _checkpoint(self) -> bool:
        files = [f.checkpoint() for f in self._discovery.files]
        counters = {
            **self._totals.to_dict(),
            "rotations": self._discovery.rotations,
            **pre_deploy_counters(self._pre),
        }
        if self._saved is not None and self._saved == (files, counters):
            return False
        try:
            self.store.save_log_checkpoint(self.name, files, counters, now=self._wall())
        except StateError as exc:
            # Memory is ahead of the store; the next successful save catches up (offsets
            # and totals always saved together, so a crash in between re-reads, exactly).
            if self._checkpoint_error is None:
                self._log.warning("log_checkpoint_failed", error=str(exc))
            self._checkpoint_error = str(exc)
            return False
        self._saved = (files, counters)
        self._checkpoint_error = None
        return True

    def _publish(self, now: float, failure: str | None = None) -> None:
        files = self._discovery.files
        opened = [f for f in files if f.opened]
        problems = list(dict.fromkeys(self._discovery.glob_problems + self._problems))
        if failure is not None:
            error: str | None = failure
        elif problems:
            more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
            error = "; ".join(problems[:3]) + more
        elif not any(f.live for f in opened):
            error = self._discovery.absent_reason()
        else:
            error = None
        up = error is None
        if up != self._was_up:
            if up:
                self._log.info("log_source_up", files=len(opened))
            else:
                self._log.warning("log_source_down", error=error)
            self._was_up = up
        self._state = SourceState(
            name=self.name,
            up=up,
            error=error,
            totals=self._totals.copy() if failure is None else self._state.totals,
            pre_deploy=self._pre.copy() if failure is None else self._state.pre_deploy,
            rotations=self._discovery.rotations if failure is None else self._state.rotations,
            lag_bytes=sum(f.reader.seen_size - f.offset for f in opened),
            files=tuple(_file_state(f) for f in files),
            checkpoint_error=self._checkpoint_error,
            polled_at=self._wall(),
        )


# --------------------------------------------------------------------------- all sources


class LogFollower:
    """Every ``file`` source of a :class:`LogsConfig` (``http`` sources are ignored here)."""

    def __init__(
        self,
        logs: LogsConfig,
        legacy_column: str,
        new_column: str,
        store: CheckpointStore,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utcnow,
        max_bytes_per_poll: int = DEFAULT_MAX_BYTES_PER_POLL,
        deployed_at: Callable[[], datetime | None] | None = None,
    ) -> None:
        self._monotonic = monotonic
        self.sources: dict[str, SourceFollower] = {}
        for source in logs.sources:
            if not isinstance(source, FileSourceConfig):
                continue
            classifier = Classifier.for_source(source, legacy_column, new_column, logs.classes)
            self.sources[source.name] = SourceFollower(
                source,
                classifier,
                store,
                monotonic=monotonic,
                wall=wall,
                samples=Samples(logs.classes.samples, logs.classes.sample_chars),
                max_bytes_per_poll=max_bytes_per_poll,
                deployed_at=deployed_at,
            )

    def poll(self) -> float:
        """Poll every source that is due; return the seconds until a poll is next due
        (0.0 when a source has more to read)."""
        now = self._monotonic()
        for follower in self.sources.values():
            if follower.due(now):
                follower.poll()
        return self.next_delay()

    def next_delay(self) -> float:
        if not self.sources:
            return math.inf
        now = self._monotonic()
        return max(0.0, min(f.next_due() for f in self.sources.values()) - now)

    def snapshot(self) -> dict[str, SourceState]:
        """The published state of every source (safe from any thread)."""
        return {name: f.state() for name, f in self.sources.items()}

    def close(self) -> None:
        for follower in self.sources.values():
            follower.close()
