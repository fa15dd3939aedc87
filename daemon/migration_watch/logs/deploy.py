"""Pre-deploy lines: which log lines are older than the deployment (T0).

``log_errors`` compares the window's error rate with the error rate of the same logs before
the deployment. For that, each source also counts the lines whose timestamp
(``fields.timestamp``) is older than T0 into a separate *pre-deploy* :class:`~.classify.Counts`.
It is a subset of the source's totals: every line is still counted there (``/metrics``).

Timestamps (:func:`to_micros`): ISO 8601 strings (``2024-05-01T09:00:00.123Z``, with an
offset, or without one: UTC; a space instead of ``T`` is fine), and epoch times as numbers or
digit strings whose unit follows from their size: seconds (below 1e11), milliseconds (pino,
Vercel; below 1e14), microseconds (below 1e17), else nanoseconds. A line without a parsable
timestamp (no such field, another format, a parse error) counts as post-deploy.

Timestamps are read only while needed (:class:`DeployGate`):

* T0 unknown: nothing is read, every line is post-deploy.
* Files (``ordered=True``): applications append to their logs in time order, so once a line
  at or after T0 has been seen, every later line of that file is post-deploy and no timestamp
  is read any more (the cost is one attribute test per chunk). Lines without a parsable
  timestamp before that point count as post-deploy but do not end the pre-deploy part. A new
  file (rotation, truncation) starts over; its first line usually settles it.
* Drains (``ordered=False``): batches from several producers interleave, so the timestamp of
  every line is read, but only while T0 is known.

A line is judged against T0 as known when it is read: when T0 changes later (a deploy marker),
lines already counted stay where they were; a file whose seen line is older than the new T0
has its timestamps read again from where it is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from itertools import compress
from operator import not_
from typing import Any

import msgspec

from .classify import Classifier, Counts, Samples, native_module
from .config import FieldsConfig, Format, SourceConfig
from .parse import (
    Parser,
    _lenient_re,
    json_lines_array,
    logfmt_pairs,
    logfmt_value,
    may_have_overlong_line,
)

__all__ = [
    "PRE_DEPLOY_PREFIX",
    "DeployGate",
    "TimestampReader",
    "pre_deploy_counters",
    "pre_deploy_from_counters",
    "to_micros",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_NL = b"\n"
_DECODE_ERRORS = (msgspec.DecodeError, RecursionError, UnicodeDecodeError, ValueError, TypeError)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


#: Checkpoint counters of the pre-deploy Counts are named ``pre_deploy.<field>``.
PRE_DEPLOY_PREFIX = "pre_deploy."


def pre_deploy_counters(counts: Counts) -> dict[str, int]:
    """``{"pre_deploy.lines": N, …}``: how pre-deploy counts are saved with a checkpoint."""
    return {PRE_DEPLOY_PREFIX + k: v for k, v in counts.to_dict().items()}


def pre_deploy_from_counters(counters: Mapping[str, int | float]) -> Counts:
    """The pre-deploy Counts saved by :func:`pre_deploy_counters` (zero when absent)."""
    n = len(PRE_DEPLOY_PREFIX)
    return Counts.from_dict(
        {k[n:]: int(v) for k, v in counters.items() if k.startswith(PRE_DEPLOY_PREFIX)}
    )


def _scale(value: float) -> int:
    """Epoch seconds, milliseconds, microseconds or nanoseconds (by size) → microseconds."""
    size = abs(value)
    if isinstance(value, int):  # exact, whatever its size
        if size < 100_000_000_000:
            return value * 1_000_000
        if size < 100_000_000_000_000:
            return value * 1_000
        return value if size < 100_000_000_000_000_000 else value // 1_000
    if size < 1e11:
        return round(value * 1_000_000)
    if size < 1e14:
        return round(value * 1_000)
    if size < 1e17:
        return round(value)
    return round(value / 1_000)


def to_micros(value: Any) -> int | None:
    """A timestamp value (see the module docstring) as microseconds since the epoch, or None."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text[0] in "0123456789-" and _NUMBER.fullmatch(text):
            number = float(text) if "." in text else int(text)
            return _scale(number)
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            return None
        return _datetime_micros(dt)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _scale(value)
    if isinstance(value, float):
        return _scale(value) if math.isfinite(value) else None
    return None


#: Microseconds per unit of the epoch integer classes of :func:`_scale` (s, ms, µs).
_UNIT_MICROS = (1_000_000, 1_000, 1)


def _unit(value: int) -> int:
    """The class of a non-negative epoch integer in :func:`_scale`: 0 s, 1 ms, 2 µs, 3 ns."""
    if value < 100_000_000_000:
        return 0
    if value < 100_000_000_000_000:
        return 1
    return 2 if value < 100_000_000_000_000_000 else 3


def _datetime_micros(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _US


#: Lines longer than this are read by msgspec (they are read leniently later anyway).
_NATIVE_MAX_LINE = 64 * 1024 * 1024


class TimestampReader:
    """Reads the ``fields.timestamp`` value of lines of one format (raw, see :func:`to_micros`).

    ``enabled`` is False when there is nothing to read (no timestamp field, or a text regex
    without a group of that name).
    """

    def __init__(self, fmt: Format, fields: FieldsConfig, regex: str | None = None) -> None:
        self.format = fmt
        self.field = fields.timestamp
        self.enabled = bool(self.field)
        self._lenient_re = _lenient_re(self.field)
        self._line: Callable[[bytes], Any]
        self._decode_array: Callable[[bytes | bytearray], list[Any]] | None = None
        #: JSON key read by the C extension (None: msgspec) and that extension.
        self._native_key: bytes | None = None
        self._native: Any = None
        if not self.field:
            self._line = lambda line: None
        elif fmt == "json":
            struct = msgspec.defstruct(
                "_Timestamp", [("ts", Any, None)], rename={"ts": self.field}, gc=False
            )
            decode = msgspec.json.Decoder(struct).decode
            self._decode_array = msgspec.json.Decoder(list[struct]).decode  # type: ignore[valid-type]

            def json_line(line: bytes) -> Any:
                try:
                    return decode(line).ts  # type: ignore[attr-defined]
                except _DECODE_ERRORS:
                    return None

            self._line = json_line
            self._native = native_module()
            if self._native is not None:
                self._native_key = self.field.encode()
        elif fmt == "logfmt":
            name = self.field

            def logfmt_line(line: bytes) -> Any:
                # The tokens of LogfmtParser: a line it cannot parse has no timestamp.
                pairs = logfmt_pairs(line)
                return None if pairs is None else logfmt_value(pairs, name)

            self._line = logfmt_line
        else:
            compiled = re.compile(regex or "")
            name = self.field
            if name not in compiled.groupindex:
                self.enabled = False
                self._line = lambda line: None
            else:

                def text_line(line: bytes) -> Any:
                    try:
                        m = compiled.search(line.decode("utf-8"))
                    except UnicodeDecodeError:
                        return None
                    return None if m is None else m.group(name)

                self._line = text_line

    @classmethod
    def for_source(cls, source: SourceConfig) -> TimestampReader:
        return cls(source.format, source.fields, source.regex)

    def line(self, line: bytes) -> int | None:
        """The timestamp of one line (without its newline) in microseconds, or None."""
        return to_micros(self._line(line))

    def lenient(self, prefix: bytes) -> int | None:
        """The timestamp found in the first part of an overlong line, or None."""
        if not self.enabled:
            return None
        return to_micros(Parser._lenient(self._lenient_re, prefix))

    def values(self, buf: bytes) -> list[Any]:
        """The raw timestamp value of every line of ``buf`` (complete lines), in order."""
        if self._native_key is not None:
            # The C walk reads plain lines (as msgspec does) and leaves the others to us.
            native = self._native
            values: list[Any] = native.field_values(
                buf, 0, len(buf), self._native_key, _NATIVE_MAX_LINE
            )
            undecided = native.UNDECIDED
            if undecided in values:
                get, lines = self._line, buf.split(_NL)
                values = [get(lines[i]) if v is undecided else v for i, v in enumerate(values)]
            return values
        n = buf.count(_NL)
        if self._decode_array is not None:
            try:
                recs = self._decode_array(json_lines_array(buf))
            except _DECODE_ERRORS:
                pass
            else:
                if len(recs) == n:  # one element per line (see Classifier._scan_json_fast)
                    return [r.ts for r in recs]
        get = self._line
        return [get(line) for line in buf.split(_NL, n)[:n]]


class DeployGate:
    """Routes the lines of one stream that are older than T0 to a pre-deploy :class:`Counts`.

    ``ordered`` streams (files) stop reading timestamps once a line at or after T0 was seen;
    ``passed`` is that line's timestamp (µs; persisted with the file's checkpoint). The
    timestamp of a line longer than ``max_line_bytes`` is read leniently from its first
    ``max_line_bytes`` bytes, as its classes are, so chunk boundaries never change a count.
    """

    __slots__ = ("_t0_dt", "active", "max_line_bytes", "ordered", "passed", "reader", "t0")

    def __init__(
        self,
        reader: TimestampReader,
        *,
        ordered: bool,
        passed: int | None = None,
        max_line_bytes: int = 100 * 1024,
    ) -> None:
        self.reader = reader
        self.ordered = ordered
        self.passed = passed
        self.max_line_bytes = max_line_bytes
        self.t0: int | None = None
        self._t0_dt = _EPOCH
        #: Whether timestamps must be read (T0 known, and not past it for an ordered stream).
        self.active = False

    def set_t0(self, t0: datetime | None) -> None:
        """The deployment time as known now (None: unknown, every line is post-deploy)."""
        self.t0 = None if t0 is None else _datetime_micros(t0)
        if t0 is not None:
            self._t0_dt = t0.astimezone(UTC) if t0.tzinfo is not None else t0.replace(tzinfo=UTC)
        self._update()

    def _update(self) -> None:
        t0 = self.t0
        self.active = (
            t0 is not None
            and self.reader.enabled
            and not (self.ordered and self.passed is not None and self.passed >= t0)
        )

    def _pass(self, ts: int) -> None:
        self.passed = ts
        self.active = False

    def _timestamp(self, line: bytes) -> int | None:
        limit = self.max_line_bytes
        if len(line) > limit:
            return self.reader.lenient(line[:limit])
        return self.reader.line(line)

    # ------------------------------------------------------------------ deciding

    def is_pre(self, line: bytes, *, truncated: bool = False) -> bool:
        """Whether one line (no newline; ``truncated``: the first part of an overlong one) is
        pre-deploy. A line at or after T0 ends an ordered stream's pre-deploy part."""
        t0 = self.t0
        if not self.active or t0 is None:
            return False
        ts = (
            self.reader.lenient(line[: self.max_line_bytes]) if truncated else self._timestamp(line)
        )
        if ts is None:
            return False
        if ts < t0:
            return True
        if self.ordered:
            self._pass(ts)
        return False

    def split(self, buf: bytes) -> tuple[bytes, bytes]:
        """``(pre-deploy lines, post-deploy lines)`` of ``buf`` (complete lines, in order)."""
        t0 = self.t0
        if not self.active or t0 is None or not buf:
            return b"", buf
        if self.ordered:
            # The first line often settles it (a new file, a restart past T0).
            first = self._timestamp(buf[: buf.find(_NL)])
            if first is not None and first >= t0:
                self._pass(first)
                return b"", buf
        values = self.reader.values(buf)
        n = len(values)
        overlong = may_have_overlong_line(buf, self.max_line_bytes)
        flags = None
        if not overlong:
            flags = self._flags_of_epoch_ints(values, t0)
            if flags is None:
                flags = self._flags_of_iso_strings(values)
        if flags is None:
            flags = self._flags(buf, values, t0, overlong)
        if len(flags) == n and all(flags):
            return buf, b""
        if not any(flags):
            return b"", buf
        flags.extend([False] * (n - len(flags)))  # past T0 in an ordered stream
        lines = buf.split(_NL)  # one more: the empty text after the last newline
        pre = b"\n".join(compress(lines, flags)) + _NL
        post = b"\n".join(compress(lines, map(not_, flags))) + _NL
        return pre, post

    def _flags_of_epoch_ints(self, values: list[Any], t0: int) -> list[bool] | None:
        """Pre-deploy flags when every value is an epoch integer of one unit (pino's ms):
        compared in that unit, without a Python call per line. None otherwise."""
        if not values or set(map(type, values)) != {int}:
            return None
        lo, hi = min(values), max(values)
        if lo < 0:
            return None
        unit = _unit(lo)
        if _unit(hi) != unit:
            return None
        # the smallest value of that unit at or after T0 (see _scale)
        first_post = t0 * 1_000 if unit == 3 else -(-t0 // _UNIT_MICROS[unit])
        if not self.ordered:
            return list(map(first_post.__gt__, values))
        if hi < first_post:
            return [True] * len(values)
        k = list(map(first_post.__le__, values)).index(True)
        self._pass(_scale(values[k]))
        return [True] * k

    def _flags_of_iso_strings(self, values: list[Any]) -> list[bool] | None:
        """Pre-deploy flags when every value is an ISO 8601 string, all with an offset or all
        without: compared as datetimes, without a Python call per line. None otherwise."""
        if not values or set(map(type, values)) != {str} or any(map(_NUMBER.fullmatch, values)):
            return None
        try:
            stamps = list(map(datetime.fromisoformat, values))
            t0 = self._t0_dt if stamps[0].tzinfo is not None else self._t0_dt.replace(tzinfo=None)
            if not self.ordered:
                return list(map(t0.__gt__, stamps))
            post = list(map(t0.__le__, stamps))
        except (ValueError, TypeError):  # not ISO 8601; offsets on some only
            return None
        try:
            k = post.index(True)
        except ValueError:
            return [True] * len(values)
        self._pass(_datetime_micros(stamps[k]))
        return [True] * k

    def _flags(self, buf: bytes, values: list[Any], t0: int, overlong: bool) -> list[bool]:
        """Pre-deploy flags, line by line (an ordered stream: up to its first post line)."""
        stamps = list(map(to_micros, values))
        if overlong:  # read leniently from their first part, as they are classified
            limit, lenient = self.max_line_bytes, self.reader.lenient
            for i, text in enumerate(buf.split(_NL, len(values))[: len(values)]):
                if len(text) > limit:
                    stamps[i] = lenient(text[:limit])
        if self.ordered:
            for k, ts in enumerate(stamps):
                if ts is not None and ts >= t0:
                    self._pass(ts)
                    del stamps[k:]
                    break
        return [ts is not None and ts < t0 for ts in stamps]

    def scan(
        self,
        classifier: Classifier,
        buf: bytes,
        counts: Counts,
        pre: Counts,
        samples: Samples | None = None,
    ) -> None:
        """Classify ``buf`` into ``counts`` (every line) and its pre-deploy lines into ``pre``.

        Samples are taken from post-deploy lines only.
        """
        before, after = self.split(buf)
        if before:
            part = Counts()
            classifier.scan(before, part)
            pre.add(part)
            counts.add(part)
        if after:
            classifier.scan(after, counts, samples)
