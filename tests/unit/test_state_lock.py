"""One daemon per state file: the lock, its error, and its release when the holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from migration_watch.errors import StateError
from migration_watch.state import DaemonLock

HOLDER = """
import sys
from migration_watch.state import DaemonLock
lock = DaemonLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
sys.stdin.read()  # until the test closes stdin or kills us
"""


def test_second_holder_is_refused_with_the_first_pid(tmp_path: Path) -> None:
    state = tmp_path / "mw.sqlite"
    first, second = DaemonLock(state), DaemonLock(state)
    first.acquire()
    assert first.held
    assert first.path == tmp_path / "mw.sqlite.lock"
    assert first.path.read_text().strip() == str(os.getpid())
    with pytest.raises(StateError) as err:
        second.acquire()
    assert f"another migration-watch daemon (pid {os.getpid()})" in str(err.value)
    assert str(state) in str(err.value)
    assert err.value.exit_code == 2
    assert not second.held
    first.release()
    first.release()  # idempotent
    second.acquire()  # free again: the lock file stays, the lock is what counts
    assert second.held
    second.release()


def test_lock_of_a_killed_daemon_is_free_at_once(tmp_path: Path) -> None:
    state = tmp_path / "sub" / "mw.sqlite"  # the directory is created
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "locked"
            mine = DaemonLock(state)
            with pytest.raises(StateError, match=f"pid {proc.pid}"):
                mine.acquire()
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            mine.acquire()  # no stale lock after SIGKILL
            assert mine.path.read_text().strip() == str(os.getpid())
            mine.release()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_unwritable_lock_location_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StateError, match="cannot create the daemon lock file"):
        DaemonLock(blocker / "mw.sqlite").acquire()
