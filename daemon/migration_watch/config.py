"""Configuration: YAML with ``${VAR}`` / ``${VAR:-default}`` interpolation, validated once.

``load_config(path)`` reads the file, interpolates environment variables in string values,
resolves ``*_file`` secrets, validates everything with pydantic (unknown keys rejected) and
returns a frozen :class:`Config`. Every problem is reported with its location
(``migration.tables[2].name: field required``) in one :class:`~migration_watch.errors.ConfigError`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .alerting.config import AlertingConfig
from .cadence import DEFAULT_PHASES, Phase, validate_phases
from .configbase import _Model, _read_secret_file
from .durations import Duration, format_duration
from .errors import ConfigError, ConfigProblem
from .logs.config import LogsConfig
from .probes import IndexPlanCheckConfig, LatencyCheckConfig, Probes

__all__ = [
    "DEFAULT_CONFIG_PATHS",
    "CadenceConfig",
    "ChecksConfig",
    "Config",
    "DatabaseConfig",
    "Duration",
    "HttpConfig",
    "MigrationConfig",
    "PhaseConfig",
    "TableConfig",
    "default_config_text",
    "load_config",
    "parse_config",
]

#: Where ``--config`` is looked for when not given (first existing wins).
DEFAULT_CONFIG_PATHS = (
    Path("migration-watch.yaml"),
    Path("config/migration-watch.yaml"),
    Path("/etc/migration-watch/migration-watch.yaml"),
)


def _check_identifier(value: str) -> str:
    # Identifiers are always quoted with psycopg.sql.Identifier, so any name is safe to use;
    # reject only what PostgreSQL itself cannot hold.
    if not value:
        raise ValueError("must not be empty")
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if len(value.encode()) > 63:
        raise ValueError("longer than PostgreSQL's 63-byte identifier limit")
    return value


_DEFAULT_NAMES = {
    timedelta(hours=1): "hourly",
    timedelta(hours=12): "twice-daily",
    timedelta(hours=24): "daily",
}


class PhaseConfig(BaseModel):
    """One entry of the config's ``cadence:`` list; ``name`` defaults from ``every``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    until: Duration
    every: Duration

    def to_phase(self) -> Phase:
        name = self.name or _DEFAULT_NAMES.get(self.every) or f"every-{format_duration(self.every)}"
        return Phase(name=name, until=self.until, every=self.every)


class CadenceConfig(RootModel[list[PhaseConfig]]):
    """The config's ``cadence:`` list, validated as a whole with :func:`validate_phases`.

    Use as a field: ``cadence: CadenceConfig = Field(default_factory=CadenceConfig.default)``.
    """

    @model_validator(mode="after")
    def _check(self) -> Self:
        validate_phases(self.phases())
        return self

    def phases(self) -> tuple[Phase, ...]:
        return tuple(p.to_phase() for p in self.root)

    @classmethod
    def default(cls) -> CadenceConfig:
        return cls([PhaseConfig(name=p.name, until=p.until, every=p.every) for p in DEFAULT_PHASES])


class DatabaseConfig(_Model):
    """How to reach the watched database, and the safety limits of every transaction."""

    dsn: SecretStr | None = None
    dsn_file: Path | None = None
    statement_timeout: Duration = timedelta(seconds=30)
    lock_timeout: Duration = timedelta(seconds=1)
    idle_in_transaction_session_timeout: Duration = timedelta(seconds=60)
    connect_timeout: Duration = timedelta(seconds=5)
    pool_size: int = Field(default=2, ge=1, le=20)
    application_name: str = "migration-watch"

    @model_validator(mode="after")
    def _one_dsn(self) -> DatabaseConfig:
        if self.dsn is not None and self.dsn_file is not None:
            raise ValueError("set either dsn or dsn_file, not both")
        if self.dsn_file is not None:
            secret = _read_secret_file(self.dsn_file)
            object.__setattr__(self, "dsn", SecretStr(secret))
        if self.dsn is None or not self.dsn.get_secret_value().strip():
            raise ValueError("dsn (or dsn_file) is required")
        return self

    def dsn_value(self) -> str:
        assert self.dsn is not None  # guaranteed by the validator
        return self.dsn.get_secret_value()


CountMode = Literal["exact", "estimate", "auto"]


class TableConfig(_Model):
    """One watched table."""

    name: str
    schema_: str = Field(default="public", alias="schema")
    created_at: str | None = None
    indexes: tuple[str, ...] = ()
    rls: bool = False
    required: bool = True
    primary_key: str | None = None
    count: CountMode = "exact"

    _ident = field_validator("name", "schema_", "created_at", "primary_key")(
        lambda v: v if v is None else _check_identifier(v)
    )

    @field_validator("indexes")
    @classmethod
    def _indexes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            _check_identifier(name)
        if len(set(v)) != len(v):
            raise ValueError("duplicate index names")
        return v

    @property
    def qualified(self) -> str:
        """``schema.table``: the ``subject`` of table checks and the ``table`` metric label."""
        return f"{self.schema_}.{self.name}"


class MigrationConfig(_Model):
    """The column-rename migration being watched."""

    name: str = Field(min_length=1, max_length=200)
    legacy_column: str
    new_column: str
    deployed_at: datetime | None = None
    tables: tuple[TableConfig, ...] = Field(min_length=1)

    _ident = field_validator("legacy_column", "new_column")(_check_identifier)

    @field_validator("deployed_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("must include a timezone, e.g. 2025-10-23T09:00:00Z")
        return v.astimezone(UTC) if v is not None else None

    @model_validator(mode="after")
    def _distinct(self) -> MigrationConfig:
        if self.legacy_column == self.new_column:
            raise ValueError("legacy_column and new_column must differ")
        seen: set[str] = set()
        for t in self.tables:
            if t.qualified in seen:
                raise ValueError(f"table {t.qualified} is listed twice")
            seen.add(t.qualified)
        return self


class HttpConfig(_Model):
    """The daemon's HTTP server (/metrics, /health)."""

    listen: str = "127.0.0.1:9719"
    admin_token: SecretStr | None = None
    admin_token_file: Path | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected host:port, got {v!r}")
        host = host.strip("[]")
        if host and host != "localhost":
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ValueError(f"{host!r} is not an IP address") from None
        return v

    @model_validator(mode="after")
    def _token(self) -> HttpConfig:
        if self.admin_token is not None and self.admin_token_file is not None:
            raise ValueError("set either admin_token or admin_token_file, not both")
        if self.admin_token_file is not None:
            object.__setattr__(
                self, "admin_token", SecretStr(_read_secret_file(self.admin_token_file))
            )
        return self

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]") or "0.0.0.0"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class _CheckBase(_Model):
    enabled: bool = True


class CoverageCheckConfig(_CheckBase):
    max_missing: int = Field(default=0, ge=0)
    #: ``count: auto`` counts exactly below this many rows (pg_class.reltuples), else estimates.
    auto_exact_below_rows: int = Field(default=10_000_000, ge=0)
    #: Percentage of pages sampled by ``TABLESAMPLE SYSTEM`` when estimating.
    sample_percent: float = Field(default=1.0, gt=0, le=100)


class OrphansCheckConfig(_CheckBase):
    max_orphans: int = Field(default=0, ge=0)
    sample_size: int = Field(default=5, ge=0, le=100)


class PostDeployCheckConfig(_CheckBase):
    max_missing: int = Field(default=0, ge=0)


class SchemaCheckConfig(_CheckBase):
    require_legacy_column: bool = True


class RlsCheckConfig(_CheckBase):
    pass


class IndexUsageCheckConfig(_CheckBase):
    pass


class QueryRatioCheckConfig(_CheckBase):
    #: Fail when the legacy ratio over the check window exceeds this; ``null``: report only.
    max_legacy_ratio: float | None = Field(default=None, ge=0, le=1)


class ChecksConfig(_Model):
    """Per-check switches and thresholds (checks own their thresholds)."""

    coverage: CoverageCheckConfig = CoverageCheckConfig()
    orphans: OrphansCheckConfig = OrphansCheckConfig()
    post_deploy_writes: PostDeployCheckConfig = PostDeployCheckConfig()
    schema_: SchemaCheckConfig = Field(default=SchemaCheckConfig(), alias="schema")
    rls: RlsCheckConfig = RlsCheckConfig()
    index_usage: IndexUsageCheckConfig = IndexUsageCheckConfig()
    query_ratio: QueryRatioCheckConfig = QueryRatioCheckConfig()
    latency: LatencyCheckConfig = LatencyCheckConfig()
    index_plan: IndexPlanCheckConfig = IndexPlanCheckConfig()


class ServiceConfig(_Model):
    """The long-running service."""

    #: How often the cheap signals (database up, pg_stat_statements deltas, log counters,
    #: alert delivery) are refreshed, in real time (never scaled).
    pulse: Duration = timedelta(seconds=60)

    @field_validator("pulse")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v.total_seconds() < 0.05:
            raise ValueError("must be at least 50ms")
        return v


class StateConfig(_Model):
    """The durable state store (run history, baseline, alerts, outbox, log offsets)."""

    path: Path = Path("migration-watch.state.sqlite")


class LoggingConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    #: ``auto``: console on a terminal, JSON otherwise.
    format: Literal["auto", "json", "console"] = "auto"


class Config(_Model):
    """The whole, validated configuration."""

    database: DatabaseConfig
    migration: MigrationConfig
    http: HttpConfig = HttpConfig()
    checks: ChecksConfig = ChecksConfig()
    service: ServiceConfig = ServiceConfig()
    state: StateConfig = StateConfig()
    #: The monitoring week's phases (default: the checklist's hourly / twice-daily / daily).
    cadence: CadenceConfig = Field(default_factory=CadenceConfig.default)
    logging: LoggingConfig = LoggingConfig()
    #: Read-only probe queries timed against the baseline (checklist 5.4).
    probes: Probes = ()
    alerting: AlertingConfig = AlertingConfig()
    #: Application logs: file sources and HTTP drains, classes (issue: application logs).
    logs: LogsConfig = LogsConfig()

    #: Where the configuration came from (for messages); not part of the YAML.
    source: str = Field(default="<config>", exclude=True)


# --------------------------------------------------------------------------- interpolation

_VAR_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _interpolate(
    value: Any, env: Mapping[str, str], path: str, problems: list[ConfigProblem]
) -> Any:
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name, default = m.group(1), m.group(2)
            if name in env and env[name] != "":
                return env[name]
            if default is not None:
                return default
            if name in env:
                return ""
            problems.append(ConfigProblem(path, f"environment variable {name} is not set"))
            return ""

        return _VAR_RE.sub(repl, value)
    if isinstance(value, dict):
        return {
            k: _interpolate(v, env, f"{path}.{k}" if path else str(k), problems)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, env, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    return value


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(err: Mapping[str, Any]) -> str:
    msg = str(err.get("msg", "invalid"))
    if err.get("type") == "extra_forbidden":
        return "unknown key"
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg[:1].lower() + msg[1:]


def _strip_model_locs(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # pydantic adds union/function tags such as "function-after[...]" to some locations.
    return tuple(p for p in loc if not (isinstance(p, str) and "[" in p and p.endswith("]")))


def parse_config(
    data: Any, *, source: str = "<config>", env: Mapping[str, str] | None = None
) -> Config:
    """Validate already-parsed YAML data (a mapping) into a frozen :class:`Config`."""
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a YAML mapping", source=source)
    problems: list[ConfigProblem] = []
    data = _interpolate(data, os.environ if env is None else env, "", problems)
    if problems:
        raise ConfigError(problems, source=source)
    try:
        cfg = Config.model_validate({**data, "source": source})
    except ValidationError as exc:
        problems = [
            ConfigProblem(_loc(_strip_model_locs(tuple(e["loc"]))), _message(e))
            for e in exc.errors()
        ]
        raise ConfigError(problems, source=source) from None
    return cfg


def load_config(path: Path | str | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate a configuration file.

    Without ``path``, the first of :data:`DEFAULT_CONFIG_PATHS` that exists is used.
    """
    if path is None:
        for candidate in DEFAULT_CONFIG_PATHS:
            if candidate.exists():
                path = candidate
                break
        else:
            raise ConfigError(
                "no configuration file found (give --config FILE; looked for "
                + ", ".join(str(p) for p in DEFAULT_CONFIG_PATHS)
                + ")"
            )
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read configuration: {exc.strerror or exc}", source=str(p)
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}invalid YAML: {problem}", source=str(p)) from None
    return parse_config(data, source=str(p), env=env)


def default_config_text() -> str:
    """The shipped example configuration (the checklist's migration)."""
    return resources.files("migration_watch").joinpath("defaults/migration-watch.yaml").read_text()
