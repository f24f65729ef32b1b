"""Enrolment's API request and response shapes (SQLModel families: XBase, XCreate, XUpdate, XPublic),
kept apart from the tables so that an answer never leaks a table's internals."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Generic, Literal, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    HttpUrl,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
)
from pydantic import Field as PydanticField
from pydantic_core import PydanticCustomError
from sqlmodel import Field, SQLModel

from services.enrolment.domain import (
    EMAIL_SCHEMA,
    MIN_PASSWORD_LENGTH,
    PARTNER_ORGANISATION_MAX,
    PHONE_SCHEMA,
    Colour,
    ConsentVia,
    Email,
    FirstName,
    LicenceState,
    LocalTime,
    ParticipantFields,
    Phone,
    StaffRole,
    TimeZoneName,
    display_phone,
    optional_schema,
    phone_characters,
)
from shared.api_types import IsoDate
from shared.branding import DEFAULT_BRAND_COLOUR
from shared.events import LocalOfferKind
from shared.text import MULTI_LINE, SINGLE_LINE

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), SINGLE_LINE]


ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300), SINGLE_LINE]


Variant = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z0-9][a-z0-9-]{0,49}$")]


Reason = Annotated[str, StringConstraints(max_length=500), MULTI_LINE]


def _empty_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


_URL = TypeAdapter(HttpUrl)


WEBSITE_PATTERN = r"^\s*https?://[^\s/?#]+[^\s]*\s*$"


def _website(value: str) -> str:
    if not re.fullmatch(WEBSITE_PATTERN, value):
        raise PydanticCustomError("value_error", "a website address starts with https://")
    _URL.validate_python(value)
    return value


OptionalText = Annotated[
    ShortText | None,
    BeforeValidator(_empty_to_none),
    optional_schema({"type": "string", "minLength": 1, "maxLength": 300}),
]


OptionalName = Annotated[
    Name | None, BeforeValidator(_empty_to_none), optional_schema({"type": "string", "minLength": 1, "maxLength": 100})
]


OptionalEmail = Annotated[Email | None, BeforeValidator(_empty_to_none), optional_schema(EMAIL_SCHEMA)]


ContactPhone = Annotated[
    Annotated[str, SINGLE_LINE, AfterValidator(phone_characters), AfterValidator(display_phone)] | None,
    BeforeValidator(_empty_to_none),
    optional_schema(PHONE_SCHEMA),
]


Website = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, max_length=200), SINGLE_LINE, AfterValidator(_website)]
    | None,
    BeforeValidator(_empty_to_none),
    optional_schema({"type": "string", "pattern": WEBSITE_PATTERN, "maxLength": 200}),
]


# --- pages ----------------------------------------------------------------------------------------


ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    """One page of a list: `total` counts every match, `items` holds at most `limit` of them."""

    items: list[ItemT]
    total: int
    limit: int
    offset: int


# --- organisations --------------------------------------------------------------------------------


class BrandingFields(SQLModel):
    """What an organisation keeps up to date itself; every mail carries it."""

    display_name: Name
    contact_person: OptionalName = None
    contact_phone: ContactPhone = None
    contact_email: OptionalEmail = None
    website: Website = None
    address: OptionalText = None
    brand_colour: Colour = DEFAULT_BRAND_COLOUR
    sender_name: OptionalName = Field(default=None, description="The From name of the organisation's mails.")
    reply_to: OptionalEmail = Field(default=None, description="Where replies to the organisation's mails go.")


class BrandingUpdate(SQLModel):
    """Only the fields sent change; send null to clear an optional field."""

    display_name: Name | None = None
    contact_person: OptionalName = None
    contact_phone: ContactPhone = None
    contact_email: OptionalEmail = None
    website: Website = None
    address: OptionalText = None
    brand_colour: Colour | None = None
    sender_name: OptionalName = None
    reply_to: OptionalEmail = None


class BrandingPublic(BaseModel):
    display_name: str
    contact_person: str | None
    contact_phone: str | None
    contact_email: str | None
    website: str | None
    address: str | None
    brand_colour: str
    sender_name: str | None
    reply_to: str | None
    logo_url: str | None
    text_colour: str = Field(description="White or black, whichever reads best on brand_colour.")


class LicenceFields(SQLModel):
    licence_valid_from: IsoDate
    licence_valid_until: IsoDate
    max_active_participants: int = Field(gt=0, le=100_000)
    variants: list[Variant] = Field(default_factory=lambda: ["standaard", "op-afstand"], min_length=1, max_length=20)


class OrganisationCreate(BrandingFields, LicenceFields):
    name: Name = Field(description="The organisation's legal or internal name.")


class LicenceUpdate(SQLModel):
    """Only the fields sent change."""

    licence_valid_from: IsoDate | None = None
    licence_valid_until: IsoDate | None = None
    max_active_participants: int | None = Field(default=None, gt=0, le=100_000)
    variants: list[Variant] | None = Field(default=None, min_length=1, max_length=20)


class OrganisationPublic(BaseModel):
    id: UUID
    name: str
    display_name: str
    contact_person: str | None
    contact_phone: str | None
    contact_email: str | None
    website: str | None
    address: str | None
    brand_colour: str
    sender_name: str | None
    reply_to: str | None
    logo_url: str | None
    slug: str | None = Field(default=None, description="The short word of the sign-up address, when chosen.")
    signup_url: str = Field(description="The organisation's public Dutch sign-up page.")
    licence_valid_from: date
    licence_valid_until: date
    max_active_participants: int
    variants: list[str]
    created_at: datetime


class LicencePublic(BaseModel):
    """An organisation's licence and how much of it is used."""

    org_id: UUID
    licence_valid_from: date
    licence_valid_until: date
    state: LicenceState
    active_participants: int = Field(description="Enrolled, active and paused participants.")
    max_active_participants: int
    available: int = Field(description="How many more may be enrolled now (0 when expired or full).")
    awaiting_confirmation: int = Field(description="Public sign-ups that have not confirmed yet.")
    variants: list[str]


class ApiKeyCreated(BaseModel):
    """The new key: shown this once, never again."""

    api_key: str = Field(description="Send it as the X-Api-Key header. Store it safely; it is not shown again.")
    prefix: str
    created_at: datetime


class ApiKeyPublic(BaseModel):
    prefix: str
    created_at: datetime


class LocalOfferFields(SQLModel):
    """One local offer: public facts the organisation's lessons show (no personal data)."""

    kind: LocalOfferKind = Field(description="Which kind of offer; a lesson names offers by kind.")
    name: Name
    description: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000), MULTI_LINE] = Field(
        default="", description="What it is, in a sentence or two."
    )
    location: OptionalText = Field(default=None, description="Where: an address or a place people know.")
    schedule: OptionalText = Field(default=None, description="When, e.g. 'elke dinsdag van 10 tot 12 uur'.")
    phone: ContactPhone = None
    website: Website = None


class LocalOfferPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    org_id: UUID
    kind: LocalOfferKind
    kind_label: str = Field(description="The kind in Dutch, as participants read it.")
    name: str
    description: str
    location: str | None
    schedule: str | None
    phone: str | None
    website: str | None
    created_at: datetime
    updated_at: datetime


# --- staff ----------------------------------------------------------------------------------------


PartnerOrganisation = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=PARTNER_ORGANISATION_MAX),
    SINGLE_LINE,
]


class StaffCreate(SQLModel):
    name: Name
    email: Email
    role: StaffRole
    partner_organisation: PartnerOrganisation | None = Field(
        default=None,
        description="Required for role partner (a signaller outside the organisation): the name of their own "
        "organisation, e.g. 'Woonstichting De Kust'. Refused for other roles.",
    )


class StaffPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    org_id: UUID
    role: StaffRole
    partner_organisation: str | None = Field(default=None, description="A partner's own organisation.")
    name: str | None = Field(description="None once the member was removed.")
    email: str | None = Field(description="None once the member was removed.")
    has_password: bool = Field(description="False until the invitation was used.")
    active: bool = Field(description="False once deactivated or removed: every token and login is refused.")
    created_at: datetime
    deactivated_at: datetime | None = None
    removed_at: datetime | None = None


class SlugUpdate(SQLModel):
    """The short word of the organisation's sign-up address: …/aanmelden/<slug>."""

    slug: str = Field(max_length=200, description="3-40 lowercase letters, digits and hyphens, e.g. 'welzijn-aan-zee'.")


class CoachCreate(SQLModel):
    name: Name
    email: Email


class CoachPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    org_id: UUID
    name: str | None
    email: str | None


class InvitationSent(BaseModel):
    staff_id: UUID
    expires_at: datetime


class LoginRequest(BaseModel):
    email: Annotated[str, SINGLE_LINE] = Field(max_length=254)
    password: Annotated[str, SINGLE_LINE] = Field(max_length=200)
    device_token: str | None = Field(
        default=None,
        max_length=1000,
        description="The device token of an earlier login (or the meer_device cookie): exempt from others' failures.",
    )


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int = Field(description="Seconds until the token expires.")
    device_token: str | None = Field(default=None, description="Send it with later logins of this account.")


# Documented here, checked by the domain rule (which says what is wrong in its own words).
NewPassword = Annotated[
    str,
    StringConstraints(max_length=200),
    SINGLE_LINE,
    WithJsonSchema(
        {
            "type": "string",
            "minLength": MIN_PASSWORD_LENGTH,
            "maxLength": 200,
            "pattern": r"\S",
            "description": f"At least {MIN_PASSWORD_LENGTH} characters, not only spaces.",
        }
    ),
]


class SetPasswordRequest(BaseModel):
    token: Annotated[str, SINGLE_LINE] = Field(max_length=200)
    password: NewPassword


class Me(BaseModel):
    staff_id: UUID
    org_id: UUID
    role: StaffRole
    coach_id: UUID | None
    partner_organisation: str | None = None
    name: str
    email: str


# --- participants ---------------------------------------------------------------------------------


class ConsentGiven(BaseModel):
    """How the person agreed to take part, when the organisation enrols them."""

    given_at: AwareDatetime = Field(description="When the person agreed (not in the future).")
    via: ConsentVia = Field(description="signal: in the coach's conversation after a partner's signal.")
    signal_id: UUID = Field(
        description="The signal in coaching. The same signal enrols once: a repeat answers the first participant."
    )


class ParticipantCreate(ParticipantFields):
    """The participant's own fields, validated as the CSV import and the sign-up form validate them
    (and only once: fields() hands them on), with who enrols them and how consent was given."""

    coach_id: UUID | None = PydanticField(
        default=None,
        description="Default: the organisation's least busy coach. A coach enrolling from a signal: themselves.",
    )
    consent: ConsentGiven | None = PydanticField(
        default=None,
        description="How consent was given. Required for a coach, who may enrol only from a signal.",
    )
    start_date: IsoDate | None = PydanticField(
        default=None, description="Default: tomorrow in the participant's time zone."
    )
    variant: Annotated[str, SINGLE_LINE] | None = PydanticField(
        default=None, description="Default: the licence's first variant."
    )

    def fields(self) -> ParticipantFields:
        """The participant's own fields, as validated here (not validated again)."""
        return ParticipantFields.model_construct(**{name: getattr(self, name) for name in PARTICIPANT_FIELDS})


PARTICIPANT_FIELDS = tuple(ParticipantFields.model_fields)


class ParticipantUpdate(SQLModel):
    """Only the fields sent change."""

    first_name: FirstName | None = None
    email: Email | None = None
    phone: Phone = None
    send_time: LocalTime | None = None
    timezone: TimeZoneName | None = None


class ParticipantPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    org_id: UUID
    coach_id: UUID
    first_name: str | None
    email: str | None
    phone: str | None
    start_date: date
    send_time: LocalTime
    timezone: str
    variant: str
    status: str
    source: str
    stopped_by: str | None = None
    consented_at: datetime | None = None
    consent_via: str | None = Field(default=None, description="signal, or None (sign-up form: see consented_at).")
    consent_signal_id: UUID | None = None
    created_at: datetime


class PauseRequest(BaseModel):
    reason: Reason | None = None


class StopRequest(BaseModel):
    reason: Reason | None = Field(default=None, description="Required when a coach stops someone.")


class CoachChange(BaseModel):
    coach_id: UUID


# --- CSV import -----------------------------------------------------------------------------------


class RowProblem(BaseModel):
    field: str
    reason: str


class RejectedRowPublic(BaseModel):
    row: int = Field(description="Row number as the spreadsheet shows it (the header is row 1).")
    problems: list[RowProblem]


class ImportedRowPublic(BaseModel):
    row: int
    participant_id: UUID


class ImportReport(BaseModel):
    """What happened to every row of an import."""

    mode: Literal["valid_rows", "all_or_nothing"]
    dry_run: bool
    rows: int
    imported: list[ImportedRowPublic]
    rejected: list[RejectedRowPublic]
    ignored_columns: list[str]
    would_import: int = Field(description="Rows that pass every check (equals len(imported) unless a dry run).")


# --- subject-access exports -----------------------------------------------------------------------


class ExportPublic(BaseModel):
    """Where an export stands: which parts are in and, when complete, where to download it."""

    id: UUID
    org_id: UUID
    participant_id: UUID
    status: Literal["pending", "complete", "timed_out"] = Field(
        description="timed_out: not every part came within the time limit; `missing` names them."
    )
    parts_received: list[str]
    missing: list[str]
    requested_at: datetime
    completed_at: datetime | None
    delete_after: datetime = Field(description="The export (and its bundle) is deleted then.")
    json_url: str | None = Field(description="The bundle as JSON, once complete.")
    html_url: str | None = Field(description="The bundle as a readable Dutch page, once complete.")
