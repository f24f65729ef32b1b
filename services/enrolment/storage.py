"""Enrolment's database access: keyword-only functions that take the session."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import func, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.enrolment.domain import ACTIVE_STATUSES
from services.enrolment.tables import Coach, Organisation, Participant


async def get_organisation(*, session: AsyncSession, org_id: UUID) -> Organisation | None:
    return await session.get(Organisation, org_id)


async def active_participants_per_coach(*, session: AsyncSession, org_id: UUID) -> dict[UUID, int]:
    """Every coach of the organisation with their number of running participants (0 included)."""
    running = (
        select(col(Participant.coach_id), func.count().label("n"))
        .where(col(Participant.org_id) == org_id, col(Participant.status).in_(ACTIVE_STATUSES))
        .group_by(col(Participant.coach_id))
        .subquery()
    )
    rows = await session.execute(
        select(col(Coach.id), func.coalesce(running.c.n, 0))
        .outerjoin(running, running.c.coach_id == col(Coach.id))
        .where(col(Coach.org_id) == org_id)
    )
    return {coach_id: int(count) for coach_id, count in rows.all()}


async def has_running_enrolment(*, session: AsyncSession, org_id: UUID, email: str) -> bool:
    row = await session.execute(
        select(col(Participant.id)).where(
            col(Participant.org_id) == org_id,
            col(Participant.email) == email,
            col(Participant.status).in_(ACTIVE_STATUSES),
        )
    )
    return row.first() is not None
