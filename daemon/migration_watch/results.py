"""Immutable check results and the status vocabulary shared by every part of the daemon."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Result", "Status", "overall_status"]


class Status(enum.StrEnum):
    """``pass``: measured and fine. ``fail``: measured and wrong. ``error``: could not be
    measured (database down, timeout, permission). ``skipped``: not applicable, with a reason."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    SKIPPED = "skipped"


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
