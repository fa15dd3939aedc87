"""The incident timeline: for each check and subject, each interval it was failing and the
notifications sent for it (:func:`build_timeline`, pure).

Intervals, from one check's results on one subject in time order:

* a ``fail`` opens a *fail* interval (``from``: that run's time);
* a ``pass`` closes whatever interval is open (``to``: the time of that passing run, the first
  moment the check was seen healthy again); nothing else closes one;
* an ``error`` or ``skipped`` result inside a fail interval neither closes nor splits it (the
  check could not tell, and a resolved alert is only sent after a real pass): the interval goes
  on, and the result is counted in ``unmeasured_runs``;
* ``error`` results outside a fail interval form an *error* interval (could not measure: the
  database down, a timeout, a missing grant), closed by a ``pass`` or by a ``fail`` (which opens
  a fail interval at that run); ``skipped`` alone (not applicable) opens nothing;
* an interval still open at the last result is *still failing* (``to`` None);
* flapping (fail, pass, fail...) gives one interval per episode.

``worst`` is the failing result with the worst headline value (the highest, or the lowest for
the checks where fewer is worse: ``rls`` policies on the new column, ``index_usage`` scans);
ties go to the earliest; without any value, the first failing result.

Notifications come from the alert rows' ``data["history"]`` (firing and resolved, at check
time), or, for a row written before that history existed, from its ``fired_at`` and
``resolved_at``. Each is matched to the last interval of the same check and subject (fail
alerts to fail intervals, ``condition=error`` alerts to error intervals) that began at or before
it; each receiver's delivery is read from the outbox: ``queued`` (still in it), ``failed``
(given up, kept visible), else ``delivered`` (an item leaves the outbox after a 2xx). Repeats
of a firing alert (every ``repeat_interval``) are not listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ..clock import isoformat_or_none as _iso
from ..state import AlertStateRow, OutboxItem
from .model import CheckHistory, CheckPoint

__all__ = [
    "LOWER_IS_WORSE",
    "Interval",
    "Notification",
    "TimelineEntry",
    "build_timeline",
    "intervals",
    "notifications",
]

#: Checks whose headline number is worse when lower.
LOWER_IS_WORSE = frozenset({"rls", "index_usage"})


@dataclass(frozen=True)
class Interval:
    """One episode of a check failing (``status`` ``fail``) or not measurable (``error``) on
    one subject. ``end`` None: still open at ``last_result_at`` (the last result seen)."""

    status: str
    start: datetime
    end: datetime | None
    last_bad_at: datetime
    last_result_at: datetime
    runs: int
    bad_runs: int
    unmeasured_runs: int
    worst: CheckPoint

    @property
    def still_failing(self) -> bool:
        return self.end is None

    @property
    def duration_seconds(self) -> float:
        """To the passing run that closed it, else to the last result seen."""
        end = self.end if self.end is not None else self.last_result_at
        return (end - self.start).total_seconds()

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "from": self.start.isoformat(),
            "to": _iso(self.end),
            "still_failing": self.still_failing,
            "last_failing_at": self.last_bad_at.isoformat(),
            "duration_seconds": self.duration_seconds,
            "runs": self.runs,
            "failing_runs": self.bad_runs,
            "unmeasured_runs": self.unmeasured_runs,
            "worst": self.worst.to_json(),
        }


@dataclass(frozen=True)
class Notification:
    """One firing or resolved notification of one alert; ``receivers``: (name, delivery)."""

    event: str
    at: datetime
    wall_at: datetime | None
    alertname: str
    kind: str
    severity: str
    notification_id: str | None
    receivers: tuple[tuple[str, str], ...]
    interval: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "at": self.at.isoformat(),
            "wall_at": _iso(self.wall_at),
            "alertname": self.alertname,
            "kind": self.kind,
            "severity": self.severity,
            "notification_id": self.notification_id,
            "receivers": [{"name": n, "delivery": d} for n, d in self.receivers],
            "interval": self.interval,
        }


@dataclass(frozen=True)
class TimelineEntry:
    """A check on a subject that failed, could not measure, or was alerted on."""

    check: str
    subject: str
    intervals: tuple[Interval, ...]
    notifications: tuple[Notification, ...]

    @property
    def first_at(self) -> datetime:
        times = [i.start for i in self.intervals] + [n.at for n in self.notifications]
        return min(times)

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "subject": self.subject,
            "intervals": [i.to_json() for i in self.intervals],
            "notifications": [n.to_json() for n in self.notifications],
        }


def _worse(check: str, candidate: CheckPoint, current: CheckPoint) -> bool:
    if candidate.value is None:
        return False
    if current.value is None:
        return True
    if check in LOWER_IS_WORSE:
        return candidate.value < current.value
    return candidate.value > current.value


class _Open:
    def __init__(self, status: str, first: CheckPoint) -> None:
        self.status = status
        self.start = first.at
        self.last_bad_at = first.at
        self.last_result_at = first.at
        self.runs = 1
        self.bad = 1
        self.unmeasured = 0
        self.worst = first

    def close(self, end: datetime | None) -> Interval:
        return Interval(
            status=self.status,
            start=self.start,
            end=end,
            last_bad_at=self.last_bad_at,
            last_result_at=self.last_result_at,
            runs=self.runs,
            bad_runs=self.bad,
            unmeasured_runs=self.unmeasured,
            worst=self.worst,
        )


def intervals(check: str, points: Sequence[CheckPoint]) -> tuple[Interval, ...]:
    """The fail and error intervals of one check's results on one subject (the rules are in
    the module docstring). ``points`` are sorted here by time, then run id."""
    out: list[Interval] = []
    current: _Open | None = None
    for p in sorted(points, key=lambda q: (q.at, q.run_id)):
        if p.status == "pass":
            if current is not None:
                out.append(current.close(p.at))
                current = None
            continue
        if p.status == "fail":
            if current is not None and current.status == "error":
                out.append(current.close(p.at))
                current = None
            if current is None:
                current = _Open("fail", p)
                continue
            current.runs += 1
            current.bad += 1
            current.last_bad_at = current.last_result_at = p.at
            if _worse(check, p, current.worst):
                current.worst = p
            continue
        # error or skipped
        if current is None:
            if p.status == "error":
                current = _Open("error", p)
            continue
        current.runs += 1
        current.last_result_at = p.at
        if current.status == "error" and p.status == "error":
            current.bad += 1
            current.last_bad_at = p.at
        else:
            current.unmeasured += 1
    if current is not None:
        out.append(current.close(None))
    return tuple(out)


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else None
    return None


def _events(row: AlertStateRow) -> list[Mapping[str, Any]]:
    history = row.data.get("history")
    if isinstance(history, list) and history:
        return [h for h in history if isinstance(h, Mapping)]
    # A row from before the history: its latest episode only.
    out: list[Mapping[str, Any]] = []
    if row.fired_at is not None:
        out.append(
            {"event": "firing", "at": row.fired_at, "wall_at": row.data.get("fired_wall_at")}
        )
    if row.resolved_at is not None and row.state == "resolved":
        out.append(
            {
                "event": "resolved",
                "at": row.resolved_at,
                "wall_at": row.data.get("resolved_wall_at"),
            }
        )
    return out


def _delivery(key: str, outbox: Mapping[str, OutboxItem]) -> str:
    item = outbox.get(key)
    if item is None:
        return "delivered"
    return "failed" if item.failed else "queued"


def notifications(
    alerts: Iterable[AlertStateRow], outbox: Iterable[OutboxItem]
) -> dict[tuple[str, str], list[Notification]]:
    """Every firing/resolved notification of every alert, by (check, subject), in time order."""
    queued = {item.idempotency_key: item for item in outbox}
    out: dict[tuple[str, str], list[Notification]] = {}
    for row in alerts:
        check = str(row.labels.get("check", row.data.get("check", "")))
        subject = str(row.labels.get("subject", row.data.get("subject", "")))
        if not check:
            continue
        kind = str(row.data.get("kind", "fail"))
        severity = str(row.labels.get("severity", row.data.get("severity", "")))
        for h in _events(row):
            at = _time(h.get("at"))
            event = str(h.get("event", ""))
            if at is None or event not in ("firing", "resolved"):
                continue
            nid = h.get("notification_id")
            nid = str(nid) if nid else None
            names = h.get("receivers")
            receivers = tuple(
                (str(n), _delivery(f"{nid}:{n}", queued) if nid else "unknown")
                for n in (names if isinstance(names, list) else ())
            )
            out.setdefault((check, subject), []).append(
                Notification(
                    event=event,
                    at=at,
                    wall_at=_time(h.get("wall_at")),
                    alertname=row.alertname,
                    kind=kind,
                    severity=severity,
                    notification_id=nid,
                    receivers=receivers,
                )
            )
    for items in out.values():
        items.sort(key=lambda n: (n.at, n.event != "firing", n.alertname))
    return out


def _match(notification: Notification, found: Sequence[Interval]) -> int | None:
    want = "error" if notification.kind == "error" else "fail"
    best: int | None = None
    for index, interval in enumerate(found):
        if interval.status == want and interval.start <= notification.at:
            best = index
    return best


def build_timeline(
    histories: Sequence[CheckHistory],
    alerts: Iterable[AlertStateRow] = (),
    outbox: Iterable[OutboxItem] = (),
) -> tuple[TimelineEntry, ...]:
    """The incident timeline: an entry per check and subject with an interval or a
    notification, ordered by when it began (then check, subject)."""
    sent = notifications(alerts, outbox)
    entries: list[TimelineEntry] = []
    seen: set[tuple[str, str]] = set()
    for h in histories:
        key = (h.check, h.subject)
        seen.add(key)
        found = intervals(h.check, h.points)
        notes = tuple(replace(n, interval=_match(n, found)) for n in sent.get(key, ()))
        if found or notes:
            entries.append(TimelineEntry(h.check, h.subject, found, notes))
    for key, alone in sent.items():
        if key not in seen:  # alerts on monitor signals (database_up, run_missed...)
            entries.append(TimelineEntry(key[0], key[1], (), tuple(alone)))
    return tuple(sorted(entries, key=lambda e: (e.first_at, e.check, e.subject)))
