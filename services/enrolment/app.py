"""Composition root of the enrolment service."""

from __future__ import annotations

from fastapi import FastAPI

from services.enrolment.api import router
from services.enrolment.settings import EnrolmentSettings
from shared.runtime import Runtime, create_service_app


def create_app(settings: EnrolmentSettings | None = None) -> FastAPI:
    runtime = Runtime.create("enrolment", settings or EnrolmentSettings())
    app = create_service_app(
        runtime,
        title="Meer contact — enrolment",
        description="Licensed organisations, coaches and participants.",
    )
    app.state.runtime = runtime
    app.include_router(router)
    return app
