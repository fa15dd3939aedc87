"""The week's verdict: the checklist's Success Metrics evaluated over the whole run history.

:func:`evaluate_verdict` is pure: it takes the stored results (``store.result_history()``), the
deployment time, the verdict time and ``now``, and returns a :class:`Verdict`. Nothing here reads
a clock or the store.

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

from __future__ import annotations

import enum
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .results import Result, Status
from .state import StoredResult, VerdictRecord

if TYPE_CHECKING:
    from .config import Config

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

_MEASURED = (Status.PASS, Status.FAIL)
_EPSILON = 1e-9


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class VerdictSettings:
    """Thresholds and expectations of the verdict.

    ``*_tables`` name the subjects (``schema.table``) each table criterion expects; an empty
    tuple means "whatever subjects the history holds". ``required`` criteria that end
    ``not_measured`` make the outcome ``not_measured``.
    """

    tables: tuple[str, ...] = ()
    index_tables: tuple[str, ...] = ()
    rls_tables: tuple[str, ...] = ()
    post_deploy_tables: tuple[str, ...] = ()
    required: frozenset[str] = DEFAULT_REQUIRED
    final_runs: int = 2
    latency_tolerance: float = 0.10
    max_final_legacy_ratio: float = 0.05
    error_budget_failed_runs: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.required) - set(CRITERIA)
        if unknown:
            raise ValueError(f"unknown criteria in required: {sorted(unknown)}")
        if self.final_runs < 1:
            raise ValueError("final_runs must be at least 1")
        if self.latency_tolerance < 0 or self.max_final_legacy_ratio < 0:
            raise ValueError("tolerances must not be negative")
        if self.error_budget_failed_runs < 0:
            raise ValueError("error_budget_failed_runs must not be negative")

    @classmethod
    def for_config(
        cls,
        config: Config,
        *,
        log_checks: bool = False,
        probes: bool = False,
        **overrides: Any,
    ) -> VerdictSettings:
        """Expectations derived from the config's tables and enabled checks.

        ``log_checks``: log sources are configured (``legacy_errors`` and ``error_budget``
        become required); ``probes``: probe queries are configured (``latency`` required).
        """
        c = config.checks
        tables = config.migration.tables
        index_tables = tuple(t.qualified for t in tables if t.indexes and c.schema_.enabled)
        rls_tables = tuple(t.qualified for t in tables if t.rls and c.rls.enabled)
        post_tables = tuple(
            t.qualified for t in tables if t.created_at and c.post_deploy_writes.enabled
        )
        required: set[str] = set()
        if c.coverage.enabled:
            required.add("coverage")
        if c.orphans.enabled:
            required.add("orphans")
        if index_tables:
            required.add("indexes")
        if rls_tables:
            required.add("rls")
        if c.schema_.enabled and c.schema_.require_legacy_column:
            required.add("legacy_column")
        if post_tables:
            required.add("post_deploy_writes")
        if log_checks:
            required |= {"legacy_errors", "error_budget"}
        if probes:
            required.add("latency")
        values: dict[str, Any] = {
            "tables": tuple(t.qualified for t in tables),
            "index_tables": index_tables,
            "rls_tables": rls_tables,
            "post_deploy_tables": post_tables,
            "required": frozenset(required),
        }
        values.update(overrides)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {
            "required": sorted(self.required),
            "final_runs": self.final_runs,
            "latency_tolerance": self.latency_tolerance,
            "max_final_legacy_ratio": self.max_final_legacy_ratio,
            "error_budget_failed_runs": self.error_budget_failed_runs,
        }


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


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class _Item:
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
class _Outcome:
    status: CriterionStatus
    summary: str
    evidence: tuple[Evidence, ...] = ()


def _num(observed: Mapping[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = observed.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


class _History:
    """The week's results grouped by check and subject, time-ordered."""

    def __init__(self, items: Sequence[_Item], final_runs: int):
        run_ids = list(dict.fromkeys(i.run_id for i in items))  # items are in time order
        self.final_ids = frozenset(run_ids[-final_runs:])
        self.by_check: dict[str, dict[str, list[_Item]]] = {}
        for item in items:
            self.by_check.setdefault(item.result.check, {}).setdefault(
                item.result.subject, []
            ).append(item)

    def subjects(self, check: str, expected: Sequence[str]) -> dict[str, list[_Item]]:
        seen = self.by_check.get(check, {})
        if expected:
            return {s: seen.get(s, []) for s in expected}
        return dict(seen)

    def in_final(self, item: _Item) -> bool:
        return item.run_id in self.final_ids


def _not_applicable(items: Sequence[_Item]) -> bool:
    """Never measured but ``skipped`` at least once (e.g. an optional table that does not
    exist, and a run that errored on it): not applicable rather than not measured."""
    return not any(i.status in _MEASURED for i in items) and any(
        i.status is Status.SKIPPED for i in items
    )


def _combine(per_subject: Sequence[tuple[str, _Outcome]], what: str) -> _Outcome:
    """Subjects → criterion: any not met, else any not measured, else met. The evidence is
    that of the subjects that decided it."""
    if not per_subject:
        return _Outcome(CriterionStatus.NOT_MEASURED, f"no {what} to measure")
    for status in (CriterionStatus.NOT_MET, CriterionStatus.NOT_MEASURED, CriterionStatus.MET):
        deciding = [(s, o) for s, o in per_subject if o.status is status]
        if deciding:
            return _Outcome(
                status,
                "; ".join(f"{s}: {o.summary}" for s, o in deciding),
                tuple(e for _, o in deciding for e in o.evidence),
            )
    raise AssertionError("a subject outcome is met, not met or not measured")


#: Predicate over one measured result: (ok, the value it judged, a short description).
_Judge = Callable[[_Item], tuple[bool, dict[str, Any], str]]


def _unmeasured(items: Sequence[_Item]) -> _Outcome:
    errors = [i for i in items if i.status is Status.ERROR]
    if not items:
        return _Outcome(CriterionStatus.NOT_MEASURED, "no results in the week")
    last = errors[-1] if errors else items[-1]
    return _Outcome(
        CriterionStatus.NOT_MEASURED,
        f"never measured ({len(errors)} error result(s)): {last.result.message or 'no reason'}",
        (last.evidence(note=last.result.message or "could not be measured"),),
    )


def _state_subject(items: Sequence[_Item], h: _History, judge: _Judge, *, week: bool) -> _Outcome:
    """The final-runs rule (or the whole-week one, ``week=True``) for one subject."""
    measured = [i for i in items if i.status in _MEASURED]
    if not measured:
        return _unmeasured(items)
    final = [i for i in measured if h.in_final(i)]
    scope = measured if week else final
    for item in scope:
        ok, value, text = judge(item)
        if not ok:
            latest = measured[-1]
            evidence = [item.evidence(value, text)]
            if latest is not item:
                _, lvalue, ltext = judge(latest)
                evidence.append(latest.evidence(lvalue, f"latest: {ltext}"))
            when = "during the week" if week else "at the end of the week"
            return _Outcome(
                CriterionStatus.NOT_MET,
                f"{text} {when} (run {item.run_id}, {item.at.isoformat()})",
                tuple(evidence),
            )
    if not final:
        latest = measured[-1]
        _, value, text = judge(latest)
        return _Outcome(
            CriterionStatus.NOT_MEASURED,
            f"not measured in the final runs (latest measurement {latest.at.isoformat()})",
            (latest.evidence(value, f"stale: {text}"),),
        )
    latest = final[-1]
    _, value, text = judge(latest)
    summary = (
        f"{text} (latest); all {len(measured)} measurement(s) of the week clean" if week else text
    )
    return _Outcome(CriterionStatus.MET, summary, (latest.evidence(value, text),))


def _state_criterion(
    h: _History,
    check: str,
    expected: Sequence[str],
    judge: _Judge,
    what: str,
    *,
    week: bool = False,
    keep: Callable[[str, list[_Item]], bool] | None = None,
) -> _Outcome:
    per_subject: list[tuple[str, _Outcome]] = []
    for subject, items in sorted(h.subjects(check, expected).items()):
        if _not_applicable(items):
            continue  # not applicable (an optional table that does not exist)
        if keep is not None and not keep(subject, items):
            continue
        per_subject.append((subject, _state_subject(items, h, judge, week=week)))
    return _combine(per_subject, what)


def _judge_coverage(item: _Item) -> tuple[bool, dict[str, Any], str]:
    o = item.observed
    missing = _num(o, "missing_new")
    value = {k: o[k] for k in ("total", "missing_new", "backfill_ratio") if k in o}
    if missing is None:
        return False, value, item.result.message or f"coverage {item.status.value}"
    ok = item.status is Status.PASS and missing == 0
    total = _num(o, "total")
    text = (
        f"all {int(total or 0)} rows have the new column"
        if ok
        else f"{int(missing)} of {int(total or 0)} rows lack the new column"
    )
    return ok, value, text


def _judge_orphans(item: _Item) -> tuple[bool, dict[str, Any], str]:
    orphans = _num(item.observed, "orphans")
    if orphans is None:
        return False, {}, item.result.message or f"orphans {item.status.value}"
    ok = item.status is Status.PASS and orphans == 0
    return ok, {"orphans": int(orphans)}, f"{int(orphans)} orphaned rows"


def _judge_indexes(item: _Item) -> tuple[bool, dict[str, Any], str]:
    indexes = item.observed.get("indexes")
    if not isinstance(indexes, Mapping):
        return False, {}, item.result.message or "indexes not measured"
    problems = []
    for name, flags in sorted(indexes.items()):
        flags = flags if isinstance(flags, Mapping) else {}
        for flag, text in (
            ("exists", "missing"),
            ("valid", "invalid"),
            ("ready", "not ready"),
            ("covers_new", "does not cover the new column"),
        ):
            if not flags.get(flag):
                problems.append(f"{name} {text}")
                break
    value = {"indexes": {k: dict(v) for k, v in indexes.items() if isinstance(v, Mapping)}}
    if problems:
        return False, value, ", ".join(problems)
    return True, value, f"{len(indexes)} index(es) present and valid"


def _judge_rls(item: _Item) -> tuple[bool, dict[str, Any], str]:
    o = item.observed
    if "rls_enabled" not in o:
        return False, {}, item.result.message or f"rls {item.status.value}"
    enabled = bool(o.get("rls_enabled"))
    on_new = int(_num(o, "policies_on_new") or 0)
    value = {k: o[k] for k in ("rls_enabled", "policies_on_new", "policies_on_legacy") if k in o}
    ok = item.status is Status.PASS and enabled and on_new >= 1
    if not enabled:
        return False, value, "row-level security disabled"
    return ok, value, f"RLS enabled, {on_new} policy(ies) on the new column"


def _judge_legacy_column(item: _Item) -> tuple[bool, dict[str, Any], str]:
    present = item.observed.get("legacy_column_present")
    if present is None:
        return False, {}, item.result.message or "legacy column not measured"
    value = {"legacy_column_present": bool(present)}
    return bool(present), value, "legacy column present" if present else "legacy column dropped"


def _judge_post_deploy(item: _Item) -> tuple[bool, dict[str, Any], str]:
    post = _num(item.observed, "post_deploy_missing")
    if post is None:
        return False, {}, item.result.message or f"post_deploy_writes {item.status.value}"
    ok = item.status is Status.PASS and post == 0
    return (
        ok,
        {"post_deploy_missing": int(post)},
        f"{int(post)} rows written after the deploy lack the new column",
    )


def _judge_legacy_errors(item: _Item) -> tuple[bool, dict[str, Any], str]:
    count = _num(item.observed, "legacy_errors", "legacy_error", "count")
    value = {} if count is None else {"legacy_errors": int(count)}
    ok = item.status is Status.PASS and not count
    if count is None:
        text = "no legacy-column errors" if ok else (item.result.message or "legacy errors seen")
    else:
        text = f"{int(count)} legacy-column error(s) in the window"
    return ok, value, text


def _error_budget(h: _History, settings: VerdictSettings) -> _Outcome:
    per_subject: list[tuple[str, _Outcome]] = []
    for subject, items in sorted(h.subjects("log_errors", ()).items()):
        if _not_applicable(items):
            continue
        measured = [i for i in items if i.status in _MEASURED]
        if not measured:
            per_subject.append((subject, _unmeasured(items)))
            continue
        failed = [i for i in measured if i.status is Status.FAIL]
        errors = [_num(i.observed, "errors", "error", "count") for i in measured]
        total = sum(e for e in errors if e is not None)
        counted = any(e is not None for e in errors)
        tail = f", {int(total)} error line(s) in total" if counted else ""
        budget = settings.error_budget_failed_runs
        if len(failed) > budget:
            per_subject.append(
                (
                    subject,
                    _Outcome(
                        CriterionStatus.NOT_MET,
                        f"{len(failed)} window(s) over the error budget (allowed {budget}){tail}",
                        tuple(
                            i.evidence(dict(i.observed), i.result.message)
                            for i in _first_and_last(failed)
                        ),
                    ),
                )
            )
            continue
        if not any(h.in_final(i) for i in measured):
            per_subject.append(
                (
                    subject,
                    _Outcome(
                        CriterionStatus.NOT_MEASURED,
                        "not measured in the final runs",
                        (measured[-1].evidence(dict(measured[-1].observed)),),
                    ),
                )
            )
            continue
        per_subject.append(
            (
                subject,
                _Outcome(
                    CriterionStatus.MET,
                    f"{len(failed)} of {len(measured)} window(s) over the error budget{tail}",
                    (measured[-1].evidence(dict(measured[-1].observed)),),
                ),
            )
        )
    return _combine(per_subject, "log error measurements")


def _first_and_last(items: Sequence[_Item]) -> tuple[_Item, ...]:
    return (items[0],) if len(items) == 1 else (items[0], items[-1])


def _latency_ratio(item: _Item) -> float | None:
    o = item.observed
    ratio = _num(o, "ratio")
    if ratio is not None:
        return ratio
    median, baseline = _num(o, "median_seconds"), _num(o, "baseline_seconds")
    if median is not None and baseline:
        return median / baseline
    return None


def _latency(h: _History, settings: VerdictSettings) -> _Outcome:
    limit = 1 + settings.latency_tolerance
    per_subject: list[tuple[str, _Outcome]] = []
    for probe, items in sorted(h.subjects("latency", ()).items()):
        if _not_applicable(items):
            continue
        measured = [i for i in items if i.status in _MEASURED]
        final = [i for i in measured if h.in_final(i)]
        ratios: list[float] = []
        for i in final:
            r = _latency_ratio(i)
            if r is not None:
                ratios.append(r)
            elif i.status is Status.FAIL:
                ratios.append(float("inf"))
        if not measured:
            per_subject.append((probe, _unmeasured(items)))
            continue
        if not ratios:
            latest = measured[-1]
            per_subject.append(
                (
                    probe,
                    _Outcome(
                        CriterionStatus.NOT_MEASURED,
                        "no latency ratio in the final runs",
                        (latest.evidence(dict(latest.observed)),),
                    ),
                )
            )
            continue
        median = statistics.median(ratios)
        worst = max(final, key=lambda i: _latency_ratio(i) or 0.0)
        evidence = (worst.evidence(dict(worst.observed), "slowest in the final runs"),)
        if median > limit + _EPSILON:
            status, text = CriterionStatus.NOT_MET, f"median ratio {median:.2f}x > {limit:.2f}x"
        else:
            status, text = CriterionStatus.MET, f"median ratio {median:.2f}x ≤ {limit:.2f}x"
        per_subject.append((probe, _Outcome(status, f"{text} over {len(ratios)} run(s)", evidence)))
    return _combine(per_subject, "probes")


_Point = tuple[_Item, tuple[float, float]]


def _ratio_weights(item: _Item) -> tuple[float, float] | None:
    """(legacy weight, total weight): call counts when present, else (ratio, 1)."""
    o = item.observed
    if o.get("cumulative"):
        return None
    ratio = _num(o, "legacy_ratio")
    if ratio is None:
        return None
    legacy, new, both = _num(o, "legacy"), _num(o, "new"), _num(o, "both")
    if legacy is not None and new is not None:
        total = legacy + new + (both or 0.0)
        if total > 0:
            return legacy, total
    return ratio, 1.0


def _weighted(points: Iterable[_Point]) -> float | None:
    legacy = total = 0.0
    for _, (lw, tw) in points:
        legacy += lw
        total += tw
    return None if total <= 0 else legacy / total


def _ratio_points(h: _History, check: str) -> tuple[str, list[_Item], list[_Point]]:
    items = sorted(
        (i for per_subject in h.by_check.get(check, {}).values() for i in per_subject),
        key=lambda i: (i.at, i.run_id),
    )
    points = [
        (i, w) for i in items if i.status in _MEASURED and (w := _ratio_weights(i)) is not None
    ]
    return check, items, points


def _query_ratio_trend(h: _History, settings: VerdictSettings, deployed_at: datetime) -> _Outcome:
    check, items, points = _ratio_points(h, "query_ratio")
    if not points:
        log_check, log_items, log_points = _ratio_points(h, "legacy_log_ratio")
        if log_points:
            check, items, points = log_check, log_items, log_points
        elif not items and log_items:
            items = log_items
    if not points:
        if not items:
            return _Outcome(CriterionStatus.NOT_MEASURED, "no query ratio results in the week")
        return _unmeasured(items)
    by_day: dict[int, list[_Point]] = {}
    for p in points:
        by_day.setdefault(1 + (p[0].at - deployed_at) // timedelta(hours=24), []).append(p)
    days = sorted(by_day)
    first_day, last_day = days[0], days[-1]
    first = _weighted(by_day[first_day])
    last = _weighted(by_day[last_day])
    final_points = [p for p in points if h.in_final(p[0])]
    final = _weighted(final_points)
    latest = points[-1][0]
    value = {
        "source": check,
        "first_day": first_day,
        "first_day_ratio": first,
        "last_day": last_day,
        "last_day_ratio": last,
        "final_ratio": final,
        "threshold": settings.max_final_legacy_ratio,
    }
    evidence = (
        latest.evidence({**value}, f"latest window (day {last_day})"),
        by_day[first_day][0][0].evidence({**value}, f"first measured day (day {first_day})"),
    )
    assert first is not None and last is not None  # every point has a positive total weight
    trend = f"day {first_day}: {first:.1%} → day {last_day}: {last:.1%}"
    if final is None:
        return _Outcome(
            CriterionStatus.NOT_MEASURED,
            f"no measured window at the end of the week ({trend})",
            evidence,
        )
    if final <= _EPSILON:
        return _Outcome(CriterionStatus.MET, f"legacy ratio at zero at the end ({trend})", evidence)
    if final > settings.max_final_legacy_ratio + _EPSILON:
        return _Outcome(
            CriterionStatus.NOT_MET,
            f"final legacy ratio {final:.1%} above {settings.max_final_legacy_ratio:.1%} ({trend})",
            evidence,
        )
    if last > first + _EPSILON:
        return _Outcome(CriterionStatus.NOT_MET, f"legacy ratio rising ({trend})", evidence)
    return _Outcome(
        CriterionStatus.MET,
        f"final legacy ratio {final:.1%} ≤ {settings.max_final_legacy_ratio:.1%}, "
        f"not rising ({trend})",
        evidence,
    )


def _evaluate(h: _History, settings: VerdictSettings, deployed_at: datetime) -> dict[str, _Outcome]:
    s = settings
    return {
        "coverage": _state_criterion(h, "coverage", s.tables, _judge_coverage, "tables"),
        "orphans": _state_criterion(h, "orphans", s.tables, _judge_orphans, "tables"),
        "indexes": _state_criterion(
            h,
            "schema",
            s.index_tables,
            _judge_indexes,
            "expected indexes",
            keep=lambda _s, items: bool(s.index_tables) or _has_indexes(items),
        ),
        "rls": _state_criterion(h, "rls", s.rls_tables, _judge_rls, "tables with RLS"),
        "legacy_column": _state_criterion(
            h, "schema", s.tables, _judge_legacy_column, "tables", week=True
        ),
        "post_deploy_writes": _state_criterion(
            h, "post_deploy_writes", s.post_deploy_tables, _judge_post_deploy, "tables"
        ),
        "legacy_errors": _state_criterion(
            h, "legacy_errors", (), _judge_legacy_errors, "legacy error measurements", week=True
        ),
        "error_budget": _error_budget(h, s),
        "latency": _latency(h, s),
        "query_ratio_trend": _query_ratio_trend(h, s, deployed_at),
    }


def _has_indexes(items: Sequence[_Item]) -> bool:
    return any(
        isinstance(i.observed.get("indexes"), Mapping) and i.observed["indexes"] for i in items
    )


def evaluate_verdict(
    history: Iterable[StoredResult],
    *,
    now: datetime,
    deployed_at: datetime,
    verdict_at: datetime,
    settings: VerdictSettings | None = None,
) -> Verdict:
    """Evaluate every criterion over the week's stored results; see the module docstring.

    ``history`` is ``store.result_history()`` (results of finished runs, any order); results of
    runs started before ``deployed_at`` or after the end of the week are ignored.
    """
    settings = settings if settings is not None else VerdictSettings()
    now = _aware(now, "now")
    t0 = _aware(deployed_at, "deployed_at")
    end_of_week = _aware(verdict_at, "verdict_at")
    if end_of_week <= t0:
        raise ValueError("verdict_at must be after deployed_at")
    final = now >= end_of_week
    end = end_of_week if final else now
    stored = list(history)
    planned = {r.run_id for r in stored if r.planned_index is not None}
    items = sorted(
        (_Item(r.run_id, _aware(r.run_started_at, "run_started_at"), r.result) for r in stored),
        key=lambda i: (i.at, i.run_id),
    )
    items = [i for i in items if t0 <= i.at and (i.at <= end or (final and i.run_id in planned))]
    h = _History(items, settings.final_runs)
    outcomes = _evaluate(h, settings, t0)
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
