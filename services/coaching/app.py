"""Composition root of the coaching service."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from services.coaching import api, intake_routes, offer_pages, outcome_routes, web
from services.coaching.auth import (
    PARTNER_REFUSED_DUTCH,
    SESSION_COOKIE,
    LoginRequired,
    PartnerPageRefused,
    StaffTokenVerifier,
)
from services.coaching.callplan import keep_raising_due_no_open_alerts
from services.coaching.dashboard import Clock, SystemClock
from services.coaching.handlers import register_kafka_handlers
from services.coaching.kit import LogoFetcher
from services.coaching.live import LiveHub, LiveListener
from services.coaching.settings import CoachingSettings
from shared.runtime import Runtime, create_service_app

STATIC = Path(__file__).parent / "static"


def create_app(settings: CoachingSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """The coaching app: Kafka handlers, JSON API, web pages, live updates."""
    settings = settings or CoachingSettings()
    runtime = Runtime.create("coaching", settings)
    hub = LiveHub()
    tz = ZoneInfo(settings.display_timezone)
    register_kafka_handlers(runtime, hub, tz)
    listener = LiveListener(settings.database_url, hub)

    async def raise_due_alerts() -> None:
        await keep_raising_due_no_open_alerts(runtime.database, tz=tz, interval_s=settings.alert_check_interval_s)

    runtime.background += [listener.run, raise_due_alerts]
    app = create_service_app(
        runtime,
        title="Meer contact — coaching",
        description=(
            "The coach's live dashboard, the call plan and call log, and the personal plan. "
            "Every route needs a staff token from enrolment (`Authorization: Bearer …`)."
        ),
    )
    app.state.runtime = runtime
    app.state.staff_tokens = StaffTokenVerifier(settings.staff_token_public_key_path)
    app.state.services = api.Services(
        settings=settings,
        clock=clock or SystemClock(),
        hub=hub,
        logos=LogoFetcher(timeout_s=settings.logo_timeout_s, max_bytes=settings.logo_max_bytes),
    )
    app.state.templates = web.build_templates()
    app.include_router(api.router)
    app.include_router(web.router)
    app.include_router(outcome_routes.api_router)
    app.include_router(outcome_routes.web_router)
    app.include_router(intake_routes.api_router)
    app.include_router(intake_routes.web_router)
    app.include_router(offer_pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(LoginRequired)
    async def on_login_required(_: Request, error: LoginRequired) -> RedirectResponse:
        response = RedirectResponse(error.location, status_code=303)
        if error.expired:
            response.delete_cookie(SESSION_COOKIE)
        return response

    @app.exception_handler(web.PageError)
    async def on_page_error(request: Request, error: web.PageError) -> HTMLResponse:
        return await web.error_page(request, error)

    @app.exception_handler(PartnerPageRefused)
    async def on_partner_refused(request: Request, _: PartnerPageRefused) -> HTMLResponse:
        return await web.error_page(request, web.PageError(403, PARTNER_REFUSED_DUTCH), home="/signalen")

    return app
