"""Coaching's JSON API: the dashboard rows of one coach."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request
from sqlalchemy import select

from services.coaching.tables import DashboardRow, DashboardRowPublic
from shared.runtime import Runtime

router = APIRouter(prefix="/api")


@router.get("/coaches/{coach_id}/participants", tags=["dashboard"])
async def coach_dashboard(coach_id: UUID, request: Request) -> list[DashboardRowPublic]:
    """The participants of one coach, as their dashboard shows them."""
    runtime: Runtime = request.app.state.runtime
    async with runtime.database.session() as session:
        rows = await session.execute(
            select(DashboardRow)
            .where(DashboardRow.coach_id == coach_id)  # type: ignore[arg-type]
            .order_by(DashboardRow.first_name)  # type: ignore[arg-type]
        )
        return [DashboardRowPublic.model_validate(row, from_attributes=True) for row in rows.scalars()]
