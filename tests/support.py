"""Helpers shared by the test suites: a webhook receiver, free ports, and external tools
(Prometheus, Alertmanager, promtool, amtool) found on PATH and run on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

__all__ = [
    "Received",
    "Receiver",
    "Responder",
    "free_port",
    "log_tail",
    "ok",
    "require_tool",
    "tool_process",
]

# --------------------------------------------------------------------------- a real receiver


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[[int, Received], tuple[int, dict[str, str], bytes]]


def ok(_: int, __: Received) -> tuple[int, dict[str, str], bytes]:
    return 204, {}, b""


@dataclass
class Receiver:
    """A stdlib HTTP server in a thread recording every POST; ``respond`` scripts answers."""

    port: int = 0
    respond: Responder = ok
    requests: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                req = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                index = len(outer.requests)
                outer.requests.append(req)
                status, headers, out = outer.respond(index, req)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.requests]


# --------------------------------------------------------------------------- external tools


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def require_tool(*names: str) -> str:
    """The first of ``names`` on PATH; skip (fail under CI=true) when none is installed:
    CI must not pass by skipping."""
    for name in names:
        path = shutil.which(name)
        if path is not None:
            return path
    message = f"{names[0]} not found on PATH (apt-get install prometheus prometheus-alertmanager)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def log_tail(log_path: Path, limit: int = 6000) -> str:
    """The last ``limit`` characters of a process's log, under a header naming the file."""
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return f"----- log ({log_path}) -----\n{text[-limit:]}"


@contextlib.contextmanager
def tool_process(
    argv: Sequence[str], *, ready_url: str, log_path: Path, timeout: float = 30
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv`` (output to ``log_path``), wait until ``ready_url`` answers 200, yield the
    process, then terminate it (kill after 10 s). Fails the test with the log if the process
    exits or is not ready within ``timeout`` seconds."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + timeout
        while True:  # waiting for an external process to listen, not for our own clock
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    break
            if proc.poll() is not None:
                pytest.fail(f"{argv[0]} exited with {proc.returncode}:\n{log_tail(log_path)}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{argv[0]} not ready at {ready_url} after {timeout:.0f}s:\n"
                    + log_tail(log_path)
                )
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
