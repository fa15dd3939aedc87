"""Line formats: turn one line (bytes, no newline) into a :class:`Record`, or ``None``.

``None`` means a parse error. What counts as one, per format (every format: a NUL byte or
invalid UTF-8 anywhere in the line is a parse error; blank lines are handled by the caller):

* ``json``: the line is not exactly one JSON object (RFC 8259, as msgspec reads it), or it
  nests deeper than msgspec's recursion limit. Duplicate keys are allowed (last wins).
* ``logfmt``: the line is not a sequence of ``key=value`` / ``key`` tokens separated by
  blanks (values plain or double-quoted with backslash escapes), has an unterminated quote,
  or has no ``key=value`` pair at all.
* ``text``: the configured regex does not match (``re.search``) the line.

The *searched text* of a record is what the column names and the fallback patterns are
looked for in: the whole line when ``fields.search`` contains ``"*"``, else the text of the
message field and of every ``search`` field: for JSON the field's JSON text (strings with
their quotes and escapes, objects and arrays with their keys), for logfmt the value as
written, for text the group's text.

A truncated line (longer than ``max_line_bytes``) is parsed leniently on its first part:
its searched text is the whole first part and level/status are taken from the first
``"level": …`` / ``level=…`` found in it (any format).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import msgspec

from .config import FieldsConfig, Format

__all__ = [
    "JsonRecordType",
    "Parser",
    "Record",
    "json_lines_array",
    "json_record_type",
    "logfmt_pairs",
    "logfmt_value",
    "make_parser",
    "may_have_overlong_line",
]

EMPTY_RAW = msgspec.Raw(b"")
_DECODE_ERRORS = (msgspec.DecodeError, RecursionError, UnicodeDecodeError, ValueError)


@dataclass(frozen=True, slots=True)
class Record:
    """What classification needs from one parsed line."""

    level: Any
    status: Any
    searched: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class JsonRecordType:
    """A msgspec Struct type decoding only the needed keys of a JSON line.

    Attributes: ``lv`` (level), ``st`` (status; ``lv`` too when it is the same key), ``s0``…
    (searched fields, ``msgspec.Raw``).
    ``whole_line`` is True when the searched text is the whole line (``"*"``).
    """

    struct: type[msgspec.Struct]
    search_attrs: tuple[str, ...]
    whole_line: bool
    has_level: bool
    has_status: bool
    level_attr: str = "lv"
    status_attr: str = "st"


def _searched_names(fields: FieldsConfig) -> tuple[bool, tuple[str, ...]]:
    if "*" in fields.search:
        return True, ()
    names = [fields.message] if fields.message else []
    names.extend(fields.search)
    return False, tuple(dict.fromkeys(names))


def json_record_type(fields: FieldsConfig) -> JsonRecordType:
    """Build the Struct decoding level, status and the searched fields (as raw JSON)."""
    whole, names = _searched_names(fields)
    attrs: list[tuple[str, Any, Any]] = []
    rename: dict[str, str] = {}
    by_key: dict[str, str] = {}

    def attr_for(key: str, name: str, typ: Any, default: Any) -> str:
        if key in by_key:
            return by_key[key]
        attrs.append((name, typ, default))
        rename[name] = key
        by_key[key] = name
        return name

    level_attr = attr_for(fields.level, "lv", Any, None) if fields.level else "lv"
    # The same key may be both (one attribute then).
    status_attr = attr_for(fields.status, "st", Any, None) if fields.status else "st"
    search_attrs = []
    for i, key in enumerate(names):
        if key in by_key:  # level/status also searched: keep one Any attribute, no Raw
            search_attrs.append(by_key[key])
        else:
            search_attrs.append(attr_for(key, f"s{i}", msgspec.Raw, EMPTY_RAW))
    struct = msgspec.defstruct("_LogRecord", attrs, rename=rename, gc=False)
    return JsonRecordType(
        struct=struct,
        search_attrs=tuple(search_attrs),
        whole_line=whole,
        has_level=bool(fields.level),
        has_status=bool(fields.status),
        level_attr=level_attr,
        status_attr=status_attr,
    )


class Parser:
    """Base: ``parse(line)`` returns a :class:`Record` or ``None`` (parse error)."""

    def parse(self, line: bytes) -> Record | None:  # pragma: no cover - interface
        raise NotImplementedError

    def parse_truncated(self, prefix: bytes) -> Record:
        """Lenient reading of the first part of an overlong line."""
        return Record(
            level=self._lenient(self._level_re, prefix),
            status=self._lenient(self._status_re, prefix),
            searched=(prefix,),
        )

    def __init__(self, fields: FieldsConfig) -> None:
        self.fields = fields
        self.whole_line, self.search_names = _searched_names(fields)
        self._level_re = _lenient_re(fields.level)
        self._status_re = _lenient_re(fields.status)

    @staticmethod
    def _lenient(regex: re.Pattern[bytes] | None, text: bytes) -> Any:
        if regex is None:
            return None
        m = regex.search(text)
        if m is None:
            return None
        if m.group(1) is not None:
            return m.group(1).decode("utf-8", "replace")
        number = m.group(2).decode()
        return float(number) if "." in number else int(number)


def _lenient_re(name: str | None) -> re.Pattern[bytes] | None:
    if not name:
        return None
    key = re.escape(name.encode())
    return re.compile(
        rb'(?:"' + key + rb'"\s*:|(?<![^\s])' + key + rb"=)\s*"
        rb'(?:"((?:[^"\\\n]|\\.)*)"|(-?\d+(?:\.\d+)?)(?![\w.]))'
    )


def json_lines_array(buf: bytes) -> bytearray:
    """The complete lines of ``buf`` as one JSON array, for one msgspec decode of a chunk.

    A blank line or two values on one line make it invalid, so when it decodes, each
    element is exactly one line.
    """
    array = bytearray(len(buf) + 1)
    array[0] = 0x5B  # [
    array[1:] = buf.replace(b"\n", b",")
    array[-1] = 0x5D  # ]
    return array


def may_have_overlong_line(buf: bytes, limit: int) -> bool:
    """Whether a line of ``buf`` (complete lines) may be longer than ``limit``: False means
    none is (every window of half the limit holds a newline)."""
    n = len(buf)
    if n <= limit:
        return False
    half = max(limit // 2, 1)
    find = buf.find
    return any(find(b"\n", p, p + half) < 0 for p in range(0, n, half))


def _raw_text(value: Any) -> bytes:
    return bytes(value) if isinstance(value, msgspec.Raw) else msgspec.json.encode(value)


class JsonParser(Parser):
    """One JSON object per line; only the needed keys are decoded."""

    def __init__(self, fields: FieldsConfig) -> None:
        super().__init__(fields)
        self.rtype = json_record_type(fields)
        self.decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(self.rtype.struct)
        attrs = self.rtype.search_attrs
        getter = attrgetter(*attrs) if attrs else (lambda rec: ())
        self._get_search: Callable[[Any], tuple[Any, ...]] = (
            getter if len(attrs) != 1 else (lambda rec: (getter(rec),))
        )

    def texts(self, rec: Any) -> tuple[bytes, ...]:
        """The searched texts of a decoded Struct (fields mode; non-empty ones)."""
        return tuple(t for t in map(_raw_text, self._get_search(rec)) if t)

    def parse(self, line: bytes) -> Record | None:
        try:
            rec = self.decoder.decode(line)
        except _DECODE_ERRORS:
            return None
        return self.record(rec, line)

    def record(self, rec: Any, line: bytes) -> Record:
        """A :class:`Record` from a decoded Struct (also used by the chunk path)."""
        rtype = self.rtype
        return Record(
            level=getattr(rec, rtype.level_attr) if rtype.has_level else None,
            status=getattr(rec, rtype.status_attr) if rtype.has_status else None,
            searched=(line,) if rtype.whole_line else self.texts(rec),
        )


_LOGFMT_TOKEN = re.compile(rb'[ \t]*([^ \t="]+)(?:=("(?:[^"\\]|\\.)*"|[^ \t"]*))?')
_LOGFMT_ESCAPE = re.compile(rb"\\(.)")


def _unquote(value: bytes) -> bytes:
    if value[:1] == b'"':
        return _LOGFMT_ESCAPE.sub(rb"\1", value[1:-1])
    return value


def logfmt_pairs(line: bytes) -> dict[bytes, bytes] | None:
    """The ``key=value`` pairs of a logfmt line (values as written; a repeated key: the last),
    or None when the line is not a sequence of such tokens."""
    pairs: dict[bytes, bytes] = {}
    pos, n = 0, len(line)
    while pos < n:
        m = _LOGFMT_TOKEN.match(line, pos)
        if m is None:
            if line[pos:].strip(b" \t\r"):
                return None
            break
        if m.group(2) is not None:
            pairs[m.group(1)] = m.group(2)
        pos = m.end()
    return pairs


def logfmt_value(pairs: dict[bytes, bytes], name: str | None) -> str | None:
    """The unquoted text of one key of :func:`logfmt_pairs`, or None."""
    if not name:
        return None
    raw = pairs.get(name.encode())
    return None if raw is None else _unquote(raw).decode("utf-8", "replace")


class LogfmtParser(Parser):
    """``key=value key2="quoted value" flag`` lines."""

    def parse(self, line: bytes) -> Record | None:
        pairs = logfmt_pairs(line)
        if not pairs:
            return None
        return Record(
            level=logfmt_value(pairs, self.fields.level),
            status=logfmt_value(pairs, self.fields.status),
            searched=(line,)
            if self.whole_line
            else tuple(pairs[k] for k in (n.encode() for n in self.search_names) if pairs.get(k)),
        )


class TextParser(Parser):
    """A regex with named groups (``level``, ``status``, message and search fields)."""

    def __init__(self, fields: FieldsConfig, regex: str) -> None:
        super().__init__(fields)
        self.regex = re.compile(regex)

    def parse(self, line: bytes) -> Record | None:
        m = self.regex.search(line.decode("utf-8"))
        if m is None:
            return None
        groups = m.groupdict()
        return Record(
            level=groups.get(self.fields.level) if self.fields.level else None,
            status=groups.get(self.fields.status) if self.fields.status else None,
            searched=(line,)
            if self.whole_line
            else tuple(g.encode() for g in (groups.get(k) for k in self.search_names) if g),
        )


def make_parser(fmt: Format, fields: FieldsConfig, regex: str | None = None) -> Parser:
    """The parser for a source's format."""
    if fmt == "json":
        return JsonParser(fields)
    if fmt == "logfmt":
        return LogfmtParser(fields)
    if regex is None:
        raise ValueError("format text needs a regex")
    return TextParser(fields, regex)
