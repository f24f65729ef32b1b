"""Enrolment's database access: keyword-only functions that take the session."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.enrolment.domain import ACTIVE_STATUSES
from services.enrolment.tables import Coach, Organisation, Participant


async def get_organisation(*, session: AsyncSession, org_id: UUID) -> Organisation | None:
    return await session.get(Organisation, org_id)


async def active_participants_per_coach(*, session: AsyncSession, org_id: UUID) -> dict[UUID, int]:
    """Every coach of the organisation with their number of running participants (0 included)."""
    running = (
        select(Participant.coach_id, func.count().label("n"))
        .where(Participant.org_id == org_id, Participant.status.in_(ACTIVE_STATUSES))  # type: ignore[attr-defined]
        .group_by(Participant.coach_id)  # type: ignore[arg-type]
        .subquery()
    )
    rows = await session.execute(
        select(Coach.id, func.coalesce(running.c.n, 0))
        .outerjoin(running, running.c.coach_id == Coach.id)
        .where(Coach.org_id == org_id)
    )
    return {coach_id: int(count) for coach_id, count in rows.all()}


async def has_running_enrolment(*, session: AsyncSession, org_id: UUID, email: str) -> bool:
    row = await session.execute(
        select(Participant.id).where(
            Participant.org_id == org_id,
            Participant.email == email,
            Participant.status.in_(ACTIVE_STATUSES),  # type: ignore[attr-defined]
        )
    )
    return row.first() is not None
