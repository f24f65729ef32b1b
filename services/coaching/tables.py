"""Coaching's tables: the projection (rebuilt from the topics) and what coaches write
themselves (call log, moved calls, personal plans; never deleted by a rebuild), plus the
shapes the JSON API returns."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import StringConstraints
from sqlalchemy import JSON, Column, Text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from shared.api_types import IsoDate, IsoDateTime
from shared.db import utcnow
from shared.text import MULTI_LINE, SINGLE_LINE


class CoachingTable(SQLModel, registry=registry()):
    """Base of coaching's own tables (its own metadata, for its own migrations)."""


# --- the projection: built only from events, recomputed by `cli rebuild` ----------------


class DashboardRow(CoachingTable, table=True):
    """One participant as their coach sees them; figures that need a clock are computed at read time."""

    __tablename__ = "dashboard_row"

    participant_id: UUID = Field(primary_key=True)
    org_id: UUID = Field(index=True)
    coach_id: UUID | None = Field(default=None, index=True)
    first_name: str | None = None
    phone: str | None = None
    status: str = Field(default="unknown", max_length=20)
    lifecycle: str = Field(default="unknown", max_length=20, description="Last word of the participant topic.")
    start_date: date | None = None
    enrolled_at: datetime | None = None
    paused_at: datetime | None = None
    stopped_at: datetime | None = None
    stopped_by: str | None = Field(default=None, max_length=20)
    completed_at: datetime | None = None
    programme_completed_at: datetime | None = None
    erased_at: datetime | None = None
    unsubscribe_requested_at: datetime | None = None
    lesson_day: int = 0
    lesson_title: str | None = None
    mails_sent: int = 0
    mails_opened: int = 0
    mails_opened_automated_only: int = 0
    mails_failed: int = 0
    first_sent_at: datetime | None = None
    last_sent_at: datetime | None = None
    last_failed_at: datetime | None = None
    last_open_at: datetime | None = None
    clicks: int = 0
    reports: int = 0
    last_report_at: datetime | None = None
    calls_reached: int = 0
    calls_attempted: int = 0
    last_call_at: datetime | None = None
    plan_version: int = 0
    plan_updated_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow, description="occurred_at of the latest event applied.")


class MailSeen(CoachingTable, table=True):
    """One programme mail of a participant: sent or failed, first opened (by a person or not), clicked."""

    __tablename__ = "mail_seen"

    delivery_id: UUID = Field(primary_key=True)
    participant_id: UUID = Field(index=True)
    day: int
    lesson_title: str | None = None
    sent_at: datetime | None = None
    failed_at: datetime | None = None
    failure_reason: str | None = None
    human_opened_at: datetime | None = None
    human_last_opened_at: datetime | None = None
    automated_opened_at: datetime | None = None
    human_opens: int = 0
    automated_opens: int = 0
    first_clicked_at: datetime | None = None
    clicks: int = 0


class OpenSeen(CoachingTable, table=True):
    """One mail.opened event, kept for the opens-per-day chart."""

    __tablename__ = "open_seen"

    event_id: UUID = Field(primary_key=True)
    participant_id: UUID = Field(index=True)
    delivery_id: UUID
    day: int
    opened_at: datetime
    likely_automated: bool


class ReportSeen(CoachingTable, table=True):
    """The participant's latest answer on how one day's assignment went."""

    __tablename__ = "report_seen"

    participant_id: UUID = Field(primary_key=True)
    day: int = Field(primary_key=True)
    delivery_id: UUID
    score: int
    note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    reported_at: datetime
    event_id: UUID = Field(description="Breaks ties between two answers given at the same moment.")


class QuestionnaireAnswerSeen(CoachingTable, table=True):
    """The participant's latest loneliness scores for one moment (questionnaire.answered)."""

    __tablename__ = "questionnaire_answer_seen"

    participant_id: UUID = Field(primary_key=True)
    moment: str = Field(primary_key=True, max_length=20, description="intake, end or follow_up.")
    org_id: UUID = Field(index=True)
    total: int | None = None
    emotional: int | None = None
    social: int | None = None
    total_imputed: bool = False
    category: str | None = Field(default=None, max_length=20)
    answered_at: datetime


class CallSeen(CoachingTable, table=True):
    """A call as the call.logged event tells it (no notes: those stay in call_log)."""

    __tablename__ = "call_seen"

    call_id: UUID = Field(primary_key=True)
    participant_id: UUID = Field(index=True)
    coach_id: UUID
    called_at: datetime
    reached: bool
    duration_minutes: int
    planned_call: int | None = None


class LifecycleSeen(CoachingTable, table=True):
    """A pause, resume, stop, completion or coach change, for the participant's timeline."""

    __tablename__ = "lifecycle_seen"

    event_id: UUID = Field(primary_key=True)
    participant_id: UUID = Field(index=True)
    type: str = Field(max_length=60)
    occurred_at: datetime
    by: str | None = Field(default=None, max_length=20)


class OrganisationView(CoachingTable, table=True):
    """An organisation's name and branding, for the pages and the recruitment kit."""

    __tablename__ = "organisation_view"

    org_id: UUID = Field(primary_key=True)
    name: str | None = None
    display_name: str | None = None
    brand_colour: str | None = Field(default=None, max_length=20)
    logo_url: str | None = None
    contact_phone: str | None = None
    contact_email: str | None = None
    website: str | None = None
    address: str | None = None
    slug: str | None = Field(default=None, max_length=40, description="Short word of the sign-up address.")


class StaffAccessCopy(CoachingTable, table=True):
    """What enrolment last said of a staff member's access (staff.access_changed): tokens
    with a lower version, or of an inactive member, are refused. No row: never changed."""

    __tablename__ = "staff_access"

    staff_id: UUID = Field(primary_key=True)
    org_id: UUID
    token_version: int
    active: bool
    updated_at: datetime = Field(default_factory=utcnow)


class CoachView(CoachingTable, table=True):
    """A coach's name, so pages can say whose participants they show."""

    __tablename__ = "coach_view"

    coach_id: UUID = Field(primary_key=True)
    org_id: UUID = Field(index=True)
    name: str | None = None
    active: bool = Field(default=True, description="False once deactivated or removed (staff.access_changed).")
    access_version: int = Field(default=0, description="Token version of the newest staff.access_changed applied.")
    removed: bool = Field(default=False, description="Removed for good: the name stays erased.")


class ContactView(CoachingTable, table=True):
    """A person's name (and a participant's phone) from meer.contact; a tombstone there deletes it."""

    __tablename__ = "contact_view"

    person_id: UUID = Field(primary_key=True)
    org_id: UUID = Field(index=True)
    kind: str = Field(max_length=20)
    name: str
    phone: str | None = None


PROJECTION_TABLES: tuple[type[CoachingTable], ...] = (
    DashboardRow,
    MailSeen,
    OpenSeen,
    ReportSeen,
    CallSeen,
    LifecycleSeen,
    OrganisationView,
    CoachView,
    QuestionnaireAnswerSeen,
    ContactView,
)
"""Everything `cli rebuild` empties and recomputes from the topics."""


# --- written by coaches: never touched by a rebuild (only erased on participant.erased) --


class CallLog(CoachingTable, table=True):
    """A call as the coach logged it, with what only coaching keeps: notes and agreements."""

    __tablename__ = "call_log"

    call_id: UUID = Field(primary_key=True)
    participant_id: UUID = Field(index=True)
    org_id: UUID = Field(index=True)
    coach_id: UUID
    staff_id: UUID
    called_at: datetime
    reached: bool
    duration_minutes: int
    planned_call: int | None = None
    lessons_discussed: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    notes: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    next_agreement: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    offer_id: UUID | None = Field(default=None, description="A local offer the coach referred to in this call.")


class PlannedCallMove(CoachingTable, table=True):
    """A coach moved one of the four planned calls to another day."""

    __tablename__ = "planned_call_move"

    participant_id: UUID = Field(primary_key=True)
    number: int = Field(primary_key=True)
    org_id: UUID
    due_date: date
    moved_by: UUID
    moved_at: datetime = Field(default_factory=utcnow)


class PublishedCall(CoachingTable, table=True):
    """A planned call as coaching last told the other services (call.planned, call.moved, …)."""

    __tablename__ = "published_call"

    participant_id: UUID = Field(primary_key=True)
    number: int = Field(primary_key=True)
    state: str = Field(max_length=20)
    due_date: date | None = None
    lapses_after: date | None = None


class PublishedAlert(CoachingTable, table=True):
    """An alert as coaching last told the other services (alert.raised; the row goes on alert.cleared)."""

    __tablename__ = "published_alert"

    participant_id: UUID = Field(primary_key=True)
    code: str = Field(primary_key=True, max_length=30)
    holds_from: datetime | None = None


class PlanVersion(CoachingTable, table=True):
    """One saved version of a participant's personal plan; every save is a new row (the history)."""

    __tablename__ = "plan_version"

    participant_id: UUID = Field(primary_key=True)
    version: int = Field(primary_key=True)
    org_id: UUID = Field(index=True)
    coach_id: UUID
    staff_id: UUID
    created_at: datetime = Field(default_factory=utcnow)
    noticed_how: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    own_question: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    causes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    causes_other: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    goals: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    steps: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    offer_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]"))

    TEXT_FIELDS: ClassVar[tuple[str, ...]] = (
        "noticed_how",
        "own_question",
        "causes_other",
        "goals",
        "steps",
    )


# --- API shapes -------------------------------------------------------------------------


class DashboardRowPublic(SQLModel):
    """The stored dashboard row (the walking skeleton's shape, kept for its clients)."""

    participant_id: UUID
    coach_id: UUID | None
    first_name: str | None
    phone: str | None
    status: str
    lesson_day: int
    lesson_title: str | None
    mails_sent: int
    mails_opened: int
    mails_opened_automated_only: int
    last_open_at: datetime | None


class ReportPublic(SQLModel):
    day: int
    score: int = Field(description="1 = niet gelukt … 5 = heel goed gelukt.")
    note: str | None
    reported_at: datetime


class AlertPublic(SQLModel):
    code: str = Field(
        description="no_open_3_days, low_scores, mail_failed, call_overdue, paused, stopped, wants_to_stop"
    )
    message: str = Field(description="What the coach sees, in Dutch.")


class PlannedCallPublic(SQLModel):
    number: int = Field(description="1: around the start, 2: around day 14, 3: around day 35, 4: near the end.")
    lesson_day: int
    due_date: date | None
    moved: bool
    status: str = Field(description="done, upcoming, due, overdue, cancelled or unknown.")
    done_at: datetime | None


class ParticipantSummary(SQLModel):
    """One participant on the dashboard, with the figures computed for the moment of reading."""

    participant_id: UUID
    org_id: UUID
    coach_id: UUID | None
    coach_name: str | None
    first_name: str | None
    phone: str | None
    status: str = Field(description="enrolled, active, paused, stopped, completed or unknown.")
    lesson_day: int = Field(description="The latest lesson sent (x of 60).")
    lesson_title: str | None
    mails_sent: int
    mails_opened: int = Field(description="Mails opened by a person.")
    mails_opened_automated_only: int = Field(description="Mails opened only by something automatic (a scanner).")
    mails_failed: int
    open_rate: float | None = Field(description="Share of sent mails opened by a person, 0..1.")
    open_rate_7d: float | None = Field(description="The same over mails sent in the last 7 days.")
    last_open_at: datetime | None
    days_without_open: int | None
    latest_reports: list[ReportPublic]
    report_trend: str | None = Field(description="up, down or steady; null with fewer than two reports.")
    calls_reached: int = Field(description="Calls in which the participant was reached (the goal is 4).")
    calls_attempted: int
    next_call: PlannedCallPublic | None
    alerts: list[AlertPublic]
    updated_at: datetime


PlanText = Annotated[str, StringConstraints(max_length=4000), MULTI_LINE]


class CallCreate(SQLModel):
    """What a coach logs about one call."""

    called_at: IsoDateTime = Field(description="When the call was (with a time zone).")
    reached: bool
    duration_minutes: int = Field(ge=0, le=600)
    planned_call: int | None = Field(default=None, ge=1, le=4, description="Which planned call; null: an extra.")
    lessons_discussed: list[int] = Field(default_factory=list, description="Lesson days discussed.")
    notes: Annotated[str, StringConstraints(max_length=5000), MULTI_LINE] | None = None
    next_agreement: Annotated[str, StringConstraints(max_length=2000), MULTI_LINE] | None = None
    offer_id: UUID | None = Field(default=None, description="A local offer of the organisation referred to.")


class CallPublic(CallCreate):
    call_id: UUID
    participant_id: UUID
    coach_id: UUID


class PlannedCallMoveCreate(SQLModel):
    due_date: IsoDate


class PlanCreate(SQLModel):
    """A new version of the personal plan (signal, discuss, own question, causes, goals and steps)."""

    noticed_how: PlanText | None = Field(default=None, description="How the loneliness was noticed.")
    own_question: PlanText | None = Field(default=None, description="The question in their own words.")
    causes: list[Annotated[str, StringConstraints(max_length=100), SINGLE_LINE]] = Field(
        default_factory=list, description="Keys from the causes checklist."
    )
    causes_other: PlanText | None = None
    goals: PlanText | None = None
    steps: PlanText | None = Field(default=None, description="The agreed steps.")
    offer_ids: list[UUID] = Field(
        default_factory=list, max_length=20, description="Local offers of the organisation the goals name."
    )


class PlanPublic(PlanCreate):
    version: int
    coach_id: UUID
    created_at: datetime


class PlanHistory(SQLModel):
    participant_id: UUID
    current: PlanPublic | None
    history: list[PlanPublic] = Field(description="Every saved version, newest first.")
    causes_checklist: dict[str, str] = Field(description="The checklist's keys and their Dutch labels.")


class TimelineEntryPublic(SQLModel):
    at: datetime
    kind: str = Field(description="mail_sent, mail_failed, opened, opened_automated, clicked, report, call, ...")
    day: int | None
    text: str = Field(description="What the timeline says, in Dutch.")
    detail: str | None


class OpensPerDayPublic(SQLModel):
    date: date
    human: int
    automated: int


class LessonPublic(SQLModel):
    day: int
    title: str | None
    sent_at: datetime | None
    opened: bool


class ParticipantDetail(SQLModel):
    """Everything the participant page shows."""

    summary: ParticipantSummary
    planned_calls: list[PlannedCallPublic]
    lessons: list[LessonPublic]
    reports: list[ReportPublic]
    calls: list[CallPublic]
    opens_per_day: list[OpensPerDayPublic]
    timeline: list[TimelineEntryPublic]
    plan_version: int


class GuideSection(SQLModel):
    title: str
    items: list[str]


class CallGuidePublic(SQLModel):
    """The call guide for one of the four calls, with this participant's facts beside it."""

    number: int
    title: str
    when: str
    purpose: str
    sections: list[GuideSection]
    lessons_before: list[LessonPublic]
    open_rate: float | None
    open_rate_7d: float | None
    reports: list[ReportPublic]


class CoachFigures(SQLModel):
    coach_id: UUID | None
    coach_name: str | None
    participants: int
    active: int
    calls_due_so_far: int = Field(description="Planned calls whose day has come (or that are done).")
    calls_done: int = Field(description="Of those, the ones done (reached).")
    calls_done_ratio: float | None
    open_rate: float | None
    open_rate_7d: float | None
    alerts: int


class WeeklyOpenRate(SQLModel):
    week_start: date
    mails_sent: int
    mails_opened: int
    open_rate: float | None


class ParticipantToReassign(SQLModel):
    participant_id: UUID
    first_name: str | None
    coach_id: UUID
    coach_name: str | None


class OrganisationOverview(SQLModel):
    """What an organisation admin sees: per coach, and the organisation's open rate by week."""

    org_id: UUID
    display_name: str | None
    coaches: list[CoachFigures]
    weekly_open_rate: list[WeeklyOpenRate]
    to_reassign: list[ParticipantToReassign] = Field(
        default_factory=list, description="Running participants whose coach was deactivated or removed."
    )


class Me(SQLModel):
    staff_id: UUID
    role: str
    org_id: UUID
    coach_id: UUID | None
    coach_name: str | None
    organisation: str | None


def as_row_dict(row: CoachingTable) -> dict[str, Any]:
    """A table row as a plain dict of its columns (for bulk writes and comparisons)."""
    return {column.name: getattr(row, column.name) for column in row.__table__.columns}  # type: ignore[attr-defined]
