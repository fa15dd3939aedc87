"""Reading one followed file (:mod:`migration_watch.logs.reader`): where ``start_at: end``
starts, bounded reads into complete lines, offsets, what a checkpoint keeps of a stream; and
the same seen through a :class:`~migration_watch.logs.follower.SourceFollower` (partial last
lines, the per-poll budget, ``start_at``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from migration_watch.logs.classify import Classifier, Counts, Samples
from migration_watch.logs.deploy import TimestampReader
from migration_watch.logs.reader import FileReader, Streams, close_fd, tail_offset, tail_start
from migration_watch.state import SqliteStateStore
from tests.logs_support import (
    LEGACY,
    NEW,
    Clock,
    Gen,
    appender,
    drain,
    make_follower,
    make_source,
)


def streams(directory: Path, **kw: object) -> Streams:
    source = make_source(directory, **kw)
    classifier = Classifier.for_source(source, LEGACY, NEW)
    return Streams(classifier, Samples(), TimestampReader.for_source(source))


# --------------------------------------------------------------------------- start_at: end


@pytest.mark.parametrize(
    ("tail", "size", "expected"),
    [
        (b"", 0, (0, False)),  # empty file
        (b"a\nb\n", 4, (4, False)),  # ends with a newline: at the end
        (b"a\nbc", 4, (2, False)),  # a partial last line: before it
        (b"\nab", 100, (98, False)),  # the window is the last 3 bytes of 100
        (b"abc", 3, (0, False)),  # one partial line, the whole file: from 0
        (b"xyz", 10, (10, True)),  # inside an overlong line begun before the window: skip
    ],
)
def test_tail_offset(tail: bytes, size: int, expected: tuple[int, bool]) -> None:
    assert tail_offset(tail, size) == expected


def test_tail_start_reads_at_most_max_line_bytes_plus_one_from_the_end(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"first\n" + b"y" * 20)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert tail_start(fd, 26, max_line_bytes=100) == (6, False)
        # a window of 11 bytes sees no newline: an overlong line, its rest is skipped
        assert tail_start(fd, 26, max_line_bytes=10) == (26, True)
    finally:
        os.close(fd)
    assert tail_start(-1, 0, max_line_bytes=10) == (0, False)  # an empty file is not read


# --------------------------------------------------------------------------- FileReader


def test_reads_are_bounded_by_the_budget_and_count_complete_lines(logdir: Path) -> None:
    gen = Gen(30)
    data = gen.lines(40)
    path = logdir / "app.log"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    reader = FileReader(fd, 0, streams(logdir).new(), size=len(data))
    try:
        delta, pre = Counts(), Counts()
        assert reader.read(100, 30, delta, pre, None) == (100, None)
        assert reader.position == 100
        assert delta.lines == data[:100].count(b"\n")
        assert reader.offset == data.rfind(b"\n", 0, 100) + 1  # the partial line is re-read
        assert not reader.caught_up
        read, error = reader.read(len(data), 4096, delta, pre, None)
        assert (read, error) == (len(data) - 100, None)
        assert delta == gen.expected and pre == Counts()
        assert reader.offset == reader.position == len(data) and reader.caught_up
        assert reader.read(100, 30, delta, pre, None) == (0, None)  # nothing new
    finally:
        reader.close()


def test_a_partial_last_line_is_held_back_and_counted_by_flush(logdir: Path) -> None:
    path = logdir / "app.log"
    path.write_bytes(b'{"msg":"one"}\n{"msg":"tw')
    reader = FileReader(os.open(path, os.O_RDONLY), 0, streams(logdir).new())
    delta = Counts()
    assert reader.read(1000, 4096, delta, Counts(), None) == (24, None)
    assert delta.lines == 1 and reader.offset == 14 and reader.position == 24
    assert reader.seen_size == 24  # read past the size last seen (0)
    reader.flush(delta, Counts())
    assert delta.lines == 2 and delta.parse_errors == 1 and delta.bytes == 24
    reader.close()


def test_a_read_error_stops_the_read_and_is_returned(logdir: Path) -> None:
    path = logdir / "app.log"
    path.write_bytes(b"x\n")
    fd = os.open(path, os.O_RDONLY)
    reader = FileReader(fd, 0, streams(logdir).new())
    os.close(fd)
    read, error = reader.read(100, 10, Counts(), Counts(), None)
    assert read == 0 and isinstance(error, OSError)
    reader.close()  # already closed underneath: ignored
    assert reader.fd is None
    reader.close()  # idempotent
    close_fd(None)


def test_restart_reads_again_from_zero_through_a_new_stream(logdir: Path) -> None:
    s = streams(logdir)
    reader = FileReader(None, 500, s.new(skipping=True))
    fresh = s.new()
    reader.restart(fresh)
    assert reader.position == 0 and reader.offset == 0 and reader.stream is fresh


def test_checkpoint_extra_keeps_skipping_rotated_and_t0_passed_in_order(logdir: Path) -> None:
    s = streams(logdir)
    assert FileReader(None, 0, s.new()).extra(rotated=False) == {}
    extra = FileReader(None, 0, s.new(skipping=True, skipping_pre=True, passed=7)).extra(
        rotated=True
    )
    assert list(extra.items()) == [
        ("skipping", True),
        ("skipping_pre", True),
        ("rotated", True),
        ("t0_passed", 7),
    ]
    # skipping_pre means nothing without skipping
    assert FileReader(None, 0, s.new(skipping_pre=True)).extra(rotated=False) == {}


def test_resumed_streams_take_their_state_from_the_checkpoint_extra(logdir: Path) -> None:
    s = streams(logdir)
    stream = s.resumed({"skipping": True, "skipping_pre": True, "t0_passed": 5.0})
    assert stream.skipping and stream.skipping_pre
    assert stream.gate is not None and stream.gate.passed == 5
    assert isinstance(stream.gate.passed, int)
    stream = s.resumed({"t0_passed": "soon"})
    assert not stream.skipping and stream.gate is not None and stream.gate.passed is None
    assert stream.classifier is s.classifier and stream.samples is s.samples


# --------------------------------------------------------------------------- through a follower


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
