"""What the system catalogs say about one watched table (cheap: catalog lookups only)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import DictRow

from ..config import MigrationConfig, TableConfig
from ..db import tagged
from ..results import Result, Status

__all__ = ["IndexInfo", "TableInfo", "absent_results", "fetch_table_info"]


@dataclass(frozen=True)
class IndexInfo:
    name: str
    valid: bool
    ready: bool
    #: Attribute numbers of the key columns, in order.
    keys: tuple[int, ...]
    predicate: str | None
    idx_scan: int | None

    def covers(self, attnum: int | None) -> bool:
        return attnum is not None and attnum in self.keys

    def leads_with(self, attnum: int | None) -> bool:
        return attnum is not None and bool(self.keys) and self.keys[0] == attnum


@dataclass(frozen=True)
class TableInfo:
    """A watched table as found in the catalogs (``exists=False`` when it is absent)."""

    table: TableConfig
    exists: bool
    oid: int | None = None
    reltuples: float = -1.0
    relpages: int = 0
    rls_enabled: bool = False
    columns: dict[str, str] = field(default_factory=dict)
    attnums: dict[str, int] = field(default_factory=dict)
    primary_key: str | None = None
    indexes: dict[str, IndexInfo] = field(default_factory=dict)
    #: Why row-level security would hide rows from this role (counts would be wrong), if so.
    rls_hides_rows: str | None = None

    def has(self, column: str | None) -> bool:
        return column is not None and column in self.columns

    def null_index_for(self, column: str) -> IndexInfo | None:
        """A valid index that makes ``column IS NULL`` an index scan, preferring a partial
        index ``WHERE column IS NULL`` (which also proves an exact zero cheaply)."""
        attnum = self.attnums.get(column)
        partial = _null_predicate(column)
        candidates: list[tuple[int, IndexInfo]] = []
        for idx in self.indexes.values():
            if not (idx.valid and idx.ready):
                continue
            if idx.predicate is not None and partial.fullmatch(idx.predicate.strip()):
                candidates.append((0, idx))
            elif idx.predicate is None and idx.leads_with(attnum):
                candidates.append((1, idx))
        return min(candidates, key=lambda c: (c[0], c[1].name))[1] if candidates else None


def _null_predicate(column: str) -> re.Pattern[str]:
    col = re.escape(column)
    return re.compile(rf'\(*\s*"?{col}"?\s+IS\s+NULL\s*\)*', re.IGNORECASE)


def fetch_table_info(
    cur: psycopg.Cursor[DictRow], table: TableConfig, migration: MigrationConfig
) -> TableInfo:
    """Look a table up in the catalogs: columns, primary key, indexes and their usage, RLS."""
    cur.execute(
        tagged(
            "SELECT c.oid, c.reltuples, c.relpages, c.relrowsecurity, c.relforcerowsecurity,"
            " pg_catalog.pg_get_userbyid(c.relowner) = current_user AS owned,"
            " r.rolsuper OR r.rolbypassrls AS exempt, current_user AS role,"
            " pg_catalog.has_table_privilege(c.oid, 'SELECT') AS can_select"
            " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_catalog.pg_roles r ON r.rolname = current_user"
            " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')"
        ),
        (table.schema_, table.name),
    )
    row = cur.fetchone()
    if row is None:
        return TableInfo(table=table, exists=False)
    oid = int(row["oid"])
    cur.execute(
        tagged(
            "SELECT a.attname, a.attnum, pg_catalog.format_type(a.atttypid, a.atttypmod)"
            " AS type FROM pg_catalog.pg_attribute a"
            " WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped"
        ),
        (oid,),
    )
    columns: dict[str, str] = {}
    attnums: dict[str, int] = {}
    by_num: dict[int, str] = {}
    for r in cur.fetchall():
        columns[r["attname"]] = r["type"]
        attnums[r["attname"]] = int(r["attnum"])
        by_num[int(r["attnum"])] = r["attname"]
    cur.execute(
        tagged(
            "SELECT ic.relname AS name, i.indisvalid, i.indisready, i.indisprimary,"
            " i.indnkeyatts, i.indkey::int2[] AS keys,"
            " pg_catalog.pg_get_expr(i.indpred, i.indrelid) AS predicate, s.idx_scan"
            " FROM pg_catalog.pg_index i"
            " JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid"
            " LEFT JOIN pg_catalog.pg_stat_user_indexes s ON s.indexrelid = i.indexrelid"
            " WHERE i.indrelid = %s"
        ),
        (oid,),
    )
    indexes: dict[str, IndexInfo] = {}
    primary_key: str | None = None
    for r in cur.fetchall():
        keys: list[Any] = list(r["keys"] or [])[: int(r["indnkeyatts"])]
        key_nums = tuple(int(k) for k in keys)
        if r["indisprimary"] and len(key_nums) == 1 and key_nums[0] in by_num:
            primary_key = by_num[key_nums[0]]
        indexes[r["name"]] = IndexInfo(
            name=r["name"],
            valid=bool(r["indisvalid"]),
            ready=bool(r["indisready"]),
            keys=key_nums,
            predicate=r["predicate"],
            idx_scan=None if r["idx_scan"] is None else int(r["idx_scan"]),
        )
    rls_hides_rows = None
    if not row["can_select"]:
        rls_hides_rows = (
            f"permission denied: role {row['role']} lacks SELECT on {table.qualified}"
            " (see README: least privilege)"
        )
    elif (
        row["relrowsecurity"]
        and not row["exempt"]
        and not (row["owned"] and not row["relforcerowsecurity"])
    ):
        cur.execute(
            tagged(
                "SELECT count(*) AS n FROM pg_catalog.pg_policies"
                " WHERE schemaname = %s AND tablename = %s AND permissive = 'PERMISSIVE'"
                " AND cmd IN ('SELECT', 'ALL') AND btrim(qual, '() ') = 'true'"
                " AND (roles && ARRAY['public', current_user]::name[])"
            ),
            (table.schema_, table.name),
        )
        see_all = cur.fetchone()
        if not see_all or not see_all["n"]:
            rls_hides_rows = (
                f"row-level security on {table.qualified} hides rows from role {row['role']}:"
                " counts would be wrong (give the role BYPASSRLS or a SELECT policy"
                " USING (true), see README: least privilege)"
            )
    if table.primary_key is not None:
        primary_key = table.primary_key if table.primary_key in columns else None
    return TableInfo(
        table=table,
        exists=True,
        oid=oid,
        reltuples=float(row["reltuples"]),
        relpages=int(row["relpages"]),
        rls_enabled=bool(row["relrowsecurity"]),
        columns=columns,
        attnums=attnums,
        primary_key=primary_key,
        indexes=indexes,
        rls_hides_rows=rls_hides_rows,
    )


def absent_results(info: TableInfo, pairs: list[tuple[str, str]], message: str) -> list[Result]:
    """Results for a table (or column) that is not there: ``fail``, or ``skipped`` for an
    optional table that does not exist."""
    t = info.table
    status = Status.FAIL
    if not info.exists:
        if t.required:
            message = f"required table {t.qualified} does not exist"
        else:
            status, message = Status.SKIPPED, f"optional table {t.qualified} does not exist"
    return [
        Result(check=c, subject=s, status=status, message=message, table=t.qualified)
        for c, s in pairs
    ]
