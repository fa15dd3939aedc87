"""File following: rotation, copytruncate, restarts, SIGKILL — counted exactly once.

Real files written by real appenders (``O_APPEND`` descriptors that stay open across a
rename, like an application's), a real SQLite state store, an injected monotonic clock for
the poll / glob / idle timing (no sleeps). Expected counts come from :class:`Gen`, which
knows the classes of every line it writes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from migration_watch.logs.classify import _FLAG_KINDS, Classifier, Counts
from migration_watch.logs.config import FileSourceConfig, LogsConfig
from migration_watch.logs.follower import LogFollower, SourceFollower
from migration_watch.logs.scanner import LineStream
from migration_watch.state import SqliteStateStore

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
_FLAG_NAMES = {"parse_error": "parse_errors"}


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


@pytest.fixture(autouse=True)
def _close_everything() -> Iterator[None]:
    yield
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


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    return d


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStateStore]:
    s = SqliteStateStore(tmp_path / "state.sqlite")
    yield s
    s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


# --------------------------------------------------------------------------- the generator


def test_templates_are_classified_as_the_generator_says() -> None:
    classifier = Classifier.for_source(make_source(Path("/nonexistent")), LEGACY, NEW)
    for template, kinds in TEMPLATES:
        flags = classifier.classify_line(template % 123)
        got = {_FLAG_NAMES.get(k, k) for flag, k in _FLAG_KINDS if flags & flag}
        assert got == set(kinds), template


# --------------------------------------------------------------------------- basics


def test_a_line_appended_is_counted_by_the_next_poll(
    logdir: Path, store: SqliteStateStore, clock: Clock
) -> None:
    gen = Gen(1)
    w = appender(logdir / "app.log")
    w.write(gen.lines(50))
    f = make_follower(make_source(logdir), store, clock)
    stats = f.poll()
    assert stats.counts.lines == 50
    assert stats.checkpointed
    assert f.totals == gen.expected
    assert f.up and f.error is None and f.lag_bytes == 0
    clock.advance(0.25)
    w.write(gen.line())
    assert f.poll().counts.lines == 1
    assert f.totals == gen.expected
    clock.advance(0.25)
    assert f.poll().checkpointed is False  # nothing new: no write to the store
    cp = store.load_log_checkpoint("app")
    assert cp is not None
    assert cp.counters["lines"] == gen.expected.lines
    assert cp.counters["rotations"] == 0
    [entry] = cp.files
    assert entry.path == str(logdir / "app.log")
    assert entry.offset == gen.expected.bytes
    assert entry.inode == os.stat(logdir / "app.log").st_ino
    assert f.files[0].size == gen.expected.bytes
    f.close()
    w.close()


def test_partial_last_line_is_held_back_until_its_newline(
    logdir: Path, store: SqliteStateStore, clock: Clock
) -> None:
    gen = Gen(2)
    w = appender(logdir / "app.log")
    w.write(gen.lines(10))
    last = gen.line()
    w.write(last[:17])
    f = make_follower(make_source(logdir), store, clock)
    f.poll()
    assert f.totals.lines == 10
    assert f.lag_bytes == 17  # the held-back part is not counted yet
    cp = store.load_log_checkpoint("app")
    assert cp is not None and cp.files[0].offset == gen.expected.bytes - len(last)
    w.write(last[17:])
    f.poll()
    assert f.totals == gen.expected
    assert f.lag_bytes == 0


def test_budget_per_poll_bounds_each_call(
    logdir: Path, store: SqliteStateStore, clock: Clock
) -> None:
    gen = Gen(3)
    (logdir / "app.log").write_bytes(gen.lines(2000))
    f = make_follower(make_source(logdir), store, clock, max_bytes_per_poll=32 * 1024)
    stats = f.poll()
    assert stats.more and stats.bytes_read == 32 * 1024
    assert f.lag_bytes > 0
    drain(f)
    assert f.totals == gen.expected and f.lag_bytes == 0


def test_start_at_end_skips_old_lines_but_reads_files_that_appear_later(
    logdir: Path, store: SqliteStateStore, clock: Clock
) -> None:
    old = Gen(4)
    w = appender(logdir / "app.log")
    w.write(old.lines(30))
    gen = Gen(5)
    first = gen.line()
    w.write(first[:10])  # a partial last line: counted once complete
    f = make_follower(make_source(logdir, start_at="end"), store, clock)
    f.poll()
    assert f.totals == Counts()
    w.write(first[10:] + gen.lines(5))
    clock.advance(0.25)
    f.poll()
    assert f.totals == gen.expected
    # A file that appears after the start is read from its beginning, start_at or not.
    (logdir / "other.log").write_bytes(gen.lines(7))
    clock.advance(1)
    f.poll()
    assert f.totals.lines == 6  # not before the next glob evaluation
    clock.advance(5)
    f.poll()
    assert f.totals == gen.expected
    assert sorted(Path(x.path).name for x in f.files) == ["app.log", "other.log"]


def test_start_at_end_only_the_first_time(
    logdir: Path, store: SqliteStateStore, clock: Clock
) -> None:
    gen = Gen(6)
    (logdir / "app.log").write_bytes(Gen(60).lines(20))
    f = make_follower(make_source(logdir, start_at="end"), store, clock)
    f.poll()
    f.close()
    # While the follower is down, lines are written and a new file appears: both are read.
    with appender(logdir / "app.log") as w:
        w.write(gen.lines(3))
    (logdir / "new.log").write_bytes(gen.lines(4))
    f = make_follower(make_source(logdir, start_at="end"), store, clock)
    f.poll()
    assert f.totals == gen.expected


def test_gzip_files_matching_the_pattern_are_ignored(
    logdir: Path, store: SqliteStateStore, clock: Clock
) -> None:
    import gzip

    gen = Gen(7)
    (logdir / "app.log").write_bytes(gen.lines(5))
    (logdir / "old.log").write_bytes(gzip.compress(Gen(70).lines(50)))
    f = make_follower(make_source(logdir), store, clock)
    f.poll()
    assert f.totals == gen.expected
    assert [Path(x.path).name for x in f.files] == ["app.log"]


# --------------------------------------------------------------------------- rotation


def test_rename_rotation_while_the_app_keeps_writing_to_the_old_descriptor(
    logdir: Path, store: SqliteStateStore, clock: Clock
) -> None:
    gen = Gen(8)
    path = logdir / "app.log"
    old = appender(path)
    old.write(gen.lines(100))
    f = make_follower(make_source(logdir, rotated_idle="10s"), store, clock)
    f.poll()
    partial = gen.line()
    old.write(gen.lines(20) + partial[:9])  # not read before the rename
    os.rename(path, logdir / "app.log.1")
    old.write(partial[9:] + gen.lines(10))  # the app still writes through its descriptor
    new = appender(path)
    new.write(gen.lines(15))
    clock.advance(0.25)
    f.poll()
    assert f.totals == gen.expected
    assert f.rotations == 1
    by_name = {Path(x.path).name: x for x in f.files}
    assert by_name["app.log.1"].rotated and not by_name["app.log"].rotated
    # More lines through the old descriptor, interleaved with the new file.
    for _ in range(3):
        clock.advance(5)
        old.write(gen.lines(4))
        new.write(gen.lines(4))
        f.poll()
        assert f.totals == gen.expected
    cp = store.load_log_checkpoint("app")
    assert cp is not None and len(cp.files) == 2
    assert cp.counters["lines"] == gen.expected.lines and cp.counters["rotations"] == 1
    # Idle for rotated_idle: the rotated file is closed, the new one followed on.
    clock.advance(9.9)
    f.poll()
    assert len(f.files) == 2
    clock.advance(0.2)
    f.poll()
    assert [Path(x.path).name for x in f.files] == ["app.log"]
    new.write(gen.lines(2))
    f.poll()
    assert f.totals == gen.expected and f.up
    cp = store.load_log_checkpoint("app")
    assert cp is not None and [Path(x.path).name for x in cp.files] == ["app.log"]
    old.close()
    new.close()


def test_rotated_file_partial_line_is_counted_when_it_is_closed(
    logdir: Path, store: SqliteStateStore, clock: Clock
) -> None:
    gen = Gen(9)
    path = logdir / "app.log"
    (path).write_bytes(gen.lines(3) + b'{"level":"error","msg":"cut short')
    f = make_follower(make_source(logdir, rotated_idle="1s"), store, clock)
    f.poll()
    os.rename(path, logdir / "app.log.1")
    clock.advance(0.25)
    f.poll()
    assert f.totals.lines == 3
    clock.advance(2)
    f.poll()
    assert f.totals.lines == 4 and f.totals.parse_errors == gen.expected.parse_errors + 1


def test_rotation_to_a_name_the_pattern_matches_is_followed_on(
    logdir: Path, store: SqliteStateStore, clock: Clock
) -> None:
    gen = Gen(10)
    path = logdir / "app.log"
    w = appender(path)
    w.write(gen.lines(5))
    f = make_follower(make_source(logdir, rotated_idle="1s", glob_interval="10s"), store, clock)
    f.poll()
    os.rename(path, logdir / "app-1.log")
    clock.advance(0.25)
    f.poll()
    assert f.files[0].rotated
    clock.advance(2)  # idle past rotated_idle, before the next glob: re-matched, not closed
    f.poll()
    w.write(gen.lines(5))
    clock.advance(0.25)
    f.poll()
    assert f.totals == gen.expected
    assert [(Path(x.path).name, x.rotated) for x in f.files] == [("app-1.log", False)]
    w.close()


def test_copytruncate(logdir: Path, store: SqliteStateStore, clock: Clock) -> None:
    gen = Gen(11)
    path = logdir / "app.log"
    w = appender(path)
    w.write(gen.lines(200))
    f = make_follower(make_source(logdir), store, clock)
    f.poll()
    # logrotate copytruncate: copy, then truncate in place; the app goes on appending.
    shutil.copyfile(path, logdir / "app.log.1")
    os.truncate(path, 0)
    w.write(gen.lines(3))  # fewer bytes than the old offset
    clock.advance(0.25)
    f.poll()
    assert f.totals == gen.expected
    assert f.rotations == 1
    cp = store.load_log_checkpoint("app")
    assert cp is not None and cp.files[0].offset == path.stat().st_size
    # Truncated again, and already grown past the old offset by the next poll: the
    # fingerprint of the first bytes tells.
    offset = path.stat().st_size
    os.truncate(path, 0)
    w.write(gen.lines(20))
    assert path.stat().st_size > offset
    clock.advance(0.25)
    f.poll()
    assert f.totals == gen.expected
    assert f.rotations == 2
    w.close()


def test_file_deleted_and_recreated(logdir: Path, store: SqliteStateStore, clock: Clock) -> None:
    gen = Gen(12)
    path = logdir / "app.log"
    w = appender(path)
    w.write(gen.lines(40))
    f = make_follower(make_source(logdir, rotated_idle="2s"), store, clock)
    f.poll()
    w.write(gen.lines(5))
    path.unlink()
    w.write(gen.lines(5))  # into the deleted file, through the open descriptor
    w2 = appender(path)
    w2.write(gen.lines(7))
    clock.advance(0.25)
    f.poll()
    assert f.totals == gen.expected
    assert f.rotations == 1
    clock.advance(3)
    f.poll()
    assert [Path(x.path).name for x in f.files] == ["app.log"]
    assert f.up
    w.close()
    w2.close()


def test_new_file_matching_the_glob(logdir: Path, store: SqliteStateStore, clock: Clock) -> None:
    gen = Gen(13)
    f = make_follower(make_source(logdir, glob_interval="2s"), store, clock)
    f.poll()
    assert not f.up and f.error == f"no file matches {logdir / '*.log'}"
    (logdir / "a.log").write_bytes(gen.lines(3))
    (logdir / "a.txt").write_bytes(Gen(130).lines(3))  # not matched
    clock.advance(1)
    f.poll()
    assert f.totals.lines == 0
    clock.advance(1)
    f.poll()
    assert f.totals == gen.expected
    assert f.up


# --------------------------------------------------------------------------- restarts


def test_restart_between_lines_and_in_the_middle_of_a_line(
    logdir: Path, store: SqliteStateStore, clock: Clock
) -> None:
    gen = Gen(14)
    w = appender(logdir / "app.log")
    w.write(gen.lines(30))
    f = make_follower(make_source(logdir), store, clock)
    f.poll()
    f.close()
    # Between lines.
    w.write(gen.lines(30))
    f = make_follower(make_source(logdir), store, clock)
    f.poll()
    assert f.totals == gen.expected
    # In the middle of a line, and in the middle of an overlong line (past max_line_bytes:
    # counted at once as truncated, the rest skipped after the restart).
    partial = gen.line()
    w.write(partial[:20])
    f.poll()
    f.close()
    f = make_follower(make_source(logdir), store, clock)
    assert f.totals == Counts()  # nothing published before the first poll
    f.poll()
    assert f.totals.lines == gen.expected.lines - 1  # the partial line is not counted yet
    w.write(partial[20:])
    overlong = b'{"level":"error","msg":"customer_id ' + b"y" * 1000 + b'"}\n'
    w.write(overlong[:600])
    f.poll()
    assert f.totals.truncated == gen.expected.truncated + 1
    cp = store.load_log_checkpoint("app")
    assert cp is not None and cp.files[0].extra == {"skipping": True}
    f.close()
    f = make_follower(make_source(logdir), store, clock)
    w.write(overlong[600:])
    w.write(gen.lines(5))
    f.poll()
    gen.expected.add(Counts(lines=1, bytes=len(overlong), truncated=1, error=1))
    gen.expected.legacy_reference += 1
    gen.expected.legacy_error += 1
    assert f.totals == gen.expected
    w.close()


def test_rotation_while_down_is_found_by_inode_and_fingerprint(
    logdir: Path, store: SqliteStateStore, clock: Clock
) -> None:
    gen = Gen(15)
    path = logdir / "app.log"
    w = appender(path)
    w.write(gen.lines(50))
    f = make_follower(make_source(logdir, rotated_idle="5s"), store, clock)
    f.poll()
    f.close()
    # Down: written, rotated (twice: app.log.1 → app.log.2), written through the old
    # descriptor, and a new file.
    w.write(gen.lines(10))
    os.rename(path, logdir / "app.log.1")
    w.write(gen.lines(10))
    os.rename(logdir / "app.log.1", logdir / "app.log.2")
    with appender(path) as w2:
        w2.write(gen.lines(10))
    # An impostor with the same first bytes but another inode is not taken for it.
    shutil.copyfile(logdir / "app.log.2", logdir / "app.log.3")
    f = make_follower(make_source(logdir, rotated_idle="5s"), store, clock)
    f.poll()
    assert f.totals == gen.expected
    assert f.rotations == 1
    assert {Path(x.path).name: x.rotated for x in f.files} == {"app.log.2": True, "app.log": False}
    w.write(gen.lines(3))
    clock.advance(1)
    f.poll()
    assert f.totals == gen.expected
    clock.advance(6)
    f.poll()
    assert [Path(x.path).name for x in f.files] == ["app.log"]
    w.close()


def test_checkpointed_file_gone_while_down_is_dropped(
    logdir: Path, store: SqliteStateStore, clock: Clock
) -> None:
    gen = Gen(16)
    path = logdir / "app.log"
    path.write_bytes(gen.lines(10))
    f = make_follower(make_source(logdir), store, clock)
    f.poll()
    f.close()
    path.unlink()
    path.write_bytes(gen.lines(4))  # a new file (maybe the same inode number): from 0
    f = make_follower(make_source(logdir), store, clock)
    f.poll()
    assert f.totals == gen.expected


def test_source_directory_disappears_and_comes_back(
    logdir: Path, store: SqliteStateStore, clock: Clock
) -> None:
    gen = Gen(17)
    path = logdir / "app.log"
    w = appender(path)
    w.write(gen.lines(10))
    f = make_follower(make_source(logdir, rotated_idle="1s", glob_interval="1s"), store, clock)
    f.poll()
    assert f.up
    w.write(gen.lines(2))
    shutil.rmtree(logdir)
    clock.advance(0.25)
    f.poll()  # not fatal; what was written before is still read through the descriptor
    assert f.totals == gen.expected
    assert not f.up
    assert f.error == f"directory {logdir} does not exist"
    clock.advance(2)
    f.poll()
    assert not f.up and f.files == ()
    logdir.mkdir()
    with appender(path) as w2:
        w2.write(gen.lines(3))
    clock.advance(1)
    f.poll()
    assert f.up and f.error is None
    assert f.totals == gen.expected
    w.close()


def test_unreadable_files_are_reported_and_resumed_exactly_once_readable(
    logdir: Path, store: SqliteStateStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = Gen(19)
    path = logdir / "app.log"
    path.write_bytes(gen.lines(10))
    offset = path.stat().st_size
    f = make_follower(make_source(logdir, glob_interval="1s"), store, clock)
    f.poll()
    f.close()
    with appender(path) as w:
        w.write(gen.lines(5))
    (logdir / "other.log").write_bytes(gen.lines(3))
    real_open = os.open
    denied = {str(path), str(logdir / "other.log")}

    def fake_open(p: Any, flags: int, *args: Any, **kw: Any) -> int:
        if str(p) in denied:
            raise PermissionError(13, "Permission denied", str(p))
        return real_open(p, flags, *args, **kw)

    monkeypatch.setattr(os, "open", fake_open)  # running as root: chmod would not deny
    f = make_follower(make_source(logdir, glob_interval="1s"), store, clock)
    f.poll()
    assert not f.up
    assert f.error == f"{path}: Permission denied; {logdir / 'other.log'}: Permission denied"
    assert f.totals.lines == 10
    cp = store.load_log_checkpoint("app")
    assert cp is not None and [x.offset for x in cp.files] == [offset]  # kept
    monkeypatch.setattr(os, "open", real_open)
    clock.advance(1)
    f.poll()
    assert f.up and f.error is None
    assert f.totals == gen.expected


def test_an_internal_error_is_reported_and_the_source_resumes_from_its_checkpoint(
    logdir: Path, store: SqliteStateStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = Gen(22)
    path = logdir / "app.log"
    w = appender(path)
    w.write(gen.lines(10))
    f = make_follower(make_source(logdir), store, clock)
    f.poll()
    w.write(gen.lines(600))  # several chunks: the failure comes after some were counted
    calls = [0]
    scan = f.classifier.scan

    def failing_scan(*args: Any, **kw: Any) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("boom")
        scan(*args, **kw)

    monkeypatch.setattr(f.classifier, "scan", failing_scan)
    with capture_logs() as logs:
        assert f.poll().counts.lines == 0
    assert any(e["event"] == "log_follower_failed" for e in logs)
    assert not f.up and f.error == "internal error: RuntimeError('boom')"
    assert f.totals.lines == 10  # the last consistent state
    clock.advance(0.25)
    f.poll()
    assert f.up and f.totals == gen.expected


def test_store_failure_is_reported_and_caught_up(
    logdir: Path, tmp_path: Path, clock: Clock
) -> None:
    gen = Gen(18)
    (logdir / "app.log").write_bytes(gen.lines(10))
    store = SqliteStateStore(tmp_path / "s.sqlite")
    f = make_follower(make_source(logdir), store, clock)
    f.poll()
    store.close()  # every write now fails
    with appender(logdir / "app.log") as w:
        w.write(gen.lines(5))
    stats = f.poll()
    assert not stats.checkpointed
    assert f.state().checkpoint_error is not None
    assert f.totals == gen.expected  # counting goes on; the next good save catches up
    f.close()
    store = SqliteStateStore(tmp_path / "s.sqlite")
    f = make_follower(make_source(logdir), store, clock)
    f.poll()
    assert f.totals == gen.expected  # the lost checkpoint's lines were read again, once
    store.close()


# --------------------------------------------------------------------------- SIGKILL

_CHILD = textwrap.dedent(
    """
    import json, os, signal, sys, time
    import structlog
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    from migration_watch.logs.classify import Classifier
    from migration_watch.logs.config import FileSourceConfig
    from migration_watch.logs.follower import SourceFollower
    from migration_watch.state import SqliteStateStore

    args = json.loads(sys.argv[1])
    source = FileSourceConfig.model_validate(args["source"])
    store = SqliteStateStore(args["state"])
    save, calls = store.save_log_checkpoint, [0]

    def checkpoint(*a, **kw):
        calls[0] += 1
        if args["when"] == "before" and calls[0] == args["kill_at"]:
            os.kill(os.getpid(), signal.SIGKILL)  # read and counted, not saved
        save(*a, **kw)
        if args["when"] == "after" and calls[0] == args["kill_at"]:
            os.kill(os.getpid(), signal.SIGKILL)  # saved, nothing after

    store.save_log_checkpoint = checkpoint
    classifier = Classifier.for_source(source, "customer_id", "organization_id")
    follower = SourceFollower(source, classifier, store, max_bytes_per_poll=args["budget"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        follower.poll()
        print("polled", flush=True)
    sys.exit(3)
    """
)


def _run_child(data: dict[str, Any], state: Path, *, when: str | None, kill_at: int) -> None:
    args = {"source": data, "state": str(state), "when": when, "kill_at": kill_at}
    args["budget"] = 16 * 1024
    errors = state.with_name("child.err")
    with errors.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, json.dumps(args)], stdout=subprocess.PIPE, stderr=err
        )
    try:
        if when is None:  # killed from outside at a random point of its polling
            assert proc.stdout is not None
            for _ in range(kill_at):
                assert proc.stdout.readline() == b"polled\n", errors.read_text()
            proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL, errors.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_sigkill_at_random_points_neither_loses_nor_double_counts(
    logdir: Path, tmp_path: Path, clock: Clock
) -> None:
    rng = random.Random(os.getpid())
    gen = Gen(rng.randrange(1 << 30))
    state = tmp_path / "state.sqlite"
    data = source_data(logdir, rotated_idle="3s")
    path = logdir / "app.log"
    w = appender(path)
    w.write(gen.lines(3000))  # about 350 KB: 20+ polls of 16 KiB
    _run_child(data, state, when="before", kill_at=rng.randint(2, 10))

    partial = gen.line()
    w.write(gen.lines(500) + partial[:25])
    _run_child(data, state, when="after", kill_at=rng.randint(1, 5))

    # Rotated while down, the old descriptor still written, a new file.
    w.write(partial[25:] + gen.lines(100))
    os.rename(path, logdir / "app.log.1")
    w.write(gen.lines(200))
    w2 = appender(path)
    w2.write(gen.lines(300))
    _run_child(data, state, when=None, kill_at=rng.randint(1, 6))

    w.write(gen.lines(50))
    w2.write(gen.lines(50))
    with SqliteStateStore(state) as store:
        f = make_follower(FileSourceConfig.model_validate(data), store, clock)
        drain(f)
        clock.advance(4)
        drain(f)
        assert f.totals == gen.expected
        assert [Path(x.path).name for x in f.files] == ["app.log"]
        cp = store.load_log_checkpoint("app")
        assert cp is not None and cp.counters["lines"] == gen.expected.lines
    w.close()
    w2.close()


# --------------------------------------------------------------------------- all sources


def test_log_follower_polls_due_sources_and_publishes_a_snapshot(
    tmp_path: Path, store: SqliteStateStore, clock: Clock
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    gen_a, gen_b = Gen(20), Gen(21)
    (a / "app.log").write_bytes(gen_a.lines(20))
    (b / "app.log").write_bytes(gen_b.lines(30))
    logs = LogsConfig.model_validate(
        {
            "sources": [
                source_data(a, name="a"),
                source_data(b, name="b", poll_interval="1s"),
                source_data(tmp_path / "missing", name="c"),
                {"name": "drain", "type": "http", "token": "t"},
            ]
        }
    )
    follower = LogFollower(logs, LEGACY, NEW, store, monotonic=clock, wall=lambda: T0)
    assert sorted(follower.sources) == ["a", "b", "c"]
    assert follower.poll() == pytest.approx(0.225)
    snap = follower.snapshot()
    assert snap["a"].totals == gen_a.expected and snap["b"].totals == gen_b.expected
    assert snap["a"].up and not snap["c"].up
    assert snap["c"].error == f"directory {tmp_path / 'missing'} does not exist"
    assert snap["a"].samples["error"]  # redacted sample lines per class
    assert snap["a"].polled_at == T0
    with appender(a / "app.log") as w:
        w.write(gen_a.lines(1))
    with appender(b / "app.log") as w:
        w.write(gen_b.lines(1))
    clock.advance(0.25)
    follower.poll()  # a is due, b (1 s) is not
    snap = follower.snapshot()
    assert snap["a"].totals == gen_a.expected
    assert snap["b"].totals.lines == 30
    clock.advance(0.75)
    follower.poll()
    assert follower.snapshot()["b"].totals == gen_b.expected
    assert set(store.log_checkpoints()) == {"a", "b", "c"}
    follower.close()


# --------------------------------------------------------------------------- pre-deploy lines

T0_MS = int(T0.timestamp() * 1000)


def stamped(i: int, ts: Any) -> bytes:
    """A line with a ``timestamp`` (omitted when None); every third one an error on the
    legacy column."""
    rec: dict[str, Any] = {} if ts is None else {"timestamp": ts}
    if i % 3 == 0:
        rec.update(level="error", msg=f"column customer_id does not exist {i}", status=500)
    else:
        rec.update(level="info", msg=f"GET /rest/v1/t?organization_id=eq.{i}")
    return json.dumps(rec).encode() + b"\n"


def counted(classifier: Classifier, lines: list[bytes]) -> Counts:
    counts = Counts()
    for raw in lines:
        counts.add_line(classifier.classify_line(raw[:-1]), len(raw))
    return counts


def test_pre_deploy_lines_are_counted_apart_and_kept_across_restarts(
    logdir: Path, store: SqliteStateStore, clock: Clock
) -> None:
    # a file holding pre-deploy lines (pino epoch ms), one without a timestamp among them
    # (post-deploy, but the pre-deploy part goes on), then post-deploy lines (ISO 8601)
    pre = [stamped(i, T0_MS - (400 - i) * 1000) for i in range(400)]
    untimed = stamped(1, None)
    post = [
        stamped(i, (T0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"))
        for i in range(100)
    ]
    w = appender(logdir / "app.log")
    w.write(b"".join([*pre[:200], untimed, *pre[200:], *post[:50]]))
    source = make_source(logdir)
    classifier = Classifier.for_source(source, LEGACY, NEW)
    f = make_follower(source, store, clock, max_bytes_per_poll=8192, deployed_at=lambda: T0)
    f.poll()  # a first slice only: a restart in the middle of the pre-deploy part
    assert 0 < f.pre_deploy.lines < 400
    f.close()
    f = make_follower(source, store, clock, max_bytes_per_poll=8192, deployed_at=lambda: T0)
    drain(f)
    expected_pre = counted(classifier, pre)
    assert f.pre_deploy == expected_pre
    assert f.totals == counted(classifier, [*pre, untimed, *post[:50]])
    assert f.state().pre_deploy == expected_pre
    cp = store.load_log_checkpoint("app")
    assert cp is not None
    assert cp.counters["pre_deploy.lines"] == 400
    assert cp.counters["pre_deploy.error"] == expected_pre.error
    assert cp.counters["lines"] == 451  # every line is still counted in the totals
    [entry] = cp.files
    assert entry.extra["t0_passed"] == int(T0.timestamp()) * 1_000_000
    f.close()
    # after a restart the file is past T0: later lines are post-deploy without reading their
    # timestamps (a late line stamped before T0 included: logs are in time order)
    late = stamped(3, T0_MS - 5000)
    w.write(b"".join([*post[50:], late]))
    f = make_follower(source, store, clock, deployed_at=lambda: T0)
    f.poll()
    assert f.pre_deploy == expected_pre
    assert f.totals == counted(classifier, [*pre, untimed, *post, late])
    # a new file (rotation) is judged on its own lines
    (logdir / "app.log").rename(logdir / "app.log.1")
    (logdir / "app.log").write_bytes(stamped(6, T0_MS - 1))
    clock.advance(1)
    f.poll()
    assert f.pre_deploy.lines == 401


def test_unknown_t0_counts_everything_as_post_deploy(
    logdir: Path, store: SqliteStateStore, clock: Clock
) -> None:
    lines = [stamped(i, T0_MS - 1000 + i) for i in range(10)]
    (logdir / "app.log").write_bytes(b"".join(lines))
    t0: list[datetime | None] = [None]
    f = make_follower(make_source(logdir), store, clock, deployed_at=lambda: t0[0])
    f.poll()
    assert f.totals.lines == 10 and f.pre_deploy == Counts()
    # T0 becomes known (a deploy marker): lines read from then on are judged against it
    t0[0] = T0
    with appender(logdir / "app.log") as w:
        w.write(stamped(0, T0_MS - 1) + stamped(1, T0_MS))
    clock.advance(1)
    f.poll()
    assert f.totals.lines == 12 and f.pre_deploy.lines == 1


def test_a_failing_deployed_at_keeps_the_follower_counting(
    logdir: Path, store: SqliteStateStore, clock: Clock
) -> None:
    def broken() -> datetime | None:
        raise RuntimeError("store down")

    (logdir / "app.log").write_bytes(stamped(0, T0_MS - 1))
    f = make_follower(make_source(logdir), store, clock, deployed_at=broken)
    with capture_logs() as logs:
        f.poll()
    assert f.up and f.totals.lines == 1 and f.pre_deploy.lines == 0
    assert any(e["event"] == "log_deployed_at_failed" for e in logs)


# --------------------------------------------------------------------------- property

_PIECES = [
    b'{"level":"error","msg":"customer_id gone"}\n',
    b'{"level":"info","url":"/t?organization_id=eq.1"}\n',
    b'{"msg":"x"}',
    b"\n",
    b"customer_id",
    b"z" * 300,
    b"\xff\xfe",
    b'{"level":"info"',
]
_OPS: st.SearchStrategy[tuple[str, list[bytes]]] = st.one_of(
    st.tuples(st.just("append"), st.lists(st.sampled_from(_PIECES), min_size=1, max_size=6)),
    st.tuples(st.just("append_rotated"), st.lists(st.sampled_from(_PIECES), max_size=3)),
    st.tuples(st.sampled_from(["poll", "restart", "rotate"]), st.just([])),
)


def _reference(classifier: Classifier, content: bytes, *, closed: bool) -> Counts:
    counts = Counts()
    stream = LineStream(classifier)
    stream.feed(content, counts)
    if closed:
        stream.flush(counts)
    return counts


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    ops=st.lists(_OPS, min_size=1, max_size=25),
    budget=st.sampled_from([5000, 64 * 1024]),
)
def test_any_sequence_of_writes_polls_restarts_and_rotations_counts_exactly(
    ops: list[tuple[str, list[bytes]]], budget: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "logs"
        directory.mkdir()
        path = directory / "app.log"
        source = make_source(directory, glob_interval="1s", rotated_idle="1000s")
        classifier = Classifier.for_source(source, LEGACY, NEW)
        clock = Clock()
        store = SqliteStateStore(Path(tmp) / "state.sqlite")
        f = make_follower(source, store, clock, max_bytes_per_poll=budget)
        rotated: list[Path] = []
        for op, pieces in ops:
            if op == "append":
                with appender(path) as w:
                    w.write(b"".join(pieces))
            elif op == "append_rotated" and rotated:
                with appender(rotated[-1]) as w:
                    w.write(b"".join(pieces))
            elif op == "poll":
                f.poll()
            elif op == "restart":
                f.close()
                f = make_follower(source, store, clock, max_bytes_per_poll=budget)
            elif op == "rotate" and path.exists():
                cp = store.load_log_checkpoint("app")
                if cp is None or path.stat().st_ino not in {x.inode for x in cp.files}:
                    # A file is followed across a rename (maybe while the follower is down)
                    # once it has been seen; one created and renamed between two glob
                    # evaluations is missed.
                    clock.advance(1)
                    f.poll()
                rotated.append(directory / f"app.log.{len(rotated) + 1}")
                os.rename(path, rotated[-1])
                path.touch()
        drain(f)
        clock.advance(1001)
        drain(f)
        expected = Counts()
        for r in rotated:
            expected.add(_reference(classifier, r.read_bytes(), closed=True))
        if path.exists():
            expected.add(_reference(classifier, path.read_bytes(), closed=False))
        assert f.totals == expected
        assert [Path(x.path).name for x in f.files] == (["app.log"] if path.exists() else [])
        f.close()
        store.close()
