"""Mailer's tables: its own copy of recipients and organisations, and one delivery row
per participant per programme day."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any
from uuid import UUID

from sqlalchemy import Column, Index, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from shared.db import utcnow
from shared.ids import uuid7


class MailerTable(SQLModel, registry=registry()):
    """Base of the mailer's own tables (its own metadata, for its own migrations)."""


class Recipient(MailerTable, table=True):
    """A participant as the mailer knows them, from participant.* events."""

    __tablename__ = "recipient"

    participant_id: UUID = Field(primary_key=True)
    org_id: UUID = Field(index=True)
    coach_id: UUID
    first_name: str | None = Field(default=None, description="From meer.contact; NULL until it arrives.")
    email: str | None = Field(default=None, description="From meer.contact; a lesson waits while NULL.")
    start_date: date
    send_time: time
    timezone: str
    variant: str
    status: str = Field(default="enrolled", max_length=20, index=True)
    last_day: int = 0
    last_local_date: date | None = None
    next_check_at: datetime | None = Field(
        default=None, index=True, description="When the next lesson can be due; NULL: work it out again."
    )
    updated_at: datetime = Field(default_factory=utcnow)


class OrganisationCopy(MailerTable, table=True):
    """An organisation's name and branding, from organisation.* events."""

    __tablename__ = "organisation_copy"

    org_id: UUID = Field(primary_key=True)
    name: str
    branding: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))


class LocalOffersCopy(MailerTable, table=True):
    """An organisation's whole list of local offers, from organisation.local_offers_changed;
    no row (or an empty list): lessons fall back to their general text."""

    __tablename__ = "local_offers_copy"

    org_id: UUID = Field(primary_key=True)
    offers: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


class CoachCopy(MailerTable, table=True):
    """A coach's name, for the mail's "your coach" line."""

    __tablename__ = "coach_copy"

    coach_id: UUID = Field(primary_key=True)
    org_id: UUID
    name: str | None = Field(default=None, description="From meer.contact; mails wait while NULL.")
    email: str | None = None
    last_digest_date: date | None = None


class ContactCopy(MailerTable, table=True):
    """A person's address and (first) name from meer.contact; a tombstone there deletes it."""

    __tablename__ = "contact_copy"

    person_id: UUID = Field(primary_key=True)
    org_id: UUID
    kind: str = Field(max_length=20)
    name: str
    email: str | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class PlannedCallCopy(MailerTable, table=True):
    """One of a participant's four planned calls, from coaching's call.* events (ids and dates only)."""

    __tablename__ = "planned_call_copy"

    participant_id: UUID = Field(primary_key=True)
    number: int = Field(primary_key=True)
    org_id: UUID
    lesson_day: int
    state: str = Field(max_length=20, description="planned, done, suspended or cancelled.")
    due_date: date | None = None
    overdue_from: date | None = None
    lapses_after: date | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class AlertCopy(MailerTable, table=True):
    """A participant's alert from coaching's alert.* events (a code and from when it holds)."""

    __tablename__ = "alert_copy"

    participant_id: UUID = Field(primary_key=True)
    code: str = Field(primary_key=True, max_length=30)
    org_id: UUID
    holds_from: datetime | None = None


class StaffAccessCopy(MailerTable, table=True):
    """What enrolment last said of a staff member's access (staff.access_changed): tokens
    with a lower version, or of an inactive member, are refused. No row: never changed."""

    __tablename__ = "staff_access"

    staff_id: UUID = Field(primary_key=True)
    org_id: UUID
    token_version: int
    active: bool
    updated_at: datetime = Field(default_factory=utcnow)


class Delivery(MailerTable, table=True):
    """One programme mail: unique per participant and day, and per participant and local date."""

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("participant_id", "day", name="uq_delivery_participant_day"),
        UniqueConstraint("participant_id", "local_date", name="uq_delivery_participant_local_date"),
        Index("ix_delivery_due", "due_at", postgresql_where=text("status = 'due'")),
    )

    id: UUID = Field(default_factory=uuid7, primary_key=True)
    participant_id: UUID
    org_id: UUID
    day: int
    local_date: date
    due_at: datetime
    status: str = Field(default="due", max_length=10)
    attempts: int = 0
    pack: str | None = None
    pack_version: str | None = None
    lesson_title: str | None = None
    message_id: str | None = None
    sent_at: datetime | None = None
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    sending_until: datetime | None = None
    """The lease of a send under way (delivery.py): no other sender claims the mail before it ends."""


class TransactionalMail(MailerTable, table=True):
    """A one-off mail (sign-up confirmation, staff invitation, stop confirmation, coach digest).

    The address and the context are cleared once the mail is sent, so only the fact remains.
    """

    __tablename__ = "transactional_mail"
    __table_args__ = (Index("ix_transactional_mail_due", "due_at", postgresql_where=text("status = 'due'")),)

    id: UUID = Field(default_factory=uuid7, primary_key=True)
    kind: str = Field(max_length=30)
    org_id: UUID
    participant_id: UUID | None = Field(default=None, index=True)
    contact_id: UUID | None = Field(
        default=None, index=True, description="Whose contact copy gives the address and name, when sent."
    )
    to_address: str | None = None
    context: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    status: str = Field(default="due", max_length=10)
    attempts: int = 0
    due_at: datetime = Field(default_factory=utcnow)
    message_id: str | None = None
    sent_at: datetime | None = None
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
