"""What is counted of log lines: the classes, the per-line flags, :class:`Counts` and the
:class:`Samples` kept of each kind (redacted when read, :func:`redact`).

:class:`~.classify.Classifier` gives the flags of a line; :meth:`Counts.add_line` counts
them. Everything here is re-exported by :mod:`.classify`.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

__all__ = [
    "BLANK",
    "CLASSES",
    "ERROR",
    "FALLBACK",
    "FLAG_KINDS",
    "LEGACY_ERROR",
    "LEGACY_REFERENCE",
    "NEW_REFERENCE",
    "PARSE_ERROR",
    "SAMPLE_KINDS",
    "TRUNCATED",
    "Counts",
    "Samples",
    "redact",
]

#: The classes, in the order they are reported.
CLASSES = ("error", "legacy_reference", "new_reference", "legacy_error", "fallback")
#: Kinds of samples kept: the classes plus parse errors and truncated lines.
SAMPLE_KINDS = (*CLASSES, "parse_error", "truncated")

# Per-line flags returned by Classifier.classify_line.
ERROR = 1
LEGACY_REFERENCE = 2
NEW_REFERENCE = 4
LEGACY_ERROR = 8
FALLBACK = 16
PARSE_ERROR = 32
TRUNCATED = 64
BLANK = 128
FLAG_KINDS = (
    (ERROR, "error"),
    (LEGACY_REFERENCE, "legacy_reference"),
    (NEW_REFERENCE, "new_reference"),
    (LEGACY_ERROR, "legacy_error"),
    (FALLBACK, "fallback"),
    (PARSE_ERROR, "parse_error"),
    (TRUNCATED, "truncated"),
)


# --------------------------------------------------------------------------- counts


@dataclass(slots=True)
class Counts:
    """Line counters. Mutable accumulator; ``+``/``-`` give new objects (window deltas)."""

    lines: int = 0
    bytes: int = 0
    error: int = 0
    legacy_reference: int = 0
    new_reference: int = 0
    legacy_error: int = 0
    fallback: int = 0
    parse_errors: int = 0
    truncated: int = 0

    def add(self, other: Counts) -> None:
        """Add ``other`` into this object."""
        for f in _COUNT_FIELDS:
            setattr(self, f, getattr(self, f) + getattr(other, f))

    def add_line(self, flags: int, nbytes: int) -> None:
        """Count one line classified as ``flags``
        (see :meth:`~.classify.Classifier.classify_line`)."""
        self.lines += 1
        self.bytes += nbytes
        if flags & 0x7F:
            if flags & ERROR:
                self.error += 1
            if flags & LEGACY_REFERENCE:
                self.legacy_reference += 1
            if flags & NEW_REFERENCE:
                self.new_reference += 1
            if flags & LEGACY_ERROR:
                self.legacy_error += 1
            if flags & FALLBACK:
                self.fallback += 1
            if flags & PARSE_ERROR:
                self.parse_errors += 1
            if flags & TRUNCATED:
                self.truncated += 1

    def copy(self) -> Counts:
        return Counts(**self.to_dict())

    def __add__(self, other: Counts) -> Counts:
        out = self.copy()
        out.add(other)
        return out

    def __sub__(self, other: Counts) -> Counts:
        return Counts(**{f: getattr(self, f) - getattr(other, f) for f in _COUNT_FIELDS})

    def classes(self) -> dict[str, int]:
        """``{"error": N, "legacy_reference": N, …}`` in :data:`CLASSES` order."""
        return {c: getattr(self, c) for c in CLASSES}

    def to_dict(self) -> dict[str, int]:
        return {f: getattr(self, f) for f in _COUNT_FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, int]) -> Counts:
        return cls(**{f: int(data.get(f, 0)) for f in _COUNT_FIELDS})


_COUNT_FIELDS = tuple(f.name for f in fields(Counts))


# --------------------------------------------------------------------------- samples

_REDACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]+"), r"\1\2[REDACTED]"),
    (
        re.compile(
            r"(?i)\b(authorization|apikey|api_key|api-key|x-api-key|access_token|refresh_token"
            r"|token|password|passwd|pwd|secret|client_secret|service_role_key|signature|sig)"
            r"(\\?[\"']?\s*[:=]\s*\\?[\"']?)([^\"'\\&\s,;}]+)"
        ),
        r"\1\2[REDACTED]",
    ),
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s\"']+:)[^@\s\"']+@"), r"\1[REDACTED]@"),
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s\"']+:)[^@\s\"'/]+$"), r"\1[REDACTED]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), "[REDACTED]"),
)
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def redact(text: str) -> str:
    """Mask bearer/basic credentials, ``password=``/``apikey=`` values, DSN passwords, JWTs."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class Samples:
    """The last few lines of each kind, kept raw (bounded) and redacted when read."""

    def __init__(self, per_kind: int = 5, chars: int = 300) -> None:
        self.per_kind = per_kind
        self.chars = chars
        self._keep = chars * 4
        self._lines: dict[str, deque[bytes]] = {k: deque(maxlen=per_kind) for k in SAMPLE_KINDS}

    def add(self, kind: str, line: bytes) -> None:
        if self.per_kind:
            self._lines[kind].append(line[: self._keep])

    def add_flags(self, flags: int, line: bytes) -> None:
        for flag, kind in FLAG_KINDS:
            if flags & flag:
                self.add(kind, line)

    def extend(self, kind: str, lines: Iterable[bytes]) -> None:
        for line in lines:
            self.add(kind, line)

    def merge(self, other: Samples) -> None:
        for kind, lines in other._lines.items():
            self.extend(kind, lines)

    def get(self, kind: str) -> list[str]:
        """Redacted, printable, truncated lines of one kind, oldest first."""
        out = []
        for raw in self._lines[kind]:
            text = raw.rstrip(b"\r").decode("utf-8", "replace")
            text = _UNPRINTABLE.sub("?", redact(text)).replace("\t", " ")
            if len(text) > self.chars:
                text = text[: self.chars - 1] + "…"
            out.append(text)
        return out

    def snapshot(self) -> dict[str, list[str]]:
        """Every kind that has samples."""
        return {k: self.get(k) for k in SAMPLE_KINDS if self._lines[k]}
