"""The ``logs:`` configuration section."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from migration_watch.durations import coerce_duration as parse_duration
from migration_watch.logs.config import (
    ClassesConfig,
    FileSourceConfig,
    HttpSourceConfig,
    LogsConfig,
)

ISSUE_EXAMPLE = """
sources:
  - name: app
    type: file
    paths: ["/var/log/app/*.jsonl"]
    format: json
    start_at: beginning
    fields: {timestamp: time, level: level, message: msg, status: status, search: [sql, url]}
  - name: drain
    type: http
    token_file: /run/secrets/drain-token
    format: json
"""


def test_issue_example_validates() -> None:
    cfg = LogsConfig.model_validate(yaml.safe_load(ISSUE_EXAMPLE))
    app, drain = cfg.sources
    assert isinstance(app, FileSourceConfig)
    assert app.start_at == "beginning"
    assert app.fields.search == ("sql", "url")
    assert app.fields.message == "msg"
    assert app.poll_interval == timedelta(milliseconds=250)
    assert app.rotated_idle == timedelta(seconds=30)
    assert app.max_line_bytes == 100 * 1024
    assert isinstance(drain, HttpSourceConfig)
    assert drain.token_file == Path("/run/secrets/drain-token")
    assert drain.token is None
    assert cfg.classes.exclude[0] == "/wp-json/wc/"
    assert "woocommerce" in cfg.classes.exclude
    assert cfg.classes.error_status == 500
    assert cfg.classes.baseline_error_rate is None
    assert cfg.classes.baseline_min_lines == 1000


def test_defaults() -> None:
    cfg = LogsConfig()
    assert cfg.sources == ()
    src = FileSourceConfig(name="a", type="file", paths=("x.log",))
    assert src.start_at == "end"
    assert src.format == "json"
    assert src.fields.search == ("*",)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("2d", 172800),
        (5, 5),
        (0.5, 0.5),
        ("1.5", 1.5),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["fast", "30 s", "-1s", True, None, "1x", float("nan"), -3])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_durations_in_config() -> None:
    src = FileSourceConfig.model_validate(
        {"name": "a", "type": "file", "paths": ["x"], "poll_interval": "100ms", "rotated_idle": 10}
    )
    assert src.poll_interval == timedelta(milliseconds=100)
    assert src.rotated_idle == timedelta(seconds=10)
    with pytest.raises(ValidationError, match="must be positive"):
        FileSourceConfig.model_validate(
            {"name": "a", "type": "file", "paths": ["x"], "poll_interval": 0}
        )


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"sources": [{"name": "a", "type": "file", "paths": ["x"], "colour": 1}]}, "Extra inputs"),
        ({"sources": [{"name": "a", "type": "file", "paths": []}]}, "at least 1"),
        ({"sources": [{"name": "a", "type": "ftp"}]}, "does not match any of the expected tags"),
        ({"sources": [{"name": "a b", "type": "file", "paths": ["x"]}]}, "letters, digits"),
        ({"sources": [{"name": "a", "type": "file", "paths": ["x"], "format": "text"}]}, "regex"),
        (
            {
                "sources": [
                    {"name": "a", "type": "file", "paths": ["x"], "format": "text", "regex": "(x"}
                ]
            },
            "does not compile",
        ),
        (
            {
                "sources": [
                    {"name": "a", "type": "file", "paths": ["x"], "format": "text", "regex": "x+"}
                ]
            },
            "named groups",
        ),
        (
            {"sources": [{"name": "a", "type": "file", "paths": ["x"], "regex": "(?P<l>x)"}]},
            "only used",
        ),
        (
            {"sources": [{"name": "d", "type": "http", "token": "t", "token_file": "/f"}]},
            "either token or token_file",
        ),
        (
            {
                "sources": [
                    {"name": "d", "type": "http", "hmac_secret": "s", "hmac_secret_file": "/f"}
                ]
            },
            "either hmac_secret or hmac_secret_file",
        ),
        ({"sources": [{"name": "d", "type": "http"}]}, "needs token"),
        (
            {
                "sources": [
                    {"name": "a", "type": "file", "paths": ["x"]},
                    {"name": "a", "type": "http", "token": "t"},
                ]
            },
            "duplicate source name",
        ),
        ({"classes": {"error_levels": ["error", True]}}, "strings or integers"),
        ({"classes": {"exclude": [""]}}, "must not be empty"),
        ({"classes": {"baseline_error_rate": 1.5}}, "less than or equal"),
        ({"classes": {"baseline_min_lines": 0}}, "greater than or equal"),
        ({"classes": {"error_status": 99}}, "greater than or equal"),
        ({"classes": {"colour": 1}}, "Extra inputs"),
    ],
)
def test_rejected(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LogsConfig.model_validate(doc)


def test_frozen_and_secret_hidden() -> None:
    src = HttpSourceConfig(name="d", type="http", token="s3cret")  # type: ignore[arg-type]
    assert "s3cret" not in repr(src)
    with pytest.raises(ValidationError):
        src.name = "x"  # type: ignore[misc]
    assert ClassesConfig(error_levels=("error", 50)).error_levels == ("error", 50)
