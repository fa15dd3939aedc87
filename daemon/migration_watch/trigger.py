"""The APScheduler 3 trigger that wakes the daemon at the cadence's planned times."""

from __future__ import annotations

from datetime import datetime

from apscheduler.triggers.base import BaseTrigger

from .cadence import Schedule
from .clock import Clock, SystemClock, require_aware

__all__ = ["CadenceTrigger"]


class CadenceTrigger(BaseTrigger):  # type: ignore[misc]
    """APScheduler 3 trigger firing at the real times of the planned runs (and the verdict).

    ``get_next_fire_time(None, now)`` is the first fire time at or after ``now``; with a
    previous fire time, the first one strictly after it (APScheduler then applies its own
    misfire/coalesce rules). It is a waker: the job calls :meth:`Schedule.due_run` and runs
    what that returns, so a fire never executes a run twice. Start-up catch-up is the job's
    (or the service's) first ``due_run`` call, not the trigger's.
    """

    __slots__ = ("_fire_times", "clock", "include_verdict", "schedule")

    def __init__(
        self,
        schedule: Schedule,
        clock: Clock | None = None,
        *,
        include_verdict: bool = True,
    ) -> None:
        self.schedule = schedule
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.include_verdict = include_verdict
        virtual = [r.at for r in schedule.runs]
        if include_verdict:
            virtual.append(schedule.verdict_at)
        self._fire_times = tuple(self.clock.to_real(v) for v in virtual)

    @property
    def fire_times(self) -> tuple[datetime, ...]:
        """Every real fire time, in order."""
        return self._fire_times

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is None:
            now = require_aware(now, "now")
            return next((t for t in self._fire_times if t >= now), None)
        previous = require_aware(previous_fire_time, "previous_fire_time")
        return next((t for t in self._fire_times if t > previous), None)

    def __str__(self) -> str:
        return f"cadence[{self.schedule.deployed_at.isoformat()}, {len(self._fire_times)} fires]"

    def __repr__(self) -> str:
        return (
            f"<CadenceTrigger (deployed_at='{self.schedule.deployed_at.isoformat()}', "
            f"fires={len(self._fire_times)}, clock={self.clock!r})>"
        )
