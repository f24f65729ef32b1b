"""Coaching's JSON API: the dashboard rows of one coach."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlmodel import col

from services.coaching.tables import DashboardRow, DashboardRowPublic
from shared.runtime import Runtime

router = APIRouter(prefix="/api")


@router.get("/coaches/{coach_id}/participants", tags=["dashboard"])
async def coach_dashboard(coach_id: UUID, request: Request) -> list[DashboardRowPublic]:
    """The participants of one coach, as their dashboard shows them."""
    runtime: Runtime = request.app.state.runtime
    async with runtime.database.session() as session:
        rows = await session.execute(
            select(DashboardRow).where(col(DashboardRow.coach_id) == coach_id).order_by(col(DashboardRow.first_name))
        )
        return [DashboardRowPublic.model_validate(row, from_attributes=True) for row in rows.scalars()]
