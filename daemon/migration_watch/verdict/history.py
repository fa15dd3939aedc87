"""The week's results as the criteria read them: :class:`Item` (one stored result),
:class:`History` (grouped by check and subject, with the final runs), :class:`Outcome`
(a criterion's or a subject's status, summary and evidence) and the rules shared by every
criterion (not applicable, never measured, subjects combined)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..results import Result, Status
from .model import CriterionStatus, Evidence

__all__ = [
    "EPSILON",
    "MEASURED",
    "History",
    "Item",
    "Outcome",
    "combine",
    "first_and_last",
    "latency_ratio",
    "not_applicable",
    "num",
    "unmeasured",
]

MEASURED = (Status.PASS, Status.FAIL)
EPSILON = 1e-9


@dataclass(frozen=True)
class Item:
    run_id: int
    at: datetime
    result: Result

    @property
    def status(self) -> Status:
        return Status(self.result.status)

    @property
    def observed(self) -> Mapping[str, Any]:
        return self.result.observed or {}

    def evidence(self, value: Mapping[str, Any] | None = None, note: str = "") -> Evidence:
        return Evidence(
            check=self.result.check,
            subject=self.result.subject,
            run_id=self.run_id,
            at=self.at,
            status=self.status.value,
            value=dict(value) if value is not None else {},
            note=note or self.result.message,
        )


@dataclass(frozen=True)
class Outcome:
    status: CriterionStatus
    summary: str
    evidence: tuple[Evidence, ...] = ()


def num(observed: Mapping[str, Any], *keys: str) -> float | None:
    """The first of ``keys`` whose value is a number (a bool is not), as a float."""
    for key in keys:
        value = observed.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def latency_ratio(observed: Mapping[str, Any]) -> float | None:
    """A latency result's ``ratio`` (median / baseline), computed when only the two are there."""
    ratio = num(observed, "ratio")
    if ratio is not None:
        return ratio
    median, baseline = num(observed, "median_seconds"), num(observed, "baseline_seconds")
    if median is not None and baseline:
        return median / baseline
    return None


class History:
    """The week's results grouped by check and subject, time-ordered."""

    def __init__(self, items: Sequence[Item], final_runs: int):
        run_ids = list(dict.fromkeys(i.run_id for i in items))  # items are in time order
        self.final_ids = frozenset(run_ids[-final_runs:])
        self.by_check: dict[str, dict[str, list[Item]]] = {}
        for item in items:
            self.by_check.setdefault(item.result.check, {}).setdefault(
                item.result.subject, []
            ).append(item)

    def subjects(self, check: str, expected: Sequence[str]) -> dict[str, list[Item]]:
        seen = self.by_check.get(check, {})
        if expected:
            return {s: seen.get(s, []) for s in expected}
        return dict(seen)

    def in_final(self, item: Item) -> bool:
        return item.run_id in self.final_ids


def not_applicable(items: Sequence[Item]) -> bool:
    """Never measured but ``skipped`` at least once (e.g. an optional table that does not
    exist, and a run that errored on it): not applicable rather than not measured."""
    return not any(i.status in MEASURED for i in items) and any(
        i.status is Status.SKIPPED for i in items
    )


def combine(per_subject: Sequence[tuple[str, Outcome]], what: str) -> Outcome:
    """Subjects → criterion: any not met, else any not measured, else met. The evidence is
    that of the subjects that decided it."""
    if not per_subject:
        return Outcome(CriterionStatus.NOT_MEASURED, f"no {what} to measure")
    for status in (CriterionStatus.NOT_MET, CriterionStatus.NOT_MEASURED, CriterionStatus.MET):
        deciding = [(s, o) for s, o in per_subject if o.status is status]
        if deciding:
            return Outcome(
                status,
                "; ".join(f"{s}: {o.summary}" for s, o in deciding),
                tuple(e for _, o in deciding for e in o.evidence),
            )
    raise AssertionError("a subject outcome is met, not met or not measured")


def unmeasured(items: Sequence[Item]) -> Outcome:
    errors = [i for i in items if i.status is Status.ERROR]
    if not items:
        return Outcome(CriterionStatus.NOT_MEASURED, "no results in the week")
    last = errors[-1] if errors else items[-1]
    return Outcome(
        CriterionStatus.NOT_MEASURED,
        f"never measured ({len(errors)} error result(s)): {last.result.message or 'no reason'}",
        (last.evidence(note=last.result.message or "could not be measured"),),
    )


def first_and_last(items: Sequence[Item]) -> tuple[Item, ...]:
    return (items[0],) if len(items) == 1 else (items[0], items[-1])
