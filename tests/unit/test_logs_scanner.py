"""Chunked scanning: partial lines, chunk boundaries, overlong lines, ``logs scan`` output."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migration_watch.logs.classify import Classifier, Counts, Samples
from migration_watch.logs.config import ClassesConfig, FieldsConfig
from migration_watch.logs.scanner import LineStream, ScanReport, scan_chunk, scan_files

LEGACY, NEW = "customer_id", "organization_id"

TEMPLATES = [
    b'{"level":"info","msg":"request completed","url":"/rest/v1/t?customer_id=eq.1","status":200}',
    b'{"level":"info","msg":"request completed","url":"/rest/v1/t?organization_id=eq.1"}',
    b'{"level":"error","msg":"column customer_id does not exist","status":500}',
    b'{"level":50,"msg":"upstream failed"}',
    b'{"level":"warn","msg":"organization_id missing, fell back to customer_id"}',
    b'{"level":"info","msg":"woocommerce","payload":{"customer_id":3}}',
    b'{"level":"info","msg":"plain","route":"/dashboard","status":200}',
    b'{"level":"info","sql":"SELECT old_customer_id FROM t","msg":"x"}',
    b'{"level":"info","msg":"line\\ncustomer_id","status":"503"}',
    b'{"msg":"caf\xc3\xa9 organization_id"}',
    b'{"level":"error","msg":"broken"',
    b"not json at all customer_id",
    b"",
    b"   ",
    b'{"a":1}{"b":2}',
    b'{"msg":"\xff\xfe"}',
    b'{"msg":"nul\x00"}',
    b"[1,2]",
    b'{"level":{"x":1},"msg":"customer_id"}',
    b'{"level":"error","msg":"customer_id ' + b"x" * 300 + b'"}',
]


def make_classifier(**kw: object) -> Classifier:
    fields = kw.pop("fields", FieldsConfig(message="msg"))
    return Classifier(LEGACY, NEW, fields=fields, max_line_bytes=256, **kw)  # type: ignore[arg-type]


def reference_counts(classifier: Classifier, data: bytes) -> Counts:
    """Line by line through classify_line: the definition."""
    counts = Counts()
    lines = data.split(b"\n")
    tail = lines.pop()
    for line in lines:
        counts.add_line(classifier.classify_line(line), len(line) + 1)
    if tail:
        counts.add_line(classifier.classify_line(tail), len(tail))
    return counts


def stream_counts(classifier: Classifier, data: bytes, cuts: list[int]) -> Counts:
    stream = LineStream(classifier)
    counts = Counts()
    prev = 0
    for cut in [*sorted(cuts), len(data)]:
        stream.feed(data[prev:cut], counts)
        prev = cut
    stream.flush(counts)
    assert stream.pending == 0
    return counts


lines_strategy = st.lists(st.sampled_from(TEMPLATES), min_size=0, max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=lines_strategy, cuts=st.lists(st.integers(0, 20_000), max_size=8), crlf=st.booleans())
def test_random_chunk_boundaries_give_identical_counts(
    lines: list[bytes], cuts: list[int], crlf: bool
) -> None:
    data = (b"\r\n" if crlf else b"\n").join(lines) + b"\n"
    classifier = make_classifier()
    expected = reference_counts(classifier, data)
    cuts = [c % (len(data) + 1) for c in cuts]
    assert stream_counts(classifier, data, cuts) == expected
    # The msgspec chunk path (used without the C extension) and the per-line path agree too.
    assert stream_counts(make_classifier(native=False), data, cuts) == expected
    assert stream_counts(make_classifier(fast=False), data, cuts) == expected


@settings(max_examples=60, deadline=None)
@given(lines=lines_strategy, seed=st.integers(0, 2**32))
def test_fields_mode_fast_and_per_line_paths_agree(lines: list[bytes], seed: int) -> None:
    fields = FieldsConfig(message="msg", search=("sql", "url", "payload"))
    data = b"\n".join(lines) + b"\n"
    fast = make_classifier(fields=fields)
    msgspec_path = make_classifier(fields=fields, native=False)
    slow = make_classifier(fields=fields, fast=False)
    cuts = random.Random(seed).sample(range(len(data) + 1), min(3, len(data) + 1))
    expected = reference_counts(slow, data)
    assert stream_counts(slow, data, cuts) == expected
    assert stream_counts(fast, data, cuts) == expected
    assert stream_counts(msgspec_path, data, cuts) == expected


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=5))
def test_random_bytes_never_raise(data: bytes, cuts: list[int]) -> None:
    for fmt in ("json", "logfmt"):
        classifier = Classifier(LEGACY, NEW, format=fmt, max_line_bytes=128)  # type: ignore[arg-type]
        counts = stream_counts(classifier, data, [c % (len(data) + 1) for c in cuts])
        assert counts.bytes == len(data)
        assert counts.lines == data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    text = Classifier(LEGACY, NEW, format="text", regex=r"(?P<level>\w+) (?P<message>.*)")
    assert stream_counts(text, data, []).bytes == len(data)


def test_big_buffer_with_rare_problems_matches_reference() -> None:
    """A ~1 MiB buffer: the chunk path bisects around the bad lines."""
    rng = random.Random(3)
    good = list(TEMPLATES[:10])
    lines = [rng.choice(good) for _ in range(12_000)]
    for k in (17, 5000, 11_999):
        lines[k] = TEMPLATES[10]  # a broken line
    lines[7000] = b""
    data = b"\n".join(lines) + b"\n"
    for native in (None, False):
        classifier = make_classifier(native=native)
        counts = Counts()
        classifier.scan(data, counts)
        assert counts == reference_counts(classifier, data)
        assert counts.parse_errors == 3
        assert counts.lines == 12_000


def test_scan_chunk_holds_back_the_partial_last_line() -> None:
    classifier = make_classifier()
    buf = b'{"level":"error","msg":"customer_id"}\n{"level":"info","msg":"organiz'
    counts, consumed = scan_chunk(buf, classifier)
    assert consumed == buf.index(b"\n") + 1
    assert counts.lines == 1
    assert counts.legacy_error == 1
    counts, consumed = scan_chunk(b"no newline yet", classifier)
    assert (counts.lines, consumed) == (0, 0)


def test_overlong_partial_line_is_counted_once_and_skipped() -> None:
    classifier = make_classifier()
    stream = LineStream(classifier)
    counts = Counts()
    pieces = [
        b'{"level":"error","msg":"customer_id ' + b"x" * 200,
        b"y" * 200,
        b"z" * 10_000,
        b'zz"}\n{"level":"info","msg":"organization_id"}\n',
    ]
    stream.feed(pieces[0], counts)
    assert counts.lines == 0
    stream.feed(b"y" * 200, counts)  # now over 256 bytes without a newline
    assert (counts.lines, counts.truncated, counts.legacy_error) == (1, 1, 1)
    assert stream.skipping
    assert stream.pending == 0  # memory stays bounded
    stream.feed(b"z" * 10_000, counts)
    stream.feed(b'zz"}\n{"level":"info","msg":"organization_id"}\n', counts)
    stream.flush(counts)
    assert (counts.lines, counts.truncated, counts.new_reference) == (2, 1, 1)
    assert counts.bytes == sum(map(len, pieces))


def test_flush_counts_a_final_line_without_newline() -> None:
    stream = LineStream(make_classifier())
    counts = stream.feed(b'{"level":"error","msg":"x"}')
    assert counts.lines == 0
    assert stream.pending == 27
    stream.flush(counts)
    assert (counts.lines, counts.error, counts.bytes) == (1, 1, 27)


def _write_log(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_scan_files_json_shape(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"
    _write_log(a, [TEMPLATES[0], TEMPLATES[2], TEMPLATES[10]])
    b.write_bytes(gzip.compress(b"\n".join([TEMPLATES[1], TEMPLATES[4]]) + b"\n"))
    report = scan_files([a, str(b)], make_classifier(), chunk_bytes=7)
    out = report.to_json()
    assert list(out) == ["files", "lines", "bytes", "classes", "parse_errors", "truncated"]
    assert out == {
        "files": [str(a), str(b)],
        "lines": 5,
        "bytes": a.stat().st_size + len(TEMPLATES[1]) + len(TEMPLATES[4]) + 2,
        "classes": {
            "error": 1,
            "legacy_reference": 3,
            "new_reference": 2,
            "legacy_error": 1,
            "fallback": 1,
        },
        "parse_errors": 1,
        "truncated": 0,
    }
    json.dumps(out)
    table = report.to_table()
    assert "legacy_reference" in table
    assert str(a) in table
    assert "last legacy_error lines:" in table


def test_scan_report_table_single_file(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    _write_log(path, [TEMPLATES[0]] * 3)
    table = scan_files([path], make_classifier()).to_table()
    header = table.splitlines()[0].split()
    assert header == ["count", "total"]
    assert "legacy share of references: 100.00%" in table


def test_scan_files_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        scan_files([tmp_path / "missing.log"], make_classifier())


def test_scan_report_is_empty_for_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.log"
    path.write_bytes(b"")
    report = scan_files([path], make_classifier())
    assert report.to_json()["lines"] == 0
    assert isinstance(report, ScanReport)
    assert "error rate" not in report.to_table()


def test_samples_default_from_classes_config(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    _write_log(path, [TEMPLATES[2]] * 10)
    classifier = Classifier(
        LEGACY, NEW, ClassesConfig(samples=3), fields=FieldsConfig(message="msg")
    )
    report = scan_files([path], classifier)
    assert len(report.samples["legacy_error"]) == 3
    explicit = Samples(1, 100)
    assert len(scan_files([path], classifier, samples=explicit).samples["error"]) == 1
