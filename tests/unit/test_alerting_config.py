"""The ``alerting:`` section: the issue's shape, secrets from files, strict validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from migration_watch.alerting import AlertingConfig
from migration_watch.alerting.config import RULE_KEYS, signing_key
from migration_watch.alerting.rules import DEFAULT_RULES, alert_name, build_rules

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _errors(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        AlertingConfig.model_validate(data)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in info.value.errors()]


def test_the_issue_shape(tmp_path: Path) -> None:
    slack = tmp_path / "slack-url"
    slack.write_text("https://hooks.slack.example/services/T0/B0/XXXX\n")
    cfg = AlertingConfig.model_validate(
        {
            "receivers": [
                {
                    "name": "oncall",
                    "type": "webhook",
                    "url": "https://hooks.example.com/migration",
                    "secret": SECRET,
                },
                {"name": "chat", "type": "slack", "url_file": str(slack)},
                {"name": "am", "type": "alertmanager", "url": "http://alertmanager:9093"},
            ],
            "routes": [
                {"match": {"severity": "critical"}, "receivers": ["oncall", "am"]},
                {"receivers": ["chat"]},
            ],
            "rules": {"schema": {"severity": "critical", "for": 1}},
        }
    )
    assert [r.name for r in cfg.receivers] == ["oncall", "chat", "am"]
    assert cfg.receivers[1].url_value() == "https://hooks.slack.example/services/T0/B0/XXXX"
    schema = cfg.rules.get("schema")
    assert schema is not None
    assert schema.for_ == 1
    assert cfg.rules.get("coverage") is None
    assert cfg.repeat_interval.total_seconds() == 4 * 3600
    # Secrets never show in a repr.
    assert "hooks" not in repr(cfg.receivers[0])
    assert SECRET not in repr(cfg)
    assert "XXXX" not in repr(cfg)


def test_files_for_secret_and_headers(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text(SECRET + "\n")
    (tmp_path / "token").write_text("Bearer s3cr3t-token\n")
    cfg = AlertingConfig.model_validate(
        {
            "receivers": [
                {
                    "name": "hook",
                    "type": "webhook",
                    "url": "http://127.0.0.1:1/x",
                    "secret_file": str(tmp_path / "secret"),
                    "headers": {"X-Team": "data"},
                    "header_files": {"Authorization": str(tmp_path / "token")},
                    "timeout": "2s",
                }
            ]
        }
    )
    r = cfg.receivers[0]
    assert r.secret is not None
    assert r.secret.get_secret_value() == SECRET
    assert {k: v.get_secret_value() for k, v in r.headers.items()} == {
        "X-Team": "data",
        "Authorization": "Bearer s3cr3t-token",
    }
    assert r.timeout.total_seconds() == 2
    assert "s3cr3t" not in repr(r)


@pytest.mark.parametrize(
    ("data", "where", "needle"),
    [
        ({"rules": {"nope": {}}}, "rules.nope", "Extra inputs"),
        ({"rules": {"schema": {"for": 0}}}, "rules.schema.for", "greater than or equal"),
        ({"rules": {"schema": {"severity": "page"}}}, "rules.schema.severity", "Input should be"),
        ({"rules": {"rls": {"labels": {"severity": "x"}}}}, "rules.rls.labels", "set by"),
        ({"rules": {"rls": {"labels": {"bad-name": "x"}}}}, "rules.rls.labels", "invalid label"),
        ({"bogus": 1}, "bogus", "Extra inputs"),
        (
            {"receivers": [{"name": "a", "type": "webhook", "url": "http://x", "bogus": 1}]},
            "receivers.0.bogus",
            "Extra inputs",
        ),
        ({"receivers": [{"name": "a", "type": "webhook"}]}, "receivers.0", "url (or url_file)"),
        (
            {"receivers": [{"name": "a", "type": "webhook", "url": "ftp://x"}]},
            "receivers.0",
            "http:// or https://",
        ),
        (
            {"receivers": [{"name": "a", "type": "pager", "url": "http://x"}]},
            "receivers.0.type",
            "Input should be",
        ),
        (
            {"receivers": [{"name": "a", "type": "slack", "url": "http://x", "secret": SECRET}]},
            "receivers.0",
            "applies to webhook",
        ),
        (
            {"receivers": [{"name": "a", "type": "webhook", "url": "http://x", "secret": "!!"}]},
            "receivers.0",
            "base64",
        ),
        (
            {
                "receivers": [
                    {
                        "name": "a",
                        "type": "webhook",
                        "url": "http://x",
                        "headers": {"webhook-id": "1"},
                    }
                ]
            },
            "receivers.0.headers",
            "set by migration-watch",
        ),
        (
            {
                "receivers": [
                    {"name": "a", "type": "webhook", "url": "http://x"},
                    {"name": "a", "type": "slack", "url": "http://y"},
                ]
            },
            "",
            "defined twice",
        ),
        (
            {
                "receivers": [{"name": "a", "type": "webhook", "url": "http://x"}],
                "routes": [{"match": {"severity": "critical"}, "receivers": ["b"]}],
            },
            "",
            "unknown receiver 'b'",
        ),
        ({"routes": [{"receivers": []}]}, "routes.0.receivers", "at least 1"),
    ],
)
def test_problems_are_reported_with_their_location(
    data: dict[str, Any], where: str, needle: str
) -> None:
    errors = _errors(data)
    assert any(loc == where and needle in msg for loc, msg in errors), errors


def test_url_file_must_be_readable(tmp_path: Path) -> None:
    errors = _errors(
        {"receivers": [{"name": "a", "type": "slack", "url_file": str(tmp_path / "missing")}]}
    )
    assert any("cannot read" in msg for _, msg in errors)


def test_signing_key_accepts_prefixed_and_raw_base64() -> None:
    assert signing_key(SECRET) == signing_key(SECRET.removeprefix("whsec_"))
    with pytest.raises(ValueError, match="too short"):
        signing_key("whsec_YWJj")


def test_rule_defaults_and_overrides() -> None:
    assert tuple(DEFAULT_RULES) == RULE_KEYS
    cfg = AlertingConfig.model_validate(
        {
            "labels": {"env": "prod"},
            "runbook_url": "https://git.example/runbook.md",
            "rules": {
                "coverage": {
                    "for": 3,
                    "keep_firing_for": 2,
                    "repeat_interval": "1h",
                    "labels": {"team": "data"},
                    "annotations": {"summary": "custom {subject}"},
                },
                "verdict": {"enabled": False},
            },
        }
    )
    rules = build_rules(cfg)
    assert set(rules) == set(RULE_KEYS)
    cov = rules["coverage"]
    assert (cov.for_, cov.keep_firing_for, cov.repeat_interval.total_seconds()) == (3, 2, 3600)
    assert cov.labels == {"env": "prod", "team": "data"}
    assert cov.annotations["summary"] == "custom {subject}"
    assert cov.annotations["runbook_url"] == (
        "https://git.example/runbook.md#migrationwatchcoverage"
    )
    assert not rules["verdict"].enabled
    # Cadence-run checks fire on the first failing run; pulse signals wait a few pulses.
    assert rules["schema"].for_ == 1
    assert rules["database_up"].for_ > 1
    assert rules["log_errors"].escalates and rules["legacy_errors"].escalates
    assert not rules["schema"].escalates
    assert rules["orphans"].severity == "critical"
    assert rules["latency"].severity == "warning"
    assert rules["run_missed"].severity == "warning"


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("coverage", "MigrationWatchCoverage"),
        ("post_deploy_writes", "MigrationWatchPostDeployWrites"),
        ("rls", "MigrationWatchRls"),
        ("query_ratio", "MigrationWatchQueryRatio"),
        ("index_plan", "MigrationWatchIndexPlan"),
        ("database_up", "MigrationWatchDatabaseUp"),
        ("legacy_errors", "MigrationWatchLegacyErrors"),
    ],
)
def test_alert_names(key: str, name: str) -> None:
    assert alert_name(key) == name


def test_alert_names_match_the_runbook_and_prometheus_rules() -> None:
    root = Path(__file__).resolve().parents[2]
    runbook = root / "docs" / "runbook.md"
    rules_file = root / "alerts" / "migration-watch.rules.yml"
    if not runbook.exists() or not rules_file.exists():
        pytest.skip("docs/alerts not present")
    headings = runbook.read_text()
    prom = rules_file.read_text()
    for key in RULE_KEYS:
        name = alert_name(key)
        assert f"## {name}\n" in headings, name
        assert f"alert: {name}\n" in prom, name
