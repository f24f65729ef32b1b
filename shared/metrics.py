"""Prometheus metrics shared by all services. Labels carry ids of kinds, never of people."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.http_security import bearer_matches

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
CONSUMER_LAG = Gauge(
    "meer_consumer_lag",
    "Records on a partition assigned to this process not yet handled by its consumer group (end offset minus "
    "committed offset).",
    ["service", "group", "topic", "partition"],
)
DEPENDENCY_UP = Gauge(
    "meer_dependency_up", "1 when a dependency answered the last readiness check.", ["service", "dependency"]
)


def metrics_response() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def metrics_app(process: str, token: str | None) -> Starlette:
    """/metrics and /healthz alone, for a process without an HTTP API of its own (tracking's hit
    processor), behind the same bearer token (MEER_METRICS_TOKEN) as every service's /metrics."""

    async def metrics(request: Request) -> Response:
        if token and not bearer_matches(request.headers.get("authorization"), token):
            return JSONResponse(
                {"error": {"status": 401, "message": "A bearer token is needed for /metrics.", "fields": []}},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return metrics_response()

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "service": process})

    return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz)])


class HttpMetricsMiddleware:
    """Counts and times requests by route template (never the raw path: tokens live there).

    A plain ASGI middleware (not BaseHTTPMiddleware, which costs a task per request on the
    tracking pixel's hot path); a request that raises is counted as a 500.
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            HTTP_REQUESTS.labels(self.service, route, scope["method"], str(status)).inc()
            HTTP_LATENCY.labels(self.service, route).observe(time.perf_counter() - started)
