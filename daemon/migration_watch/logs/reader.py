"""Reading one followed file: bounded chunks from an offset, complete lines, offsets.

A :class:`FileReader` owns a descriptor (None while a checkpointed file cannot be opened),
the position read up to and the :class:`~.scanner.LineStream` the bytes go through (it
classifies and counts complete lines and holds back a partial last one). It knows nothing of
paths, globs or rotation: :mod:`.discovery` decides which descriptor is read and when a file
starts again from 0; :mod:`.follower` runs both and checkpoints.

:class:`Streams` makes the line streams of one source (its classifier, samples and
pre-deploy gate), new or resumed from a checkpoint's ``extra``. :func:`tail_start` is where
``start_at: end`` begins reading.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from .classify import Classifier
from .counts import Counts, Samples
from .deploy import DeployGate, TimestampReader
from .scanner import LineStream

__all__ = ["FileReader", "Streams", "close_fd", "tail_offset", "tail_start"]


def close_fd(fd: int | None) -> None:
    """Close ``fd`` (when there is one), errors ignored."""
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def tail_offset(tail: bytes, size: int) -> tuple[int, bool]:
    """Where ``start_at: end`` starts in a file of ``size`` bytes ending with ``tail`` (its
    last bytes, at most ``max_line_bytes + 1``): ``(offset, skipping)``.

    After the last complete line; a file holding one partial line is read from 0 (the line is
    counted when its newline arrives); inside an overlong line begun before ``tail``, its
    rest is skipped.
    """
    window = len(tail)
    nl = tail.rfind(b"\n")
    if nl >= 0:
        return size - window + nl + 1, False
    if window == size:  # one partial line: count it when its newline arrives
        return 0, False
    return size, True  # inside an overlong line begun earlier: skip its rest


def tail_start(fd: int, size: int, max_line_bytes: int) -> tuple[int, bool]:
    """``start_at: end`` for the open file ``fd`` (see :func:`tail_offset`)."""
    if size == 0:
        return 0, False
    window = min(size, max_line_bytes + 1)
    return tail_offset(os.pread(fd, window, size - window), size)


@dataclass(frozen=True)
class Streams:
    """Makes the line streams of one source."""

    classifier: Classifier
    samples: Samples
    timestamps: TimestampReader

    def new(
        self, *, skipping: bool = False, skipping_pre: bool = False, passed: int | None = None
    ) -> LineStream:
        return LineStream(
            self.classifier,
            samples=self.samples,
            skipping=skipping,
            skipping_pre=skipping_pre,
            gate=DeployGate(
                self.timestamps,
                ordered=True,
                passed=passed,
                max_line_bytes=self.classifier.max_line_bytes,
            ),
        )

    def resumed(self, extra: Mapping[str, object]) -> LineStream:
        """The stream of a checkpointed file (its ``extra``: skipping, ``t0_passed``)."""
        passed = extra.get("t0_passed")
        return self.new(
            skipping=bool(extra.get("skipping", False)),
            skipping_pre=bool(extra.get("skipping_pre", False)),
            passed=int(passed) if isinstance(passed, int | float) else None,
        )


class FileReader:
    """One file's descriptor, read position, line stream and last seen size/mtime."""

    __slots__ = ("fd", "mtime_ns", "position", "size", "stream")

    def __init__(
        self,
        fd: int | None,
        position: int,
        stream: LineStream,
        *,
        size: int = 0,
        mtime_ns: int = 0,
    ) -> None:
        self.fd = fd
        self.position = position
        self.stream = stream
        self.size = size
        self.mtime_ns = mtime_ns

    @property
    def offset(self) -> int:
        """Where counting resumes: the held-back partial line is read again."""
        return self.position - self.stream.pending

    @property
    def seen_size(self) -> int:
        """The file's size as far as known (what was read may be past the last stat)."""
        return max(self.size, self.position)

    @property
    def caught_up(self) -> bool:
        return self.position >= self.size

    def read(
        self,
        budget: int,
        chunk: int,
        delta: Counts,
        pre: Counts,
        t0: datetime | None,
    ) -> tuple[int, OSError | None]:
        """Read up to ``budget`` new bytes in reads of ``chunk`` into ``delta`` (the lines
        older than ``t0`` also into ``pre``): the bytes read and the error that stopped it."""
        stream = self.stream
        if stream.gate is not None:
            stream.gate.set_t0(t0)
        fd = self.fd
        assert fd is not None
        read = 0
        error: OSError | None = None
        while read < budget:
            want = min(chunk, budget - read)
            try:
                data = os.pread(fd, want, self.position)
            except OSError as exc:
                error = exc
                break
            if not data:
                break
            self.position += len(data)
            read += len(data)
            stream.feed(data, delta, pre)
            if len(data) < want:
                break
        self.size = self.seen_size
        return read, error

    def restart(self, stream: LineStream) -> None:
        """Read again from 0 through a new stream (the file was truncated)."""
        self.position = 0
        self.stream = stream

    def flush(self, delta: Counts, pre: Counts) -> None:
        """Count the held-back partial line (the file is done with)."""
        self.stream.flush(delta, pre)

    def close(self) -> None:
        """Close the descriptor (idempotent, errors ignored)."""
        close_fd(self.fd)
        self.fd = None

    def extra(self, *, rotated: bool) -> dict[str, bool | int]:
        """The stream's part of a checkpoint's ``extra`` (and ``rotated``)."""
        stream = self.stream
        extra: dict[str, bool | int] = {}
        if stream.skipping:
            extra["skipping"] = True
            if stream.skipping_pre:
                extra["skipping_pre"] = True
        if rotated:
            extra["rotated"] = True
        if stream.gate is not None and stream.gate.passed is not None:
            extra["t0_passed"] = stream.gate.passed
        return extra
