"""Mailer's Kafka handlers: keep the mailer's own copy of participants, organisations
and coaches up to date. Each runs once per event (idempotent by event id)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.dialects.postgresql import insert

from services.mailer.tables import CoachCopy, OrganisationCopy, Recipient
from shared.db import Database, claim_event, utcnow
from shared.events import CoachAdded, Envelope, OrganisationLicensed, ParticipantEnrolled, Topic
from shared.kafka import EventHandler, subscribe_events
from shared.runtime import Runtime


def build_handlers(database: Database, wake_scheduler: Callable[[], None]) -> dict[str, dict[str, EventHandler]]:
    """Handlers by topic and event type."""

    async def on_organisation_licensed(envelope: Envelope) -> None:
        payload = envelope.parsed()
        assert isinstance(payload, OrganisationLicensed)
        async with database.session() as session:
            if not await claim_event(session, envelope.event_id):
                return
            values = {"name": payload.name, "branding": payload.branding.model_dump(mode="json")}
            await session.execute(
                insert(OrganisationCopy)
                .values(org_id=envelope.org_id, **values)
                .on_conflict_do_update(index_elements=["org_id"], set_=values)
            )
            await session.commit()

    async def on_coach_added(envelope: Envelope) -> None:
        payload = envelope.parsed()
        assert isinstance(payload, CoachAdded)
        async with database.session() as session:
            if not await claim_event(session, envelope.event_id):
                return
            await session.execute(
                insert(CoachCopy)
                .values(coach_id=payload.coach_id, org_id=envelope.org_id, name=payload.name)
                .on_conflict_do_update(index_elements=["coach_id"], set_={"name": payload.name})
            )
            await session.commit()

    async def on_participant_enrolled(envelope: Envelope) -> None:
        payload = envelope.parsed()
        assert isinstance(payload, ParticipantEnrolled) and envelope.participant_id is not None
        async with database.session() as session:
            if not await claim_event(session, envelope.event_id):
                return
            values = {
                "org_id": envelope.org_id,
                "coach_id": payload.coach_id,
                "first_name": payload.first_name,
                "email": payload.email,
                "start_date": payload.start_date,
                "send_time": payload.send_time,
                "timezone": payload.timezone,
                "variant": payload.variant,
                "updated_at": utcnow(),
            }
            await session.execute(
                insert(Recipient)
                .values(participant_id=envelope.participant_id, status="enrolled", **values)
                .on_conflict_do_update(index_elements=["participant_id"], set_=values)
            )
            await session.commit()
        wake_scheduler()

    return {
        Topic.ORGANISATION: {OrganisationLicensed.TYPE: on_organisation_licensed, CoachAdded.TYPE: on_coach_added},
        Topic.PARTICIPANT: {ParticipantEnrolled.TYPE: on_participant_enrolled},
    }


def register_kafka_handlers(runtime: Runtime, wake_scheduler: Callable[[], None]) -> None:
    subscribe_events(
        runtime.broker,
        build_handlers(runtime.database, wake_scheduler),
        service=runtime.service,
        max_attempts=runtime.settings.handler_max_attempts,
    )
