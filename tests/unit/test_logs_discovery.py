"""Which files a source follows and when one was rotated (:mod:`migration_watch.logs.discovery`):
the decisions as plain functions, :class:`FileDiscovery` on real files, and rotation, glob and
start-up seen through a :class:`~migration_watch.logs.follower.SourceFollower`.

Rotations counted exactly once through a follower: rename while the app keeps writing to the
old descriptor, copytruncate, delete + create, rotation while the follower is down.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from migration_watch.logs.classify import Classifier, Counts, Samples
from migration_watch.logs.deploy import TimestampReader
from migration_watch.logs.discovery import (
    Change,
    FileDiscovery,
    FollowedFile,
    absent_reason,
    content_change,
    expand,
    find_followed,
    fingerprint,
    fingerprint_length,
    fingerprint_matches,
    is_idle,
    read_order,
    rotation_reason,
)
from migration_watch.logs.reader import FileReader, Streams
from migration_watch.state import LogFileCheckpoint, SqliteStateStore
from tests.logs_support import LEGACY, NEW, Clock, Gen, appender, make_follower, make_source

# --------------------------------------------------------------------------- decisions


def test_rotation_reason() -> None:
    assert rotation_reason((1, 2), (1, 2)) is None
    assert rotation_reason((1, 2), None) == "removed or renamed"
    assert rotation_reason((1, 2), (1, 3)) == "replaced"
    assert rotation_reason((1, 2), (9, 2)) == "replaced"  # another device, same inode number


class Start:
    """A ``same_start`` that answers ``same`` and counts the (costly) calls."""

    def __init__(self, same: bool) -> None:
        self.same = same
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.same


def change(start: Start, **kw: int) -> Change:
    args = {
        "position": 100,
        "size": 100,
        "mtime_ns": 1,
        "new_size": 100,
        "new_mtime_ns": 1,
        "fp_len": 100,
        "fp_bytes": 1024,
    }
    args.update(kw)
    return content_change(same_start=start, **args)


def test_content_unchanged_is_not_read() -> None:
    start = Start(same=False)
    assert change(start) is Change.NONE
    assert start.calls == 0  # same size and mtime: the first bytes are not compared


def test_smaller_than_what_was_read_is_a_truncation_without_reading() -> None:
    start = Start(same=True)
    assert change(start, new_size=40, new_mtime_ns=2) is Change.TRUNCATED
    assert start.calls == 0
    # even with the same mtime (a coarse clock)
    assert change(Start(same=True), new_size=99) is Change.TRUNCATED


def test_grown_with_other_first_bytes_is_a_truncation() -> None:
    # copytruncate, already grown past the old offset by the next look
    start = Start(same=False)
    assert change(start, new_size=500, new_mtime_ns=2) is Change.TRUNCATED
    assert start.calls == 1
    # same size, rewritten in place (mtime changed)
    assert change(Start(same=False), new_mtime_ns=2) is Change.TRUNCATED


def test_grown_takes_a_longer_fingerprint_until_fingerprint_bytes() -> None:
    assert change(Start(same=True), new_size=500, new_mtime_ns=2) is Change.LONGER_FINGERPRINT
    full = Start(same=True)
    assert change(full, new_size=5000, new_mtime_ns=2, fp_len=1024) is Change.NONE
    assert full.calls == 1
    # touched, not grown past the fingerprint: nothing to take
    assert change(Start(same=True), new_mtime_ns=2) is Change.NONE


def followed(
    path: str, *, key: tuple[int, int] = (1, 1), live: bool = True, **kw: Any
) -> FollowedFile:
    stream = streams_for(Path("/nonexistent")).new()
    reader = FileReader(kw.pop("fd", None), kw.pop("position", 0), stream, size=kw.pop("size", 0))
    return FollowedFile(
        path=path,
        dev=key[0],
        ino=key[1],
        fingerprint="0:x",
        reader=reader,
        live=live,
        now=kw.pop("now", 0.0),
    )


def streams_for(directory: Path, **kw: Any) -> Streams:
    source = make_source(directory, **kw)
    classifier = Classifier.for_source(source, LEGACY, NEW)
    return Streams(classifier, Samples(), TimestampReader.for_source(source))


def test_is_idle() -> None:
    f = followed("a", fd=99, position=10, size=10, now=100.0)
    assert is_idle(f, 130.0, 30.0, more=False)
    assert not is_idle(f, 129.9, 30.0, more=False)  # not idle long enough
    assert not is_idle(f, 130.0, 30.0, more=True)  # the budget ran out: maybe more to read
    f.reader.size = 11
    assert not is_idle(f, 130.0, 30.0, more=False)  # not read to its end
    f.reader.size = 10
    f.reader.fd = None
    assert not is_idle(f, 130.0, 30.0, more=False)  # not opened


def test_read_order_puts_rotated_files_first_and_turns_the_live_ones() -> None:
    a, b, c = followed("a"), followed("b"), followed("c")
    old = followed("old", live=False)
    files = [a, old, b, c]
    assert read_order(files, 0) == [old, a, b, c]
    assert read_order(files, 1) == [old, b, c, a]
    assert read_order(files, 5) == [old, c, a, b]
    assert read_order([old], 3) == [old]
    assert read_order([], 3) == []


def test_find_followed_only_finds_opened_files() -> None:
    closed = followed("x", key=(1, 5))
    opened = followed("y", key=(1, 5), fd=99)
    assert find_followed([closed], (1, 5)) is None
    assert find_followed([closed, opened], (1, 5)) is opened
    assert find_followed([closed, opened], (1, 6)) is None


# --------------------------------------------------------------------------- identity, patterns


def test_fingerprints_cover_the_first_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"hello world\n")
    fd = os.open(path, os.O_RDWR)
    try:
        fp, n = fingerprint(fd, 5)
        assert n == 5 and fingerprint_length(fp) == 5
        assert fp == fingerprint(fd, 5)[0]
        assert fingerprint(fd, 1000)[1] == 12  # no more than the file holds
        assert fingerprint(fd, 0) == (fingerprint(fd, 0)[0], 0)
        os.pwrite(fd, b"more\n", 12)
        assert fingerprint_matches(fd, fp)  # appended: the same first bytes
        os.pwrite(fd, b"J", 0)
        assert not fingerprint_matches(fd, fp)  # other first bytes
        os.truncate(path, 3)
        assert not fingerprint_matches(fd, fingerprint(fd, 3)[0].replace("3:", "5:"))
        assert not fingerprint_matches(fd, "not a fingerprint")
    finally:
        os.close(fd)
    assert fingerprint_length("12:abc") == 12
    assert fingerprint_length("abc") is None
    assert fingerprint_length("x:abc") is None


def test_expand_keeps_each_path_once_in_pattern_order(tmp_path: Path) -> None:
    for name in ("b.log", "a.log", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.log").write_bytes(b"")
    got = expand([str(tmp_path / "*.txt"), str(tmp_path / "*.log"), str(tmp_path / "a.log")])
    assert [Path(p).name for p in got] == ["c.txt", "a.log", "b.log"]
    deep = expand([str(tmp_path / "**" / "*.log")])
    assert sorted(Path(p).name for p in deep) == ["a.log", "b.log", "d.log"]
    assert expand([str(tmp_path / "missing" / "*.log")]) == []


def test_absent_reason_names_the_missing_directory_or_the_pattern(tmp_path: Path) -> None:
    present = str(tmp_path / "*.log")
    missing = str(tmp_path / "gone" / "*.log")
    magic = str(tmp_path / "gone" / "*" / "*.log")  # the directory above the magic
    assert absent_reason([present]) == f"no file matches {present}"
    assert absent_reason([missing, present]) == (
        f"directory {tmp_path / 'gone'} does not exist; no file matches {present}"
    )
    assert absent_reason([magic]) == f"directory {tmp_path / 'gone'} does not exist"


# --------------------------------------------------------------------------- FileDiscovery


@pytest.fixture
def discovery(logdir: Path) -> Iterator[FileDiscovery]:
    source = make_source(logdir, rotated_idle="10s", glob_interval="5s")
    d = FileDiscovery(source, streams_for(logdir), structlog.get_logger().bind(source="app"))
    yield d
    d.reset()


def test_glob_opens_regular_files_and_ignores_gzip_ones(
    logdir: Path, discovery: FileDiscovery
) -> None:
    (logdir / "a.log").write_bytes(b"one\n")
    (logdir / "old.log").write_bytes(gzip.compress(b"x\n"))
    (logdir / "dir.log").mkdir()
    with capture_logs() as logs:
        discovery.glob(0.0)
        discovery.glob(1.0)  # logged once
    assert [Path(f.path).name for f in discovery.files] == ["a.log"]
    assert [e["event"] for e in logs] == ["log_file_opened", "log_file_ignored"]
    assert discovery.glob_problems == []
    [f] = discovery.files
    assert f.live and f.opened and f.reader.position == 0 and f.reader.size == 4
    assert f.key == (os.stat(logdir / "a.log").st_dev, os.stat(logdir / "a.log").st_ino)
    assert fingerprint_length(f.fingerprint) == 4


def test_glob_at_start_with_start_at_end_opens_after_the_last_line(logdir: Path) -> None:
    (logdir / "a.log").write_bytes(b"one\ntw")
    source = make_source(logdir, start_at="end")
    d = FileDiscovery(source, streams_for(logdir), structlog.get_logger())
    d.glob(0.0, initial=True)
    (logdir / "b.log").write_bytes(b"one\n")
    d.glob(10.0)  # not the first evaluation: from 0
    assert [(Path(f.path).name, f.reader.position) for f in d.files] == [("a.log", 4), ("b.log", 0)]
    d.reset()
    assert d.files == []


def test_a_rename_detaches_the_file_and_follows_the_new_one_at_once(
    logdir: Path, discovery: FileDiscovery
) -> None:
    path = logdir / "app.log"
    path.write_bytes(b"one\n")
    problems: list[str] = []
    discovery.refresh(0.0, problems)
    [old] = discovery.files
    os.rename(path, logdir / "app.log.1")
    with capture_logs() as logs:
        discovery.refresh(1.0, problems)  # before the next glob evaluation
    assert [e["event"] for e in logs] == ["log_file_rotated"]
    assert logs[0]["reason"] == "removed or renamed"
    assert logs[0]["renamed_to"] == str(logdir / "app.log.1")
    assert old.path == str(logdir / "app.log.1") and not old.live
    assert discovery.rotations == 1
    path.write_bytes(b"two\n")
    with capture_logs() as logs:
        discovery.refresh(1.5, problems)  # the path left is re-checked on every refresh
    assert [e["event"] for e in logs] == ["log_file_opened"]
    assert problems == []
    assert discovery.rotations == 1
    assert [(Path(f.path).name, f.live) for f in discovery.files] == [
        ("app.log.1", False),
        ("app.log", True),
    ]
    assert read_order(discovery.files, 0)[0] is old


def test_a_replaced_file_is_detached_and_closed_once_idle(
    logdir: Path, discovery: FileDiscovery
) -> None:
    path = logdir / "app.log"
    path.write_bytes(b"one\n")
    discovery.refresh(0.0, [])
    [old] = discovery.files
    old.reader.position = old.reader.size  # read to its end
    replacement = logdir / "new"
    replacement.write_bytes(b"two\n")
    os.replace(replacement, path)  # the old file is gone, not renamed in the directory
    with capture_logs() as logs:
        discovery.refresh(1.0, [])
    assert logs[0]["event"] == "log_file_rotated" and logs[0]["reason"] == "replaced"
    assert logs[0]["renamed_to"] is None
    delta = Counts()
    discovery.close_idle(10.9, more=False, delta=delta, pre=Counts())
    assert old in discovery.files  # idle for 9.9 s of 10
    discovery.close_idle(11.0, more=True, delta=delta, pre=Counts())
    assert old in discovery.files  # the budget ran out: not idle
    with capture_logs() as logs:
        discovery.close_idle(11.0, more=False, delta=delta, pre=Counts())
    assert old not in discovery.files and old.reader.fd is None
    assert [e["event"] for e in logs] == ["log_file_closed"]
    assert [Path(f.path).name for f in discovery.files] == ["app.log"]


def test_check_content_restarts_a_truncated_file_from_zero(
    logdir: Path, discovery: FileDiscovery
) -> None:
    path = logdir / "app.log"
    path.write_bytes(b"one\ntwo\n")
    discovery.refresh(0.0, [])
    [f] = discovery.files
    f.reader.read(100, 100, Counts(), Counts(), None)
    assert f.reader.position == 8
    discovery.check_content(f)
    assert f.reader.position == 8 and discovery.rotations == 0  # unchanged
    os.truncate(path, 0)
    path.write_bytes(b"3\n")
    stream = f.reader.stream
    with capture_logs() as logs:
        discovery.check_content(f)
    assert [e["event"] for e in logs] == ["log_file_truncated"]
    assert logs[0]["offset"] == 8 and logs[0]["size"] == 2
    assert f.reader.position == 0 and f.reader.stream is not stream
    assert discovery.rotations == 1
    assert f.fingerprint == fingerprint(f.reader.fd or -1, 2)[0]
    assert (f.reader.size, f.fp_len) == (2, 2)


def test_check_content_grows_the_fingerprint(logdir: Path, discovery: FileDiscovery) -> None:
    path = logdir / "app.log"
    path.write_bytes(b"one\n")
    discovery.refresh(0.0, [])
    [f] = discovery.files
    with appender(path) as w:
        w.write(b"two\n")
    discovery.check_content(f)
    assert f.fp_len == 8 and fingerprint_length(f.fingerprint) == 8
    assert discovery.rotations == 0


def test_resume_finds_a_file_renamed_while_down(logdir: Path, discovery: FileDiscovery) -> None:
    path = logdir / "app.log"
    path.write_bytes(b"one\ntwo\n")
    discovery.refresh(0.0, [])
    [f] = discovery.files
    f.reader.read(100, 100, Counts(), Counts(), None)
    entry = f.checkpoint()
    discovery.reset()
    os.rename(path, logdir / "app.log.1")
    shutil.copyfile(logdir / "app.log.1", path)  # an impostor: same bytes, another inode
    problems: list[str] = []
    with capture_logs() as logs:
        discovery.resume(entry, 5.0, problems)
    assert [e["event"] for e in logs] == ["log_file_found_rotated"]
    [found] = discovery.files
    assert found.path == str(logdir / "app.log.1") and not found.live
    assert found.reader.position == 8 and found.key == f.key
    assert discovery.rotations == 1 and problems == []
    discovery.glob(5.0)  # app.log matches: the impostor is a new file, read from 0
    assert [(Path(x.path).name, x.reader.position) for x in discovery.files] == [
        ("app.log.1", 8),
        ("app.log", 0),
    ]


def test_resume_drops_what_is_gone_or_invalid(logdir: Path, discovery: FileDiscovery) -> None:
    path = logdir / "app.log"
    path.write_bytes(b"one\n")
    discovery.refresh(0.0, [])
    entry = discovery.files[0].checkpoint()
    discovery.reset()
    path.unlink()
    path.write_bytes(b"two\n")  # same name, other content (maybe the same inode)
    with capture_logs() as logs:
        discovery.resume(entry, 0.0, [])
        discovery.resume(checkpoint_of_entry(entry, fingerprint="junk"), 0.0, [])
    assert [e["event"] for e in logs] == ["log_file_lost", "log_checkpoint_invalid"]
    assert discovery.files == [] and discovery.rotations == 0


def checkpoint_of_entry(entry: LogFileCheckpoint, **kw: Any) -> LogFileCheckpoint:
    return LogFileCheckpoint(
        path=kw.get("path", entry.path),
        inode=entry.inode,
        fingerprint=kw.get("fingerprint", entry.fingerprint),
        offset=entry.offset,
        device=entry.device,
        extra=kw.get("extra", entry.extra),
    )


def test_resume_keeps_an_unreadable_file_at_its_offset_until_it_opens(
    logdir: Path, discovery: FileDiscovery, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = logdir / "app.log"
    path.write_bytes(b"one\ntwo\n")
    discovery.refresh(0.0, [])
    [f] = discovery.files
    f.reader.read(100, 100, Counts(), Counts(), None)
    entry = checkpoint_of_entry(f.checkpoint(), extra={"rotated": True})
    discovery.reset()
    real_open = os.open

    def denied(p: Any, flags: int, *args: Any, **kw: Any) -> int:
        if str(p) == str(path):
            raise PermissionError(13, "Permission denied", str(p))
        return real_open(p, flags, *args, **kw)

    monkeypatch.setattr(os, "open", denied)
    problems: list[str] = []
    discovery.resume(entry, 0.0, problems)
    assert problems == [f"{path}: Permission denied"]
    [kept] = discovery.files
    assert not kept.opened and kept.reader.position == 8 and not kept.live
    assert kept.checkpoint() == entry  # the checkpoint it is saved with again
    discovery.glob(1.0)  # retried, and the pattern's match tried too
    assert discovery.glob_problems == [f"{path}: Permission denied"] * 2
    monkeypatch.setattr(os, "open", real_open)
    discovery.glob(2.0)
    assert discovery.glob_problems == []
    assert kept.opened and kept.reader.position == 8 and kept.live


# --------------------------------------------------------------------------- through a follower


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
