"""Composition root of the enrolment service."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import FastAPI

from services.enrolment import exports, storage
from services.enrolment.api import public_router, router
from services.enrolment.api.common import KnownApiKeys
from services.enrolment.enrolment_batches import EnrolmentBatches
from services.enrolment.export_api import router as export_router
from services.enrolment.handlers import register_kafka_handlers
from services.enrolment.pages import router as pages_router
from services.enrolment.security import TokenKeys
from services.enrolment.settings import EnrolmentSettings
from services.enrolment.use_cases import signups
from shared.db import Database, utcnow
from shared.http import MULTIPART_OVERHEAD_BYTES
from shared.logging import get_logger
from shared.runtime import Runtime, create_service_app

log = get_logger(__name__)
CLEANUP_INTERVAL_S = 3600.0
EXPORT_RETENTION_INTERVAL_S = 300.0
LOGIN_LIMIT_MEMORY = timedelta(hours=2)
"""Login limits older than this (a window is an hour, a delay at most the lock time) are forgotten."""


async def delete_unconfirmed_signups(database: Database, settings: EnrolmentSettings) -> int:
    """Sign-ups whose link expired long ago are deleted: nothing started, nothing is kept."""
    total = 0
    while True:
        async with database.session() as session:
            deleted = await signups.forget_expired_sign_ups(
                session=session, expired_before=utcnow() - timedelta(days=settings.unconfirmed_retention_days)
            )
            await session.commit()
        total += deleted
        if deleted < signups.FORGET_BATCH:
            return total


async def delete_old_signup_counters(database: Database) -> int:
    """Sign-up counters no sliding window reads any more are deleted (the longest window is a day,
    and the sliding count reads the window before the current one)."""
    async with database.session() as session:
        deleted = await storage.delete_signup_counters(session=session, started_before=utcnow() - timedelta(days=2))
        await session.commit()
    return deleted


def create_app(settings: EnrolmentSettings | None = None) -> FastAPI:
    """The enrolment app: API, public pages, Kafka handlers and the clean-up loop."""
    settings = settings or EnrolmentSettings()
    runtime = Runtime.create("enrolment", settings)

    async def cleanup_loop() -> None:
        """Forget expired sign-ups every hour, whatever goes wrong in one round."""
        while True:
            try:
                deleted = await delete_unconfirmed_signups(runtime.database, settings)
                if deleted:
                    log.info("deleted unconfirmed sign-ups", count=deleted)
                await delete_old_signup_counters(runtime.database)
            except Exception as error:  # noqa: BLE001 - try again next round
                log.warning("could not delete unconfirmed sign-ups", error=type(error).__name__)
            try:
                async with runtime.database.session() as session:
                    await storage.delete_stale_login_limits(session=session, before=utcnow() - LOGIN_LIMIT_MEMORY)
                    await session.commit()
            except Exception as error:  # noqa: BLE001 - try again next round
                log.warning("could not forget old login limits", error=type(error).__name__)
            await asyncio.sleep(CLEANUP_INTERVAL_S)

    async def export_retention_loop() -> None:
        """Delete subject-access exports past their retention (with their bundle or key)."""
        while True:
            try:
                async with runtime.database.session() as session:
                    deleted = await exports.delete_expired_exports(session=session, now=utcnow())
                    await session.commit()
                if deleted:
                    log.info("deleted expired exports", count=deleted)
            except Exception as error:  # noqa: BLE001 - try again next round
                log.warning("could not delete expired exports", error=type(error).__name__)
            await asyncio.sleep(EXPORT_RETENTION_INTERVAL_S)

    batches = EnrolmentBatches(runtime.database.url, on_commit=runtime.relay.wake)

    async def enrolment_batches_until_stop() -> None:
        """Stops the enrolment batches' transaction thread when the service stops."""
        try:
            await asyncio.Event().wait()
        finally:
            await batches.close()

    runtime.background += [cleanup_loop, export_retention_loop, enrolment_batches_until_stop]
    register_kafka_handlers(runtime)
    app = create_service_app(
        runtime,
        title="Meer contact — enrolment",
        description=(
            "Licensed organisations, their branding, staff accounts and participants. "
            'Errors always have the shape {"error": {"status", "message", "fields": [{"field", "reason"}]}}.'
        ),
        # Uploads up to twice their limit reach the route, which names the field at fault.
        body_limits={
            r"/api/organisations/[^/]+/logo": 2 * settings.logo_max_bytes + MULTIPART_OVERHEAD_BYTES,
            r"/api/organisations/[^/]+/participants/import": 2 * settings.import_max_bytes + MULTIPART_OVERHEAD_BYTES,
        },
    )
    app.state.runtime = runtime
    app.state.enrolment_batches = batches
    app.state.known_api_keys = KnownApiKeys(runtime.database)
    app.state.token_keys = TokenKeys.load(settings.staff_token_private_key_path, settings.staff_token_public_key_path)
    app.include_router(router)
    app.include_router(export_router)
    app.include_router(public_router)
    app.include_router(pages_router)
    return app
