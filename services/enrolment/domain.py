"""Enrolment rules, free of I/O: participant fields and defaults, the coach choice, the
licence, the participant lifecycle, logos, passwords and sign-up slugs. Beside it, as free of
I/O: login_limits.py (login throttling), csv_rows.py (CSV import rows), signup_limits.py."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from PIL import Image, UnidentifiedImageError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from shared.branding import BRAND_COLOUR_PATTERN
from shared.errors import Refusal
from shared.text import SINGLE_LINE

DEFAULT_SEND_TIME = time(8, 0)
DEFAULT_TIMEZONE = "Europe/Amsterdam"
DEFAULT_PHONE_REGION = "NL"
LICENCE_TIMEZONE = ZoneInfo("Europe/Amsterdam")
"""Licences run by Dutch calendar days."""

Status = Literal["pending", "enrolled", "active", "paused", "completed", "stopped", "erased"]
STATUSES: tuple[Status, ...] = ("pending", "enrolled", "active", "paused", "completed", "stopped", "erased")
ACTIVE_STATUSES: tuple[Status, ...] = ("enrolled", "active", "paused")
"""Running participants: they count against the licence and get (or will get) mails."""

StaffRole = Literal["org_admin", "coach", "partner"]
ConsentVia = Literal["signal"]
"""How consent was given when an organisation enrols someone: after a partner's signal, in
the coach's first conversation (the sign-up form records its own: consent_text_version)."""
CONSENT_CLOCK_SKEW = timedelta(minutes=5)
StoppedBy = Literal["participant", "coach", "organisation"]


# --- participant fields ----------------------------------------------------------------


def _invalid(reason: str) -> ValueError:
    """A ValueError whose text pydantic reports as is (without "Value error, " in front)."""
    return PydanticCustomError("value_error", reason)


def normalise_email(value: str) -> str:
    """A syntactically valid address, lower-cased (addresses are compared case-insensitively)."""
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        raise _invalid(f"not a valid e-mail address: {error}") from None


def normalise_phone(value: str, region: str = DEFAULT_PHONE_REGION) -> str:
    """E.164 (+31612345678); numbers without a country code are read as Dutch by default."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise _invalid("not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise _invalid("not a valid phone number (a Dutch number, or one with a country code such as +32)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def display_phone(value: str, region: str = DEFAULT_PHONE_REGION) -> str:
    """A valid phone number written the way people read it (020 123 4567, +32 470 12 34 56)."""
    number = phonenumbers.parse(normalise_phone(value, region), region)
    home = phonenumbers.region_code_for_number(number) == region
    style = phonenumbers.PhoneNumberFormat.NATIONAL if home else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    return phonenumbers.format_number(number, style)


def known_timezone(value: str) -> str:
    """An IANA time zone name that this machine knows."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _invalid(f"unknown time zone '{value}' (use an IANA name such as Europe/Amsterdam)") from None
    return value


def _empty_to_none(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        return None
    return value


PHONE_PATTERN = r"^\+?[0-9 ()./-]{6,40}$"
"""What a phone number may look like before libphonenumber checks it: digits and separators."""
CLOCK_TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"
"""A local time of day as people write it: HH:MM (or HH:MM:SS), no time zone."""
BLANK = {"type": "string", "pattern": r"^\s*$", "description": "Blank: the same as null."}
EMAIL_SCHEMA = {"type": "string", "format": "email", "maxLength": 254}


def optional_schema(schema: dict[str, Any]) -> WithJsonSchema:
    """The JSON Schema of an optional field whose blank value means null, as the API accepts it."""
    return WithJsonSchema({"anyOf": [schema, BLANK, {"type": "null"}]})


def phone_characters(value: str) -> str:
    """Only digits and the usual separators, so that the API refuses what its schema refuses."""
    if not re.fullmatch(PHONE_PATTERN, value):
        raise _invalid("not a phone number (digits, spaces and + ( ) - . / only)")
    return value


def clock_time(value: object) -> object:
    """A time of day written HH:MM or HH:MM:SS; anything else (a zone, fractions) is refused."""
    if isinstance(value, str) and not re.fullmatch(CLOCK_TIME_PATTERN, value):
        raise _invalid("a time of day is written as HH:MM, for example 08:30")
    return value


FirstName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), SINGLE_LINE]
Email = Annotated[
    str, StringConstraints(max_length=254), SINGLE_LINE, AfterValidator(normalise_email), WithJsonSchema(EMAIL_SCHEMA)
]
PHONE_SCHEMA = {"type": "string", "pattern": PHONE_PATTERN, "maxLength": 40}
Phone = Annotated[
    Annotated[str, SINGLE_LINE, AfterValidator(phone_characters), AfterValidator(normalise_phone)] | None,
    BeforeValidator(_empty_to_none),
    optional_schema({**PHONE_SCHEMA, "description": "Normalised to E.164; without a country code read as Dutch."}),
]
LocalTime = Annotated[
    time,
    BeforeValidator(clock_time),
    WithJsonSchema({"type": "string", "pattern": CLOCK_TIME_PATTERN, "examples": ["08:00"]}),
]
TimeZoneName = Annotated[str, SINGLE_LINE, AfterValidator(known_timezone)]
Colour = Annotated[str, StringConstraints(pattern=BRAND_COLOUR_PATTERN)]


def default_start_date(now: datetime, timezone: str) -> date:
    """Tomorrow in the participant's own time zone."""
    return now.astimezone(ZoneInfo(timezone)).date() + timedelta(days=1)


def check_start_date(start: date, now: datetime, timezone: str) -> date:
    """A start date from yesterday up to a year ahead (the day of slack covers time zones)."""
    today = now.astimezone(ZoneInfo(timezone)).date()
    if start < today - timedelta(days=1):
        raise Refusal("invalid", "The start date lies in the past.", field="start_date")
    if start > today + timedelta(days=366):
        raise Refusal("invalid", "The start date lies more than a year ahead.", field="start_date")
    return start


def choose_coach(requested: UUID | None, active_per_coach: Mapping[UUID, int]) -> UUID:
    """The requested coach if they belong to the organisation, else the least busy one.

    Ties go to the coach id that sorts first, so the choice is repeatable.
    """
    if requested is not None:
        if requested not in active_per_coach:
            raise Refusal("invalid", "This coach does not work for this organisation.", field="coach_id")
        return requested
    if not active_per_coach:
        raise Refusal("conflict", "This organisation has no coach yet; add a coach first.", field="coach_id")
    return min(active_per_coach, key=lambda coach: (active_per_coach[coach], str(coach)))


def check_variant(variant: str | None, allowed: tuple[str, ...]) -> str:
    """The requested programme variant if licensed; without one, the first licensed variant."""
    if variant is None:
        return allowed[0]
    if variant not in allowed:
        raise Refusal(
            "invalid",
            f"Variant '{variant}' is not in this organisation's licence ({', '.join(allowed)}).",
            field="variant",
        )
    return variant


# --- the licence -----------------------------------------------------------------------


LicenceState = Literal["valid", "expired", "not_yet_valid"]


def licence_today(now: datetime) -> date:
    """The licence's calendar day (Amsterdam) at `now`."""
    return now.astimezone(LICENCE_TIMEZONE).date()


def licence_state(valid_from: date, valid_until: date, today: date) -> LicenceState:
    """Whether the licence runs today (both ends included)."""
    if today < valid_from:
        return "not_yet_valid"
    if today > valid_until:
        return "expired"
    return "valid"


def remaining_capacity(*, valid_from: date, valid_until: date, maximum: int, running: int, today: date) -> int:
    """How many more participants may start now; refuses when the licence does not run.

    Running participants are never stopped by this rule: they finish their programme.
    """
    state = licence_state(valid_from, valid_until, today)
    if state == "expired":
        raise Refusal(
            "conflict",
            f"The licence of this organisation ended on {valid_until.isoformat()}; no new enrolments.",
            field="licence",
        )
    if state == "not_yet_valid":
        raise Refusal(
            "conflict",
            f"The licence of this organisation starts on {valid_from.isoformat()}; no enrolments yet.",
            field="licence",
        )
    left = maximum - running
    if left <= 0:
        raise Refusal(
            "conflict", f"The licence is full: {running} of {maximum} participants are active.", field="licence"
        )
    return left


def capacity_holds_side_by_side(remaining: int, concurrent_transactions: int) -> bool:
    """Whether enrolments may go in side by side (without taking turns on the organisation)
    and still never exceed the licence: each such enrolment adds one participant and cannot
    see the others' uncommitted ones, and at most `concurrent_transactions` run at once, so
    it holds while more places are left than that."""
    return remaining > concurrent_transactions


def check_licence_period(valid_from: date, valid_until: date) -> None:
    """A licence ends on or after the day it starts."""
    if valid_until < valid_from:
        raise Refusal("invalid", "The licence ends before it starts.", field="licence_valid_until")


# --- the participant lifecycle -------------------------------------------------------------

Action = Literal["confirm", "start", "pause", "resume", "stop", "complete", "erase", "edit"]
"""What can happen to a participant; `edit` is a change of details or coach, which leaves the status."""

TRANSITIONS: Mapping[Action, Mapping[str, Status]] = {
    "confirm": {"pending": "enrolled"},
    "start": {"enrolled": "active"},
    "pause": {"enrolled": "paused", "active": "paused"},
    # A participant whose programme had not started yet is enrolled again (see next_status).
    "resume": {"paused": "active"},
    "stop": {status: "stopped" for status in ACTIVE_STATUSES},
    # The mailer reports completion after the last lesson; a pause right after it does not undo that.
    "complete": {status: "completed" for status in ACTIVE_STATUSES},
    "erase": {status: "erased" for status in STATUSES if status != "erased"},
    "edit": {status: status for status in ("pending", *ACTIVE_STATUSES)},
}
"""The one table of the participant lifecycle: per action, the statuses it applies to and the
status it leads to. Every rule below asks it; no other code compares statuses for this."""

NO_OPS: Mapping[Action, frozenset[str]] = {
    "start": frozenset({"active", "erased"}),
    "stop": frozenset({"stopped", "erased"}),
    "complete": frozenset({"completed", "erased"}),
    "pause": frozenset({"erased"}),
    "resume": frozenset({"erased"}),
}
"""Where an event (from the mailer or tracking) that asks for an action changes nothing: it is
already so (a repeated unsubscribe), or the participant was erased."""

_EXPLAIN: dict[str, str] = {
    "pending": "has not confirmed the sign-up yet",
    "enrolled": "is enrolled and has not started yet",
    "active": "is active",
    "paused": "is paused",
    "completed": "has completed the programme",
    "stopped": "has stopped",
    "erased": "has been erased",
}


def allows(current: str, action: Action) -> bool:
    """Whether `action` applies to a participant with this status now."""
    return current in TRANSITIONS[action]


def next_status(current: str, action: Action, *, started: bool = False) -> Status:
    """The status after `action`, or a conflict Refusal when it does not apply now.

    A resumed participant is active again if their programme had started, else enrolled.
    """
    after = TRANSITIONS[action].get(current)
    if after is None:
        explanation = _EXPLAIN.get(current, f"has status '{current}'")
        raise Refusal("conflict", f"Cannot {action}: this participant {explanation}.", field="status")
    if action == "resume" and not started:
        return "enrolled"
    return after


def is_transition_noop(current: str, action: Action) -> bool:
    """An event that asks for what is already so (a repeat unsubscribe) changes nothing."""
    return current in NO_OPS.get(action, frozenset())


def already_done(current: str, action: Action) -> bool:
    """Whether the participant already has the status that `action` leads to (stopped, for a stop)."""
    return current in TRANSITIONS[action].values()


def is_running(current: str) -> bool:
    """Enrolled, active or paused: counts against the licence and gets (or will get) mails."""
    return current in ACTIVE_STATUSES


def awaits_confirmation(current: str) -> bool:
    """A public sign-up that was not confirmed yet: no other service knows the participant."""
    return allows(current, "confirm")


def check_editable(current: str) -> None:
    """Details and coach change only while the programme has not ended (conflict otherwise)."""
    if not allows(current, "edit"):
        raise Refusal("conflict", f"This participant's programme has ended ({current}).", field="status")


def stop_applies(current: str, by: StoppedBy) -> bool:
    """Whether a stop changes anything. A repeated unsubscribe, or any stop of someone erased,
    changes nothing; a coach or organisation who stops someone who already stopped is told so."""
    if by != "participant" and already_done(current, "stop"):
        raise Refusal("conflict", "This participant has already stopped.", field="status")
    return not is_transition_noop(current, "stop")


def check_stop_reason(by: StoppedBy, reason: str | None) -> str | None:
    """A coach says why they stop someone; the others may."""
    cleaned = reason.strip() if reason else None
    if by == "coach" and not cleaned:
        raise Refusal("invalid", "A coach gives a reason when stopping a participant.", field="reason")
    return cleaned


@dataclass(frozen=True)
class CheckedLogo:
    """An uploaded logo that is really a PNG or JPEG of an acceptable size."""

    format: Literal["png", "jpeg"]
    content_type: str
    width: int
    height: int
    sha256: str


def check_logo(data: bytes, *, max_bytes: int, max_side: int, min_side: int = 16) -> CheckedLogo:
    """Decode the image for real; refuse anything but PNG/JPEG (SVG included) and odd sizes."""
    if not data:
        raise Refusal("invalid", "The logo file is empty.", field="logo")
    if len(data) > max_bytes:
        raise Refusal(
            "too_large", f"The logo is {len(data)} bytes; at most {max_bytes} bytes are allowed.", field="logo"
        )
    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as image:
            kind = image.format
            width, height = image.size
            # Check the header's size before decoding, so a decompression bomb is never expanded.
            if max(width, height) > max_side or min(width, height) < min_side:
                raise Refusal(
                    "invalid",
                    f"The logo is {width}×{height} pixels; each side must be {min_side} to {max_side} pixels.",
                    field="logo",
                )
            image.load()
    except Refusal:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise Refusal(
            "unsupported",
            "The logo must be a PNG or JPEG image (SVG and other formats are not accepted).",
            field="logo",
        ) from None
    fmt: Literal["png", "jpeg"] = "png" if kind == "PNG" else "jpeg"
    return CheckedLogo(
        format=fmt,
        content_type=f"image/{fmt}",
        width=width,
        height=height,
        sha256=hashlib.sha256(data).hexdigest(),
    )


# --- staff accounts -----------------------------------------------------------------------------


MIN_PASSWORD_LENGTH = 10
PARTNER_ORGANISATION_MAX = 120
STAFF_ROLES: tuple[StaffRole, ...] = ("org_admin", "coach", "partner")


def staff_role(stored: str) -> StaffRole:
    """A staff row's role as the contract's literal; a value no code wrote is a bug, not a coach."""
    for role in STAFF_ROLES:
        if stored == role:
            return role
    raise ValueError(f"unknown staff role {stored!r}")


def check_partner_organisation(role: StaffRole, partner_organisation: str | None) -> str | None:
    """A partner names their own organisation (shown with each signal and in the counts);
    nobody else has one, so a typo in the role cannot silently make a partner of a coach."""
    if role == "partner":
        if not partner_organisation:
            raise Refusal(
                "invalid",
                "A partner needs partner_organisation: the name of their own organisation.",
                field="partner_organisation",
            )
        return partner_organisation
    if partner_organisation is not None:
        raise Refusal("invalid", "Only a partner has a partner_organisation.", field="partner_organisation")
    return None


def check_new_password(password: str) -> str:
    """Long enough to resist guessing (NIST 800-63B: length over composition rules)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Refusal("invalid", f"The password needs at least {MIN_PASSWORD_LENGTH} characters.", field="password")
    if len(password) > 200:
        raise Refusal("invalid", "The password may have at most 200 characters.", field="password")
    if not password.strip():
        raise Refusal("invalid", "The password cannot be only spaces.", field="password")
    return password


# --- enrolling from a signal ----------------------------------------------------------------------


def check_consent_given_at(given_at: datetime, now: datetime) -> datetime:
    """Consent is recorded when it was given, which cannot be later than now (a few minutes of
    clock difference between services aside)."""
    if given_at > now + CONSENT_CLOCK_SKEW:
        raise Refusal("invalid", "Consent cannot be given in the future.", field="consent.given_at")
    return given_at


def coach_enrolling_from_signal(staff_id: UUID, coach_id: UUID | None, via: ConsentVia | None) -> UUID:
    """A coach may enrol someone only as the one-click end of a signal's intake: with the
    person's consent recorded via the signal, and as that person's own coach (coach_id
    themselves or left out). Everything else stays with the organisation admin."""
    if via != "signal":
        raise Refusal(
            "forbidden", "A coach enrols only from a signal: send consent with via 'signal'.", field="consent"
        )
    if coach_id is not None and coach_id != staff_id:
        raise Refusal("forbidden", "A coach enrols only with themselves as coach.", field="coach_id")
    return staff_id


# --- participant fields as the API, the CSV file and the sign-up form give them ----------------------


def parse_clock_time(value: str) -> time:
    """8:00, 08:00, 8.00 or 08:00:00."""
    match = re.fullmatch(r"(\d{1,2})[:.](\d{2})(?::(\d{2}))?", value.strip())
    if match is None:
        raise ValueError("not a time; write it as 08:00")
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError("not a time of day; use 00:00 to 23:59")
    return time(hour, minute, second)


class ParticipantFields(BaseModel):
    """A participant's own fields, validated the same way for the API, the CSV and the form."""

    model_config = ConfigDict(frozen=True, str_strip_whitespace=True)

    first_name: FirstName
    email: Email
    phone: Phone = None
    send_time: LocalTime = DEFAULT_SEND_TIME
    timezone: TimeZoneName = DEFAULT_TIMEZONE
    start_date: date | None = None
    variant: Annotated[str, SINGLE_LINE] | None = None


@dataclass(frozen=True)
class FieldProblem:
    field: str
    reason: str


def problems_from_validation(error: ValidationError) -> list[FieldProblem]:
    """Pydantic's errors as field + reason."""
    problems = []
    for issue in error.errors():
        name = ".".join(str(part) for part in issue["loc"]) or "row"
        reason = issue["msg"].removeprefix("Value error, ")
        if issue["type"] == "missing":
            reason = "is empty"
        problems.append(FieldProblem(name, reason))
    return problems


# --- short sign-up addresses ----------------------------------------------------------

SLUG_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SLUG_MIN, SLUG_MAX = 3, 40
RESERVED_SLUGS = frozenset(
    {
        "aanmelden", "admin", "api", "beheer", "bevestigen", "check-je-mail", "docs", "healthz", "help",
        "inloggen", "login", "meer", "meer-contact", "meercontact", "metrics", "readyz", "static", "support",
        "test", "uitloggen", "www",
    }
)  # fmt: skip
"""Words no organisation can take: the platform's own names and paths."""


def check_slug(slug: str) -> str:
    """The organisation's short address word, or an invalid Refusal saying what is wrong with it."""
    if not SLUG_MIN <= len(slug) <= SLUG_MAX:
        raise Refusal("invalid", f"A slug has {SLUG_MIN} to {SLUG_MAX} characters.", field="slug")
    if not SLUG_PATTERN.match(slug):
        raise Refusal(
            "invalid",
            "A slug has lowercase letters, digits and single hyphens between them (e.g. 'welzijn-aan-zee').",
            field="slug",
        )
    if slug in RESERVED_SLUGS:
        raise Refusal("invalid", f"'{slug}' is reserved; choose another slug.", field="slug")
    if _looks_like_uuid(slug):
        raise Refusal("invalid", "A slug cannot look like an organisation id.", field="slug")
    return slug


def _looks_like_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True
