"""How every service process starts, runs and reports its health.

One integration style for all four services: a FastAPI app whose lifespan starts and
stops a plain FastStream KafkaBroker, the outbox relay and the service's own background
loops. `run_service` waits (bounded) for PostgreSQL and Kafka, applies the Alembic
migrations, then serves HTTP with uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
import uvloop
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from faststream.kafka import KafkaBroker
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp

from shared.asyncapi import asyncapi_document
from shared.db import DATABASE_CONNECTION_ERRORS, Database, database_unavailable
from shared.errors import Refusal
from shared.events import Topic
from shared.http import BodySizeLimit
from shared.http_security import SecurityHeadersMiddleware, bearer_matches
from shared.kafka import (
    Change,
    Prepare,
    Subscription,
    TombstoneChange,
    client_options,
    create_broker,
    ensure_topics,
    kafka_security,
    report_consumer_lag,
    subscribe_events,
)
from shared.logging import KAFKA_OUTAGE, configure_logging, get_logger, log_recovery
from shared.metrics import DEPENDENCY_UP, HttpMetricsMiddleware, metrics_response
from shared.migrations import upgrade_to_head
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings

log = get_logger(__name__)

BackgroundLoop = Callable[[], Coroutine[Any, Any, None]]
SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


@dataclass
class Runtime:
    """The adapters one service process shares between its HTTP routes and handlers."""

    service: str
    settings: ServiceSettings
    database: Database
    broker: KafkaBroker
    relay: OutboxRelay
    background: list[BackgroundLoop] = field(default_factory=list)

    @classmethod
    def create(cls, service: str, settings: ServiceSettings) -> Runtime:
        database = Database(settings.database_url, pool_size=settings.database_pool_size)
        security = kafka_security(settings)
        broker = create_broker(settings.kafka_bootstrap, client_id=f"meer-{service}", security=security)
        relay = OutboxRelay(
            database,
            settings.kafka_bootstrap,
            service=service,
            poll_interval_s=settings.outbox_poll_interval_s,
            security=security,
        )
        return cls(service=service, settings=settings, database=database, broker=broker, relay=relay)

    def subscribe(
        self,
        changes: Mapping[str, Mapping[str, Change]],
        tombstones: Mapping[str, TombstoneChange] | None = None,
        *,
        prepare: Prepare | None = None,
    ) -> None:
        """Consume these changes' topics in batches in the service's consumer group, as its
        settings say (shared.kafka.subscribe_events), and report that group's lag on the
        partitions this process consumes."""
        group = self.settings.consumer_group or self.service
        subscriber = subscribe_events(
            self.broker,
            self.database,
            Subscription(changes, dict(tombstones or {}), prepare),
            service=self.service,
            group_id=group,
            offset_reset=self.settings.kafka_offset_reset,
            max_attempts=self.settings.handler_max_attempts,
            units_in_flight=self.settings.consumer_units_in_flight,
        )

        async def consumer_lag_report() -> None:
            await report_consumer_lag(subscriber, service=self.service, group=group)

        self.background.append(consumer_lag_report)

    async def readiness(self) -> dict[str, bool]:
        """Whether PostgreSQL and Kafka answer right now (each within a second)."""
        checks: dict[str, bool] = {}
        try:
            await asyncio.wait_for(self.database.ping(), timeout=1.0)
            checks["postgres"] = True
        except Exception:  # noqa: BLE001 - any failure means not ready
            checks["postgres"] = False
        try:
            checks["kafka"] = await self.broker.ping(timeout=1.0)
        except Exception:  # noqa: BLE001
            checks["kafka"] = False
        for dependency, up in checks.items():
            DEPENDENCY_UP.labels(self.service, dependency).set(1 if up else 0)
        return checks

    async def watch_kafka_outage(self, interval_s: float = 2.0) -> None:
        """While the Kafka client reports an outage, check Kafka every few seconds and log
        the outage's end once it answers again (the client itself says nothing then)."""
        while True:
            await asyncio.sleep(interval_s)
            if not KAFKA_OUTAGE.in_outage:
                continue
            try:
                up = await self.broker.ping(timeout=1.0)
            except Exception:  # noqa: BLE001 - still away
                up = False
            DEPENDENCY_UP.labels(self.service, "kafka").set(1 if up else 0)
            if up:
                log_recovery(KAFKA_OUTAGE, time.monotonic())


def error_body(status: int, message: str, fields: Sequence[dict[str, str]] = ()) -> dict[str, Any]:
    """The one error shape of every API: {"error": {"status", "message", "fields": [...]}}."""
    return {"error": {"status": status, "message": message, "fields": list(fields)}}


class FieldError(BaseModel):
    field: str = Field(description="The input field at fault, e.g. 'email' or 'licence'.")
    reason: str


class ErrorDetail(BaseModel):
    status: int
    message: str = Field(description="What went wrong, in one sentence.")
    fields: list[FieldError] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    """The one error shape of every endpoint."""

    error: ErrorDetail


def error_responses(described: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each in the one error shape."""
    return {status: {"model": ErrorResponse, "description": text} for status, text in described.items()}


_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_UNPARSABLE_BODY = "The body could not be parsed (not JSON, not UTF-8, or broken multipart data)."
_BODY_TOO_LARGE = "The body is larger than this route accepts (shared.http.BodySizeLimit)."


def document_common_errors(spec: dict[str, Any]) -> dict[str, Any]:
    """Make the spec say what the app's shared handlers answer: every error in the one error shape
    as JSON, 422 included (not FastAPI's own shape), and a 400 and a 413 wherever a request body is parsed."""
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    for name, model in (("ErrorResponse", ErrorResponse), ("ErrorDetail", ErrorDetail), ("FieldError", FieldError)):
        if name not in components:
            components[name] = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components[name].pop("$defs", None)
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for response in responses.values():
                # The one error shape is JSON also on routes whose own answer is a page or a file.
                content = response.get("content", {})
                for media_type in [m for m, body in content.items() if body.get("schema") == _ERROR_REF]:
                    content["application/json"] = content.pop(media_type)
            json_422 = responses.get("422", {}).get("content", {}).get("application/json", {})
            if json_422.get("schema") == {"$ref": "#/components/schemas/HTTPValidationError"}:
                json_422["schema"] = dict(_ERROR_REF)
            if "requestBody" in operation and "400" not in responses:
                responses["400"] = {
                    "description": _UNPARSABLE_BODY,
                    "content": {"application/json": {"schema": dict(_ERROR_REF)}},
                }
            if "requestBody" in operation and "413" not in responses:
                responses["413"] = {
                    "description": _BODY_TOO_LARGE,
                    "content": {"application/json": {"schema": dict(_ERROR_REF)}},
                }
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return spec


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this request's path (Starlette's 405 names only the first route's)."""
    return [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in request.app.routes)
    ]


def api_error(status: int, message: str, field: str | None = None) -> HTTPException:
    """An HTTP error in the one error shape, optionally naming the field at fault."""
    fields = [{"field": field, "reason": message}] if field else []
    return HTTPException(status, {"message": message, "fields": fields})


def create_service_app(
    runtime: Runtime, *, title: str, description: str, body_limits: Mapping[str, int] | None = None
) -> FastAPI:
    """A FastAPI app with health, readiness, metrics, error shape and the Kafka lifespan.
    Request bodies are capped (shared.http.BodySizeLimit); `body_limits` raises the cap for
    the paths (regular expressions) that take uploads."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.broker.start()
        tasks = [asyncio.create_task(runtime.relay.run(), name="outbox-relay")]
        tasks.append(asyncio.create_task(runtime.watch_kafka_outage(), name="kafka-outage-watch"))
        tasks += [asyncio.create_task(loop(), name=getattr(loop, "__name__", "loop")) for loop in runtime.background]
        log.info("service started", http_port=runtime.settings.http_port)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runtime.broker.stop()
            await runtime.database.dispose()
            log.info("service stopped")

    docs = runtime.settings.api_docs_enabled
    app = FastAPI(
        title=title,
        description=description,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.add_middleware(BodySizeLimit, limits=body_limits or {})
    app.add_middleware(HttpMetricsMiddleware, service=runtime.service)
    app.add_middleware(SecurityHeadersMiddleware)

    @app.exception_handler(RequestValidationError)
    async def on_invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": ".".join(str(part) for part in issue["loc"] if part != "body"), "reason": issue["msg"]}
            for issue in error.errors()
        ]
        return JSONResponse(error_body(422, "The request is not valid.", fields), status_code=422)

    @app.exception_handler(Refusal)
    async def on_refusal(_: Request, refusal: Refusal) -> JSONResponse:
        fields = [{"field": refusal.field, "reason": refusal.message}] if refusal.field else []
        return JSONResponse(error_body(refusal.http_status, refusal.message, fields), status_code=refusal.http_status)

    async def on_database_error(request: Request, error: Exception) -> Response:
        if not database_unavailable(error):
            raise error  # a bug, not an outage: the server error it is
        # PostgreSQL stopped or restarting (SQLAlchemy passes a refused connect on unwrapped):
        # nothing of this request was kept, and the client may try again.
        log.warning("dependency unavailable for a request", path=request.url.path, error=type(error).__name__)
        body = error_body(503, "The service cannot reach its database just now; try again in a moment.")
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})

    database_errors: tuple[type[Exception], ...] = (DBAPIError, ConnectionError, *DATABASE_CONNECTION_ERRORS)
    for database_error in database_errors:
        app.add_exception_handler(database_error, on_database_error)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        detail = error.detail
        if isinstance(detail, dict):
            body = error_body(error.status_code, str(detail.get("message")), detail.get("fields", []))
        else:
            body = error_body(error.status_code, str(detail))
        headers = dict(error.headers or {})
        if error.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse(body, status_code=error.status_code, headers=headers or None)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_common_errors(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    if docs:
        catalogue: dict[str, Any] = {}

        # The event catalogue beside the OpenAPI document, under the same switch (MEER_API_DOCS).
        @app.get("/asyncapi.json", tags=["operations"], include_in_schema=False)
        async def asyncapi() -> JSONResponse:
            if not catalogue:
                catalogue.update(asyncapi_document())
            return JSONResponse(catalogue)

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": runtime.service}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="PostgreSQL and Kafka are reachable",
        responses={503: {"description": "PostgreSQL or Kafka is not reachable; `checks` says which."}},
    )
    async def readyz() -> JSONResponse:
        checks = await runtime.readiness()
        ready = all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics(request: Request) -> Any:
        token = runtime.settings.metrics_token
        if token and not bearer_matches(request.headers.get("authorization"), token):
            return JSONResponse(
                error_body(401, "A bearer token is needed for /metrics."),
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return metrics_response()

    return app


async def wait_for_dependencies(settings: ServiceSettings, service: str) -> None:
    """Retry PostgreSQL and Kafka with backoff for startup_timeout_s; exit(1) with one line if either stays away."""
    deadline = time.monotonic() + settings.startup_timeout_s

    async def kafka_ping() -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap,
            request_timeout_ms=3000,
            **client_options(kafka_security(settings)),
        )
        try:
            await admin.start()
            await admin.describe_cluster()
        finally:
            await admin.close()

    database = Database(settings.database_url, pool_size=1)
    try:
        for name, check in (("PostgreSQL", database.ping), ("Kafka", kafka_ping)):
            delay, last_error = 0.25, ""
            while True:
                try:
                    await asyncio.wait_for(check(), timeout=5)
                    break
                except Exception as error:  # noqa: BLE001 - reported below
                    last_error = f"{type(error).__name__}: {error}"[:200]
                if time.monotonic() + delay > deadline:
                    where = settings.kafka_bootstrap if name == "Kafka" else settings.database_url.split("@")[-1]
                    log.error(
                        f"cannot reach {name} at {where} after {settings.startup_timeout_s:.0f}s; exiting",
                        last_error=last_error,
                    )
                    sys.exit(1)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
    finally:
        await database.dispose()


def settle_startup_objects() -> None:
    """Keep what start-up made (modules, models, the app: hundreds of thousands of objects that
    live as long as the process) out of the garbage collector's full passes, which would
    otherwise scan them again and again while a consumer churns through batches."""
    gc.collect()
    gc.freeze()


def run_service(
    service: str,
    settings: SettingsT,
    create_app: Callable[[SettingsT], ASGIApp],
    migrations_dir: Path,
) -> None:
    """The start command of every service: wait for dependencies, migrate, serve."""
    configure_logging(service, settings.log_level)

    async def main() -> None:
        await wait_for_dependencies(settings, service)
        await asyncio.to_thread(upgrade_to_head, migrations_dir, settings.database_url)
        await ensure_topics(
            settings.kafka_bootstrap,
            Topic.ALL,
            partitions=settings.kafka_partitions,
            replication_factor=settings.kafka_replication_factor,
            security=kafka_security(settings),
        )
        app = create_app(settings)
        settle_startup_objects()
        # Behind a TLS proxy: the client's address and scheme (Secure cookies, same-origin
        # checks, per-source limits) come from X-Forwarded-* of these proxies only.
        config = uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="on",
            proxy_headers=True,
            forwarded_allow_ips=settings.forwarded_allow_ips,
        )
        await uvicorn.Server(config).serve()

    # uvloop, as uvicorn picks by itself when it owns the loop: this process starts it.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
