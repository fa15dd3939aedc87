"""Helpers for the ``file`` log follower tests: a line generator that knows the counts of
what it wrote, an injectable monotonic clock, source configurations, followers and appenders
that are closed after each test (:func:`close_opened`).

Real files written by real appenders (``O_APPEND`` descriptors that stay open across a
rename, like an application's), a real SQLite state store, an injected monotonic clock for
the poll / glob / idle timing (no sleeps). Expected counts come from :class:`Gen`, which
knows the classes of every line it writes.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from migration_watch.logs.classify import Classifier, Counts
from migration_watch.logs.config import FileSourceConfig
from migration_watch.logs.follower import SourceFollower
from migration_watch.state import SqliteStateStore

__all__ = [
    "FLAG_NAMES",
    "LEGACY",
    "NEW",
    "T0",
    "TEMPLATES",
    "Clock",
    "Gen",
    "appender",
    "close_opened",
    "drain",
    "make_follower",
    "make_source",
    "source_data",
]

LEGACY, NEW = "customer_id", "organization_id"
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
LONG = b"x" * 400

#: Line templates (``%d`` = sequence number) and the classes each line is in.
TEMPLATES: list[tuple[bytes, tuple[str, ...]]] = [
    (
        b'{"level":"info","msg":"request completed","url":"/rest/v1/t?customer_id=eq.%d",'
        b'"status":200}',
        ("legacy_reference",),
    ),
    (b'{"level":"info","msg":"ok","url":"/rest/v1/t?organization_id=eq.%d"}', ("new_reference",)),
    (
        b'{"level":"error","msg":"column customer_id does not exist","seq":%d,"status":500}',
        ("error", "legacy_reference", "legacy_error"),
    ),
    (b'{"level":"error","msg":"upstream failed","seq":%d}', ("error",)),
    (
        b'{"level":"warn","msg":"organization_id missing, fell back to customer_id","seq":%d}',
        ("legacy_reference", "new_reference", "fallback"),
    ),
    (b'{"level":"info","msg":"plain","seq":%d}', ()),
    (b'{"level":"info","msg":"woocommerce sync","payload":{"customer_id":%d}}', ()),
    (b'{"level":"error","msg":"broken %d"', ("parse_errors",)),
    (
        b'{"level":"error","seq":%d,"msg":"customer_id failed ' + LONG + b'"}',
        ("error", "legacy_reference", "legacy_error", "truncated"),
    ),
]
_WEIGHTS = [30, 25, 5, 5, 3, 25, 3, 2, 2]
FLAG_NAMES = {"parse_error": "parse_errors"}


class Gen:
    """Writes unique lines and keeps the exact counts of what it wrote."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.seq = 0
        self.expected = Counts()

    def line(self) -> bytes:
        template, kinds = self.rng.choices(TEMPLATES, _WEIGHTS)[0]
        self.seq += 1
        line = template % self.seq + b"\n"
        self.expected.lines += 1
        self.expected.bytes += len(line)
        for kind in kinds:
            setattr(self.expected, kind, getattr(self.expected, kind) + 1)
        return line

    def lines(self, n: int) -> bytes:
        return b"".join(self.line() for _ in range(n))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def source_data(directory: Path, **kw: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "app",
        "type": "file",
        "paths": [str(directory / "*.log")],
        "format": "json",
        "start_at": "beginning",
        "fields": {"message": "msg"},
        "max_line_bytes": 256,
        "read_chunk_bytes": 4096,
        "poll_interval": "250ms",
        "glob_interval": "5s",
        "rotated_idle": "30s",
    }
    data.update(kw)
    return data


def make_source(directory: Path, **kw: Any) -> FileSourceConfig:
    return FileSourceConfig.model_validate(source_data(directory, **kw))


_open_now: list[IO[bytes] | SourceFollower] = []


def close_opened() -> None:
    """Close every follower and appender made since the last call."""
    while _open_now:
        _open_now.pop().close()


def make_follower(
    source: FileSourceConfig, store: SqliteStateStore, clock: Clock, **kw: Any
) -> SourceFollower:
    classifier = Classifier.for_source(source, LEGACY, NEW)
    f = SourceFollower(source, classifier, store, monotonic=clock, wall=lambda: T0, **kw)
    _open_now.append(f)
    return f


def appender(path: Path) -> IO[bytes]:
    """An application's log descriptor: O_APPEND, unbuffered, kept open across renames."""
    w = path.open("ab", buffering=0)
    _open_now.append(w)
    return w


def drain(follower: SourceFollower, limit: int = 1000) -> None:
    for _ in range(limit):
        if not follower.poll().more:
            return
    raise AssertionError("follower never caught up")
