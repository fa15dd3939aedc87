"""Durable delivery: the outbox in the state store, drained in order per receiver.

Every notification is enqueued (in the same transaction as the alert transition that caused
it) before anything is sent, and deleted only after a 2xx. Per receiver, items go out in the
order they were enqueued; an item backing off holds the later ones back.

=====================  =============================================================
response               what happens
=====================  =============================================================
2xx                    delivered: deleted (``result="sent"``)
408, 429, 5xx, no      retried with exponential backoff and jitter; ``Retry-After``
response (timeout,     (seconds or an HTTP date) is honoured on 429 and 503
connection refused)    (``result="failed"``)
410 Gone               the receiver is disabled (loud log line) until its URL changes;
                       its items are kept, marked failed (``result="dropped"``)
other 4xx, 3xx         permanent failure: kept, marked failed, visible in /health, never
                       retried (``result="dropped"``)
=====================  =============================================================

The ``webhook-id`` of a notification is fixed when it is enqueued, so a receiver can
de-duplicate the rare repeat (a crash between its 2xx and our delete).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import structlog

from ..state import AlertingStore, OutboxItem
from .config import RetryConfig
from .notifiers import Notifier, SendResult

__all__ = [
    "DISABLED_META_KEY",
    "Backoff",
    "DeliverySummary",
    "Disposition",
    "Outbox",
    "ReceiverStatus",
    "classify",
    "retry_after_delay",
]

log = structlog.get_logger(__name__)

#: ``meta`` key holding the receivers disabled by a 410 (and the hash of the URL that said so).
DISABLED_META_KEY = "alerting.disabled_receivers"

Disposition = Literal["delivered", "retry", "permanent", "gone"]


def classify(result: SendResult) -> Disposition:
    """What to do after one attempt."""
    code = result.status_code
    if code is None:
        return "retry"
    if 200 <= code < 300:
        return "delivered"
    if code == 410:
        return "gone"
    if code in (408, 429) or code >= 500:
        return "retry"
    return "permanent"


def retry_after_delay(value: str | None, now: datetime) -> timedelta | None:
    """``Retry-After`` as a delay: delta-seconds or an HTTP date; None if absent or invalid."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return timedelta(seconds=int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - now, timedelta(0))


@dataclass
class Backoff:
    """Exponential backoff with jitter: attempt *n* (0-based) waits a random time in
    ``[d/2, d]`` with ``d = min(maximum, initial * 2**n)``. ``rng`` is injectable."""

    initial: timedelta
    maximum: timedelta
    rng: Callable[[], float] = field(default_factory=lambda: random.Random().random)

    def delay(self, attempt: int) -> timedelta:
        base = min(
            self.maximum.total_seconds(),
            self.initial.total_seconds() * (2 ** min(max(attempt, 0), 40)),
        )
        return timedelta(seconds=base * (0.5 + 0.5 * self.rng()))


@dataclass(frozen=True)
class DeliverySummary:
    """What one delivery round did."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0
    pending: int = 0
    keepalives: int = 0
    repeats: int = 0
    disabled: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "dropped": self.dropped,
            "pending": self.pending,
            "keepalives": self.keepalives,
            "repeats": self.repeats,
            "disabled": list(self.disabled),
        }


@dataclass
class ReceiverStatus:
    """In-memory health of one receiver (for /health)."""

    name: str
    type: str
    disabled: str | None = None
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "disabled": self.disabled,
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "last_failure_at": self.last_failure_at.isoformat() if self.last_failure_at else None,
            "last_error": self.last_error,
        }


def _url_hash(notifier: Notifier) -> str:
    return hashlib.sha256(notifier.config.url_value().encode()).hexdigest()[:16]


class Outbox:
    """Drains the store's outbox through the notifiers. Callers serialise :meth:`deliver`."""

    RESULTS = ("sent", "failed", "dropped")

    def __init__(
        self,
        store: AlertingStore,
        notifiers: Mapping[str, Notifier],
        retry: RetryConfig,
        *,
        rng: Callable[[], float] | None = None,
    ) -> None:
        self.store = store
        self.notifiers = dict(notifiers)
        self.retry = retry
        self.backoff = Backoff(retry.initial_backoff, retry.max_backoff)
        if rng is not None:
            self.backoff.rng = rng
        #: ``(receiver, result)`` → count since start-up (``notifications_total``).
        self.counts: dict[tuple[str, str], int] = {
            (name, result): 0 for name in self.notifiers for result in self.RESULTS
        }
        self.status = {
            name: ReceiverStatus(name=name, type=n.type) for name, n in self.notifiers.items()
        }
        self._load_disabled()

    # ------------------------------------------------------------------ disabled receivers
    def _load_disabled(self) -> None:
        stored = self.store.get_meta(DISABLED_META_KEY, {}) or {}
        keep: dict[str, Any] = {}
        for name, info in dict(stored).items():
            notifier = self.notifiers.get(name)
            if notifier is None:
                continue
            if info.get("url_sha256") != _url_hash(notifier):
                log.info(
                    "receiver re-enabled: its URL changed since it answered 410", receiver=name
                )
                continue
            keep[name] = info
            self.status[name].disabled = str(info.get("reason", "disabled"))
        if keep != stored:
            self.store.set_meta(DISABLED_META_KEY, keep)

    def is_disabled(self, name: str) -> bool:
        status = self.status.get(name)
        return status is not None and status.disabled is not None

    def _disable(self, notifier: Notifier, result: SendResult, now: datetime) -> None:
        reason = f"disabled at {now.isoformat()}: {result.describe()}"
        stored = dict(self.store.get_meta(DISABLED_META_KEY, {}) or {})
        stored[notifier.name] = {
            "at": now.isoformat(),
            "reason": reason,
            "url_sha256": _url_hash(notifier),
        }
        self.store.set_meta(DISABLED_META_KEY, stored)
        self.status[notifier.name].disabled = reason
        log.error(
            "RECEIVER DISABLED: it answered 410 Gone; nothing more is sent to it until its URL "
            "is changed in the configuration and the daemon restarted",
            receiver=notifier.name,
            receiver_type=notifier.type,
            status_code=result.status_code,
        )

    def drop_for_disabled(self, item: OutboxItem, now: datetime) -> None:
        """An item for a disabled receiver: kept visible, marked failed."""
        reason = self.status[item.receiver].disabled or "receiver disabled"
        self.store.outbox_mark_failed(item.id, at=now, error=f"receiver {reason}")
        self.counts[(item.receiver, "dropped")] += 1

    def drop_orphans(self, now: datetime) -> int:
        """Pending items for receivers no longer configured: marked failed (kept visible)."""
        count = 0
        for item in self.store.outbox_list(include_failed=False):
            if item.receiver not in self.notifiers:
                self.store.outbox_mark_failed(
                    item.id, at=now, error="receiver no longer configured"
                )
                count += 1
        if count:
            log.warning("notifications for receivers no longer configured dropped", count=count)
        return count

    # ------------------------------------------------------------------ delivery
    def deliver(self, now: datetime) -> DeliverySummary:
        """Send every due item, oldest first per receiver."""
        sent = failed = dropped = 0
        newly_disabled: list[str] = []
        for name, notifier in self.notifiers.items():
            items = self.store.outbox_due(now, receiver=name, in_order=True)
            for item in items:
                if self.is_disabled(name):
                    self.drop_for_disabled(item, now)
                    dropped += 1
                    continue
                bound = log.bind(
                    receiver=name,
                    notification_id=item.payload.get("id"),
                    type=item.payload.get("type"),
                    attempt=item.attempts + 1,
                )
                try:
                    result = notifier.send(item.payload, now=now)
                except Exception as exc:  # noqa: BLE001 - a payload we cannot render must not block the queue
                    error = notifier.redact(f"cannot send: {type(exc).__name__}: {exc}")
                    self.store.outbox_mark_failed(item.id, at=now, error=error)
                    self.counts[(name, "dropped")] += 1
                    dropped += 1
                    bound.error("notification dropped: it cannot be rendered", error=error)
                    continue
                outcome = classify(result)
                status = self.status[name]
                if outcome == "delivered":
                    self.store.outbox_delete(item.id)
                    self.counts[(name, "sent")] += 1
                    status.last_success_at = now
                    sent += 1
                    bound.info("notification delivered", status_code=result.status_code)
                    continue
                status.last_failure_at = now
                status.last_error = result.describe()
                if outcome == "retry":
                    delay = self.backoff.delay(item.attempts)
                    if result.status_code in (429, 503):
                        hinted = retry_after_delay(result.retry_after, now)
                        if hinted is not None:
                            delay = min(hinted, self.retry.max_retry_after)
                    self.store.outbox_mark_attempt(
                        item.id, at=now, error=result.describe(), next_attempt_at=now + delay
                    )
                    self.counts[(name, "failed")] += 1
                    failed += 1
                    bound.warning(
                        "notification not delivered, will retry",
                        error=result.describe(),
                        retry_in_seconds=round(delay.total_seconds(), 3),
                    )
                    break  # keep the order: later items wait for this one
                self.store.outbox_mark_failed(item.id, at=now, error=result.describe())
                self.counts[(name, "dropped")] += 1
                dropped += 1
                if outcome == "gone":
                    self._disable(notifier, result, now)
                    newly_disabled.append(name)
                else:
                    bound.error(
                        "notification rejected permanently (not retried; kept in the outbox "
                        "as failed)",
                        error=result.describe(),
                    )
        return DeliverySummary(
            sent=sent,
            failed=failed,
            dropped=dropped,
            pending=self.store.outbox_size(),
            disabled=tuple(newly_disabled),
        )
