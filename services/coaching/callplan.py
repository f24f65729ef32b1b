"""Publishing the call plan: after every change that can move a planned call, coaching
compares the four calls with what it last told the other services and puts the
differences in the outbox (call.planned, call.moved, call.suspended, call.cancelled).

A call that is done needs no event of its own: call.logged (reached, with its planned
call) says so. The events carry ids, numbers and dates only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.coaching import storage
from services.coaching.calls import CallFact, CallPlanEntry, call_plan
from services.coaching.tables import DashboardRow, PublishedCall
from shared.events import (
    CallCancelled,
    CallLogged,
    CallMoved,
    CallPlanned,
    CallSuspended,
    Envelope,
    MailSent,
    ParticipantCompleted,
    ParticipantEnrolled,
    ParticipantErased,
    ParticipantPaused,
    ParticipantResumed,
    ParticipantStopped,
    Payload,
    ProgrammeCompleted,
)
from shared.outbox import add_to_outbox

PLAN_CHANGING_EVENTS: frozenset[str] = frozenset(
    {
        ParticipantEnrolled.TYPE,
        ParticipantPaused.TYPE,
        ParticipantResumed.TYPE,
        ParticipantStopped.TYPE,
        ParticipantCompleted.TYPE,
        ParticipantErased.TYPE,
        MailSent.TYPE,
        ProgrammeCompleted.TYPE,
        CallLogged.TYPE,
    }
)
"""The events after which a planned call may have another state or day."""


@dataclass(frozen=True)
class Told:
    """What was last published about one planned call."""

    state: str
    due_date: date | None
    lapses_after: date | None


def plan_events(told: Mapping[int, Told], plan: Sequence[CallPlanEntry], *, moved: int | None = None) -> list[Payload]:
    """The events that bring the other services from `told` to `plan` (nothing when nothing changed)."""
    found: list[Payload] = []
    for entry in plan:
        before = told.get(entry.number)
        if before == Told(entry.state, entry.due_date, entry.lapses_after):
            continue
        if entry.state == "done" or (before is None and entry.state == "cancelled"):
            continue  # call.logged tells it; or nobody ever heard of this call
        fields = {
            "number": entry.number,
            "lesson_day": entry.lesson_day,
            "due_date": entry.due_date,
            "overdue_from": entry.overdue_from,
            "lapses_after": entry.lapses_after,
        }
        if entry.state == "cancelled":
            found.append(CallCancelled(**fields))
        elif entry.state == "suspended":
            found.append(CallSuspended(**fields))
        elif entry.number == moved:
            found.append(CallMoved(**fields))
        else:
            found.append(CallPlanned(**fields))
    return found


async def current_plan(session: AsyncSession, *, row: DashboardRow, tz: ZoneInfo) -> list[CallPlanEntry]:
    """The four calls of one participant from the stored rows, with the dashboard's own inputs."""
    kids = await storage.children(session, participant_ids=[row.participant_id])
    ended = row.completed_at or row.programme_completed_at
    return call_plan(
        start_date=row.start_date,
        sent_dates={
            m.day: m.sent_at.astimezone(tz).date()
            for m in kids.mails.get(row.participant_id, [])
            if m.sent_at is not None
        },
        moves={move.number: move.due_date for move in kids.moves.get(row.participant_id, [])},
        calls=[CallFact(c.called_at, c.reached, c.planned_call) for c in kids.calls.get(row.participant_id, [])],
        status=row.status,
        completed_on=ended.astimezone(tz).date() if ended else None,
    )


async def publish_call_plan(
    session: AsyncSession, *, participant_id: UUID, tz: ZoneInfo, now: datetime, moved: int | None = None
) -> int:
    """Stage the events for what changed in a participant's call plan; returns how many."""
    row = await session.get(DashboardRow, participant_id)
    if row is None or (row.start_date is None and row.status != "erased"):
        return 0  # not enrolled yet (a mail may arrive before the enrolment): no plan to tell
    plan = await current_plan(session, row=row, tz=tz)
    stored = {
        told.number: told
        for told in (
            await session.execute(select(PublishedCall).where(col(PublishedCall.participant_id) == participant_id))
        ).scalars()
    }
    events = plan_events({n: Told(t.state, t.due_date, t.lapses_after) for n, t in stored.items()}, plan, moved=moved)
    for entry in plan:
        told = stored.get(entry.number) or PublishedCall(participant_id=participant_id, number=entry.number, state="")
        told.state, told.due_date, told.lapses_after = entry.state, entry.due_date, entry.lapses_after
        session.add(told)
    for payload in events:
        add_to_outbox(
            session, Envelope.wrap(payload, org_id=row.org_id, participant_id=participant_id, occurred_at=now)
        )
    return len(events)
