"""``rls``: row-level security must be enabled and reference the new column.

Policies come from ``pg_policies`` (readable by every role); a policy references a column when
its ``qual`` or ``with_check`` expression mentions it as an identifier.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg.rows import DictRow

from ..config import Config, TableConfig
from ..db import tagged
from ..results import Result
from .catalog import TableInfo, absent_results

if TYPE_CHECKING:
    from .suite import CheckContext

__all__ = ["Policy", "judge_rls", "measure_policies", "references", "run", "subjects"]


def subjects(cfg: Config, table: TableConfig) -> list[tuple[str, str]]:
    return [("rls", table.qualified)] if cfg.checks.rls.enabled and table.rls else []


def references(expression: str | None, column: str) -> bool:
    """True when ``column`` appears as an identifier (bare or quoted) in a policy expression."""
    if not expression:
        return False
    pattern = rf'(?<![\w$]){re.escape(column)}(?![\w$])|"{re.escape(column)}"'
    return re.search(pattern, expression) is not None


def run(ctx: CheckContext, info: TableInfo) -> list[Result]:
    cfg = ctx.config
    pairs = subjects(cfg, info.table)
    if not pairs:
        return []
    if not info.exists:
        return absent_results(info, pairs, "")
    with ctx.db.read_only() as cur:
        policies = measure_policies(cur, info.table)
    return [judge_rls(cfg, info, policies)]


# --------------------------------------------------------------------------- measure


@dataclass(frozen=True)
class Policy:
    """One row of ``pg_policies`` for the table."""

    name: str
    qual: str | None
    with_check: str | None

    def references(self, column: str) -> bool:
        return references(self.qual, column) or references(self.with_check, column)


def measure_policies(cur: psycopg.Cursor[DictRow], table: TableConfig) -> list[Policy]:
    """The table's policies, by name."""
    cur.execute(
        tagged(
            "SELECT policyname, cmd, qual, with_check FROM pg_catalog.pg_policies"
            " WHERE schemaname = %s AND tablename = %s ORDER BY policyname"
        ),
        (table.schema_, table.name),
    )
    return [Policy(r["policyname"], r["qual"], r["with_check"]) for r in cur.fetchall()]


# --------------------------------------------------------------------------- judge (pure)


def judge_rls(cfg: Config, info: TableInfo, policies: Sequence[Policy]) -> Result:
    """``pass`` when RLS is enabled and at least one policy references the new column."""
    m = cfg.migration
    q = info.table.qualified
    on_new = [p.name for p in policies if p.references(m.new_column)]
    on_legacy = [p.name for p in policies if p.references(m.legacy_column)]
    problems: list[str] = []
    if not info.rls_enabled:
        problems.append(f"row-level security is disabled on {q}")
    if not on_new:
        problems.append(f"no policy on {q} references {m.new_column}")
    return Result.pass_if(
        not problems,
        "rls",
        q,
        "; ".join(problems)
        if problems
        else f"RLS enabled, {len(on_new)} polic{'y' if len(on_new) == 1 else 'ies'}"
        f" on {m.new_column}, {len(on_legacy)} still on {m.legacy_column}",
        observed={
            "rls_enabled": info.rls_enabled,
            "policies_on_new": len(on_new),
            "policies_on_legacy": len(on_legacy),
        },
        threshold={"rls_enabled": True, "min_policies_on_new": 1},
        details={
            "policies": [p.name for p in policies],
            "policies_on_new": on_new,
            "policies_on_legacy": on_legacy,
        },
        table=q,
    )
