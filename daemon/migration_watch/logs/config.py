"""The ``logs:`` section of the configuration: sources and classes.

Shape (keys beyond these are accepted only where listed here; unknown keys are rejected)::

    logs:
      sources:
        - name: app
          type: file
          paths: ["/var/log/app/*.jsonl"]
          format: json                    # json | logfmt | text (text needs regex)
          start_at: beginning             # or end (default)
          fields: {timestamp: time, level: level, message: msg, status: status,
                   search: [sql, url]}    # "*" (default) searches the whole line
        - name: drain
          type: http
          token_file: /run/secrets/drain-token
          format: json
      classes:
        error_levels: [error, fatal, critical, 50, 60]
        error_status: 500
        exclude: ["/wp-json/wc/", woocommerce, WooCommerce]
        fallback: [fell back, falling back, fallback]
        baseline_error_rate: 0.01     # used when the logs hold too few pre-deploy lines
        baseline_min_lines: 1000      # pre-deploy lines needed for a baseline from the logs

The legacy and new column names come from the ``migration`` section; the classifier takes
them as parameters. ``*_file`` secrets are only recorded here (the config loader reads them).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from ..configbase import _Model
from ..durations import Duration

__all__ = [
    "DEFAULT_ERROR_LEVELS",
    "DEFAULT_EXCLUDE",
    "DEFAULT_FALLBACK",
    "ClassesConfig",
    "Duration",
    "FieldsConfig",
    "FileSourceConfig",
    "Format",
    "HttpSourceConfig",
    "LogsConfig",
    "SourceConfig",
]

Format = Literal["json", "logfmt", "text"]

DEFAULT_ERROR_LEVELS: tuple[str | int, ...] = (
    "error",
    "fatal",
    "critical",
    "crit",
    "alert",
    "emerg",
    "emergency",
    "panic",
    50,  # pino / bunyan "error"
    60,  # pino / bunyan "fatal"
)
#: WooCommerce's own ``customer_id`` is not the migrated column
#: (the checklist: "WooCommerceOrder — DO NOT CHANGE").
DEFAULT_EXCLUDE: tuple[str, ...] = ("/wp-json/wc/", "woocommerce", "WooCommerce", "WOOCOMMERCE")
DEFAULT_FALLBACK: tuple[str, ...] = (
    "fallback",
    "Fallback",
    "fall back",
    "falling back",
    "Falling back",
    "fell back",
    "Fell back",
)

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class FieldsConfig(_Model):
    """Where the interesting values are in a record (JSON keys, logfmt keys, regex groups).

    ``search`` lists the fields whose text is searched for the columns and the fallback
    patterns, in addition to ``message``; ``"*"`` means the whole line (keys included).
    ``status: null`` disables the HTTP status test.
    """

    timestamp: str | None = "timestamp"
    level: str | None = "level"
    message: str | None = "message"
    status: str | None = "status"
    search: tuple[str, ...] = ("*",)

    @field_validator("search")
    @classmethod
    def _search_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not name for name in value):
            raise ValueError("field names must not be empty")
        return tuple(dict.fromkeys(value))


class _SourceBase(_Model):
    name: str
    format: Format = "json"
    fields: FieldsConfig = FieldsConfig()
    regex: str | None = Field(default=None, description="text format: named groups")
    max_line_bytes: int = Field(default=100 * 1024, ge=64, le=64 * 1024 * 1024)

    @field_validator("name")
    @classmethod
    def _label_safe(cls, value: str) -> str:
        # The name becomes the ``source`` label of the log metrics.
        if not _NAME_RE.match(value):
            raise ValueError("use 1-64 characters among letters, digits, '_', '.', '-'")
        return value

    @model_validator(mode="after")
    def _regex_for_text(self) -> _SourceBase:
        if self.format == "text":
            if not self.regex:
                raise ValueError("format text needs a regex with named groups")
            try:
                compiled = re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex does not compile: {exc}") from None
            if not compiled.groupindex:
                raise ValueError("regex needs named groups, e.g. (?P<level>\\w+)")
        elif self.regex is not None:
            raise ValueError("regex is only used with format text")
        return self


class FileSourceConfig(_SourceBase):
    """Files matched by glob patterns, followed by polling ``os.stat``."""

    type: Literal["file"]
    paths: tuple[str, ...] = Field(min_length=1)
    start_at: Literal["beginning", "end"] = "end"
    poll_interval: Duration = timedelta(milliseconds=250)
    glob_interval: Duration = timedelta(seconds=5)
    rotated_idle: Duration = timedelta(seconds=30)
    read_chunk_bytes: int = Field(default=1024 * 1024, ge=4096, le=64 * 1024 * 1024)
    fingerprint_bytes: int = Field(default=1024, ge=16, le=64 * 1024)

    @field_validator("poll_interval", "glob_interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value


class HttpSourceConfig(_SourceBase):
    """``POST /ingest/logs``: NDJSON or a JSON array, bearer token or HMAC signature."""

    type: Literal["http"]
    token: SecretStr | None = None
    token_file: Path | None = None
    hmac_secret: SecretStr | None = None
    hmac_secret_file: Path | None = None
    hmac_header: str = "X-Signature"
    hmac_algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    queue_max_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    retry_after: Duration = timedelta(seconds=5)

    @model_validator(mode="after")
    def _secrets(self) -> HttpSourceConfig:
        for key in ("token", "hmac_secret"):
            if getattr(self, key) is not None and getattr(self, f"{key}_file") is not None:
                raise ValueError(f"set either {key} or {key}_file, not both")
        if all(
            getattr(self, key) is None
            for key in ("token", "token_file", "hmac_secret", "hmac_secret_file")
        ):
            raise ValueError("an http source needs token/token_file or hmac_secret/_file")
        if self.max_body_bytes > self.queue_max_bytes:
            raise ValueError("max_body_bytes must not exceed queue_max_bytes")
        return self


SourceConfig = Annotated[FileSourceConfig | HttpSourceConfig, Field(discriminator="type")]


class ClassesConfig(_Model):
    """What makes a line an error, a reference to a column, or a fallback.

    * ``error_levels``: level values meaning error; strings match in lower, UPPER or
      Capitalized form, numbers exactly (pino/bunyan 50 and 60).
    * ``error_status``: HTTP status from which a line is an error (up to 599).
    * ``exclude``: substrings of the raw line that stop a legacy match (WooCommerce).
    * ``fallback``: substrings of the searched text meaning the fallback path was taken;
      with ``fallback_requires_legacy`` the line must also reference the legacy column.
    * ``baseline_min_lines``: ``log_errors`` compares with the error rate of the lines older
      than the deployment (read from ``fields.timestamp``) when there are at least this many;
      otherwise with ``baseline_error_rate``; otherwise it is skipped.
    """

    error_levels: tuple[str | int, ...] = DEFAULT_ERROR_LEVELS
    error_status: int | None = Field(default=500, ge=100, le=599)
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    fallback: tuple[str, ...] = DEFAULT_FALLBACK
    fallback_requires_legacy: bool = True
    baseline_error_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    baseline_min_lines: int = Field(default=1000, ge=1)
    samples: int = Field(default=5, ge=0, le=100)
    sample_chars: int = Field(default=300, ge=40, le=4000)

    @field_validator("error_levels", mode="before")
    @classmethod
    def _levels(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and any(isinstance(v, bool) for v in value):
            raise ValueError("levels are strings or integers")
        return value

    @field_validator("exclude", "fallback")
    @classmethod
    def _non_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not v for v in value):
            raise ValueError("patterns must not be empty")
        if any("\n" in v for v in value):
            raise ValueError("patterns must not contain newlines")
        return value


class LogsConfig(_Model):
    """The ``logs:`` section."""

    sources: tuple[SourceConfig, ...] = ()
    classes: ClassesConfig = ClassesConfig()

    @model_validator(mode="after")
    def _unique_names(self) -> LogsConfig:
        seen: set[str] = set()
        for source in self.sources:
            if source.name in seen:
                raise ValueError(f"duplicate source name {source.name!r}")
            seen.add(source.name)
        return self
