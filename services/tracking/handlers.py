"""Tracking's Kafka handlers: when each mail was sent (for the seconds-since-sending
signal), the organisations' branding (for the pages), and erasure. Each is a change in
the shared consumer unit of work (shared.kafka: claimed once per event, applied in a batch)."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.tracking import storage
from services.tracking.export import build_export_handlers
from shared.db import utcnow
from shared.events import (
    Envelope,
    MailSent,
    OrganisationBrandingChanged,
    OrganisationLicensed,
    ParticipantErased,
    Topic,
)
from shared.kafka import Change, unit_of_work
from shared.runtime import Runtime

_SENT_MAILS = "tracking.sent_mails"


async def on_mail_sent(session: AsyncSession, envelope: Envelope, payload: Any) -> None:
    """Remember when the mail was sent; the mails of one batch are written in one statement
    at its end (nothing in the batch reads them before)."""
    assert isinstance(payload, MailSent) and envelope.participant_id is not None
    work = unit_of_work(session)
    mails: list[dict[str, Any]] = work.state.setdefault(_SENT_MAILS, [])
    if not mails:
        work.before_commit(_SENT_MAILS, lambda: storage.upsert_sent_mails(session=session, mails=mails))
    mails.append(
        {
            "delivery_id": payload.delivery_id,
            "participant_id": envelope.participant_id,
            "org_id": envelope.org_id,
            "day": payload.day,
            "sent_at": payload.sent_at,
        }
    )


async def keep_branding(session: AsyncSession, envelope: Envelope, payload: Any) -> None:
    assert isinstance(payload, OrganisationLicensed | OrganisationBrandingChanged)
    branding = payload.branding.model_dump(mode="json")
    await storage.upsert_branding(session=session, org_id=envelope.org_id, branding=branding, now=utcnow())


async def on_participant_erased(session: AsyncSession, envelope: Envelope, payload: Any) -> None:
    assert isinstance(payload, ParticipantErased) and envelope.participant_id is not None
    await storage.erase_participant(session=session, participant_id=envelope.participant_id)


def build_handlers() -> dict[str, dict[str, Change]]:
    """Changes by topic and event type."""
    return {
        Topic.MAIL: {MailSent.TYPE: on_mail_sent},
        Topic.ORGANISATION: {OrganisationLicensed.TYPE: keep_branding, OrganisationBrandingChanged.TYPE: keep_branding},
        Topic.PARTICIPANT: {ParticipantErased.TYPE: on_participant_erased},
    }


def register_kafka_handlers(runtime: Runtime) -> None:
    """Subscribe tracking's handlers in its consumer group."""
    runtime.subscribe({**build_handlers(), **build_export_handlers()})
