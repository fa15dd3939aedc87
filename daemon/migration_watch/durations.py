"""Durations: one parser, one formatter and one pydantic type for every config key.

``"24h"``, ``"30m"``, ``"1h30m"``, ``"7d"``, ``"2w"``, ``"90s"``, ``"500ms"`` or a bare number of
seconds; :data:`Duration` is the validated field type used by every config model.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

__all__ = ["Duration", "coerce_duration", "format_duration", "parse_duration"]

_DURATION_RE = re.compile(
    r"^(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)s)?(?:(?P<ms>\d+)ms)?$"
)


def parse_duration(text: str) -> timedelta:
    """``"24h"``, ``"30m"``, ``"1h30m"``, ``"7d"``, ``"2w"``, ``"90s"``, ``"500ms"`` → timedelta.

    A bare number is seconds. Raises ``ValueError`` on anything else.
    """
    value = text.strip()
    if not value:
        raise ValueError("empty duration")
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ValueError(f"invalid duration {text!r}: not a finite number of seconds")
        return timedelta(seconds=seconds)
    match = _DURATION_RE.match(value)
    if not match or not any(match.groupdict().values()):
        raise ValueError(
            f"invalid duration {text!r}: use a number with a unit, e.g. 24h, 30m, 1h30m, 90s, 7d"
        )
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return timedelta(
        weeks=parts["w"],
        days=parts["d"],
        hours=parts["h"],
        minutes=parts["m"],
        seconds=parts["s"],
        milliseconds=parts["ms"],
    )


def format_duration(delta: timedelta) -> str:
    """Inverse of :func:`parse_duration` in hours/minutes/seconds: ``168h``, ``1h30m``, ``0s``."""
    if delta < timedelta(0):
        return "-" + format_duration(-delta)
    micros = delta // timedelta(microseconds=1)
    seconds, micro = divmod(micros, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if secs or micro:
        out += f"{secs}.{micro:06d}".rstrip("0").rstrip(".") + "s" if micro else f"{secs}s"
    return out or "0s"


def coerce_duration(value: Any) -> timedelta:
    """A config value (text, number of seconds or timedelta) as a non-negative timedelta."""
    if isinstance(value, bool):
        raise ValueError("a duration cannot be a boolean")
    if isinstance(value, str):
        delta = parse_duration(value)
    elif isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("a duration must be finite")
        delta = timedelta(seconds=value)
    elif isinstance(value, timedelta):
        delta = value
    else:
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    if delta < timedelta(0):
        raise ValueError("a duration must not be negative")
    return delta


#: A pydantic-validated duration: ``"24h"``, ``"30m"``, ``"1h30m"``, a number of seconds or a
#: timedelta. Reusable in other config models (pulse, timeouts, repeat intervals).
Duration = Annotated[timedelta, BeforeValidator(coerce_duration)]
