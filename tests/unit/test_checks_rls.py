"""rls judged from the table's policies (no database)."""

from __future__ import annotations

from migration_watch.checks.catalog import TableInfo
from migration_watch.checks.rls import Policy, judge_rls, references
from migration_watch.config import Config, parse_config
from migration_watch.results import Status

NEW, LEGACY = "organization_id", "customer_id"
CFG: Config = parse_config(
    {
        "database": {"dsn": "postgresql://mw:pw@127.0.0.1/app"},
        "migration": {
            "name": "m",
            "legacy_column": LEGACY,
            "new_column": NEW,
            "tables": [{"name": "conversations", "rls": True}],
        },
    },
    env={},
)
Q = "public.conversations"


def info(rls_enabled: bool = True) -> TableInfo:
    return TableInfo(table=CFG.migration.tables[0], exists=True, rls_enabled=rls_enabled)


def test_references_matches_identifiers_only() -> None:
    assert references("(organization_id = current_org())", NEW)
    assert references('("organization_id" = 1)', NEW)
    assert not references("(organization_ids = 1)", NEW)
    assert not references("(x_organization_id = 1)", NEW)
    assert not references("($organization_id = 1)", NEW)
    assert not references(None, NEW) and not references("", NEW)


def test_pass_counts_policies_on_each_column() -> None:
    policies = [
        Policy("by_new", f"({NEW} = org())", None),
        Policy("by_legacy", None, f"({LEGACY} = cust())"),
        Policy("by_both", f"({NEW} = 1 OR {LEGACY} = 2)", None),
        Policy("open", "true", None),
    ]
    r = judge_rls(CFG, info(), policies)
    assert r.status is Status.PASS and (r.check, r.subject, r.table) == ("rls", Q, Q)
    assert r.observed == {"rls_enabled": True, "policies_on_new": 2, "policies_on_legacy": 2}
    assert r.threshold == {"rls_enabled": True, "min_policies_on_new": 1}
    assert r.details == {
        "policies": ["by_new", "by_legacy", "by_both", "open"],
        "policies_on_new": ["by_new", "by_both"],
        "policies_on_legacy": ["by_legacy", "by_both"],
    }
    assert r.message == f"RLS enabled, 2 policies on {NEW}, 2 still on {LEGACY}"


def test_exactly_one_policy_on_new_is_enough() -> None:
    r = judge_rls(CFG, info(), [Policy("p", None, f"{NEW} = 1")])
    assert r.status is Status.PASS
    assert r.message == f"RLS enabled, 1 policy on {NEW}, 0 still on {LEGACY}"


def test_failures() -> None:
    legacy_only = [Policy("old", f"{LEGACY} = 1", None)]
    r = judge_rls(CFG, info(), legacy_only)
    assert r.status is Status.FAIL and r.message == f"no policy on {Q} references {NEW}"
    assert r.observed["policies_on_legacy"] == 1
    off = judge_rls(CFG, info(rls_enabled=False), [Policy("p", f"{NEW} = 1", None)])
    assert off.status is Status.FAIL
    assert off.message == f"row-level security is disabled on {Q}"
    both = judge_rls(CFG, info(rls_enabled=False), [])
    assert both.message == (
        f"row-level security is disabled on {Q}; no policy on {Q} references {NEW}"
    )
