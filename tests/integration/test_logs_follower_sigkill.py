"""File following under SIGKILL: a real child process follows a file and is killed at random
points (before or after a checkpoint is saved, or from outside), across a rotation while it
is down; a last follower then finds every line counted exactly once.

The rest of the follower's tests need no process nor database: ``tests/unit/test_logs_*.py``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migration_watch.logs.config import FileSourceConfig
from migration_watch.state import SqliteStateStore
from tests.logs_support import Clock, Gen, appender, close_opened, drain, make_follower, source_data


@pytest.fixture(autouse=True)
def _close_followers_and_appenders() -> Iterator[None]:
    yield
    close_opened()


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


def test_sigkill_at_random_points_neither_loses_nor_double_counts(tmp_path: Path) -> None:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    clock = Clock()
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
