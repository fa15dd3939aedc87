"""The daemon's HTTP server: ``/metrics``, ``/health``, ``/health/live``, ``/health/ready``,
plus routes added by other features (``POST /run``, ``POST /deployment``, ``POST /ingest/logs``).

A threaded stdlib server: each request has its own thread, so a slow database check never
blocks a scrape. Handlers only read in-memory state.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from . import __version__
from .clock import isoformat_or_none as _iso
from .component import Component, Route
from .results import Status, overall_status
from .runner import Runner

__all__ = ["HttpServer", "Listener", "Request", "Response", "build_health", "is_admin"]

log = structlog.get_logger(__name__)

MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    client: str


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(
            status=status,
            body=json.dumps(data, indent=2, default=str).encode() + b"\n",
            headers=headers or {},
        )


Handler = Callable[[Request], Response]


def is_admin(request: Request, token: str | None) -> bool:
    """Admin endpoints: the bearer token when one is configured, else loopback clients only."""
    if token:
        auth = request.headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)
    try:
        return ipaddress.ip_address(request.client).is_loopback
    except ValueError:
        return False


def build_health(
    runner: Runner, started: float, components: Sequence[Component] = ()
) -> dict[str, Any]:
    v = runner.view()
    cfg = runner.config
    status = "starting" if v.last_run is None else overall_status(v.results).value
    out: dict[str, Any] = {
        "status": status,
        "version": __version__,
        "uptime_seconds": round(time.monotonic() - started, 3),
        "migration": cfg.migration.name,
        "database": {
            "reachable": v.database_up,
            "checked_at": _iso(v.database_checked_at),
            "error": v.database_error,
        },
        "last_run": None
        if v.last_run is None
        else {
            "at": _iso(v.last_run.started_at),
            "duration_seconds": round(v.last_run.duration_seconds, 3),
            "status": v.last_run.status.value,
        },
        "runs_completed": v.runs_completed,
        "checks": [
            {
                "name": r.check,
                "subject": r.subject,
                "status": r.status.value,
                "observed": dict(r.observed),
                "message": r.message,
            }
            for r in v.results
        ],
    }
    for component in components:
        out.update(component.health())
    return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    app: HttpServer


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 15
    protocol_version = "HTTP/1.1"
    server_version = f"migration-watch/{__version__}"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http request", request=format % args)

    def _dispatch(self) -> None:
        app = self.server.app
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        limit = app.body_limits.get(parts.path, MAX_BODY)
        if length > limit:
            self._send(Response.json({"error": f"body larger than {limit} bytes"}, 413))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=parts.path,
            query=parts.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            client=self.client_address[0],
        )
        handler = app.routes.get((self.command, parts.path))
        if handler is None:
            allowed = sorted(m for (m, p) in app.routes if p == parts.path)
            if allowed:
                resp = Response.json({"error": "method not allowed"}, 405)
                resp.headers["Allow"] = ", ".join(allowed)
            else:
                resp = Response.json({"error": "not found"}, 404)
        else:
            try:
                resp = handler(request)
            except Exception:
                log.exception("http handler failed", path=parts.path)
                resp = Response.json({"error": "internal error"}, 500)
        self._send(resp)

    def _send(self, resp: Response) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    do_GET = _dispatch
    do_POST = _dispatch
    do_HEAD = _dispatch


class Listener:
    """The bound listening socket, made before the parts that need the server's URL.

    ``OSError`` (port in use, address not available) is raised here, before anything starts.
    """

    def __init__(self, host: str, port: int) -> None:
        self.server = _Server((host, port), _RequestHandler)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"


class HttpServer:
    """Routes and a threaded server bound to ``host:port`` (port 0 picks a free one).

    ``components`` contribute ``/health`` sections, readiness conditions and routes; they
    are given here, once.
    """

    def __init__(
        self,
        runner: Runner,
        registry: CollectorRegistry,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        listener: Listener | None = None,
        components: Sequence[Component] = (),
    ) -> None:
        self.runner = runner
        self.registry = registry
        self.started = time.monotonic()
        self.components = tuple(components)
        self.routes: dict[tuple[str, str], Handler] = {}
        self.body_limits: dict[str, int] = {}
        builtin = (
            Route("GET", "/metrics", self._metrics),
            Route("GET", "/health", self._health),
            Route("GET", "/health/live", self._live),
            Route("GET", "/health/ready", self._ready),
        )
        for route in (*builtin, *(r for c in self.components for r in c.routes())):
            self.routes[(route.method, route.path)] = route.handler
            if route.method == "GET":
                self.routes[("HEAD", route.path)] = route.handler
            if route.body_limit is not None:
                self.body_limits[route.path] = route.body_limit
        self._listener = listener or Listener(host, port)
        self._server = self._listener.server
        self._server.app = self
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self._listener.address

    @property
    def url(self) -> str:
        return self._listener.url

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="http",
            daemon=True,
        )
        self._thread.start()
        log.info("http server listening", url=self.url)

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() would wait forever for a loop never started
            self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)

    # ------------------------------------------------------------------ handlers
    def _metrics(self, request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(body=encoder(self.registry), content_type=content_type)

    def _health(self, request: Request) -> Response:
        return Response.json(build_health(self.runner, self.started, self.components))

    def _live(self, request: Request) -> Response:
        return Response.json({"status": "alive", "version": __version__})

    def _ready(self, request: Request) -> Response:
        v = self.runner.view()
        reasons: list[str] = []
        if not v.database_up:
            reasons.append(
                "database unreachable" if v.database_up is False else "database not probed yet"
            )
        reasons += [r for r in (c.ready_reason() for c in self.components) if r]
        if reasons:
            return Response.json({"status": "not ready", "reasons": reasons}, 503)
        status = overall_status(v.results) if v.results else Status.PASS
        return Response.json({"status": "ready", "checks": status.value})
