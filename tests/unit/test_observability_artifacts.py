"""The shipped observability artifacts, checked with the real tools.

Covers alerts/ (promtool, amtool), dashboards/ (structure, PromQL accepted by a real Prometheus),
docs/runbook.md and docs/alerts.md (one section / row per alert), deploy/prometheus.yml and
docker-compose.yml (every mounted file exists and is the one validated here).

Tools come from Debian (`prometheus`, `prometheus-alertmanager`). A missing tool skips its tests,
except under CI=true where it fails them: CI must not pass by skipping.
"""

from __future__ import annotations

import fnmatch
import functools
import itertools
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from migration_watch.alerting.config import RULE_KEYS
from tests.support import free_port, require_tool, tool_process

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "alerts" / "migration-watch.rules.yml"
RULES_TEST = ROOT / "alerts" / "migration-watch.rules.test.yml"
ALERTMANAGER = ROOT / "alerts" / "alertmanager.example.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus.yml"
DASHBOARD = ROOT / "dashboards" / "migration-watch.json"
PROVISIONING = ROOT / "dashboards" / "provisioning"
DS_PROVISIONING = PROVISIONING / "datasources" / "prometheus.yaml"
DASH_PROVISIONING = PROVISIONING / "dashboards" / "migration-watch.yaml"
COMPOSE = ROOT / "docker-compose.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
ALERTS_DOC = ROOT / "docs" / "alerts.md"

JOB = "migration-watch"


def _exported_metrics() -> frozenset[str]:
    """The names the daemon's real registry exports, with every feature configured (probes,
    log sources, alert receivers), so a dashboard or rule naming a metric the daemon does not
    export fails here. No database is needed: collecting only reads memory and the state file."""
    import tempfile

    from migration_watch.config import parse_config
    from migration_watch.metrics import exported_metric_names
    from migration_watch.service import Service

    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config(
            {
                "database": {"dsn": "host=127.0.0.1 port=1 dbname=x"},
                "migration": {
                    "name": "m",
                    "legacy_column": "customer_id",
                    "new_column": "organization_id",
                    "deployed_at": "2025-10-23T09:00:00Z",
                    "tables": [{"name": "conversations"}],
                },
                "http": {"listen": "127.0.0.1:0"},
                "state": {"path": f"{tmp}/state.sqlite"},
                "probes": [{"name": "p", "sql": "SELECT 1"}],
                "logs": {"sources": [{"name": "drain", "type": "http", "token": "t"}]},
                "alerting": {
                    "receivers": [{"name": "r", "type": "webhook", "url": "http://127.0.0.1:1/"}]
                },
            },
            env={},
        )
        svc = Service(config)
        try:
            return exported_metric_names(svc.registry)
        finally:
            svc.stop()


EXPORTED_METRICS = _exported_metrics()
# Series Prometheus itself writes.
PROMETHEUS_SERIES = frozenset({"up", "ALERTS"})

# Rule keys of the daemon's alerting (checks first, then the monitor's own), and the alerts only
# Prometheus can raise about the daemon.
MONITOR_RULE_KEYS = ("database_up", "run_missed", "log_source", "verdict")
CHECK_RULE_KEYS = tuple(k for k in RULE_KEYS if k not in MONITOR_RULE_KEYS)
SELF_ALERTS = (
    "MigrationWatchDown",
    "MigrationWatchStaleResults",
    "MigrationWatchNotificationsFailing",
)


def alert_name(rule_key: str) -> str:
    return "MigrationWatch" + "".join(part.capitalize() for part in rule_key.split("_"))


# --------------------------------------------------------------------------- helpers


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)


_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def _load_yaml(path: Path) -> Any:
    """Parsed YAML file (cached: callers only read it)."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_YamlLoader)


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _load_yaml(RULES)["groups"] for rule in group["rules"]]


def _alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _panels() -> list[dict[str, Any]]:
    return list(_dashboard()["panels"])


def _query_panels() -> list[dict[str, Any]]:
    return [p for p in _panels() if p["type"] != "row"]


def _dashboard_exprs() -> list[str]:
    return [t["expr"] for p in _query_panels() for t in p["targets"]]


# A small PromQL reader: enough to list the metric names a query selects. Strings, label matchers,
# ranges and grouping clauses are removed; what remains is identifiers, and an identifier that is
# not a keyword and not called like a function is a metric name.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r'__name__\s*=\s*"((?:[^"\\]|\\.)*)"')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.:$])[A-Za-z_:][\w:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"offset", "bool", "inf", "nan", "atan2"}
)
_GRAFANA_VARS = re.compile(r"\$__(?:rate_interval|interval|range)\b|\$\{__[a-z_]+\}")


def metric_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression (Grafana variables allowed)."""
    expr = _GRAFANA_VARS.sub("5m", expr)
    expr = re.sub(r"#[^\n]*", "", expr)
    names = set(_NAME_MATCHER.findall(expr))
    expr = _STRING.sub('""', expr)
    expr = _BRACES.sub(" ", expr)
    expr = _BRACKETS.sub(" ", expr)
    expr = _GROUPING.sub(" ", expr)
    for match in _IDENT.finditer(expr):
        following = expr[match.end() :].lstrip()
        if match.group() in _KEYWORDS or following.startswith("("):
            continue
        names.add(match.group())
    return names


_TEMPLATE_QUERY = re.compile(
    r'printf\s+"((?:[^"\\]|\\.)*)"[^|}]*\|\s*query|query\s+"((?:[^"\\]|\\.)*)"'
)


def template_queries(text: str) -> list[str]:
    """PromQL queries run by an alert annotation template (`printf "…" … | query`)."""
    queries = []
    for match in _TEMPLATE_QUERY.finditer(text):
        raw = match.group(1) if match.group(1) is not None else match.group(2)
        query = json.loads(f'"{raw}"')  # Go string escapes are JSON-compatible here
        queries.append(query.replace("%q", '"x"').replace("%s", "x"))
    return queries


def github_anchor(heading: str) -> str:
    """The anchor GitHub generates for a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


# --------------------------------------------------------------------------- the PromQL reader


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('sum by (job) (rate(a_total{x="b c"}[5m])) / on (job) b', {"a_total", "b"}),
        ("max without (status) (c == 1) or absent(up{job='x'})", {"c", "up"}),
        ('{__name__="d", e="f"} offset 1h > bool 0.5e3', {"d"}),
        (
            'x:y:rate1h{instance=~"$instance"} and ignoring(z) w[$__rate_interval]',
            {"x:y:rate1h", "w"},
        ),
        ("time() - t * 1000 > on (i) group_left () u", {"t", "u"}),
    ],
)
def test_metric_names_reads_promql(expr: str, expected: set[str]) -> None:
    assert metric_names(expr) == expected


# --------------------------------------------------------------------------- alert rules


def test_promtool_check_rules_lint_all() -> None:
    promtool = require_tool("promtool")
    result = _run(promtool, "check", "rules", "--lint=all", "--lint-fatal", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "lint" not in (result.stdout + result.stderr).lower()


def test_promtool_test_rules() -> None:
    promtool = require_tool("promtool")
    result = _run(promtool, "test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_groups() -> None:
    groups = [g["name"] for g in _load_yaml(RULES)["groups"]]
    assert groups == ["migration-watch-data", "migration-watch-self", "migration-watch-recording"]


def test_alert_names_are_those_of_the_alerting_rules() -> None:
    expected = {alert_name(k) for k in CHECK_RULE_KEYS + MONITOR_RULE_KEYS} | set(SELF_ALERTS)
    assert {r["alert"] for r in _alert_rules()} == expected
    assert alert_name("post_deploy_writes") == "MigrationWatchPostDeployWrites"
    assert alert_name("database_up") == "MigrationWatchDatabaseUp"


def test_alert_rule_conventions() -> None:
    for rule in _alert_rules():
        name = rule["alert"]
        assert re.fullmatch(r"MigrationWatch[A-Z][A-Za-z]+", name)
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert "for" in rule, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert "{{" not in annotations["summary"], f"{name}: summary must be static"
        assert "{{" in annotations["description"], f"{name}: description must be templated"
        assert annotations["runbook_url"] == f"docs/runbook.md#{name.lower()}", name


def test_data_alerts_fire_on_check_status_and_survive_errors() -> None:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for rule in _alert_rules():
        by_name.setdefault(rule["alert"], []).append(rule)
    for key in CHECK_RULE_KEYS:
        name = alert_name(key)
        for rule in by_name[name]:
            expr = re.sub(r"\s+", " ", rule["expr"])
            assert f'migration_watch_check_status{{check="{key}", status="fail"}} == 1' in expr
            # kept firing while the check errors or is skipped, or the daemon is down;
            # resolved on a real pass
            held = f'migration_watch_check_status{{check="{key}", status=~"error|skipped"}} == 1'
            assert held in expr
            assert f'ALERTS{{alertname="{name}", alertstate="firing"' in expr
            assert f'up{{job="{JOB}"}} == 0' in expr
    # escalations: warning first, critical when sustained
    for key in ("log_errors", "legacy_errors"):
        assert sorted(r["labels"]["severity"] for r in by_name[alert_name(key)]) == [
            "critical",
            "warning",
        ]


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for group in _load_yaml(RULES_TEST)["tests"]:
        for case in group.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {r["alert"] for r in _alert_rules()}
    assert names - fired == set(), "alerts never fired in the rule tests"
    assert names - quiet == set(), "alerts never shown quiet in the rule tests"
    tested = {
        case["expr"]
        for group in _load_yaml(RULES_TEST)["tests"]
        for case in group.get("promql_expr_test", [])
    }
    assert {r["record"] for r in _rules() if "record" in r} <= tested


def test_amtool_check_config() -> None:
    amtool = require_tool("amtool")
    result = _run(amtool, "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alertmanager_routes_and_inhibitions() -> None:
    config = _load_yaml(ALERTMANAGER)
    routes = config["route"]["routes"]
    assert any('severity="critical"' in r.get("matchers", []) for r in routes)
    receivers = {r["name"]: r for r in config["receivers"]}
    assert all("webhook_configs" in r for r in receivers.values())
    inhibitions = config["inhibit_rules"]
    sources = [m for rule in inhibitions for m in rule["source_matchers"]]
    assert 'alertname="MigrationWatchDatabaseUp"' in sources
    # the inhibition regex names real alerts
    alert_names = {r["alert"] for r in _alert_rules()}
    for rule in inhibitions:
        for matcher in rule["target_matchers"]:
            found = re.fullmatch(r'alertname=~"(.+)"', matcher)
            if found:
                assert any(re.fullmatch(found.group(1), n) for n in alert_names), matcher
                inner = re.fullmatch(r"MigrationWatch\((.+)\)", found.group(1))
                if inner:
                    assert {f"MigrationWatch{n}" for n in inner.group(1).split("|")} <= alert_names


# --------------------------------------------------------------------------- docs


def _runbook_anchors() -> dict[str, str]:
    """Anchor -> section text for every level-2 heading of the runbook."""
    text = RUNBOOK.read_text(encoding="utf-8")
    sections: dict[str, str] = {}
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        if heading.startswith("MigrationWatch"):
            sections[github_anchor(heading)] = body
    return sections


def test_runbook_has_a_section_per_alert() -> None:
    sections = _runbook_anchors()
    for rule in _alert_rules():
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor in sections, f"docs/runbook.md has no heading for #{anchor}"
        body = sections[anchor]
        for part in ("**Meaning**", "**Confirm**", "**Act**", "**Tell**"):
            assert part in body, f"#{anchor} lacks {part}"
    assert set(sections) == {r["alert"].lower() for r in _alert_rules()}


def test_alerts_doc_maps_rule_check_alert_and_anchor() -> None:
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in ALERTS_DOC.read_text(encoding="utf-8").splitlines()
        if line.startswith("|")
    ]
    by_alert = {
        re.sub(r"[`*]", "", row[2]): row
        for row in rows
        if len(row) >= 5 and row[2].startswith("`MigrationWatch")
    }
    assert set(by_alert) == {r["alert"] for r in _alert_rules()}
    for key in CHECK_RULE_KEYS + MONITOR_RULE_KEYS:
        row = by_alert[alert_name(key)]
        assert row[0] == f"`{key}`"
        assert f"(runbook.md#{alert_name(key).lower()})" in row[4]
    for name in SELF_ALERTS:
        assert f"(runbook.md#{name.lower()})" in by_alert[name][4]


# --------------------------------------------------------------------------- metric names


def _recording_names() -> set[str]:
    return {r["record"] for r in _rules() if "record" in r}


def test_rules_use_only_exported_metrics() -> None:
    known = EXPORTED_METRICS | PROMETHEUS_SERIES | _recording_names()
    for rule in _rules():
        used = metric_names(rule["expr"])
        assert used, rule["expr"]
        for text in rule.get("annotations", {}).values():
            for query in template_queries(text):
                used |= metric_names(query)
        assert used <= known, f"{rule.get('alert') or rule.get('record')}: {used - known}"


def test_dashboard_uses_only_exported_metrics() -> None:
    known = EXPORTED_METRICS | PROMETHEUS_SERIES | _recording_names()
    for expr in _dashboard_exprs():
        used = metric_names(expr)
        assert used, expr
        assert used <= known, f"{expr}: {used - known}"
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            found = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["definition"])
            assert found, variable["definition"]
            assert metric_names(found.group(1)) <= EXPORTED_METRICS


# --------------------------------------------------------------------------- dashboard


def test_dashboard_identity_and_variables() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "migration-watch"
    assert dashboard["schemaVersion"] >= 39
    assert "__inputs" not in dashboard
    assert "DS_PROMETHEUS" not in DASHBOARD.read_text(encoding="utf-8")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    rows = [p["title"] for p in _panels() if p["type"] == "row"]
    assert rows == [
        "Verdict and cadence",
        "Data migration",
        "Traffic",
        "Errors",
        "Performance",
        "The monitor itself",
    ]


def test_dashboard_panel_ids_unique() -> None:
    ids = [p["id"] for p in _panels()]
    assert len(ids) == len(set(ids))


def test_dashboard_grid_within_24_columns_and_not_overlapping() -> None:
    boxes = []
    for p in _panels():
        g = p["gridPos"]
        assert g["x"] >= 0 and g["y"] >= 0 and g["w"] > 0 and g["h"] > 0, p["title"]
        assert g["x"] + g["w"] <= 24, p["title"]
        boxes.append((p["title"], g))
    for (a, ga), (b, gb) in itertools.combinations(boxes, 2):
        apart = (
            ga["x"] + ga["w"] <= gb["x"]
            or gb["x"] + gb["w"] <= ga["x"]
            or ga["y"] + ga["h"] <= gb["y"]
            or gb["y"] + gb["h"] <= ga["y"]
        )
        assert apart, f"panels {a!r} and {b!r} overlap"


def test_dashboard_panels_use_the_datasource_variable() -> None:
    expected = {"type": "prometheus", "uid": "${datasource}"}
    for p in _query_panels():
        assert p["datasource"] == expected, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"] == expected, p["title"]
            assert "$instance" in t["expr"], f"{p['title']}: {t['expr']}"


def test_dashboard_panels_have_units_and_descriptions() -> None:
    for p in _query_panels():
        assert p.get("description", "").strip(), p["title"]
        assert p["fieldConfig"]["defaults"].get("unit"), p["title"]


def test_dashboard_rates_use_rate_interval() -> None:
    for expr in _dashboard_exprs():
        for window in re.findall(r"\[([^\]]*)\]", expr):
            assert window == "$__rate_interval", expr
        if re.search(r"\b(?:rate|irate|increase)\s*\(", expr):
            assert "[$__rate_interval]" in expr, expr


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real, empty Prometheus on 127.0.0.1 (it parses queries; no data is needed)."""
    binary = require_tool("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n", encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with tool_process(argv, ready_url=f"{url}/-/ready", log_path=workdir / "prometheus.log"):
        yield url


def _grafana_to_promql(expr: str) -> str:
    return (
        expr.replace("$__rate_interval", "1m")
        .replace("${instance}", ".*")
        .replace("$instance", ".*")
    )


def test_dashboard_queries_accepted_by_prometheus(prometheus_url: str) -> None:
    with httpx.Client(base_url=prometheus_url, timeout=10) as client:
        for expr in _dashboard_exprs():
            response = client.post("/api/v1/query", data={"query": _grafana_to_promql(expr)})
            body = response.json()
            assert response.status_code == 200 and body["status"] == "success", (expr, body)


# --------------------------------------------------------------------------- deployment files


def test_promtool_check_config_of_the_compose_prometheus() -> None:
    promtool = require_tool("promtool")
    result = _run(promtool, "check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def _compose_mounts() -> dict[str, list[tuple[Path, str]]]:
    """service -> [(host path, container path)] of its bind mounts."""
    mounts: dict[str, list[tuple[Path, str]]] = {}
    for name, service in _load_yaml(COMPOSE)["services"].items():
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                if volume.get("type") != "bind":
                    continue
                source, target = volume["source"], volume["target"]
            else:
                source, target = volume.split(":")[:2]
                if not source.startswith((".", "/")):
                    continue  # a named volume
            mounts.setdefault(name, []).append(((ROOT / source).resolve(), target))
    return mounts


def test_compose_mounted_files_exist() -> None:
    missing = [
        f"{service}: {host.relative_to(ROOT)}"
        for service, mounts in _compose_mounts().items()
        for host, _ in mounts
        if not host.exists()
    ]
    assert missing == []
    for name, service in _load_yaml(COMPOSE)["services"].items():
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            assert (context / dockerfile).is_file(), f"{name}: {dockerfile} missing"


def test_compose_mounts_the_validated_configs() -> None:
    mounts = _compose_mounts()
    prometheus = dict(mounts["prometheus"])
    assert prometheus[PROMETHEUS_CONFIG] == "/etc/prometheus/prometheus.yml"
    rule_globs = _load_yaml(PROMETHEUS_CONFIG)["rule_files"]
    assert any(fnmatch.fnmatch(prometheus[RULES], g) for g in rule_globs)
    assert dict(mounts["alertmanager"])[ALERTMANAGER] == "/etc/alertmanager/alertmanager.yml"
    grafana = dict(mounts["grafana"])
    provisioning_dir = _load_yaml(DASH_PROVISIONING)["providers"][0]["options"]["path"]
    assert str(Path(grafana[DASHBOARD]).parent) == provisioning_dir
    assert grafana[PROVISIONING / "datasources"] == "/etc/grafana/provisioning/datasources"
    assert grafana[PROVISIONING / "dashboards"] == "/etc/grafana/provisioning/dashboards"


def test_compose_services_are_wired_together() -> None:
    services = _load_yaml(COMPOSE)["services"]
    assert {"postgres", "migration-watch", "prometheus", "alertmanager", "grafana"} <= set(services)
    config = _load_yaml(PROMETHEUS_CONFIG)
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert JOB in jobs, "the rules expect this scrape job name"
    targets = [t for sc in jobs[JOB]["static_configs"] for t in sc["targets"]]
    assert targets == ["migration-watch:9719"]
    listen = services["migration-watch"]["environment"]["MIGRATION_WATCH_LISTEN"]
    assert listen.endswith(":9719") and listen.startswith("0.0.0.0")
    am_targets = [
        t
        for a in config["alerting"]["alertmanagers"]
        for s in a["static_configs"]
        for t in s["targets"]
    ]
    assert am_targets == ["alertmanager:9093"]
    datasource = _load_yaml(DS_PROVISIONING)["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["uid"] == _dashboard()["templating"]["list"][0]["current"]["value"]
    # $__rate_interval is only right when Grafana knows the scrape interval
    assert datasource["jsonData"]["timeInterval"] == config["global"]["scrape_interval"]


def test_a_fully_configured_daemon_exports_exactly_the_catalogue() -> None:
    from migration_watch.metrics import CATALOGUE

    assert {spec.sample_name for spec in CATALOGUE} == EXPORTED_METRICS
