"""The cadence against a real database and a real state file, with an injected clock."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from migration_watch.cli import main
from migration_watch.clock import ManualClock
from migration_watch.config import Config
from migration_watch.db import Database
from migration_watch.demo import sample
from migration_watch.deployment import DeploymentTime
from migration_watch.runner import Runner
from migration_watch.service import Service
from migration_watch.state import SqliteStateStore
from migration_watch.week import Week

from .conftest import sample_config_data

MakeConfig = Callable[..., Config]
T0 = sample.DEPLOYED_AT
H = timedelta(hours=1)


class Daemon:
    """A Week over a state file: 'restart' = close everything and open it again."""

    def __init__(self, config: Config, clock: ManualClock) -> None:
        self.config = config
        self.clock = clock
        self.db = Database(config.database)
        self.store = SqliteStateStore(config.state.path, wall=clock.now)
        self.t0 = DeploymentTime(config, self.store)
        self.runner = Runner(config, self.db, wall=clock.now, deployed_at=self.t0.deployed_at)
        self.week = Week(config, self.runner, self.store, clock, deployment=self.t0)

    def close(self) -> None:
        self.db.close()
        self.store.close()


@pytest.fixture
def daemon_factory(
    db_dsn: str, make_config: MakeConfig, tmp_path: Path
) -> Iterator[Callable[[ManualClock], Daemon]]:
    opened: list[Daemon] = []

    def make(clock: ManualClock) -> Daemon:
        cfg = make_config(db_dsn, state={"path": str(tmp_path / "state.sqlite")})
        d = Daemon(cfg, clock)
        opened.append(d)
        return d

    yield make
    for d in opened:
        d.close()


def states(d: Daemon) -> list[str]:
    sched = d.week.schedule()
    assert sched is not None
    return [
        s.state.value
        for s in sched.run_states(d.clock.now(), d.store.completed_runs(), d.store.extra_runs())
    ]


def test_day_one_hourly_and_restart_mid_day_one(
    daemon_factory: Callable[[ManualClock], Daemon],
) -> None:
    clock = ManualClock(T0)
    d = daemon_factory(clock)
    assert d.week.tick() is not None  # T0+0h
    assert d.week.tick() is None  # never twice
    for _ in range(3):
        clock.advance(H)
        assert d.week.tick() is not None
    d.close()
    # down from T0+3h to T0+7h30: T0+4h..T0+6h are missed, T0+7h runs late, once
    clock.set(T0 + timedelta(hours=7, minutes=30))
    d = daemon_factory(clock)
    run_id = d.week.tick()
    assert run_id is not None
    assert d.week.tick() is None
    rec = d.store.get_run(run_id)
    assert rec is not None and rec.state.value == "late"
    assert rec.delay_seconds == pytest.approx(1800)
    assert rec.superseded == (4, 5, 6)
    st = states(d)
    assert st[:8] == ["done"] * 4 + ["missed"] * 3 + ["late"]
    assert st[8:] == ["planned"] * (32 - 8)
    assert d.week.tally() == {"done": 4, "late": 1, "missed": 3, "extra": 0}


def test_restart_mid_day_two_and_after_the_week(
    daemon_factory: Callable[[ManualClock], Daemon],
) -> None:
    clock = ManualClock(T0 + 25 * H)  # day 2: T0+24h is due, 0..23 are superseded
    d = daemon_factory(clock)
    assert d.week.tick() is not None
    assert d.week.tally()["missed"] == 24
    clock.set(T0 + 37 * H)
    assert d.week.tick() is not None  # T0+36h, on time (1h after is beyond the grace: late)
    d.close()
    clock.set(T0 + 200 * H)  # after the week: one catch-up of T0+144h, then nothing
    d = daemon_factory(clock)
    assert d.week.tick() is not None
    assert d.week.tick() is None
    d.close()
    d = daemon_factory(clock)
    assert d.week.tick() is None  # a later restart runs nothing again
    tally = d.week.tally()
    assert tally["done"] + tally["late"] == 3
    assert tally["missed"] == 32 - 3
    health = d.week.health()
    assert health["cadence"]["day"] == 8 and health["cadence"]["over"] is True
    assert health["cadence"]["next_run"] is None


def test_extra_runs_do_not_move_the_cadence(
    daemon_factory: Callable[[ManualClock], Daemon],
) -> None:
    clock = ManualClock(T0 + timedelta(minutes=2))
    d = daemon_factory(clock)
    assert d.week.tick() is not None
    clock.advance(timedelta(minutes=20))
    assert d.week.run_extra() is not None
    assert d.week.tick() is None
    clock.set(T0 + H)
    assert d.week.tick() is not None
    assert d.week.tally() == {"done": 2, "late": 0, "missed": 0, "extra": 1}


def test_post_deploy_writes_use_the_marker(
    daemon_factory: Callable[[ManualClock], Daemon], pg_conn: psycopg.Connection[Any]
) -> None:
    clock = ManualClock(T0 + 2 * H)
    d = daemon_factory(clock)
    # rows written an hour after the config's T0 ...
    sample.add_post_deploy_rows(pg_conn, 3, T0 + H)
    d.week.tick()
    post = next(r for r in d.runner.view().results if r.check == "post_deploy_writes")
    assert post.observed["post_deploy_missing"] == 3
    # ... are fine when the code was really deployed later (marker)
    d.week.mark_deployed(T0 + 90 * timedelta(minutes=1))
    assert d.week.deployment() is not None
    assert d.week.deployment().source == "marker"  # type: ignore[union-attr]
    clock.set(T0 + 90 * timedelta(minutes=1))
    d.week.tick()
    post = next(r for r in d.runner.view().results if r.check == "post_deploy_writes")
    assert post.observed["post_deploy_missing"] == 0


def test_schedule_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = sample_config_data("host=127.0.0.1 port=1", state={"path": str(tmp_path / "s.sqlite")})
    del data["migration"]["deployed_at"]
    cfg = tmp_path / "mw.yaml"
    cfg.write_text(json.dumps(data))
    out = io.StringIO()
    assert main(["schedule", "--config", str(cfg), "--format", "json"], out=out) == 2
    assert "deployment time unknown" in capsys.readouterr().err
    out = io.StringIO()
    code = main(
        ["schedule", "--config", str(cfg), "--deployed-at", "2025-10-23T09:00:00Z", "--format",
         "json"],
        out=out,
    )  # fmt: skip
    assert code == 0
    doc = json.loads(out.getvalue())
    assert doc["deployed_at"] == "2025-10-23T09:00:00+00:00" and doc["source"] == "cli"
    assert len(doc["runs"]) == 32
    assert doc["runs"][0] == {
        "at": "2025-10-23T09:00:00+00:00", "day": 1, "phase": "hourly", "state": "missed"
    }  # fmt: skip
    assert [r["at"][11:13] for r in doc["runs"][24:28]] == ["09", "21", "09", "21"]
    assert {r["phase"] for r in doc["runs"][28:]} == {"daily"}
    assert doc["verdict_at"] == "2025-10-30T09:00:00+00:00"
    assert not (tmp_path / "s.sqlite").exists()  # no database, no state file needed
    out = io.StringIO()
    assert (
        main(["schedule", "--config", str(cfg), "--deployed-at", "2030-01-01T00:00:00Z"], out=out)
        == 0
    )
    assert "planned" in out.getvalue() and "verdict_at 2030-01-08" in out.getvalue()


def test_admin_endpoints_and_readiness_before_t0(
    db_dsn: str, make_config: MakeConfig, tmp_path: Path
) -> None:
    clock = ManualClock(T0 - 2 * H)  # before T0: serves, plans no runs, ready on a live DB
    cfg = make_config(
        db_dsn,
        state={"path": str(tmp_path / "state.sqlite")},
        http={"listen": "127.0.0.1:0", "admin_token": "tok-123"},
    )
    svc = Service(cfg, clock=clock, pulse=timedelta(hours=1))
    svc.start()
    try:
        url = svc.http.url
        deadline = 200
        while svc.runner.view().database_up is None and deadline:
            deadline -= 1
            svc.wait(0.05)
        assert httpx.get(url + "/health/ready").status_code == 200
        health = httpx.get(url + "/health").json()
        assert health["deployment"] == {"deployed_at": T0.isoformat(), "source": "config"}
        assert health["cadence"]["runs"] == {"done": 0, "late": 0, "missed": 0, "extra": 0}
        assert svc.runner.view().runs_completed == 0
        assert httpx.post(url + "/run").status_code == 401
        bad = httpx.post(url + "/run", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        auth = {"Authorization": "Bearer tok-123"}
        r = httpx.post(url + "/run", headers=auth)
        assert r.status_code in (202, 409)
        r = httpx.post(url + "/deployment", headers=auth, json={"at": "2025-10-23T08:00:00Z"})
        assert r.status_code == 200 and r.json()["source"] == "marker"
        assert httpx.post(url + "/deployment", headers=auth, json={"at": "soon"}).status_code == 400
        health = httpx.get(url + "/health").json()
        assert health["deployment"]["source"] == "marker"
        assert "tok-123" not in json.dumps(health)
    finally:
        svc.stop()


def test_pg_stat_statements_snapshot_survives_a_restart(
    db_dsn: str, pg_conn: psycopg.Connection[Any], make_config: MakeConfig, tmp_path: Path
) -> None:
    cfg = make_config(db_dsn, state={"path": str(tmp_path / "state.sqlite")})
    clock = ManualClock(T0)
    svc = Service(cfg, clock=clock, port=0)
    pg_conn.execute("SELECT id FROM conversations WHERE customer_id IS NOT NULL LIMIT 1")
    svc._pulse()  # first poll: cumulative
    first = dict(svc.runner.ratio.totals)
    assert first["legacy"] >= 1
    svc.stop()
    for _ in range(3):
        pg_conn.execute("SELECT id FROM conversations WHERE customer_id IS NOT NULL LIMIT 1")
    svc = Service(cfg, clock=clock, port=0)
    try:
        assert svc.runner.ratio.snapshot is not None  # restored, not re-added
        svc._pulse()
        delta = svc.runner.ratio.last_delta
        assert delta is not None and not delta.cumulative
        assert delta.counts["legacy"] == 3
        assert svc.runner.ratio.totals["legacy"] == first["legacy"] + 3
    finally:
        svc.stop()


def test_corrupt_state_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.sqlite"
    state.write_bytes(b"this is not a database" * 100)
    data = sample_config_data("host=127.0.0.1 port=1", state={"path": str(state)})
    cfg = tmp_path / "mw.yaml"
    cfg.write_text(json.dumps(data))
    assert main(["schedule", "--config", str(cfg)], out=io.StringIO()) == 2
    err = capsys.readouterr().err
    assert str(state) in err
    assert state.read_bytes().startswith(b"this is not a database")  # never a silent reset


def test_port_in_use_is_a_clear_config_error(make_config: MakeConfig, tmp_path: Path) -> None:
    import socket

    from migration_watch.errors import ConfigError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = make_config("host=127.0.0.1 port=1", http={"listen": f"127.0.0.1:{port}"})
        with pytest.raises(ConfigError, match=r"http.listen: cannot listen on 127.0.0.1:\d+"):
            Service(cfg)
