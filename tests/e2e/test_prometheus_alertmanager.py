"""End to end on 127.0.0.1: the daemon -> a real Prometheus evaluating the shipped rules -> a real
Alertmanager with the example routes -> a webhook receiver.

The test copies of the shipped configs change only timing values (the rules' ``for``, the
scrape and evaluation intervals, Alertmanager's ``group_wait`` / ``group_interval``) and
addresses (scrape target, Alertmanager target, webhook URLs, listen addresses, storage paths);
the rules and Alertmanager copies are checked to differ from the originals in nothing else (the
Prometheus copy also keeps only the ``migration-watch`` scrape job). The daemon gets its extra
runs on demand (``POST /run``), so nothing waits for a cadence point.

The daemon's clock is a :class:`ManualClock` held at wall time (T0 one minute ago): Prometheus
judges staleness with its own clock, so virtual and real time must agree here, and a held
clock lets no cadence run start by itself during the test.

Tools come from Debian (``prometheus``, ``prometheus-alertmanager``). A missing tool skips the
tests, except under CI=true where it fails them: CI must not pass by skipping.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from migration_watch.cli import main
from migration_watch.clock import ManualClock
from migration_watch.config import Config, parse_config
from migration_watch.demo import sample
from migration_watch.service import Service
from tests.integration.conftest import sample_config_data
from tests.support import Receiver, free_port, log_tail, require_tool, tool_process

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "alerts" / "migration-watch.rules.yml"
ALERTMANAGER_CONFIG = ROOT / "alerts" / "alertmanager.example.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus.yml"

JOB = "migration-watch"  # the rules select up{job="migration-watch"}
BROKEN_INDEX = "idx_conversations_organization_id"
POST_DEPLOY_ROWS = 3
#: The alerts the broken migration must raise and the repair must resolve.
EXPECTED = ("MigrationWatchSchema", "MigrationWatchPostDeployWrites")

#: Timing values of the test copies (nothing else is changed).
SCRAPE_INTERVAL = "1s"
RULE_FOR = "1s"  # production `for` values > 0 become this; `for: 0m` stays 0s
AM_TIMING = {"group_wait": "1s", "group_interval": "1s"}

POLL = 0.1  # seconds between two looks at an external condition
STEP_TIMEOUT = 30.0  # seconds one step (a start-up, an alert's way through) may take

T = TypeVar("T")

# --------------------------------------------------------------------------- helpers


def _wait_for(
    condition: Callable[[], T | None],
    what: str,
    *,
    timeout: float = STEP_TIMEOUT,
    state: Callable[[], str] = lambda: "",
) -> T:
    """Poll ``condition`` until it returns a truthy value (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{state()}")
        time.sleep(POLL)


@dataclass(frozen=True)
class _Process:
    """A running external server (Prometheus, Alertmanager) with its log file."""

    name: str
    url: str
    log_path: Path

    def log_tail(self) -> str:
        return f"{self.name}: {log_tail(self.log_path)}"


@contextlib.contextmanager
def _logs_on_failure(*processes: _Process) -> Iterator[None]:
    """Print the servers' logs when the block fails (pytest shows them with the failure)."""
    try:
        yield
    except BaseException:
        for process in processes:
            print(process.log_tail())
        raise


# --------------------------------------------------------------------------- test copies

_ZERO_DURATION = re.compile(r"(?:0+(?:ms|s|m|h|d|w|y))+")


def _rules_copy(dst: Path) -> Path:
    """The shipped rules with every alert's ``for`` shortened (0 stays 0)."""
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in data["groups"]:
        for rule in group["rules"]:
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    rule[key] = "0s" if _ZERO_DURATION.fullmatch(str(rule[key])) else RULE_FOR
    dst.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return dst


def _alertmanager_copy(dst: Path, receiver: Receiver) -> Path:
    """The example config with short group timings and every webhook aimed at ``receiver``
    (path ``/<receiver name>``, so the route taken is visible)."""
    data = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))

    def shorten(route: dict[str, Any]) -> None:
        for key, value in AM_TIMING.items():
            if key in route:
                route[key] = value
        for child in route.get("routes", []):
            shorten(child)

    shorten(data["route"])
    for entry in data["receivers"]:
        # Any other integration would try to reach the internet from the test.
        assert set(entry) <= {"name", "webhook_configs"}, entry
        for webhook in entry.get("webhook_configs", []):
            webhook["url"] = receiver.url(f"/{entry['name']}")
    dst.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return dst


def _prometheus_copy(dst: Path, *, rules: Path, target: str, alertmanager: str) -> Path:
    """deploy/prometheus.yml with 1 s intervals, the rules copy, and 127.0.0.1 addresses."""
    data = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    data["global"].update(scrape_interval=SCRAPE_INTERVAL, evaluation_interval=SCRAPE_INTERVAL)
    data["rule_files"] = [str(rules)]
    data["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    (job,) = (j for j in data["scrape_configs"] if j["job_name"] == JOB)
    if "scrape_timeout" in job:
        job["scrape_timeout"] = SCRAPE_INTERVAL  # may not exceed the interval
    job["static_configs"] = [{"targets": [target]}]
    data["scrape_configs"] = [job]  # the stack's other jobs have no target here
    dst.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return dst


def _without(data: Any, keys: frozenset[str]) -> Any:
    """``data`` with every mapping key in ``keys`` removed, recursively."""
    if isinstance(data, dict):
        return {k: _without(v, keys) for k, v in data.items() if k not in keys}
    if isinstance(data, list):
        return [_without(v, keys) for v in data]
    return data


def test_copies_change_only_timing_and_addresses(tmp_path: Path) -> None:
    receiver = Receiver()  # not started: only its URL is used
    rules = yaml.safe_load(_rules_copy(tmp_path / "rules.yml").read_text())
    original = yaml.safe_load(RULES.read_text())
    assert rules != original
    timing = frozenset({"for", "keep_firing_for"})
    assert _without(rules, timing) == _without(original, timing)

    am = yaml.safe_load(_alertmanager_copy(tmp_path / "am.yml", receiver).read_text())
    original = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    assert _without(am, frozenset(AM_TIMING) | {"url"}) == _without(
        original, frozenset(AM_TIMING) | {"url"}
    )
    urls = [w["url"] for r in am["receivers"] for w in r["webhook_configs"]]
    assert urls and all(u.startswith("http://127.0.0.1:") for u in urls)


# --------------------------------------------------------------------------- fixtures


def _daemon_config(dsn: str, tmp_path: Path, now: datetime, **overrides: Any) -> dict[str, Any]:
    data = sample_config_data(dsn, state={"path": str(tmp_path / "state.sqlite")}, **overrides)
    data["migration"]["deployed_at"] = (now - timedelta(minutes=1)).isoformat()
    return data


@contextlib.contextmanager
def _service(config: Config, clock: ManualClock) -> Iterator[Service]:
    svc = Service(config, clock=clock, port=0)
    try:
        svc.start()
        yield svc
    finally:
        svc.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def daemon(db_dsn: str, tmp_path: Path, clock: ManualClock) -> Iterator[Service]:
    """The daemon in-process on 127.0.0.1:<random>, watching the fresh healthy database; no
    alerting receivers of its own (Prometheus -> Alertmanager is the path for the data alerts)."""
    config = parse_config(_daemon_config(db_dsn, tmp_path, clock.now()), env={})
    assert config.alerting.receivers == ()
    with _service(config, clock) as svc:
        yield svc


@pytest.fixture
def alertmanager(tmp_path: Path, receiver: Receiver) -> Iterator[_Process]:
    binary = require_tool("alertmanager", "prometheus-alertmanager")
    root = tmp_path / "alertmanager"
    root.mkdir()
    port = free_port()
    process = _Process("alertmanager", f"http://127.0.0.1:{port}", root / "alertmanager.log")
    argv = [
        binary,
        f"--config.file={_alertmanager_copy(root / 'alertmanager.yml', receiver)}",
        f"--storage.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # no gossip: a single instance
    ]
    with tool_process(
        argv, ready_url=f"{process.url}/-/ready", log_path=process.log_path, timeout=STEP_TIMEOUT
    ):
        yield process


@pytest.fixture
def prometheus(tmp_path: Path, daemon: Service, alertmanager: _Process) -> Iterator[_Process]:
    binary = require_tool("prometheus")
    root = tmp_path / "prometheus"
    root.mkdir()
    port = free_port()
    config = _prometheus_copy(
        root / "prometheus.yml",
        rules=_rules_copy(root / "migration-watch.rules.yml"),
        target=daemon.http.url.removeprefix("http://"),
        alertmanager=alertmanager.url.removeprefix("http://"),
    )
    process = _Process("prometheus", f"http://127.0.0.1:{port}", root / "prometheus.log")
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with tool_process(
        argv, ready_url=f"{process.url}/-/ready", log_path=process.log_path, timeout=STEP_TIMEOUT
    ):
        yield process


# --------------------------------------------------------------------------- the stack at work


@dataclass(frozen=True)
class _Notified:
    """One alert inside one webhook notification from Alertmanager."""

    index: int  # position of the notification among the receiver's requests
    path: str  # /<Alertmanager receiver name>
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]


def _notified(receiver: Receiver) -> list[_Notified]:
    out = []
    for index, request in enumerate(list(receiver.requests)):
        for alert in request.json.get("alerts", []):
            out.append(
                _Notified(
                    index, request.path, alert["status"], alert["labels"], alert["annotations"]
                )
            )
    return out


def _query(prometheus: _Process, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": expr}, timeout=5)
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def _trigger_run(svc: Service, clock: ManualClock) -> int:
    """``POST /run`` (as ``migration-watch trigger`` does), retried while a run is going on."""
    clock.set(datetime.now(UTC))

    def post() -> int | None:
        response = httpx.post(f"{svc.http.url}/run", timeout=5)
        if response.status_code == 409:
            return None
        assert response.status_code == 202, response.text
        return int(response.json()["run_id"])

    return _wait_for(post, "the daemon to accept POST /run")


def test_broken_migration_pages_through_alertmanager_and_resolves(
    daemon: Service,
    clock: ManualClock,
    prometheus: _Process,
    alertmanager: _Process,
    receiver: Receiver,
    pg_conn: psycopg.Connection[Any],
) -> None:
    target = daemon.http.url.removeprefix("http://")
    watched = "|".join(EXPECTED)

    def state() -> str:
        notified = [
            (n.index, n.path, n.status, n.labels.get("alertname")) for n in _notified(receiver)
        ]
        try:
            alerts = sorted(
                (a["metric"]["alertname"], a["metric"].get("subject"), a["metric"]["alertstate"])
                for a in _query(prometheus, 'ALERTS{alertname=~"MigrationWatch.*"}')
            )
        except httpx.HTTPError as exc:
            alerts = [("Prometheus query failed", str(exc), "")]
        return f"Prometheus ALERTS: {alerts}\nwebhook notifications: {notified}"

    with _logs_on_failure(prometheus, alertmanager):
        # 1. Healthy: Prometheus scrapes the daemon's start-up run, every check passes.
        def healthy() -> bool:
            passing = _query(
                prometheus,
                f'migration_watch_check_status{{job="{JOB}", check="schema", status="pass"}} == 1',
            )
            failing = _query(
                prometheus,
                f'migration_watch_check_status{{job="{JOB}", status="fail"}} == 1',
            )
            return bool(passing) and not failing

        _wait_for(healthy, "a healthy scrape of the daemon", state=state)
        (up,) = _query(prometheus, f'up{{job="{JOB}"}}')
        assert up["metric"]["instance"] == target and up["value"][1] == "1"
        assert _query(prometheus, f'ALERTS{{alertname=~"{watched}"}}') == []

        # 2. Break the migration: an invalid index, rows written after the deploy without
        # organization_id (an old code path writing only customer_id).
        sample.invalidate_index(pg_conn, BROKEN_INDEX)
        deployed_at = daemon.week.deployed_at()
        assert deployed_at is not None
        sample.add_post_deploy_rows(pg_conn, POST_DEPLOY_ROWS, deployed_at + timedelta(seconds=1))
        broken_at = time.monotonic()
        _trigger_run(daemon, clock)

        def all_firing() -> list[_Notified] | None:
            found = [
                next((n for n in _notified(receiver) if _is(n, name, "firing")), None)
                for name in EXPECTED
            ]
            return None if None in found else [n for n in found if n is not None]

        schema, post_deploy = _wait_for(
            all_firing, f"firing {EXPECTED} at the webhook", state=state
        )
        firing_after = time.monotonic() - broken_at
        for alert in (schema, post_deploy):
            # routed by severity to the paging receiver, with the scrape's and the rule's labels
            assert alert.path == "/oncall-page", alert
            assert alert.labels["severity"] == "critical"
            assert alert.labels["job"] == JOB
            assert alert.labels["instance"] == target
            name = alert.labels["alertname"]
            assert alert.annotations["runbook_url"] == f"docs/runbook.md#{name.lower()}"
        assert schema.labels["check"] == "schema"
        assert schema.labels["subject"] == "public.conversations"
        assert BROKEN_INDEX in schema.annotations["description"], schema.annotations
        assert post_deploy.labels["check"] == "post_deploy_writes"
        assert post_deploy.labels["subject"] == "public.conversations"
        assert f"{POST_DEPLOY_ROWS} rows created since the deploy" in " ".join(
            post_deploy.annotations["description"].split()
        ), post_deploy.annotations

        # 3. Repair: rebuild the index, backfill the rows as the migration did, run again.
        pg_conn.execute(sql.SQL("REINDEX INDEX {}").format(sql.Identifier("public", BROKEN_INDEX)))
        backfilled = pg_conn.execute(
            """
            UPDATE public.conversations c
            SET organization_id = cc.organization_id
            FROM public.domains d
            JOIN public.customer_configs cc ON cc.id = d.customer_config_id
            WHERE c.domain_id = d.id
              AND c.organization_id IS NULL
              AND cc.organization_id IS NOT NULL
            """
        ).rowcount
        assert backfilled == POST_DEPLOY_ROWS
        repaired_at = time.monotonic()
        _trigger_run(daemon, clock)

        def all_resolved() -> bool:
            notified = _notified(receiver)
            return all(
                any(_is(n, f.labels["alertname"], "resolved", subject=f.labels["subject"])
                    and n.index > f.index for n in notified)
                for f in (schema, post_deploy)
            )  # fmt: skip

        _wait_for(all_resolved, f"resolved {EXPECTED} at the webhook", state=state)
        resolved_after = time.monotonic() - repaired_at
        assert _query(prometheus, f'ALERTS{{alertname=~"{watched}"}}') == []
        # Alertmanager's grouping and dedup: one page per state change, no flapping rule.
        for name in EXPECTED:
            statuses = [n.status for n in _notified(receiver) if _is(n, name, n.status)]
            assert statuses == ["firing", "resolved"], (name, state())
        print(f"firing after {firing_after:.1f}s, resolved after {resolved_after:.1f}s")


def _is(n: _Notified, alertname: str, status: str, *, subject: str | None = None) -> bool:
    return (
        n.labels.get("alertname") == alertname
        and n.status == status
        and (subject is None or n.labels.get("subject") == subject)
    )


# --------------------------------------------------------------------------- promtool check metrics

LOG_LINES = [
    {"level": "info", "msg": "GET /rest/v1/conversations?organization_id=eq.7 200"},
    {"level": "error", "msg": "column customer_id does not exist"},
    {"level": "info", "msg": "plain line"},
]


def test_promtool_check_metrics_on_a_fully_configured_daemon(
    db_dsn: str,
    tmp_path: Path,
    clock: ManualClock,
    receiver: Receiver,
    pg_conn: psycopg.Connection[Any],
) -> None:
    """Log sources (file + HTTP drain), probes with a recorded baseline and alerting: every
    metric family is present, and promtool finds nothing to report in the scrape."""
    promtool = require_tool("promtool")
    app_log = tmp_path / "app.jsonl"
    app_log.write_text("".join(json.dumps(line) + "\n" for line in LOG_LINES), encoding="utf-8")
    data = _daemon_config(
        db_dsn,
        tmp_path,
        clock.now(),
        logs={
            "sources": [
                {
                    "name": "app",
                    "type": "file",
                    "paths": [str(app_log)],
                    "format": "json",
                    "start_at": "beginning",
                    "fields": {"message": "msg"},
                },
                {"name": "drain", "type": "http", "token": "drain-token", "format": "json"},
            ]
        },
        probes=[
            {
                "name": "conversations_by_org",
                "sql": "SELECT id FROM conversations WHERE organization_id = %(org)s"
                " ORDER BY created_at DESC LIMIT 50",
                "params": {"org": "7e57e57e-0000-4000-8000-000000000001"},
                "table": "conversations",
                "expect_index": BROKEN_INDEX,
            }
        ],
        alerting={"receivers": [{"name": "oncall", "type": "webhook", "url": receiver.url()}]},
    )
    path = tmp_path / "migration-watch.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert main(["baseline", "record", "--config", str(path)]) == 0
    config = parse_config(copy.deepcopy(data), env={})

    with _service(config, clock) as svc:
        sample.invalidate_index(pg_conn, "idx_customer_configs_organization_id")
        _wait_for(svc.week.run_extra, "an extra run (after the start-up run)")
        _wait_for(lambda: receiver.requests, "a notification to the webhook")
        svc.alerting.deliver()  # counted: notifications_total{result="sent"}
        svc.logs.pump()
        text = httpx.get(f"{svc.http.url}/metrics", timeout=5).text

    samples = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    for name in (
        "migration_watch_check_status",
        "migration_watch_log_lines_total",
        "migration_watch_log_source_up",
        "migration_watch_probe_latency_seconds",
        "migration_watch_probe_baseline_seconds",
        "migration_watch_notifications_total",
        "migration_watch_outbox_size",
        "migration_watch_alerts",
    ):
        assert name in samples, f"{name} missing from the scrape"
    assert 'source="app"' in text and 'source="drain"' in text
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""
