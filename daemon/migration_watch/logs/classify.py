"""Classification of log lines into the overlapping classes, per line and per chunk.

What is counted (the classes, the flags, :class:`~.counts.Counts`, :class:`~.counts.Samples`)
is in :mod:`.counts`, how names and patterns are found in lines in :mod:`.match`; both are
re-exported here.

Classes (a line may be in several; a line that fails to parse is in none):

* ``error``: the level is one of ``classes.error_levels`` (strings in lower, UPPER or
  Capitalized form; numbers as numbers or their decimal text), or the status is an HTTP
  status from ``classes.error_status`` to 599 (number or decimal text).
* ``legacy_reference`` / ``new_reference``: the column name occurs in the searched text
  (see :mod:`.parse`) as a whole identifier: not preceded or followed by ``[A-Za-z0-9_]``,
  a JSON escape sequence (``\\n``, ``\\u00e9``, …) counting as a separator. This covers
  PostgREST filters (``customer_id=eq.42``), SQL text (``WHERE t.customer_id = $1``) and JSON
  keys (``{"customer_id": 42}``), and not ``old_customer_id`` or ``customer_ids``. Case-sensitive.
  For ``legacy_reference`` the raw line must also contain none of ``classes.exclude``.
* ``legacy_error``: ``error`` and ``legacy_reference``.
* ``fallback``: the searched text contains one of ``classes.fallback`` (and, with
  ``fallback_requires_legacy``, the line is a ``legacy_reference``).

``lines``/``bytes`` count every line (newline included in bytes). Blank lines (only spaces,
tabs, CR) are counted there and nowhere else. ``truncated`` lines (longer than
``max_line_bytes``, CR included, newline excluded) are classified on their first
``max_line_bytes`` bytes (leniently, see :mod:`.parse`). For what a parse error is, see
:mod:`.parse`.

Speed: :meth:`Classifier.scan` takes a buffer of complete lines (about 1 MiB). For JSON,
when the C extension ``_fastscan`` is built (and ``MIGRATION_WATCH_PURE_PYTHON`` is not set),
it walks the buffer in C: each line is validated and classified there when it is "plain" (one
JSON object msgspec surely reads the same way, unescaped top-level keys, a level/status that is
a plain string, an integer or null, not overlong, not blank); at the first line that is not,
the C code stops and that line goes through :meth:`Classifier.classify_line`, then the C code
goes on after it. So the C code only has to be sure of what it counts; tests compare it with
the per-line path on generated adversarial lines. Without the extension, the buffer is
decoded at once with msgspec (only level, status and the searched fields), which
also validates every line, and finds the column names with ``bytes.find`` over the whole
buffer; only lines containing a column name get per-line Python work. A buffer where
anything unusual happens (a parse error, a blank or overlong line, several objects on one
line, invalid UTF-8) is bisected, and the pieces with the problem go through the per-line
path (:meth:`Classifier.classify_line`), which defines the semantics; tests check both
paths agree. The per-line path is also what logfmt and text sources use.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from itertools import compress
from operator import attrgetter
from typing import Any

import msgspec

from .config import ClassesConfig, FieldsConfig, Format, SourceConfig
from .counts import (
    BLANK,
    CLASSES,
    ERROR,
    FALLBACK,
    LEGACY_ERROR,
    LEGACY_REFERENCE,
    NEW_REFERENCE,
    PARSE_ERROR,
    SAMPLE_KINDS,
    TRUNCATED,
    Counts,
    Samples,
    redact,
)
from .match import NL, PatternSet, has_word, hit_ends, hit_lines
from .parse import (
    JsonParser,
    Parser,
    Record,
    json_lines_array,
    make_parser,
    may_have_overlong_line,
)

try:
    from . import _fastscan
except ImportError:  # built without a C compiler: the msgspec chunk path is used
    _fastscan = None  # type: ignore[assignment]

#: Set (to anything but "" or "0") to leave the C chunk path aside, e.g. to compare.
PURE_PYTHON_ENV = "MIGRATION_WATCH_PURE_PYTHON"

__all__ = [
    "BLANK",
    "CLASSES",
    "ERROR",
    "FALLBACK",
    "LEGACY_ERROR",
    "LEGACY_REFERENCE",
    "NEW_REFERENCE",
    "PARSE_ERROR",
    "SAMPLE_KINDS",
    "TRUNCATED",
    "Classifier",
    "Counts",
    "Samples",
    "native_available",
    "native_module",
    "redact",
]


def native_module() -> Any:
    """The C extension ``_fastscan`` when built and not switched off by ``PURE_PYTHON_ENV``,
    else None."""
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        return None
    return _fastscan


def native_available() -> bool:
    """Whether the C chunk path is used (see :func:`native_module`)."""
    return native_module() is not None


def _case_variants(value: str) -> set[str]:
    return {value, value.lower(), value.upper(), value.lower().capitalize()}


# --------------------------------------------------------------------------- classifier

_DECODE_FAILURES = (ValueError, RecursionError, UnicodeDecodeError, TypeError, MemoryError)
#: Pieces of a buffer smaller than this go straight to the per-line path.
_MIN_BISECT = 16 * 1024


class Classifier:
    """Classifies lines of one source format for one migration's columns."""

    def __init__(
        self,
        legacy_column: str,
        new_column: str,
        classes: ClassesConfig | None = None,
        *,
        format: Format = "json",
        fields: FieldsConfig | None = None,
        regex: str | None = None,
        max_line_bytes: int = 100 * 1024,
        fast: bool = True,
        native: bool | None = None,
    ) -> None:
        for column in (legacy_column, new_column):
            if not column or any(ch.isspace() for ch in column):
                raise ValueError(f"invalid column name {column!r}")
        if legacy_column == new_column:
            raise ValueError("legacy and new column must differ")
        classes = classes or ClassesConfig()
        fields = fields or FieldsConfig()
        self.legacy_column = legacy_column
        self.new_column = new_column
        self.classes = classes
        self.format = format
        self.max_line_bytes = max_line_bytes
        self._legacy = legacy_column.encode()
        self._new = new_column.encode()
        self._parser: Parser = make_parser(format, fields, regex)

        levels: set[Any] = set()
        for level in classes.error_levels:
            if isinstance(level, str):
                levels |= _case_variants(level)
            else:
                levels |= {level, str(level)}
        self._err_levels = frozenset(levels)
        status: set[Any] = set()
        if classes.error_status is not None:
            for code in range(classes.error_status, 600):
                status |= {code, str(code)}
        self._err_status = frozenset(status)

        exclude = list(classes.exclude)
        if format == "json":  # PHP's json_encode writes "\/wp-json\/wc\/"
            exclude += [p.replace("/", "\\/") for p in classes.exclude if "/" in p]
        self._exclude = PatternSet(exclude)
        self._fallback = PatternSet(classes.fallback)
        self._fallback_needs_legacy = classes.fallback_requires_legacy
        for pattern in (*self._exclude.patterns, *self._fallback.patterns):
            if b"\r" in pattern or b"\n" in pattern:
                raise ValueError("patterns must not contain CR or LF")

        self._json: JsonParser | None = None
        if fast and isinstance(self._parser, JsonParser):
            self._json = self._parser
            # A chunk is decoded at once as json_lines_array(chunk): one element per line.
            struct = self._parser.rtype.struct
            self._decode_array = msgspec.json.Decoder(list[struct]).decode  # type: ignore[valid-type]
            self._whole_line = self._parser.rtype.whole_line
        self._native: _fastscan.Scanner | None = None
        if native and _fastscan is None:
            raise RuntimeError("the C extension migration_watch.logs._fastscan is not built")
        if self._json is not None and (native if native is not None else native_available()):
            self._native = self._native_scanner(self._json, fields)

    @property
    def native(self) -> bool:
        """Whether :meth:`scan` uses the C chunk path."""
        return self._native is not None

    def _native_scanner(self, parser: JsonParser, fields: FieldsConfig) -> _fastscan.Scanner | None:
        """The C scanner for this configuration, or None when it cannot express it."""
        level_strs = [v.encode() for v in self._err_levels if isinstance(v, str)]
        level_ints = [v for v in self._err_levels if isinstance(v, int)]
        keys = [k for k in (fields.level, fields.status, *parser.search_names) if k]
        if (
            any(abs(v) >= 10**18 for v in level_ints)
            or any(
                ch in '"\\' or ord(ch) < 0x20
                for key in keys
                for ch in key  # spelled as in JSON
            )
            or max(
                len(self._exclude.patterns),
                len(self._fallback.patterns),
                len(level_strs),
                len(level_ints),
                len(keys),
            )
            > _fastscan.MAX_LIST
        ):
            return None
        return _fastscan.Scanner(
            self._legacy,
            self._new,
            self._exclude.patterns,
            self._fallback.patterns,
            self._fallback_needs_legacy,
            fields.level.encode() if fields.level else None,
            fields.status.encode() if fields.status else None,
            None if parser.whole_line else [k.encode() for k in parser.search_names],
            level_strs,
            level_ints,
            min((v for v in self._err_status if isinstance(v, int)), default=-1),
            self.max_line_bytes,
        )

    @classmethod
    def for_source(
        cls,
        source: SourceConfig,
        legacy_column: str,
        new_column: str,
        classes: ClassesConfig | None = None,
    ) -> Classifier:
        """The classifier for one configured source."""
        return cls(
            legacy_column,
            new_column,
            classes,
            format=source.format,
            fields=source.fields,
            regex=source.regex,
            max_line_bytes=source.max_line_bytes,
        )

    # ------------------------------------------------------------------ per line

    def classify_line(self, line: bytes, *, truncated: bool = False) -> int:
        """Flags (``ERROR | LEGACY_REFERENCE | …``) of one line given without its newline.

        ``truncated=True`` says ``line`` is already the first part of an overlong line.
        """
        flags = 0
        if truncated or len(line) > self.max_line_bytes:
            line = line[: self.max_line_bytes]
            truncated = True
            flags = TRUNCATED
        if line[-1:] == b"\r":
            line = line[:-1]
        if b"\x00" in line:
            return flags | PARSE_ERROR
        if not line.isascii():
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                cut = truncated and exc.end == len(line) and exc.reason == "unexpected end of data"
                if not cut:
                    return flags | PARSE_ERROR
                line = line[: exc.start]
        if not line.strip(b" \t\r"):
            return flags | BLANK
        try:
            rec = self._parser.parse_truncated(line) if truncated else self._parser.parse(line)
        except (ValueError, RecursionError):
            rec = None
        if rec is None:
            return flags | PARSE_ERROR
        return flags | self._record_flags(rec, line)

    def _is_error(self, level: Any, status: Any) -> bool:
        try:
            if level in self._err_levels:
                return True
        except TypeError:
            pass
        try:
            return status in self._err_status
        except TypeError:
            return False

    def _record_flags(self, rec: Record, line: bytes) -> int:
        flags = ERROR if self._is_error(rec.level, rec.status) else 0
        texts = rec.searched
        if any(has_word(t, self._legacy) for t in texts) and not self._exclude.in_span(
            line, 0, len(line)
        ):
            flags |= LEGACY_REFERENCE
            if flags & ERROR:
                flags |= LEGACY_ERROR
        if any(has_word(t, self._new) for t in texts):
            flags |= NEW_REFERENCE
        if (
            self._fallback
            and (flags & LEGACY_REFERENCE or not self._fallback_needs_legacy)
            and self._fallback.in_texts(texts)
        ):
            flags |= FALLBACK
        return flags

    # ------------------------------------------------------------------ per buffer

    def scan(
        self,
        buf: bytes,
        counts: Counts,
        samples: Samples | None = None,
        *,
        start: int = 0,
        end: int | None = None,
    ) -> None:
        """Classify every line of ``buf[start:end]`` (complete lines: empty or ending with a
        newline) and add the result to ``counts`` (and the last lines of each kind to
        ``samples``)."""
        end = len(buf) if end is None else end
        if end <= start:
            return
        if buf[end - 1] != 0x0A:
            raise ValueError("scan() takes complete lines; hold back the partial last line")
        if self._native is not None:
            self._scan_native(buf, start, end, counts, samples)
            return
        if start or end != len(buf):
            buf = buf[start:end]
        if self._json is None:
            self._scan_lines(buf, counts, samples)
        else:
            self._scan_adaptive(buf, counts, samples)

    def _scan_native(
        self, buf: bytes, pos: int, n: int, counts: Counts, samples: Samples | None
    ) -> None:
        """The C chunk path: it counts the plain lines and stops at each line that is not
        (see ``_fastscan.c``), which the per-line path classifies."""
        assert self._native is not None
        scan, classify, find = self._native.scan, self.classify_line, buf.find
        keep = samples.per_kind if samples is not None else 0
        while pos < n:
            stop, lines, error, legacy, new, legacy_error, fallback, spans = scan(buf, pos, n, keep)
            counts.lines += lines
            counts.bytes += stop - pos
            counts.error += error
            counts.legacy_reference += legacy
            counts.new_reference += new
            counts.legacy_error += legacy_error
            counts.fallback += fallback
            if spans is not None and samples is not None:
                for kind, kind_spans in zip(CLASSES, spans, strict=True):
                    samples.extend(kind, (buf[s:e] for s, e in kind_spans))
            if stop >= n:
                break
            e = find(NL, stop)
            line = buf[stop:e]
            flags = classify(line)
            counts.add_line(flags, e - stop + 1)
            if samples is not None and flags & 0x7F:
                samples.add_flags(flags, line)
            pos = e + 1

    def _scan_adaptive(self, buf: bytes, counts: Counts, samples: Samples | None) -> None:
        if self._scan_json_fast(buf, counts, samples):
            return
        n = len(buf)
        if n < _MIN_BISECT:
            self._scan_lines(buf, counts, samples)
            return
        mid = buf.rfind(NL, 0, n // 2) + 1
        if mid <= 0:
            mid = buf.find(NL, n // 2) + 1
        if mid >= n:  # one huge line (or nearly): nothing to split
            self._scan_lines(buf, counts, samples)
            return
        self._scan_adaptive(buf[:mid], counts, samples)
        self._scan_adaptive(buf[mid:], counts, samples)

    def _scan_lines(self, buf: bytes, counts: Counts, samples: Samples | None) -> None:
        find, classify, add_line = buf.find, self.classify_line, counts.add_line
        start = 0
        e = find(NL)
        while e >= 0:
            line = buf[start:e]
            flags = classify(line)
            add_line(flags, e - start + 1)
            if samples is not None and flags & 0x7F:
                samples.add_flags(flags, line)
            start = e + 1
            e = find(NL, start)

    def _scan_json_fast(self, buf: bytes, counts: Counts, samples: Samples | None) -> bool:
        """The chunk path for JSON; False (and nothing counted) when it cannot be used."""
        assert self._json is not None
        n = len(buf)
        if not buf.isascii():
            try:
                buf.decode("utf-8")
            except UnicodeDecodeError:
                return False
        if may_have_overlong_line(buf, self.max_line_bytes):
            return False
        try:
            recs = self._decode_array(json_lines_array(buf))
        except _DECODE_FAILURES:
            return False

        legacy_hits, n_lines = hit_lines(buf, self._legacy, word=True, count_lines=True)
        if len(recs) != n_lines:  # cannot happen: one element per line
            return False

        rtype = self._json.rtype
        try:
            lv_idx = (
                list(
                    compress(
                        range(n_lines),
                        map(self._err_levels.__contains__, map(attrgetter(rtype.level_attr), recs)),
                    )
                )
                if rtype.has_level
                else []
            )
            st_idx = (
                list(
                    compress(
                        range(n_lines),
                        map(
                            self._err_status.__contains__, map(attrgetter(rtype.status_attr), recs)
                        ),
                    )
                )
                if rtype.has_status and self._err_status
                else []
            )
        except TypeError:  # an unhashable level or status (object, array)
            return False
        errors = sorted(set(lv_idx).union(st_idx)) if lv_idx and st_idx else (lv_idx or st_idx)
        error_set = set(errors)

        whole = self._whole_line
        texts = self._json.texts
        if whole:
            new_ends = hit_ends(buf, self._new)
            new_count = len(new_ends)
        else:
            new_hits, _ = hit_lines(buf, self._new, word=True, count_lines=True)
            new_ends = [
                e
                for idx, _s, e in new_hits
                if any(has_word(t, self._new) for t in texts(recs[idx]))
            ]
            new_count = len(new_ends)

        if not whole:  # the column must be in one of the searched fields
            legacy_hits = [
                h for h in legacy_hits if any(has_word(t, self._legacy) for t in texts(recs[h[0]]))
            ]
        legacy = legacy_hits
        fallbacks: list[tuple[int, int, int]] = []
        fb_legacy = bool(self._fallback) and self._fallback_needs_legacy
        if self._exclude or fb_legacy:
            legacy = []
            find = buf.find
            ex_groups, fb_groups = self._exclude.groups, self._fallback.groups
            for hit in legacy_hits:
                _, s, e = hit
                for lit, pats in ex_groups:
                    if find(lit, s, e) >= 0 and (
                        len(pats) == 1 or any(find(p, s, e) >= 0 for p in pats)
                    ):
                        break
                else:
                    legacy.append(hit)
                    if fb_legacy:
                        for lit, _pats in fb_groups:
                            if find(lit, s, e) >= 0 and (
                                self._fallback.in_span(buf, s, e)
                                if whole
                                else self._fallback.in_texts(texts(recs[hit[0]]))
                            ):
                                fallbacks.append(hit)
                                break
        legacy_errors = [h for h in legacy if h[0] in error_set] if error_set else []
        if self._fallback and not self._fallback_needs_legacy:
            fallbacks = self._fallback_lines(buf, recs, whole)

        counts.lines += n_lines
        counts.bytes += n
        counts.error += len(errors)
        counts.legacy_reference += len(legacy)
        counts.new_reference += new_count
        counts.legacy_error += len(legacy_errors)
        counts.fallback += len(fallbacks)

        if samples is not None and samples.per_kind:
            k = samples.per_kind
            if errors:
                samples.extend("error", self._lines_at(buf, errors[-k:], legacy_hits))
            for kind, hits in (
                ("legacy_reference", legacy),
                ("legacy_error", legacy_errors),
                ("fallback", fallbacks),
            ):
                samples.extend(kind, (buf[s:e] for _, s, e in hits[-k:]))
            samples.extend(
                "new_reference", (buf[buf.rfind(NL, 0, e) + 1 : e] for e in new_ends[-k:])
            )
        return True

    def _fallback_lines(
        self, buf: bytes, recs: list[Any], whole: bool
    ) -> list[tuple[int, int, int]]:
        assert self._json is not None
        found: dict[int, tuple[int, int, int]] = {}
        for lit, _pats in self._fallback.groups:
            hits, _ = hit_lines(buf, lit, word=False, count_lines=not whole)
            for hit in hits:
                idx, s, e = hit
                if s in found:
                    continue
                if whole:
                    ok = self._fallback.in_span(buf, s, e)
                else:
                    ok = self._fallback.in_texts(self._json.texts(recs[idx]))
                if ok:
                    found[s] = hit
        return [found[s] for s in sorted(found)]

    @staticmethod
    def _lines_at(
        buf: bytes, indexes: list[int], anchors: list[tuple[int, int, int]]
    ) -> list[bytes]:
        """The lines of ``buf`` at ``indexes`` (sorted), walking from the nearest anchor."""
        find = buf.find
        out = []
        for idx in indexes:
            a = bisect_right(anchors, idx, key=lambda h: h[0]) - 1
            cur, start = (anchors[a][0], anchors[a][1]) if a >= 0 else (0, 0)
            while cur < idx:
                start = find(NL, start) + 1
                cur += 1
            out.append(buf[start : find(NL, start)])
        return out
