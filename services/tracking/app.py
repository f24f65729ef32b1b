"""Composition root of the tracking service."""

from __future__ import annotations

from fastapi import FastAPI

from services.tracking.api import router
from services.tracking.settings import TrackingSettings
from shared.runtime import Runtime, create_service_app
from shared.tracking_tokens import TokenSigner, parse_keys


def create_app(settings: TrackingSettings | None = None) -> FastAPI:
    settings = settings or TrackingSettings()
    runtime = Runtime.create("tracking", settings)
    app = create_service_app(runtime, title="Meer contact — tracking", description="Opens and clicks of the mails.")
    app.state.runtime = runtime
    app.state.signer = TokenSigner(parse_keys(settings.tracking_keys))
    app.include_router(router)
    return app
