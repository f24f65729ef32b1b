"""Tracking's tables: every recorded open, and which mails were opened before."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

from sqlalchemy import ARRAY, Column, String
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from shared.db import utcnow


class TrackingTable(SQLModel, registry=registry()):
    """Base of tracking's own tables (its own metadata, for its own migrations)."""


class FirstOpen(TrackingTable, table=True):
    """A delivery that has been opened at least once; its primary key decides 'first open'."""

    __tablename__ = "first_open"

    delivery_id: UUID = Field(primary_key=True)
    opened_at: datetime = Field(default_factory=utcnow)


class OpenRecord(TrackingTable, table=True):
    """One fetch of a valid tracking pixel. No IP address and no user agent are kept."""

    __tablename__ = "open_record"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    delivery_id: UUID = Field(index=True)
    participant_id: UUID = Field(index=True)
    org_id: UUID
    day: int
    opened_at: datetime = Field(default_factory=utcnow)
    first_open: bool
    likely_automated: bool
    signals: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(String), nullable=False))
