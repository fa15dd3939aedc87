"""Streaming: complete lines out of arbitrary chunks, and ``logs scan FILE…``.

* :func:`scan_chunk` classifies the complete lines of one buffer and says how many bytes it
  consumed (the partial last line is left for the caller).
* :class:`LineStream` is fed arbitrary chunks (reads of a file, HTTP bodies) and holds the
  partial last line back; a line that grows past ``max_line_bytes`` without a newline is
  counted as truncated at once, classified on its first part, and the rest of it is
  skipped when it arrives — memory stays bounded whatever the input.
* :func:`scan_files` streams files (gzip detected by its magic bytes, ``-`` = stdin) in
  1 MiB reads through one :class:`LineStream` per file and returns a :class:`ScanReport`.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .classify import CLASSES, Classifier, Counts, Samples
from .deploy import DeployGate

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "LineStream",
    "ScanReport",
    "scan_chunk",
    "scan_files",
]

DEFAULT_CHUNK_BYTES = 1024 * 1024
_NL = b"\n"


def scan_chunk(
    buf: bytes, classifier: Classifier, *, samples: Samples | None = None
) -> tuple[Counts, int]:
    """Classify the complete lines of ``buf``; return their counts and the bytes consumed.

    Bytes after the last newline are not consumed: hold them back and prepend them to the
    next chunk. Lines longer than the classifier's ``max_line_bytes`` inside ``buf`` are
    counted as truncated; for a partial line that is already too long use
    :class:`LineStream`.
    """
    counts = Counts()
    end = buf.rfind(_NL) + 1
    classifier.scan(buf, counts, samples, end=end)
    return counts, end


class LineStream:
    """Feeds chunks to a classifier, holding back the partial last line.

    ``pending`` is the number of bytes held back: a checkpoint stores
    ``position - pending`` together with ``skipping`` (True while the rest of an overlong
    line is being skipped) and ``skipping_pre`` (that line was pre-deploy), so that a
    restart re-reads exactly what was not counted.

    With a ``gate`` (:class:`~.deploy.DeployGate`) and a ``pre`` Counts given to
    :meth:`feed` / :meth:`flush`, lines older than the deployment are also counted in ``pre``
    (every line is counted in ``counts``).
    """

    def __init__(
        self,
        classifier: Classifier,
        *,
        samples: Samples | None = None,
        skipping: bool = False,
        skipping_pre: bool = False,
        gate: DeployGate | None = None,
    ) -> None:
        self.classifier = classifier
        self.samples = samples
        self.skipping = skipping
        self.skipping_pre = skipping and skipping_pre
        self.gate = gate
        self._carry = b""

    @property
    def pending(self) -> int:
        return len(self._carry)

    def feed(self, data: bytes, counts: Counts | None = None, pre: Counts | None = None) -> Counts:
        """Count the lines completed by ``data`` (added to ``counts`` when given; the
        pre-deploy ones to ``pre`` too)."""
        counts = Counts() if counts is None else counts
        start = 0
        if self._carry:
            nl = data.find(_NL)
            if nl < 0:  # (never while skipping: an overlong line leaves no carry)
                data = self._carry + data
            else:  # complete the held-back line alone: no copy of the whole chunk
                head = self._carry + data[: nl + 1]
                self._scan(head, 0, len(head), counts, pre)
                start = nl + 1
            self._carry = b""
        if self.skipping:
            nl = data.find(_NL)
            rest = len(data) if nl < 0 else nl + 1
            counts.bytes += rest
            if self.skipping_pre and pre is not None:
                pre.bytes += rest
            if nl < 0:
                return counts
            self.skipping = self.skipping_pre = False
            data = data[nl + 1 :]
        end = data.rfind(_NL, start) + 1
        if end:
            self._scan(data, start, end, counts, pre)
        else:
            end = start
        tail = data[end:]
        limit = self.classifier.max_line_bytes
        if len(tail) > limit:
            self.skipping_pre = self._count_line(
                tail[:limit], len(tail), counts, pre, truncated=True
            )
            self.skipping = True
        else:
            self._carry = tail
        return counts

    def _scan(self, data: bytes, start: int, end: int, counts: Counts, pre: Counts | None) -> None:
        """Classify the complete lines ``data[start:end]``."""
        gate = self.gate
        if gate is not None and gate.active and pre is not None:
            block = data if start == 0 and end == len(data) else data[start:end]
            gate.scan(self.classifier, block, counts, pre, self.samples)
        else:
            self.classifier.scan(data, counts, self.samples, start=start, end=end)

    def flush(self, counts: Counts | None = None, pre: Counts | None = None) -> Counts:
        """End of input: count the held-back partial line as a line (if any)."""
        counts = Counts() if counts is None else counts
        if self._carry:
            carry, self._carry = self._carry, b""
            self._count_line(carry, len(carry), counts, pre)
        self.skipping = self.skipping_pre = False
        return counts

    def _count_line(
        self,
        line: bytes,
        nbytes: int,
        counts: Counts,
        pre: Counts | None,
        *,
        truncated: bool = False,
    ) -> bool:
        """Count one line; True when it was counted as pre-deploy."""
        flags = self.classifier.classify_line(line, truncated=truncated)
        counts.add_line(flags, nbytes)
        gate = self.gate
        if (
            gate is not None
            and gate.active
            and pre is not None
            and gate.is_pre(line, truncated=truncated)
        ):
            pre.add_line(flags, nbytes)
            return True
        if self.samples is not None and flags & 0x7F:
            self.samples.add_flags(flags, line[: self.classifier.max_line_bytes])
        return False


@dataclass(frozen=True)
class ScanReport:
    """The result of ``migration-watch logs scan``."""

    files: tuple[str, ...]
    counts: Counts
    per_file: Mapping[str, Counts] = field(default_factory=dict)
    samples: Mapping[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``{"files", "lines", "bytes", "classes": {…}, "parse_errors", "truncated"}``."""
        c = self.counts
        return {
            "files": list(self.files),
            "lines": c.lines,
            "bytes": c.bytes,
            "classes": c.classes(),
            "parse_errors": c.parse_errors,
            "truncated": c.truncated,
        }

    def to_table(self) -> str:
        """A plain-text table: one row per count, one column per file plus the total."""
        names = list(self.files) if len(self.files) > 1 else []
        header = ["count", *names, "total"]
        rows = [
            ("lines", "lines"),
            ("bytes", "bytes"),
            *((c, c) for c in CLASSES),
            ("parse_errors", "parse_errors"),
            ("truncated", "truncated"),
        ]
        table = [header]
        for label, attr in rows:
            cells = [str(getattr(self.per_file[n], attr)) for n in names]
            table.append([label, *cells, str(getattr(self.counts, attr))])
        if self.counts.lines:
            ratio_base = self.counts.legacy_reference + self.counts.new_reference
            ratio = self.counts.legacy_reference / ratio_base if ratio_base else 0.0
            error_rate = self.counts.error / self.counts.lines
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines = [
            "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            ).rstrip()
            for row in table
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if self.counts.lines:
            lines.append("")
            lines.append(f"error rate: {error_rate:.4%}   legacy share of references: {ratio:.2%}")
        for kind, sample in self.samples.items():
            if sample:
                lines.append("")
                lines.append(f"last {kind} lines:")
                lines.extend(f"  {s}" for s in sample)
        return "\n".join(lines)


def _open(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    f = Path(path).open("rb")  # noqa: SIM115 - closed by the caller
    if f.peek(2)[:2] == b"\x1f\x8b":
        f.close()
        return gzip.GzipFile(path, "rb")  # type: ignore[return-value]
    return f


def scan_files(
    paths: Iterable[str | Path],
    classifier: Classifier,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    samples: Samples | None = None,
) -> ScanReport:
    """Classify every line of the files (streamed; memory flat whatever their size).

    ``samples`` defaults to the classifier's ``classes.samples`` lines per kind. Raises
    ``OSError`` when a file cannot be read.
    """
    if samples is None:
        samples = Samples(classifier.classes.samples, classifier.classes.sample_chars)
    total = Counts()
    per_file: dict[str, Counts] = {}
    names: list[str] = []
    for p in paths:
        name = str(p)
        names.append(name)
        counts = per_file.setdefault(name, Counts())
        stream = LineStream(classifier, samples=samples)
        f = _open(name)
        try:
            read = f.read
            while data := read(chunk_bytes):
                stream.feed(data, counts)
        finally:
            if f is not sys.stdin.buffer:
                f.close()
        stream.flush(counts)
    for c in per_file.values():
        total.add(c)
    return ScanReport(
        files=tuple(names), counts=total, per_file=per_file, samples=samples.snapshot()
    )
