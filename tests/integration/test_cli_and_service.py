"""The CLI (exit codes, JSON) and the service (/metrics, /health) over real HTTP."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import psycopg
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from migration_watch.cli import main
from migration_watch.config import Config
from migration_watch.db import Database
from migration_watch.demo import sample
from migration_watch.exporter import build_registry
from migration_watch.http import HttpServer
from migration_watch.metrics import METRIC_NAMES
from migration_watch.pgcluster import EphemeralCluster
from migration_watch.runner import Runner
from migration_watch.service import Service

from .conftest import sample_config_data

MakeConfig = Callable[..., Config]
SCHEMA = json.loads(
    (
        Path(__file__).resolve().parents[2] / "daemon/migration_watch/schemas/check.schema.json"
    ).read_text()
)


def write_config(tmp_path: Path, dsn: str, **overrides: Any) -> Path:
    overrides.setdefault("state", {"path": str(tmp_path / "state.sqlite")})
    p = tmp_path / "mw.yaml"
    p.write_text(yaml.safe_dump(sample_config_data(dsn, **overrides)))
    return p


def check_json(config: Path) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    code = main(["check", "--once", "--config", str(config), "--format", "json"], out=out)
    doc = json.loads(out.getvalue())
    jsonschema.validate(doc, SCHEMA)
    return code, doc


def test_check_once_exit_codes_and_json(
    tmp_path: Path, db_dsn: str, pg_conn: psycopg.Connection[Any]
) -> None:
    cfg = write_config(tmp_path, db_dsn)
    code, doc = check_json(cfg)
    assert code == 0 and doc["status"] == "pass"
    assert doc["migration"] == "customer-id-to-organization-id"
    names = {c["name"] for c in doc["checks"]}
    assert names == {
        "coverage", "orphans", "post_deploy_writes", "schema", "index_usage", "rls", "query_ratio"
    }  # fmt: skip

    sample.add_orphans(pg_conn, "conversations", 2)
    code, doc = check_json(cfg)
    assert code == 1 and doc["status"] == "fail"
    orphans = next(
        c
        for c in doc["checks"]
        if c["name"] == "orphans" and c["subject"] == "public.conversations"
    )
    assert orphans["observed"] == {"orphans": 2} and len(orphans["details"]["sample_ids"]) == 2

    out = io.StringIO()
    assert main(["check", "--once", "--config", str(cfg)], out=out) == 1
    table = out.getvalue()
    assert "orphans" in table and "FAIL" in table and "public.conversations" in table


def test_unreachable_database_exits_3_with_error_statuses(tmp_path: Path) -> None:
    dsn = "host=127.0.0.1 port=1 dbname=nope user=mw password=hunter2-secret connect_timeout=1"
    cfg = write_config(tmp_path, dsn, database={"dsn": dsn, "connect_timeout": "1s"})
    with capture_logs() as logs:
        code, doc = check_json(cfg)
    assert code == 3 and doc["status"] == "error"
    assert all(c["status"] == "error" for c in doc["checks"])
    assert "hunter2-secret" not in json.dumps(doc) and "hunter2-secret" not in repr(logs)
    assert main(["check", "--once", "--config", str(tmp_path / "missing.yaml")]) == 2


def test_secret_never_leaks(
    tmp_path: Path,
    pg_cluster: EphemeralCluster,
    db_name: str,
    pg_conn: psycopg.Connection[Any],
    make_config: MakeConfig,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = "Sup3r-S3cret-pw"
    pg_conn.execute("DROP ROLE IF EXISTS mw_leak")
    pg_conn.execute(f"CREATE ROLE mw_leak LOGIN PASSWORD '{secret}'")
    try:
        good = f"postgresql://mw_leak:{secret}@127.0.0.1:{pg_cluster.port}/{db_name}"
        wrong = f"postgresql://mw_leak:{secret}x@127.0.0.1:{pg_cluster.port}/{db_name}"
        (tmp_path / "dsn").write_text(wrong)
        cfg_path = write_config(tmp_path, "", database={"dsn_file": str(tmp_path / "dsn")})
        with capture_logs() as logs:
            code = main(["check", "--once", "--config", str(cfg_path), "--format", "json"])
        captured = capsys.readouterr()
        assert code == 3
        assert "authentication failed" in captured.out
        for text in (captured.out, captured.err, repr(logs)):
            assert secret not in text
        # permission denied on the tables (no grants): error results, no secret in them
        cfg = make_config(good)
        with Database(cfg.database) as db:
            runner = Runner(cfg, db)
            registry, _ = build_registry(cfg, runner)
            server = HttpServer(runner, registry, host="127.0.0.1", port=0)
            server.start()
            try:
                with capture_logs() as logs:
                    outcome = runner.run_once()
                assert outcome is not None
                assert any("permission denied" in r.message for r in outcome.results)
                health = httpx.get(server.url + "/health").text
                metrics = httpx.get(server.url + "/metrics").text
            finally:
                server.stop()
        for text in (health, metrics, repr(logs), repr(outcome)):
            assert secret not in text
    finally:
        pg_conn.execute("DROP ROLE mw_leak")


def _wait(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    resp = httpx.get(url + "/metrics")
    assert resp.status_code == 200
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(resp.text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def value(
    samples: dict[str, list[tuple[dict[str, str], float]]], metric: str, **labels: str
) -> float:
    for got, v in samples.get(metric, []):
        if all(got.get(k) == want for k, want in labels.items()):
            return v
    raise KeyError((metric, labels))


@pytest.fixture
def service(db_dsn: str, make_config: MakeConfig) -> Iterator[Service]:
    cfg = make_config(db_dsn, service={"pulse": "1h"})
    svc = Service(cfg)
    svc.start()
    try:
        _wait(lambda: svc.runner.view().runs_completed >= 1)
        yield svc
    finally:
        svc.stop()


def test_metrics_and_health_over_http(service: Service, pg_conn: psycopg.Connection[Any]) -> None:
    url = service.http.url
    pg_conn.execute("SELECT id FROM conversations WHERE customer_id IS NOT NULL LIMIT 1")
    service.runner.pulse()
    m = scrape(url)
    assert value(m, "migration_watch_legacy_statement_ratio") == 1.0
    for name in METRIC_NAMES:
        if name.startswith("migration_watch_probe_"):
            continue  # no probes configured here (see the baseline test)
        base = name.removesuffix("_total")
        assert any(k == name or k.startswith(base) for k in m), name
    assert value(m, "migration_watch_database_up") == 1
    assert value(m, "migration_watch_table_rows", table="public.conversations") == 1000
    assert value(m, "migration_watch_rows_missing", table="public.conversations") == 0
    assert value(m, "migration_watch_backfill_ratio", table="public.conversations") == 1
    assert (
        value(
            m,
            "migration_watch_check_status",
            check="schema",
            subject="public.conversations",
            status="pass",
        )
        == 1
    )
    assert (
        value(
            m,
            "migration_watch_check_status",
            check="schema",
            subject="public.conversations",
            status="fail",
        )
        == 0
    )
    assert (
        value(
            m,
            "migration_watch_migration_info",
            name="customer-id-to-organization-id",
            legacy_column="customer_id",
            new_column="organization_id",
        )
        == 1
    )
    assert value(m, "migration_watch_build_info")
    assert value(m, "migration_watch_statement_calls_total", usage="legacy") >= 0

    # OpenMetrics negotiation
    om = httpx.get(url + "/metrics", headers={"Accept": "application/openmetrics-text"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")

    health = httpx.get(url + "/health").json()
    assert health["status"] == "pass" and health["database"]["reachable"] is True
    assert health["last_run"]["status"] == "pass"
    assert {c["name"] for c in health["checks"]} >= {"coverage", "schema", "rls"}
    assert httpx.get(url + "/health/live").status_code == 200
    assert httpx.get(url + "/health/ready").status_code == 200
    assert httpx.get(url + "/nope").status_code == 404
    assert httpx.post(url + "/metrics").status_code == 405

    # A change is visible after the next run, and scrapes never query the database.
    sample.add_orphans(pg_conn, "conversations", 3)
    m = scrape(url)
    assert value(m, "migration_watch_rows_orphaned", table="public.conversations") == 0
    service.runner.run_once()
    m = scrape(url)
    assert value(m, "migration_watch_rows_orphaned", table="public.conversations") == 3
    assert (
        value(
            m,
            "migration_watch_check_status",
            check="orphans",
            subject="public.conversations",
            status="fail",
        )
        == 1
    )


def test_database_stopped_mid_run_then_recovers(
    service: Service, pg_cluster: EphemeralCluster
) -> None:
    url = service.http.url
    pg_cluster.stop_server()
    try:
        service.runner.run_once()
        m = scrape(url)  # still served
        assert value(m, "migration_watch_database_up") == 0
        assert value(
            m, "migration_watch_check_status", check="coverage", subject="public.conversations",
            status="error",
        ) == 1  # fmt: skip
        assert "migration_watch_table_rows" not in m  # no stale values
        assert value(m, "migration_watch_check_errors_total", check="coverage") >= 1
        assert httpx.get(url + "/health/ready").status_code == 503
        health = httpx.get(url + "/health").json()
        assert health["status"] == "error" and health["database"]["reachable"] is False
    finally:
        pg_cluster.start_server()
    service.runner.run_once()
    m = scrape(url)
    assert value(m, "migration_watch_database_up") == 1
    assert value(
        m, "migration_watch_check_status", check="coverage", subject="public.conversations",
        status="pass",
    ) == 1  # fmt: skip
    assert httpx.get(url + "/health/ready").status_code == 200


def test_promtool_check_metrics_on_a_real_scrape(service: Service) -> None:
    promtool = _which("promtool")
    text = httpx.get(service.http.url + "/metrics").text
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "" and proc.stderr.strip() == ""


def _which(tool: str) -> str:
    import shutil

    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is required in CI (installed by scripts/setup)")
        pytest.skip(f"{tool} not installed")
    return path


def test_run_stops_cleanly_on_sigterm(tmp_path: Path, db_dsn: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = write_config(
        tmp_path,
        db_dsn,
        service={"pulse": "1h"},
        http={"listen": f"127.0.0.1:{port}"},
    )
    log_path = tmp_path / "stderr.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "migration_watch.cli", "--log-format", "json", "run",
             "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                return httpx.get(url + "/health/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(ready, timeout=30)
        # A second daemon on the same state file refuses to start (exit 2, names the first).
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            other_port = s.getsockname()[1]
        (tmp_path / "second").mkdir()
        other = write_config(
            tmp_path / "second",
            db_dsn,
            service={"pulse": "1h"},
            http={"listen": f"127.0.0.1:{other_port}"},
            state={"path": str(tmp_path / "state.sqlite")},
        )
        second = subprocess.run(
            [sys.executable, "-m", "migration_watch.cli", "run", "--config", str(other)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert second.returncode == 2, second.stderr
        assert f"another migration-watch daemon (pid {proc.pid})" in second.stderr
        assert "state.sqlite" in second.stderr
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        assert time.monotonic() - started < 5
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [json.loads(x) for x in log_path.read_text().splitlines() if x.startswith("{")]
    events = [line.get("event") for line in lines]
    assert "check run finished" in events
    assert "service stopped" in events


def test_baseline_record_then_latency_checks_in_check_once(
    tmp_path: Path, db_dsn: str, pg_conn: psycopg.Connection[Any]
) -> None:
    # A new, small organization: the planner picks the organization_id index for it.
    org = ("7e57e57e-0000-4000-8000-000000000001",)
    probes = [
        {
            "name": "conversations_by_org",
            "sql": "SELECT id FROM conversations WHERE organization_id = %(org)s"
            " ORDER BY created_at DESC LIMIT 50",
            "params": {"org": org[0]},
            "table": "conversations",
            "expect_index": "idx_conversations_organization_id",
        }
    ]
    cfg = write_config(tmp_path, db_dsn, probes=probes)
    out = io.StringIO()
    assert main(["baseline", "record", "--config", str(cfg)], out=out) == 0
    assert "probe conversations_by_org: median" in out.getvalue()
    _, doc = check_json(cfg)
    by_name = {c["name"]: c for c in doc["checks"] if c["subject"] == "probe:conversations_by_org"}
    assert set(by_name) == {"latency", "index_plan"}
    assert by_name["latency"]["observed"]["baseline_seconds"] > 0
    assert by_name["index_plan"]["status"] == "pass"
    assert by_name["index_plan"]["observed"]["uses_index"] is True
