"""Enrolment's Kafka handlers: what other services report about a participant's programme.
Each is a change in the shared consumer unit of work (shared.kafka: claimed once per event,
applied in a batch), and an event that asks for what is already so changes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.enrolment import domain, storage
from services.enrolment.exports import build_export_handlers
from services.enrolment.settings import EnrolmentSettings
from services.enrolment.tables import Participant
from services.enrolment.use_cases import participants
from shared.db import utcnow
from shared.events import Envelope, MailSent, ProgrammeCompleted, Topic, UnsubscribeRequested
from shared.kafka import Change
from shared.logging import get_logger
from shared.runtime import Runtime

log = get_logger(__name__)


def build_handlers() -> dict[str, dict[str, Change]]:
    """Changes by topic and event type."""

    async def for_participant(
        session: AsyncSession, envelope: Envelope, change: Callable[[AsyncSession, Participant], Awaitable[None]]
    ) -> None:
        assert envelope.participant_id is not None
        participant = await storage.get_participant(
            session=session, participant_id=envelope.participant_id, for_update=True
        )
        if participant is None or participant.org_id != envelope.org_id:
            # Not ours (or deleted as an unconfirmed sign-up): remember it was seen, change nothing.
            log.warning("event for an unknown participant", event_type=envelope.type, event_id=str(envelope.event_id))
            return
        await change(session, participant)

    async def on_unsubscribe_requested(session: AsyncSession, envelope: Envelope, payload: Any) -> None:
        assert isinstance(payload, UnsubscribeRequested)

        async def change(session: AsyncSession, participant: Participant) -> None:
            if domain.allows(participant.status, "stop"):
                participants.stop(session=session, participant=participant, by="participant", reason=None, now=utcnow())

        await for_participant(session, envelope, change)

    async def on_programme_completed(session: AsyncSession, envelope: Envelope, payload: Any) -> None:
        assert isinstance(payload, ProgrammeCompleted)

        async def change(session: AsyncSession, participant: Participant) -> None:
            participants.complete(session=session, participant=participant, now=payload.completed_at)

        await for_participant(session, envelope, change)

    async def on_mail_sent(session: AsyncSession, envelope: Envelope, payload: Any) -> None:
        assert isinstance(payload, MailSent)

        async def change(session: AsyncSession, participant: Participant) -> None:
            if domain.is_running(participant.status):
                participants.mark_started(session=session, participant=participant, sent_at=payload.sent_at)

        await for_participant(session, envelope, change)

    return {
        Topic.ENGAGEMENT: {UnsubscribeRequested.TYPE: on_unsubscribe_requested},
        Topic.MAIL: {ProgrammeCompleted.TYPE: on_programme_completed, MailSent.TYPE: on_mail_sent},
    }


def register_kafka_handlers(runtime: Runtime) -> None:
    """Subscribe enrolment's handlers with the shared retry and dead-letter rules."""
    settings = runtime.settings
    assert isinstance(settings, EnrolmentSettings)
    retention = timedelta(days=settings.export_retention_days)
    runtime.subscribe({**build_handlers(), **build_export_handlers(retention=retention)})
