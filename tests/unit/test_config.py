"""Configuration: interpolation, *_file secrets, located errors, the shipped example."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from migration_watch.cli import main
from migration_watch.config import default_config_text, load_config, parse_config
from migration_watch.durations import coerce_duration as parse_duration
from migration_watch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = {
    "database": {"dsn": "postgresql://mw:pw@127.0.0.1/app"},
    "migration": {
        "name": "m",
        "legacy_column": "customer_id",
        "new_column": "organization_id",
        "tables": [{"name": "conversations"}],
    },
}


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "mw.yaml"
    p.write_text(text)
    return p


def test_shipped_config_is_the_checklists_migration() -> None:
    assert (ROOT / "config/migration-watch.yaml").read_text() == default_config_text()
    cfg = load_config(ROOT / "config/migration-watch.yaml", env={"MIGRATION_WATCH_DSN": "x=1"})
    m = cfg.migration
    assert (m.legacy_column, m.new_column) == ("customer_id", "organization_id")
    assert [t.qualified for t in m.tables] == [
        "public.conversations",
        "public.customer_configs",
        "public.scraper_configs",
    ]
    assert m.tables[0].created_at == "created_at"
    assert m.tables[0].indexes == ("idx_conversations_organization_id",)
    assert m.tables[2].required is False
    assert cfg.http.listen == "127.0.0.1:9719"
    assert cfg.database.statement_timeout == timedelta(seconds=30)


def test_issue_example_shape_validates(tmp_path: Path) -> None:
    text = """
database:
  dsn: ${MIGRATION_WATCH_DSN}
  statement_timeout: 30s
  lock_timeout: 1s
migration:
  name: customer-id-to-organization-id
  legacy_column: customer_id
  new_column: organization_id
  deployed_at: 2025-10-23T09:00:00Z
  tables:
    - name: conversations
      created_at: created_at
      indexes: [idx_conversations_organization_id]
      rls: true
    - name: customer_configs
      rls: true
    - name: scraper_configs
      required: false
      indexes: [idx_scraper_configs_organization_id]
http:
  listen: 127.0.0.1:9719
checks: {coverage: {max_missing: 0}}
"""
    cfg = load_config(_write(tmp_path, text), env={"MIGRATION_WATCH_DSN": "host=db"})
    assert cfg.migration.deployed_at == datetime(2025, 10, 23, 9, tzinfo=UTC)
    assert cfg.database.dsn_value() == "host=db"
    assert cfg.database.lock_timeout == timedelta(seconds=1)


def test_env_defaults_and_escape() -> None:
    data = {
        **MINIMAL,
        "database": {"dsn": "${DSN:-host=fallback}"},
        "http": {"listen": "${LISTEN:-127.0.0.1:1}"},
        "migration": {**MINIMAL["migration"], "name": "cost $$5"},  # type: ignore[dict-item]
    }
    cfg = parse_config(data, env={"LISTEN": "0.0.0.0:9000"})
    assert cfg.database.dsn_value() == "host=fallback"
    assert cfg.http.port == 9000 and cfg.http.host == "0.0.0.0"
    assert cfg.migration.name == "cost $5"


def test_missing_env_var_is_located() -> None:
    data = {**MINIMAL, "database": {"dsn": "${NOPE}"}}
    with pytest.raises(ConfigError) as err:
        parse_config(data, env={})
    assert "database.dsn: environment variable NOPE is not set" in str(err.value)


def test_dsn_file(tmp_path: Path) -> None:
    secret = tmp_path / "dsn"
    secret.write_text("postgresql://u:s3cret@h/db\n")
    cfg = parse_config({**MINIMAL, "database": {"dsn_file": str(secret)}}, env={})
    assert cfg.database.dsn_value() == "postgresql://u:s3cret@h/db"
    assert "s3cret" not in repr(cfg)
    with pytest.raises(ConfigError) as err:
        parse_config({**MINIMAL, "database": {"dsn_file": str(tmp_path / "nope")}}, env={})
    assert "database" in str(err.value) and "cannot read" in str(err.value)


def test_every_problem_reported_with_its_path() -> None:
    data = {
        "database": {"dsn": "x", "statement_timeout": "soon", "bogus": 1},
        "migration": {
            "name": "m",
            "legacy_column": "customer_id",
            "new_column": "organization_id",
            "tables": [{"name": "a"}, {"name": "b"}, {"schema": "public"}],
        },
        "htp": {},
    }
    with pytest.raises(ConfigError) as err:
        parse_config(data, env={})
    text = str(err.value)
    assert "migration.tables[2].name: field required" in text
    assert "database.bogus: unknown key" in text
    assert "database.statement_timeout: invalid duration 'soon'" in text
    assert "htp: unknown key" in text
    assert len(err.value.problems) == 4


def test_deployed_at_needs_timezone() -> None:
    data = {**MINIMAL, "migration": {**MINIMAL["migration"], "deployed_at": "2025-10-23T09:00:00"}}  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"migration.deployed_at: must include a timezone"):
        parse_config(data, env={})


def test_injection_shaped_identifiers_are_accepted_verbatim() -> None:
    # Accepted as data: they are only ever quoted with psycopg.sql.Identifier (see the
    # integration test that runs the checks with them); NUL and >63 bytes are rejected.
    name = 'conversations"; DROP TABLE conversations; --'
    data = {**MINIMAL, "migration": {**MINIMAL["migration"], "tables": [{"name": name}]}}  # type: ignore[dict-item]
    assert parse_config(data, env={}).migration.tables[0].name == name
    bad = {**MINIMAL, "migration": {**MINIMAL["migration"], "tables": [{"name": "x" * 64}]}}  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"tables\[0\].name: longer than"):
        parse_config(bad, env={})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("30s", 30), ("5m", 300), ("1h", 3600), ("7d", 604800), (12, 12)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_config_validate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path, yaml.safe_dump(MINIMAL))
    assert main(["config", "validate", "--config", str(good)]) == 0
    bad_data = {**MINIMAL, "migration": {**MINIMAL["migration"], "tables": [{"nme": "x"}]}}  # type: ignore[dict-item]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(bad_data))
    assert main(["config", "validate", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: migration.tables[0].name: field required" in err
    assert f"{bad}: migration.tables[0].nme: unknown key" in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("database: [\n")
    assert main(["config", "validate", "--config", str(broken)]) == 2
    assert "invalid YAML" in capsys.readouterr().err
    assert main(["config", "validate", "--config", str(tmp_path / "absent.yaml")]) == 2
    assert main(["no-such-command"]) == 2
