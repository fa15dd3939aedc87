"""The SQLite backend of the state store (the embedded default)."""

from .connection import APPLICATION_ID, SCHEMA_VERSION, SqliteDatabase
from .store import SqliteStateStore

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SqliteDatabase", "SqliteStateStore"]
