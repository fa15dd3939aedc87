"""The week's verdict: the checklist's Success Metrics evaluated over the whole run history.

:func:`evaluate_verdict` is pure: it takes the stored results (``store.result_history()``), the
deployment time, the verdict time and ``now``, and returns a :class:`Verdict`. Nothing here reads
a clock or the store.

* :mod:`.model`: the criteria (:data:`CRITERIA`, in report order), :class:`CriterionStatus`,
  :class:`Evidence`, :class:`CriterionResult`, :class:`Verdict` and their JSON / stored form;
* :mod:`.settings`: :class:`VerdictSettings` (expectations and tolerances, from the config);
* :mod:`.history`: the week's results grouped for the criteria, and the rules they share;
* :mod:`.criteria`: how each criterion is judged (the rules below);
* :mod:`.evaluate`: :func:`evaluate_verdict` (the week's span, pending / final, the outcome).

The week
    Only results of runs started in ``[deployed_at, end]`` count, where ``end`` is ``verdict_at``
    (or ``now`` while the week is running); once the week is over, a planned run started after
    ``verdict_at`` (the catch-up of a run missed while the daemon was down) counts too.
    The *final runs* are the last ``final_runs`` (default 2) runs of that span: with the
    default cadence, T0+120h and T0+144h. Requiring every measurement of the final runs to
    be clean asks for a stable end state (one good run after a bad one is not enough), and
    one errored final run does not leave a criterion unmeasured.

Results
    ``pass``/``fail`` are measurements; ``error`` is not (an error-only history is
    ``not_measured``, never ``met``); a subject never measured but ``skipped`` at least once
    (an optional table that does not exist) is not applicable and ignored.

Criteria (names are a contract: the ``criterion`` label of ``migration_watch_verdict``)
    ``coverage``            per table (``coverage``): every measurement of the final runs is
                            ``pass`` with ``missing_new == 0`` (100% of rows have the new column).
    ``orphans``             per table (``orphans``): final runs ``pass`` with ``orphans == 0``.
    ``indexes``             per table with expected indexes (``schema``): in the final runs every
                            expected index exists, is valid, ready and covers the new column.
    ``rls``                 per table with ``rls: true`` (``rls``): final runs ``pass``, RLS
                            enabled and at least one policy on the new column.
    ``legacy_column``       per table (``schema``): ``legacy_column_present`` in EVERY measurement
                            of the week (dropping the rollback path mid-week is not undone by
                            re-adding it), and measured in the final runs.
    ``post_deploy_writes``  per table with ``created_at`` (``post_deploy_writes``): final runs
                            ``pass`` with ``post_deploy_missing == 0``.
    ``legacy_errors``       (``legacy_errors`` log check): every measurement of the week ``pass``
                            with a zero count, and measured in the final runs.
    ``error_budget``        (``log_errors`` log check): at most ``error_budget_failed_runs``
                            (default 0) failing windows over the week, measured in the final runs.
    ``latency``             per probe (``latency``): the median of the final runs'
                            ``ratio`` (median / baseline) is at most ``1 + latency_tolerance``
                            (default 1.10).
    ``query_ratio_trend``   (``query_ratio``; ``legacy_log_ratio`` when the former has no
                            measurement): windows with a measured legacy ratio, excluding the
                            first poll's cumulative counts, are grouped by cadence day and
                            call-weighted (``legacy / (legacy + new + both)``). Met when the
                            final runs' ratio is 0, or when it is at most
                            ``max_final_legacy_ratio`` (default 0.05) AND the last measured day's
                            ratio is not above the first measured day's. Otherwise not met.

    Per criterion, over its subjects: any subject ``not_met`` → ``not_met``; else any subject
    ``not_measured`` (no measurement, only errors, or none in the final runs) →
    ``not_measured``; no applicable subject at all → ``not_measured``; else ``met``.

Before ``verdict_at``
    Every criterion is ``pending``; ``provisional`` holds what it would be if the week ended
    now (so the verdict metric never shows a mid-week ``not_met``).

Outcome
    ``pending`` before ``verdict_at``; else ``not_met`` if any criterion is not met; else
    ``not_measured`` if a *required* criterion is not measured (nobody can sign off on it);
    else ``met``, with the optional criteria that were not measured listed in ``not_measured``.
    :meth:`VerdictSettings.for_config` makes the database criteria that apply to the config
    required; log and latency criteria become required when log checks / probes are configured.
"""

from .evaluate import evaluate_verdict
from .model import (
    CRITERIA,
    CRITERION_TITLES,
    DEFAULT_REQUIRED,
    CriterionResult,
    CriterionStatus,
    Evidence,
    Verdict,
)
from .settings import VerdictSettings

__all__ = [
    "CRITERIA",
    "CRITERION_TITLES",
    "DEFAULT_REQUIRED",
    "CriterionResult",
    "CriterionStatus",
    "Evidence",
    "Verdict",
    "VerdictSettings",
    "evaluate_verdict",
]
