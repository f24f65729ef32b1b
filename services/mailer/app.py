"""Composition root of the mailer service."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from datetime import UTC, datetime

from fastapi import FastAPI

from services.mailer.delivery import Clock, DeliveryWorker, schedule_due_deliveries
from services.mailer.handlers import register_kafka_handlers
from services.mailer.mail import MailSettings
from services.mailer.programme import DEFAULT_PACK_DIR, load_pack
from services.mailer.settings import MailerSettings
from services.mailer.smtp import SmtpClient
from shared.logging import get_logger
from shared.runtime import Runtime, create_service_app
from shared.tracking_tokens import TokenSigner, parse_keys

log = get_logger(__name__)


def system_clock() -> datetime:
    return datetime.now(UTC)


def create_app(settings: MailerSettings | None = None, clock: Clock = system_clock) -> FastAPI:
    settings = settings or MailerSettings()
    runtime = Runtime.create("mailer", settings)
    pack = load_pack(settings.pack_dir or DEFAULT_PACK_DIR)
    signer = TokenSigner(parse_keys(settings.tracking_keys))
    mail_settings = MailSettings(
        from_address=settings.mail_from_address,
        message_id_domain=settings.message_id_domain,
        tracking_base_url=settings.tracking_base_url.rstrip("/"),
    )
    scheduler_wake, senders_wake = asyncio.Event(), asyncio.Event()

    def wake(event: asyncio.Event) -> None:
        # set() wakes every current waiter; clearing at once keeps later waits waiting.
        event.set()
        event.clear()

    async def scheduler_loop() -> None:
        while True:
            try:
                if await schedule_due_deliveries(runtime.database, pack, clock()):
                    wake(senders_wake)
            except Exception as error:  # noqa: BLE001 - keep scheduling once the database is back
                log.warning("scheduler error; retrying", error=type(error).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(scheduler_wake.wait(), timeout=settings.schedule_interval_s)

    def sender_loop(index: int) -> DeliveryWorker:
        return DeliveryWorker(
            database=runtime.database,
            transport=SmtpClient(
                settings.smtp_host,
                settings.smtp_port,
                username=settings.smtp_username,
                password=settings.smtp_password,
                start_tls=settings.smtp_starttls,
                timeout=settings.smtp_timeout_s,
            ),
            pack=pack,
            signer=signer,
            mail_settings=mail_settings,
            clock=clock,
        )

    runtime.background.append(scheduler_loop)
    for index in range(settings.sender_concurrency):
        runtime.background.append(functools.partial(sender_loop(index).run, senders_wake))
    register_kafka_handlers(runtime, lambda: wake(scheduler_wake))

    app = create_service_app(
        runtime, title="Meer contact — mailer", description="The daily programme mail and its deliveries."
    )
    app.state.runtime = runtime
    return app
