"""Composition root of the tracking service."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from services.tracking.api import PixelEndpoint, PixelFastPath, TrackingContext, router
from services.tracking.domain import JudgeRules
from services.tracking.handlers import register_kafka_handlers
from services.tracking.recorder import RELEASE_BATCH, OpenRecorder, release_held_opens
from services.tracking.settings import TrackingSettings
from shared.db import utcnow
from shared.logging import get_logger
from shared.runtime import Runtime, create_service_app
from shared.tracking_tokens import TokenSigner, parse_keys

log = get_logger(__name__)


def create_app(settings: TrackingSettings | None = None) -> PixelFastPath:
    """The tracking app: pixel, links, report and unsubscribe pages, and its Kafka handlers.

    The pixel is served in front of the FastAPI app; everything else goes through it."""
    settings = settings or TrackingSettings()
    runtime = Runtime.create("tracking", settings)
    app = create_service_app(
        runtime,
        title="Meer contact — tracking",
        description=(
            "Opens, clicks, assignment reports and unsubscribe requests from the programme mails. "
            "`GET /o/{token}.gif` (the open pixel) is served before this app's routing and is not listed below."
        ),
    )
    signer = TokenSigner(parse_keys(settings.tracking_keys))
    rules = JudgeRules(
        fast_hit_s=settings.fast_hit_s,
        instant_click_s=settings.instant_click_s,
        burst_min_links=settings.burst_min_links,
    )
    recorder = OpenRecorder(
        settings.database_url,
        rules,
        burst_window_s=settings.burst_window_s,
        batch_max=settings.pixel_batch_max,
        confirm_timeout_s=settings.pixel_record_timeout_s,
        buffer_max=settings.pixel_buffer_max,
        on_commit=runtime.relay.wake,
    )
    retention = timedelta(hours=settings.held_open_retention_hours)

    async def release_loop() -> None:
        """Opens held for a mail not yet seen sent become opens once its mail.sent is in."""
        while True:
            try:
                while await release_held_opens(runtime.database, now=utcnow(), retention=retention) == RELEASE_BATCH:
                    pass
            except Exception as error:  # noqa: BLE001 - try again next round
                log.warning("could not release held opens", error=type(error).__name__)
            await asyncio.sleep(settings.held_open_release_s)

    runtime.background += [recorder.run_watchdog, *[recorder.run_writer] * settings.pixel_writers, release_loop]
    app.state.runtime = runtime
    app.state.tracking = TrackingContext(
        runtime=runtime,
        signer=signer,
        recorder=recorder,
        rules=rules,
        burst_window=timedelta(seconds=settings.burst_window_s),
    )
    app.include_router(router)
    register_kafka_handlers(runtime)
    return PixelFastPath(app, PixelEndpoint(signer, recorder, service=runtime.service))
