"""Event contracts: one envelope for every event, typed and versioned payloads, topic names.

Adding a field to a payload is backwards compatible (consumers ignore what they do not
know); changing what a field means is a new version of that event.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from typing import Any, ClassVar, Literal, TypeVar, cast
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from shared.branding import DEFAULT_BRAND_COLOUR
from shared.ids import uuid7
from shared.text import CleanedLine


class Topic:
    """Kafka topics. Events of one participant share a key, so they keep their order."""

    ORGANISATION = "meer.organisation"
    """organisation.* and coach.*, keyed by organisation id."""
    PARTICIPANT = "meer.participant"
    """participant.*, keyed by participant id."""
    MAIL = "meer.mail"
    """mail.*, keyed by participant id."""
    ENGAGEMENT = "meer.engagement"
    """What participants do with their mail (opens, clicks, reports), keyed by participant id."""
    COACHING = "meer.coaching"
    """call.*, plan.* and alert.*, keyed by participant id; signal.* (the intake), keyed by signal id."""
    STAFF = "meer.staff"
    """staff.*, keyed by organisation id."""
    EXPORT = "meer.export"
    """export.* (subject-access exports; parts sealed to the export's key), keyed by participant id."""
    CONTACT = "meer.contact"
    """Compacted: contact.details_set keyed by the person's id; erasure is a tombstone (null value)."""

    ALL: ClassVar[tuple[str, ...]] = (ORGANISATION, PARTICIPANT, MAIL, ENGAGEMENT, COACHING, STAFF, EXPORT, CONTACT)
    COMPACTED: ClassVar[tuple[str, ...]] = (CONTACT,)

    @staticmethod
    def dead_letter(topic: str) -> str:
        """The topic where events go that a consumer of `topic` could not handle."""
        return f"{topic}.dlt"


class Payload(BaseModel):
    """Base of every event payload. Subclasses set TYPE, VERSION and TOPIC."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    TYPE: ClassVar[str]
    VERSION: ClassVar[int]
    TOPIC: ClassVar[str]
    KEY_FIELD: ClassVar[str | None] = None
    """A payload field whose value is the Kafka key (instead of the participant or organisation id)."""


PayloadT = TypeVar("PayloadT", bound=Payload)
_REGISTRY: dict[tuple[str, int], type[Payload]] = {}


def event(cls: type[PayloadT]) -> type[PayloadT]:
    """Register a payload class so envelopes of its type and version can be parsed."""
    key = (cls.TYPE, cls.VERSION)
    if key in _REGISTRY:
        raise ValueError(f"event {key} is registered twice")
    _REGISTRY[key] = cls
    return cls


class UnknownEventError(LookupError):
    """An envelope names a type/version this code does not know."""


class Envelope(BaseModel):
    """The one wrapper around every event on every topic."""

    model_config = ConfigDict(frozen=True)

    # Time-ordered: every consumer keeps the ids it has handled in an index that only grows.
    event_id: UUID = Field(default_factory=uuid7, description="Idempotency key: a redelivery has the same id.")
    type: str = Field(description="What happened, e.g. 'mail.opened'.")
    version: int = Field(ge=1, description="Version of the payload schema for this type.")
    occurred_at: AwareDatetime = Field(description="When it happened (UTC).")
    org_id: UUID = Field(description="The organisation the event belongs to.")
    participant_id: UUID | None = Field(default=None, description="The participant, where there is one.")
    payload: dict[str, Any] = Field(description="The typed payload, as JSON.")

    @classmethod
    def wrap(
        cls,
        payload: Payload,
        *,
        org_id: UUID,
        participant_id: UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> Envelope:
        """Put a payload in an envelope, ready for the outbox."""
        return cls(
            type=payload.TYPE,
            version=payload.VERSION,
            occurred_at=occurred_at or datetime.now(UTC),
            org_id=org_id,
            participant_id=participant_id,
            payload=payload.model_dump(mode="json"),
        )

    @property
    def topic(self) -> str:
        return payload_class(self.type, self.version).TOPIC

    @property
    def key(self) -> bytes:
        """Kafka key: the payload's KEY_FIELD, else the participant id, else the organisation id."""
        known = _REGISTRY.get((self.type, self.version))  # an unknown type (a newer producer) keys as before
        key_field = known.KEY_FIELD if known is not None else None
        if key_field is not None:
            return str(self.payload[key_field]).encode()
        return str(self.participant_id or self.org_id).encode()

    def parsed(self) -> Payload:
        """The payload as its typed model (validated once per envelope: the consumer and the
        change it calls both ask, and validation is most of an event's parsing cost)."""
        # Kept in the instance dict beside the fields, as functools.cached_property does: pydantic
        # compares and serialises fields only. Tied to the payload dict it came from, so a copy
        # with another payload (model_copy(update=...)) validates its own.
        cached = self.__dict__.get(_PARSED)
        if cached is not None and cached[0] is self.payload:
            return cast(Payload, cached[1])
        parsed = payload_class(self.type, self.version).model_validate(self.payload)
        self.__dict__[_PARSED] = (self.payload, parsed)
        return parsed


_PARSED = "_meer_parsed_payload"


def payload_class(type_: str, version: int) -> type[Payload]:
    try:
        return _REGISTRY[(type_, version)]
    except KeyError:
        raise UnknownEventError(f"unknown event {type_} v{version}") from None


def known_event_types() -> list[tuple[str, int]]:
    return sorted(_REGISTRY)


# --- organisation.* and coach.* ---------------------------------------------------


class Branding(BaseModel):
    """What every mail of an organisation carries. Its texts go into mail headers: enrolment
    refuses control characters, and a consumer turns any in an older event into spaces."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    display_name: CleanedLine
    contact_person: CleanedLine | None = Field(default=None, description="Whom participants can ask for.")
    contact_phone: CleanedLine | None = None
    contact_email: CleanedLine | None = None
    website: CleanedLine | None = None
    address: CleanedLine | None = None
    brand_colour: CleanedLine = DEFAULT_BRAND_COLOUR
    logo_url: CleanedLine | None = None
    sender_name: CleanedLine | None = None
    reply_to: CleanedLine | None = None


@event
class OrganisationLicensed(Payload):
    """A licensor licensed an organisation; it may now enrol participants."""

    TYPE = "organisation.licensed"
    VERSION = 1
    TOPIC = Topic.ORGANISATION

    name: str
    branding: Branding
    licence_valid_from: date
    licence_valid_until: date
    max_active_participants: int
    variants: tuple[str, ...]


@event
class OrganisationBrandingChanged(Payload):
    """An organisation changed its branding; the next mail carries the new one."""

    TYPE = "organisation.branding_changed"
    VERSION = 1
    TOPIC = Topic.ORGANISATION

    branding: Branding


@event
class OrganisationLicenceChanged(Payload):
    """The licensor changed an organisation's licence period, size or variants."""

    TYPE = "organisation.licence_changed"
    VERSION = 1
    TOPIC = Topic.ORGANISATION

    licence_valid_from: date
    licence_valid_until: date
    max_active_participants: int
    variants: tuple[str, ...]


@event
class OrganisationSlugChanged(Payload):
    """An organisation chose the short word of its sign-up address (…/aanmelden/<slug>)."""

    TYPE = "organisation.slug_changed"
    VERSION = 1
    TOPIC = Topic.ORGANISATION

    slug: str


LocalOfferKind = Literal[
    "library",
    "community_centre",
    "walking_group",
    "coffee_morning",
    "volunteering",
    "sports",
    "creative",
    "meal",
    "course",
    "other",
]

LOCAL_OFFER_KINDS: dict[str, tuple[str, str]] = {
    "library": ("bibliotheek", "Bibliotheek"),
    "community_centre": ("buurthuis", "Buurthuis of wijkcentrum"),
    "walking_group": ("wandelgroep", "Wandelgroep"),
    "coffee_morning": ("koffieochtend", "Koffieochtend of inloop"),
    "volunteering": ("vrijwilligerswerk", "Vrijwilligerswerk"),
    "sports": ("bewegen", "Sport en bewegen"),
    "creative": ("creatief", "Creatief en muziek"),
    "meal": ("samen_eten", "Samen eten"),
    "course": ("cursus", "Cursus of les"),
    "other": ("overig", "Overig aanbod"),
}
"""Each kind of local offer: the word a programme pack uses for it ({lokaal_aanbod:<word>}) and its Dutch label.
Part of the contract because enrolment checks the kind and the mailer's pack names it."""


class LocalOffer(BaseModel):
    """One local offer of an organisation (public facts, no personal data): what it is, where and when."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    offer_id: UUID
    kind: str = Field(
        description="One of LocalOfferKind; a kind a consumer does not know yet (a newer producer) it skips."
    )
    name: CleanedLine
    description: str = Field(default="", description="What it is (may hold line breaks).")
    location: CleanedLine | None = None
    schedule: CleanedLine | None = Field(default=None, description="When, e.g. 'elke dinsdag 10:00-12:00'.")
    phone: CleanedLine | None = None
    website: CleanedLine | None = None


@event
class OrganisationLocalOffersChanged(Payload):
    """An organisation added, changed or removed a local offer; carries its whole current list."""

    TYPE = "organisation.local_offers_changed"
    VERSION = 1
    TOPIC = Topic.ORGANISATION

    offers: tuple[LocalOffer, ...]


@event
class CoachAdded(Payload):
    """An organisation added a coach who can be assigned participants (name and address: meer.contact)."""

    TYPE = "coach.added"
    VERSION = 2
    TOPIC = Topic.ORGANISATION

    coach_id: UUID


@event
class CoachAddedV1(CoachAdded):
    """Old form, with the coach's name and address; still parsed on replay, consumers ignore both."""

    VERSION = 1

    name: str = ""
    email: str | None = None


# --- participant.* ------------------------------------------------------------------


@event
class ParticipantEnrolled(Payload):
    """A participant was enrolled and (where needed) confirmed: the programme may start."""

    TYPE = "participant.enrolled"
    VERSION = 2
    TOPIC = Topic.PARTICIPANT

    coach_id: UUID
    start_date: date
    send_time: time
    timezone: str
    variant: str
    signal_id: UUID | None = Field(
        default=None, description="The coaching signal the person was enrolled from (consent given then)."
    )


@event
class ParticipantEnrolledV1(ParticipantEnrolled):
    """Old form, with contact details; still parsed on replay, consumers ignore them (see meer.contact)."""

    VERSION = 1

    first_name: str = ""
    email: str = ""
    phone: str | None = None


@event
class ParticipantConfirmationRequestedV1(Payload):
    """Version 1 carried the address and the live link; read only so events published before version 2 are mailed."""

    TYPE = "participant.confirmation_requested"
    VERSION = 1
    TOPIC = Topic.PARTICIPANT

    first_name: str
    email: str
    confirm_url: str = Field(description="One-time link that confirms the sign-up.")


@event
class ParticipantConfirmationRequested(Payload):
    """Someone signed up on the public page; they must confirm by mail before anything starts.
    The mailer sends the confirmation mail (double opt-in) to the address on meer.contact."""

    TYPE = "participant.confirmation_requested"
    VERSION = 2
    TOPIC = Topic.PARTICIPANT

    sealed_link: str = Field(description="The one-time confirm link, sealed for the mailer (mailer_links.py).")


@event
class ParticipantDetailsChanged(Payload):
    """A participant's mail preferences changed (contact details: contact.details_set on meer.contact)."""

    TYPE = "participant.details_changed"
    VERSION = 2
    TOPIC = Topic.PARTICIPANT

    send_time: time
    timezone: str


@event
class ParticipantDetailsChangedV1(ParticipantDetailsChanged):
    """Old form, with contact details; still parsed on replay, consumers ignore them."""

    VERSION = 1

    first_name: str = ""
    email: str = ""
    phone: str | None = None


@event
class ParticipantPaused(Payload):
    """The daily mails stop until the participant is resumed; paused days do not count."""

    TYPE = "participant.paused"
    VERSION = 1
    TOPIC = Topic.PARTICIPANT

    reason: str | None = None


@event
class ParticipantResumed(Payload):
    """A paused participant continues with the next lesson."""

    TYPE = "participant.resumed"
    VERSION = 1
    TOPIC = Topic.PARTICIPANT


@event
class ParticipantStopped(Payload):
    """The participant's programme ended early, by their own unsubscribe or by the coach."""

    TYPE = "participant.stopped"
    VERSION = 1
    TOPIC = Topic.PARTICIPANT

    by: Literal["participant", "coach", "organisation"]
    reason: str | None = Field(default=None, description="Why, in the coach's words; never shown to others.")


@event
class ParticipantCompleted(Payload):
    """Enrolment recorded that the participant finished all lessons."""

    TYPE = "participant.completed"
    VERSION = 1
    TOPIC = Topic.PARTICIPANT


@event
class ParticipantCoachChanged(Payload):
    """The participant has a new coach from now on."""

    TYPE = "participant.coach_changed"
    VERSION = 1
    TOPIC = Topic.PARTICIPANT

    coach_id: UUID


@event
class ParticipantErased(Payload):
    """The right to be forgotten: every service removes this person's personal data."""

    TYPE = "participant.erased"
    VERSION = 1
    TOPIC = Topic.PARTICIPANT


# --- staff.* -----------------------------------------------------------------------------


@event
class StaffInvitedV1(Payload):
    """Version 1 carried the address and the live link; read only so events published before version 2 are mailed."""

    TYPE = "staff.invited"
    VERSION = 1
    TOPIC = Topic.STAFF

    staff_id: UUID
    name: str
    email: str
    role: Literal["org_admin", "coach"]
    set_password_url: str


@event
class StaffInvited(Payload):
    """An organisation admin, coach or partner was invited; the mailer sends the set-password link
    (address: meer.contact)."""

    TYPE = "staff.invited"
    VERSION = 2
    TOPIC = Topic.STAFF

    staff_id: UUID
    role: Literal["org_admin", "coach", "partner"]
    sealed_link: str = Field(
        description="The one-time set-password link, sealed for the mailer (shared/mailer_links.py)."
    )
    partner_organisation: str | None = Field(
        default=None, description="A partner's own organisation (a name, not personal data); None for other roles."
    )


@event
class StaffAccessChanged(Payload):
    """Logout, password reset, deactivation or removal: tokens below token_version, or of an inactive member, stop."""

    TYPE = "staff.access_changed"
    VERSION = 1
    TOPIC = Topic.STAFF

    staff_id: UUID
    role: Literal["org_admin", "coach", "partner"]
    token_version: int = Field(ge=1, description="Tokens with a lower version are refused.")
    active: bool = Field(description="False: every token of this member is refused.")
    removed: bool = Field(default=False, description="Removed: copies of the member's name and address go too.")
    partner_organisation: str | None = Field(
        default=None, description="A partner's own organisation (a name, not personal data); None for other roles."
    )


# --- contact.* (meer.contact, compacted) ------------------------------------------------


@event
class ContactDetailsSet(Payload):
    """A person's current contact details; the newest per person_id is what counts (a tombstone erases it)."""

    TYPE = "contact.details_set"
    VERSION = 1
    TOPIC = Topic.CONTACT
    KEY_FIELD = "person_id"

    person_id: UUID = Field(description="Participant id or staff id; the Kafka key.")
    kind: Literal["participant", "staff"]
    name: str = Field(description="First name of a participant, full name of a staff member.")
    email: str | None = None
    phone: str | None = None


# --- mail.* ----------------------------------------------------------------------------


@event
class MailSent(Payload):
    """The SMTP server accepted a participant's daily programme mail."""

    TYPE = "mail.sent"
    VERSION = 1
    TOPIC = Topic.MAIL

    delivery_id: UUID
    day: int = Field(ge=1, description="Programme day (lesson number) of this mail.")
    lesson_title: str
    pack: str
    pack_version: str
    message_id: str
    sent_at: AwareDatetime


@event
class MailFailed(Payload):
    """A programme mail could not be delivered (the SMTP server refused it for good)."""

    TYPE = "mail.failed"
    VERSION = 1
    TOPIC = Topic.MAIL

    delivery_id: UUID
    day: int = Field(ge=1)
    reason: str = Field(description="SMTP code and reply, or why it was given up; no personal data.")
    failed_at: AwareDatetime


@event
class TransactionalMailFailed(Payload):
    """A one-off mail (confirmation, invitation, stop confirmation, digest) was given up."""

    TYPE = "transactional_mail.failed"
    VERSION = 1
    TOPIC = Topic.MAIL

    mail_id: UUID
    kind: str = Field(description="confirmation, invitation, stop_confirmation or digest.")
    reason: str = Field(description="SMTP code and reply, or why it was given up; no personal data.")
    failed_at: AwareDatetime


@event
class ProgrammeCompleted(Payload):
    """The participant was sent the last lesson of the programme."""

    TYPE = "programme.completed"
    VERSION = 1
    TOPIC = Topic.MAIL

    days: int
    completed_at: AwareDatetime


# --- engagement -------------------------------------------------------------------------


@event
class MailOpened(Payload):
    """The tracking pixel of a programme mail was fetched."""

    TYPE = "mail.opened"
    VERSION = 1
    TOPIC = Topic.ENGAGEMENT

    delivery_id: UUID
    day: int = Field(ge=1)
    opened_at: AwareDatetime
    first_open: bool = Field(description="True for the first recorded open of this mail.")
    likely_automated: bool = Field(description="Probably a proxy or scanner, not a person.")
    signals: tuple[str, ...] = Field(default=(), description="Which signals decided likely_automated.")


@event
class LinkClicked(Payload):
    """A signed link in a programme mail was followed."""

    TYPE = "link.clicked"
    VERSION = 1
    TOPIC = Topic.ENGAGEMENT

    delivery_id: UUID
    day: int = Field(ge=1)
    url: str
    clicked_at: AwareDatetime
    likely_automated: bool
    signals: tuple[str, ...] = ()


@event
class AssignmentReported(Payload):
    """The participant said how the day's assignment went (a later answer replaces an earlier one)."""

    TYPE = "assignment.reported"
    VERSION = 1
    TOPIC = Topic.ENGAGEMENT

    delivery_id: UUID
    day: int = Field(ge=1)
    score: int = Field(ge=1, le=5, description="1 = niet gelukt … 5 = heel goed gelukt.")
    note: str | None = Field(default=None, max_length=500)
    reported_at: AwareDatetime


@event
class UnsubscribeRequested(Payload):
    """The participant asked to stop the mails (one-click or the confirmation page)."""

    TYPE = "participant.unsubscribe_requested"
    VERSION = 1
    TOPIC = Topic.ENGAGEMENT

    delivery_id: UUID
    via: Literal["one_click", "page"]
    requested_at: AwareDatetime


@event
class QuestionnaireAnswered(Payload):
    """A participant answered the loneliness questionnaire for one moment (a later answer replaces it)."""

    TYPE = "questionnaire.answered"
    VERSION = 1
    TOPIC = Topic.ENGAGEMENT

    participant_id: UUID
    moment: Literal["intake", "end", "follow_up"]
    scale_version: Literal["djg6-2006"]
    answers: dict[str, Literal["ja", "min_of_meer", "nee"] | None] = Field(
        description="Keys e1, e2, e3 (emotional) and s1, s2, s3 (social); None: not answered."
    )
    emotional: int | None = Field(ge=0, le=3, description="None when any emotional item is missing.")
    social: int | None = Field(ge=0, le=3, description="None when any social item is missing.")
    total: int | None = Field(ge=0, le=6, description="None when more than one item is missing.")
    total_imputed: bool = Field(description="Exactly one item was missing and the total was imputed.")
    category: Literal["not_lonely", "moderately_lonely", "severely_lonely"] | None = Field(
        description="From the total: 0-1, 2-4, 5-6."
    )
    answered_at: AwareDatetime


# --- coaching ----------------------------------------------------------------------------


@event
class CallLogged(Payload):
    """A coach logged a call (reached or not). The notes stay in coaching."""

    TYPE = "call.logged"
    VERSION = 1
    TOPIC = Topic.COACHING

    call_id: UUID
    coach_id: UUID
    called_at: AwareDatetime
    reached: bool
    duration_minutes: int = Field(ge=0)
    planned_call: int | None = Field(default=None, ge=1, le=4, description="Which of the four planned calls.")


@event
class PlanUpdated(Payload):
    """A coach saved a new version of the personal plan. The content stays in coaching."""

    TYPE = "plan.updated"
    VERSION = 1
    TOPIC = Topic.COACHING

    coach_id: UUID
    plan_version: int = Field(ge=1)


class PlannedCallState(Payload):
    """One of the four planned calls as coaching plans it; ids and dates only."""

    number: int = Field(ge=1, le=4, description="Which of the four planned calls.")
    lesson_day: int = Field(ge=1, description="The lesson the call goes with.")
    due_date: date | None = Field(default=None, description="The day the call is due (coaches' time zone).")
    overdue_from: date | None = Field(default=None, description="From this day on the call is overdue.")
    lapses_after: date | None = Field(default=None, description="After this day the call no longer counts.")


@event
class CallPlanned(PlannedCallState):
    """Coaching planned a call or its expected day changed (enrolment, lessons sent, resume, completion)."""

    TYPE = "call.planned"
    VERSION = 1
    TOPIC = Topic.COACHING


@event
class CallMoved(PlannedCallState):
    """A coach moved a planned call to another day."""

    TYPE = "call.moved"
    VERSION = 1
    TOPIC = Topic.COACHING


@event
class CallSuspended(PlannedCallState):
    """The participant paused: a planned call whose day is not fixed waits until they resume."""

    TYPE = "call.suspended"
    VERSION = 1
    TOPIC = Topic.COACHING


@event
class CallCancelled(PlannedCallState):
    """The participant stopped or was erased: a planned call that was not done is off."""

    TYPE = "call.cancelled"
    VERSION = 1
    TOPIC = Topic.COACHING


AlertCode = Literal["no_open_3_days", "low_scores", "mail_failed"]


@event
class AlertRaised(Payload):
    """A participant needs the coach's attention by a dashboard rule (from holds_from on, when set)."""

    TYPE = "alert.raised"
    VERSION = 1
    TOPIC = Topic.COACHING

    code: AlertCode
    holds_from: AwareDatetime | None = Field(
        default=None, description="For 'no_open_3_days': from when, unless an open comes first; else already."
    )


@event
class AlertCleared(Payload):
    """A participant's alert no longer holds."""

    TYPE = "alert.cleared"
    VERSION = 1
    TOPIC = Topic.COACHING

    code: AlertCode


# --- signal.* (the intake, on meer.coaching, keyed by the signal id) ---------------------------
# Ids, dates, checklist keys and reason codes only: the person's name, contact, the note and the
# question stay in coaching.


class SignalEvent(Payload):
    """Base of the intake's events: which signal."""

    TOPIC = Topic.COACHING
    KEY_FIELD = "signal_id"

    signal_id: UUID


@event
class SignalReceived(SignalEvent):
    """A partner or colleague signalled loneliness; without consent it is only counted (anonymous)."""

    TYPE = "signal.received"
    VERSION = 1

    signaller_staff_id: UUID
    consent: bool
    noticed: tuple[str, ...] = Field(description="Keys of the method's checklist of what was noticed.")


@event
class SignalAssigned(SignalEvent):
    """The coordinator handed the signal to a coach."""

    TYPE = "signal.assigned"
    VERSION = 1

    coach_id: UUID


@event
class SignalContactMade(SignalEvent):
    """The coach made the first contact (and whether loneliness became discussable)."""

    TYPE = "signal.contact_made"
    VERSION = 1

    coach_id: UUID
    contact_date: date
    discussable: bool


@event
class SignalQuestionRecorded(SignalEvent):
    """The coach recorded the person's own question (kept in coaching) and the causes."""

    TYPE = "signal.question_recorded"
    VERSION = 1

    coach_id: UUID
    causes: tuple[str, ...] = Field(description="Keys of the personal plan's causes checklist.")


@event
class SignalEnrolled(SignalEvent):
    """The person was enrolled in Meer contact from the signal (the participant's id is in the envelope too)."""

    TYPE = "signal.enrolled"
    VERSION = 1

    coach_id: UUID
    participant_id: UUID


@event
class SignalReferred(SignalEvent):
    """The coach referred the person to one of the organisation's local offers."""

    TYPE = "signal.referred"
    VERSION = 1

    coach_id: UUID
    offer_id: UUID


@event
class SignalClosed(SignalEvent):
    """The signal was closed without enrolment or referral, for a reason from the list."""

    TYPE = "signal.closed"
    VERSION = 1

    coach_id: UUID | None = None
    reason: str = Field(description="not_reached, no_question, declined, help_elsewhere, outside_area or other.")


# --- export.* ----------------------------------------------------------------------------


@event
class ExportRequested(Payload):
    """Enrolment asks every service for its part of a participant's subject-access export."""

    TYPE = "export.requested"
    VERSION = 1
    TOPIC = Topic.EXPORT

    export_id: UUID
    public_key: str = Field(description="The export's X25519 public key (base64); parts are sealed to it.")

    @field_validator("public_key")
    @classmethod
    def _is_x25519_public_key(cls, value: str) -> str:
        if len(base64.b64decode(value, validate=True)) != 32:  # an X25519 key is 32 bytes
            raise ValueError("not an X25519 public key")
        return value


@event
class ExportPartProvided(Payload):
    """A service answered an export request with what it holds, sealed to the export's key."""

    TYPE = "export.part_provided"
    VERSION = 1
    TOPIC = Topic.EXPORT

    export_id: UUID
    service: str = Field(max_length=40)
    schema_version: int = Field(ge=1, description="Version of the part's (decrypted) JSON shape.")
    sealed: str = Field(description="The part as a NaCl sealed box (base64); only the export's private key opens it.")


def people_made_from_two_topics(envelopes: Iterable[Envelope]) -> set[UUID]:
    """The people whose rows these events make or name, rows that two topics make together: a
    participant's by participant.enrolled, a coach's by coach.added, and the name and address in
    both by contact.details_set. Two consumers may apply them at the same moment, so a service
    locks these people first (shared.db.lock_people). A payload that does not parse is left to
    its change, which refuses it (parsed once per envelope: the consumer asked already)."""
    people: set[UUID] = set()
    for envelope in envelopes:
        if envelope.type == ParticipantEnrolled.TYPE:
            if envelope.participant_id is not None:
                people.add(envelope.participant_id)
            continue
        if envelope.type not in (ContactDetailsSet.TYPE, CoachAdded.TYPE):
            continue
        with contextlib.suppress(LookupError, TypeError, ValueError):
            payload = envelope.parsed()
            if isinstance(payload, ContactDetailsSet):
                people.add(payload.person_id)
            elif isinstance(payload, CoachAdded):
                people.add(payload.coach_id)
    return people
