"""Time, in one place: the clocks the daemon is given, one ``utcnow``, one aware-datetime guard.

Naming rule for injected time across the package: a parameter named ``clock`` is a
:class:`Clock` (virtual time for the cadence and its mapping to real time); plain callables are
named ``wall`` (``Callable[[], datetime]``, aware UTC) or ``monotonic`` (``Callable[[], float]``).

:class:`SystemClock` is the identity, :class:`ScaledClock` runs a week in minutes for the demo,
:class:`ManualClock` moves only when a test tells it to.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = [
    "Clock",
    "ManualClock",
    "ScaledClock",
    "SystemClock",
    "isoformat_or_none",
    "require_aware",
    "speed_to_fit",
    "utcnow",
]


def utcnow() -> datetime:
    """The current wall-clock time, aware UTC."""
    return datetime.now(UTC)


def isoformat_or_none(value: datetime | None) -> str | None:
    """``value.isoformat()``, or ``None`` for ``None`` (the JSON of an optional time)."""
    return None if value is None else value.isoformat()


def require_aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


@runtime_checkable
class Clock(Protocol):
    """Virtual time for the cadence, and its mapping to real (wall-clock) time."""

    @property
    def speed(self) -> float:
        """Virtual seconds per real second (1.0 unless scaled)."""
        ...

    def now(self) -> datetime:
        """The current virtual time, aware UTC."""
        ...

    def to_real(self, virtual: datetime) -> datetime:
        """The real time at which the virtual time ``virtual`` happens."""
        ...

    def to_virtual(self, real: datetime) -> datetime:
        """The virtual time at real time ``real``."""
        ...


class SystemClock:
    """The wall clock; virtual time is real time."""

    speed = 1.0

    def __repr__(self) -> str:
        return "SystemClock()"

    def now(self) -> datetime:
        return utcnow()

    def to_real(self, virtual: datetime) -> datetime:
        return require_aware(virtual, "virtual")

    def to_virtual(self, real: datetime) -> datetime:
        return require_aware(real, "real")


class ScaledClock:
    """Virtual time running ``speed`` times faster than real time from a common origin.

    virtual = start_virtual + (real - start_real) * speed, and the inverse. ``real_now`` is the
    real clock (injectable for tests).
    """

    def __init__(
        self,
        start_real: datetime,
        start_virtual: datetime,
        speed: float,
        *,
        real_now: Callable[[], datetime] = utcnow,
    ) -> None:
        if not math.isfinite(speed) or speed <= 0:
            raise ValueError(f"speed must be a positive number, got {speed}")
        self.start_real = require_aware(start_real, "start_real")
        self.start_virtual = require_aware(start_virtual, "start_virtual")
        self._speed = float(speed)
        self._real_now = real_now

    @classmethod
    def starting_now(
        cls,
        start_virtual: datetime,
        speed: float,
        *,
        real_now: Callable[[], datetime] = utcnow,
    ) -> ScaledClock:
        """A clock whose virtual time is ``start_virtual`` right now."""
        return cls(real_now(), start_virtual, speed, real_now=real_now)

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> datetime:
        return self.to_virtual(self._real_now())

    def to_real(self, virtual: datetime) -> datetime:
        return self.start_real + (require_aware(virtual, "virtual") - self.start_virtual) / (
            self._speed
        )

    def to_virtual(self, real: datetime) -> datetime:
        return self.start_virtual + (require_aware(real, "real") - self.start_real) * self._speed

    def __repr__(self) -> str:
        return (
            f"ScaledClock(start_real={self.start_real.isoformat()}, "
            f"start_virtual={self.start_virtual.isoformat()}, speed={self._speed})"
        )


def speed_to_fit(virtual: timedelta, real: timedelta) -> float:
    """The speed that plays ``virtual`` in ``real``: ``speed_to_fit(7 days, 5 min)`` == 2016."""
    if virtual <= timedelta(0) or real <= timedelta(0):
        raise ValueError("both spans must be positive")
    return virtual / real


class ManualClock:
    """A clock for tests: it moves only when told. Virtual time is real time."""

    speed = 1.0

    def __init__(self, start: datetime) -> None:
        self._now = require_aware(start, "start")
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ManualClock({self.now().isoformat()})"

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = require_aware(when, "when")

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now

    def to_real(self, virtual: datetime) -> datetime:
        return require_aware(virtual, "virtual")

    def to_virtual(self, real: datetime) -> datetime:
        return require_aware(real, "real")
