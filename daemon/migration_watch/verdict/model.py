"""The verdict's data: the criteria and their statuses, the evidence, the criterion
results and the :class:`Verdict`, with the JSON form (``to_json``/``from_json``) the
report, the metric and the state store (``to_record``/``from_record``) use."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..state import VerdictRecord

__all__ = [
    "CRITERIA",
    "CRITERION_TITLES",
    "DEFAULT_REQUIRED",
    "CriterionResult",
    "CriterionStatus",
    "Evidence",
    "Verdict",
]


class CriterionStatus(enum.StrEnum):
    """The four values of ``migration_watch_verdict{status}`` (one-hot per criterion)."""

    MET = "met"
    NOT_MET = "not_met"
    NOT_MEASURED = "not_measured"
    PENDING = "pending"


#: Every criterion, in report order.
CRITERIA: tuple[str, ...] = (
    "coverage",
    "orphans",
    "indexes",
    "rls",
    "legacy_column",
    "post_deploy_writes",
    "legacy_errors",
    "error_budget",
    "latency",
    "query_ratio_trend",
)

#: One line per criterion, the checklist's wording.
CRITERION_TITLES: Mapping[str, str] = {
    "coverage": "100% of rows have the new column, per table",
    "orphans": "Zero orphaned records",
    "indexes": "All indexes present and valid",
    "rls": "RLS policies in place on the new column",
    "legacy_column": "Legacy column still present (rollback path)",
    "post_deploy_writes": "No rows written after the deploy without the new column",
    "legacy_errors": "Zero legacy-column related errors in the first 7 days",
    "error_budget": "Production errors within budget in the first 7 days",
    "latency": "Performance within 10% of the pre-deploy baseline",
    "query_ratio_trend": "Legacy-column query ratio falling to zero",
}

#: Required by default: the database criteria (always measurable with a reachable database).
DEFAULT_REQUIRED: frozenset[str] = frozenset(
    {"coverage", "orphans", "indexes", "rls", "legacy_column", "post_deploy_writes"}
)


@dataclass(frozen=True)
class Evidence:
    """One stored result a criterion's status rests on: which run, when, which value."""

    check: str
    subject: str
    run_id: int | None
    at: datetime | None
    status: str
    value: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "subject": self.subject,
            "run_id": self.run_id,
            "at": None if self.at is None else self.at.isoformat(),
            "status": self.status,
            "value": dict(self.value),
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Evidence:
        at = data.get("at")
        return cls(
            check=str(data["check"]),
            subject=str(data["subject"]),
            run_id=data.get("run_id"),
            at=None if at is None else datetime.fromisoformat(at).astimezone(UTC),
            status=str(data.get("status", "")),
            value=dict(data.get("value") or {}),
            note=str(data.get("note", "")),
        )


@dataclass(frozen=True)
class CriterionResult:
    """One criterion: ``status`` (``pending`` before the end), ``provisional`` (what it would be
    if the week ended now; equal to ``status`` once final), a one-line summary and evidence."""

    criterion: str
    status: CriterionStatus
    provisional: CriterionStatus
    required: bool
    summary: str
    evidence: tuple[Evidence, ...] = ()

    @property
    def title(self) -> str:
        return CRITERION_TITLES.get(self.criterion, self.criterion)

    def to_json(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion,
            "title": self.title,
            "status": self.status.value,
            "provisional": self.provisional.value,
            "required": self.required,
            "summary": self.summary,
            "evidence": [e.to_json() for e in self.evidence],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CriterionResult:
        return cls(
            criterion=str(data["criterion"]),
            status=CriterionStatus(data["status"]),
            provisional=CriterionStatus(data.get("provisional", data["status"])),
            required=bool(data.get("required", False)),
            summary=str(data.get("summary", "")),
            evidence=tuple(Evidence.from_json(e) for e in data.get("evidence") or ()),
        )


@dataclass(frozen=True)
class Verdict:
    """The week's verdict (or its provisional state before ``verdict_at``)."""

    outcome: CriterionStatus
    provisional_outcome: CriterionStatus
    final: bool
    computed_at: datetime
    deployed_at: datetime
    verdict_at: datetime
    criteria: tuple[CriterionResult, ...]
    not_measured: tuple[str, ...] = ()
    runs_considered: int = 0
    settings: Mapping[str, Any] = field(default_factory=dict)

    def criterion(self, name: str) -> CriterionResult:
        """The result of one criterion (``KeyError`` for an unknown name)."""
        for c in self.criteria:
            if c.criterion == name:
                return c
        raise KeyError(name)

    def one_hot(self) -> list[tuple[str, str, float]]:
        """``(criterion, status, 0|1)`` for every criterion and every status: the samples of
        ``migration_watch_verdict{criterion,status}``."""
        return [
            (c.criterion, s.value, 1.0 if c.status is s else 0.0)
            for c in self.criteria
            for s in CriterionStatus
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "provisional_outcome": self.provisional_outcome.value,
            "final": self.final,
            "computed_at": self.computed_at.isoformat(),
            "deployed_at": self.deployed_at.isoformat(),
            "verdict_at": self.verdict_at.isoformat(),
            "runs_considered": self.runs_considered,
            "not_measured": list(self.not_measured),
            "criteria": [c.to_json() for c in self.criteria],
            "settings": dict(self.settings),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        """Inverse of :meth:`to_json` (e.g. a stored verdict's payload)."""

        def ts(key: str) -> datetime:
            return datetime.fromisoformat(str(data[key])).astimezone(UTC)

        return cls(
            outcome=CriterionStatus(data["outcome"]),
            provisional_outcome=CriterionStatus(data.get("provisional_outcome", data["outcome"])),
            final=bool(data["final"]),
            computed_at=ts("computed_at"),
            deployed_at=ts("deployed_at"),
            verdict_at=ts("verdict_at"),
            criteria=tuple(CriterionResult.from_json(c) for c in data.get("criteria") or ()),
            not_measured=tuple(data.get("not_measured") or ()),
            runs_considered=int(data.get("runs_considered", 0)),
            settings=dict(data.get("settings") or {}),
        )

    def to_record(self) -> VerdictRecord:
        """What ``store.save_verdict`` takes (``outcome`` and the whole JSON as payload)."""
        return VerdictRecord(
            computed_at=self.computed_at,
            final=self.final,
            outcome=self.outcome.value,
            payload=self.to_json(),
        )

    @classmethod
    def from_record(cls, record: VerdictRecord) -> Verdict:
        return cls.from_json(record.payload)
