"""SIGKILL in the middle of a cadence run: the state file survives, the killed run is run again
after the restart (not lost), and no planned run is ever recorded twice."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from .conftest import sample_config_data


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _runs(state: Path) -> list[tuple[str | None, str | None]]:
    if not state.exists():
        return []
    try:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5) as conn:
            return list(conn.execute("SELECT planned_at, finished_at FROM runs ORDER BY id"))
    except sqlite3.OperationalError:  # not created yet
        return []


def test_sigkill_mid_run_then_restart(tmp_path: Path, db_dsn: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state = tmp_path / "state.sqlite"
    data = sample_config_data(
        db_dsn,
        state={"path": str(state)},
        http={"listen": f"127.0.0.1:{port}"},
        service={"pulse": "1h"},
        # a probe that makes every run last a few seconds, so the kill lands inside one
        probes=[{"name": "slow", "sql": "SELECT pg_sleep(2)", "executions": 1, "warmup": 0}],
    )
    t0 = (datetime.now(UTC) - timedelta(hours=3, minutes=1)).replace(microsecond=0)
    data["migration"]["deployed_at"] = t0.isoformat()
    cfg = tmp_path / "mw.yaml"
    cfg.write_text(yaml.safe_dump(data))
    argv = [sys.executable, "-m", "migration_watch.cli", "--log-format", "json", "run",
            "--config", str(cfg)]  # fmt: skip

    def start(log_name: str) -> subprocess.Popen[bytes]:
        with (tmp_path / log_name).open("w") as log:
            return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)

    proc = start("first.log")
    try:
        # the catch-up run (T0+3h) has begun but not finished: kill it there
        _wait(lambda: any(f is None for _, f in _runs(state)), "the run to begin")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    runs = _runs(state)
    assert len(runs) == 1 and runs[0][1] is None  # begun, never finished: not counted
    planned = runs[0][0]

    proc = start("second.log")
    try:
        _wait(lambda: any(f is not None for _, f in _runs(state)), "the re-run to finish")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    finished = [p for p, f in _runs(state) if f is not None]
    assert finished == [planned]  # the killed run ran again, once

    proc = start("third.log")  # nothing due any more: a restart runs nothing
    try:
        _wait(
            lambda: "start-up catch-up done" in (tmp_path / "third.log").read_text(),
            "the start-up catch-up",
        )
        assert [p for p, _ in _runs(state)].count(planned) == 2  # killed + finished, no third
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
