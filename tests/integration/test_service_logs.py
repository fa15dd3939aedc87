"""Logs in the service: the HTTP drain, exact counters on /metrics across a restart, the window
checks of each cadence run; `logs scan` on the command line."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from migration_watch.cli import main
from migration_watch.clock import ManualClock
from migration_watch.config import Config
from migration_watch.demo import sample
from migration_watch.service import Service

from .conftest import Services, sample_config_data

MakeConfig = Callable[..., Config]

LINES: list[dict[str, Any]] = [
    # PostgREST request still filtering on the legacy column, failing: error + legacy_error
    {"level": "error", "msg": "GET /rest/v1/conversations?customer_id=eq.42 500", "status": 500},
    {"level": "info", "msg": "GET /rest/v1/conversations?organization_id=eq.7 200", "status": 200},
    {"level": "info", "msg": "GET /rest/v1/conversations?organization_id=eq.8 200", "status": 200},
    # WooCommerce's own customer_id is not the migrated column
    {"level": "error", "msg": "POST /wp-json/wc/v3/orders customer_id=5 failed", "status": 502},
    {"level": "info", "msg": "plain line"},
]


def ndjson(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(x).encode() + b"\n" for x in lines)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for fam in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_drain_counts_checks_and_restart(
    db_dsn: str, make_config: MakeConfig, tmp_path: Path, services: Services
) -> None:
    token = tmp_path / "drain-token"
    token.write_text("drain-secret-1\n")
    cfg = make_config(
        db_dsn,
        logs={
            "sources": [
                {
                    "name": "drain",
                    "type": "http",
                    "token_file": str(token),
                    "format": "json",
                    "fields": {"message": "msg"},
                }
            ],
            "classes": {"baseline_error_rate": 0.05},
        },
    )
    clock = ManualClock(sample.DEPLOYED_AT + timedelta(days=1))
    svc = services(cfg, clock=clock, start=True)
    url = svc.http.url
    auth = {"Authorization": "Bearer drain-secret-1"}
    assert httpx.post(url + "/ingest/logs", content=ndjson(LINES)).status_code == 401
    r = httpx.post(url + "/ingest/logs", content=ndjson(LINES), headers=auth)
    assert r.status_code == 202
    arr = json.dumps(LINES[1:3]).encode()  # a JSON array, as Vercel/Supabase drains push
    assert httpx.post(url + "/ingest/logs", content=arr, headers=auth).status_code == 202
    svc.logs.pump()
    m = scrape(url)
    key = "migration_watch_log_lines_total"
    assert m[(key, (("class", "all"), ("source", "drain")))] == 7
    assert m[(key, (("class", "error"), ("source", "drain")))] == 2
    assert m[(key, (("class", "legacy_error"), ("source", "drain")))] == 1
    assert m[(key, (("class", "legacy_reference"), ("source", "drain")))] == 1
    assert m[(key, (("class", "new_reference"), ("source", "drain")))] == 4
    svc.week.run_extra()
    res = {r.check: r for r in svc.runner.view().results if r.subject == "logs"}
    assert res["legacy_errors"].status.value == "fail"
    assert res["legacy_errors"].observed["legacy_errors"] == 1
    assert res["log_errors"].status.value == "fail"  # 2/7 errors vs a 5% baseline
    assert res["legacy_log_ratio"].observed["legacy_ratio"] == pytest.approx(1 / 5)
    health = httpx.get(url + "/health").json()
    assert health["logs"]["drain"]["lines"] == 7
    assert "drain-secret-1" not in json.dumps(health)
    # restart: the counters continue from their persisted values; the window is new
    svc = services.restart(svc)
    auth = {"Authorization": "Bearer drain-secret-1"}
    ok = [{"level": "info", "msg": "GET /rest/v1/conversations?organization_id=eq.1 200"}]
    r = httpx.post(svc.http.url + "/ingest/logs", content=ndjson(ok), headers=auth)
    assert r.status_code == 202
    svc.logs.pump()
    m = scrape(svc.http.url)
    assert m[("migration_watch_log_lines_total", (("class", "all"), ("source", "drain")))] == 8
    clock.advance(timedelta(hours=1))
    svc.week.run_extra()
    res = {r.check: r for r in svc.runner.view().results if r.subject == "logs"}
    assert res["legacy_errors"].status.value == "pass"
    assert res["log_errors"].observed["lines"] == 1


def test_logs_scan_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "app.jsonl"
    f.write_bytes(ndjson(LINES) + b"{broken\n")
    out = io.StringIO()
    assert (
        main(["logs", "scan", str(f), "--format", "json", "--config", "/nonexistent"], out=out) == 2
    )
    out = io.StringIO()
    cwd_cfg = tmp_path / "none.yaml"
    assert not cwd_cfg.exists()
    code = main(["logs", "scan", str(f), "--format", "json"], out=out)
    assert code == 0
    doc = json.loads(out.getvalue())
    assert doc["files"] == [str(f)]
    assert doc["lines"] == 6 and doc["parse_errors"] == 1
    assert doc["classes"] == {
        "error": 2,
        "legacy_reference": 1,
        "new_reference": 2,
        "legacy_error": 1,
        "fallback": 0,
    }
    assert main(["logs", "scan", str(tmp_path / "missing.log")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_file_source_followed_by_the_service(
    db_dsn: str, make_config: MakeConfig, tmp_path: Path, services: Services
) -> None:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    app = logdir / "app.jsonl"
    app.write_bytes(ndjson(LINES[:2]))
    cfg = make_config(
        db_dsn,
        logs={
            "sources": [
                {
                    "name": "app",
                    "type": "file",
                    "paths": [str(logdir / "*.jsonl")],
                    "start_at": "beginning",
                    "fields": {"message": "msg"},
                }
            ]
        },
    )
    clock = ManualClock(sample.DEPLOYED_AT + timedelta(days=1))
    ticks = [0.0]

    def monotonic() -> float:  # the follower's poll timer, advanced by hand
        ticks[0] += 10.0
        return ticks[0]

    svc = services(cfg, clock=clock, monotonic=monotonic)
    svc.logs.pump()
    with app.open("ab") as f:
        f.write(ndjson(LINES[2:]))
        f.write(b'{"level":"error","msg":"partial')  # no newline yet: held back
    svc.logs.pump()
    m = scrape_registry(svc)
    assert m[("migration_watch_log_lines_total", (("class", "all"), ("source", "app")))] == 5
    assert m[("migration_watch_log_source_up", (("source", "app"),))] == 1
    lag = m[("migration_watch_log_lag_bytes", (("source", "app"),))]
    assert lag == len(b'{"level":"error","msg":"partial')
    # rotation by rename + create: nothing lost, nothing doubled; once the rotated file is
    # idle (rotated_idle, on the injected timer) its unfinished last line counts too
    app.rename(logdir / "app.jsonl.1")
    app.write_bytes(ndjson(LINES[:1]))
    svc.logs.pump()
    m = scrape_registry(svc)
    assert m[("migration_watch_log_lines_total", (("class", "all"), ("source", "app")))] == 7
    assert m[("migration_watch_log_parse_errors_total", (("source", "app"),))] == 1
    assert m[("migration_watch_log_rotations_total", (("source", "app"),))] == 1


def scrape_registry(svc: Service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in svc.registry.collect():
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# --------------------------------------------------------------------------- pre-deploy baseline

T0_MS = int(sample.DEPLOYED_AT.timestamp() * 1000)


def timed(ts: Any, *, error: bool, i: int = 0) -> dict[str, Any]:
    if error:
        return {"time": ts, "level": "error", "msg": f"upstream failed {i}", "status": 502}
    return {"time": ts, "level": "info", "msg": f"GET /rest/v1/t?organization_id=eq.{i}"}


def file_config(make_config: MakeConfig, dsn: str, logdir: Path, **classes: Any) -> Config:
    return make_config(
        dsn,
        logs={
            "sources": [
                {
                    "name": "app",
                    "type": "file",
                    "paths": [str(logdir / "*.jsonl")],
                    "start_at": "beginning",
                    "fields": {"timestamp": "time", "message": "msg"},
                }
            ],
            "classes": {"baseline_min_lines": 100, **classes},
        },
    )


def ticking() -> Callable[[], float]:
    ticks = [0.0]

    def monotonic() -> float:  # the follower's poll timer, advanced by hand
        ticks[0] += 10.0
        return ticks[0]

    return monotonic


def log_errors(svc: Service, now: Any) -> Any:
    [res] = [r for r in svc.logs.window_results(now) if r.check == "log_errors"]
    return res


def test_log_errors_baseline_from_the_pre_deploy_lines_of_a_file(
    db_dsn: str, make_config: MakeConfig, tmp_path: Path, services: Services
) -> None:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    app = logdir / "app.jsonl"
    # a week before the deployment at 10 % errors (pino epoch ms), then 50 lines after it at
    # 4 % (ISO 8601): better than the logs' own baseline, worse than the configured one
    before = [timed(T0_MS - (300 - i) * 60_000, error=i % 10 == 0, i=i) for i in range(300)]
    after = [
        timed((sample.DEPLOYED_AT + timedelta(minutes=i)).isoformat(), error=i in (7, 30), i=i)
        for i in range(50)
    ]
    app.write_bytes(ndjson(before + after))
    cfg = file_config(make_config, db_dsn, logdir, baseline_error_rate=0.001)
    clock = ManualClock(sample.DEPLOYED_AT + timedelta(hours=2))
    svc = services(cfg, clock=clock, monotonic=ticking())
    svc.logs.pump()
    m = scrape_registry(svc)
    key = "migration_watch_log_lines_total"
    assert m[(key, (("class", "all"), ("source", "app")))] == 350  # every line read
    res = log_errors(svc, clock.now())
    assert res.status.value == "pass"
    assert res.observed["lines"] == 50 and res.observed["errors"] == 2  # post-deploy only
    assert res.observed["baseline_source"] == "logs"
    assert res.observed["baseline_error_rate"] == pytest.approx(0.1)
    assert res.observed["baseline_lines"] == 300
    assert res.details["pre_deploy_lines_excluded"] == 300
    assert "pre-deploy baseline 10.000%" in res.message
    # a restart keeps the pre-deploy counts (persisted with the checkpoint); the next window
    # holds only what was appended since, here at 30 % errors
    with app.open("ab") as f:
        f.write(
            ndjson(
                [
                    timed(
                        (sample.DEPLOYED_AT + timedelta(hours=1, minutes=i)).isoformat(),
                        error=i < 3,
                    )
                    for i in range(10)
                ]
            )
        )
    svc = services.restart(svc, monotonic=ticking())
    svc.logs.pump()
    clock.advance(timedelta(hours=1))
    res = log_errors(svc, clock.now())
    assert res.status.value == "fail"
    assert res.observed["lines"] == 10 and res.observed["errors"] == 3
    assert res.observed["baseline_source"] == "logs"
    assert res.observed["baseline_lines"] == 300
    assert res.details["pre_deploy_lines_excluded"] == 0
    assert svc.logs.pre_deploy()["app"].lines == 300


def test_too_few_pre_deploy_lines_fall_back_to_the_configured_baseline(
    db_dsn: str, make_config: MakeConfig, tmp_path: Path, services: Services
) -> None:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    lines = [timed(T0_MS - 1000 + i, error=False, i=i) for i in range(10)]
    lines += [timed(T0_MS + i, error=i == 0, i=i) for i in range(20)]
    (logdir / "app.jsonl").write_bytes(ndjson(lines))
    clock = ManualClock(sample.DEPLOYED_AT + timedelta(hours=2))
    cfg = file_config(make_config, db_dsn, logdir, baseline_error_rate=0.1)
    svc = services(cfg, clock=clock, monotonic=ticking())
    svc.logs.pump()
    res = log_errors(svc, clock.now())
    assert res.status.value == "pass"  # 1/20 = 5 % vs a configured 10 %
    assert res.observed["baseline_source"] == "config"
    assert res.observed["baseline_error_rate"] == 0.1
    assert res.observed["baseline_lines"] == 10
    assert res.observed["lines"] == 20
    assert "fewer than baseline_min_lines = 100" in res.message
    cfg = file_config(make_config, db_dsn, logdir)  # no configured rate either: skipped
    services.stop(svc)
    svc = services(cfg, clock=clock, monotonic=ticking())
    # a run before the follower's first poll after the restart: nothing loaded yet, the
    # baseline comes from the previous window; the lines are not counted a second time
    res = log_errors(svc, clock.now())
    assert res.status.value == "skipped"
    assert res.observed["baseline_source"] is None and res.observed["lines"] == 0
    assert "10 pre-deploy log lines (logs.classes.baseline_min_lines = 100)" in res.message
    svc.logs.pump()
    res = log_errors(svc, clock.now())
    assert res.observed["lines"] == 0 and res.observed["baseline_lines"] == 10


def test_drain_with_unknown_t0_then_a_deploy_marker(
    db_dsn: str, make_config: MakeConfig, tmp_path: Path, services: Services
) -> None:
    data = sample_config_data(db_dsn)
    migration = {k: v for k, v in data["migration"].items() if k != "deployed_at"}
    cfg = make_config(
        db_dsn,
        migration=migration,
        logs={
            "sources": [
                {
                    "name": "drain",
                    "type": "http",
                    "token": "drain-secret-2",
                    "fields": {"timestamp": "time", "message": "msg"},
                }
            ],
            "classes": {"baseline_min_lines": 2},
        },
    )
    clock = ManualClock(sample.DEPLOYED_AT + timedelta(hours=2))
    svc = services(cfg, clock=clock, start=True)
    url = svc.http.url
    auth = {"Authorization": "Bearer drain-secret-2"}
    old = [timed(T0_MS - 60_000 * (i + 1), error=i == 0, i=i) for i in range(4)]
    new = [
        timed((sample.DEPLOYED_AT + timedelta(minutes=i)).isoformat(), error=True) for i in range(2)
    ]
    # T0 unknown: nothing is pre-deploy, no baseline at all
    batch = json.dumps([new[0], old[0], old[1]]).encode()
    assert httpx.post(url + "/ingest/logs", content=batch, headers=auth).status_code == 202
    svc.logs.pump()
    res = log_errors(svc, clock.now())
    assert res.status.value == "skipped"
    assert res.observed["lines"] == 3 and res.observed["baseline_lines"] == 0
    assert "deployment time (T0) is unknown" in res.message
    # a deploy marker (POST /deployment) sets T0: a batch mixing lines from before and
    # after it is split line by line (drains interleave)
    r = httpx.post(url + "/deployment", json={"at": sample.DEPLOYED_AT.isoformat()})
    assert r.status_code == 200
    batch = json.dumps([old[2], new[1], old[3]]).encode()
    assert httpx.post(url + "/ingest/logs", content=batch, headers=auth).status_code == 202
    svc.logs.pump()
    res = log_errors(svc, clock.now())
    assert res.observed["lines"] == 1 and res.observed["errors"] == 1
    assert res.observed["baseline_source"] == "logs"
    assert res.observed["baseline_lines"] == 2 and res.observed["baseline_error_rate"] == 0
    assert res.status.value == "fail"
    m = scrape(url)
    assert m[("migration_watch_log_lines_total", (("class", "all"), ("source", "drain")))] == 6
    # a restart keeps the drain's pre-deploy counts
    svc = services.restart(svc, start=False)
    assert svc.logs.pre_deploy()["drain"].lines == 2
    assert svc.logs.health()["logs"]["drain"]["pre_deploy_lines"] == 2
    assert svc.logs.totals()["drain"].lines == 6
