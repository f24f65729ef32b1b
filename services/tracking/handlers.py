"""Tracking's Kafka handlers: when each mail was sent (for the seconds-since-sending
signal), the organisations' branding (for the pages), and erasure. Each runs once per
event (idempotent by event id)."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from services.tracking import storage
from services.tracking.export import build_export_handlers
from shared.db import Database, claim_event, utcnow
from shared.events import (
    Envelope,
    MailSent,
    OrganisationBrandingChanged,
    OrganisationLicensed,
    ParticipantErased,
    Topic,
)
from shared.kafka import EventHandler, once_per_event
from shared.runtime import Runtime


def build_handlers(database: Database) -> dict[str, dict[str, EventHandler]]:
    """Handlers by topic and event type."""

    async def on_mail_sent(envelope: Envelope) -> None:
        payload = envelope.parsed()
        assert isinstance(payload, MailSent) and envelope.participant_id is not None
        async with database.session() as session:
            if not await claim_event(session, envelope.event_id):
                return
            await storage.upsert_sent_mail(
                session=session,
                delivery_id=payload.delivery_id,
                participant_id=envelope.participant_id,
                org_id=envelope.org_id,
                day=payload.day,
                sent_at=payload.sent_at,
            )
            await session.commit()

    async def keep_branding(
        session: AsyncSession, envelope: Envelope, payload: OrganisationLicensed | OrganisationBrandingChanged
    ) -> None:
        branding = payload.branding.model_dump(mode="json")
        await storage.upsert_branding(session=session, org_id=envelope.org_id, branding=branding, now=utcnow())

    async def on_participant_erased(envelope: Envelope) -> None:
        assert isinstance(envelope.parsed(), ParticipantErased) and envelope.participant_id is not None
        async with database.session() as session:
            if not await claim_event(session, envelope.event_id):
                return
            await storage.erase_participant(session=session, participant_id=envelope.participant_id)
            await session.commit()

    return {
        Topic.MAIL: {MailSent.TYPE: on_mail_sent},
        Topic.ORGANISATION: {
            OrganisationLicensed.TYPE: once_per_event(database, keep_branding),
            OrganisationBrandingChanged.TYPE: once_per_event(database, keep_branding),
        },
        Topic.PARTICIPANT: {ParticipantErased.TYPE: on_participant_erased},
    }


def register_kafka_handlers(runtime: Runtime) -> None:
    """Subscribe tracking's handlers in its consumer group."""
    runtime.subscribe({**build_handlers(runtime.database), **build_export_handlers(runtime.database)})
