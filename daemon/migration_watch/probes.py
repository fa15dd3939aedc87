"""Probe queries (``probes:`` in the configuration) and the settings of their two checks.

A probe is one read-only statement the application really runs (e.g. the dashboard's
conversation list of one organization), with its parameters bound as values::

    probes:
      - name: conversations_by_org
        sql: >-
          SELECT id, created_at FROM conversations
          WHERE organization_id = %(org)s ORDER BY created_at DESC LIMIT 50
        params: {org: 0b6e7c1e-…}
        table: conversations                      # optional: its Seq Scan fails index_plan
        expect_index: idx_conversations_organization_id   # optional: enables index_plan
        executions: 5                              # measured executions (median)
        warmup: 1                                  # unmeasured executions first

Placeholders are psycopg's ``%(name)s`` (a literal ``%`` is written ``%%``); every placeholder
must have a parameter and every parameter must be used. The SQL must be a single ``SELECT``
(or ``WITH … SELECT``, ``VALUES``, ``TABLE``): no data-modifying CTE, ``SELECT … INTO`` or
locking clause (``FOR UPDATE``/``FOR SHARE``), no second statement. This validation catches
mistakes early; the guarantee is that probes only ever run in ``READ ONLY`` transactions.

The lead's :class:`~migration_watch.config.Config` holds ``probes: Probes`` and
``checks.latency: LatencyCheckConfig`` / ``checks.index_plan: IndexPlanCheckConfig``.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, field_validator
from pydantic import model_validator as _model_validator

from .configbase import _Model
from .durations import coerce_duration

__all__ = [
    "IndexPlanCheckConfig",
    "LatencyCheckConfig",
    "ParamValue",
    "ProbeConfig",
    "Probes",
    "check_read_only_sql",
    "placeholder_names",
]

Scalar = str | int | float | bool | datetime | date | None
#: A probe parameter: a scalar, or a list of scalars (bound as a PostgreSQL array).
ParamValue = Scalar | list[Scalar]

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,99}$")
_WORD_RE = re.compile(r"[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*")
_DOLLAR_TAG_RE = re.compile(r"\$([A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$")
_NUMBER_RE = re.compile(r"[$0-9][0-9A-Za-z_.]*")
_NAMED_PLACEHOLDER_RE = re.compile(r"%\([^)]*\)[sbt]")
_PLACEHOLDER_RE = re.compile(r"%(?:\(([^)]*)\)(.)?|(.)|$)", re.DOTALL)
_STARTS = frozenset({"select", "with", "values", "table"})
#: Words that make a statement write (data-modifying CTE) or create (SELECT … INTO).
_WRITES = frozenset({"insert", "update", "delete", "merge", "into"})
_LOCKING = frozenset({"share", "key", "no", "update"})


def _duration(value: Any) -> timedelta:
    return coerce_duration(value)


# --------------------------------------------------------------------------- SQL validation


def _words(text: str) -> tuple[list[str], int | None]:
    """Lower-cased bare words outside comments, literals and quoted identifiers, and the index
    of the first top-level ``;``. Raises ``ValueError`` on an unterminated literal/comment."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif c == "/" and text.startswith("/*", i):
            i = _skip_block_comment(text, i)
        elif c == "'":
            escapes = i > 0 and text[i - 1] in "eE" and (i < 2 or not _is_word_char(text[i - 2]))
            i = _skip_string(text, i, escapes)
        elif c == '"':
            i = _skip_quoted_identifier(text, i)
            words.append('"')  # an identifier, never a keyword
        elif c == "$" and (m := _DOLLAR_TAG_RE.match(text, i)):
            tag = m.group(0)
            end = text.find(tag, m.end())
            if end < 0:
                raise ValueError(f"unterminated dollar-quoted string ({tag})")
            i = end + len(tag)
        elif c == ";":
            return words, i
        elif c == "(":
            words.append("(")
            i += 1
        elif m := _WORD_RE.match(text, i):
            words.append(m.group(0).lower())
            i = m.end()
        elif m := _NUMBER_RE.match(text, i):  # 1e5, $1: never keywords
            i = m.end()
        else:
            i += 1
    return words, None


def _skip_block_comment(text: str, i: int) -> int:
    depth, i = 1, i + 2
    while depth:
        if i >= len(text):
            raise ValueError("unterminated /* comment")
        if text.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif text.startswith("*/", i):
            depth, i = depth - 1, i + 2
        else:
            i += 1
    return i


def _skip_string(text: str, i: int, escapes: bool) -> int:
    i += 1
    while i < len(text):
        if (escapes and text[i] == "\\") or text.startswith("''", i):
            i += 2
        elif text[i] == "'":
            return i + 1
        else:
            i += 1
    raise ValueError("unterminated string literal")


def _skip_quoted_identifier(text: str, i: int) -> int:
    i += 1
    while (end := text.find('"', i)) >= 0:
        if not text.startswith('""', end):
            return end + 1
        i = end + 2
    raise ValueError('unterminated quoted identifier (")')


def _is_word_char(c: str) -> bool:
    return c.isalnum() or c in "_$"


def check_read_only_sql(text: str) -> str:
    """Validate that ``text`` is one read-only statement; return it without a trailing ``;``.

    Raises ``ValueError`` with the reason otherwise.
    """
    # Placeholders become blanks of the same length (positions are kept for the ``;``).
    words, semicolon = _words(_NAMED_PLACEHOLDER_RE.sub(lambda m: " " * len(m.group(0)), text))
    if semicolon is not None:
        rest_words, more = _words(text[semicolon + 1 :])
        if rest_words or more is not None:
            raise ValueError("only one statement is allowed")
        text = text[:semicolon]
    first = next((w for w in words if w != "("), None)
    if first is None:
        raise ValueError("empty statement")
    if first not in _STARTS:
        raise ValueError(
            "must be a read-only query (SELECT, WITH … SELECT, VALUES or TABLE),"
            f" not {first.upper()}"
        )
    for i, w in enumerate(words):
        if w in _WRITES:
            raise ValueError(
                f"{w.upper()} is not allowed in a probe (read-only queries only;"
                ' quote a column of that name: "' + w + '")'
            )
        if w == "for" and i + 1 < len(words) and words[i + 1] in _LOCKING:
            raise ValueError("locking clauses (FOR UPDATE / FOR SHARE) are not allowed in a probe")
    return text.strip()


def placeholder_names(text: str) -> list[str]:
    """The ``%(name)s`` placeholders of ``text``, in order (psycopg's syntax).

    Raises ``ValueError`` for a positional ``%s``, an unknown format or a lone ``%``.
    """
    names: list[str] = []
    for m in _PLACEHOLDER_RE.finditer(text):
        name, fmt, other = m.group(1), m.group(2), m.group(3)
        if name is None:
            if other == "%":
                continue
            if other in ("s", "b", "t"):
                raise ValueError("use named placeholders %(name)s with params, not %s")
            raise ValueError("a literal % must be written %%")
        if not name:
            raise ValueError("empty placeholder name %()s")
        if fmt not in ("s", "b", "t"):
            raise ValueError(f"placeholder %({name}) must end with s, b or t (e.g. %({name})s)")
        names.append(name)
    return names


# --------------------------------------------------------------------------- models


def _check_ident(value: str | None) -> str | None:
    if value is None:
        return None
    parts = value.split(".", 1)
    for part in parts:
        if not part:
            raise ValueError("must not be empty (use name or schema.name)")
        if "\x00" in part:
            raise ValueError("must not contain NUL characters")
        if len(part.encode()) > 63:
            raise ValueError("longer than PostgreSQL's 63-byte identifier limit")
    return value


class ProbeConfig(_Model):
    """One probe query, measured by the ``latency`` and ``index_plan`` checks."""

    name: str
    sql: str
    params: dict[str, ParamValue] = Field(default_factory=dict)
    #: ``table`` or ``schema.table``: a Seq Scan of it fails ``index_plan``.
    table: str | None = None
    #: ``index`` or ``schema.index`` the plan must use (enables ``index_plan``).
    expect_index: str | None = None
    #: Measured executions; the median is the probe's latency.
    executions: int = Field(default=5, ge=1, le=100)
    #: Unmeasured executions before them (caches, catalog lookups).
    warmup: int = Field(default=1, ge=0, le=10)

    _ident = field_validator("table", "expect_index")(_check_ident)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(
                "use 1-100 characters among letters, digits, _ . : - (not starting with . : -)"
            )
        return v

    @field_validator("sql")
    @classmethod
    def _sql(cls, v: str) -> str:
        return check_read_only_sql(v)

    @_model_validator(mode="after")
    def _params_match(self) -> ProbeConfig:
        used = set(placeholder_names(self.sql))
        missing = sorted(used - self.params.keys())
        unused = sorted(self.params.keys() - used)
        if missing:
            raise ValueError(f"sql uses %({missing[0]})s but params has no {missing[0]!r}")
        if unused:
            raise ValueError(f"param {unused[0]!r} is not used in sql (placeholder %(name)s)")
        return self

    @property
    def subject(self) -> str:
        """``probe:<name>``: the ``subject`` of this probe's results."""
        return f"probe:{self.name}"

    @property
    def table_name(self) -> str | None:
        """``table`` without its schema (EXPLAIN's ``Relation Name``)."""
        return None if self.table is None else self.table.rsplit(".", 1)[-1]

    @property
    def index_name(self) -> str | None:
        """``expect_index`` without its schema (EXPLAIN's ``Index Name``)."""
        return None if self.expect_index is None else self.expect_index.rsplit(".", 1)[-1]


def _unique_names(probes: tuple[ProbeConfig, ...]) -> tuple[ProbeConfig, ...]:
    seen: set[str] = set()
    for p in probes:
        if p.name in seen:
            raise ValueError(f"probe {p.name!r} is listed twice")
        seen.add(p.name)
    return probes


#: The ``probes:`` section: a list of probes with distinct names.
Probes = Annotated[tuple[ProbeConfig, ...], AfterValidator(_unique_names)]


class LatencyCheckConfig(_Model):
    """``checks.latency``: a probe's median against its baseline.

    ``fail`` when the median exceeds ``baseline * (1 + max_regression)`` *and* exceeds the
    baseline by more than ``noise_floor`` (sub-millisecond jitter of fast queries never fails;
    ``0`` turns the floor off).
    """

    enabled: bool = True
    max_regression: float = Field(default=0.10, ge=0)
    noise_floor: Annotated[timedelta, BeforeValidator(_duration)] = timedelta(milliseconds=1)


class IndexPlanCheckConfig(_Model):
    """``checks.index_plan``: a probe with ``expect_index`` must use that index."""

    enabled: bool = True
