"""Enrolment's Kafka handlers: what other services report about a participant's programme.
Each runs once per event (claim_event), and an event that asks for what is already so
changes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from services.enrolment import domain, storage
from services.enrolment.exports import build_export_handlers
from services.enrolment.settings import EnrolmentSettings
from services.enrolment.tables import Participant
from services.enrolment.use_cases import participants
from shared.db import Database, claim_event, utcnow
from shared.events import Envelope, MailSent, ProgrammeCompleted, Topic, UnsubscribeRequested
from shared.kafka import EventHandler
from shared.logging import get_logger
from shared.runtime import Runtime

log = get_logger(__name__)


def build_handlers(database: Database) -> dict[str, dict[str, EventHandler]]:
    """Handlers by topic and event type."""

    async def for_participant(
        envelope: Envelope, change: Callable[[AsyncSession, Participant], Awaitable[None]]
    ) -> None:
        assert envelope.participant_id is not None
        async with database.session() as session:
            if not await claim_event(session, envelope.event_id):
                return
            participant = await storage.get_participant(
                session=session, participant_id=envelope.participant_id, for_update=True
            )
            if participant is None or participant.org_id != envelope.org_id:
                # Not ours (or deleted as an unconfirmed sign-up): remember it was seen, change nothing.
                log.warning(
                    "event for an unknown participant", event_type=envelope.type, event_id=str(envelope.event_id)
                )
            else:
                await change(session, participant)
            await session.commit()

    async def on_unsubscribe_requested(envelope: Envelope) -> None:
        payload = envelope.parsed()
        assert isinstance(payload, UnsubscribeRequested)

        async def change(session: AsyncSession, participant: Participant) -> None:
            if domain.allows(participant.status, "stop"):
                participants.stop(session=session, participant=participant, by="participant", reason=None, now=utcnow())

        await for_participant(envelope, change)

    async def on_programme_completed(envelope: Envelope) -> None:
        payload = envelope.parsed()
        assert isinstance(payload, ProgrammeCompleted)

        async def change(session: AsyncSession, participant: Participant) -> None:
            participants.complete(session=session, participant=participant, now=payload.completed_at)

        await for_participant(envelope, change)

    async def on_mail_sent(envelope: Envelope) -> None:
        payload = envelope.parsed()
        assert isinstance(payload, MailSent)

        async def change(session: AsyncSession, participant: Participant) -> None:
            if domain.is_running(participant.status):
                participants.mark_started(session=session, participant=participant, sent_at=payload.sent_at)

        await for_participant(envelope, change)

    return {
        Topic.ENGAGEMENT: {UnsubscribeRequested.TYPE: on_unsubscribe_requested},
        Topic.MAIL: {ProgrammeCompleted.TYPE: on_programme_completed, MailSent.TYPE: on_mail_sent},
    }


def register_kafka_handlers(runtime: Runtime) -> None:
    """Subscribe enrolment's handlers with the shared retry and dead-letter rules."""
    settings = runtime.settings
    assert isinstance(settings, EnrolmentSettings)
    retention = timedelta(days=settings.export_retention_days)
    runtime.subscribe(
        {**build_handlers(runtime.database), **build_export_handlers(runtime.database, retention=retention)}
    )
