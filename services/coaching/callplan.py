"""Publishing what the coach's morning mail needs: the call plan and the alerts.

After every change that can move a planned call, coaching compares the four calls with
what it last told the other services and puts the differences in the outbox
(call.planned, call.moved, call.suspended, call.cancelled). A call that is done needs no
event of its own: call.logged (reached, with its planned call) says so. In the same way
the dashboard's alerts that travel (no open for 3 days, two low scores, a failed mail)
go out as alert.raised and alert.cleared. The events carry ids, codes and dates only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.coaching.alerts import standing_alerts
from services.coaching.calls import CallFact, CallPlanEntry, call_plan
from services.coaching.projection import failure_unresolved, reports_in_order, without_open_since
from services.coaching.storage import Children
from services.coaching.tables import (
    CallSeen,
    CoachingTable,
    DashboardRow,
    MailSeen,
    PlannedCallMove,
    PublishedAlert,
    PublishedCall,
    ReportSeen,
)
from shared.events import (
    AlertCleared,
    AlertRaised,
    AssignmentReported,
    CallCancelled,
    CallLogged,
    CallMoved,
    CallPlanned,
    CallSuspended,
    Envelope,
    MailFailed,
    MailOpened,
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

RowT = TypeVar("RowT", bound=CoachingTable)

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

ALERT_CHANGING_EVENTS: frozenset[str] = frozenset(
    {
        ParticipantEnrolled.TYPE,
        ParticipantPaused.TYPE,
        ParticipantResumed.TYPE,
        ParticipantStopped.TYPE,
        ParticipantCompleted.TYPE,
        ParticipantErased.TYPE,
        MailSent.TYPE,
        MailFailed.TYPE,
        MailOpened.TYPE,
        ProgrammeCompleted.TYPE,
        AssignmentReported.TYPE,
    }
)
"""The events after which a published alert may start or stop to hold."""


@dataclass(frozen=True)
class Publish:
    """What may have changed after an event: the call plan, the alerts, or both."""

    plan: bool
    alerts: bool

    def __bool__(self) -> bool:
        return self.plan or self.alerts


EVERYTHING = Publish(plan=True, alerts=True)


def what_may_change(envelope: Envelope) -> Publish:
    """After this event, may the call plan or the alerts have changed? (An automated open changes neither.)"""
    if envelope.type == MailOpened.TYPE and envelope.payload.get("likely_automated", False):
        return Publish(plan=False, alerts=False)
    return Publish(plan=envelope.type in PLAN_CHANGING_EVENTS, alerts=envelope.type in ALERT_CHANGING_EVENTS)


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


def current_plan(row: DashboardRow, kids: Children, tz: ZoneInfo) -> list[CallPlanEntry]:
    """The four calls of one participant from the stored rows, with the dashboard's own inputs."""
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


@dataclass(frozen=True)
class PlanRequest:
    """What to recompute for one participant, as of when (the last event that asked)."""

    what: Publish
    now: datetime
    moved: int | None = None


async def _grouped(session: AsyncSession, table: type[RowT], ids: Sequence[UUID]) -> dict[UUID, list[RowT]]:
    grouped: dict[UUID, list[RowT]] = {participant_id: [] for participant_id in ids}
    participant = col(table.participant_id)  # type: ignore[attr-defined]
    for row in (await session.execute(select(table).where(participant.in_(ids)))).scalars():
        grouped[row.participant_id].append(row)
    return grouped


async def publish_call_plan(
    session: AsyncSession,
    *,
    participant_id: UUID,
    tz: ZoneInfo,
    now: datetime,
    moved: int | None = None,
    what: Publish = EVERYTHING,
) -> int:
    """Stage the events for what changed in a participant's call plan and alerts; returns how many."""
    return await publish_call_plans(session, {participant_id: PlanRequest(what, now, moved)}, tz=tz)


async def publish_call_plans(session: AsyncSession, requests: Mapping[UUID, PlanRequest], *, tz: ZoneInfo) -> int:
    """publish_call_plan for many participants at once (a consumer batch): the rows the rules
    read are loaded for all of them in six queries, then each participant is compared alone."""
    ids: list[UUID] = []
    rows: dict[UUID, DashboardRow] = {}
    for participant_id in sorted(requests):
        row = await session.get(DashboardRow, participant_id)
        if not requests[participant_id].what or row is None or (row.start_date is None and row.status != "erased"):
            continue  # not enrolled yet (a mail may arrive before the enrolment): nothing to tell
        ids.append(participant_id)
        rows[participant_id] = row
    if not ids:
        return 0
    kids = Children(
        mails=await _grouped(session, MailSeen, ids),
        reports=await _grouped(session, ReportSeen, ids),
        calls=await _grouped(session, CallSeen, ids),
        moves=await _grouped(session, PlannedCallMove, ids),
    )
    told_calls = await _grouped(session, PublishedCall, ids)
    told_alerts = await _grouped(session, PublishedAlert, ids)
    staged = 0
    for participant_id in ids:
        request, row = requests[participant_id], rows[participant_id]
        if request.what.alerts:
            stored_alerts = {told.code: told for told in told_alerts[participant_id]}
            staged += await _publish_alerts(session, row=row, kids=kids, now=request.now, stored=stored_alerts)
        if request.what.plan:
            stored = {told.number: told for told in told_calls[participant_id]}
            staged += _publish_plan(session, row=row, kids=kids, tz=tz, request=request, stored=stored)
    return staged


def _publish_plan(
    session: AsyncSession,
    *,
    row: DashboardRow,
    kids: Children,
    tz: ZoneInfo,
    request: PlanRequest,
    stored: Mapping[int, PublishedCall],
) -> int:
    participant_id = row.participant_id
    plan = current_plan(row, kids, tz)
    told = {n: Told(t.state, t.due_date, t.lapses_after) for n, t in stored.items()}
    events = plan_events(told, plan, moved=request.moved)
    if row.status == "erased":
        events = []  # participant.erased itself tells the other services to forget the plan
    for entry in plan:
        published = stored.get(entry.number) or PublishedCall(
            participant_id=participant_id, number=entry.number, state=""
        )
        published.state, published.due_date, published.lapses_after = entry.state, entry.due_date, entry.lapses_after
        session.add(published)
    for payload in events:
        add_to_outbox(
            session, Envelope.wrap(payload, org_id=row.org_id, participant_id=participant_id, occurred_at=request.now)
        )
    return len(events)


def alert_events(
    told: Mapping[str, datetime | None], standing: Mapping[str, datetime | None]
) -> list[AlertRaised | AlertCleared]:
    """The events that bring the other services from the alerts `told` to those `standing`."""
    found: list[AlertRaised | AlertCleared] = []
    for code, holds_from in standing.items():
        if code not in told or told[code] != holds_from:
            found.append(AlertRaised(code=code, holds_from=holds_from))
    found += [AlertCleared(code=code) for code in told if code not in standing]
    return found


async def _publish_alerts(
    session: AsyncSession, *, row: DashboardRow, kids: Children, now: datetime, stored: Mapping[str, PublishedAlert]
) -> int:
    mails = kids.mails.get(row.participant_id, [])
    standing = standing_alerts(
        status=row.status,
        without_open_since=without_open_since(mails),
        scores=[report.score for report in reports_in_order(kids.reports.get(row.participant_id, []))],
        failure_unresolved=failure_unresolved(mails),
    )
    events = alert_events({code: told.holds_from for code, told in stored.items()}, standing)
    for code, holds_from in standing.items():
        told = stored.get(code) or PublishedAlert(participant_id=row.participant_id, code=code)
        told.holds_from = holds_from
        session.add(told)
    for code in set(stored) - set(standing):
        await session.delete(stored[code])
    for payload in events:
        add_to_outbox(
            session, Envelope.wrap(payload, org_id=row.org_id, participant_id=row.participant_id, occurred_at=now)
        )
    return len(events)
