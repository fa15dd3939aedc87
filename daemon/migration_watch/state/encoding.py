"""How values are written to and read from a store: aware datetimes as sortable UTC text,
JSON as compact text (any odd value a result or payload may hold has a JSON form)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from migration_watch.errors import StateError

__all__ = ["dumps", "from_ts", "from_ts_opt", "loads", "ts", "ts_opt"]


def ts(value: datetime) -> str:
    """ISO-8601 UTC text with microseconds (sorts as time does); a naive value is refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise StateError(f"naive datetime {value.isoformat()} given to the state store")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ts_opt(value: datetime | None) -> str | None:
    return None if value is None else ts(value)


def from_ts(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def from_ts_opt(text: str | None) -> datetime | None:
    return None if text is None else from_ts(text)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
