"""What the catalogs mean: RLS visibility, primary key, the IS NULL index, absent tables."""

from __future__ import annotations

from typing import Any

import pytest

from migration_watch.checks.catalog import (
    IndexInfo,
    TableAccess,
    TableInfo,
    absent_results,
    primary_key,
    rls_applies,
    rows_hidden_because,
)
from migration_watch.config import TableConfig
from migration_watch.results import Status

TABLE = TableConfig(name="conversations")


def access(**over: Any) -> TableAccess:
    fields: dict[str, Any] = {
        "role": "mw",
        "can_select": True,
        "rls_enabled": True,
        "rls_forced": False,
        "owned": False,
        "exempt": False,
    }
    fields.update(over)
    return TableAccess(**fields)


@pytest.mark.parametrize(
    ("over", "applies"),
    [
        ({}, True),
        ({"rls_enabled": False}, False),
        ({"exempt": True}, False),  # superuser or BYPASSRLS
        ({"owned": True}, False),  # the owner, RLS not forced
        ({"owned": True, "rls_forced": True}, True),
        ({"rls_forced": True}, True),
    ],
)
def test_rls_applies(over: dict[str, Any], applies: bool) -> None:
    assert rls_applies(access(**over)) is applies


def test_rows_hidden_because() -> None:
    no_select = rows_hidden_because(TABLE, access(can_select=False), None)
    assert no_select == (
        "permission denied: role mw lacks SELECT on public.conversations"
        " (see README: least privilege)"
    )
    hidden = rows_hidden_because(TABLE, access(), 0)
    assert hidden is not None and hidden.startswith(
        "row-level security on public.conversations hides rows from role mw:"
    )
    assert rows_hidden_because(TABLE, access(), None) == hidden  # not looked up: not proven open
    assert rows_hidden_because(TABLE, access(), 1) is None  # a USING (true) policy
    assert rows_hidden_because(TABLE, access(rls_enabled=False), None) is None
    assert rows_hidden_because(TABLE, access(exempt=True), 0) is None


def test_primary_key_config_wins_only_when_the_column_exists() -> None:
    cols = {"id": "uuid", "uid": "text"}
    assert primary_key(TABLE, cols, "id") == "id"
    assert primary_key(TABLE, cols, None) is None
    assert primary_key(TableConfig(name="t", primary_key="uid"), cols, "id") == "uid"
    assert primary_key(TableConfig(name="t", primary_key="gone"), cols, "id") is None


def _idx(name: str, keys: tuple[int, ...], predicate: str | None = None, **kw: bool) -> IndexInfo:
    return IndexInfo(
        name, kw.get("valid", True), kw.get("ready", True), keys, predicate, idx_scan=0
    )


def test_null_index_for_prefers_a_partial_is_null_index_then_a_leading_one() -> None:
    leading = _idx("b_lead", (3, 1))
    second = _idx("a_second", (1, 3))  # the column is not the first key: no IS NULL scan
    partial = _idx("z_partial", (1,), "(organization_id IS NULL)")
    quoted = _idx("y_quoted", (1,), '"organization_id" is null')
    other = _idx("x_other", (1,), "(customer_id IS NULL)")
    info = TableInfo(
        table=TABLE,
        exists=True,
        attnums={"organization_id": 3},
        indexes={i.name: i for i in (leading, second, partial, quoted, other)},
    )
    assert info.null_index_for("organization_id") == quoted  # partial ones, by name
    only_plain = TableInfo(
        table=TABLE, exists=True, attnums={"organization_id": 3}, indexes={"b_lead": leading}
    )
    assert only_plain.null_index_for("organization_id") == leading
    unusable = {
        "bad": _idx("bad", (3,), valid=False),
        "building": _idx("building", (3,), ready=False),
        "a_second": second,
    }
    none = TableInfo(table=TABLE, exists=True, attnums={"organization_id": 3}, indexes=unusable)
    assert none.null_index_for("organization_id") is None


def test_absent_results() -> None:
    pairs = [("schema", "public.conversations"), ("index_usage", "public.conversations.i")]
    missing = absent_results(TableInfo(table=TABLE, exists=False), pairs, "ignored")
    assert [(r.check, r.subject, r.status, r.table) for r in missing] == [
        ("schema", "public.conversations", Status.FAIL, "public.conversations"),
        ("index_usage", "public.conversations.i", Status.FAIL, "public.conversations"),
    ]
    assert {r.message for r in missing} == {"required table public.conversations does not exist"}
    optional = TableConfig(name="conversations", required=False)
    skipped = absent_results(TableInfo(table=optional, exists=False), pairs, "ignored")
    assert {r.status for r in skipped} == {Status.SKIPPED}
    assert {r.message for r in skipped} == {"optional table public.conversations does not exist"}
    # The table is there, a column is not: fail with the caller's message, even if optional.
    col = absent_results(TableInfo(table=optional, exists=True), pairs[:1], "column x is missing")
    assert [(r.status, r.message) for r in col] == [(Status.FAIL, "column x is missing")]
