"""The ``alerting:`` section of the configuration: receivers, routes and per-rule overrides.

Shape (keys may be added; these stay)::

    alerting:
      receivers:
        - name: oncall
          type: webhook                  # webhook | slack | alertmanager
          url: https://hooks.example.com/migration      # or url_file
          secret: ${WEBHOOK_SECRET}      # whsec_… (Standard Webhooks); or secret_file
          headers: {X-Team: data}        # or header_files: {Authorization: /run/secrets/h}
          timeout: 10s
      routes:                            # first match wins; no match → all receivers
        - match: {severity: critical}
          receivers: [oncall]
      rules:
        schema: {severity: critical, for: 1}

Secrets (URLs, signing secrets, header values) are ``SecretStr``: they never appear in a
``repr``, a log line or ``/health``.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from ..configbase import _Model, _read_secret_file
from ..durations import Duration

__all__ = [
    "RESERVED_LABELS",
    "RULE_KEYS",
    "AlertingConfig",
    "ReceiverConfig",
    "ReceiverType",
    "RetryConfig",
    "RouteConfig",
    "RuleConfig",
    "RulesConfig",
    "Severity",
    "signing_key",
]

Severity = Literal["critical", "warning", "info"]
ReceiverType = Literal["webhook", "slack", "alertmanager"]

#: Every rule key: the check names first, then the monitor's own signals.
RULE_KEYS = (
    "coverage",
    "orphans",
    "post_deploy_writes",
    "schema",
    "rls",
    "query_ratio",
    "latency",
    "index_plan",
    "log_errors",
    "legacy_errors",
    "database_up",
    "run_missed",
    "log_source",
    "verdict",
)

#: Labels the daemon sets itself; extra labels from the config may not override them.
RESERVED_LABELS = frozenset({"alertname", "severity", "check", "subject", "condition"})

_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RECEIVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: Headers the webhook notifier computes; configured headers may not replace them.
_MANAGED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    for name in labels:
        if not _LABEL_NAME.match(name):
            raise ValueError(f"invalid label name {name!r}")
        if name in RESERVED_LABELS:
            raise ValueError(f"label {name!r} is set by migration-watch itself")
    return labels


class ReceiverConfig(_Model):
    """Where notifications go. ``url`` / ``secret`` / header values may come from files."""

    name: str = Field(min_length=1, max_length=100)
    type: ReceiverType
    url: SecretStr | None = None
    url_file: Path | None = None
    #: Standard Webhooks signing secret (``whsec_`` + base64); webhook receivers only.
    secret: SecretStr | None = None
    secret_file: Path | None = None
    #: Extra request headers (e.g. ``Authorization``); values are treated as secrets.
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    #: Extra request headers read from files (e.g. a bearer token from a mounted secret).
    header_files: dict[str, Path] = Field(default_factory=dict)
    timeout: Duration = timedelta(seconds=10)
    #: Also notify when an alert resolves.
    send_resolved: bool = True
    #: ``alertmanager``: ``endsAt`` of a firing alert is now + this; it is re-posted on every
    #: delivery round (pulse), so Alertmanager resolves it on its own only if the daemon stops.
    alert_ttl: Duration = timedelta(minutes=5)
    #: ``alertmanager``: how long a resolution keeps being re-posted.
    resend_resolved_for: Duration = timedelta(minutes=5)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _RECEIVER_NAME.match(v):
            raise ValueError("use letters, digits, '.', '_' and '-' only")
        return v

    @field_validator("headers", "header_files")
    @classmethod
    def _header_names(cls, v: dict[str, object]) -> dict[str, object]:
        for name in v:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"invalid header name {name!r}")
            if name.lower() in _MANAGED_HEADERS:
                raise ValueError(f"header {name!r} is set by migration-watch itself")
        return v

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v: timedelta) -> timedelta:
        if v.total_seconds() < 0.05:
            raise ValueError("must be at least 50ms")
        return v

    @model_validator(mode="after")
    def _resolve(self) -> ReceiverConfig:
        if self.url is not None and self.url_file is not None:
            raise ValueError("set either url or url_file, not both")
        if self.url_file is not None:
            object.__setattr__(self, "url", SecretStr(_read_secret_file(self.url_file)))
        if self.url is None or not self.url.get_secret_value().strip():
            raise ValueError("url (or url_file) is required")
        url = self.url.get_secret_value().strip()
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError("url must be an absolute http:// or https:// URL")
        object.__setattr__(self, "url", SecretStr(url))

        if self.secret is not None and self.secret_file is not None:
            raise ValueError("set either secret or secret_file, not both")
        if self.secret_file is not None:
            object.__setattr__(self, "secret", SecretStr(_read_secret_file(self.secret_file)))
        if self.secret is not None:
            if self.type != "webhook":
                raise ValueError("secret (Standard Webhooks signing) applies to webhook receivers")
            signing_key(self.secret.get_secret_value())  # validates

        overlap = {k.lower() for k in self.headers} & {k.lower() for k in self.header_files}
        if overlap:
            raise ValueError(f"header {sorted(overlap)[0]!r} is given in headers and header_files")
        if self.header_files:
            merged = dict(self.headers)
            for name, path in self.header_files.items():
                merged[name] = SecretStr(_read_secret_file(path))
            object.__setattr__(self, "headers", merged)
        return self

    def url_value(self) -> str:
        assert self.url is not None  # guaranteed by the validator
        return self.url.get_secret_value()

    def secrets(self) -> list[str]:
        """Every secret string of this receiver (for redaction)."""
        out = [self.url_value()]
        if self.secret is not None:
            out.append(self.secret.get_secret_value())
        out += [v.get_secret_value() for v in self.headers.values()]
        return [s for s in out if s]


def signing_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (``whsec_`` + base64 of 24-64 bytes)."""
    raw = secret.strip()
    if raw.startswith("whsec_"):
        raw = raw[len("whsec_") :]
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("secret must be whsec_ followed by base64") from None
    if len(key) < 16:
        raise ValueError("secret is too short (Standard Webhooks: 24 to 64 random bytes)")
    return key


class RouteConfig(_Model):
    """Receivers for alerts whose labels match (all of ``match`` equal, all of ``match_re``
    full-matching). A route without matchers matches everything."""

    match: dict[str, str] = Field(default_factory=dict)
    match_re: dict[str, re.Pattern[str]] = Field(default_factory=dict)
    receivers: tuple[str, ...] = Field(min_length=1)

    def matches(self, labels: dict[str, str]) -> bool:
        return all(labels.get(k, "") == v for k, v in self.match.items()) and all(
            p.fullmatch(labels.get(k, "")) is not None for k, p in self.match_re.items()
        )


class RuleConfig(_Model):
    """Overrides for one rule; anything left out keeps the rule's default."""

    enabled: bool | None = None
    severity: Severity | None = None
    #: Consecutive failing evaluations before the alert fires (1: on the first failure).
    for_: int | None = Field(default=None, alias="for", ge=1, le=100_000)
    #: Consecutive passing evaluations before a firing alert resolves.
    keep_firing_for: int | None = Field(default=None, ge=1, le=100_000)
    #: Re-notify while firing this often (default: ``alerting.repeat_interval``).
    repeat_interval: Duration | None = None
    #: Consecutive ``error`` evaluations (could not measure) before the error alert fires.
    error_for: int | None = Field(default=None, ge=1, le=100_000)
    error_severity: Severity | None = None
    #: Consecutive failing evaluations before a second, more severe alert fires (``0``: never).
    escalate_after: int | None = Field(default=None, ge=0, le=100_000)
    escalate_severity: Severity | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    #: ``summary``, ``description``, ``runbook_url`` or any other; ``{subject}``,
    #: ``{message}``, ``{value}``, ``{observed.KEY}`` … are filled in.
    annotations: dict[str, str] = Field(default_factory=dict)

    _labels = field_validator("labels")(_check_labels)

    @field_validator("repeat_interval")
    @classmethod
    def _repeat(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v.total_seconds() < 1:
            raise ValueError("must be at least 1s")
        return v


class RetryConfig(_Model):
    """Delivery retries: exponential backoff with jitter, capped."""

    initial_backoff: Duration = timedelta(seconds=10)
    max_backoff: Duration = timedelta(minutes=10)
    #: A ``Retry-After`` longer than this is shortened to it.
    max_retry_after: Duration = timedelta(hours=1)

    @model_validator(mode="after")
    def _order(self) -> RetryConfig:
        if self.initial_backoff.total_seconds() <= 0:
            raise ValueError("initial_backoff must be positive")
        if self.max_backoff < self.initial_backoff:
            raise ValueError("max_backoff must not be shorter than initial_backoff")
        return self


class RulesConfig(_Model):
    """Per-rule overrides, keyed by rule key (unknown keys are rejected)."""

    coverage: RuleConfig | None = None
    orphans: RuleConfig | None = None
    post_deploy_writes: RuleConfig | None = None
    schema_: RuleConfig | None = Field(default=None, alias="schema")
    rls: RuleConfig | None = None
    query_ratio: RuleConfig | None = None
    latency: RuleConfig | None = None
    index_plan: RuleConfig | None = None
    log_errors: RuleConfig | None = None
    legacy_errors: RuleConfig | None = None
    database_up: RuleConfig | None = None
    run_missed: RuleConfig | None = None
    log_source: RuleConfig | None = None
    verdict: RuleConfig | None = None

    def get(self, key: str) -> RuleConfig | None:
        """The overrides of one rule key (None: defaults only)."""
        if key not in RULE_KEYS:
            raise KeyError(key)
        value = getattr(self, "schema_" if key == "schema" else key)
        return value if isinstance(value, RuleConfig) else None


assert {f.alias or n for n, f in RulesConfig.model_fields.items()} == set(RULE_KEYS)


class AlertingConfig(_Model):
    """The whole ``alerting:`` section."""

    enabled: bool = True
    receivers: tuple[ReceiverConfig, ...] = ()
    routes: tuple[RouteConfig, ...] = ()
    rules: RulesConfig = RulesConfig()
    #: Default re-notification interval of a firing alert.
    repeat_interval: Duration = timedelta(hours=4)
    #: Where the runbook lives; each alert links ``<runbook_url>#<alertname in lower case>``.
    runbook_url: str = "docs/runbook.md"
    #: Labels added to every alert (e.g. ``env: production``).
    labels: dict[str, str] = Field(default_factory=dict)
    retry: RetryConfig = RetryConfig()

    _labels = field_validator("labels")(_check_labels)

    @field_validator("repeat_interval")
    @classmethod
    def _repeat(cls, v: timedelta) -> timedelta:
        if v.total_seconds() < 1:
            raise ValueError("must be at least 1s")
        return v

    @model_validator(mode="after")
    def _references(self) -> AlertingConfig:
        names = [r.name for r in self.receivers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"receiver {dupes[0]!r} is defined twice")
        for i, route in enumerate(self.routes):
            for name in route.receivers:
                if name not in names:
                    raise ValueError(f"routes[{i}] names unknown receiver {name!r}")
        return self

    def receiver(self, name: str) -> ReceiverConfig | None:
        return next((r for r in self.receivers if r.name == name), None)
