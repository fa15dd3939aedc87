"""Immutable check results and the status vocabulary shared by every part of the daemon."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict, Unpack

__all__ = ["Result", "ResultFields", "Status", "overall_status"]


class Status(enum.StrEnum):
    """``pass``: measured and fine. ``fail``: measured and wrong. ``error``: could not be
    measured (database down, timeout, permission). ``skipped``: not applicable, with a reason."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    SKIPPED = "skipped"


class ResultFields(TypedDict, total=False):
    """The optional fields a :class:`Result` constructor takes (left out: the defaults)."""

    observed: Mapping[str, Any]
    threshold: Any
    details: Mapping[str, Any]
    table: str | None
    measured_at: datetime | None


@dataclass(frozen=True)
class Result:
    """One check's verdict on one subject.

    ``subject`` is ``schema.table``, ``schema.table.index`` or ``database``."""

    check: str
    subject: str
    status: Status
    observed: Mapping[str, Any] = field(default_factory=dict)
    threshold: Any = None
    details: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""
    table: str | None = None
    measured_at: datetime | None = None
    duration_seconds: float = 0.0

    # One constructor per status, so a check states its verdict rather than a ``Result(...)``
    # block. ``message`` is what the results show; ``reason`` says why nothing was judged.

    @classmethod
    def passed(
        cls, check: str, subject: str, message: str = "", **fields: Unpack[ResultFields]
    ) -> Result:
        """Measured and fine."""
        return cls(check, subject, Status.PASS, message=message, **fields)

    @classmethod
    def failed(
        cls, check: str, subject: str, message: str = "", **fields: Unpack[ResultFields]
    ) -> Result:
        """Measured and wrong."""
        return cls(check, subject, Status.FAIL, message=message, **fields)

    @classmethod
    def pass_if(
        cls, ok: bool, check: str, subject: str, message: str = "", **fields: Unpack[ResultFields]
    ) -> Result:
        """:meth:`passed` when ``ok`` else :meth:`failed`, with the same fields either way."""
        status = Status.PASS if ok else Status.FAIL
        return cls(check, subject, status, message=message, **fields)

    @classmethod
    def errored(
        cls, check: str, subject: str, *, reason: str, **fields: Unpack[ResultFields]
    ) -> Result:
        """Could not be measured (database down, timeout, permission)."""
        return cls(check, subject, Status.ERROR, message=reason, **fields)

    @classmethod
    def skipped(
        cls, check: str, subject: str, *, reason: str, **fields: Unpack[ResultFields]
    ) -> Result:
        """Not applicable (table absent, extension missing, no baseline)."""
        return cls(check, subject, Status.SKIPPED, message=reason, **fields)

    def to_json(self) -> dict[str, Any]:
        """The shape of one entry of ``check --once --format json``'s ``checks`` list."""
        return {
            "name": self.check,
            "subject": self.subject,
            "status": self.status.value,
            "observed": dict(self.observed),
            "threshold": self.threshold,
            "details": dict(self.details),
            "message": self.message,
        }


def overall_status(results: Iterable[Result]) -> Status:
    """``error`` if anything errored, else ``fail`` if anything failed, else ``pass``."""
    statuses = {r.status for r in results}
    if Status.ERROR in statuses:
        return Status.ERROR
    if Status.FAIL in statuses:
        return Status.FAIL
    return Status.PASS
