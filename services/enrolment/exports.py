"""Subject-access exports, the adapters: request one (a fresh key pair, enrolment's own part,
export.requested), collect the sealed parts other services send, bundle them once all are
in and destroy the private key, and forget exports after their retention or on erasure."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.enrolment import storage
from services.enrolment.export import EXPECTED_PARTS, build_bundle, enrolment_part
from services.enrolment.tables import ExportPart, ExportRequest, Participant
from shared.db import utcnow
from shared.events import Envelope, ExportPartProvided, ExportRequested, Topic
from shared.export_parts import PART_SCHEMA_VERSION, UnreadablePartError, new_key_pair, seal, unseal
from shared.kafka import Change
from shared.logging import get_logger
from shared.outbox import add_to_outbox

log = get_logger(__name__)


async def request_export(
    *,
    session: AsyncSession,
    participant: Participant,
    requested_by: str,
    staff_id: UUID | None,
    now: datetime,
    retention: timedelta,
) -> ExportRequest:
    """Start an export: keep a fresh private key, seal enrolment's own part to its public
    key, and ask the other services for theirs (export.requested carries ids and the public key)."""
    private_key, public_key = new_key_pair()
    export = ExportRequest(
        org_id=participant.org_id,
        participant_id=participant.id,
        requested_by=requested_by,
        requested_by_staff_id=staff_id,
        requested_at=now,
        private_key=private_key,
        expected_parts=list(EXPECTED_PARTS),
        delete_after=now + retention,
    )
    session.add(export)
    organisation = await storage.get_organisation(session=session, org_id=participant.org_id)
    coach = await storage.get_staff(session=session, staff_id=participant.coach_id)
    own = enrolment_part(
        participant=participant.model_dump(mode="json"),
        organisation_name=organisation.display_name if organisation else "",
        coach_name=coach.name if coach else None,
    )
    await session.flush()
    session.add(
        ExportPart(
            export_id=export.id,
            service="enrolment",
            schema_version=PART_SCHEMA_VERSION,
            sealed=seal(public_key, own),
            received_at=now,
        )
    )
    add_to_outbox(
        session,
        Envelope.wrap(
            ExportRequested(export_id=export.id, public_key=public_key),
            org_id=participant.org_id,
            participant_id=participant.id,
            occurred_at=now,
        ),
    )
    return export


async def get_export(*, session: AsyncSession, org_id: UUID, export_id: UUID) -> ExportRequest | None:
    """An export of this organisation (None for another organisation's)."""
    export = await session.get(ExportRequest, export_id)
    return export if export is not None and export.org_id == org_id else None


async def parts_received(*, session: AsyncSession, export_id: UUID) -> list[str]:
    """The services whose part of a pending export is in."""
    rows = await session.execute(select(col(ExportPart.service)).where(col(ExportPart.export_id) == export_id))
    return sorted(rows.scalars())


async def receive_part(
    *, session: AsyncSession, envelope: Envelope, part: ExportPartProvided, now: datetime, retention: timedelta
) -> None:
    """Keep a sealed part of a pending export; when the last one is in, build the bundle and
    destroy the private key (so every part on Kafka becomes unreadable for good)."""
    export = await session.get(ExportRequest, part.export_id, with_for_update=True)
    if (
        export is None
        or export.private_key is None
        or export.participant_id != envelope.participant_id
        or export.org_id != envelope.org_id
        or part.service not in export.expected_parts
    ):
        log.info("export part not wanted", export_id=str(part.export_id), service=part.service)
        return
    try:
        opened = unseal(export.private_key, part.sealed)
    except UnreadablePartError as error:
        log.warning("export part cannot be read", export_id=str(export.id), service=part.service, error=str(error))
        return
    if opened.get("service") != part.service:
        log.warning("export part names another service", export_id=str(export.id), service=part.service)
        return
    await session.execute(
        insert(ExportPart)
        .values(
            export_id=export.id,
            service=part.service,
            schema_version=part.schema_version,
            sealed=part.sealed,
            received_at=now,
        )
        .on_conflict_do_nothing()
    )
    rows = (await session.execute(select(ExportPart).where(col(ExportPart.export_id) == export.id))).scalars().all()
    if not set(export.expected_parts) <= {row.service for row in rows}:
        return
    parts = {row.service: unseal(export.private_key, row.sealed) for row in rows}
    export.bundle = build_bundle(
        export_id=export.id,
        org_id=export.org_id,
        participant_id=export.participant_id,
        requested_at=export.requested_at,
        completed_at=now,
        parts=parts,
    )
    export.completed_at = now
    export.private_key = None
    export.delete_after = now + retention
    session.add(export)
    await session.execute(delete(ExportPart).where(col(ExportPart.export_id) == export.id))
    log.info("export complete; its key is destroyed", export_id=str(export.id))


async def forget_participant_exports(*, session: AsyncSession, participant_id: UUID) -> None:
    """Erasure: every export of the participant goes, pending ones with their key."""
    await session.execute(delete(ExportRequest).where(col(ExportRequest.participant_id) == participant_id))


async def delete_expired_exports(*, session: AsyncSession, now: datetime) -> int:
    """Exports past their retention go, with their bundle or (never completed) their key."""
    result = await session.execute(
        delete(ExportRequest).where(col(ExportRequest.delete_after) < now).returning(col(ExportRequest.id))
    )
    return len(result.all())


def build_export_handlers(*, retention: timedelta) -> dict[str, dict[str, Change]]:
    """Enrolment's change of export.part_provided."""

    async def on_export_part_provided(session: AsyncSession, envelope: Envelope, payload: object) -> None:
        if not isinstance(payload, ExportPartProvided):
            raise TypeError(f"expected {ExportPartProvided.TYPE}, got {envelope.type}")
        await receive_part(session=session, envelope=envelope, part=payload, now=utcnow(), retention=retention)

    return {Topic.EXPORT: {ExportPartProvided.TYPE: on_export_part_provided}}
