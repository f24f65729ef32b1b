"""Enrolment's tables and API shapes (SQLModel families: XBase, XCreate, X, XPublic)."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated
from uuid import UUID, uuid4

from pydantic import AfterValidator, EmailStr, StringConstraints
from sqlalchemy import ARRAY, Column, Index, String, text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.enrolment.domain import DEFAULT_SEND_TIME, DEFAULT_TIMEZONE
from shared.db import utcnow


class EnrolmentTable(SQLModel, registry=registry()):
    """Base of enrolment's own tables (its own metadata, for its own migrations)."""


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Colour = Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")]


def _known_timezone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{value}' (use an IANA name such as Europe/Amsterdam)") from None
    return value


TimeZoneName = Annotated[str, AfterValidator(_known_timezone)]


# --- organisations ------------------------------------------------------------------


class OrganisationBase(SQLModel):
    name: Name
    display_name: Name
    contact_phone: str | None = Field(default=None, max_length=30)
    contact_email: EmailStr | None = None
    website: str | None = Field(default=None, max_length=200)
    address: str | None = Field(default=None, max_length=300)
    brand_colour: Colour = "#1f5f8b"
    licence_valid_from: date
    licence_valid_until: date
    max_active_participants: int = Field(gt=0, le=100_000)


class OrganisationCreate(OrganisationBase):
    variants: list[str] = Field(default_factory=lambda: ["standaard", "op-afstand"], min_length=1)


class Organisation(EnrolmentTable, table=True):
    __tablename__ = "organisation"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    name: str
    display_name: str
    contact_phone: str | None = None
    contact_email: str | None = None
    website: str | None = None
    address: str | None = None
    brand_colour: str
    licence_valid_from: date
    licence_valid_until: date
    max_active_participants: int
    variants: list[str] = Field(sa_column=Column(ARRAY(String), nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class OrganisationPublic(OrganisationBase):
    id: UUID
    variants: list[str]


# --- coaches --------------------------------------------------------------------------


class CoachCreate(SQLModel):
    name: Name
    email: EmailStr


class Coach(EnrolmentTable, table=True):
    __tablename__ = "coach"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="organisation.id", index=True)
    name: str
    email: str = Field(unique=True)
    created_at: datetime = Field(default_factory=utcnow)


class CoachPublic(SQLModel):
    id: UUID
    org_id: UUID
    name: str
    email: str


# --- participants -------------------------------------------------------------------------


class ParticipantCreate(SQLModel):
    first_name: Name
    email: EmailStr
    phone: str | None = Field(default=None, max_length=30)
    coach_id: UUID | None = None
    start_date: date | None = None
    send_time: time = DEFAULT_SEND_TIME
    timezone: TimeZoneName = DEFAULT_TIMEZONE
    variant: str = "standaard"


class Participant(EnrolmentTable, table=True):
    __tablename__ = "participant"
    __table_args__ = (
        # One running enrolment per address per organisation; a finished one may re-enrol.
        Index(
            "uq_participant_active_email",
            "org_id",
            "email",
            unique=True,
            postgresql_where=text("status IN ('enrolled', 'active', 'paused')"),
        ),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="organisation.id", index=True)
    coach_id: UUID = Field(foreign_key="coach.id", index=True)
    first_name: str
    email: str
    phone: str | None = None
    start_date: date
    send_time: time
    timezone: str
    variant: str
    status: str = Field(default="enrolled", max_length=20)
    created_at: datetime = Field(default_factory=utcnow)


class ParticipantPublic(SQLModel):
    id: UUID
    org_id: UUID
    coach_id: UUID
    first_name: str
    email: str
    phone: str | None
    start_date: date
    send_time: time
    timezone: str
    variant: str
    status: str
