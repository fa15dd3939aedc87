"""Which files a ``file`` source follows, and when one of them was rotated.

:class:`FileDiscovery` keeps the known files of one source (:class:`FollowedFile`: a path,
an identity, a :class:`~.reader.FileReader`) and decides, from what the filesystem shows,
what changed:

* new files: the patterns are evaluated every ``glob_interval`` (:func:`expand`); a regular
  file not yet followed is opened (gzip-compressed ones are ignored);
* rotation by rename or replacement: a followed path that is gone or names another inode
  (:func:`rotation_reason`) makes its file *rotated*: it is read on through its descriptor
  until it has been idle for ``rotated_idle`` (:meth:`FileDiscovery.close_idle`), unless the
  patterns match it again under its new name; the path is re-checked on every poll;
* copytruncate or same-inode replacement: a file smaller than what was read, or whose first
  bytes no longer match its fingerprint (:func:`content_change`), is read again from 0;
* start-up: a checkpointed file is looked for at its path, then in its directory, by inode
  and fingerprint (:meth:`FileDiscovery.resume`).

Identity is the device and inode plus a fingerprint ``"<n>:<blake2b-128 of the first n
bytes>"`` (n up to ``fingerprint_bytes``, growing with the file). Every rotation found is
counted in :attr:`FileDiscovery.rotations`. The decisions are plain functions of what was
seen (:func:`rotation_reason`, :func:`content_change`, :func:`is_idle`, :func:`read_order`,
:func:`find_followed`); the class does the system calls and logs what it decided.
"""

from __future__ import annotations

import enum
import glob
import hashlib
import math
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from migration_watch.state import LogFileCheckpoint

from .config import FileSourceConfig
from .counts import Counts
from .reader import FileReader, Streams, close_fd, tail_start

__all__ = [
    "GZIP_MAGIC",
    "OPEN_FLAGS",
    "Change",
    "FileDiscovery",
    "FollowedFile",
    "content_change",
    "expand",
    "find_followed",
    "fingerprint",
    "fingerprint_length",
    "fingerprint_matches",
    "is_idle",
    "read_order",
    "rotation_reason",
    "why",
]

GZIP_MAGIC = b"\x1f\x8b"
OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)

Key = tuple[int, int]


# --------------------------------------------------------------------------- identity


def fingerprint(fd: int, nbytes: int) -> tuple[str, int]:
    """The fingerprint of the first ``nbytes`` of ``fd`` and how many bytes it covers."""
    data = os.pread(fd, nbytes, 0) if nbytes > 0 else b""
    return f"{len(data)}:{hashlib.blake2b(data, digest_size=16).hexdigest()}", len(data)


def fingerprint_length(fp: str) -> int | None:
    """The number of bytes ``fp`` covers; None when it is not a fingerprint."""
    head, sep, _ = fp.partition(":")
    return int(head) if sep and head.isdigit() else None


def fingerprint_matches(fd: int, fp: str) -> bool:
    """Whether the file ``fd`` still begins with the bytes ``fp`` was made of."""
    n = fingerprint_length(fp)
    if n is None:
        return False
    got_fp, got = fingerprint(fd, n)
    return got == n and got_fp == fp


def why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


class FollowedFile:
    """A known file: where it is (``path``; ``live`` while at a matched path), who it is
    (device, inode, fingerprint) and how far it was read (``reader``)."""

    __slots__ = ("dev", "fingerprint", "fp_len", "ino", "last_active", "live", "path", "reader")

    def __init__(
        self,
        *,
        path: str,
        dev: int,
        ino: int,
        fingerprint: str,
        reader: FileReader,
        live: bool,
        now: float,
    ) -> None:
        self.path = path
        self.dev = dev
        self.ino = ino
        self.fingerprint = fingerprint
        self.fp_len = fingerprint_length(fingerprint) or 0
        self.reader = reader
        self.live = live
        self.last_active = now

    @property
    def key(self) -> Key:
        return (self.dev, self.ino)

    @property
    def opened(self) -> bool:
        return self.reader.fd is not None

    @property
    def offset(self) -> int:
        return self.reader.offset

    def checkpoint(self) -> LogFileCheckpoint:
        return LogFileCheckpoint(
            path=self.path,
            inode=self.ino,
            fingerprint=self.fingerprint,
            offset=self.offset,
            device=self.dev,
            extra=self.reader.extra(rotated=not self.live),
        )


# --------------------------------------------------------------------------- decisions


class Change(enum.Enum):
    """What :func:`content_change` saw in a followed file's content."""

    NONE = "none"
    #: Smaller than what was read, or other first bytes: read it again from 0.
    TRUNCATED = "truncated"
    #: Grown while its fingerprint covers fewer than ``fingerprint_bytes``: take a longer one.
    LONGER_FINGERPRINT = "longer_fingerprint"


def rotation_reason(key: Key, seen: Key | None) -> str | None:
    """Why the file followed as ``key`` is no longer the one at its path, which now shows
    ``seen`` (None: nothing there); None while it still is."""
    if seen is None:
        return "removed or renamed"
    if seen != key:
        return "replaced"
    return None


def content_change(
    *,
    position: int,
    size: int,
    mtime_ns: int,
    new_size: int,
    new_mtime_ns: int,
    fp_len: int,
    fp_bytes: int,
    same_start: Callable[[], bool],
) -> Change:
    """Compare a file's ``(size, mtime)`` with the last seen, ``position`` read.

    ``same_start`` (whether its first bytes still match the fingerprint, which costs a read)
    is called only when the size or mtime changed.
    """
    changed = (new_size, new_mtime_ns) != (size, mtime_ns)
    if new_size < position or (changed and not same_start()):
        return Change.TRUNCATED
    if changed and fp_len < fp_bytes and new_size > fp_len:
        return Change.LONGER_FINGERPRINT
    return Change.NONE


def is_idle(f: FollowedFile, now: float, rotated_idle: float, *, more: bool) -> bool:
    """Whether a rotated file is done with: read to its end, nothing added for
    ``rotated_idle`` and no source budget left unread (``more``)."""
    return f.opened and f.reader.caught_up and now - f.last_active >= rotated_idle and not more


def read_order(files: Sequence[FollowedFile], polls: int) -> list[FollowedFile]:
    """Rotated files first (they are going away), then the live ones round-robin by poll
    number, so that a busy file does not starve the others."""
    rotated = [f for f in files if not f.live]
    live = [f for f in files if f.live]
    if live:
        k = polls % len(live)
        live = live[k:] + live[:k]
    return rotated + live


def find_followed(files: Sequence[FollowedFile], key: Key) -> FollowedFile | None:
    """The opened file among ``files`` with identity ``key``."""
    for f in files:
        if f.key == key and f.opened:
            return f
    return None


# --------------------------------------------------------------------------- filesystem


def expand(patterns: Sequence[str]) -> list[str]:
    """The paths the patterns match: each pattern's sorted, first occurrence kept."""
    out: dict[str, None] = {}
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.expanduser(pattern), recursive=True)):
            out.setdefault(path, None)
    return list(out)


def absent_reason(patterns: Sequence[str]) -> str:
    """Why no file is followed: a missing directory or no file matching, per pattern."""
    reasons = []
    for pattern in patterns:
        directory = os.path.dirname(os.path.expanduser(pattern))
        while glob.has_magic(directory):
            directory = os.path.dirname(directory)
        if directory and not os.path.isdir(directory):
            reasons.append(f"directory {directory} does not exist")
        else:
            reasons.append(f"no file matches {pattern}")
    return "; ".join(reasons)


def _renamed_to(path: str, key: Key) -> str | None:
    """The path in ``path``'s directory of the file with identity ``key``."""
    try:
        with os.scandir(os.path.dirname(path) or ".") as it:
            for e in it:
                try:
                    st = e.stat()
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) == key:
                    return e.path
    except OSError:
        return None
    return None


def _candidates(entry: LogFileCheckpoint) -> Iterator[str]:
    """The checkpointed path, then the files of its directory with the same inode."""
    yield entry.path
    try:
        with os.scandir(os.path.dirname(entry.path) or ".") as it:
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


# --------------------------------------------------------------------------- one source


class FileDiscovery:
    """The known files of one source, found and followed across rotations (see above).

    ``problems`` lists given to the methods collect what failed (a path and why).
    """

    def __init__(self, source: FileSourceConfig, streams: Streams, log: Any) -> None:
        self.source = source
        self.streams = streams
        self._log = log
        self._glob_interval = source.glob_interval.total_seconds()
        self._rotated_idle = source.rotated_idle.total_seconds()
        self._fp_bytes = source.fingerprint_bytes
        self.files: list[FollowedFile] = []
        self.rotations = 0
        #: What failed at the last evaluation of the patterns.
        self.glob_problems: list[str] = []
        self._recheck: set[str] = set()
        self._ignored: set[Key] = set()
        self._next_glob = -math.inf

    def reset(self) -> None:
        """Close and forget every file; the patterns are evaluated at the next refresh."""
        for f in self.files:
            f.reader.close()
        self.files = []
        self._recheck.clear()
        self._next_glob = -math.inf

    def absent_reason(self) -> str:
        return absent_reason(self.source.paths)

    # ------------------------------------------------------------------ each poll

    def refresh(self, now: float, problems: list[str]) -> None:
        """Evaluate the patterns when due, detach the files no longer at their path and
        follow what is at a path left by a rotation."""
        if now >= self._next_glob:
            self.glob(now)
        for f in list(self.files):
            if f.live and f.opened:
                self._check_path(f, now, problems)
        for path in sorted(self._recheck):
            if self._attach(path, now, tail=False, problems=problems):
                self._recheck.discard(path)

    def check_content(self, f: FollowedFile) -> None:
        """``fstat`` an opened file: truncated or replaced in place, it is read again from 0
        (a rotation); grown, its fingerprint may take more bytes. Raises OSError."""
        r = f.reader
        fd = r.fd
        assert fd is not None
        st = os.fstat(fd)
        size = st.st_size
        change = content_change(
            position=r.position,
            size=r.size,
            mtime_ns=r.mtime_ns,
            new_size=size,
            new_mtime_ns=st.st_mtime_ns,
            fp_len=f.fp_len,
            fp_bytes=self._fp_bytes,
            same_start=lambda: fingerprint_matches(fd, f.fingerprint),
        )
        if change is Change.TRUNCATED:
            self.rotations += 1
            self._log.info("log_file_truncated", path=f.path, offset=f.offset, size=size)
            r.restart(self.streams.new())
            f.fingerprint, f.fp_len = fingerprint(fd, min(size, self._fp_bytes))
        elif change is Change.LONGER_FINGERPRINT:
            f.fingerprint, f.fp_len = fingerprint(fd, min(size, self._fp_bytes))
        r.size, r.mtime_ns = size, st.st_mtime_ns

    def close_idle(self, now: float, *, more: bool, delta: Counts, pre: Counts) -> None:
        """Close the rotated files idle for ``rotated_idle``, their partial line counted."""
        idle = [
            f for f in self.files if not f.live and is_idle(f, now, self._rotated_idle, more=more)
        ]
        if not idle:
            return
        self.glob(now)  # one matched again under its new name stays followed
        for f in idle:
            if f.live or f not in self.files:
                continue
            f.reader.flush(delta, pre)
            f.reader.close()
            self.files.remove(f)
            self._log.info("log_file_closed", path=f.path, offset=f.reader.position, reason="idle")

    # ------------------------------------------------------------------ the patterns

    def glob(self, now: float, *, initial: bool = False) -> None:
        """Evaluate the patterns: attach known files to their paths, open new ones."""
        self._next_glob = now + self._glob_interval
        self._recheck.clear()
        problems: list[str] = []
        for f in self.files:
            if not f.opened:
                self._reopen(f, problems)
        tail = initial and self.source.start_at == "end"
        for path in expand(self.source.paths):
            self._attach(path, now, tail=tail, problems=problems)
        self.glob_problems = problems

    def _attach(self, path: str, now: float, *, tail: bool, problems: list[str]) -> bool:
        """Make the file at ``path`` followed there; False when there is none (yet)."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            problems.append(f"{path}: {why(exc)}")
            return False
        if not stat.S_ISREG(st.st_mode):
            return False
        f = find_followed(self.files, (st.st_dev, st.st_ino))
        if f is None:
            self._open_new(path, now, tail=tail, problems=problems)
        elif not f.live:  # a rotated file under a matched name again
            f.live = True
            f.path = path
        return True

    def _open_new(self, path: str, now: float, *, tail: bool, problems: list[str]) -> None:
        try:
            fd = os.open(path, OPEN_FLAGS)
        except FileNotFoundError:
            return
        except OSError as exc:
            problems.append(f"{path}: {why(exc)}")
            return
        try:
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino)
            if not stat.S_ISREG(st.st_mode) or any(f.key == key for f in self.files):
                close_fd(fd)
                return
            if os.pread(fd, 2, 0) == GZIP_MAGIC:
                if key not in self._ignored:
                    self._ignored.add(key)
                    self._log.info("log_file_ignored", path=path, reason="gzip-compressed")
                close_fd(fd)
                return
            fp, _ = fingerprint(fd, min(st.st_size, self._fp_bytes))
            max_line = self.streams.classifier.max_line_bytes
            position, skipping = tail_start(fd, st.st_size, max_line) if tail else (0, False)
        except OSError as exc:
            close_fd(fd)
            problems.append(f"{path}: {why(exc)}")
            return
        reader = FileReader(
            fd,
            position,
            self.streams.new(skipping=skipping),
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
        )
        self.files.append(
            FollowedFile(
                path=path,
                dev=st.st_dev,
                ino=st.st_ino,
                fingerprint=fp,
                reader=reader,
                live=True,
                now=now,
            )
        )
        self._log.info("log_file_opened", path=path, offset=position, size=st.st_size)

    def _reopen(self, f: FollowedFile, problems: list[str]) -> None:
        """Retry a checkpointed file that could not be opened."""
        try:
            fd = os.open(f.path, OPEN_FLAGS)
        except FileNotFoundError:
            self._lost(f)
            return
        except OSError as exc:
            problems.append(f"{f.path}: {why(exc)}")
            return
        try:
            st = os.fstat(fd)
            same = st.st_ino == f.ino and fingerprint_matches(fd, f.fingerprint)
        except OSError:
            same = False
        if not same:
            close_fd(fd)
            self._lost(f)
            return
        f.dev = st.st_dev
        f.reader.fd, f.reader.size, f.reader.mtime_ns = fd, st.st_size, st.st_mtime_ns

    def _lost(self, f: FollowedFile) -> None:
        self.files.remove(f)
        self._log.warning("log_file_lost", path=f.path, offset=f.offset)

    # ------------------------------------------------------------------ rotation

    def _check_path(self, f: FollowedFile, now: float, problems: list[str]) -> None:
        try:
            st = os.stat(f.path)
        except FileNotFoundError:
            seen = None
        except OSError as exc:
            problems.append(f"{f.path}: {why(exc)}")
            return
        else:
            seen = (st.st_dev, st.st_ino)
        reason = rotation_reason(f.key, seen)
        if reason is not None:
            self._detach(f, now, reason)

    def _detach(self, f: FollowedFile, now: float, reason: str) -> None:
        old = f.path
        f.live = False
        f.last_active = now
        self.rotations += 1
        self._recheck.add(old)
        renamed = _renamed_to(f.path, f.key)
        if renamed is not None:
            f.path = renamed
        self._log.info(
            "log_file_rotated", path=old, renamed_to=renamed, reason=reason, offset=f.offset
        )

    # ------------------------------------------------------------------ start-up

    def resume(self, entry: LogFileCheckpoint, now: float, problems: list[str]) -> None:
        """Find a checkpointed file (at its path or renamed in its directory) and follow it
        on from its offset; one that cannot be opened yet keeps its offset."""
        if fingerprint_length(entry.fingerprint) is None:
            self._log.warning("log_checkpoint_invalid", path=entry.path)
            return
        found = _open_checkpointed(entry, self.files)
        if isinstance(found, OSError):
            # Keep its position until it can be read: reading it later from 0 would
            # count its lines twice.
            problems.append(f"{entry.path}: {why(found)}")
            path, dev, live = entry.path, entry.device, not entry.extra.get("rotated", False)
            reader = FileReader(None, entry.offset, self.streams.resumed(entry.extra))
        elif found is not None:
            path, fd, st = found
            dev, live = st.st_dev, False  # the glob that follows marks it live if it matches
            reader = FileReader(
                fd,
                entry.offset,
                self.streams.resumed(entry.extra),
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
            )
        else:
            self._log.warning(
                "log_file_lost",
                path=entry.path,
                offset=entry.offset,
                reason="not at its path nor in its directory (deleted or moved elsewhere)",
            )
            return
        f = FollowedFile(
            path=path,
            dev=dev,
            ino=entry.inode,
            fingerprint=entry.fingerprint,
            reader=reader,
            live=live,
            now=now,
        )
        if path != entry.path:
            self.rotations += 1
            self._log.info(
                "log_file_found_rotated", path=entry.path, renamed_to=path, offset=f.offset
            )
        self.files.append(f)


def _open_checkpointed(
    entry: LogFileCheckpoint, files: Sequence[FollowedFile]
) -> tuple[str, int, os.stat_result] | OSError | None:
    """Open the file of ``entry``: ``(path, fd, stat)`` of the first candidate that is a
    regular file with its inode and fingerprint, not already followed; else the error that
    kept a candidate from being opened, or None (not found)."""
    denied: OSError | None = None
    for path in _candidates(entry):
        try:
            fd = os.open(path, OPEN_FLAGS)
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
                and fingerprint_matches(fd, entry.fingerprint)
                and all(f.key != (st.st_dev, st.st_ino) for f in files)
            )
        except OSError:
            same = False
        if same:
            return path, fd, st
        close_fd(fd)
    return denied
