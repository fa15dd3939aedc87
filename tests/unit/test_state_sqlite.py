"""What only the SQLite backend has: the file, its identity and schema version, WAL, crash
safety of a killed process, refusal of a corrupt or foreign file, paths and connections.
The contract every backend meets is in ``test_state.py``."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from migration_watch.cadence import CompletedRun, RunState, Schedule
from migration_watch.errors import StateError
from migration_watch.state import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    AlertStore,
    CheckpointStore,
    LogFileCheckpoint,
    SqliteStateStore,
    StateStore,
)
from migration_watch.state.sqlite.checkpoints import SqliteCheckpoints

from .test_state import T0, H, result, run_planned

DAEMON_ROOT = str(Path(__file__).resolve().parents[2] / "daemon")


def test_parent_directory_is_created_and_the_schema_is_current(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "state.db"  # parent created
    with SqliteStateStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION
    assert path.is_file()
    with SqliteStateStore(path) as again:
        assert again.schema_version == SCHEMA_VERSION


def test_location_and_repr_name_the_file(tmp_path: Path) -> None:
    with SqliteStateStore(tmp_path / "s.db") as store:
        assert isinstance(store, StateStore)
        assert store.location == str(tmp_path / "s.db")
        assert "s.db" in repr(store)
        assert repr(store).startswith("SqliteStateStore(")


def test_a_section_is_a_store_of_its_own(tmp_path: Path) -> None:
    """Each section class opens the same file on its own: the log follower could be given one."""
    with SqliteCheckpoints(tmp_path / "s.db", wall=lambda: T0) as checkpoints:
        assert isinstance(checkpoints, CheckpointStore)
        assert not isinstance(checkpoints, AlertStore)
        checkpoints.save_log_checkpoint("app", [LogFileCheckpoint("/a", 1, "f", 9)], {"n": 9})
    with SqliteStateStore(tmp_path / "s.db") as store:
        checkpoint = store.load_log_checkpoint("app")
        assert checkpoint is not None
        assert checkpoint.updated_at == T0
        assert checkpoint.counters == {"n": 9}


def test_wal_mode_and_identity(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SqliteStateStore(path) as store:
        store.set_meta("k", 1)
        assert Path(str(path) + "-wal").exists()
        raw = sqlite3.connect(path)
        try:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert raw.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        finally:
            raw.close()
        # a reader sees committed data while the writer holds an open write transaction
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            blocker.execute("INSERT INTO meta VALUES ('hidden', '1', 'x')")
            assert store.get_meta("k") == 1
            assert store.get_meta("hidden") is None
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import UTC, datetime, timedelta
    sys.path.insert(0, {root!r})
    from migration_watch.results import Result, Status
    from migration_watch.state import SqliteStateStore

    T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    H = timedelta(hours=1)
    store = SqliteStateStore({path!r})
    run0 = store.begin_run(state="done", started_at=T0, planned_index=0, planned_at=T0)
    store.finish_run(run0, [Result("coverage", "t", Status.PASS)], finished_at=T0)

    class Dying(list):
        # iterated once for the overall status, then inside the finishing transaction
        # (after BEGIN IMMEDIATE, before COMMIT): die on that second pass
        passes = 0

        def __iter__(self):
            Dying.passes += 1
            yield Result("coverage", "t", Status.PASS)
            if Dying.passes == 2:
                os.kill(os.getpid(), signal.SIGKILL)

    run1 = store.begin_run(state="done", started_at=T0 + H, planned_index=1, planned_at=T0 + H)
    if {mode!r} == "before_finish":
        print("begun", run1, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    store.finish_run(run1, Dying([None]), finished_at=T0 + H)
    print("unreachable", flush=True)
    """
)


@pytest.mark.parametrize("mode", ["before_finish", "inside_finish"])
def test_a_killed_run_is_not_counted_and_is_rerun(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "state.db"
    child = subprocess.run(
        [sys.executable, "-c", _CHILD.format(root=DAEMON_ROOT, path=str(path), mode=mode)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert "unreachable" not in child.stdout
    with SqliteStateStore(path) as store:
        assert set(store.completed_runs()) == {0}
        [killed] = store.unfinished_runs()
        assert killed.planned_index == 1
        assert store.results_for_run(killed.id) == []  # nothing half-written
        schedule = Schedule(T0)
        restart = T0 + H + timedelta(minutes=30)
        due = schedule.due_run(restart, store.completed_runs())
        assert due is not None
        assert due.index == 1  # the killed run is re-run, not lost
        assert due.state is RunState.LATE
        rerun = store.begin_run(
            state=due.state,
            started_at=restart,
            planned_index=due.index,
            planned_at=due.at,
            delay_seconds=due.delay.total_seconds(),
            superseded=due.supersedes,
        )
        store.finish_run(rerun, [result("coverage", "t")], finished_at=restart)
        assert store.completed_runs()[1] == CompletedRun(RunState.LATE, restart, T0 + H)
        assert schedule.due_run(restart, store.completed_runs()) is None


def test_not_a_database_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is a YAML file, not a database\n" * 100)
    before = path.read_bytes()
    with pytest.raises(StateError, match=r"state\.db.*not an SQLite database"):
        SqliteStateStore(path)
    assert path.read_bytes() == before  # never reset


def test_corrupt_pages_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SqliteStateStore(path) as store:
        for i in range(40):
            run_planned(store, i, [result("coverage", f"public.t{i}", missing=i)] * 20, T0 + i * H)
    size = path.stat().st_size
    assert size > 16 * 4096
    with path.open("r+b") as fh:  # keep the header, scribble over the pages after it
        for offset in range(4096, size, 4096):
            fh.seek(offset)
            fh.write(b"\xde\xad\xbe\xef" * 256)
    before = path.read_bytes()
    with pytest.raises(StateError, match=str(path)):
        SqliteStateStore(path)
    assert path.read_bytes() == before


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SqliteStateStore(path) as store:
        for i in range(20):
            run_planned(store, i, [result("coverage", "public.t", missing=i)] * 20, T0 + i * H)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(StateError, match=str(path)):
        SqliteStateStore(path)


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    SqliteStateStore(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(StateError, match=r"schema version 2, newer .* upgrade migration-watch"):
        SqliteStateStore(path)


def test_another_applications_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE notes (body TEXT)")
    raw.commit()
    raw.close()
    with pytest.raises(StateError, match="not a migration-watch state file"):
        SqliteStateStore(path)
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA application_id = 1234")
    raw.commit()
    raw.close()
    with pytest.raises(StateError, match="another application"):
        SqliteStateStore(path)


def test_unusable_directory_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError, match="cannot create its directory"):
        SqliteStateStore(blocker / "state.db")


def test_reader_connections_are_bounded(tmp_path: Path) -> None:
    """One short-lived thread per HTTP request must not leak connections."""
    with SqliteStateStore(tmp_path / "s.db") as store:
        for _ in range(30):
            t = threading.Thread(target=store.outbox_size)
            t.start()
            t.join()
        fds = len(os.listdir("/proc/self/fd"))
        for _ in range(30):
            t = threading.Thread(target=store.outbox_size)
            t.start()
            t.join()
        assert len(os.listdir("/proc/self/fd")) <= fds + 1
