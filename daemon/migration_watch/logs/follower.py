"""Continuous, exactly-once following of ``file`` log sources.

:class:`SourceFollower` follows one ``file`` source, :class:`LogFollower` every file source of
a :class:`~.config.LogsConfig`. Both are synchronous and start no thread: the service calls
:meth:`LogFollower.poll` on a short timer, tests call it with an injected monotonic clock.

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

import glob
import hashlib
import math
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

import structlog

from migration_watch.errors import StateError
from migration_watch.state import CheckpointStore, LogFileCheckpoint

from ..clock import utcnow
from .classify import Classifier, Counts, Samples
from .config import FileSourceConfig, LogsConfig
from .deploy import DeployGate, TimestampReader, pre_deploy_counters, pre_deploy_from_counters
from .scanner import LineStream

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
_GZIP_MAGIC = b"\x1f\x8b"
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
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


# --------------------------------------------------------------------------- fingerprints


def _fingerprint(fd: int, nbytes: int) -> tuple[str, int]:
    data = os.pread(fd, nbytes, 0) if nbytes > 0 else b""
    return f"{len(data)}:{hashlib.blake2b(data, digest_size=16).hexdigest()}", len(data)


def _fp_len(fingerprint: str) -> int | None:
    head, sep, _ = fingerprint.partition(":")
    return int(head) if sep and head.isdigit() else None


def _fp_matches(fd: int, fingerprint: str) -> bool:
    n = _fp_len(fingerprint)
    if n is None:
        return False
    fp, got = _fingerprint(fd, n)
    return got == n and fp == fingerprint


def _close(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


# --------------------------------------------------------------------------- one file


class _File:
    """A followed file. ``fd`` is None for a checkpointed file that cannot be opened yet."""

    __slots__ = (
        "dev",
        "fd",
        "fingerprint",
        "fp_len",
        "ino",
        "last_active",
        "live",
        "mtime_ns",
        "path",
        "position",
        "size",
        "stream",
    )

    def __init__(
        self,
        *,
        path: str,
        fd: int | None,
        dev: int,
        ino: int,
        fingerprint: str,
        position: int,
        stream: LineStream,
        live: bool,
        now: float,
        size: int = 0,
        mtime_ns: int = 0,
    ) -> None:
        self.path = path
        self.fd = fd
        self.dev = dev
        self.ino = ino
        self.fingerprint = fingerprint
        self.fp_len = _fp_len(fingerprint) or 0
        self.position = position
        self.stream = stream
        self.live = live
        self.last_active = now
        self.size = size
        self.mtime_ns = mtime_ns

    @property
    def key(self) -> tuple[int, int]:
        return (self.dev, self.ino)

    @property
    def offset(self) -> int:
        """Where counting resumes: the held-back partial line is read again."""
        return self.position - self.stream.pending

    def checkpoint(self) -> LogFileCheckpoint:
        stream = self.stream
        extra: dict[str, bool | int] = {}
        if stream.skipping:
            extra["skipping"] = True
            if stream.skipping_pre:
                extra["skipping_pre"] = True
        if not self.live:
            extra["rotated"] = True
        if stream.gate is not None and stream.gate.passed is not None:
            extra["t0_passed"] = stream.gate.passed
        return LogFileCheckpoint(
            path=self.path,
            inode=self.ino,
            fingerprint=self.fingerprint,
            offset=self.offset,
            device=self.dev,
            extra=extra,
        )

    def state(self) -> FileState:
        return FileState(
            path=self.path,
            offset=self.offset,
            size=max(self.size, self.position),
            rotated=not self.live,
        )


# --------------------------------------------------------------------------- one source


class SourceFollower:
    """Follows the files of one ``file`` source (see the module docstring)."""

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
        self._glob_interval = source.glob_interval.total_seconds()
        self._rotated_idle = source.rotated_idle.total_seconds()
        self._fp_bytes = source.fingerprint_bytes
        self._log = log.bind(source=self.name)
        self._lock = threading.Lock()
        self._deployed_at = deployed_at
        self._t0: datetime | None = None
        self._t0_failed = False
        self._reader = TimestampReader.for_source(source)

        self._files: list[_File] = []
        self._recheck: set[str] = set()
        self._ignored: set[tuple[int, int]] = set()
        self._totals = Counts()
        self._pre = Counts()
        self._rotations = 0
        self._started = False
        self._closed = False
        self._next_glob = -math.inf
        self._next_poll = -math.inf
        self._more = False
        self._polls = 0
        self._glob_problems: list[str] = []
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
        for f in self._files:
            _close(f.fd)
        self._files = []
        self._recheck.clear()
        self._started = False
        self._saved = None
        self._next_glob = -math.inf

    # ------------------------------------------------------------------ start-up

    def _start(self, now: float) -> None:
        self._reset()
        cp = self.store.load_log_checkpoint(self.name)
        if cp is None:
            self._totals = Counts()
            self._pre = Counts()
            self._rotations = 0
        else:
            self._totals = Counts.from_dict({k: int(v) for k, v in cp.counters.items()})
            self._pre = pre_deploy_from_counters(cp.counters)
            self._rotations = int(cp.counters.get("rotations", 0))
            for entry in cp.files:
                self._resume(entry, now)
        self._started = True
        self._glob(now, initial=cp is None)
        self._log.info(
            "log_source_started",
            checkpoint=cp is not None,
            files=len(self._files),
            lines=self._totals.lines,
        )

    def _candidates(self, entry: LogFileCheckpoint) -> Iterator[str]:
        """The checkpointed path, then the files of its directory with the same inode."""
        yield entry.path
        directory = os.path.dirname(entry.path) or "."
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError:
            return
        for e in entries:
            if e.path == entry.path:
                continue
            try:
                if e.is_file() and e.stat().st_ino == entry.inode:
                    yield e.path
            except OSError:
                continue

    def _resume(self, entry: LogFileCheckpoint, now: float) -> None:
        """Find a checkpointed file (at its path or renamed in its directory) and resume it."""
        if _fp_len(entry.fingerprint) is None:
            self._log.warning("log_checkpoint_invalid", path=entry.path)
            return
        denied: OSError | None = None
        for path in self._candidates(entry):
            try:
                fd = os.open(path, _OPEN_FLAGS)
            except FileNotFoundError:
                continue
            except OSError as exc:
                denied = exc
                continue
            try:
                st = os.fstat(fd)
                same = (
                    stat.S_ISREG(st.st_mode)
                    and st.st_ino == entry.inode
                    and _fp_matches(fd, entry.fingerprint)
                    and all(f.key != (st.st_dev, st.st_ino) for f in self._files)
                )
            except OSError:
                same = False
            if not same:
                _close(fd)
                continue
            f = _File(
                path=path,
                fd=fd,
                dev=st.st_dev,
                ino=st.st_ino,
                fingerprint=entry.fingerprint,
                position=entry.offset,
                stream=self._resumed_stream(entry),
                live=False,  # the glob that follows marks it live if a pattern matches it
                now=now,
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
            )
            if path != entry.path:
                self._rotations += 1
                self._log.info(
                    "log_file_found_rotated", path=entry.path, renamed_to=path, offset=f.offset
                )
            self._files.append(f)
            return
        if denied is not None:
            # Keep its position until it can be read: reading it later from 0 would
            # count its lines twice.
            self._problems.append(f"{entry.path}: {_why(denied)}")
            self._files.append(
                _File(
                    path=entry.path,
                    fd=None,
                    dev=entry.device,
                    ino=entry.inode,
                    fingerprint=entry.fingerprint,
                    position=entry.offset,
                    stream=self._resumed_stream(entry),
                    live=not entry.extra.get("rotated", False),
                    now=now,
                )
            )
            return
        self._log.warning(
            "log_file_lost",
            path=entry.path,
            offset=entry.offset,
            reason="not at its path nor in its directory (deleted or moved elsewhere)",
        )

    def _stream(
        self, *, skipping: bool = False, skipping_pre: bool = False, passed: int | None = None
    ) -> LineStream:
        return LineStream(
            self.classifier,
            samples=self.samples,
            skipping=skipping,
            skipping_pre=skipping_pre,
            gate=DeployGate(
                self._reader,
                ordered=True,
                passed=passed,
                max_line_bytes=self.classifier.max_line_bytes,
            ),
        )

    def _resumed_stream(self, entry: LogFileCheckpoint) -> LineStream:
        passed = entry.extra.get("t0_passed")
        return self._stream(
            skipping=bool(entry.extra.get("skipping", False)),
            skipping_pre=bool(entry.extra.get("skipping_pre", False)),
            passed=int(passed) if isinstance(passed, int | float) else None,
        )

    # ------------------------------------------------------------------ discovery

    def _matches(self) -> list[str]:
        out: dict[str, None] = {}
        for pattern in self.source.paths:
            for path in sorted(glob.glob(os.path.expanduser(pattern), recursive=True)):
                out.setdefault(path, None)
        return list(out)

    def _glob(self, now: float, *, initial: bool = False) -> None:
        """Evaluate the patterns: attach known files to their paths, open new ones."""
        self._next_glob = now + self._glob_interval
        self._recheck.clear()
        problems: list[str] = []
        for f in self._files:
            if f.fd is None:
                self._reopen(f, problems)
        tail = initial and self.source.start_at == "end"
        for path in self._matches():
            self._attach(path, now, tail=tail, problems=problems)
        self._glob_problems = problems

    def _attach(self, path: str, now: float, *, tail: bool, problems: list[str]) -> bool:
        """Make the file at ``path`` followed there; False when there is none (yet)."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            problems.append(f"{path}: {_why(exc)}")
            return False
        if not stat.S_ISREG(st.st_mode):
            return False
        key = (st.st_dev, st.st_ino)
        for f in self._files:
            if f.key == key and f.fd is not None:
                if not f.live:  # a rotated file under a matched name again
                    f.live = True
                    f.path = path
                return True
        self._open_new(path, now, tail=tail, problems=problems)
        return True

    def _open_new(self, path: str, now: float, *, tail: bool, problems: list[str]) -> None:
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            return
        except OSError as exc:
            problems.append(f"{path}: {_why(exc)}")
            return
        try:
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino)
            if not stat.S_ISREG(st.st_mode) or any(f.key == key for f in self._files):
                _close(fd)
                return
            if os.pread(fd, 2, 0) == _GZIP_MAGIC:
                if key not in self._ignored:
                    self._ignored.add(key)
                    self._log.info("log_file_ignored", path=path, reason="gzip-compressed")
                _close(fd)
                return
            fingerprint, _ = _fingerprint(fd, min(st.st_size, self._fp_bytes))
            position, skipping = self._tail_start(fd, st.st_size) if tail else (0, False)
        except OSError as exc:
            _close(fd)
            problems.append(f"{path}: {_why(exc)}")
            return
        f = _File(
            path=path,
            fd=fd,
            dev=st.st_dev,
            ino=st.st_ino,
            fingerprint=fingerprint,
            position=position,
            stream=self._stream(skipping=skipping),
            live=True,
            now=now,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
        )
        self._files.append(f)
        self._log.info("log_file_opened", path=path, offset=position, size=st.st_size)

    def _tail_start(self, fd: int, size: int) -> tuple[int, bool]:
        """``start_at: end``: after the last complete line (offset, skipping)."""
        if size == 0:
            return 0, False
        window = min(size, self.classifier.max_line_bytes + 1)
        tail = os.pread(fd, window, size - window)
        nl = tail.rfind(b"\n")
        if nl >= 0:
            return size - window + nl + 1, False
        if window == size:  # one partial line: count it when its newline arrives
            return 0, False
        return size, True  # inside an overlong line begun earlier: skip its rest

    def _reopen(self, f: _File, problems: list[str]) -> None:
        """Retry a checkpointed file that could not be opened."""
        try:
            fd = os.open(f.path, _OPEN_FLAGS)
        except FileNotFoundError:
            self._files.remove(f)
            self._log.warning("log_file_lost", path=f.path, offset=f.offset)
            return
        except OSError as exc:
            problems.append(f"{f.path}: {_why(exc)}")
            return
        try:
            st = os.fstat(fd)
            same = st.st_ino == f.ino and _fp_matches(fd, f.fingerprint)
        except OSError:
            same = False
        if not same:
            _close(fd)
            self._files.remove(f)
            self._log.warning("log_file_lost", path=f.path, offset=f.offset)
            return
        f.fd, f.dev, f.size, f.mtime_ns = fd, st.st_dev, st.st_size, st.st_mtime_ns

    def _find_renamed(self, f: _File) -> str | None:
        directory = os.path.dirname(f.path) or "."
        try:
            with os.scandir(directory) as it:
                for e in it:
                    try:
                        st = e.stat()
                    except OSError:
                        continue
                    if (st.st_dev, st.st_ino) == f.key:
                        return e.path
        except OSError:
            return None
        return None

    # ------------------------------------------------------------------ one poll

    def _poll_files(self, now: float, delta: Counts, pre: Counts) -> int:
        if now >= self._next_glob:
            self._glob(now)
        for f in list(self._files):
            if f.live and f.fd is not None:
                self._check_path(f, now)
        for path in sorted(self._recheck):
            if self._attach(path, now, tail=False, problems=self._problems):
                self._recheck.discard(path)

        rotated = [f for f in self._files if not f.live]
        live = [f for f in self._files if f.live]
        if live:  # round-robin: a busy file does not starve the others
            k = self._polls % len(live)
            live = live[k:] + live[:k]
        budget = self.max_bytes_per_poll
        read = 0
        for f in rotated + live:
            n = self._read(f, now, budget, delta, pre)
            read += n
            budget -= n
        if budget <= 0:
            self._more = True

        idle = [f for f in rotated if self._idle(f, now)]
        if idle:
            self._glob(now)  # one matched again under its new name stays followed
            for f in idle:
                if f.live or f not in self._files:
                    continue
                f.stream.flush(delta, pre)
                _close(f.fd)
                f.fd = None
                self._files.remove(f)
                self._log.info("log_file_closed", path=f.path, offset=f.position, reason="idle")
        return read

    def _idle(self, f: _File, now: float) -> bool:
        return (
            f.fd is not None
            and f.position >= f.size
            and now - f.last_active >= self._rotated_idle
            and not self._more
        )

    def _check_path(self, f: _File, now: float) -> None:
        try:
            st = os.stat(f.path)
        except FileNotFoundError:
            self._detach(f, now, "removed or renamed")
            return
        except OSError as exc:
            self._problems.append(f"{f.path}: {_why(exc)}")
            return
        if (st.st_dev, st.st_ino) != f.key:
            self._detach(f, now, "replaced")

    def _detach(self, f: _File, now: float, reason: str) -> None:
        old = f.path
        f.live = False
        f.last_active = now
        self._rotations += 1
        self._recheck.add(old)
        renamed = self._find_renamed(f)
        if renamed is not None:
            f.path = renamed
        self._log.info(
            "log_file_rotated", path=old, renamed_to=renamed, reason=reason, offset=f.offset
        )

    def _read(self, f: _File, now: float, budget: int, delta: Counts, pre: Counts) -> int:
        """Read up to ``budget`` new bytes of ``f`` into ``delta`` (and its pre-deploy lines
        into ``pre``); the bytes read."""
        if f.fd is None:
            return 0
        fd = f.fd
        try:
            st = os.fstat(fd)
            size = st.st_size
            changed = (size, st.st_mtime_ns) != (f.size, f.mtime_ns)
            if size < f.position or (changed and not _fp_matches(fd, f.fingerprint)):
                self._truncated(f, fd, size)
            elif changed and f.fp_len < self._fp_bytes and size > f.fp_len:
                f.fingerprint, f.fp_len = _fingerprint(fd, min(size, self._fp_bytes))
            f.size, f.mtime_ns = size, st.st_mtime_ns
        except OSError as exc:
            self._problems.append(f"{f.path}: {_why(exc)}")
            return 0
        stream = f.stream
        if stream.gate is not None:
            stream.gate.set_t0(self._t0)
        read = 0
        while read < budget:
            want = min(self._chunk, budget - read)
            try:
                data = os.pread(fd, want, f.position)
            except OSError as exc:
                self._problems.append(f"{f.path}: {_why(exc)}")
                break
            if not data:
                break
            f.position += len(data)
            read += len(data)
            stream.feed(data, delta, pre)
            f.last_active = now
            if len(data) < want:
                break
        f.size = max(f.size, f.position)
        return read

    def _truncated(self, f: _File, fd: int, size: int) -> None:
        self._rotations += 1
        self._log.info("log_file_truncated", path=f.path, offset=f.offset, size=size)
        f.position = 0
        f.stream = self._stream()
        f.fingerprint, f.fp_len = _fingerprint(fd, min(size, self._fp_bytes))

    # ------------------------------------------------------------------ checkpoint, state

    def _checkpoint(self) -> bool:
        files = [f.checkpoint() for f in self._files]
        counters = {
            **self._totals.to_dict(),
            "rotations": self._rotations,
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

    def _absent_reason(self) -> str:
        reasons = []
        for pattern in self.source.paths:
            directory = os.path.dirname(os.path.expanduser(pattern))
            while glob.has_magic(directory):
                directory = os.path.dirname(directory)
            if directory and not os.path.isdir(directory):
                reasons.append(f"directory {directory} does not exist")
            else:
                reasons.append(f"no file matches {pattern}")
        return "; ".join(reasons)

    def _publish(self, now: float, failure: str | None = None) -> None:
        opened = [f for f in self._files if f.fd is not None]
        problems = list(dict.fromkeys(self._glob_problems + self._problems))
        if failure is not None:
            error: str | None = failure
        elif problems:
            more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
            error = "; ".join(problems[:3]) + more
        elif not any(f.live for f in opened):
            error = self._absent_reason()
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
            rotations=self._rotations if failure is None else self._state.rotations,
            lag_bytes=sum(max(f.size, f.position) - f.offset for f in opened),
            files=tuple(f.state() for f in self._files),
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
