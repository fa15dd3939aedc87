"""The connection type and the small catalog lookups the sample's builders share."""

from __future__ import annotations

from typing import Any

import psycopg

from .facts import SCHEMA

__all__ = [
    "Conn",
    "RowId",
    "has_column",
    "row_id",
    "table_exists",
]

Conn = psycopg.Connection[Any]
RowId = int | str  # bigint ids as int, uuid ids as str


def row_id(value: object) -> RowId:
    return value if isinstance(value, int) else str(value)


def table_exists(conn: Conn, table: str, schema: str = SCHEMA) -> bool:
    row = conn.execute(
        "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL", (schema, table)
    ).fetchone()
    return bool(row and row[0])


def has_column(conn: Conn, table: str, column: str, schema: str = SCHEMA) -> bool:
    row = conn.execute(
        """
        SELECT EXISTS (
          SELECT 1 FROM information_schema.columns
          WHERE table_schema = %s AND table_name = %s AND column_name = %s)
        """,
        (schema, table, column),
    ).fetchone()
    return bool(row and row[0])
