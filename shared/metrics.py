"""Prometheus metrics shared by all services. Labels carry ids of kinds, never of people."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

HTTP_REQUESTS = Counter(
    "meer_http_requests_total", "HTTP requests by route template and status.", ["service", "route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "meer_http_request_seconds",
    "HTTP request latency by route template.",
    ["service", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_HANDLED = Counter(
    "meer_events_handled_total", "Events consumed, by topic, type and outcome.", ["service", "topic", "type", "outcome"]
)
EVENTS_DEAD_LETTERED = Counter(
    "meer_events_dead_lettered_total", "Events moved to a dead-letter topic.", ["service", "topic"]
)
OUTBOX_PUBLISHED = Counter("meer_outbox_published_total", "Outbox rows published to Kafka.", ["service"])
OUTBOX_BACKLOG = Gauge("meer_outbox_backlog", "Outbox rows committed and not yet published.", ["service"])
DEPENDENCY_UP = Gauge(
    "meer_dependency_up", "1 when a dependency answered the last readiness check.", ["service", "dependency"]
)


def metrics_response() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def http_metrics_middleware(
    service: str,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """Count and time requests by route template (never the raw path: tokens live there)."""

    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        HTTP_REQUESTS.labels(service, route, request.method, str(response.status_code)).inc()
        HTTP_LATENCY.labels(service, route).observe(time.perf_counter() - started)
        return response

    return middleware
