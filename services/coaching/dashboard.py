"""The read side: what the dashboard, the participant page, the call guide and the
organisation overview show, from the stored rows and the domain rules, for one moment.

The clock is passed in (a Clock port): 'today', 'the last 7 days' and 'overdue' are
decided at read time, never stored, so the projection itself stays a pure function of
the events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal, Protocol
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from services.coaching import intake, intake_use_cases, storage
from services.coaching.alerts import alerts_for
from services.coaching.calls import CallFact, PlannedCall, next_call, planned_calls
from services.coaching.guide import guide_for
from services.coaching.overview import ParticipantFacts, coach_lines, weekly_open_rate
from services.coaching.projection import mail_figures, report_trend, reports_in_order
from services.coaching.storage import Children, Scope
from services.coaching.tables import (
    AlertPublic,
    CallGuidePublic,
    CallLog,
    CallPublic,
    CallSeen,
    CoachFigures,
    DashboardRow,
    GuideSection,
    LessonPublic,
    MailSeen,
    OpensPerDayPublic,
    OrganisationOverview,
    ParticipantDetail,
    ParticipantSummary,
    ParticipantToReassign,
    PlannedCallMove,
    PlannedCallPublic,
    ReportPublic,
    ReportSeen,
    TimelineEntryPublic,
    WeeklyOpenRate,
)
from services.coaching.timeline import build_timeline, opens_per_day


class Clock(Protocol):
    """Where 'now' comes from (a fixed clock in tests)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real time, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class Moment:
    """The moment of reading, and the coaches' time zone for 'today' and dates."""

    now: datetime
    tz: ZoneInfo

    @property
    def today(self) -> date:
        return self.now.astimezone(self.tz).date()

    def local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.tz).date()


def _planned(
    row: DashboardRow,
    mails: Sequence[MailSeen],
    calls: Sequence[CallSeen],
    moves: Sequence[PlannedCallMove],
    moment: Moment,
) -> list[PlannedCall]:
    ended = row.completed_at or row.programme_completed_at
    return planned_calls(
        start_date=row.start_date,
        sent_dates={m.day: moment.local_date(m.sent_at) for m in mails if m.sent_at is not None},
        moves={move.number: move.due_date for move in moves},
        calls=[CallFact(c.called_at, c.reached, c.planned_call) for c in calls],
        status=row.status,
        today=moment.today,
        completed_on=moment.local_date(ended) if ended else None,
    )


def _planned_public(call: PlannedCall) -> PlannedCallPublic:
    return PlannedCallPublic(
        number=call.number,
        lesson_day=call.lesson_day,
        due_date=call.due_date,
        moved=call.moved,
        status=call.status,
        done_at=call.done_at,
    )


def _report_public(report: ReportSeen) -> ReportPublic:
    return ReportPublic(day=report.day, score=report.score, note=report.note, reported_at=report.reported_at)


@dataclass(frozen=True)
class Summarised:
    """A participant's summary together with the planned calls it was computed from."""

    summary: ParticipantSummary
    planned: list[PlannedCall]
    mails: list[MailSeen]
    reports: list[ReportSeen]


def summarise(row: DashboardRow, kids: Children, coach_names: Mapping[UUID, str | None], moment: Moment) -> Summarised:
    """One dashboard line: stored counts plus the figures that depend on the moment."""
    mails = kids.mails.get(row.participant_id, [])
    reports = reports_in_order(kids.reports.get(row.participant_id, []))
    calls = kids.calls.get(row.participant_id, [])
    planned = _planned(row, mails, calls, kids.moves.get(row.participant_id, []), moment)
    figures = mail_figures(mails, moment.now)
    scores = [report.score for report in reports]
    alerts = alerts_for(
        status=row.status,
        days_without_open=figures.days_without_open,
        scores=scores,
        failure_unresolved=figures.failure_unresolved,
        planned=planned,
        unsubscribe_requested_at=row.unsubscribe_requested_at,
        stopped_by=row.stopped_by,
    )
    upcoming = next_call(planned)
    summary = ParticipantSummary(
        participant_id=row.participant_id,
        org_id=row.org_id,
        coach_id=row.coach_id,
        coach_name=coach_names.get(row.coach_id) if row.coach_id else None,
        first_name=row.first_name,
        phone=row.phone,
        status=row.status,
        lesson_day=row.lesson_day,
        lesson_title=row.lesson_title,
        mails_sent=row.mails_sent,
        mails_opened=row.mails_opened,
        mails_opened_automated_only=row.mails_opened_automated_only,
        mails_failed=row.mails_failed,
        open_rate=figures.open_rate,
        open_rate_7d=figures.open_rate_7d,
        last_open_at=row.last_open_at,
        days_without_open=figures.days_without_open,
        latest_reports=[_report_public(r) for r in reports[-3:]],
        report_trend=report_trend(scores),
        calls_reached=row.calls_reached,
        calls_attempted=row.calls_attempted,
        next_call=_planned_public(upcoming) if upcoming else None,
        alerts=[AlertPublic(code=alert.code, message=alert.message) for alert in alerts],
        updated_at=row.updated_at,
    )
    return Summarised(summary=summary, planned=planned, mails=mails, reports=reports)


# --- the dashboard's order and filters (the page and the API share them) -----------------------

DashboardFilter = Literal["all", "attention", "call_due", "finished"]
DASHBOARD_FILTERS: tuple[DashboardFilter, ...] = ("all", "attention", "call_due", "finished")
FINISHED_STATUSES = ("stopped", "completed")
CALL_DUE_STATUSES = ("due", "overdue")


def needs_attention(summary: ParticipantSummary) -> bool:
    return bool(summary.alerts)


def call_is_due(summary: ParticipantSummary) -> bool:
    return summary.next_call is not None and summary.next_call.status in CALL_DUE_STATUSES


def is_finished(summary: ParticipantSummary) -> bool:
    return summary.status in FINISHED_STATUSES


def matches(summary: ParticipantSummary, chosen: DashboardFilter) -> bool:
    """Whether a participant belongs under one of the dashboard's filters."""
    if chosen == "finished":
        return is_finished(summary)
    if chosen == "attention":
        return needs_attention(summary)
    if chosen == "call_due":
        return call_is_due(summary)
    return True


def urgency(summary: ParticipantSummary) -> tuple[int, str, str]:
    """Who needs the coach first: alerts, then calls due, then the rest; finished ones last.
    Within a rank by first name (any case), then by id, so the order never depends on the query."""
    if is_finished(summary):
        rank = 3
    elif needs_attention(summary):
        rank = 0
    elif call_is_due(summary):
        rank = 1
    else:
        rank = 2
    return rank, (summary.first_name or "").casefold(), str(summary.participant_id)


def in_dashboard_order(lines: Sequence[Summarised], chosen: DashboardFilter = "all") -> list[Summarised]:
    """The lines under a filter, most urgent first: the one order of the page and the API."""
    return sorted((line for line in lines if matches(line.summary, chosen)), key=lambda line: urgency(line.summary))


def filter_counts(lines: Sequence[Summarised]) -> dict[DashboardFilter, int]:
    """How many participants each filter shows."""
    return {chosen: sum(1 for line in lines if matches(line.summary, chosen)) for chosen in DASHBOARD_FILTERS}


async def summaries(
    session: AsyncSession, *, scope: Scope, moment: Moment, coach_id: UUID | None = None
) -> list[Summarised]:
    """The dashboard lines the viewer may see (optionally one coach's), by first name."""
    rows = await storage.visible_rows(session, scope=scope, coach_id=coach_id)
    kids = await storage.children(session, participant_ids=[row.participant_id for row in rows])
    names = await storage.coach_names(session, org_id=scope.org_id)
    return [summarise(row, kids, names, moment) for row in rows]


async def one_summary(session: AsyncSession, *, row: DashboardRow, moment: Moment) -> Summarised:
    kids = await storage.children(session, participant_ids=[row.participant_id])
    names = await storage.coach_names(session, org_id=row.org_id)
    return summarise(row, kids, names, moment)


def _lessons(mails: Sequence[MailSeen]) -> list[LessonPublic]:
    return [
        LessonPublic(day=m.day, title=m.lesson_title, sent_at=m.sent_at, opened=m.human_opened_at is not None)
        for m in sorted(mails, key=lambda m: m.day)
        if m.sent_at is not None
    ]


def _calls_public(calls: Sequence[CallSeen], logs: Mapping[UUID, CallLog]) -> list[CallPublic]:
    found = []
    for call in sorted(calls, key=lambda c: c.called_at, reverse=True):
        log = logs.get(call.call_id)
        found.append(
            CallPublic(
                call_id=call.call_id,
                participant_id=call.participant_id,
                coach_id=call.coach_id,
                called_at=call.called_at,
                reached=call.reached,
                duration_minutes=call.duration_minutes,
                planned_call=call.planned_call,
                lessons_discussed=list(log.lessons_discussed) if log else [],
                notes=log.notes if log else None,
                next_agreement=log.next_agreement if log else None,
                offer_id=log.offer_id if log else None,
            )
        )
    return found


async def detail(session: AsyncSession, *, row: DashboardRow, moment: Moment) -> ParticipantDetail:
    """Everything on the participant page."""
    pid = row.participant_id
    kids = await storage.children(session, participant_ids=[pid])
    summarised = summarise(row, kids, await storage.coach_names(session, org_id=row.org_id), moment)
    logs = await storage.call_logs(session, participant_id=pid)
    plans = await storage.plan_versions(session, participant_id=pid)
    calls = kids.calls.get(pid, [])
    timeline = build_timeline(
        mails=summarised.mails,
        reports=summarised.reports,
        calls=calls,
        call_logs=logs,
        lifecycle=await storage.lifecycle(session, participant_id=pid),
        plans=plans,
        unsubscribe_requested_at=row.unsubscribe_requested_at,
        offer_names={
            str(offer.get("offer_id")): str(offer.get("name"))
            for offer in await intake_use_cases.local_offers(session, row.org_id)
        },
    )
    first_sent = min((m.sent_at for m in summarised.mails if m.sent_at is not None), default=None)
    chart = opens_per_day(
        await storage.opens(session, participant_id=pid),
        first_day=moment.local_date(first_sent) if first_sent else None,
        today=moment.today,
        tz=moment.tz,
    )
    return ParticipantDetail(
        summary=summarised.summary,
        planned_calls=[_planned_public(call) for call in summarised.planned],
        lessons=_lessons(summarised.mails),
        reports=[_report_public(r) for r in reversed(summarised.reports)],
        calls=_calls_public(calls, logs),
        opens_per_day=[OpensPerDayPublic(date=d.date, human=d.human, automated=d.automated) for d in chart],
        timeline=sorted(
            [
                *(TimelineEntryPublic(at=e.at, kind=e.kind, day=e.day, text=e.text, detail=e.detail) for e in timeline),
                *await _intake_entries(session, pid),
            ],
            key=lambda entry: entry.at,
            reverse=True,
        ),
        plan_version=max((plan.version for plan in plans), default=0),
    )


async def _intake_entries(session: AsyncSession, participant_id: UUID) -> list[TimelineEntryPublic]:
    """The intake steps of the signal the participant was enrolled from."""
    steps = await intake_use_cases.steps_of_participant(session, participant_id)
    return [
        TimelineEntryPublic(
            at=step.occurred_at, kind="intake", day=None, text=intake.step_text(step.type, step.facts), detail=None
        )
        for step in steps
    ]


def call_guide(detail: ParticipantDetail, number: int) -> CallGuidePublic:
    """The guide for one call, with the lessons since the last call that reached the participant
    (all lessons before the first one), the open rates and the assignment reports."""
    guide = guide_for(number)
    since = max((call.called_at for call in detail.calls if call.reached), default=None)
    before = [
        lesson
        for lesson in reversed(detail.lessons)
        if since is None or (lesson.sent_at is not None and lesson.sent_at > since)
    ]
    return CallGuidePublic(
        number=guide.number,
        title=guide.title,
        when=guide.when,
        purpose=guide.purpose,
        sections=[GuideSection(title=title, items=list(items)) for title, items in guide.sections],
        lessons_before=before,
        open_rate=detail.summary.open_rate,
        open_rate_7d=detail.summary.open_rate_7d,
        reports=detail.reports[:10],
    )


async def organisation_overview(session: AsyncSession, *, org_id: UUID, moment: Moment) -> OrganisationOverview:
    """Per coach: participants, calls done against calls due so far, open rates; and the weekly open rate."""
    scope = Scope(org_id=org_id, coach_id=None)
    lines = await summaries(session, scope=scope, moment=moment)
    names = await storage.coach_names(session, org_id=org_id)
    rows = {row.participant_id: row for row in await storage.visible_rows(session, scope=scope)}
    facts = [
        ParticipantFacts(
            row=rows[line.summary.participant_id],
            mails=line.mails,
            planned=line.planned,
            alerts=len(line.summary.alerts),
        )
        for line in lines
    ]
    organisation = await storage.organisation(session, org_id=org_id)
    inactive = await storage.inactive_coaches(session, org_id=org_id)
    to_reassign = [
        ParticipantToReassign(
            participant_id=row.participant_id,
            first_name=row.first_name,
            coach_id=row.coach_id,
            coach_name=inactive[row.coach_id],
        )
        for row in rows.values()
        if row.coach_id in inactive and row.status not in ("stopped", "completed", "erased")
    ]
    coaches = coach_lines(facts, names, now=moment.now, today=moment.today)
    weeks = weekly_open_rate([mail for line in lines for mail in line.mails], today=moment.today, tz=moment.tz)
    return OrganisationOverview(
        org_id=org_id,
        display_name=organisation.display_name if organisation else None,
        coaches=[CoachFigures(**vars(line)) for line in coaches],
        to_reassign=sorted(to_reassign, key=lambda p: (p.first_name or "", str(p.participant_id))),
        weekly_open_rate=[
            WeeklyOpenRate(
                week_start=week.week_start,
                mails_sent=week.mails_sent,
                mails_opened=week.mails_opened,
                open_rate=week.open_rate,
            )
            for week in weeks
        ],
    )
