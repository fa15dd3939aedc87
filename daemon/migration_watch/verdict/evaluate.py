"""The verdict as of ``now``: :func:`evaluate_verdict` (pure: no clock, no store)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from ..clock import require_aware
from ..state import StoredResult
from .criteria import evaluate_criteria
from .history import History, Item
from .model import CRITERIA, CriterionResult, CriterionStatus, Verdict
from .settings import VerdictSettings

__all__ = ["evaluate_verdict"]


def evaluate_verdict(
    history: Iterable[StoredResult],
    *,
    now: datetime,
    deployed_at: datetime,
    verdict_at: datetime,
    settings: VerdictSettings | None = None,
) -> Verdict:
    """Evaluate every criterion over the week's stored results; see the package docstring
    (:mod:`migration_watch.verdict`).

    ``history`` is ``store.result_history()`` (results of finished runs, any order); results of
    runs started before ``deployed_at`` or after the end of the week are ignored.
    """
    settings = settings if settings is not None else VerdictSettings()
    now = require_aware(now, "now")
    t0 = require_aware(deployed_at, "deployed_at")
    end_of_week = require_aware(verdict_at, "verdict_at")
    if end_of_week <= t0:
        raise ValueError("verdict_at must be after deployed_at")
    final = now >= end_of_week
    end = end_of_week if final else now
    stored = list(history)
    planned = {r.run_id for r in stored if r.planned_index is not None}
    items = sorted(
        (
            Item(r.run_id, require_aware(r.run_started_at, "run_started_at"), r.result)
            for r in stored
        ),
        key=lambda i: (i.at, i.run_id),
    )
    items = [i for i in items if t0 <= i.at and (i.at <= end or (final and i.run_id in planned))]
    h = History(items, settings.final_runs)
    outcomes = evaluate_criteria(h, settings, t0)
    criteria: list[CriterionResult] = []
    for name in CRITERIA:
        o = outcomes[name]
        criteria.append(
            CriterionResult(
                criterion=name,
                status=o.status if final else CriterionStatus.PENDING,
                provisional=o.status,
                required=name in settings.required,
                summary=o.summary,
                evidence=o.evidence,
            )
        )
    provisional = _outcome(criteria)
    not_measured = tuple(
        c.criterion for c in criteria if c.provisional is CriterionStatus.NOT_MEASURED
    )
    return Verdict(
        outcome=provisional if final else CriterionStatus.PENDING,
        provisional_outcome=provisional,
        final=final,
        computed_at=now,
        deployed_at=t0,
        verdict_at=end_of_week,
        criteria=tuple(criteria),
        not_measured=not_measured,
        runs_considered=len({i.run_id for i in items}),
        settings=settings.to_json(),
    )


def _outcome(criteria: Sequence[CriterionResult]) -> CriterionStatus:
    states = [c.provisional for c in criteria]
    if CriterionStatus.NOT_MET in states:
        return CriterionStatus.NOT_MET
    if any(c.required and c.provisional is CriterionStatus.NOT_MEASURED for c in criteria):
        return CriterionStatus.NOT_MEASURED
    return CriterionStatus.MET
