"""The log drain's request logic: auth, limits, bounded queue, body formats."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from migration_watch.logs.classify import Classifier, Counts
from migration_watch.logs.config import FieldsConfig, HttpSourceConfig
from migration_watch.logs.drain import DrainIngest, DrainQueue, body_to_lines

TOKEN = "drain-token-123"
SECRET = "hmac-secret"


def source(**kw: object) -> HttpSourceConfig:
    doc: dict[str, object] = {"name": "drain", "type": "http", "token": TOKEN}
    doc.update(kw)
    return HttpSourceConfig.model_validate(doc)


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


NDJSON = (
    b'{"level":"error","message":"column customer_id does not exist","status":500}\n'
    b'{"level":"info","message":"GET /rest/v1/t?organization_id=eq.1"}\n'
)


def test_accepts_ndjson_with_bearer_token() -> None:
    ingest = DrainIngest(source())
    resp = ingest.handle(bearer(), NDJSON)
    assert resp.status == 202
    assert resp.body == {"accepted_bytes": len(NDJSON), "lines": 2}
    counts = Counts()
    classifier = Classifier("customer_id", "organization_id")
    assert ingest.consume(classifier, counts) == 1
    assert (counts.lines, counts.legacy_error, counts.new_reference) == (2, 1, 1)
    assert ingest.queue.size_bytes == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong"),
        {"Authorization": f"Basic {TOKEN}"},
        {"authorization": "Bearer"},
        {"X-Signature": "sha256=00"},
    ],
)
def test_wrong_or_missing_token_is_401(headers: dict[str, str]) -> None:
    resp = DrainIngest(source()).handle(headers, NDJSON)
    assert resp.status == 401
    assert "WWW-Authenticate" in resp.headers


def test_header_names_are_case_insensitive() -> None:
    assert DrainIngest(source()).handle({"authorization": f"bearer {TOKEN}"}, NDJSON).status == 202


@pytest.mark.parametrize("algorithm", ["sha256", "sha1"])
def test_hmac_signature(algorithm: str) -> None:
    src = source(
        token=None, hmac_secret=SECRET, hmac_header="x-vercel-signature", hmac_algorithm=algorithm
    )
    ingest = DrainIngest(src)
    digest = hmac.new(SECRET.encode(), NDJSON, getattr(hashlib, algorithm)).hexdigest()
    assert ingest.handle({"X-Vercel-Signature": digest}, NDJSON).status == 202
    assert ingest.handle({"x-vercel-signature": f"{algorithm}={digest}"}, NDJSON).status == 202
    assert ingest.handle({"x-vercel-signature": digest}, NDJSON + b"x").status == 401
    assert ingest.handle(bearer(), NDJSON).status == 401  # no token configured


def test_secret_passed_by_the_config_loader() -> None:
    src = source(token=None, token_file="/run/secrets/t")
    with pytest.raises(ValueError, match="no token"):
        DrainIngest(src)
    assert DrainIngest(src, token="from-file").handle(bearer("from-file"), NDJSON).status == 202


def test_oversized_body_is_413() -> None:
    ingest = DrainIngest(source(max_body_bytes=1024, queue_max_bytes=4096))
    early = ingest.precheck({"Content-Length": "5000"})
    assert early is not None
    assert early.status == 413
    assert ingest.precheck({"Content-Length": "100"}) is None
    assert ingest.handle(bearer(), b"x" * 1025).status == 413
    assert ingest.handle({"Content-Length": "nope"}, b"").status == 400


def test_full_queue_is_429_with_retry_after() -> None:
    ingest = DrainIngest(source(max_body_bytes=1024, queue_max_bytes=2048, retry_after="7s"))
    body = b'{"message":"x"}\n' * 60  # 960 bytes
    assert ingest.handle(bearer(), body).status == 202
    assert ingest.handle(bearer(), body).status == 202
    resp = ingest.handle(bearer(), body)
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "7"
    assert ingest.queue.size_bytes == 2 * len(body)
    counts = Counts()
    ingest.consume(Classifier("customer_id", "organization_id"), counts)
    assert counts.lines == 120
    assert ingest.handle(bearer(), body).status == 202  # room again


def test_json_array_bodies() -> None:
    records = [
        {"level": "error", "message": "customer_id missing", "proxy": {"statusCode": 500}},
        {"level": "info", "message": "multi\nline message"},
    ]
    for body in (json.dumps(records).encode(), json.dumps(records, indent=2).encode()):
        lines = body_to_lines(body)
        assert lines.count(b"\n") == 2
        assert [json.loads(x) for x in lines.splitlines()] == records
    assert body_to_lines(b"[]") == b""
    assert body_to_lines(b"  \n[1, 2]") == b"1\n2\n"
    with pytest.raises(ValueError, match="malformed"):
        body_to_lines(b"[{]")
    assert body_to_lines(b'{"a":1}') == b'{"a":1}\n'
    assert body_to_lines(b"") == b""


def test_malformed_array_is_400_and_bad_lines_are_parse_errors() -> None:
    ingest = DrainIngest(source())
    assert ingest.handle(bearer(), b"[{]").status == 400
    assert ingest.handle(bearer(), b'{"broken"\nnot json\n').status == 202
    counts = Counts()
    ingest.consume(Classifier("customer_id", "organization_id"), counts)
    assert (counts.lines, counts.parse_errors) == (2, 2)


def test_logfmt_drain_takes_bodies_as_lines() -> None:
    ingest = DrainIngest(source(format="logfmt", fields=FieldsConfig(message="msg").model_dump()))
    assert ingest.handle(bearer(), b"[not an array] level=info").status == 202


def test_queue_take_waits_and_times_out() -> None:
    queue = DrainQueue(100)
    assert queue.take(0.01) is None
    assert queue.offer(b"a\n")
    assert not queue.offer(b"x" * 100)
    assert queue.take(None) == b"a\n"
