"""Pre-deploy lines: timestamps, the deploy gate of files (ordered) and drains (unordered)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migration_watch.logs.classify import Classifier, Counts, Samples
from migration_watch.logs.config import FieldsConfig, HttpSourceConfig
from migration_watch.logs.deploy import (
    DeployGate,
    TimestampReader,
    pre_deploy_counters,
    pre_deploy_from_counters,
    to_micros,
)
from migration_watch.logs.drain import DrainIngest
from migration_watch.logs.scanner import LineStream

LEGACY, NEW = "customer_id", "organization_id"
T0 = datetime(2025, 10, 23, 9, 0, tzinfo=UTC)
T0_US = int(T0.timestamp()) * 1_000_000
T0_MS = T0_US // 1000
FIELDS = FieldsConfig(timestamp="time", message="msg")
MAX = 256


def us(dt: datetime) -> int:
    return round(dt.timestamp() * 1_000_000)


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # ISO 8601 (Supabase, Vercel, structlog): Z, offsets, none (UTC), space, fractions
        ("2025-10-23T09:00:00Z", T0),
        ("2025-10-23T09:00:00.250Z", T0 + timedelta(milliseconds=250)),
        ("2025-10-23T11:00:00+02:00", T0),
        ("2025-10-23T11:00:00+0200", T0),
        ("2025-10-23T09:00:00", T0),
        ("2025-10-23 09:00:00.000001", T0 + timedelta(microseconds=1)),
        ("2025-10-23T09:00:00.123456789Z", T0 + timedelta(microseconds=123456)),
        # epoch: seconds, milliseconds (pino), microseconds, nanoseconds; numbers or digits
        (T0_MS // 1000, T0),
        (T0_MS / 1000 + 0.5, T0 + timedelta(milliseconds=500)),
        (T0_MS, T0),
        (T0_MS + 1, T0 + timedelta(milliseconds=1)),
        (T0_US, T0),
        (T0_US * 1000 + 1000, T0 + timedelta(microseconds=1)),
        (str(T0_MS), T0),
        (f"{T0_MS // 1000}.5", T0 + timedelta(milliseconds=500)),
        (f" {T0_MS}\r", T0),
    ],
)
def test_timestamp_forms(value: Any, expected: datetime) -> None:
    assert to_micros(value) == us(expected)


@pytest.mark.parametrize(
    "value",
    [None, True, "", "yesterday", "23/Oct/2025:09:00:00 +0000", float("nan"), {"t": 1}, [1]],
)
def test_not_timestamps(value: Any) -> None:
    assert to_micros(value) is None


def test_huge_numbers_do_not_raise() -> None:
    assert to_micros(10**400) is not None
    assert to_micros("0001-01-01T00:00:00+05:00") == -62135614800000000


def line(ts: Any, level: str = "info", msg: str = "ok", **extra: Any) -> bytes:
    rec: dict[str, Any] = {}
    if ts is not None:
        rec["time"] = ts
    rec.update(level=level, msg=msg, **extra)
    return json.dumps(rec, separators=(",", ":")).encode()


def test_json_reader_chunk_and_per_line_paths() -> None:
    reader = TimestampReader("json", FIELDS)
    good = [line(T0_MS), line("2025-10-23T09:00:00Z"), line(None)]
    assert reader.values(b"\n".join(good) + b"\n") == [T0_MS, "2025-10-23T09:00:00Z", None]
    # a broken line makes the chunk path give up: per line, the broken one has none
    mixed = [*good, b'{"time":1,"broken', b"", b'{"time":' + str(T0_MS).encode() + b"}\r"]
    assert reader.values(b"\n".join(mixed) + b"\n") == [
        T0_MS,
        "2025-10-23T09:00:00Z",
        None,
        None,
        None,
        T0_MS,
    ]
    assert reader.lenient(b'{"level":"info","time":' + str(T0_MS).encode() + b',"msg":"xx') == T0_US


def test_logfmt_and_text_readers() -> None:
    logfmt = TimestampReader("logfmt", FIELDS)
    assert logfmt.line(b'time="2025-10-23T09:00:00Z" level=info') == T0_US
    assert logfmt.line(b"level=info time=" + str(T0_MS).encode()) == T0_US
    assert logfmt.line(b"level=info mytime=1") is None
    quoted = b'msg="retry at time=1" time=' + str(T0_MS).encode() + b" level=info\r"
    assert logfmt.line(quoted) == T0_US  # tokens as the classifier reads them
    assert logfmt.line(b'time=1 msg="unterminated') is None  # a parse error: no timestamp
    text = TimestampReader("text", FIELDS, r"^(?P<time>\S+) (?P<level>\w+) (?P<msg>.*)$")
    assert text.line(b"2025-10-23T09:00:00Z ERROR boom") == T0_US
    assert text.line(b"garbage") is None
    no_group = TimestampReader("text", FIELDS, r"^(?P<level>\w+) (?P<msg>.*)$")
    assert not no_group.enabled
    assert not TimestampReader("json", FieldsConfig(timestamp=None)).enabled


# --------------------------------------------------------------------------- the gate


def gate(*, ordered: bool, t0: datetime | None = T0, **kw: Any) -> DeployGate:
    g = DeployGate(TimestampReader("json", FIELDS), ordered=ordered, max_line_bytes=MAX, **kw)
    g.set_t0(t0)
    return g


def join(lines: list[bytes]) -> bytes:
    return b"".join(x + b"\n" for x in lines)


BEFORE = [T0_MS - 3000, "2025-10-23T08:59:59Z", T0_MS - 1]
AFTER = [T0_MS, "2025-10-23T09:00:00.001Z", T0_MS + 5]


def test_ordered_gate_stops_reading_once_past_t0() -> None:
    g = gate(ordered=True)
    lines = [line(BEFORE[0]), line(None), line(BEFORE[1]), line(AFTER[0]), line(BEFORE[2])]
    pre, post = g.split(join(lines))
    # before T0 and without a timestamp: post-deploy, but the pre-deploy part goes on
    assert pre == join([lines[0], lines[2]])
    assert post == join([lines[1], lines[3], lines[4]])  # after T0: never read again
    assert g.passed == T0_US and not g.active
    assert g.split(join([line(BEFORE[0])])) == (b"", join([line(BEFORE[0])]))
    # T0 moved later than the line seen: timestamps are read again
    g.set_t0(T0 + timedelta(hours=1))
    assert g.active
    assert g.split(join([line(AFTER[1])]))[0] == join([line(AFTER[1])])
    # T0 moved back: past it again without reading
    g.set_t0(T0)
    assert not g.active


def test_ordered_gate_first_line_settles_a_chunk() -> None:
    g = gate(ordered=True)
    lines = [line(AFTER[2]), line(BEFORE[0])]
    assert g.split(join(lines)) == (b"", join(lines))
    assert g.passed == us(T0) + 5000


def test_unordered_gate_reads_every_line() -> None:
    g = gate(ordered=False)
    lines = [line(AFTER[0]), line(BEFORE[0]), line(None), line(BEFORE[1]), line(AFTER[1])]
    pre, post = g.split(join(lines))
    assert pre == join([lines[1], lines[3]])
    assert post == join([lines[0], lines[2], lines[4]])
    assert g.active and g.passed is None


def test_unknown_t0_reads_nothing() -> None:
    g = gate(ordered=False, t0=None)
    data = join([line(BEFORE[0])])
    assert not g.active
    assert g.split(data) == (b"", data)
    assert not g.is_pre(line(BEFORE[0]))


def test_overlong_lines_are_read_from_their_first_part() -> None:
    g = gate(ordered=False)
    early = line(BEFORE[0], msg="x" * 400)  # "time" comes first: found in the first part
    late = b'{"msg":"' + b"y" * 400 + b'","time":' + str(BEFORE[0]).encode() + b"}"
    pre, post = g.split(join([early, late]))
    assert pre == join([early]) and post == join([late])
    assert g.is_pre(early) and g.is_pre(early[:MAX], truncated=True)
    assert not g.is_pre(late)


# --------------------------------------------------------------------------- with the classifier

TEMPLATES: list[dict[str, Any]] = [
    {"level": "error", "msg": "column customer_id does not exist", "status": 500},
    {"level": "info", "msg": "GET /rest/v1/t?organization_id=eq.1"},
    {"level": "error", "msg": "upstream failed"},
    {"level": "info", "msg": "plain"},
    {"level": "warn", "msg": "organization_id missing, fell back to customer_id"},
    {"level": "error", "msg": "customer_id " + "z" * 300},  # overlong (MAX 256)
]
#: Timestamp values to draw from: mixed (line by line), and the pools of the vectorized
#: paths (one epoch unit; ISO strings all with or all without an offset) and their edges.
STAMP_POOLS: dict[str, list[Any]] = {
    "mixed": [*BEFORE, *AFTER, None, "not a time"],
    "epoch_ms": [T0_MS - 3000, T0_MS - 1, T0_MS, T0_MS + 5],
    "epoch_units_mixed": [T0_MS // 1000 - 1, T0_MS // 1000, T0_MS - 1, T0_MS],
    "epoch_ns": [T0_US * 1000 - 1, T0_US * 1000 - 1000, T0_US * 1000, T0_US * 1000 + 1],
    "iso_z": ["2025-10-23T08:59:59.999Z", "2025-10-23T09:00:00Z", "2025-10-23T11:00:01+02:00"],
    "iso_naive": ["2025-10-23T08:59:59.999999", "2025-10-23 09:00:00", "2025-10-23T09:00:01"],
    "iso_mixed": ["2025-10-23T08:59:59", "2025-10-23T09:00:00Z", "2025-10-23T08:00:00Z"],
    "digits": [str(T0_MS - 1), "2025-10-23T09:00:00Z", "20251023", "2025-10-23T08:00:00Z"],
}


def classifier() -> Classifier:
    return Classifier(LEGACY, NEW, fields=FIELDS, max_line_bytes=MAX)


def make_line(rng: random.Random, pool: str = "mixed") -> tuple[bytes, Any]:
    ts = rng.choice(STAMP_POOLS[pool])
    return line(ts, **rng.choice(TEMPLATES)), ts


def reference(lines: list[tuple[bytes, Any]], *, ordered: bool) -> tuple[Counts, Counts]:
    """Line by line: the definition of what is pre-deploy."""
    c = classifier()
    counts, pre = Counts(), Counts()
    past = False
    for raw, ts in lines:
        flags = c.classify_line(raw)
        counts.add_line(flags, len(raw) + 1)
        t = to_micros(ts)
        if past or t is None:
            continue
        if t < T0_US:
            pre.add_line(flags, len(raw) + 1)
        elif ordered:
            past = True
    return counts, pre


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10**6),
    n=st.integers(0, 80),
    cuts=st.lists(st.integers(0, 30_000), max_size=8),
    ordered=st.booleans(),
    pool=st.sampled_from(sorted(STAMP_POOLS)),
    long_lines=st.booleans(),
)
def test_stream_with_a_gate_matches_the_definition_at_any_chunk_boundaries(
    seed: int, n: int, cuts: list[int], ordered: bool, pool: str, long_lines: bool
) -> None:
    rng = random.Random(seed)
    lines = [make_line(rng, pool) for _ in range(n)]
    if not long_lines:
        lines = [(raw, ts) for raw, ts in lines if len(raw) <= MAX]
    data = join([raw for raw, _ in lines])
    stream = LineStream(classifier(), gate=gate(ordered=ordered))
    counts, pre = Counts(), Counts()
    prev = 0
    for cut in [*sorted(cuts), len(data)]:
        stream.feed(data[prev:cut], counts, pre)
        prev = cut
    stream.flush(counts, pre)
    assert (counts, pre) == reference(lines, ordered=ordered)


@pytest.mark.parametrize("pool", sorted(STAMP_POOLS))
def test_big_chunk_with_pre_and_post_lines(pool: str) -> None:
    rng = random.Random(5)
    lines = [make_line(rng, pool) for _ in range(3000)]
    c = classifier()
    for ordered in (True, False):
        for keep in (lines, [x for x in lines if len(x[0]) <= MAX]):
            data = join([raw for raw, _ in keep])
            counts, pre = Counts(), Counts()
            gate(ordered=ordered).scan(c, data, counts, pre)
            assert (counts, pre) == reference(keep, ordered=ordered)


def test_sorted_epoch_ms_file_splits_at_t0() -> None:
    """The common case (pino): a file crossing T0 in a chunk, no Python call per line."""
    lines = [(line(T0_MS + i * 7 - 7000), T0_MS + i * 7 - 7000) for i in range(2000)]
    data = join([raw for raw, _ in lines])
    g = gate(ordered=True)
    pre, post = g.split(data)
    assert pre == join([raw for raw, _ in lines[:1000]])
    assert post == join([raw for raw, _ in lines[1000:]])
    assert g.passed == T0_US and not g.active


def test_overlong_partial_pre_deploy_line_counts_its_bytes_as_pre_deploy() -> None:
    long = line(BEFORE[0], "error", "customer_id " + "q" * 1000)
    stream = LineStream(classifier(), gate=gate(ordered=True))
    counts, pre = Counts(), Counts()
    stream.feed(long[:600], counts, pre)
    assert stream.skipping and stream.skipping_pre
    assert pre.lines == 1 and pre.truncated == 1 and pre.legacy_error == 1
    stream.feed(long[600:] + b"\n" + line(AFTER[0]) + b"\n", counts, pre)
    assert pre.bytes == len(long) + 1
    assert counts.lines == 2 and pre.lines == 1


def test_samples_come_from_post_deploy_lines() -> None:
    samples = Samples()
    stream = LineStream(classifier(), samples=samples, gate=gate(ordered=False))
    old = line(BEFORE[0], "error", "old failure")
    new = line(AFTER[0], "error", "new failure")
    stream.feed(join([old, new]), Counts(), Counts())
    assert samples.get("error") == [new.decode()]


def test_pre_deploy_counters_round_trip() -> None:
    c = Counts(lines=10, bytes=100, error=2, legacy_error=1)
    saved = {"lines": 99, "rotations": 3, **pre_deploy_counters(c)}
    assert saved["pre_deploy.lines"] == 10
    assert pre_deploy_from_counters(saved) == c
    assert pre_deploy_from_counters({"lines": 5}) == Counts()


# --------------------------------------------------------------------------- the drain


def test_drain_batch_with_mixed_timestamps() -> None:
    src = HttpSourceConfig.model_validate(
        {"name": "drain", "type": "http", "token": "t", "fields": {"timestamp": "time"}}
    )
    ingest = DrainIngest(src)
    batch = [
        {"time": T0_MS - 60_000, "level": "error", "message": "before"},  # pino epoch ms
        {"time": "2025-10-23T09:01:00Z", "level": "error", "message": "after"},  # ISO
        {"time": "2025-10-23T10:59:00+02:00", "level": "info", "message": "before"},
        {"level": "error", "message": "no timestamp: post-deploy"},
        {"time": str(T0_MS + 1), "level": "info", "message": "after"},
    ]
    body = json.dumps(batch).encode()  # a JSON array, as Vercel / Supabase push
    assert ingest.handle({"Authorization": "Bearer t"}, body).status == 202
    g = DeployGate(TimestampReader.for_source(src), ordered=False)
    g.set_t0(T0.astimezone(timezone(timedelta(hours=-5))))  # any offset: the same instant
    counts, pre = Counts(), Counts()
    assert ingest.consume(classifier(), counts, gate=g, pre=pre) == 1
    assert counts.lines == 5 and counts.error == 3
    assert pre.lines == 2 and pre.error == 1
    # T0 unknown: everything is post-deploy, nothing is read
    assert ingest.handle({"Authorization": "Bearer t"}, body).status == 202
    g.set_t0(None)
    pre2 = Counts()
    ingest.consume(classifier(), counts, gate=g, pre=pre2)
    assert counts.lines == 10 and pre2 == Counts()
