"""``rls``: row-level security must be enabled and reference the new column.

Policies come from ``pg_policies`` (readable by every role); a policy references a column when
its ``qual`` or ``with_check`` expression mentions it as an identifier.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..config import Config, TableConfig
from ..db import tagged
from ..results import Result, Status
from .catalog import TableInfo, absent_results

if TYPE_CHECKING:
    from . import CheckContext

__all__ = ["references", "run", "subjects"]


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
    m = cfg.migration
    t = info.table
    pairs = subjects(cfg, t)
    if not pairs:
        return []
    if not info.exists:
        return absent_results(info, pairs, "")
    with ctx.db.read_only() as cur:
        cur.execute(
            tagged(
                "SELECT policyname, cmd, qual, with_check FROM pg_catalog.pg_policies"
                " WHERE schemaname = %s AND tablename = %s ORDER BY policyname"
            ),
            (t.schema_, t.name),
        )
        rows = cur.fetchall()
    on_new = [
        r["policyname"]
        for r in rows
        if references(r["qual"], m.new_column) or references(r["with_check"], m.new_column)
    ]
    on_legacy = [
        r["policyname"]
        for r in rows
        if references(r["qual"], m.legacy_column) or references(r["with_check"], m.legacy_column)
    ]
    problems: list[str] = []
    if not info.rls_enabled:
        problems.append(f"row-level security is disabled on {t.qualified}")
    if not on_new:
        problems.append(f"no policy on {t.qualified} references {m.new_column}")
    return [
        Result(
            check="rls",
            subject=t.qualified,
            status=Status.FAIL if problems else Status.PASS,
            observed={
                "rls_enabled": info.rls_enabled,
                "policies_on_new": len(on_new),
                "policies_on_legacy": len(on_legacy),
            },
            threshold={"rls_enabled": True, "min_policies_on_new": 1},
            details={
                "policies": [r["policyname"] for r in rows],
                "policies_on_new": on_new,
                "policies_on_legacy": on_legacy,
            },
            message="; ".join(problems)
            if problems
            else f"RLS enabled, {len(on_new)} polic{'y' if len(on_new) == 1 else 'ies'}"
            f" on {m.new_column}, {len(on_legacy)} still on {m.legacy_column}",
            table=t.qualified,
        )
    ]
