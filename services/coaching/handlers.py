"""Coaching's Kafka handlers: every event updates the dashboard projection, once.

Events of one participant come from several topics, so they may arrive in any order
(an open before its mail.sent, a mail before the enrolment); every handler upserts.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.coaching.projection import record_open, summarise_mails
from services.coaching.tables import DashboardRow, MailSeen
from shared.db import Database, claim_event, utcnow
from shared.events import Envelope, MailOpened, MailSent, ParticipantEnrolled, Topic
from shared.kafka import EventHandler, subscribe_events
from shared.runtime import Runtime


async def _row(session: AsyncSession, envelope: Envelope) -> DashboardRow:
    assert envelope.participant_id is not None
    row = await session.get(DashboardRow, envelope.participant_id, with_for_update=True)
    if row is None:
        row = DashboardRow(participant_id=envelope.participant_id, org_id=envelope.org_id)
    return row


async def _mails(session: AsyncSession, participant_id: UUID) -> list[MailSeen]:
    result = await session.execute(select(MailSeen).where(col(MailSeen.participant_id) == participant_id))
    return list(result.scalars())


def build_handlers(database: Database) -> dict[str, dict[str, EventHandler]]:
    """Handlers by topic and event type."""

    async def on_participant_enrolled(envelope: Envelope) -> None:
        payload = envelope.parsed()
        assert isinstance(payload, ParticipantEnrolled)
        async with database.session() as session:
            if not await claim_event(session, envelope.event_id):
                return
            row = await _row(session, envelope)
            row.coach_id, row.first_name, row.phone = payload.coach_id, payload.first_name, payload.phone
            if row.status == "unknown":
                row.status = "enrolled"
            row.updated_at = utcnow()
            session.add(row)
            await session.commit()

    async def on_mail_sent(envelope: Envelope) -> None:
        payload = envelope.parsed()
        assert isinstance(payload, MailSent) and envelope.participant_id is not None
        async with database.session() as session:
            if not await claim_event(session, envelope.event_id):
                return
            row = await _row(session, envelope)
            mail = await session.get(MailSeen, payload.delivery_id) or MailSeen(
                delivery_id=payload.delivery_id, participant_id=envelope.participant_id, day=payload.day
            )
            mail.sent_at, mail.lesson_title = payload.sent_at, payload.lesson_title
            session.add(mail)
            await session.flush()
            summarise_mails(row, await _mails(session, envelope.participant_id))
            if row.status in ("unknown", "enrolled"):
                row.status = "active"
            row.updated_at = utcnow()
            session.add(row)
            await session.commit()

    async def on_mail_opened(envelope: Envelope) -> None:
        payload = envelope.parsed()
        assert isinstance(payload, MailOpened) and envelope.participant_id is not None
        async with database.session() as session:
            if not await claim_event(session, envelope.event_id):
                return
            row = await _row(session, envelope)
            mail = await session.get(MailSeen, payload.delivery_id) or MailSeen(
                delivery_id=payload.delivery_id, participant_id=envelope.participant_id, day=payload.day
            )
            session.add(record_open(mail, payload.opened_at, likely_automated=payload.likely_automated))
            await session.flush()
            summarise_mails(row, await _mails(session, envelope.participant_id))
            row.updated_at = utcnow()
            session.add(row)
            await session.commit()

    return {
        Topic.PARTICIPANT: {ParticipantEnrolled.TYPE: on_participant_enrolled},
        Topic.MAIL: {MailSent.TYPE: on_mail_sent},
        Topic.ENGAGEMENT: {MailOpened.TYPE: on_mail_opened},
    }


def register_kafka_handlers(runtime: Runtime) -> None:
    subscribe_events(
        runtime.broker,
        build_handlers(runtime.database),
        service=runtime.service,
        max_attempts=runtime.settings.handler_max_attempts,
    )
