"""Composition root of the tracking service."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from services.tracking.api import PixelEndpoint, PixelFastPath, TrackingContext, router
from services.tracking.domain import JudgeRules
from services.tracking.handlers import register_kafka_handlers
from services.tracking.recorder import HitJournal, HitLog
from services.tracking.settings import TrackingSettings
from shared.logging import get_logger
from shared.runtime import Runtime, create_service_app
from shared.tracking_tokens import TokenSigner, parse_keys

log = get_logger(__name__)


def create_app(settings: TrackingSettings | None = None) -> PixelFastPath:
    """The tracking app: pixel, links, report and unsubscribe pages, and its Kafka handlers.

    The pixel is served in front of the FastAPI app; everything else goes through it. The
    pixel only appends hits to the hit log; the hit processor (its own process) turns them
    into opens."""
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
    hit_log = HitLog(
        settings.database_url,
        HitJournal(Path(settings.pixel_journal_dir)),
        batch_max=settings.pixel_batch_max,
        record_timeout_s=settings.pixel_record_timeout_s,
    )
    runtime.background += [*[hit_log.run_writer] * settings.pixel_writers, hit_log.run_replay]
    app.state.runtime = runtime
    app.state.tracking = TrackingContext(
        runtime=runtime,
        signer=signer,
        hit_log=hit_log,
        rules=rules,
        burst_window=timedelta(seconds=settings.burst_window_s),
    )
    app.include_router(router)
    register_kafka_handlers(runtime)
    return PixelFastPath(app, PixelEndpoint(signer, hit_log, service=runtime.service))
