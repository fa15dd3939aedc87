"""What the checks must report, computed with straightforward SQL: :func:`truth`."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import sql

from .catalog import Conn, RowId, row_id
from .facts import DEPLOYED_AT, EXPECTED_INDEXES, LEGACY_COLUMN, NEW_COLUMN, SCHEMA, WATCHED_TABLES

__all__ = [
    "IndexTruth",
    "PolicyTruth",
    "TableTruth",
    "Truth",
    "truth",
]


@dataclass(frozen=True)
class IndexTruth:
    """An expected index as the catalogs see it (all False when it does not exist)."""

    name: str
    exists: bool
    valid: bool
    ready: bool
    covers_new: bool  # organization_id is one of its key columns


@dataclass(frozen=True)
class PolicyTruth:
    """One RLS policy and which columns its USING / WITH CHECK expressions mention."""

    name: str
    command: str
    on_new: bool
    on_legacy: bool


@dataclass(frozen=True)
class TableTruth:
    """The facts about one watched table, computed by plain SQL.

    Counts that need a missing column are None (e.g. everything about organization_id
    before the migration; post-deploy counts without created_at). ``orphan_ids``: the first
    100 orphan primary keys in ascending order. ``backfill_ratio`` = with_new / total (1.0
    for an empty table, None without the new column).
    """

    schema: str
    name: str
    exists: bool
    new_column_present: bool = False
    legacy_column_present: bool = False
    new_column_type: str | None = None
    total: int | None = None
    with_new: int | None = None
    with_legacy: int | None = None
    missing_new: int | None = None
    missing_without_legacy: int | None = None
    orphans: int | None = None
    orphan_ids: tuple[RowId, ...] = ()
    post_deploy_total: int | None = None
    post_deploy_missing: int | None = None
    rls_enabled: bool = False
    policies: tuple[PolicyTruth, ...] = ()
    indexes: Mapping[str, IndexTruth] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def backfill_ratio(self) -> float | None:
        if self.with_new is None or self.total is None:
            return None
        return 1.0 if self.total == 0 else self.with_new / self.total

    @property
    def policies_on_new(self) -> int:
        return sum(p.on_new for p in self.policies)

    @property
    def policies_on_legacy(self) -> int:
        return sum(p.on_legacy for p in self.policies)


@dataclass(frozen=True)
class Truth:
    """The truth about every watched table; ``truth["conversations"]``."""

    deployed_at: datetime
    tables: Mapping[str, TableTruth]

    def __getitem__(self, table: str) -> TableTruth:
        return self.tables[table]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tables)

    def matches(self, expected: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Differences from a mapping shaped like ``ANOMALY_TRUTH`` (empty list = match)."""
        problems: list[str] = []
        for table, facts in expected.items():
            actual = self.tables[table]
            for key, want in facts.items():
                if key == "indexes":
                    for index, index_facts in want.items():
                        got_index = actual.indexes.get(index)
                        for ikey, iwant in index_facts.items():
                            got = getattr(got_index, ikey, None)
                            if got != iwant:
                                problems.append(
                                    f"{table}.indexes.{index}.{ikey}: {got!r} != {iwant!r}"
                                )
                    continue
                got = getattr(actual, key)
                if got != want:
                    problems.append(f"{table}.{key}: {got!r} != {want!r}")
        return problems


_WORD = "\\m{}\\M"


def truth(
    conn: Conn,
    *,
    deployed_at: datetime = DEPLOYED_AT,
    tables: Sequence[str] = WATCHED_TABLES,
    schema: str = SCHEMA,
    created_at_column: str = "created_at",
) -> Truth:
    """Compute the facts the checks must report, with straightforward SQL (no cleverness)."""
    return Truth(
        deployed_at=deployed_at,
        tables={t: _table_truth(conn, schema, t, deployed_at, created_at_column) for t in tables},
    )


def _table_truth(
    conn: Conn, schema: str, table: str, deployed_at: datetime, created_col: str
) -> TableTruth:
    oid_row = conn.execute(
        """
        SELECT c.oid, c.relrowsecurity FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
        """,
        (schema, table),
    ).fetchone()
    if oid_row is None:
        return TableTruth(schema=schema, name=table, exists=False, indexes=_index_truths(
            conn, schema, table, None))  # fmt: skip
    oid, rls_enabled = oid_row
    columns = {
        str(r[0]): str(r[1])
        for r in conn.execute(
            """
            SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
            WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped
            """,
            (oid,),
        ).fetchall()
    }
    has_new = NEW_COLUMN in columns
    has_legacy = LEGACY_COLUMN in columns
    has_created = created_col in columns
    rel = sql.Identifier(schema, table)
    new = sql.Identifier(NEW_COLUMN) if has_new else sql.SQL("NULL::int")
    legacy = sql.Identifier(LEGACY_COLUMN) if has_legacy else sql.SQL("NULL::int")
    created = sql.Identifier(created_col) if has_created else sql.SQL("NULL::timestamptz")
    row = conn.execute(
        sql.SQL(
            """
            SELECT count(*),
                   count({new}),
                   count({legacy}),
                   count(*) FILTER (WHERE {new} IS NULL),
                   count(*) FILTER (WHERE {new} IS NULL AND {legacy} IS NULL),
                   count(*) FILTER (WHERE {new} IS NULL AND {legacy} IS NOT NULL),
                   count(*) FILTER (WHERE {created} >= %(dep)s),
                   count(*) FILTER (WHERE {created} >= %(dep)s AND {new} IS NULL)
            FROM {rel}
            """
        ).format(new=new, legacy=legacy, created=created, rel=rel),
        {"dep": deployed_at},
    ).fetchone()
    assert row is not None
    total, with_new, with_legacy, missing, missing_both, orphans, post_total, post_missing = (
        int(v) for v in row
    )
    orphan_ids: tuple[RowId, ...] = ()
    if has_new and has_legacy:
        orphan_ids = tuple(
            row_id(r[0])
            for r in conn.execute(
                sql.SQL(
                    "SELECT id FROM {} WHERE {} IS NULL AND {} IS NOT NULL ORDER BY id LIMIT 100"
                ).format(rel, sql.Identifier(NEW_COLUMN), sql.Identifier(LEGACY_COLUMN))
            ).fetchall()
        )
    policies = tuple(
        PolicyTruth(name=str(r[0]), command=str(r[1]), on_new=bool(r[2]), on_legacy=bool(r[3]))
        for r in conn.execute(
            """
            SELECT policyname, cmd,
                   coalesce(qual, '') || ' ' || coalesce(with_check, '') ~ %s,
                   coalesce(qual, '') || ' ' || coalesce(with_check, '') ~ %s
            FROM pg_policies WHERE schemaname = %s AND tablename = %s ORDER BY policyname
            """,
            (_WORD.format(re.escape(NEW_COLUMN)), _WORD.format(re.escape(LEGACY_COLUMN)),
             schema, table),
        ).fetchall()
    )  # fmt: skip
    return TableTruth(
        schema=schema,
        name=table,
        exists=True,
        new_column_present=has_new,
        legacy_column_present=has_legacy,
        new_column_type=columns.get(NEW_COLUMN),
        total=total,
        with_new=with_new if has_new else None,
        with_legacy=with_legacy if has_legacy else None,
        missing_new=missing if has_new else None,
        missing_without_legacy=missing_both if has_new and has_legacy else None,
        orphans=orphans if has_new and has_legacy else None,
        orphan_ids=orphan_ids,
        post_deploy_total=post_total if has_created else None,
        post_deploy_missing=post_missing if has_created and has_new else None,
        rls_enabled=bool(rls_enabled),
        policies=policies,
        indexes=_index_truths(conn, schema, table, oid),
    )


def _index_truths(conn: Conn, schema: str, table: str, oid: int | None) -> dict[str, IndexTruth]:
    result: dict[str, IndexTruth] = {}
    for name in EXPECTED_INDEXES.get(table, ()):
        row = (
            conn.execute(
                """
                SELECT i.indisvalid, i.indisready,
                       EXISTS (
                         SELECT 1 FROM pg_attribute a
                         WHERE a.attrelid = i.indrelid AND a.attname = %s
                           AND a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1]))
                FROM pg_index i
                JOIN pg_class c ON c.oid = i.indexrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = %s AND c.relname = %s AND i.indrelid = %s
                """,
                (NEW_COLUMN, schema, name, oid),
            ).fetchone()
            if oid is not None
            else None
        )
        if row is None:
            result[name] = IndexTruth(name, exists=False, valid=False, ready=False,
                                      covers_new=False)  # fmt: skip
        else:
            result[name] = IndexTruth(name, exists=True, valid=bool(row[0]), ready=bool(row[1]),
                                      covers_new=bool(row[2]))  # fmt: skip
    return result
