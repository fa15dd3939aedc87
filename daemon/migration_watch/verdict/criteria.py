"""How each criterion is judged over the :class:`~.history.History` (the rules are in the
package docstring); :func:`evaluate_criteria` returns every criterion's outcome."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from ..results import Status
from .history import (
    EPSILON,
    MEASURED,
    History,
    Item,
    Outcome,
    combine,
    first_and_last,
    latency_ratio,
    not_applicable,
    num,
    unmeasured,
)
from .model import CriterionStatus
from .settings import VerdictSettings

__all__ = ["evaluate_criteria"]

#: Predicate over one measured result: (ok, the value it judged, a short description).
_Judge = Callable[[Item], tuple[bool, dict[str, Any], str]]


def _state_subject(items: Sequence[Item], h: History, judge: _Judge, *, week: bool) -> Outcome:
    """The final-runs rule (or the whole-week one, ``week=True``) for one subject."""
    measured = [i for i in items if i.status in MEASURED]
    if not measured:
        return unmeasured(items)
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
            return Outcome(
                CriterionStatus.NOT_MET,
                f"{text} {when} (run {item.run_id}, {item.at.isoformat()})",
                tuple(evidence),
            )
    if not final:
        latest = measured[-1]
        _, value, text = judge(latest)
        return Outcome(
            CriterionStatus.NOT_MEASURED,
            f"not measured in the final runs (latest measurement {latest.at.isoformat()})",
            (latest.evidence(value, f"stale: {text}"),),
        )
    latest = final[-1]
    _, value, text = judge(latest)
    summary = (
        f"{text} (latest); all {len(measured)} measurement(s) of the week clean" if week else text
    )
    return Outcome(CriterionStatus.MET, summary, (latest.evidence(value, text),))


def _state_criterion(
    h: History,
    check: str,
    expected: Sequence[str],
    judge: _Judge,
    what: str,
    *,
    week: bool = False,
    keep: Callable[[str, list[Item]], bool] | None = None,
) -> Outcome:
    per_subject: list[tuple[str, Outcome]] = []
    for subject, items in sorted(h.subjects(check, expected).items()):
        if not_applicable(items):
            continue  # not applicable (an optional table that does not exist)
        if keep is not None and not keep(subject, items):
            continue
        per_subject.append((subject, _state_subject(items, h, judge, week=week)))
    return combine(per_subject, what)


def _judge_coverage(item: Item) -> tuple[bool, dict[str, Any], str]:
    o = item.observed
    missing = num(o, "missing_new")
    value = {k: o[k] for k in ("total", "missing_new", "backfill_ratio") if k in o}
    if missing is None:
        return False, value, item.result.message or f"coverage {item.status.value}"
    ok = item.status is Status.PASS and missing == 0
    total = num(o, "total")
    text = (
        f"all {int(total or 0)} rows have the new column"
        if ok
        else f"{int(missing)} of {int(total or 0)} rows lack the new column"
    )
    return ok, value, text


def _judge_orphans(item: Item) -> tuple[bool, dict[str, Any], str]:
    orphans = num(item.observed, "orphans")
    if orphans is None:
        return False, {}, item.result.message or f"orphans {item.status.value}"
    ok = item.status is Status.PASS and orphans == 0
    return ok, {"orphans": int(orphans)}, f"{int(orphans)} orphaned rows"


def _judge_indexes(item: Item) -> tuple[bool, dict[str, Any], str]:
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


def _judge_rls(item: Item) -> tuple[bool, dict[str, Any], str]:
    o = item.observed
    if "rls_enabled" not in o:
        return False, {}, item.result.message or f"rls {item.status.value}"
    enabled = bool(o.get("rls_enabled"))
    on_new = int(num(o, "policies_on_new") or 0)
    value = {k: o[k] for k in ("rls_enabled", "policies_on_new", "policies_on_legacy") if k in o}
    ok = item.status is Status.PASS and enabled and on_new >= 1
    if not enabled:
        return False, value, "row-level security disabled"
    return ok, value, f"RLS enabled, {on_new} policy(ies) on the new column"


def _judge_legacy_column(item: Item) -> tuple[bool, dict[str, Any], str]:
    present = item.observed.get("legacy_column_present")
    if present is None:
        return False, {}, item.result.message or "legacy column not measured"
    value = {"legacy_column_present": bool(present)}
    return bool(present), value, "legacy column present" if present else "legacy column dropped"


def _judge_post_deploy(item: Item) -> tuple[bool, dict[str, Any], str]:
    post = num(item.observed, "post_deploy_missing")
    if post is None:
        return False, {}, item.result.message or f"post_deploy_writes {item.status.value}"
    ok = item.status is Status.PASS and post == 0
    return (
        ok,
        {"post_deploy_missing": int(post)},
        f"{int(post)} rows written after the deploy lack the new column",
    )


def _judge_legacy_errors(item: Item) -> tuple[bool, dict[str, Any], str]:
    count = num(item.observed, "legacy_errors", "legacy_error", "count")
    value = {} if count is None else {"legacy_errors": int(count)}
    ok = item.status is Status.PASS and not count
    if count is None:
        text = "no legacy-column errors" if ok else (item.result.message or "legacy errors seen")
    else:
        text = f"{int(count)} legacy-column error(s) in the window"
    return ok, value, text


def _error_budget(h: History, settings: VerdictSettings) -> Outcome:
    per_subject: list[tuple[str, Outcome]] = []
    for subject, items in sorted(h.subjects("log_errors", ()).items()):
        if not_applicable(items):
            continue
        measured = [i for i in items if i.status in MEASURED]
        if not measured:
            per_subject.append((subject, unmeasured(items)))
            continue
        failed = [i for i in measured if i.status is Status.FAIL]
        errors = [num(i.observed, "errors", "error", "count") for i in measured]
        total = sum(e for e in errors if e is not None)
        counted = any(e is not None for e in errors)
        tail = f", {int(total)} error line(s) in total" if counted else ""
        budget = settings.error_budget_failed_runs
        if len(failed) > budget:
            per_subject.append(
                (
                    subject,
                    Outcome(
                        CriterionStatus.NOT_MET,
                        f"{len(failed)} window(s) over the error budget (allowed {budget}){tail}",
                        tuple(
                            i.evidence(dict(i.observed), i.result.message)
                            for i in first_and_last(failed)
                        ),
                    ),
                )
            )
            continue
        if not any(h.in_final(i) for i in measured):
            per_subject.append(
                (
                    subject,
                    Outcome(
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
                Outcome(
                    CriterionStatus.MET,
                    f"{len(failed)} of {len(measured)} window(s) over the error budget{tail}",
                    (measured[-1].evidence(dict(measured[-1].observed)),),
                ),
            )
        )
    return combine(per_subject, "log error measurements")


def _latency(h: History, settings: VerdictSettings) -> Outcome:
    limit = 1 + settings.latency_tolerance
    per_subject: list[tuple[str, Outcome]] = []
    for probe, items in sorted(h.subjects("latency", ()).items()):
        if not_applicable(items):
            continue
        measured = [i for i in items if i.status in MEASURED]
        final = [i for i in measured if h.in_final(i)]
        ratios: list[float] = []
        for i in final:
            r = latency_ratio(i.observed)
            if r is not None:
                ratios.append(r)
            elif i.status is Status.FAIL:
                ratios.append(float("inf"))
        if not measured:
            per_subject.append((probe, unmeasured(items)))
            continue
        if not ratios:
            latest = measured[-1]
            per_subject.append(
                (
                    probe,
                    Outcome(
                        CriterionStatus.NOT_MEASURED,
                        "no latency ratio in the final runs",
                        (latest.evidence(dict(latest.observed)),),
                    ),
                )
            )
            continue
        median = statistics.median(ratios)
        worst = max(final, key=lambda i: latency_ratio(i.observed) or 0.0)
        evidence = (worst.evidence(dict(worst.observed), "slowest in the final runs"),)
        if median > limit + EPSILON:
            status, text = CriterionStatus.NOT_MET, f"median ratio {median:.2f}x > {limit:.2f}x"
        else:
            status, text = CriterionStatus.MET, f"median ratio {median:.2f}x ≤ {limit:.2f}x"
        per_subject.append((probe, Outcome(status, f"{text} over {len(ratios)} run(s)", evidence)))
    return combine(per_subject, "probes")


_Point = tuple[Item, tuple[float, float]]


def _ratio_weights(item: Item) -> tuple[float, float] | None:
    """(legacy weight, total weight): call counts when present, else (ratio, 1)."""
    o = item.observed
    if o.get("cumulative"):
        return None
    ratio = num(o, "legacy_ratio")
    if ratio is None:
        return None
    legacy, new, both = num(o, "legacy"), num(o, "new"), num(o, "both")
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


def _ratio_points(h: History, check: str) -> tuple[str, list[Item], list[_Point]]:
    items = sorted(
        (i for per_subject in h.by_check.get(check, {}).values() for i in per_subject),
        key=lambda i: (i.at, i.run_id),
    )
    points = [
        (i, w) for i in items if i.status in MEASURED and (w := _ratio_weights(i)) is not None
    ]
    return check, items, points


def _query_ratio_trend(h: History, settings: VerdictSettings, deployed_at: datetime) -> Outcome:
    check, items, points = _ratio_points(h, "query_ratio")
    if not points:
        log_check, log_items, log_points = _ratio_points(h, "legacy_log_ratio")
        if log_points:
            check, items, points = log_check, log_items, log_points
        elif not items and log_items:
            items = log_items
    if not points:
        if not items:
            return Outcome(CriterionStatus.NOT_MEASURED, "no query ratio results in the week")
        return unmeasured(items)
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
        return Outcome(
            CriterionStatus.NOT_MEASURED,
            f"no measured window at the end of the week ({trend})",
            evidence,
        )
    if final <= EPSILON:
        return Outcome(CriterionStatus.MET, f"legacy ratio at zero at the end ({trend})", evidence)
    if final > settings.max_final_legacy_ratio + EPSILON:
        return Outcome(
            CriterionStatus.NOT_MET,
            f"final legacy ratio {final:.1%} above {settings.max_final_legacy_ratio:.1%} ({trend})",
            evidence,
        )
    if last > first + EPSILON:
        return Outcome(CriterionStatus.NOT_MET, f"legacy ratio rising ({trend})", evidence)
    return Outcome(
        CriterionStatus.MET,
        f"final legacy ratio {final:.1%} ≤ {settings.max_final_legacy_ratio:.1%}, "
        f"not rising ({trend})",
        evidence,
    )


def evaluate_criteria(
    h: History, settings: VerdictSettings, deployed_at: datetime
) -> dict[str, Outcome]:
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


def _has_indexes(items: Sequence[Item]) -> bool:
    return any(
        isinstance(i.observed.get("indexes"), Mapping) and i.observed["indexes"] for i in items
    )
