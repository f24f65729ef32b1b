"""Coaching's projection tables, built only from events."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from shared.db import utcnow


class CoachingTable(SQLModel, registry=registry()):
    """Base of coaching's own tables (its own metadata, for its own migrations)."""


class DashboardRow(CoachingTable, table=True):
    """One participant as their coach sees them on the dashboard."""

    __tablename__ = "dashboard_row"

    participant_id: UUID = Field(primary_key=True)
    org_id: UUID = Field(index=True)
    coach_id: UUID | None = Field(default=None, index=True)
    first_name: str | None = None
    phone: str | None = None
    status: str = Field(default="unknown", max_length=20)
    lesson_day: int = 0
    lesson_title: str | None = None
    mails_sent: int = 0
    mails_opened: int = 0
    mails_opened_automated_only: int = 0
    last_open_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class MailSeen(CoachingTable, table=True):
    """One programme mail of a participant: when it was sent and first opened (by a person or not)."""

    __tablename__ = "mail_seen"

    delivery_id: UUID = Field(primary_key=True)
    participant_id: UUID = Field(index=True)
    day: int
    lesson_title: str | None = None
    sent_at: datetime | None = None
    human_opened_at: datetime | None = None
    automated_opened_at: datetime | None = None


class DashboardRowPublic(SQLModel):
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
