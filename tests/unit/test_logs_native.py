"""Differential tests: the C chunk path (``_fastscan``) agrees with ``classify_line``.

``Classifier.classify_line`` defines the semantics; ``scan()`` with ``native=True`` lets the
C code classify the lines it finds plain and hands every other line to ``classify_line``.
Each test compares counts and samples of ``scan()`` with what the per-line path gives, line
by line, on generated nasty JSON and on hand-picked edge cases.

Without the extension these tests are skipped, unless ``MIGRATION_WATCH_REQUIRE_NATIVE=1``
(CI), where they fail.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from migration_watch.logs import classify as classify_module
from migration_watch.logs.classify import (
    ERROR,
    FALLBACK,
    LEGACY_ERROR,
    LEGACY_REFERENCE,
    NEW_REFERENCE,
    PARSE_ERROR,
    TRUNCATED,
    Classifier,
    Counts,
    Samples,
)
from migration_watch.logs.config import ClassesConfig, FieldsConfig

REQUIRE_ENV = "MIGRATION_WATCH_REQUIRE_NATIVE"


@pytest.fixture(autouse=True, scope="module")
def _native_built() -> None:
    if vars(classify_module).get("_fastscan") is None:
        message = "the C extension migration_watch.logs._fastscan is not built"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{message} ({REQUIRE_ENV}=1)")
        pytest.skip(message)


# --------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class Config:
    legacy: str = "customer_id"
    new: str = "organization_id"
    classes: ClassesConfig = field(default_factory=ClassesConfig)
    fields: FieldsConfig = field(default_factory=FieldsConfig)
    max_line_bytes: int = 300


_OWN_CLASSES = ClassesConfig(
    error_levels=("error", "warn", "érreur", 50, 60, 40, 0, -1),
    error_status=400,
    exclude=(),
    fallback=(),
    fallback_requires_legacy=False,
)

CONFIGS: dict[str, Config] = {
    "default": Config(),
    "default-long": Config(max_line_bytes=100 * 1024),
    "msg": Config(fields=FieldsConfig(message="msg")),
    "fields": Config(fields=FieldsConfig(message="msg", search=("sql", "url", "payload"))),
    "level-searched": Config(fields=FieldsConfig(message="msg", search=("level", "msg"))),
    "status-searched": Config(fields=FieldsConfig(message=None, search=("status", "payload"))),
    "level-is-message": Config(fields=FieldsConfig(level="msg", message="msg", search=())),
    "nothing-searched": Config(fields=FieldsConfig(message=None, search=())),
    "no-status": Config(fields=FieldsConfig(status=None)),
    "no-level": Config(fields=FieldsConfig(level=None)),
    "no-keys": Config(fields=FieldsConfig(level=None, status=None)),
    "own-classes": Config(classes=_OWN_CLASSES, fields=FieldsConfig(message="msg")),
    "own-classes-whole": Config(classes=_OWN_CLASSES),
    "no-error-status": Config(classes=ClassesConfig(error_status=None)),
    "fallback-any": Config(classes=ClassesConfig(fallback_requires_legacy=False)),
    "fallback-any-fields": Config(
        classes=ClassesConfig(fallback_requires_legacy=False),
        fields=FieldsConfig(message="msg", search=("sql", "url")),
    ),
    "one-byte-patterns": Config(
        classes=ClassesConfig(
            error_levels=("50", 30), exclude=("Z",), fallback=("!", "back"), error_status=599
        ),
    ),
    "short-columns": Config(legacy="cid", new="org_id"),
    "two-byte-columns": Config(legacy="id", new="ab", fields=FieldsConfig(message="msg")),
    "one-byte-columns": Config(legacy="c", new="o"),
    "one-byte-columns-fields": Config(
        legacy="c", new="o", fields=FieldsConfig(message="msg", search=("level", "sql"))
    ),
    "mixed-columns": Config(legacy="customer_id", new="o"),
}


@cache
def classifier(name: str, *, native: bool | None = True, fast: bool = True) -> Classifier:
    cfg = CONFIGS[name]
    made = Classifier(
        cfg.legacy,
        cfg.new,
        cfg.classes,
        fields=cfg.fields,
        max_line_bytes=cfg.max_line_bytes,
        native=native,
        fast=fast,
    )
    if native:
        assert made.native, f"config {name} should use the C path"
    return made


# --------------------------------------------------------------------------- comparison

_COUNT_FLAGS = (
    ("error", ERROR),
    ("legacy_reference", LEGACY_REFERENCE),
    ("new_reference", NEW_REFERENCE),
    ("legacy_error", LEGACY_ERROR),
    ("fallback", FALLBACK),
    ("parse_errors", PARSE_ERROR),
    ("truncated", TRUNCATED),
)


def flags_of(counts: Counts) -> int:
    """The flags of a single counted line."""
    assert counts.lines == 1
    out = 0
    for name, flag in _COUNT_FLAGS:
        value = getattr(counts, name)
        assert value in (0, 1), counts
        if value:
            out |= flag
    return out


def line_spans(buf: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int]]:
    """``(start, newline offset)`` of each complete line of ``buf[start:end]``."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        e = buf.index(b"\n", pos, end)
        yield pos, e
        pos = e + 1


def raw_samples(samples: Samples) -> dict[str, list[bytes]]:
    return {kind: list(lines) for kind, lines in samples._lines.items()}


def reference(
    c: Classifier, buf: bytes, start: int = 0, end: int | None = None, per_kind: int = 3
) -> tuple[Counts, Samples]:
    """What the per-line path gives for the lines of ``buf[start:end]``."""
    counts, samples = Counts(), Samples(per_kind=per_kind)
    for s, e in line_spans(buf, start, end):
        line = buf[s:e]
        flags = c.classify_line(line)
        counts.add_line(flags, len(line) + 1)
        samples.add_flags(flags, line)
    return counts, samples


def native_is_plain(c: Classifier, buf: bytes, s: int, e: int) -> bool:
    """Whether the C code classified the line ``buf[s:e]`` itself."""
    assert c._native is not None
    stop = c._native.scan(buf, s, e + 1, 0)[0]
    return bool(stop == e + 1)


def check(name: str, buf: bytes, start: int = 0, end: int | None = None, per_kind: int = 3) -> None:
    """The C path agrees with the per-line path on ``buf[start:end]``: each line (scanned in
    place, so the bytes after it are the real ones) and the whole range (counts, samples)."""
    c = classifier(name)
    for s, e in line_spans(buf, start, end):
        line = buf[s:e]
        want = c.classify_line(line) & 0x7F
        got_counts = Counts()
        c.scan(buf, got_counts, start=s, end=e + 1)
        got = flags_of(got_counts)
        assert got_counts.bytes == e - s + 1
        assert got == want, (
            f"config {name!r}: line {line!r}: classify_line gives {want:#x}, "
            f"the C path {got:#x} (plain for C: {native_is_plain(c, buf, s, e)})"
        )
    want_counts, want_samples = reference(c, buf, start, end, per_kind)
    got_counts, got_samples = Counts(), Samples(per_kind=per_kind)
    c.scan(buf, got_counts, got_samples, start=start, end=end)
    assert got_counts == want_counts, name
    assert raw_samples(got_samples) == raw_samples(want_samples), name
    assert got_samples.snapshot() == want_samples.snapshot(), name


# --------------------------------------------------------------------------- strategies

COLUMNS = [b"customer_id", b"organization_id", b"cid", b"org_id", b"c", b"o", b"id", b"ab"]
# Valid inside a JSON string.
CLEAN_FRAGMENTS = [
    *COLUMNS,
    *(b"a", b"Z", b"9", b"_", b"=", b".", b" ", b"'", b"-", b"(", b",", b":", b"{", b"[", b"!"),
    *(b'\\"', b"\\n", b"\\t", b"\\r", b"\\b", b"\\f", b"\\\\", b"\\/", b"\\\\n", b"\\\\\\n"),
    *(b"\\u0041", b"\\u00e9", b"\\u005f", b"\\u00eb", b"\\u002f", b"\\u0000", b"\\u001F"),
    *(b"\\u0063", b"\\ud83d\\ude00", b"\\uD83D\\uDE00", b"\\u2028"),
    *(b"\xc3\xa9", b"\xe6\x97\xa5", b"\xf0\x9f\x98\x80", b"\xef\xbf\xbf", b"\x7f"),
    *(b"eq.42", b"WHERE t.", b" = $1", b"select * from orders", b"error", b"50", b"null"),
    *(b"woocommerce", b"WooCommerce", b"/wp-json/wc/", b"\\/wp-json\\/wc\\/", b"/wp-json/"),
    *(b"fell back", b"Falling back", b"fallback", b"fall back", b"falling", b"back"),
    # same length and first/last bytes as a pattern up to ASCII case (or | 0x20): no match
    *(b"WOOcommerce", b"wOOCOMMERCE", b"FELL BACK", b"FALLBACK", b"fallBack", b"fELL bACK"),
    *(b"|/wp-json|/wc|/", b"/WP-JSON/WC/", b"Fell back", b"falling Back"),
]
# Make the string (or the line) invalid, or at least not plain for the C code.
NASTY_FRAGMENTS = [
    *(b"\\ud800", b"\\udc00", b"\\ud800\\u0041", b"\\ud800\\ud800", b"\\uDBFF", b"\\x"),
    *(b"\\u12", b"\\u12G4", b"\\", b"\\U0041", b"\\'", b'"', b"\t", b"\r", b"\x00", b"\x01"),
    *(b"\x1f", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\x80"),
    *(b"\xe6\x97", b"\xf0\x9f\x98"),
]

clean_fragment = st.sampled_from(CLEAN_FRAGMENTS)
any_fragment = st.one_of(
    clean_fragment,
    clean_fragment,
    st.sampled_from(NASTY_FRAGMENTS),
    st.binary(max_size=3),
    st.text(max_size=3).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


def _quoted(body: bytes) -> bytes:
    return b'"' + body + b'"'


clean_string = st.lists(clean_fragment, max_size=8).map(b"".join).map(_quoted)
nasty_string = st.lists(any_fragment, min_size=1, max_size=8).map(b"".join).map(_quoted)

CLEAN_NUMBERS = [b"0", b"1", b"-1", b"30", b"50", b"60", b"500", b"-7", b"0.5", b"-1.5e-7"]
CLEAN_NUMBERS += [b"1e5", b"1E+5", b"2e-05", b"1e99", b"123456789012345678", b"-0.0", b"0e0"]
CLEAN_NUMBERS += [b"-123456789012345678", b"0.000000000000000000000000000001", b"1.25E2"]
NASTY_NUMBERS = [b"-0", b"01", b"1.", b".5", b"1e400", b"1e100", b"1e", b"1e+", b"-", b"+1"]
NASTY_NUMBERS += [b"1234567890123456789", b"99999999999999999999999", b"NaN", b"Infinity"]
NASTY_NUMBERS += [b"0x10", b"1_000", b"- 1", b"1.5.5", b"00", b"-01"]
clean_number = st.one_of(
    st.sampled_from(CLEAN_NUMBERS),
    st.integers(-(10**18) + 1, 10**18 - 1).map(lambda v: str(v).encode()),
    st.floats(-1e90, 1e90).map(lambda v: repr(v if abs(v) > 1e-90 else 0.0).encode()),
)
nasty_number = st.one_of(
    st.sampled_from(NASTY_NUMBERS),
    st.floats().map(lambda v: repr(v).encode()),
    st.integers(10**18, 10**30).map(lambda v: str(v).encode()),
)
clean_literal = st.sampled_from([b"true", b"false", b"null"])
nasty_literal = st.sampled_from([b"tru", b"nul", b"True", b"nulls", b"undefined", b"'x'"])

CLEAN_WS = [b"", b"", b"", b"", b" ", b"\t", b"\r", b" \t\r  "]
NASTY_WS = [b"\x0c", b"\x0b", b"\xc2\xa0", b"\x00"]
clean_ws = st.sampled_from(CLEAN_WS)
any_ws = st.one_of(clean_ws, clean_ws, clean_ws, st.sampled_from(NASTY_WS))

LEVELS = [b'"error"', b'"ERROR"', b'"Error"', b'"eRRor"', b'"50"', b"50", b"60", b"40", b"30"]
LEVELS += [b'"warn"', b'"info"', b'"fatal"', b"null", b'"\xc3\xa9rreur"', b'"\xc3\x89RREUR"']
LEVELS += [b'"\xc3\x89rreur"', b'"customer_id"', b'"c o"', b'"\x7fcustomer_id"', b"0", b"-1"]
LEVELS += [b'""', b'"30"', b'"null"', b"123456789012345678"]
NASTY_LEVELS = [b"50.0", b"5e1", b"true", b"false", b'{"x":1}', b"[1]", b"-0", b'"err\\u006fr"']
NASTY_LEVELS += [b'"error\\n"', b'"50 "', b"1234567890123456789", b"[]", b"{}", b'"\\u0063"']
STATUSES = [b"500", b'"500"', b'"0500"', b"599", b"600", b"499", b'"5xx"', b"-500", b"404"]
STATUSES += [b'"404"', b"null", b"200", b'"599"', b'"600"', b'" 500"', b'"-50"', b"0", b'"50"']
NASTY_STATUSES = [b"500.0", b"5e2", b"true", b'"\\u0035\\u0030\\u0030"', b"[500]", b'"500\\r"']


def _pick(clean: list[bytes], nasty: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.sampled_from(clean), st.sampled_from(clean), st.sampled_from(nasty))


level_value = _pick(LEVELS, NASTY_LEVELS)
status_value = _pick(STATUSES, NASTY_STATUSES)


def _deep(depth: int, kind: int) -> bytes:
    if kind == 0:
        return b"[" * depth + b"1" + b"]" * depth
    if kind == 1:
        return b'{"a":' * depth + b'"customer_id"' + b"}" * depth
    return b"[{" * (depth // 2) + b'"k":[]' + b"}]" * (depth // 2)


deep_value = st.builds(
    _deep, st.sampled_from([2, 30, 61, 62, 63, 64, 65, 66, 70, 130]), st.integers(0, 2)
)


def _array(items: list[bytes]) -> bytes:
    return b"[" + b",".join(items) + b"]"


def _object(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return b"{" + b",".join(k + b":" + v for k, v in pairs) + b"}"


clean_scalar = st.one_of(clean_string, clean_string, clean_number, clean_literal)
nasty_scalar = st.one_of(nasty_string, nasty_number, nasty_literal)
key_string = st.one_of(
    st.sampled_from([b'"level"', b'"msg"', b'"sql"', b'"a"', b'"customer_id"', b'""']),
    clean_string,
)  # keys of nested objects: escapes are fine there


def _json_values(scalar: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.recursive(
        scalar,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3).map(_array),
            st.lists(st.tuples(key_string, inner), max_size=3).map(_object),
        ),
        max_leaves=6,
    )


clean_value = _json_values(clean_scalar)
any_value = st.one_of(
    clean_value, clean_value, _json_values(st.one_of(clean_scalar, nasty_scalar)), deep_value
)

KEYS = [b"level", b"status", b"msg", b"message", b"sql", b"url", b"payload", b"time", b"other"]
KEYS += [b"customer_id", b"Level", b"levels", b"lvl", b"\xc3\xa9", b"req", b"err"]
ESCAPED_KEYS = [b"\\u006cevel", b"lev\\u0065l", b"m\\u0073g", b"sq\\u006c", b"st\\u0061tus"]
ESCAPED_KEYS += [b"\\u0070ayload", b"a\\u0062", b"\\n", b'ms\\"g', b"u\\/rl"]


def _value_for(key: bytes, clean: bool) -> st.SearchStrategy[bytes]:
    if key == b"level":
        return st.sampled_from(LEVELS) if clean else st.one_of(level_value, any_value)
    if key == b"status":
        return st.sampled_from(STATUSES) if clean else st.one_of(status_value, any_value)
    if key in (b"msg", b"message", b"sql", b"url", b"payload"):
        if clean:
            return st.one_of(clean_string, clean_string, clean_string, clean_value)
        return st.one_of(clean_string, nasty_string, any_value)
    return clean_value if clean else any_value


key_name = st.one_of(
    st.sampled_from(KEYS),
    st.text("abz_09 .-\xe9\u65e5", max_size=5).map(str.encode),
)
nasty_key_name = st.one_of(
    key_name,
    st.sampled_from(ESCAPED_KEYS),
    st.lists(clean_fragment, max_size=3).map(b"".join),
)


@st.composite
def members(draw: st.DrawFn, clean: bool) -> bytes:
    key = draw(key_name if clean else nasty_key_name)
    ws = clean_ws if clean else any_ws
    value = draw(_value_for(key, clean))
    return b'"' + key + b'"' + draw(ws) + b":" + draw(ws) + value


CLEAN_TRAILS = [b"", b"", b"", b" ", b"\r", b"\t \r"]
NASTY_TRAILS = [*CLEAN_TRAILS, b"x", b"{}", b"}", b",", b"]", b'{"level":"error"}', b" null"]
NASTY_TRAILS += [b"\x00", b"\xff", b"\r\r"]


@st.composite
def object_lines(draw: st.DrawFn, clean: bool) -> bytes:
    """One JSON object (``clean``: plain for the C code, mostly), possibly broken."""
    ws = clean_ws if clean else any_ws
    parts = draw(st.lists(members(clean), max_size=6))
    sep = [draw(ws) + b"," + draw(ws) for _ in parts]
    body = b"".join(p + s for p, s in zip(parts, sep, strict=True))
    if parts:
        body = body[: -len(sep[-1])]
        if not clean and draw(st.integers(0, 7)) == 0:
            body += b","  # trailing comma
    obj = b"{" + draw(ws) + body + draw(ws) + b"}"
    lead = draw(st.sampled_from([b"", b"", b"", b" ", b"\t", b"\r"]))
    trail = draw(st.sampled_from(CLEAN_TRAILS if clean else NASTY_TRAILS))
    return (lead + obj + trail).replace(b"\n", b" ")


OTHER_LINES = [b"", b" ", b"\t", b"\r", b" \t \r", b"[]", b"[1,2]", b'"customer_id"', b"50"]
OTHER_LINES += [b"null", b"{", b"}", b"customer_id=eq.42 level=error", b"\xef\xbb\xbf{}", b"{}{}"]
OTHER_LINES += [b'{"level":"error"} {"msg":"customer_id"}', b"\x00", b"\x7f", b"{}\x7f"]


def _long_line(size: int, column: bytes, prefix: bytes) -> bytes:
    head = b'{"level":"error","status":500,"msg":"' + prefix
    filler = (b"x " * size)[: max(size - len(head) - len(column) - 2, 0)]
    return head + filler + column + b'"}'


long_lines = st.builds(
    _long_line,
    st.integers(250, 420),
    st.sampled_from([b"customer_id", b"c", b" fell back", b"\xc3\xa9"]),
    st.sampled_from([b"", b"organization_id ", b"\\n", b"woocommerce "]),
)

lines = st.one_of(
    object_lines(clean=True),
    object_lines(clean=True),
    object_lines(clean=True),
    object_lines(clean=False),
    object_lines(clean=False),
    st.sampled_from(OTHER_LINES),
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" ")),
    long_lines,
)


def join(parts: list[bytes], crlf: bool) -> bytes:
    return b"".join(p + (b"\r\n" if crlf else b"\n") for p in parts)


# --------------------------------------------------------------------------- generated


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    name=st.sampled_from(sorted(CONFIGS)),
    parts=st.lists(lines, max_size=12),
    crlf=st.booleans(),
    per_kind=st.sampled_from([3, 3, 0, 1, 50]),
)
def test_generated_lines_agree(name: str, parts: list[bytes], crlf: bool, per_kind: int) -> None:
    buf = join(parts, crlf)
    c = classifier(name)
    for s, e in line_spans(buf):
        event("plain for C" if native_is_plain(c, buf, s, e) else "not plain for C")
    check(name, buf, per_kind=per_kind)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["default", "fields", "level-searched", "one-byte-columns"]),
    before=st.lists(lines, max_size=5),
    inside=st.lists(lines, max_size=8),
    after=st.lists(lines, max_size=5),
    tail=st.sampled_from([b"", b'{"level":"error","msg":"customer_id', b"\r", b"x"]),
    crlf=st.booleans(),
)
def test_ranges_inside_a_bigger_buffer(
    name: str,
    before: list[bytes],
    inside: list[bytes],
    after: list[bytes],
    tail: bytes,
    crlf: bool,
) -> None:
    head = join(before, crlf)
    middle = join(inside, crlf)
    buf = head + middle + join(after, crlf) + tail  # the tail is a partial line
    start, end = len(head), len(head) + len(middle)
    check(name, buf, start, end)
    if not tail:
        check(name, buf, start)


# --------------------------------------------------------------------------- hand-picked

WORD_LEFTS = [b"", b"x", b"_", b"9", b"=", b".", b"\\n", b"\\\\n", b"\\\\\\n", b"\\t", b"\\/"]
WORD_LEFTS += [b"\\u0041", b"\\u00e9", b"\\u005f", b"\\u00eb", b"\\u002f", b"\\u001f", b"\\u2028"]
WORD_LEFTS += [b"\\ud83d\\ude00", b"\xc3\xa9", b"\x7f", b"\\\\u00e9", b"u00e9", b"\\u00E9"]
WORD_RIGHTS = [b"", b"s", b"=eq.42", b"\\n", b"_x", b"\xc3\xa9", b"\\u0041"]

EDGE_LINES: list[bytes] = [
    # levels and statuses
    b'{"level":"error","msg":"customer_id"}',
    b'{"level":"error","level":"info","msg":"customer_id"}',
    b'{"level":"info","level":"error"}',
    b'{"level":"error","level":{"x":1}}',
    b'{"level":{"x":1},"level":"error"}',
    *(b'{"level":' + v + b',"msg":"customer_id=eq.1"}' for v in LEVELS + NASTY_LEVELS),
    *(b'{"status":' + v + b',"msg":"organization_id"}' for v in STATUSES + NASTY_STATUSES),
    b'{"\\u006cevel":"error"}',
    b'{"lev\\u0065l":"error","level":"info"}',
    b'{"level":"info","\\u006cevel":"error"}',
    b'{"st\\u0061tus":500}',
    b'{"m\\u0073g":"customer_id"}',
    b'{"status":500,"status":200}',
    b'{"status":200,"status":"500"}',
    b'{"level" : "error" , "status"\t:\t500 }',
    b'{"level":"error",\r"msg":"customer_id"}\r',
    # word boundaries and escapes
    *(
        b'{"msg":"' + left + b"customer_id" + right + b'"}'
        for left in WORD_LEFTS
        for right in WORD_RIGHTS
    ),
    b'{"customer_id":42}',
    b'{"old_customer_id":42,"customer_ids":[1]}',
    b'{"sql":"SELECT * FROM t WHERE t.customer_id = $1","msg":"q"}',
    b'{"url":"/rest/v1/orders?organization_id=eq.7","msg":"ok"}',
    b'{"payload":{"customer_id":1},"msg":"x"}',
    b'{"payload":["organization_id"]}',
    b'{"payload":"\\"customer_id\\""}',
    b'{"other":"customer_id","msg":"nothing"}',
    # exclusions and fallbacks
    b'{"msg":"customer_id woocommerce"}',
    b'{"msg":"customer_id","url":"/wp-json/wc/v3/orders"}',
    b'{"msg":"customer_id","url":"\\/wp-json\\/wc\\/v3"}',
    b'{"msg":"customer_id","url":"\\/wp-json\\/wp\\/v2"}',
    b'{"msg":"customer_id WooCommerce fell back"}',
    b'{"msg":"fell back to customer_id"}',
    b'{"msg":"Falling back","sql":"customer_id"}',
    b'{"msg":"customer_id","sql":"fallback"}',
    b'{"msg":"fell back"}',
    b'{"msg":"organization_id missing, Falling back"}',
    b'{"msg":"fell back!","level":"error","customer_id":1}',
    b'{"msg":"customer_id Z"}',
    b'{"level":"error","msg":"c o id ab Z !"}',
    # bytes
    b'{"msg":"customer_id\xff"}',
    b'{"msg":"customer_id\xc3"}',
    b'{"msg":"customer_id\xed\xa0\x80"}',
    b'{"msg":"customer_id\xf4\x90\x80\x80"}',
    b'{"msg":"customer_id\xc0\xaf"}',
    b'{"msg":"customer_id\x00"}',
    b'{"msg":"customer_id"}\x00',
    b'{"msg":"customer_id\x01"}',
    b'{"msg":"customer_id\t"}',
    b'{"msg":"customer_id\x7f"}',
    b'{"msg":"\xe6\x97\xa5\xe6\x9c\xac customer_id \xf0\x9f\x98\x80"}',
    b'{"\xc3\xa9":"customer_id"}',
    b'{"msg":"customer_id \\ud800"}',
    b'{"msg":"customer_id \\udc00"}',
    b'{"msg":"customer_id \\ud800\\ud800"}',
    b'{"msg":"customer_id \\ud83d\\ude00"}',
    b'{"msg":"customer_id \\uD83D\\uDE00"}',
    b'{"msg":"customer_id \\u0000"}',
    b'{"msg":"customer_id \\x"}',
    b'{"msg":"customer_id \\u12"}',
    # numbers
    *(
        b'{"n":' + v + b',"msg":"customer_id"}'
        for v in [*CLEAN_NUMBERS, *NASTY_NUMBERS, b"1" * 19, b"1" * 18, b"-" + b"9" * 18]
    ),
    b'{"n":1' + b"0" * 400 + b',"msg":"customer_id"}',
    b'{"n":0.' + b"1" * 400 + b',"msg":"customer_id"}',
    # nesting
    *(
        b'{"payload":' + _deep(depth, kind) + b',"msg":"organization_id"}'
        for depth in (62, 63, 64, 65, 70)
        for kind in (0, 1, 2)
    ),
    *(b'{"level":' + _deep(depth, 0) + b"}" for depth in (1, 63, 64, 70)),
    # structure
    b'{"a":1} x',
    b"{}{}",
    b"{} {}",
    b'{"a":1,}',
    b'{"a":1,,"b":2}',
    b'{"a"1}',
    b'{"a":}',
    b"{,}",
    b'{"a":[1,]}',
    b'{"a":[1 2]}',
    b'{"a":{"b"}}',
    b'  {"msg":"customer_id"}  ',
    b'\t{"msg":"customer_id"}\r',
    b'{"msg":"customer_id"}\r\r',
    b'{"msg":"customer_id"}\x0c',
    b'\x0c{"msg":"customer_id"}',
    b'{\x0c"msg":"customer_id"}',
    b'{"msg":"customer_id"\r}',
    b"{}",
    b"{ }",
    b'{"":1}',
    b'{"":"customer_id"}',
    b"[]",
    b'["customer_id"]',
    b'"customer_id"',
    b"null",
    b"",
    b" ",
    b"\t",
    b"\r",
    b" \t\r",
    b"\r\r",
    b"customer_id",
    b"level=error customer_id=1",
    b"\xef\xbb\xbf{}",
]


@pytest.mark.parametrize(
    "name",
    [
        "default",
        "msg",
        "fields",
        "level-searched",
        "status-searched",
        "level-is-message",
        "no-keys",
        "own-classes",
        "one-byte-patterns",
        "one-byte-columns",
        "one-byte-columns-fields",
        "mixed-columns",
        "fallback-any-fields",
    ],
)
def test_edge_lines_agree(name: str) -> None:
    # Each line alone, between plain lines, and in one buffer with all the others.
    for line in EDGE_LINES:
        check(name, line + b"\n")
        check(name, b'{"msg":"a"}\n' + line + b'\r\n{"msg":"customer_id"}\n')
    check(name, join(EDGE_LINES, crlf=False))
    check(name, join(EDGE_LINES, crlf=True), per_kind=100)


def test_lines_around_max_line_bytes() -> None:
    for size in range(290, 311):
        for end in (b"", b"\r"):
            line = _long_line(size - len(end), b"customer_id", b"")
            assert len(line + end) == size
            for name in ("default", "fields", "one-byte-columns"):
                check(name, line + end + b"\n")
                check(name, b"{}\n" + line + end + b"\n{}\n")


def _sized(template: int, size: int) -> bytes | None:
    """A line of exactly ``size`` bytes of one kind, or None when that size cannot hold it."""
    if template == 0:
        return b" " * size
    if template == 1:
        return b"x" * size
    # {"msg":"...customer_id"} and variants ending near the line's end
    heads = {
        2: (b'{"msg":"', b'"}', b"customer_id"),
        3: (b'{"level":"error","msg":"', b'"}', b" organization_id"),
        4: (b'{"msg":"', b"", b"customer_id"),  # unterminated string
        5: (b'{"msg":"', b'\\n"}', b"c o"),
        6: (b'{"msg":"', b'"}', b"\xc3\xa9"),
        7: (b'{"msg":"', b'"}', b"\xc3"),  # invalid UTF-8 at the end
        8: (b'{"msg":"', b'"} x', b"customer_id"),  # trailing garbage
        9: (b'{"n":', b"}", b"1"),
        10: (b'{"msg":"', b'"}\r', b"fell back customer_id"),
        11: (b'{"level":50,"msg":"', b'"}', b"\\ud800"),  # lone surrogate
        12: (b'{"level":true,"msg":"', b'"}', b"customer_id"),
        13: (b"", b'{"customer_id":1}', b""),
    }
    head, tail, word = heads[template]
    room = size - len(head) - len(tail)
    if room < 0:
        return None
    if template == 9:
        body = (b"1" * room)[:room]
    elif template == 13:
        body = b" " * room
    else:
        body = (b"." * room + word)[-room:] if room else b""
    line = head + body + tail
    assert len(line) == size
    return line


def test_lines_at_the_very_end_of_the_buffer() -> None:
    """The C code classifies lines near the end of the bytes object on a padded copy."""
    prefix = b'{"msg":"organization_id"}\n'
    for name in ("default", "fields", "one-byte-columns", "short-columns"):
        c = classifier(name)
        plain = 0
        for template in range(14):
            for size in range(81):
                line = _sized(template, size)
                if line is None:
                    continue
                plain += native_is_plain(c, line + b"\n", 0, len(line))
                check(name, line + b"\n")
                check(name, prefix + line + b"\r\n")
                # a range that ends with the line, with a partial line after it
                buf = prefix + line + b"\n" + b'{"msg":"customer_id'
                check(name, buf, len(prefix), len(prefix) + len(line) + 1)
        assert plain > 300, (name, plain)  # the padded copy is really exercised


def test_plain_lines_are_classified_by_c() -> None:
    """Realistic lines must not all fall back to Python (the point of the C path)."""
    plain = [
        b'{"level":30,"time":1761210000123,"msg":"request completed","res":{"statusCode":200}}',
        b'{"level":"error","status":500,"msg":"column \\"customer_id\\" does not exist"}',
        b'{"level":"info","url":"/rest/v1/orders?organization_id=eq.7","msg":"\xc3\xa9t\xc3\xa9"}',
        b'{"level":"warn","msg":"fell back to customer_id","n":-1.5e-7,"x":[1,{"a":null}]}',
        b'{"payload":' + _deep(62, 0) + b',"msg":"\\ud83d\\ude00 customer_id"}',
        b' {"level":"ERROR" ,\t"status":"503"}\r',
    ]
    for name in ("default", "msg", "fields", "level-searched", "one-byte-columns"):
        c = classifier(name)
        for line in plain:
            for buf in (line + b"\n", line + b"\n" + b"{}\n" * 20):
                assert native_is_plain(c, buf, 0, len(line)), (name, line)
        check(name, join(plain, crlf=False))


# --------------------------------------------------------------------------- three paths

REALISTIC = [
    b'{"level":30,"time":%d,"pid":7,"hostname":"web-1","req":{"method":"GET","url":'
    b'"/rest/v1/orders?organization_id=eq.%d&select=*"},"res":{"statusCode":200},'
    b'"responseTime":35,"msg":"request completed"}',
    b'{"level":50,"time":%d,"msg":"query failed for customer_id=%d","err":{"type":"Error"}}',
    b'{"timestamp":"2025-10-23T10:00:00Z","level":"info","status":200,"method":"GET",'
    b'"url":"/rest/v1/invoices?customer_id=eq.%d&limit=%d","msg":"ok"}',
    b'{"timestamp":"2025-10-23T10:00:01Z","level":"ERROR","status":500,"message":'
    b'"column \\"customer_id\\" does not exist","sql":"SELECT * FROM orders WHERE '
    b'customer_id = $1","n":%d,"m":%d}',
    b'{"level":"info","url":"/wp-json/wc/v3/orders?customer_id=%d","msg":"woocommerce %d"}',
    b'{"level":"warn","msg":"organization_id %d missing, fell back to customer_id %d"}',
    b'{"level":"info","status":"404","msg":"not found \xc3\xa9 %d \\u00e9 %d"}',
]
SEED_LINES = [*EDGE_LINES, *(r % (1761210000123, 42) for r in REALISTIC)]
PROBLEMS = [
    b'{"level":"error","msg":"customer_id"',
    b"",
    b"   ",
    b'{"msg":"customer_id \xff"}',
    b'{"msg":"customer_id \\ud800"}',
    b'{"level":true,"msg":"customer_id"}',
    b'{"level":50.0,"status":500.0}',
    b'{"payload":' + _deep(70, 1) + b"}",
    b'{"level":"error"} {"msg":"customer_id"}',
    b'{"n":12345678901234567890,"msg":"organization_id"}',
    b'{"\\u006cevel":"error","msg":"customer_id"}',
    b'{"level":"error","msg":"' + b"customer_id " * 10_000 + b'"}',  # truncated
]


def _realistic_buffer(seed: int, size: int) -> bytes:
    """About ``size`` bytes of realistic lines, each problem line twice at random places."""
    rng = random.Random(seed)
    out: list[bytes] = []
    total = sum(len(p) + 1 for p in PROBLEMS) * 2
    while total < size:
        line = rng.choice(REALISTIC) % (rng.randrange(10**12), rng.randrange(1000))
        out.append(line + (b"\r\n" if rng.random() < 0.01 else b"\n"))
        total += len(out[-1])
    for problem in PROBLEMS * 2:
        out.insert(rng.randrange(len(out) + 1), problem + b"\n")
    return b"".join(out)


@pytest.mark.parametrize("name", ["default-long", "msg", "fields", "own-classes"])
def test_three_paths_agree_on_a_big_buffer(name: str) -> None:
    buf = _realistic_buffer(7, 1024 * 1024)
    results = []
    for native, fast in ((True, True), (False, True), (None, False)):
        c = classifier(name, native=native, fast=fast)
        assert c.native is bool(native)
        counts, samples = Counts(), Samples(per_kind=3)
        c.scan(buf, counts, samples)
        results.append((counts, raw_samples(samples), samples.snapshot()))
    assert results[0] == results[1], name
    assert results[0] == results[2], name
    counts = results[0][0]
    assert counts.lines == buf.count(b"\n")
    assert counts.bytes == len(buf)
    assert counts.parse_errors > 0
    assert counts.truncated >= 2


# --------------------------------------------------------------------------- mutations

EDIT_FRAGMENTS = [*CLEAN_FRAGMENTS, *NASTY_FRAGMENTS, *LEVELS, *STATUSES]
EDIT_FRAGMENTS += [b'"level":', b'"msg":', b'"status":', b",", b"{", b"}", b"[", b"]", b'"']


@st.composite
def mutated_lines(draw: st.DrawFn) -> bytes:
    """A hand-picked line with a few byte-level edits."""
    line = bytearray(draw(st.sampled_from(SEED_LINES)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(line)))
        op = draw(st.integers(0, 3))
        if op == 0:
            line[pos:pos] = draw(st.sampled_from(EDIT_FRAGMENTS))
        elif op == 1:
            del line[pos : pos + draw(st.integers(1, 3))]
        elif op == 2:
            line[pos:pos] = draw(st.binary(min_size=1, max_size=1))
        else:
            other = draw(st.integers(0, len(line)))
            line[pos:pos] = line[min(pos, other) : max(pos, other)][:40]
    return bytes(line).replace(b"\n", b" ")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(CONFIGS)),
    parts=st.lists(mutated_lines(), min_size=1, max_size=6),
    crlf=st.booleans(),
)
def test_mutated_lines_agree(name: str, parts: list[bytes], crlf: bool) -> None:
    check(name, join(parts, crlf))


# --------------------------------------------------------------------------- random configs

_KEY_NAMES = st.sampled_from(["level", "status", "msg", "sql", "url", "payload", "lvl", "\xe9"])
_PATTERNS = st.sampled_from(["back", "fell back", "Z", "!", "ab", "woocommerce", "/wp-json/wc/"])
_PATTERNS |= st.sampled_from(["/", "\\", "\xe9", '"', "customer", "_id", "null", "error"])
_LEVELS = st.one_of(
    st.sampled_from(["error", "ERROR", "\xe9rreur", "50", "warn", "null", "\xdf", "x y"]),
    st.integers(-100, 100),
    st.sampled_from([10**17, -(10**17)]),
)


@st.composite
def random_classifiers(draw: st.DrawFn) -> Classifier:
    legacy = draw(st.sampled_from(["customer_id", "cid", "c", "id", "ab", "\xe9", "a-b", "_id"]))
    new = draw(st.sampled_from(["organization_id", "org_id", "o", "b", "ll", "x.y"]))
    classes = ClassesConfig(
        error_levels=tuple(draw(st.lists(_LEVELS, max_size=5))),
        error_status=draw(st.sampled_from([None, 100, 400, 500, 599])),
        exclude=tuple(draw(st.lists(_PATTERNS, max_size=3))),
        fallback=tuple(draw(st.lists(_PATTERNS, max_size=3))),
        fallback_requires_legacy=draw(st.booleans()),
    )
    optional = st.none() | _KEY_NAMES
    fields = FieldsConfig(
        level=draw(optional),
        status=draw(optional),
        message=draw(optional),
        search=draw(st.just(("*",)) | st.lists(_KEY_NAMES, max_size=3).map(tuple)),
    )
    size = draw(st.sampled_from([64, 300, 100 * 1024]))
    return Classifier(legacy, new, classes, fields=fields, max_line_bytes=size, native=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    c=random_classifiers(),
    parts=st.lists(st.one_of(lines, mutated_lines()), max_size=10),
    crlf=st.booleans(),
)
def test_random_configurations_agree(c: Classifier, parts: list[bytes], crlf: bool) -> None:
    event("C path" if c.native else "no C path")
    buf = join(parts, crlf)
    want_counts, want_samples = reference(c, buf)
    counts, samples = Counts(), Samples(per_kind=3)
    c.scan(buf, counts, samples)
    assert counts == want_counts
    assert raw_samples(samples) == raw_samples(want_samples)


# --------------------------------------------------------------------------- discrepancies
# Minimal examples where the C path once behaved unlike the per-line path.


def test_empty_error_level_string_is_accepted() -> None:
    # ClassesConfig accepts "" as an error level and the per-line path counts {"level":""}
    # as an error; the C Scanner used to reject empty level strings, so Classifier() raised
    # "ValueError: empty level strings" (also with the default native=None).
    classes = ClassesConfig(error_levels=("", "error"))
    line = b'{"level":"","msg":"customer_id"}'
    python = Classifier("customer_id", "organization_id", classes, native=False)
    assert python.classify_line(line) & ERROR
    c = Classifier("customer_id", "organization_id", classes, native=True)
    counts = Counts()
    c.scan(line + b"\n", counts)
    assert flags_of(counts) == python.classify_line(line)


def test_more_than_1000_samples_per_kind() -> None:
    # Samples(per_kind=1001) works with the Python paths; the C scan() used to refuse more
    # than 1000 ("ValueError: bad range or sample count").
    buf = b'{"level":"error"}\n' * 3
    want_counts, want_samples = reference(classifier("default"), buf, per_kind=1001)
    counts, samples = Counts(), Samples(per_kind=1001)
    classifier("default").scan(buf, counts, samples)
    assert counts == want_counts
    assert raw_samples(samples) == raw_samples(want_samples)


# --------------------------------------------------------------------------- timestamps


TIME_VALUES = [b"1761210000000", b"1761210000", b"-5", b"0", b"1.5", b"1761210000.123", b"1e3"]
TIME_VALUES += [b'"2026-11-25T10:00:00Z"', b'"2026-11-25 10:00:00+01:00"', b'""', b"null"]
TIME_VALUES += [b'"\\u0032026-11-25"', b"true", b"[1]", b'{"t":1}', b"-0", b"12345678901234567890"]
TIME_VALUES += [b'"caf\xc3\xa9"', b"1E+2", b"0.1e-5", b"123456789012345678"]


@st.composite
def timestamp_lines(draw: st.DrawFn) -> bytes:
    """Lines with a "time" key (sometimes twice, escaped, or absent) among other members."""
    clean = draw(st.booleans())
    line = draw(object_lines(clean))
    if line.lstrip(b" \t\r")[:1] != b"{" or draw(st.integers(0, 5)) == 0:
        return line
    key = draw(st.sampled_from([b'"time"', b'"time"', b'"time"', b'"\\u0074ime"', b'"times"']))
    member = key + b":" + draw(st.sampled_from(TIME_VALUES))
    where = line.index(b"{") + 1
    sep = b"" if line[where:].lstrip(b" \t\r")[:1] == b"}" else b","
    line = line[:where] + member + sep + line[where:]
    if draw(st.integers(0, 4)) == 0:  # a duplicate key: the last one wins
        end = line.rindex(b"}")
        line = line[:end] + b',"time":' + draw(st.sampled_from(TIME_VALUES)) + line[end:]
    return line


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(timestamp_lines(), min_size=1, max_size=25), crlf=st.booleans())
def test_timestamp_values_match_msgspec_line_by_line(lines: list[bytes], crlf: bool) -> None:
    """The pre-deploy gate's timestamp reading in C gives what msgspec gives, value and type."""
    from migration_watch.logs.deploy import TimestampReader

    buf = (b"\r\n" if crlf else b"\n").join(lines) + b"\n"
    fields = FieldsConfig(timestamp="time")
    reader = TimestampReader("json", fields)
    assert reader._native_key == b"time"  # the C path is the one under test
    expected = [reader.line(line) for line in buf.split(b"\n")[:-1]]
    raw = [reader._line(line) for line in buf.split(b"\n")[:-1]]
    values = reader.values(buf)
    assert [(type(v), v) for v in values] == [(type(v), v) for v in raw]
    from migration_watch.logs.deploy import to_micros

    assert [to_micros(v) for v in values] == expected
    # The msgspec path (no C extension) agrees as well.
    reader._native_key = None
    assert [(type(v), v) for v in reader.values(buf)] == [(type(v), v) for v in raw]
