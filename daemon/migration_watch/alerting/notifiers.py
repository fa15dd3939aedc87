"""Notifiers: turn a notification (an outbox payload) into one HTTP request per receiver.

- ``webhook``: ``{"type", "timestamp", "data"}`` JSON, signed per Standard Webhooks when a
  secret is configured (``webhook-id``, ``webhook-timestamp``, ``webhook-signature:
  v1,<base64 HMAC-SHA256 of "id.timestamp.body">``);
- ``slack``: an incoming-webhook message (colour by status, ``[FIRING:1]`` / ``[RESOLVED]``
  title, the observed value, the runbook link);
- ``alertmanager``: ``POST /api/v2/alerts`` with labels, annotations, ``startsAt``,
  ``endsAt`` and ``generatorURL``.

One ``httpx.Client`` per receiver with its timeout, no redirects followed. A notifier never
raises for a delivery problem: :meth:`Notifier.send` returns a :class:`SendResult`, with every
secret of the receiver (URL, signing secret, header values) redacted from error texts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from .. import __version__
from .config import ReceiverConfig, signing_key

__all__ = [
    "AlertmanagerNotifier",
    "Notifier",
    "SendResult",
    "SlackNotifier",
    "WebhookNotifier",
    "build_notifier",
    "iso",
    "notification_payload",
    "webhook_body",
]

USER_AGENT = f"migration-watch/{__version__}"
_REDACTED = "[REDACTED]"
_BODY_EXCERPT = 300


def iso(dt: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``: ``2025-10-23T09:00:00.000000Z``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def notification_payload(
    *,
    notification_id: str,
    type_: str,
    timestamp: datetime,
    alert: Mapping[str, Any],
    context: Mapping[str, Any],
) -> dict[str, Any]:
    """The receiver-neutral notification stored in the outbox (rendered per receiver at send
    time). ``type_``: ``alert.firing`` | ``alert.resolved`` | ``alert.test``."""
    return {
        "id": notification_id,
        "type": type_,
        "timestamp": iso(timestamp),
        "alert": dict(alert),
        "context": dict(context),
    }


def webhook_body(payload: Mapping[str, Any]) -> bytes:
    """The ``webhook`` receiver's JSON body: ``{"type", "timestamp", "data"}``."""
    data = {"id": payload["id"], **payload["alert"], **payload.get("context", {})}
    doc = {"type": payload["type"], "timestamp": payload["timestamp"], "data": data}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks ``v1`` signature of one message."""
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class SendResult:
    """The outcome of one HTTP attempt (never raised): a status code, or a transport error."""

    receiver: str
    status_code: int | None
    error: str | None = None
    retry_after: str | None = None
    body: str = ""
    duration_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def describe(self) -> str:
        if self.status_code is None:
            return self.error or "no response"
        text = f"HTTP {self.status_code}"
        return f"{text}: {self.body}" if self.body else text


class Notifier:
    """Base class: one receiver, one ``httpx.Client``."""

    type = "base"

    def __init__(
        self,
        config: ReceiverConfig,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self._url = config.url_value()
        self._headers = {k: v.get_secret_value() for k, v in config.headers.items()}
        seconds = config.timeout.total_seconds()
        self._client = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(seconds),
            follow_redirects=False,
            headers={"user-agent": USER_AGENT},
        )
        secrets = set(config.secrets())
        parts = urlsplit(self._url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if len(parts.path) > 1:
            secrets.add(path)
            secrets.add(unquote(path))
        if parts.password:
            secrets.add(parts.password)
        self._secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    @property
    def target(self) -> str:
        """Where requests go, without secrets (scheme and host only)."""
        parts = urlsplit(self._url)
        return f"{parts.scheme}://{parts.hostname or '?'}" + (
            f":{parts.port}" if parts.port else ""
        )

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text

    def close(self) -> None:
        self._client.close()

    # -- rendering, per type
    def request(
        self, payloads: Sequence[Mapping[str, Any]], now: datetime
    ) -> tuple[str, bytes, dict[str, str]]:
        """``(url, body, headers)`` for the payloads (one, except Alertmanager keep-alives)."""
        raise NotImplementedError

    # -- sending
    def send(self, payload: Mapping[str, Any], *, now: datetime) -> SendResult:
        """Send one notification (at ``now``, the attempt's wall time)."""
        return self.send_many([payload], now=now)

    def send_many(self, payloads: Sequence[Mapping[str, Any]], *, now: datetime) -> SendResult:
        started = time.perf_counter()
        try:
            url, body, headers = self.request(payloads, now)
            response = self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return SendResult(
                receiver=self.name,
                status_code=None,
                error=self.redact(
                    f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                ),
                duration_seconds=time.perf_counter() - started,
            )
        text = response.text[:_BODY_EXCERPT].strip() if response.content else ""
        return SendResult(
            receiver=self.name,
            status_code=response.status_code,
            retry_after=response.headers.get("retry-after"),
            body=self.redact(text),
            duration_seconds=time.perf_counter() - started,
        )

    def _headers_for(self, extra: Mapping[str, str]) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        headers.update(self._headers)
        headers.update(extra)
        return headers


class WebhookNotifier(Notifier):
    """Generic JSON webhook, Standard Webhooks signing when a secret is set."""

    type = "webhook"

    def __init__(
        self, config: ReceiverConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        super().__init__(config, transport=transport)
        self._key = (
            signing_key(config.secret.get_secret_value()) if config.secret is not None else None
        )

    def request(
        self, payloads: Sequence[Mapping[str, Any]], now: datetime
    ) -> tuple[str, bytes, dict[str, str]]:
        (payload,) = payloads
        body = webhook_body(payload)
        msg_id = str(payload["id"])
        ts = int(now.timestamp())
        extra = {"webhook-id": msg_id, "webhook-timestamp": str(ts)}
        if self._key is not None:
            extra["webhook-signature"] = sign(self._key, msg_id, ts, body)
        return self._url, body, self._headers_for(extra)


_SLACK_COLOURS = {
    "critical": "#E01E5A",
    "warning": "#ECB22E",
    "info": "#36C5F0",
    "resolved": "#2EB67D",
    "test": "#9E9EA6",
}


class SlackNotifier(Notifier):
    """Slack incoming webhook: one attachment with a colour bar."""

    type = "slack"

    def request(
        self, payloads: Sequence[Mapping[str, Any]], now: datetime
    ) -> tuple[str, bytes, dict[str, str]]:
        (payload,) = payloads
        return self._url, json.dumps(slack_message(payload)).encode(), self._headers_for({})


def slack_message(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The Slack message of one notification."""
    alert = payload["alert"]
    ctx = payload.get("context", {})
    status = str(alert.get("status", "firing"))
    annotations = alert.get("annotations", {})
    subject = alert.get("subject", "")
    if status == "test":
        title = "[TEST] migration-watch test notification"
        colour = _SLACK_COLOURS["test"]
    elif status == "resolved":
        title = f"[RESOLVED] {alert.get('alertname')} {subject}".strip()
        colour = _SLACK_COLOURS["resolved"]
    else:
        repeat = int(alert.get("repeat", 0) or 0)
        title = f"[FIRING:1] {alert.get('alertname')} {subject}".strip()
        if repeat:
            title += f" (reminder {repeat})"
        colour = _SLACK_COLOURS.get(str(alert.get("severity")), _SLACK_COLOURS["warning"])
    summary = annotations.get("summary", "")
    description = annotations.get("description", "")
    runbook = str(annotations.get("runbook_url", ""))
    lines = [f"*{summary}*" if summary else "", description]
    if status == "resolved" and alert.get("resolution"):
        lines.append(f"Now: {alert['resolution']}")
    fields = [
        {"title": "Value", "value": str(alert.get("value", "")), "short": False},
        {"title": "Severity", "value": str(alert.get("severity", "")), "short": True},
        {"title": "Check", "value": str(alert.get("check", "")), "short": True},
    ]
    where = [f"migration {ctx['migration']}"] if ctx.get("migration") else []
    if ctx.get("day"):
        where.append(f"day {ctx['day']}")
    if ctx.get("phase"):
        where.append(f"phase {ctx['phase']}")
    if ctx.get("run_id") is not None:
        where.append(f"run {ctx['run_id']}")
    if runbook:
        link = f"<{runbook}|runbook>" if runbook.startswith(("http://", "https://")) else runbook
        fields.append({"title": "Runbook", "value": link, "short": False})
    attachment: dict[str, Any] = {
        "color": colour,
        "fallback": f"{title}: {summary}",
        "title": title,
        "text": "\n".join(line for line in lines if line),
        "fields": [f for f in fields if f["value"]],
        "footer": "migration-watch" + (" · " + ", ".join(where) if where else ""),
        "ts": int(_parse_iso(str(payload["timestamp"])).timestamp()),
        "mrkdwn_in": ["text"],
    }
    if runbook.startswith(("http://", "https://")):
        attachment["title_link"] = runbook
    return {"text": title, "attachments": [attachment]}


class AlertmanagerNotifier(Notifier):
    """Alertmanager API v2: ``POST <url>/api/v2/alerts``."""

    type = "alertmanager"

    def __init__(
        self, config: ReceiverConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        super().__init__(config, transport=transport)
        base = self._url.rstrip("/")
        self._endpoint = base if base.endswith("/api/v2/alerts") else base + "/api/v2/alerts"
        self.ttl: timedelta = config.alert_ttl

    def request(
        self, payloads: Sequence[Mapping[str, Any]], now: datetime
    ) -> tuple[str, bytes, dict[str, str]]:
        alerts = [alertmanager_alert(p, now=now, ttl=self.ttl) for p in payloads]
        return self._endpoint, json.dumps(alerts).encode(), self._headers_for({})


def alertmanager_alert(
    payload: Mapping[str, Any], *, now: datetime, ttl: timedelta
) -> dict[str, Any]:
    """One postable alert. Firing: ``endsAt`` = now + ttl (kept alive by re-posting);
    resolved: ``endsAt`` = the resolution time, never after now."""
    alert = payload["alert"]
    starts = _parse_iso(str(alert.get("startsAt") or payload["timestamp"]))
    if alert.get("status") == "resolved":
        ends = min(_parse_iso(str(alert.get("endsAt") or payload["timestamp"])), now)
    else:
        ends = now + ttl
    starts = min(starts, ends)
    out: dict[str, Any] = {
        "labels": {str(k): str(v) for k, v in alert.get("labels", {}).items()},
        "annotations": {str(k): str(v) for k, v in alert.get("annotations", {}).items()},
        "startsAt": iso(starts),
        "endsAt": iso(ends),
    }
    generator = payload.get("context", {}).get("generatorURL")
    if generator:
        out["generatorURL"] = str(generator)
    return out


def build_notifier(
    config: ReceiverConfig, *, transport: httpx.BaseTransport | None = None
) -> Notifier:
    """The notifier for a receiver's ``type``."""
    cls: type[Notifier] = {
        "webhook": WebhookNotifier,
        "slack": SlackNotifier,
        "alertmanager": AlertmanagerNotifier,
    }[config.type]
    return cls(config, transport=transport)
