"""What the system catalogs say about one watched table (cheap: catalog lookups only)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import DictRow

from ..config import MigrationConfig, TableConfig
from ..db import tagged
from ..results import Result

__all__ = [
    "IndexInfo",
    "TableAccess",
    "TableInfo",
    "absent_results",
    "fetch_table_info",
    "primary_key",
    "rls_applies",
    "rows_hidden_because",
]


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


# --------------------------------------------------------------------------- measure


@dataclass(frozen=True)
class TableAccess:
    """What the catalogs say about this role's view of a table (``pg_class`` + ``pg_roles``)."""

    role: str
    can_select: bool
    rls_enabled: bool
    rls_forced: bool
    #: The role owns the table (the owner bypasses RLS unless it is forced).
    owned: bool
    #: The role is a superuser or has BYPASSRLS.
    exempt: bool


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
    access = TableAccess(
        role=row["role"],
        can_select=bool(row["can_select"]),
        rls_enabled=bool(row["relrowsecurity"]),
        rls_forced=bool(row["relforcerowsecurity"]),
        owned=bool(row["owned"]),
        exempt=bool(row["exempt"]),
    )
    columns, attnums = _fetch_columns(cur, oid)
    indexes, catalog_pk = _fetch_indexes(cur, oid, {n: a for a, n in attnums.items()})
    open_policies = (
        _count_open_policies(cur, table) if access.can_select and rls_applies(access) else None
    )
    return TableInfo(
        table=table,
        exists=True,
        oid=oid,
        reltuples=float(row["reltuples"]),
        relpages=int(row["relpages"]),
        rls_enabled=access.rls_enabled,
        columns=columns,
        attnums=attnums,
        primary_key=primary_key(table, columns, catalog_pk),
        indexes=indexes,
        rls_hides_rows=rows_hidden_because(table, access, open_policies),
    )


def _fetch_columns(cur: psycopg.Cursor[DictRow], oid: int) -> tuple[dict[str, str], dict[str, int]]:
    """``name -> type`` and ``name -> attnum`` of the table's live columns."""
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
    for r in cur.fetchall():
        columns[r["attname"]] = r["type"]
        attnums[r["attname"]] = int(r["attnum"])
    return columns, attnums


def _fetch_indexes(
    cur: psycopg.Cursor[DictRow], oid: int, by_num: dict[int, str]
) -> tuple[dict[str, IndexInfo], str | None]:
    """The table's indexes by name, and the single-column primary key the catalogs show."""
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
    primary: str | None = None
    for r in cur.fetchall():
        keys: list[Any] = list(r["keys"] or [])[: int(r["indnkeyatts"])]
        key_nums = tuple(int(k) for k in keys)
        if r["indisprimary"] and len(key_nums) == 1 and key_nums[0] in by_num:
            primary = by_num[key_nums[0]]
        indexes[r["name"]] = IndexInfo(
            name=r["name"],
            valid=bool(r["indisvalid"]),
            ready=bool(r["indisready"]),
            keys=key_nums,
            predicate=r["predicate"],
            idx_scan=None if r["idx_scan"] is None else int(r["idx_scan"]),
        )
    return indexes, primary


def _count_open_policies(cur: psycopg.Cursor[DictRow], table: TableConfig) -> int:
    """Permissive ``SELECT`` policies ``USING (true)`` that apply to this role."""
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
    return int(see_all["n"]) if see_all and see_all["n"] else 0


# --------------------------------------------------------------------------- judge


def rls_applies(access: TableAccess) -> bool:
    """Row-level security filters this role's rows: enabled, the role not exempt, and not the
    owner of a table whose RLS is not forced."""
    return access.rls_enabled and not access.exempt and not (access.owned and not access.rls_forced)


def rows_hidden_because(
    table: TableConfig, access: TableAccess, open_policies: int | None
) -> str | None:
    """Why this role would see fewer rows than there are (counts would be wrong), or ``None``.

    ``open_policies``: policies that let the role see every row (``None``: not looked up)."""
    if not access.can_select:
        return (
            f"permission denied: role {access.role} lacks SELECT on {table.qualified}"
            " (see README: least privilege)"
        )
    if rls_applies(access) and not open_policies:
        return (
            f"row-level security on {table.qualified} hides rows from role {access.role}:"
            " counts would be wrong (give the role BYPASSRLS or a SELECT policy"
            " USING (true), see README: least privilege)"
        )
    return None


def primary_key(
    table: TableConfig, columns: Mapping[str, str], catalog_pk: str | None
) -> str | None:
    """The configured primary key when the table has that column, else the catalog's."""
    if table.primary_key is not None:
        return table.primary_key if table.primary_key in columns else None
    return catalog_pk


def absent_results(info: TableInfo, pairs: list[tuple[str, str]], message: str) -> list[Result]:
    """Results for a table (or column) that is not there: ``fail``, or ``skipped`` for an
    optional table that does not exist."""
    q = info.table.qualified
    if not info.exists and not info.table.required:
        reason = f"optional table {q} does not exist"
        return [Result.skipped(c, s, reason=reason, table=q) for c, s in pairs]
    if not info.exists:
        message = f"required table {q} does not exist"
    return [Result.failed(c, s, message, table=q) for c, s in pairs]
