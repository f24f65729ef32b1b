"""Composition root of the mailer service."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from datetime import UTC, datetime

from fastapi import FastAPI

from services.mailer.api import router
from services.mailer.delivery import Clock, DeliveryWorker, RateLimits
from services.mailer.handlers import register_kafka_handlers
from services.mailer.mail import DkimSigner, MailSettings
from services.mailer.programme import DEFAULT_PACK_DIR, load_pack
from services.mailer.settings import MailerSettings
from services.mailer.smtp import SmtpClient
from services.mailer.use_cases import measure_backlog, schedule_digests, schedule_due_deliveries
from shared.db import DedicatedConnection
from shared.logging import get_logger
from shared.mailer_links import link_keys
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
    dkim = None
    if settings.dkim_domain and settings.dkim_private_key_path:
        dkim = DkimSigner(
            domain=settings.dkim_domain,
            selector=settings.dkim_selector,
            private_key_pem=settings.dkim_private_key_path.read_bytes(),
        )
    mail_settings = MailSettings(
        from_address=settings.mail_from_address,
        message_id_domain=settings.message_id_domain,
        tracking_base_url=settings.tracking_base_url.rstrip("/"),
        dkim=dkim,
    )
    limits = RateLimits(settings.rate_limit_per_second, settings.rate_limit_per_org_per_second)
    scheduler_wake, senders_wake = asyncio.Event(), asyncio.Event()

    def wake(event: asyncio.Event) -> None:
        # set() wakes every current waiter; clearing at once keeps later waits waiting.
        event.set()
        event.clear()

    async def scheduler_loop() -> None:
        connection = DedicatedConnection(settings.database_url)
        while True:
            try:
                now = clock()
                created = await schedule_due_deliveries(connection, pack, now)
                created += await schedule_digests(
                    runtime.database,
                    pack,
                    now,
                    local_time=settings.digest_local_time,
                    timezone=settings.digest_timezone,
                    coaching_base_url=settings.coaching_base_url.rstrip("/"),
                )
                if created:
                    wake(senders_wake)
                await measure_backlog(runtime.database, now)
            except Exception as error:  # noqa: BLE001 - keep scheduling once the database is back
                log.warning("scheduler error; retrying", error=type(error).__name__)
                await connection.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(scheduler_wake.wait(), timeout=settings.schedule_interval_s)

    def worker() -> DeliveryWorker:
        transport = SmtpClient(
            settings.smtp_host,
            settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            start_tls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_s,
        )
        return DeliveryWorker(
            runtime.database,
            DedicatedConnection(settings.database_url),
            transport,
            pack,
            signer,
            mail_settings,
            clock,
            limits,
            link_keys(settings.mailer_link_keys),
            lease_s=settings.sending_lease_s,
            on_commit=runtime.relay.wake,
        )

    runtime.background.append(scheduler_loop)
    for _ in range(settings.sender_concurrency):
        runtime.background.append(functools.partial(worker().run, senders_wake))

    def wake_both() -> None:
        wake(scheduler_wake)
        wake(senders_wake)

    register_kafka_handlers(runtime, wake_both)

    app = create_service_app(
        runtime, title="Meer contact — mailer", description="The daily programme mail and its deliveries."
    )
    app.state.runtime = runtime
    app.state.pack = pack
    app.state.signer = signer
    app.state.mail_settings = mail_settings
    app.include_router(router)
    return app
