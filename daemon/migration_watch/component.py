"""The faces a part of the running service may have, declared once at construction.

A part of the service (the week, alerting, the log watch, the admin endpoints) is a
:class:`Component`: it may contribute metric families (``collect``, registered once with the
service's ``CollectorRegistry``), a section of ``GET /health`` (``health``), a readiness
condition (``ready_reason``), HTTP routes (``routes``) and work on every pulse (``pulse``).
Every face is optional (the defaults contribute nothing). The service builds its parts, then
hands the tuple to the registry and the HTTP server; nothing is appended afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .http import Request, Response

__all__ = ["Component", "Route"]


@dataclass(frozen=True)
class Route:
    """An HTTP route a component serves (``GET`` routes answer ``HEAD`` too)."""

    method: str
    path: str
    handler: Callable[[Request], Response]
    #: Largest accepted request body in bytes (the server's default when None).
    body_limit: int | None = None


class Component(Collector):
    """A part of the service; override the faces it has."""

    def collect(self) -> Iterable[Metric]:
        """Metric families (scrapes call it: read memory only, never the database)."""
        return ()

    def health(self) -> Mapping[str, Any]:
        """Keys merged into ``GET /health`` (in component order)."""
        return {}

    def ready_reason(self) -> str | None:
        """None when this part lets ``/health/ready`` answer 200, else the reason."""
        return None

    def routes(self) -> Sequence[Route]:
        """HTTP routes served by this part."""
        return ()

    def pulse(self) -> None:
        """Work done on every pulse, after the runner's probe and the pulse's signals."""
        return None
