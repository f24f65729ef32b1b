"""Coaching's tables of the intake (signals and their steps), the copies it keeps to run it
(staff members with their partner organisation, the organisations' local offers), and the
shapes the intake's JSON API returns."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Any
from uuid import UUID

from pydantic import StringConstraints
from sqlalchemy import JSON, Column, Text
from sqlmodel import Field, SQLModel

from services.coaching.tables import CoachingTable
from shared.api_types import IsoDate
from shared.db import utcnow
from shared.text import MULTI_LINE, SINGLE_LINE

# --- written here: never touched by a rebuild -------------------------------------------------


class Signal(CoachingTable, table=True):
    """One signal of loneliness and how its intake went. The personal data (name, contact, note,
    question) lives only here and is blanked when it is no longer needed."""

    __tablename__ = "signal"

    signal_id: UUID = Field(primary_key=True)
    org_id: UUID = Field(index=True)
    submitted_by: UUID = Field(index=True, description="Staff id of the signaller.")
    submitted_role: str = Field(max_length=20)
    partner_organisation: str | None = Field(default=None, max_length=200)
    consent: bool
    first_name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=20)
    email: str | None = Field(default=None, max_length=320)
    note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    noticed: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    state: str = Field(default="new", max_length=20, index=True)
    received_at: datetime = Field(default_factory=utcnow)
    coach_id: UUID | None = Field(default=None, index=True)
    assigned_at: datetime | None = None
    contact_date: date | None = None
    discussable: bool | None = None
    contact_recorded_at: datetime | None = None
    own_question: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    causes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    question_recorded_at: datetime | None = None
    finished_at: datetime | None = None
    participant_id: UUID | None = Field(default=None, index=True)
    offer_id: UUID | None = None
    close_reason: str | None = Field(default=None, max_length=30)
    close_note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class SignalStep(CoachingTable, table=True):
    """One step of a signal as its event told it (ids, dates and keys only): the signal's timeline,
    and after enrolment part of the participant's."""

    __tablename__ = "signal_step"

    event_id: UUID = Field(primary_key=True)
    signal_id: UUID = Field(index=True)
    type: str = Field(max_length=60)
    occurred_at: datetime
    coach_id: UUID | None = None
    facts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class StaffCopy(CoachingTable, table=True):
    """A staff member's role and, for a partner, their own organisation (from enrolment's staff events)."""

    __tablename__ = "staff_copy"

    staff_id: UUID = Field(primary_key=True)
    org_id: UUID = Field(index=True)
    role: str = Field(max_length=20)
    partner_organisation: str | None = Field(default=None, max_length=200)
    updated_at: datetime = Field(default_factory=utcnow)


class LocalOffersCopy(CoachingTable, table=True):
    """An organisation's current local offers (organisation.local_offers_changed carries the whole list)."""

    __tablename__ = "local_offers_copy"

    org_id: UUID = Field(primary_key=True)
    offers: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    as_of: datetime = Field(description="occurred_at of the list kept: an older list does not replace it.")


# --- API shapes -------------------------------------------------------------------------------

NoticedKey = Annotated[str, StringConstraints(max_length=40), SINGLE_LINE]


class SignalCreate(SQLModel):
    """A signal: what was noticed, and with consent who it is and how to reach them."""

    consent: bool = Field(description="The person agreed to be contacted. Without it: no name or contact.")
    first_name: Annotated[str, StringConstraints(max_length=100), SINGLE_LINE] | None = None
    phone: Annotated[str, StringConstraints(max_length=40), SINGLE_LINE] | None = Field(
        default=None, description="Dutch, or with a country code; stored as E.164."
    )
    email: Annotated[str, StringConstraints(max_length=320), SINGLE_LINE] | None = None
    noticed: list[NoticedKey] = Field(description="Keys of the checklist (GET /api/signals/checklists).")
    note: Annotated[str, StringConstraints(max_length=1000), MULTI_LINE] | None = None


class SignalReceipt(SQLModel):
    signal_id: UUID
    consent: bool
    status: str = Field(description="received, picked_up, contact_made or closed.")


class SignalStatusPublic(SQLModel):
    """What the signaller sees of their signal: how far it is, since when; nothing of the follow-up."""

    signal_id: UUID
    first_name: str | None = Field(description="As the signaller gave it; null when anonymous or erased.")
    received_on: date
    status: str = Field(description="received, picked_up, contact_made or closed.")
    status_label: str
    status_since: date


class SignalStepPublic(SQLModel):
    at: datetime
    type: str
    text: str


class SignalPublic(SQLModel):
    """A signal as the coordinator and its coach see it."""

    signal_id: UUID
    state: str = Field(description="new, assigned, contacted, enrolled, referred or closed.")
    consent: bool
    first_name: str | None
    phone: str | None
    email: str | None
    note: str | None
    noticed: list[str]
    partner_organisation: str | None
    received_at: datetime
    coach_id: UUID | None
    coach_name: str | None
    contact_date: date | None
    discussable: bool | None
    own_question: str | None
    causes: list[str]
    participant_id: UUID | None
    offer_id: UUID | None
    close_reason: str | None
    steps: list[SignalStepPublic] = Field(default_factory=list, description="Newest first.")


class AssignmentCreate(SQLModel):
    coach_id: UUID


class FirstContactCreate(SQLModel):
    discussable: bool = Field(description="Loneliness was made discussable in the first contact.")
    contact_date: IsoDate


class QuestionCreate(SQLModel):
    own_question: Annotated[str, StringConstraints(max_length=4000), MULTI_LINE] | None = None
    causes: list[Annotated[str, StringConstraints(max_length=100), SINGLE_LINE]] = Field(default_factory=list)


class EnrolmentCreate(SQLModel):
    email: Annotated[str, StringConstraints(max_length=320), SINGLE_LINE] | None = Field(
        default=None, description="The address the lessons go to; default: the signal's."
    )
    start_date: IsoDate | None = Field(default=None, description="Default: enrolment's (tomorrow).")
    send_time: time | None = Field(default=None, description="Local time of the daily mail; default: enrolment's.")


class ReferralCreate(SQLModel):
    offer_id: UUID


class ClosureCreate(SQLModel):
    reason: Annotated[str, StringConstraints(max_length=40), SINGLE_LINE]
    note: Annotated[str, StringConstraints(max_length=1000), MULTI_LINE] | None = None


class SignalCountsPublic(SQLModel):
    received: int
    picked_up_within_5_working_days: int
    contact_made: int
    enrolled: int
    referred: int
    closed: int


class PartnerCountsPublic(SignalCountsPublic):
    partner_organisation: str | None = Field(description="Null: signals of the organisation's own staff, or unknown.")


class SignalCountsReport(SQLModel):
    org_id: UUID
    total: SignalCountsPublic
    by_partner_organisation: list[PartnerCountsPublic]


class Checklists(SQLModel):
    noticed: dict[str, str]
    causes: dict[str, str]
    close_reasons: dict[str, str]
