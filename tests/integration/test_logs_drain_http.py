"""The drain logic behind a real HTTP server on 127.0.0.1 (stdlib server, httpx client)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from migration_watch.logs.classify import Classifier, Counts
from migration_watch.logs.config import HttpSourceConfig
from migration_watch.logs.drain import DrainIngest

TOKEN = "t0k3n"


def make_server(ingest: DrainIngest) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            headers = dict(self.headers.items())
            resp = ingest.precheck(headers)
            if resp is None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, ingest.source.max_body_bytes + 1))
                resp = ingest.handle(headers, body)
            payload = json.dumps(resp.body).encode()
            self.send_response(resp.status)
            for name, value in resp.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if resp.status == 413:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def drain() -> Iterator[tuple[DrainIngest, str]]:
    src = HttpSourceConfig.model_validate(
        {
            "name": "drain",
            "type": "http",
            "token": TOKEN,
            "max_body_bytes": 2048,
            "queue_max_bytes": 4096,
            "retry_after": "3s",
        }
    )
    ingest = DrainIngest(src)
    server = make_server(ingest)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ingest, f"http://127.0.0.1:{server.server_address[1]}/ingest/logs"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_drain_over_http(drain: tuple[DrainIngest, str]) -> None:
    ingest, url = drain
    auth = {"Authorization": f"Bearer {TOKEN}"}
    records = [
        {"level": "error", "message": "column customer_id does not exist", "status": 500},
        {"level": "info", "message": "GET /rest/v1/t?organization_id=eq.1", "status": 200},
    ]
    with httpx.Client(timeout=5) as client:
        assert (
            client.post(url, content=b"{}", headers={"Authorization": "Bearer no"}).status_code
            == 401
        )
        ok = client.post(url, json=records, headers=auth)
        assert ok.status_code == 202
        assert ok.json() == {"accepted_bytes": ok.json()["accepted_bytes"], "lines": 2}
        big = client.post(url, content=b"x" * 5000, headers=auth)
        assert big.status_code == 413
        ndjson = b'{"message":"filler"}\n' * 90  # 1890 bytes
        statuses = [client.post(url, content=ndjson, headers=auth).status_code for _ in range(3)]
        assert statuses[:1] == [202]
        assert statuses[-1] == 429
        full = client.post(url, content=ndjson, headers=auth)
        assert full.headers["Retry-After"] == "3"
    counts = Counts()
    ingest.consume(Classifier("customer_id", "organization_id"), counts)
    assert counts.legacy_error == 1
    assert counts.new_reference == 1
    assert counts.lines == 2 + 90 * statuses.count(202)
