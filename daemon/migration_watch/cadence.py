"""The 7-day cadence: pure schedule maths anchored on the deployment time T0.

Nothing here reads the clock or touches I/O: ``now`` is always passed in, so the same functions
serve the daemon, ``schedule``, the tests and the compressed-clock demo.

Phases
    A cadence is an ordered list of :class:`Phase` (``name``, ``until``, ``every``). Phase *k*
    covers ``[until[k-1], until[k])`` after T0 (the first starts at T0) and plans a run every
    ``every`` from its start. Rules enforced by :func:`validate_phases`: at least one phase;
    unique non-empty names; ``until`` strictly increasing (so phases are contiguous, no gaps,
    no overlaps); ``every`` positive, whole seconds, and dividing the phase's length (so each
    phase ends exactly where the next begins); at most :data:`MAX_RUNS` runs in total. The
    verdict is due at T0 + the last ``until``.

    Default (the checklist): hourly until 24h, every 12h until 72h, daily until 168h:
    runs at T0+0h…+23h, +24h, +36h, +48h, +60h, +72h, +96h, +120h, +144h; verdict at +168h.

Run states (:class:`RunState`), from (T0, phases, now, completed runs)
    ``planned``  in the future;
    ``due``      in the past, not run, and the latest past run: the one to execute now;
    ``done``     ran on time (within ``grace``);
    ``late``     ran after its time because the daemon was down (the catch-up run);
    ``missed``   in the past, never ran, superseded by a later run (several runs missed while
                 the daemon was down coalesce into ONE late run: the latest past one);
    ``extra``    an on-demand run, recorded separately; it never moves the cadence.

    A planned index that is in ``completed`` never becomes due again: a run never executes twice.
    Records carrying ``planned_at`` are matched to planned runs by time, not index, so a cadence
    changed mid-week neither gets stuck nor re-runs a time point that already ran.
    Callers serialise runs (one at a time) and call :meth:`Schedule.due_run` when they are about
    to execute, so an in-progress run is not mistaken for a missed one.

The clocks live in :mod:`migration_watch.clock`, durations in :mod:`migration_watch.durations`,
the APScheduler trigger in :mod:`migration_watch.trigger` and the ``cadence:`` config model in
:mod:`migration_watch.config`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .clock import require_aware
from .durations import format_duration

__all__ = [
    "DAY",
    "DEFAULT_GRACE",
    "DEFAULT_PHASES",
    "MAX_RUNS",
    "CompletedRun",
    "DueRun",
    "Phase",
    "PlannedRun",
    "RunState",
    "RunStatus",
    "Schedule",
    "current_day",
    "plan",
    "validate_phases",
    "verdict_at",
]

DAY = timedelta(hours=24)
#: A run started at most this long after its planned time counts as ``done``, not ``late``.
DEFAULT_GRACE = timedelta(minutes=5)
#: Upper bound on the number of planned runs (guards against ``every: 1s`` over a week).
MAX_RUNS = 10_000


# --------------------------------------------------------------------------- phases


@dataclass(frozen=True)
class Phase:
    """One cadence entry: a run every ``every`` until ``until`` after T0."""

    name: str
    until: timedelta
    every: timedelta


DEFAULT_PHASES: tuple[Phase, ...] = (
    Phase("hourly", timedelta(hours=24), timedelta(hours=1)),
    Phase("twice-daily", timedelta(hours=72), timedelta(hours=12)),
    Phase("daily", timedelta(hours=168), timedelta(hours=24)),
)


def validate_phases(phases: Sequence[Phase]) -> tuple[Phase, ...]:
    """Check the rules in the module docstring; return the phases as a tuple.

    Raises ``ValueError`` naming the offending phase (1-based) and the rule it breaks.
    """
    phases = tuple(phases)
    if not phases:
        raise ValueError("the cadence needs at least one phase")
    seen: set[str] = set()
    start = timedelta(0)
    total = 0
    for number, phase in enumerate(phases, start=1):
        where = f"phase {number} ({phase.name!r})" if phase.name else f"phase {number}"
        if not phase.name or not phase.name.strip():
            raise ValueError(f"{where}: name must not be empty")
        if phase.name in seen:
            raise ValueError(
                f"{where}: duplicate phase name (names default from every: "
                "give each phase its own name)"
            )
        seen.add(phase.name)
        if phase.every <= timedelta(0):
            raise ValueError(f"{where}: every must be positive, got {format_duration(phase.every)}")
        if phase.every % timedelta(seconds=1):
            raise ValueError(f"{where}: every must be whole seconds, got {phase.every}")
        if phase.until <= start:
            previous = "T0" if number == 1 else f"the previous phase's until ({_fmt(start)})"
            raise ValueError(
                f"{where}: until ({_fmt(phase.until)}) must be after {previous}; "
                "phases are listed in increasing order of until"
            )
        length = phase.until - start
        if length % phase.every:
            raise ValueError(
                f"{where}: every ({_fmt(phase.every)}) must divide the phase length "
                f"({_fmt(length)}, from {_fmt(start)} to {_fmt(phase.until)}) so the phase "
                "ends where the next one begins"
            )
        total += length // phase.every
        start = phase.until
    if total > MAX_RUNS:
        raise ValueError(f"the cadence plans {total} runs, more than the limit of {MAX_RUNS}")
    return phases


def _fmt(delta: timedelta) -> str:
    return format_duration(delta) if delta >= timedelta(0) else str(delta)


# --------------------------------------------------------------------------- plan


class RunState(enum.StrEnum):
    """State of one run in the plan; see the module docstring."""

    PLANNED = "planned"
    DUE = "due"
    DONE = "done"
    LATE = "late"
    MISSED = "missed"
    EXTRA = "extra"


@dataclass(frozen=True)
class PlannedRun:
    """One cadence point: ``index`` (0-based, stable), time, day (1-based) and phase name."""

    index: int
    at: datetime
    day: int
    phase: str


@dataclass(frozen=True)
class CompletedRun:
    """What the store knows about a finished planned run: ``state`` is ``done`` or ``late``.

    ``planned_at``, when known, ties the record to the planned time it ran for.
    """

    state: RunState
    ran_at: datetime
    planned_at: datetime | None = None


@dataclass(frozen=True)
class RunStatus:
    """One row of ``schedule``: a planned run (``index`` set) or an extra run (``index`` None).

    ``ran_at`` is when it ran (done, late, extra); ``delay`` is ``ran_at - at`` for planned
    runs that ran, and the current lateness for a ``due`` run.
    """

    index: int | None
    at: datetime
    day: int
    phase: str
    state: RunState
    ran_at: datetime | None = None
    delay: timedelta | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "day": self.day,
            "phase": self.phase,
            "state": self.state.value,
        }


@dataclass(frozen=True)
class DueRun:
    """The one run to execute now: the latest past planned run, not yet run.

    ``state`` is ``late`` when it supersedes missed runs or starts more than ``grace`` after its
    time, else ``done``; record it with that state. ``supersedes`` lists the indices it replaces
    (they become ``missed``).
    """

    run: PlannedRun
    delay: timedelta
    supersedes: tuple[int, ...]
    state: RunState

    @property
    def index(self) -> int:
        return self.run.index

    @property
    def at(self) -> datetime:
        return self.run.at


def _day_of(deployed_at: datetime, at: datetime) -> int:
    return 1 + (at - deployed_at) // DAY


def plan(deployed_at: datetime, phases: Sequence[Phase] = DEFAULT_PHASES) -> list[PlannedRun]:
    """Every planned run, in time order. ``deployed_at`` must be aware; times are UTC."""
    t0 = require_aware(deployed_at, "deployed_at")
    runs: list[PlannedRun] = []
    start = timedelta(0)
    for phase in validate_phases(phases):
        offset = start
        while offset < phase.until:
            at = t0 + offset
            runs.append(PlannedRun(len(runs), at, _day_of(t0, at), phase.name))
            offset += phase.every
        start = phase.until
    return runs


def verdict_at(deployed_at: datetime, phases: Sequence[Phase] = DEFAULT_PHASES) -> datetime:
    """T0 + the last phase's ``until`` (T0+168h by default)."""
    return require_aware(deployed_at, "deployed_at") + validate_phases(phases)[-1].until


def current_day(
    deployed_at: datetime, now: datetime, phases: Sequence[Phase] = DEFAULT_PHASES
) -> int:
    """Day of the week for ``migration_watch_cadence_day``: 0 before T0, 1-7 during the week,
    8 once the verdict time has passed (for custom phases: the last day + 1)."""
    t0 = require_aware(deployed_at, "deployed_at")
    now = require_aware(now, "now")
    end = verdict_at(t0, phases)
    if now < t0:
        return 0
    if now >= end:
        return math.ceil((end - t0) / DAY) + 1
    return _day_of(t0, now)


class Schedule:
    """The plan for one deployment, and the pure state function over it."""

    def __init__(self, deployed_at: datetime, phases: Sequence[Phase] = DEFAULT_PHASES) -> None:
        self.deployed_at = require_aware(deployed_at, "deployed_at")
        self.phases = validate_phases(phases)
        self.runs: tuple[PlannedRun, ...] = tuple(plan(self.deployed_at, self.phases))
        self.verdict_at = self.deployed_at + self.phases[-1].until

    def __repr__(self) -> str:
        return f"Schedule(deployed_at={self.deployed_at.isoformat()}, runs={len(self.runs)})"

    def phase_at(self, when: datetime) -> Phase | None:
        """The phase ``when`` falls in; None before T0 and from the verdict time on."""
        when = require_aware(when, "when")
        offset = when - self.deployed_at
        if offset < timedelta(0):
            return None
        for phase in self.phases:
            if offset < phase.until:
                return phase
        return None

    def current_day(self, now: datetime) -> int:
        return current_day(self.deployed_at, now, self.phases)

    def is_over(self, now: datetime) -> bool:
        """True from the verdict time on."""
        return require_aware(now, "now") >= self.verdict_at

    def next_run(self, now: datetime) -> PlannedRun | None:
        """The first planned run strictly after ``now``; None when none is left."""
        now = require_aware(now, "now")
        for run in self.runs:
            if run.at > now:
                return run
        return None

    def _records(self, completed: Collection[int]) -> dict[int, CompletedRun | None]:
        """This plan's completed runs by index. Records carrying ``planned_at`` are matched by
        time (robust to a cadence changed mid-week), the others by index."""
        if not isinstance(completed, Mapping):
            return {i: None for i in completed if 0 <= i < len(self.runs)}
        by_time: dict[datetime, CompletedRun] = {}
        out: dict[int, CompletedRun | None] = {}
        for index, record in completed.items():
            if record.planned_at is not None:
                by_time[require_aware(record.planned_at, "planned_at")] = record
            elif 0 <= index < len(self.runs):
                out[index] = record
        for run in self.runs:
            if run.at in by_time:
                out[run.index] = by_time[run.at]
        return out

    def _latest_past(self, now: datetime) -> PlannedRun | None:
        latest = None
        for run in self.runs:
            if run.at > now:
                break
            latest = run
        return latest

    def due_run(
        self,
        now: datetime,
        completed: Collection[int],
        *,
        grace: timedelta = DEFAULT_GRACE,
    ) -> DueRun | None:
        """The one run to execute now (coalesced), or None when nothing is due.

        ``completed`` holds the planned indices that already ran (the store's
        ``completed_runs()`` mapping, or any collection of indices). Nothing is due while the
        clock is behind a run that already ran (it stepped back). With a scaled clock,
        ``grace`` is in virtual time (``grace * clock.speed`` turns a real grace into it).
        """
        now = require_aware(now, "now")
        latest = self._latest_past(now)
        done = self._records(completed)
        if latest is None or latest.index in done:
            return None
        if any(i > latest.index for i in done):
            return None  # the clock is behind a run that already ran (stepped back): wait
        floor = max((i for i in done if i < latest.index), default=-1)
        supersedes = tuple(range(floor + 1, latest.index))
        delay = now - latest.at
        late = bool(supersedes) or delay > grace
        return DueRun(latest, delay, supersedes, RunState.LATE if late else RunState.DONE)

    def run_states(
        self,
        now: datetime,
        completed: Mapping[int, CompletedRun],
        extras: Iterable[datetime] = (),
    ) -> list[RunStatus]:
        """Every planned run's state at ``now``, plus the extra runs, in time order."""
        now = require_aware(now, "now")
        due = self.due_run(now, completed)
        records = self._records(completed)
        out: list[RunStatus] = []
        for run in self.runs:
            record = records.get(run.index)
            if record is not None:
                ran_at = require_aware(record.ran_at, "ran_at")
                state = RunState.LATE if record.state == RunState.LATE else RunState.DONE
                out.append(_status(run, state, ran_at, ran_at - run.at))
            elif run.at > now:
                out.append(_status(run, RunState.PLANNED))
            elif due is not None and due.index == run.index:
                out.append(_status(run, RunState.DUE, None, due.delay))
            else:
                out.append(_status(run, RunState.MISSED))
        for at in extras:
            at = require_aware(at, "extra run time")
            phase = self.phase_at(at)
            name = phase.name if phase else ("before" if at < self.deployed_at else "after")
            out.append(RunStatus(None, at, _day_of(self.deployed_at, at), name, RunState.EXTRA, at))
        out.sort(key=lambda s: (s.at, s.index is None))
        return out

    def tally(
        self,
        now: datetime,
        completed: Mapping[int, CompletedRun],
        extras: Iterable[datetime] = (),
    ) -> dict[RunState, int]:
        """How many runs are in each state (every state present, zeros included)."""
        counts = dict.fromkeys(RunState, 0)
        for status in self.run_states(now, completed, extras):
            counts[status.state] += 1
        return counts

    def to_json(
        self,
        now: datetime,
        completed: Mapping[int, CompletedRun],
        extras: Iterable[datetime] = (),
        *,
        source: str | None = None,
    ) -> dict[str, Any]:
        """``schedule --format json``: ``{deployed_at, source, runs: [...], verdict_at}``."""
        return {
            "deployed_at": self.deployed_at.isoformat(),
            "source": source,
            "runs": [s.to_json() for s in self.run_states(now, completed, extras)],
            "verdict_at": self.verdict_at.isoformat(),
        }


def _status(
    run: PlannedRun,
    state: RunState,
    ran_at: datetime | None = None,
    delay: timedelta | None = None,
) -> RunStatus:
    return RunStatus(run.index, run.at, run.day, run.phase, state, ran_at, delay)
