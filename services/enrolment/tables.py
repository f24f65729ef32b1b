"""Enrolment's tables (SQLModel, its own metadata and migrations); the API's shapes are in schemas.py."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import ARRAY, JSON, Column, Index, LargeBinary, String, Text, text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from shared.db import utcnow


class EnrolmentTable(SQLModel, registry=registry()):
    """Base of enrolment's own tables (its own metadata, for its own migrations)."""


# --- organisations --------------------------------------------------------------------------------


class Organisation(EnrolmentTable, table=True):
    __tablename__ = "organisation"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    name: str
    display_name: str
    contact_person: str | None = None
    contact_phone: str | None = None
    contact_email: str | None = None
    website: str | None = None
    address: str | None = None
    brand_colour: str
    sender_name: str | None = None
    reply_to: str | None = None
    logo_sha256: str | None = Field(default=None, max_length=64)
    logo_format: str | None = Field(default=None, max_length=10)
    slug: str | None = Field(default=None, max_length=40, unique=True, description="Short sign-up address word.")
    licence_valid_from: date
    licence_valid_until: date
    max_active_participants: int
    variants: list[str] = Field(sa_column=Column(ARRAY(String), nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Logo(EnrolmentTable, table=True):
    """Every logo an organisation uploaded; old ones stay, as mails already sent show them."""

    __tablename__ = "logo"

    org_id: UUID = Field(foreign_key="organisation.id", primary_key=True)
    sha256: str = Field(primary_key=True, max_length=64)
    format: str = Field(max_length=10)
    width: int
    height: int
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class ApiKey(EnrolmentTable, table=True):
    """A system-to-system key of one organisation; only its hash is kept."""

    __tablename__ = "api_key"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="organisation.id", index=True)
    prefix: str = Field(max_length=20)
    key_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class OrganisationLocalOffer(EnrolmentTable, table=True):
    """One local offer of an organisation (library, walking group, …) that its lessons can name."""

    __tablename__ = "local_offer"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="organisation.id", index=True)
    kind: str = Field(max_length=30)
    name: str = Field(max_length=100)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    location: str | None = Field(default=None, max_length=300)
    schedule: str | None = Field(default=None, max_length=300)
    phone: str | None = Field(default=None, max_length=40)
    website: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


# --- staff ----------------------------------------------------------------------------------------


class StaffMember(EnrolmentTable, table=True):
    """An organisation admin, a coach or a partner signaller: a login of its own. A coach's id is their coach id."""

    __tablename__ = "staff"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="organisation.id", index=True)
    role: str = Field(default="coach", max_length=20)
    partner_organisation: str | None = Field(default=None, max_length=120)
    """A partner's own organisation (a housing corporation, a GP practice); None for other roles."""
    name: str | None = Field(default=None, description="None once the member was removed.")
    email: str | None = Field(default=None, unique=True, description="None once the member was removed.")
    password_hash: str | None = None
    password_set_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    token_version: int = Field(default=1, sa_column_kwargs={"server_default": text("1")})
    """Tokens signed with a lower version are refused (logout, reset, deactivation bump it)."""
    deactivated_at: datetime | None = None
    removed_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.deactivated_at is None and self.removed_at is None


class Invitation(EnrolmentTable, table=True):
    """A one-time set-password link; only its hash is kept."""

    __tablename__ = "invitation"

    token_hash: str = Field(primary_key=True, max_length=64)
    staff_id: UUID = Field(foreign_key="staff.id", index=True)
    expires_at: datetime
    used_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class LoginLimit(EnrolmentTable, table=True):
    """Recent failed logins of one source, subnet, account+source, account or device
    (the key is a hash: no address or e-mail address is kept)."""

    __tablename__ = "login_limit"

    key: str = Field(primary_key=True, max_length=64)
    window_started_at: datetime | None = None
    failures: int = 0
    blocked_until: datetime | None = Field(default=None, index=True)


class SignupCounter(EnrolmentTable, table=True):
    """Public sign-ups per source or mailbox in one fixed window (the key is a digest)."""

    __tablename__ = "signup_counter"

    key: str = Field(primary_key=True, max_length=64)
    window_start: datetime = Field(primary_key=True)
    count: int = 0


# --- participants ---------------------------------------------------------------------------------


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
        # coach_id too: the enrolment counts per coach read the index only.
        Index("ix_participant_org_status", "org_id", "status", "coach_id"),
        Index(
            "uq_participant_signal",
            "org_id",
            "consent_signal_id",
            unique=True,
            postgresql_where=text("consent_signal_id IS NOT NULL"),
        ),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="organisation.id", index=True)
    coach_id: UUID = Field(foreign_key="staff.id", index=True)
    first_name: str | None
    email: str | None
    phone: str | None = None
    start_date: date
    send_time: time
    timezone: str
    variant: str
    status: str = Field(default="enrolled", max_length=20)
    source: str = Field(default="api", max_length=10)
    confirm_token_hash: str | None = Field(default=None, max_length=64, unique=True)
    confirm_expires_at: datetime | None = None
    consent_text_version: str | None = Field(default=None, max_length=20)
    consented_at: datetime | None = None
    consent_via: str | None = Field(default=None, max_length=20)
    """signal: consent given in the coach's conversation after a partner's signal."""
    consent_signal_id: UUID | None = None
    """The coaching signal this enrolment came from: one participant per signal."""
    confirmed_at: datetime | None = None
    started_at: datetime | None = None
    stopped_by: str | None = Field(default=None, max_length=20)
    stop_reason: str | None = None
    ended_at: datetime | None = None
    erased_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class RunningParticipants(EnrolmentTable, table=True):
    """How many participants of each coach run (enrolled, active or paused), kept by triggers on
    participant in the same transaction as every change (migration e4b9c2d7a1f3), so that the
    enrolment API reads a row per coach instead of counting the organisation's participants."""

    __tablename__ = "running_participants"

    org_id: UUID = Field(primary_key=True)
    coach_id: UUID = Field(primary_key=True)
    running: int


# --- subject-access exports -----------------------------------------------------------------------


class ExportRequest(EnrolmentTable, table=True):
    """A subject-access export of one participant: the private key its parts are sealed to
    (destroyed once the bundle is built) and, for the retention period, the bundle itself."""

    __tablename__ = "export_request"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="organisation.id", index=True)
    participant_id: UUID = Field(index=True)
    requested_by: str = Field(max_length=20, description="licensor or org_admin.")
    requested_by_staff_id: UUID | None = None
    requested_at: datetime = Field(default_factory=utcnow)
    private_key: bytes | None = Field(
        default=None, sa_column=Column(LargeBinary, nullable=True), description="None once destroyed."
    )
    expected_parts: list[str] = Field(sa_column=Column(ARRAY(String), nullable=False))
    completed_at: datetime | None = None
    # json, not jsonb: the download keeps the bundle's order (enrolment first, then each service).
    bundle: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    delete_after: datetime = Field(index=True, description="The request, its key and bundle are deleted then.")


class ExportPart(EnrolmentTable, table=True):
    """A service's sealed part of an export, kept until the bundle is built."""

    __tablename__ = "export_part"

    export_id: UUID = Field(foreign_key="export_request.id", primary_key=True, ondelete="CASCADE")
    service: str = Field(primary_key=True, max_length=40)
    schema_version: int
    sealed: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime = Field(default_factory=utcnow)
