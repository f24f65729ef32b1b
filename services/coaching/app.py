"""Composition root of the coaching service."""

from __future__ import annotations

from fastapi import FastAPI

from services.coaching.api import router
from services.coaching.handlers import register_kafka_handlers
from services.coaching.settings import CoachingSettings
from shared.runtime import Runtime, create_service_app


def create_app(settings: CoachingSettings | None = None) -> FastAPI:
    runtime = Runtime.create("coaching", settings or CoachingSettings())
    register_kafka_handlers(runtime)
    app = create_service_app(
        runtime, title="Meer contact — coaching", description="The coach's dashboard, built from events."
    )
    app.state.runtime = runtime
    app.include_router(router)
    return app
