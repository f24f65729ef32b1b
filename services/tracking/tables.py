"""Tracking's tables: every recorded open and link hit, which mails were opened before,
what was sent when, assignment reports, unsubscribe requests and the organisations'
branding. No IP address and no user agent are kept anywhere."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import ARRAY, BigInteger, Column, Index, SmallInteger, String
from sqlalchemy.dialects.postgresql import JSONB
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


class PixelHit(TrackingTable, table=True):
    """A pixel fetch with a valid open token, appended by the pixel and not yet judged: the hit
    processor turns it into an open record and its event, and deletes it, in one transaction.
    Its id becomes the open record's (or held open's) id, so a hit written twice (a journal
    replayed after an unconfirmed commit) is still one open. No IP address, no user agent:
    only the signals the request itself gave, as bits (domain.signal_bits)."""

    __tablename__ = "pixel_hit"

    id: UUID = Field(primary_key=True)
    delivery_id: UUID
    participant_id: UUID
    org_id: UUID
    day: int
    token_sent_at: int = Field(sa_type=BigInteger)
    received_at: datetime
    signal_bits: int = Field(sa_type=SmallInteger)


class OpenRecord(TrackingTable, table=True):
    """One fetch of a valid tracking pixel. No IP address and no user agent are kept. Its id is
    the pixel hit's, so one hit is never two opens."""

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


class HeldOpen(TrackingTable, table=True):
    """A pixel hit on a mail tracking has not seen sent (no mail.sent with the token's
    participant and organisation): held, not published. mail.sent may come a moment after a
    quick open, so a held hit becomes an open once it does; one that never does was not an
    open of a sent mail (a leaked key, a fabricated token) and is deleted after a while."""

    __tablename__ = "held_open"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    delivery_id: UUID = Field(index=True)
    participant_id: UUID
    org_id: UUID
    day: int
    opened_at: datetime = Field(index=True)
    likely_automated: bool
    signals: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(String), nullable=False))


class LinkHit(TrackingTable, table=True):
    """One GET of a signed link of a mail: a click, or the report or unsubscribe page.
    Kept to see a scanner's burst over all links of one mail, and for clicks' history."""

    __tablename__ = "link_hit"
    __table_args__ = (Index("ix_link_hit_delivery_hit_at", "delivery_id", "hit_at"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    delivery_id: UUID
    participant_id: UUID = Field(index=True)
    org_id: UUID
    day: int
    kind: str = Field(max_length=20, description="click, report or unsubscribe.")
    target: str = Field(max_length=2048, description="The signed URL of a click; the kind for the pages.")
    hit_at: datetime = Field(default_factory=utcnow)
    likely_automated: bool
    signals: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(String), nullable=False))


class SentMail(TrackingTable, table=True):
    """When a mail was sent (from mail.sent): the reference for 'seconds since sending'."""

    __tablename__ = "sent_mail"

    delivery_id: UUID = Field(primary_key=True)
    participant_id: UUID = Field(index=True)
    org_id: UUID
    day: int
    sent_at: datetime


class AssignmentReport(TrackingTable, table=True):
    """A participant's answer on how a day's assignment went; a later answer replaces it."""

    __tablename__ = "assignment_report"

    participant_id: UUID = Field(primary_key=True)
    day: int = Field(primary_key=True)
    delivery_id: UUID
    org_id: UUID
    score: int
    note: str | None = Field(default=None, max_length=500)
    reported_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class UnsubscribeRequest(TrackingTable, table=True):
    """A participant asked to stop the mails from this mail; one request per mail counts."""

    __tablename__ = "unsubscribe_request"

    delivery_id: UUID = Field(primary_key=True)
    participant_id: UUID = Field(index=True)
    org_id: UUID
    via: str = Field(max_length=20)
    requested_at: datetime = Field(default_factory=utcnow)


class OrganisationBranding(TrackingTable, table=True):
    """An organisation's branding (from organisation.* events), for the public pages."""

    __tablename__ = "organisation_branding"

    org_id: UUID = Field(primary_key=True)
    branding: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


class QuestionnaireAnswer(TrackingTable, table=True):
    """A participant's latest answers to the loneliness questionnaire for one moment, and the scores."""

    __tablename__ = "questionnaire_answer"

    participant_id: UUID = Field(primary_key=True)
    moment: str = Field(primary_key=True, max_length=20)
    org_id: UUID = Field(index=True)
    scale_version: str = Field(max_length=20)
    answers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    emotional: int | None = None
    social: int | None = None
    total: int | None = None
    total_imputed: bool = False
    category: str | None = Field(default=None, max_length=20)
    answered_at: datetime = Field(default_factory=utcnow)


class ErasedParticipant(TrackingTable, table=True):
    """A participant erased (participant.erased): their questionnaire links accept no new answers."""

    __tablename__ = "erased_participant"

    participant_id: UUID = Field(primary_key=True)
    erased_at: datetime = Field(default_factory=utcnow)
