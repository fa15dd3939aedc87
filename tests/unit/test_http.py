"""The HTTP server over real HTTP: built-in routes, and what components contribute."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import httpx
import pytest
from prometheus_client.core import Metric

from migration_watch import metrics
from migration_watch.component import Component, Route
from migration_watch.config import Config
from migration_watch.db import Database
from migration_watch.exporter import build_registry
from migration_watch.http import HttpServer, Listener, Request, Response
from migration_watch.runner import Runner


class Part(Component):
    def __init__(self, name: str, *, ready: str | None = None) -> None:
        self.name = name
        self.ready = ready
        self.seen: list[Request] = []

    def collect(self) -> Iterable[Metric]:
        fam = metrics.gauge("outbox_size")
        fam.add_metric([], 7.0)
        yield fam

    def health(self) -> Mapping[str, Any]:
        return {self.name: {"ok": True}}

    def ready_reason(self) -> str | None:
        return self.ready

    def routes(self) -> Sequence[Route]:
        return (Route("POST", f"/{self.name}", self._post, body_limit=8),)

    def _post(self, request: Request) -> Response:
        self.seen.append(request)
        return Response.json({"got": request.body.decode()}, 202)


@pytest.fixture
def serve(offline_config: Callable[..., Config]) -> Iterator[Callable[..., str]]:
    servers: list[HttpServer] = []

    def start(*components: Component) -> str:
        config = offline_config()
        runner = Runner(config, Database(config.database))
        registry, _ = build_registry(config, runner, components)
        server = HttpServer(
            runner, registry, listener=Listener("127.0.0.1", 0), components=components
        )
        server.start()
        servers.append(server)
        return server.url

    yield start
    for s in servers:
        s.stop()


def test_components_add_health_sections_routes_and_metrics(serve: Callable[..., str]) -> None:
    a, b = Part("a"), Part("b")
    url = serve(a, b)
    health = httpx.get(url + "/health").json()
    assert health["a"] == {"ok": True} and health["b"] == {"ok": True}
    assert list(health)[-2:] == ["a", "b"]  # component order, after the runner's keys
    r = httpx.post(url + "/b", content=b"hello")
    assert r.status_code == 202 and r.json() == {"got": "hello"}
    assert [req.body for req in b.seen] == [b"hello"] and a.seen == []
    assert "migration_watch_outbox_size 7.0" in httpx.get(url + "/metrics").text


def test_body_limit_method_and_unknown_path(serve: Callable[..., str]) -> None:
    part = Part("a")
    url = serve(part)
    assert httpx.post(url + "/a", content=b"123456789").status_code == 413
    assert part.seen == []
    r = httpx.get(url + "/a")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert httpx.get(url + "/nope").status_code == 404
    assert httpx.head(url + "/health/live").status_code == 200


def test_ready_lists_every_reason(serve: Callable[..., str]) -> None:
    url = serve(Part("a", ready="no check run completed yet"), Part("b"))
    r = httpx.get(url + "/health/ready")
    assert r.status_code == 503
    assert r.json()["reasons"] == ["database not probed yet", "no check run completed yet"]


def test_listener_binds_before_the_server(offline_config: Callable[..., Config]) -> None:
    listener = Listener("127.0.0.1", 0)
    host, port = listener.address
    assert host == "127.0.0.1" and port > 0
    assert listener.url == f"http://127.0.0.1:{port}"
    with pytest.raises(OSError):
        Listener("127.0.0.1", port)  # in use
    config = offline_config()
    runner = Runner(config, Database(config.database))
    registry, _ = build_registry(config, runner)
    server = HttpServer(runner, registry, listener=listener)
    try:
        assert server.url == listener.url
    finally:
        server.stop()
