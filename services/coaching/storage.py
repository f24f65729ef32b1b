"""Database access of coaching: the projection store the handlers write through (a port
with a PostgreSQL adapter here and an in-memory one for rebuilds), and the reads and
writes of the web pages and the API, always scoped to what the viewer may see."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql import ColumnElement
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.coaching.intake_tables import Signal
from services.coaching.tables import (
    CallLog,
    CallSeen,
    CoachingTable,
    CoachView,
    DashboardRow,
    LifecycleSeen,
    MailSeen,
    OpenSeen,
    OrganisationView,
    PlannedCallMove,
    PlanVersion,
    QuestionnaireAnswerSeen,
    ReportSeen,
    as_row_dict,
)

RowT = TypeVar("RowT", bound=CoachingTable)


class ProjectionStore(Protocol):
    """Where the handlers read and change the projection during one event."""

    async def participant(self, participant_id: UUID, org_id: UUID, *, at: datetime) -> DashboardRow:
        """The participant's row, created (and locked) if needed."""
        ...

    async def mail(self, delivery_id: UUID, participant_id: UUID, day: int) -> MailSeen:
        """One mail of the participant, created if needed."""
        ...

    async def report(self, participant_id: UUID, day: int) -> ReportSeen | None: ...

    async def reports(self, participant_id: UUID) -> list[ReportSeen]: ...

    async def calls(self, participant_id: UUID) -> list[CallSeen]: ...

    async def organisation(self, org_id: UUID) -> OrganisationView: ...

    async def coach(self, coach_id: UUID, org_id: UUID) -> CoachView: ...

    def add(self, table: type[RowT], **values: Any) -> RowT:
        """Add a new row; its key is new because it comes from the event just claimed."""
        ...

    async def find(self, table: type[RowT], key: Any) -> RowT | None:
        """The row with this primary key, if there is one (never created)."""
        ...

    async def remove(self, table: type[RowT], key: Any) -> None:
        """Delete the row with this primary key, if there is one."""
        ...

    async def erase_authored(self, participant_id: UUID) -> None:
        """Erase the person's data from what coaches wrote (notes, plan text), keeping the rows."""
        ...

    async def questionnaire_answer(self, participant_id: UUID, moment: str) -> QuestionnaireAnswerSeen | None: ...

    async def erase_questionnaire_answers(self, participant_id: UUID) -> None:
        """Remove the person's questionnaire scores, every moment."""
        ...


class SqlProjectionStore:
    """The projection store on one session (one unit of work)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def participant(self, participant_id: UUID, org_id: UUID, *, at: datetime) -> DashboardRow:
        # Lock the row; when it is missing, insert-if-missing and lock: two handlers of one
        # participant (events from different topics) never race.
        row = await self.session.get(DashboardRow, participant_id, with_for_update=True, populate_existing=True)
        if row is not None:
            return row
        fresh = DashboardRow(participant_id=participant_id, org_id=org_id, updated_at=at)
        await self.session.execute(insert(DashboardRow).values(as_row_dict(fresh)).on_conflict_do_nothing())
        row = await self.session.get(DashboardRow, participant_id, with_for_update=True, populate_existing=True)
        assert row is not None
        return row

    async def mail(self, delivery_id: UUID, participant_id: UUID, day: int) -> MailSeen:
        found = await self.session.get(MailSeen, delivery_id)
        if found is None:
            found = MailSeen(delivery_id=delivery_id, participant_id=participant_id, day=day)
            self.session.add(found)
        return found

    async def _children(self, table: type[RowT], participant_id: UUID) -> list[RowT]:
        await self.session.flush()
        participant = col(table.participant_id)  # type: ignore[attr-defined]
        return list((await self.session.execute(select(table).where(participant == participant_id))).scalars())

    async def report(self, participant_id: UUID, day: int) -> ReportSeen | None:
        return await self.session.get(ReportSeen, (participant_id, day))

    async def reports(self, participant_id: UUID) -> list[ReportSeen]:
        return await self._children(ReportSeen, participant_id)

    async def calls(self, participant_id: UUID) -> list[CallSeen]:
        return await self._children(CallSeen, participant_id)

    async def organisation(self, org_id: UUID) -> OrganisationView:
        await self.session.execute(insert(OrganisationView).values(org_id=org_id).on_conflict_do_nothing())
        found = await self.session.get(OrganisationView, org_id, with_for_update=True, populate_existing=True)
        assert found is not None
        return found

    async def coach(self, coach_id: UUID, org_id: UUID) -> CoachView:
        await self.session.execute(insert(CoachView).values(coach_id=coach_id, org_id=org_id).on_conflict_do_nothing())
        found = await self.session.get(CoachView, coach_id, with_for_update=True, populate_existing=True)
        assert found is not None
        return found

    def add(self, table: type[RowT], **values: Any) -> RowT:
        row = table(**values)
        self.session.add(row)
        return row

    async def find(self, table: type[RowT], key: Any) -> RowT | None:
        return await self.session.get(table, key, with_for_update=True, populate_existing=True)

    async def remove(self, table: type[RowT], key: Any) -> None:
        found = await self.session.get(table, key)
        if found is not None:
            await self.session.delete(found)

    async def erase_authored(self, participant_id: UUID) -> None:
        await erase_authored_data(self.session, [participant_id])

    async def questionnaire_answer(self, participant_id: UUID, moment: str) -> QuestionnaireAnswerSeen | None:
        return await self.session.get(QuestionnaireAnswerSeen, (participant_id, moment))

    async def erase_questionnaire_answers(self, participant_id: UUID) -> None:
        await self.session.execute(
            delete(QuestionnaireAnswerSeen).where(col(QuestionnaireAnswerSeen.participant_id) == participant_id)
        )


async def questionnaire_answers(session: AsyncSession, *, participant_id: UUID) -> list[QuestionnaireAnswerSeen]:
    """The participant's scores per moment, as the coach sees them beside the plan."""
    rows = await session.execute(
        select(QuestionnaireAnswerSeen).where(col(QuestionnaireAnswerSeen.participant_id) == participant_id)
    )
    return list(rows.scalars())


async def erase_authored_data(session: AsyncSession, participant_ids: Sequence[UUID]) -> None:
    """Blank call notes and plan text of erased participants (rows stay: anonymous counts)."""
    if not participant_ids:
        return
    await session.execute(
        update(CallLog)
        .where(col(CallLog.participant_id).in_(participant_ids))
        .values(notes=None, next_agreement=None, lessons_discussed=[])
    )
    await session.execute(
        update(PlanVersion)
        .where(col(PlanVersion.participant_id).in_(participant_ids))
        .values(**dict.fromkeys(PlanVersion.TEXT_FIELDS), causes=[])
    )
    # The signal the participant was enrolled from: its counts stay, the person's words go.
    await session.execute(
        update(Signal)
        .where(col(Signal.participant_id).in_(participant_ids))
        .values(first_name=None, phone=None, email=None, note=None, own_question=None, close_note=None)
    )


# --- who may see what -------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """What one staff member may see: one organisation, and within it one coach or all."""

    org_id: UUID
    coach_id: UUID | None
    """None: the whole organisation (an organisation admin)."""


def _visible(scope: Scope) -> ColumnElement[bool]:
    condition = (col(DashboardRow.org_id) == scope.org_id) & (col(DashboardRow.status) != "erased")
    if scope.coach_id is not None:
        condition = condition & (col(DashboardRow.coach_id) == scope.coach_id)
    return condition


async def visible_rows(session: AsyncSession, *, scope: Scope, coach_id: UUID | None = None) -> list[DashboardRow]:
    """The participants the viewer may see (optionally one coach's), by first name."""
    statement = select(DashboardRow).where(_visible(scope))
    if coach_id is not None:
        statement = statement.where(col(DashboardRow.coach_id) == coach_id)
    rows = (await session.execute(statement.order_by(col(DashboardRow.first_name)))).scalars()
    return list(rows)


async def visible_row(session: AsyncSession, *, scope: Scope, participant_id: UUID) -> DashboardRow | None:
    """One participant, if the viewer may see them (erased participants are not shown)."""
    statement = select(DashboardRow).where(_visible(scope), col(DashboardRow.participant_id) == participant_id)
    return (await session.execute(statement)).scalars().first()


async def row_in_organisation(session: AsyncSession, *, org_id: UUID, participant_id: UUID) -> DashboardRow | None:
    """A participant of the organisation, erased or not (to tell 'gone' from 'not yours')."""
    statement = select(DashboardRow).where(
        col(DashboardRow.org_id) == org_id, col(DashboardRow.participant_id) == participant_id
    )
    return (await session.execute(statement)).scalars().first()


@dataclass
class Children:
    """The detail rows of some participants, grouped by participant id."""

    mails: dict[UUID, list[MailSeen]]
    reports: dict[UUID, list[ReportSeen]]
    calls: dict[UUID, list[CallSeen]]
    moves: dict[UUID, list[PlannedCallMove]]


async def _grouped(session: AsyncSession, table: type[RowT], ids: Sequence[UUID]) -> dict[UUID, list[RowT]]:
    grouped: dict[UUID, list[RowT]] = defaultdict(list)
    if not ids:
        return grouped
    participant = col(table.participant_id)  # type: ignore[attr-defined]
    for row in (await session.execute(select(table).where(participant.in_(ids)))).scalars():
        grouped[row.participant_id].append(row)
    return grouped


async def children(session: AsyncSession, *, participant_ids: Sequence[UUID]) -> Children:
    """Mails, reports, calls and moved calls of the given participants, four queries in all."""
    return Children(
        mails=await _grouped(session, MailSeen, participant_ids),
        reports=await _grouped(session, ReportSeen, participant_ids),
        calls=await _grouped(session, CallSeen, participant_ids),
        moves=await _grouped(session, PlannedCallMove, participant_ids),
    )


async def opens(session: AsyncSession, *, participant_id: UUID) -> list[OpenSeen]:
    result = await session.execute(select(OpenSeen).where(col(OpenSeen.participant_id) == participant_id))
    return list(result.scalars())


async def lifecycle(session: AsyncSession, *, participant_id: UUID) -> list[LifecycleSeen]:
    result = await session.execute(select(LifecycleSeen).where(col(LifecycleSeen.participant_id) == participant_id))
    return list(result.scalars())


async def call_logs(session: AsyncSession, *, participant_id: UUID) -> dict[UUID, CallLog]:
    result = await session.execute(select(CallLog).where(col(CallLog.participant_id) == participant_id))
    return {log.call_id: log for log in result.scalars()}


async def plan_versions(session: AsyncSession, *, participant_id: UUID) -> list[PlanVersion]:
    """Every version of the plan, newest first."""
    result = await session.execute(
        select(PlanVersion)
        .where(col(PlanVersion.participant_id) == participant_id)
        .order_by(col(PlanVersion.version).desc())
    )
    return list(result.scalars())


async def latest_plan_version(session: AsyncSession, *, participant_id: UUID) -> int:
    result = await session.execute(
        select(func.coalesce(func.max(PlanVersion.version), 0)).where(col(PlanVersion.participant_id) == participant_id)
    )
    return int(result.scalar_one())


async def organisation(session: AsyncSession, *, org_id: UUID) -> OrganisationView | None:
    return await session.get(OrganisationView, org_id)


async def coach_names(session: AsyncSession, *, org_id: UUID) -> dict[UUID, str | None]:
    result = await session.execute(select(CoachView).where(col(CoachView.org_id) == org_id))
    return {coach.coach_id: coach.name for coach in result.scalars()}


async def inactive_coaches(session: AsyncSession, *, org_id: UUID) -> dict[UUID, str | None]:
    """The organisation's deactivated or removed coaches, with their names where kept."""
    result = await session.execute(
        select(CoachView).where(col(CoachView.org_id) == org_id, col(CoachView.active).is_(False))
    )
    return {coach.coach_id: coach.name for coach in result.scalars()}


async def coach(session: AsyncSession, *, coach_id: UUID) -> CoachView | None:
    return await session.get(CoachView, coach_id)


async def moves(session: AsyncSession, *, participant_id: UUID) -> dict[int, PlannedCallMove]:
    result = await session.execute(select(PlannedCallMove).where(col(PlannedCallMove.participant_id) == participant_id))
    return {move.number: move for move in result.scalars()}


async def lock_participant(session: AsyncSession, *, participant_id: UUID) -> DashboardRow | None:
    """Lock the row while a coach writes (a plan version number is taken once)."""
    return await session.get(DashboardRow, participant_id, with_for_update=True, populate_existing=True)
