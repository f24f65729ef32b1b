"""Enrolment's use cases, shared by the API, the CLI and the Kafka handlers.

Each one applies the domain rules, changes rows and stages its event in the caller's
session; the caller commits once, so a state change and its event commit together or
not at all. Rules that refuse raise shared.errors.Refusal (kind, message, field).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID, uuid4

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.enrolment import domain, security, signup_limits, storage
from services.enrolment.domain import ParticipantFields, StaffRole, StoppedBy
from services.enrolment.schemas import (
    BrandingUpdate,
    ImportedRowPublic,
    ImportReport,
    LicencePublic,
    LicenceUpdate,
    OrganisationCreate,
    OrganisationPublic,
    ParticipantUpdate,
    RejectedRowPublic,
    RowProblem,
)
from services.enrolment.settings import EnrolmentSettings
from services.enrolment.tables import ApiKey, Invitation, Logo, Organisation, Participant, StaffMember
from shared.db import utcnow
from shared.errors import Refusal
from shared.events import (
    Branding,
    CoachAdded,
    ContactDetailsSet,
    Envelope,
    OrganisationBrandingChanged,
    OrganisationLicenceChanged,
    OrganisationLicensed,
    OrganisationSlugChanged,
    ParticipantCoachChanged,
    ParticipantCompleted,
    ParticipantConfirmationRequested,
    ParticipantDetailsChanged,
    ParticipantEnrolled,
    ParticipantErased,
    ParticipantPaused,
    ParticipantResumed,
    ParticipantStopped,
    Payload,
    StaffAccessChanged,
    StaffInvited,
    Topic,
)
from shared.mailer_links import link_keys, seal_link
from shared.outbox import add_to_outbox, add_tombstone_to_outbox
from shared.staff_tokens import StaffClaims

# --- organisations ------------------------------------------------------------------------------


def logo_url(organisation: Organisation, base_url: str) -> str | None:
    """The logo's public address; it names the image's hash, so it never shows another image."""
    if organisation.logo_sha256 is None or organisation.logo_format is None:
        return None
    extension = "png" if organisation.logo_format == "png" else "jpg"
    return f"{base_url.rstrip('/')}/logos/{organisation.id}/{organisation.logo_sha256}.{extension}"


def branding_of(organisation: Organisation, base_url: str) -> Branding:
    """The organisation's branding as every mail carries it."""
    return Branding(
        display_name=organisation.display_name,
        contact_person=organisation.contact_person,
        contact_phone=organisation.contact_phone,
        contact_email=organisation.contact_email,
        website=organisation.website,
        address=organisation.address,
        brand_colour=organisation.brand_colour,
        logo_url=logo_url(organisation, base_url),
        sender_name=organisation.sender_name,
        reply_to=organisation.reply_to,
    )


def signup_url(organisation: Organisation, base_url: str) -> str:
    """The public sign-up page: the short address when the organisation chose one (the id link keeps working)."""
    return f"{base_url.rstrip('/')}/aanmelden/{organisation.slug or organisation.id}"


def organisation_public(organisation: Organisation, base_url: str) -> OrganisationPublic:
    """The organisation as the API shows it."""
    return OrganisationPublic.model_validate(
        {
            **organisation.model_dump(),
            "logo_url": logo_url(organisation, base_url),
            "signup_url": signup_url(organisation, base_url),
        }
    )


def _publish_org(session: AsyncSession, organisation: Organisation, payload: Payload) -> None:
    add_to_outbox(session, Envelope.wrap(payload, org_id=organisation.id))


def license_organisation(*, session: AsyncSession, body: OrganisationCreate, base_url: str) -> Organisation:
    """A new licensed organisation (organisation.licensed)."""
    domain.check_licence_period(body.licence_valid_from, body.licence_valid_until)
    organisation = Organisation.model_validate(body.model_dump())
    session.add(organisation)
    _publish_org(
        session,
        organisation,
        OrganisationLicensed(
            name=organisation.name,
            branding=branding_of(organisation, base_url),
            licence_valid_from=organisation.licence_valid_from,
            licence_valid_until=organisation.licence_valid_until,
            max_active_participants=organisation.max_active_participants,
            variants=tuple(organisation.variants),
        ),
    )
    return organisation


def change_licence(*, session: AsyncSession, organisation: Organisation, update: LicenceUpdate, now: datetime) -> bool:
    """Change period, size or variants (organisation.licence_changed); False if nothing changed.

    Running participants are not touched: a smaller or ended licence only refuses new ones.
    """
    changed = False
    for name in update.model_fields_set:
        value = getattr(update, name)
        if value is None:
            raise Refusal("invalid", "This licence field cannot be cleared.", field=name)
        if getattr(organisation, name) != value:
            setattr(organisation, name, value)
            changed = True
    domain.check_licence_period(organisation.licence_valid_from, organisation.licence_valid_until)
    if changed:
        organisation.updated_at = now
        session.add(organisation)
        _publish_org(
            session,
            organisation,
            OrganisationLicenceChanged(
                licence_valid_from=organisation.licence_valid_from,
                licence_valid_until=organisation.licence_valid_until,
                max_active_participants=organisation.max_active_participants,
                variants=tuple(organisation.variants),
            ),
        )
    return changed


async def licence_use(*, session: AsyncSession, organisation: Organisation, now: datetime) -> LicencePublic:
    """The licence with its use now: active out of maximum, and what is still free."""
    counts = await storage.participants_per_status(session=session, org_id=organisation.id)
    running = sum(counts.get(status, 0) for status in domain.ACTIVE_STATUSES)
    try:
        available = domain.remaining_capacity(
            valid_from=organisation.licence_valid_from,
            valid_until=organisation.licence_valid_until,
            maximum=organisation.max_active_participants,
            running=running,
            today=domain.licence_today(now),
        )
    except Refusal:
        available = 0
    return LicencePublic(
        org_id=organisation.id,
        licence_valid_from=organisation.licence_valid_from,
        licence_valid_until=organisation.licence_valid_until,
        state=domain.licence_state(
            organisation.licence_valid_from, organisation.licence_valid_until, domain.licence_today(now)
        ),
        active_participants=running,
        max_active_participants=organisation.max_active_participants,
        available=available,
        awaiting_confirmation=counts.get("pending", 0),
        variants=list(organisation.variants),
    )


def _branding_changed(session: AsyncSession, organisation: Organisation, base_url: str, now: datetime) -> None:
    organisation.updated_at = now
    session.add(organisation)
    _publish_org(session, organisation, OrganisationBrandingChanged(branding=branding_of(organisation, base_url)))


def update_branding(
    *, session: AsyncSession, organisation: Organisation, update: BrandingUpdate, base_url: str, now: datetime
) -> bool:
    """Apply the fields sent (organisation.branding_changed); False if nothing changed."""
    changed = False
    for name in sorted(update.model_fields_set):
        value = getattr(update, name)
        if value is None and name in ("display_name", "brand_colour"):
            raise Refusal("invalid", f"{name} cannot be cleared.", field=name)
        if getattr(organisation, name) != value:
            setattr(organisation, name, value)
            changed = True
    if changed:
        _branding_changed(session, organisation, base_url, now)
    return changed


async def set_slug(*, session: AsyncSession, organisation: Organisation, slug: str) -> bool:
    """Give the organisation its short sign-up address (organisation.slug_changed); False if unchanged.
    A slug another organisation has is refused with 409 (the unique index catches a race)."""
    slug = domain.check_slug(slug.strip())
    if organisation.slug == slug:
        return False
    holder = await storage.organisation_by_slug(session=session, slug=slug)
    if holder is not None and holder.id != organisation.id:
        raise Refusal("conflict", f"The slug '{slug}' is taken by another organisation.", field="slug")
    organisation.slug = slug
    _publish_org(session, organisation, OrganisationSlugChanged(slug=slug))
    return True


async def set_logo(
    *, session: AsyncSession, organisation: Organisation, data: bytes, settings: EnrolmentSettings, now: datetime
) -> bool:
    """Check and store an uploaded logo and make it the organisation's logo."""
    checked = domain.check_logo(data, max_bytes=settings.logo_max_bytes, max_side=settings.logo_max_side_px)
    await storage.add_logo(
        session=session,
        logo=Logo(
            org_id=organisation.id,
            sha256=checked.sha256,
            format=checked.format,
            width=checked.width,
            height=checked.height,
            data=data,
            created_at=now,
        ),
    )
    if organisation.logo_sha256 == checked.sha256:
        return False
    organisation.logo_sha256, organisation.logo_format = checked.sha256, checked.format
    _branding_changed(session, organisation, settings.enrolment_base_url, now)
    return True


def remove_logo(*, session: AsyncSession, organisation: Organisation, base_url: str, now: datetime) -> bool:
    """Mails go on without a logo (organisation.branding_changed)."""
    if organisation.logo_sha256 is None:
        return False
    organisation.logo_sha256 = organisation.logo_format = None
    _branding_changed(session, organisation, base_url, now)
    return True


async def rotate_api_key(*, session: AsyncSession, organisation: Organisation, now: datetime) -> tuple[str, ApiKey]:
    """A new API key; the previous one stops working at once."""
    await storage.revoke_api_keys(session=session, org_id=organisation.id, now=now)
    key, prefix = security.new_api_key()
    row = ApiKey(org_id=organisation.id, prefix=prefix, key_hash=security.digest(key), created_at=now)
    session.add(row)
    return key, row


# --- staff -----------------------------------------------------------------------------------------


def _invite(*, session: AsyncSession, staff: StaffMember, settings: EnrolmentSettings, now: datetime) -> datetime:
    assert staff.name is not None and staff.email is not None, "a removed member is never invited"
    token = security.new_link_token()
    expires_at = now + timedelta(hours=settings.invitation_ttl_hours)
    session.add(Invitation(token_hash=security.digest(token), staff_id=staff.id, expires_at=expires_at, created_at=now))
    add_to_outbox(
        session,
        Envelope.wrap(
            StaffInvited(
                staff_id=staff.id,
                role="coach" if staff.role == "coach" else "org_admin",
                sealed_link=seal_link(
                    f"{settings.enrolment_base_url.rstrip('/')}/set-password/{token}",
                    keys=link_keys(settings.mailer_link_keys),
                    expires_at=expires_at,
                    now=now,
                ),
            ),
            org_id=staff.org_id,
        ),
    )
    return expires_at


async def invite_staff(
    *,
    session: AsyncSession,
    organisation: Organisation,
    name: str,
    email: str,
    role: StaffRole,
    settings: EnrolmentSettings,
    now: datetime,
) -> tuple[StaffMember, datetime]:
    """A new org admin or coach (coach.added for a coach) and their invitation (staff.invited)."""
    if await storage.get_staff_by_email(session=session, email=email) is not None:
        raise Refusal("conflict", "An account with this e-mail address already exists.", field="email")
    staff = StaffMember(org_id=organisation.id, role=role, name=name, email=email, created_at=now)
    session.add(staff)
    await session.flush()
    add_to_outbox(
        session,
        Envelope.wrap(
            ContactDetailsSet(person_id=staff.id, kind="staff", name=name, email=email), org_id=organisation.id
        ),
    )
    if role == "coach":
        _publish_org(session, organisation, CoachAdded(coach_id=staff.id))
    return staff, _invite(session=session, staff=staff, settings=settings, now=now)


async def resend_invitation(
    *, session: AsyncSession, staff: StaffMember, settings: EnrolmentSettings, now: datetime
) -> datetime:
    """A fresh set-password link; earlier links stop working. For a member who had a
    password this is a reset: the old password and every session stop working at once."""
    if not staff.active:
        raise Refusal("conflict", "This account is deactivated; reactivate it first.", field="status")
    await storage.retire_invitations(session=session, staff_id=staff.id, now=now)
    if staff.password_hash is not None:
        staff.password_hash, staff.password_set_at = None, None
        revoke_sessions(session=session, staff=staff)
    return _invite(session=session, staff=staff, settings=settings, now=now)


def _access_changed(session: AsyncSession, staff: StaffMember, *, removed: bool = False) -> None:
    staff.token_version += 1
    session.add(staff)
    add_to_outbox(
        session,
        Envelope.wrap(
            StaffAccessChanged(
                staff_id=staff.id,
                role="coach" if staff.role == "coach" else "org_admin",
                token_version=staff.token_version,
                active=staff.active,
                removed=removed,
            ),
            org_id=staff.org_id,
        ),
    )
    if removed:  # the member's name and address go from meer.contact too
        add_tombstone_to_outbox(session, Topic.CONTACT, str(staff.id))


def revoke_sessions(*, session: AsyncSession, staff: StaffMember) -> None:
    """Every token issued to this member so far stops working, here and (by
    staff.access_changed) in every service that accepts them: logout, password reset."""
    _access_changed(session, staff)


async def _may_lose_access(session: AsyncSession, staff: StaffMember, by_staff_id: UUID | None) -> None:
    if by_staff_id == staff.id:
        raise Refusal("conflict", "You cannot deactivate or remove your own account.", field="staff_id")
    if (
        staff.active
        and staff.role == "org_admin"
        and await storage.active_admins(session=session, org_id=staff.org_id) <= 1
    ):
        raise Refusal(
            "conflict", "This is the organisation's last active admin; invite another one first.", field="staff_id"
        )


async def deactivate_staff(
    *, session: AsyncSession, staff: StaffMember, by_staff_id: UUID | None, now: datetime
) -> None:
    """Offboarding: no login, and every token refused from now on (staff.access_changed).
    A coach keeps their participants until the admin gives them another coach."""
    if not staff.active:
        raise Refusal("conflict", "This account is already deactivated.", field="status")
    await _may_lose_access(session, staff, by_staff_id)
    staff.deactivated_at = now
    await storage.retire_invitations(session=session, staff_id=staff.id, now=now)
    _access_changed(session, staff)


async def reactivate_staff(*, session: AsyncSession, staff: StaffMember) -> None:
    """Undo a deactivation (not a removal): the member can log in again with their password."""
    if staff.removed_at is not None:
        raise Refusal("conflict", "This account was removed; invite the person again.", field="status")
    if staff.active:
        raise Refusal("conflict", "This account is active.", field="status")
    staff.deactivated_at = None
    _access_changed(session, staff)


async def remove_staff(*, session: AsyncSession, staff: StaffMember, by_staff_id: UUID | None, now: datetime) -> None:
    """Remove a member for good: name, address and password go; the id stays, so calls,
    plans and the audit trail keep pointing at someone (staff.access_changed, removed)."""
    if staff.removed_at is not None:
        raise Refusal("conflict", "This account was already removed.", field="status")
    await _may_lose_access(session, staff, by_staff_id)
    staff.removed_at = now
    staff.deactivated_at = staff.deactivated_at or now
    staff.name, staff.email, staff.password_hash, staff.password_set_at = None, None, None, None
    await storage.retire_invitations(session=session, staff_id=staff.id, now=now)
    _access_changed(session, staff, removed=True)


async def check_invitation(*, session: AsyncSession, token: str, now: datetime) -> tuple[Invitation, StaffMember]:
    """The invitation behind a link, or a Refusal: not_found when unknown, gone when used or expired."""
    invitation = await storage.get_invitation(session=session, token_hash=security.digest(token))
    if invitation is None:
        raise Refusal("not_found", "This link is not valid.", field="token")
    if invitation.used_at is not None:
        raise Refusal("gone", "This link was already used.", field="token")
    if now >= invitation.expires_at:
        raise Refusal("gone", "This link has expired; ask your organisation for a new invitation.", field="token")
    staff = await storage.get_staff(session=session, staff_id=invitation.staff_id)
    assert staff is not None
    if not staff.active:
        raise Refusal("gone", "This account is no longer active.", field="token")
    return invitation, staff


async def set_password(*, session: AsyncSession, token: str, password: str, now: datetime) -> StaffMember:
    """Use a one-time link to set the password; the link (and older ones) then stop working."""
    domain.check_new_password(password)
    invitation, staff = await check_invitation(session=session, token=token, now=now)
    staff.password_hash = await asyncio.to_thread(security.hash_password, password)
    staff.password_set_at = now
    session.add(staff)
    await storage.retire_invitations(session=session, staff_id=staff.id, now=now)
    invitation.used_at = now
    session.add(invitation)
    return staff


@dataclass(frozen=True)
class LoginOutcome:
    """Either claims for a token (and the account key a device token is bound to), or why
    not (status 401 or 429, and until when)."""

    claims: StaffClaims | None = None
    email_key: str = ""
    status: Literal[200, 401, 429] = 200
    message: str = ""
    retry_at: datetime | None = None


async def login(
    *,
    session: AsyncSession,
    email: str,
    password: str,
    source: str,
    device_token: str | None,
    keys: security.TokenKeys,
    now: datetime,
    policy: domain.LoginPolicy,
) -> LoginOutcome:
    """Check a login against the limits of its source, subnet, account+source and account
    (or, for a browser that logged in to this account before, its own device limit), and
    count it; the caller commits either way, so failures are counted."""
    email_key = security.email_digest(email)
    device_id = keys.device_id(device_token, email_key)
    scopes = domain.login_limit_keys(email_key=email_key, source=source, device_id=device_id)
    keyed = {scope: security.digest(key) for scope, key in scopes.items()}
    rows = await storage.login_limits(session=session, keys=keyed.values())
    states = {
        scope: domain.LimitState(
            window_started_at=rows[key].window_started_at,
            failures=rows[key].failures,
            blocked_until=rows[key].blocked_until,
        )
        for scope, key in keyed.items()
    }
    until = domain.login_blocked(states.values(), now)
    if until is not None:
        when = until.isoformat(timespec="seconds")
        return LoginOutcome(status=429, message=f"Too many failed logins; try again after {when}.", retry_at=until)
    staff = await storage.get_staff_by_email(session=session, email=email.strip().lower())
    password_hash = staff.password_hash if staff else None
    # argon2 takes tens of milliseconds of CPU on purpose: keep the event loop free meanwhile.
    ok = await asyncio.to_thread(security.check_password, password_hash, password)
    if ok and staff is not None and password_hash is not None and staff.active:
        states = {scope: domain.after_login_success(state, scope) for scope, state in states.items()}
        if security.needs_rehash(password_hash):
            staff.password_hash = await asyncio.to_thread(security.hash_password, password)
            session.add(staff)
        outcome = LoginOutcome(
            claims=StaffClaims(
                staff_id=staff.id,
                role="coach" if staff.role == "coach" else "org_admin",
                org_id=staff.org_id,
                coach_id=staff.id if staff.role == "coach" else None,
                token_version=staff.token_version,
            ),
            email_key=email_key,
        )
    else:
        states = {scope: domain.after_login_failure(state, now, scope, policy) for scope, state in states.items()}
        outcome = LoginOutcome(status=401, message="The e-mail address or the password is not right.")
    for scope, state in states.items():
        row = rows[keyed[scope]]
        row.window_started_at, row.failures, row.blocked_until = (
            state.window_started_at,
            state.failures,
            state.blocked_until,
        )
        session.add(row)
    return outcome


# --- participants -----------------------------------------------------------------------------------


def _publish(session: AsyncSession, participant: Participant, payload: Payload) -> None:
    add_to_outbox(session, Envelope.wrap(payload, org_id=participant.org_id, participant_id=participant.id))


def _publish_contact(session: AsyncSession, participant: Participant) -> None:
    """The participant's current contact details on meer.contact (the only place they travel)."""
    assert participant.first_name is not None and participant.email is not None
    _publish(
        session,
        participant,
        _contact_event(participant.id, participant.first_name, participant.email, participant.phone),
    )


def _contact_event(participant_id: UUID, first_name: str, email: str, phone: str | None) -> ContactDetailsSet:
    return ContactDetailsSet(person_id=participant_id, kind="participant", name=first_name, email=email, phone=phone)


def _erase_contact(session: AsyncSession, participant: Participant) -> None:
    add_tombstone_to_outbox(session, Topic.CONTACT, str(participant.id))


def _enrolled_event(participant: Participant) -> ParticipantEnrolled:
    return ParticipantEnrolled(
        coach_id=participant.coach_id,
        start_date=participant.start_date,
        send_time=participant.send_time,
        timezone=participant.timezone,
        variant=participant.variant,
    )


async def _capacity(*, session: AsyncSession, organisation: Organisation, now: datetime) -> int:
    return domain.remaining_capacity(
        valid_from=organisation.licence_valid_from,
        valid_until=organisation.licence_valid_until,
        maximum=organisation.max_active_participants,
        running=await storage.running_count(session=session, org_id=organisation.id),
        today=domain.licence_today(now),
    )


class EnrolInTurn(Exception):
    """The licence is nearly full: roll back and enrol again in turn (organisation FOR UPDATE)."""


async def enrol_participant(
    *,
    session: AsyncSession,
    organisation: Organisation,
    fields: ParticipantFields,
    coach_id: UUID | None,
    source: Literal["api", "admin"],
    now: datetime,
    in_turn: bool = True,
) -> Participant:
    """Enrol someone for the organisation (participant.enrolled).

    in_turn: the caller locked the organisation row FOR UPDATE, so enrolments take turns
    and the licence check holds exactly. Otherwise the caller locked it FOR KEY SHARE
    (get_organisation(key_share=True)): enrolments run side by side, which is safe while
    more places are left than transactions can run at once; when fewer are left this
    raises EnrolInTurn and the caller rolls back and comes again in turn. The caller
    commits with commit_or_conflict: an address already running here is refused then.
    """
    counts = await storage.enrolment_counts(session=session, org_id=organisation.id)
    remaining = domain.remaining_capacity(
        valid_from=organisation.licence_valid_from,
        valid_until=organisation.licence_valid_until,
        maximum=organisation.max_active_participants,
        running=counts.running,
        today=domain.licence_today(now),
    )
    if not in_turn and not domain.capacity_holds_side_by_side(remaining, counts.concurrent_transactions):
        raise EnrolInTurn
    variant = domain.check_variant(fields.variant, tuple(organisation.variants))
    start = domain.check_start_date(
        fields.start_date or domain.default_start_date(now, fields.timezone), now, fields.timezone
    )
    coach = domain.choose_coach(coach_id, counts.per_coach)
    # A running enrolment of the same address is refused by the unique index
    # uq_participant_active_email at commit (the caller turns it into a 409 on email).
    participant = Participant(
        org_id=organisation.id,
        coach_id=coach,
        first_name=fields.first_name,
        email=fields.email,
        phone=fields.phone,
        start_date=start,
        send_time=fields.send_time,
        timezone=fields.timezone,
        variant=variant,
        status="enrolled",
        source=source,
        created_at=now,
        updated_at=now,
    )
    session.add(participant)
    _publish_contact(session, participant)
    _publish(session, participant, _enrolled_event(participant))
    return participant


SIGNUP_RESEND_AFTER = timedelta(minutes=10)


class SignupLimited(Exception):
    """Too many sign-ups from one source or for one mailbox: nothing is stored or sent."""

    def __init__(self, kind: signup_limits.LimitKind, retry_after_s: int) -> None:
        super().__init__(f"too many sign-ups per {kind}")
        self.kind = kind
        self.retry_after_s = retry_after_s


def signup_limits_of(settings: EnrolmentSettings) -> signup_limits.SignupLimits:
    """The sign-up limits the settings ask for."""
    return signup_limits.SignupLimits(
        per_source=settings.signups_per_source_per_hour, per_mailbox=settings.signups_per_mailbox_per_day
    )


async def count_signup(
    *, session: AsyncSession, kind: signup_limits.LimitKind, value: str, settings: EnrolmentSettings, now: datetime
) -> None:
    """Count one sign-up from a source or for a mailbox; SignupLimited when it is one too many.

    The caller commits the count even when it is refused, so a client that keeps trying
    stays refused until the window ends.
    """
    limits = signup_limits_of(settings)
    window = limits.window(kind)
    key = signup_limits.counter_key(kind, value)
    current_start = signup_limits.window_start(now, window)
    current = await storage.count_signup(session=session, key=key, window_start=current_start)
    previous = await storage.signup_count(session=session, key=key, window_start=current_start - window)
    count = signup_limits.sliding_count(current=current, previous=previous, now=now, window=window)
    if signup_limits.over_limit(count, kind, limits):
        raise SignupLimited(kind, signup_limits.retry_after_s(now, window))


async def sign_up(
    *,
    session: AsyncSession,
    organisation: Organisation,
    fields: ParticipantFields,
    settings: EnrolmentSettings,
    now: datetime,
) -> Participant:
    """A public sign-up waits for its confirmation (participant.confirmation_requested only).

    A new sign-up replaces an unconfirmed earlier one of the same address, but not within
    SIGNUP_RESEND_AFTER: the public form must not become a way to flood someone's mailbox.
    """
    await _capacity(session=session, organisation=organisation, now=now)
    coach = domain.choose_coach(
        None, await storage.active_participants_per_coach(session=session, org_id=organisation.id)
    )
    earlier_sign_ups = await storage.pending_signups(session=session, org_id=organisation.id, email=fields.email)
    for earlier in earlier_sign_ups:
        if now - earlier.created_at < SIGNUP_RESEND_AFTER:
            return earlier
    # Only a sign-up that sends a mail counts against the mailbox, in every organisation.
    mailbox = signup_limits.normalised_mailbox(fields.email)
    await count_signup(session=session, kind="mailbox", value=mailbox, settings=settings, now=now)
    for earlier in earlier_sign_ups:
        await forget_sign_up(session=session, participant=earlier)
    token = security.new_link_token()
    confirm_expires_at = now + timedelta(hours=settings.confirmation_ttl_hours)
    participant = Participant(
        org_id=organisation.id,
        coach_id=coach,
        first_name=fields.first_name,
        email=fields.email,
        phone=fields.phone,
        start_date=domain.default_start_date(now, fields.timezone),
        send_time=fields.send_time,
        timezone=fields.timezone,
        variant=organisation.variants[0],
        status="pending",
        source="signup",
        confirm_token_hash=security.digest(token),
        confirm_expires_at=confirm_expires_at,
        consent_text_version=settings.consent_text_version,
        consented_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(participant)
    _publish_contact(session, participant)
    _publish(
        session,
        participant,
        ParticipantConfirmationRequested(
            sealed_link=seal_link(
                f"{settings.enrolment_base_url.rstrip('/')}/bevestigen/{token}",
                keys=link_keys(settings.mailer_link_keys),
                expires_at=confirm_expires_at,
                now=now,
            ),
        ),
    )
    return participant


async def forget_sign_up(*, session: AsyncSession, participant: Participant) -> None:
    """Delete an unconfirmed sign-up (replaced, or never confirmed): nothing started, nothing
    is kept. participant.erased lets the mailer drop its copy for the confirmation mail."""
    _publish(session, participant, ParticipantErased())
    _erase_contact(session, participant)
    await session.delete(participant)


FORGET_BATCH = 500


async def forget_expired_sign_ups(*, session: AsyncSession, expired_before: datetime) -> int:
    """Forget up to FORGET_BATCH sign-ups whose link expired before the given moment."""
    expired = await storage.expired_signups(session=session, expired_before=expired_before, limit=FORGET_BATCH)
    for participant in expired:
        await forget_sign_up(session=session, participant=participant)
    return len(expired)


ConfirmOutcome = Literal["confirmed", "unknown", "used", "expired", "already_enrolled", "licence"]


async def pending_sign_up(
    *, session: AsyncSession, token: str, now: datetime
) -> tuple[Participant | None, ConfirmOutcome]:
    """The sign-up behind a confirmation link, and whether it can be confirmed now."""
    participant = await storage.participant_by_confirm_token(session=session, token_hash=security.digest(token))
    if participant is None:
        return None, "unknown"
    if participant.status != "pending":
        return participant, "used"
    if participant.confirm_expires_at is None or now >= participant.confirm_expires_at:
        return participant, "expired"
    return participant, "confirmed"


async def confirm_sign_up(
    *, session: AsyncSession, token: str, now: datetime
) -> tuple[Participant | None, ConfirmOutcome]:
    """Confirm a sign-up through its mail link: only now does the programme start (participant.enrolled)."""
    participant, outcome = await pending_sign_up(session=session, token=token, now=now)
    if participant is None or outcome != "confirmed":
        return participant, outcome
    organisation = await storage.get_organisation(session=session, org_id=participant.org_id, for_update=True)
    assert organisation is not None and participant.email is not None
    try:
        await _capacity(session=session, organisation=organisation, now=now)
    except Refusal:
        return participant, "licence"
    if await storage.has_running_enrolment(session=session, org_id=organisation.id, email=participant.email):
        return participant, "already_enrolled"
    participant.status = domain.next_status(participant.status, "confirm")
    # The programme starts the day after the confirmation, not the day after the sign-up.
    participant.start_date = domain.default_start_date(now, participant.timezone)
    participant.confirmed_at = participant.updated_at = now
    session.add(participant)
    _publish_contact(session, participant)
    _publish(session, participant, _enrolled_event(participant))
    return participant, "confirmed"


async def change_details(
    *, session: AsyncSession, participant: Participant, update: ParticipantUpdate, now: datetime
) -> bool:
    """Change contact details or mail preferences (participant.details_changed)."""
    if participant.status in ("completed", "stopped", "erased"):
        raise Refusal("conflict", f"This participant's programme has ended ({participant.status}).", field="status")
    changed = False
    for name in sorted(update.model_fields_set):
        value = getattr(update, name)
        if value is None and name != "phone":
            raise Refusal("invalid", f"{name} cannot be cleared.", field=name)
        if getattr(participant, name) != value:
            setattr(participant, name, value)
            changed = True
    if not changed:
        return False
    assert participant.email is not None and participant.first_name is not None
    if "email" in update.model_fields_set and await storage.has_running_enrolment(
        session=session, org_id=participant.org_id, email=participant.email, other_than=participant.id
    ):
        raise Refusal("conflict", "This e-mail address is already enrolled here.", field="email")
    participant.updated_at = now
    session.add(participant)
    _publish_contact(session, participant)  # for a pending sign-up: the confirmation mail's address
    if participant.status != "pending":
        _publish(
            session,
            participant,
            ParticipantDetailsChanged(
                send_time=participant.send_time,
                timezone=participant.timezone,
            ),
        )
    return True


def pause(*, session: AsyncSession, participant: Participant, reason: str | None, now: datetime) -> None:
    """Daily mails stop until resumed (participant.paused)."""
    participant.status = domain.next_status(participant.status, "pause")
    participant.updated_at = now
    session.add(participant)
    _publish(session, participant, ParticipantPaused(reason=reason.strip() if reason else None))


def resume(*, session: AsyncSession, participant: Participant, now: datetime) -> None:
    """Mails continue with the next lesson (participant.resumed)."""
    participant.status = domain.next_status(participant.status, "resume", started=participant.started_at is not None)
    participant.updated_at = now
    session.add(participant)
    _publish(session, participant, ParticipantResumed())


def stop(*, session: AsyncSession, participant: Participant, by: StoppedBy, reason: str | None, now: datetime) -> bool:
    """End the programme early (participant.stopped); False when it had already ended that way."""
    if domain.is_transition_noop(participant.status, "stop"):
        return False
    cleaned = domain.check_stop_reason(by, reason)
    participant.status = domain.next_status(participant.status, "stop")
    participant.stopped_by, participant.stop_reason = by, cleaned
    participant.ended_at = participant.updated_at = now
    session.add(participant)
    _publish(session, participant, ParticipantStopped(by=by, reason=cleaned))
    return True


def complete(*, session: AsyncSession, participant: Participant, now: datetime) -> bool:
    """Record that all lessons were sent (participant.completed); False if nothing to do."""
    if domain.is_transition_noop(participant.status, "complete") or participant.status not in domain.ACTIVE_STATUSES:
        return False
    participant.status = domain.next_status(participant.status, "complete")
    participant.ended_at = participant.updated_at = now
    session.add(participant)
    _publish(session, participant, ParticipantCompleted())
    return True


def mark_started(*, session: AsyncSession, participant: Participant, sent_at: datetime) -> None:
    """The first lesson went out: enrolled becomes active. mail.sent is the event of this
    change, so nothing new is published; a paused participant stays paused."""
    if participant.started_at is None:
        participant.started_at = sent_at
    if participant.status == "enrolled":
        participant.status = domain.next_status(participant.status, "start")
    participant.updated_at = utcnow()
    session.add(participant)


async def change_coach(*, session: AsyncSession, participant: Participant, coach_id: UUID, now: datetime) -> bool:
    """Give the participant another coach of the organisation (participant.coach_changed)."""
    coaches = await storage.active_participants_per_coach(session=session, org_id=participant.org_id)
    if coach_id not in coaches:
        raise Refusal("invalid", "This coach does not work for this organisation.", field="coach_id")
    if participant.status not in (*domain.ACTIVE_STATUSES, "pending"):
        raise Refusal("conflict", f"This participant's programme has ended ({participant.status}).", field="status")
    if participant.coach_id == coach_id:
        return False
    participant.coach_id = coach_id
    participant.updated_at = now
    session.add(participant)
    if participant.status != "pending":
        _publish(session, participant, ParticipantCoachChanged(coach_id=coach_id))
    return True


def erase(*, session: AsyncSession, participant: Participant, now: datetime) -> None:
    """The right to be forgotten: personal fields go; an anonymous row stays for the counts.
    participant.erased tells every other service to remove its copy."""
    participant.status = domain.next_status(participant.status, "erase")
    participant.first_name = participant.email = participant.phone = None
    participant.stop_reason = participant.confirm_token_hash = None
    participant.erased_at = participant.updated_at = now
    session.add(participant)
    _publish(session, participant, ParticipantErased())
    _erase_contact(session, participant)


async def republish_contacts(*, session: AsyncSession, batch: int = 1000) -> int:
    """Put every current participant's and staff member's contact details on meer.contact again
    (once, when moving to the contact topic; or to rebuild it). Commits per batch; returns how many."""
    published = 0
    last = UUID(int=0)
    while participants := list(
        (
            await session.execute(
                select(Participant)
                .where(col(Participant.email).is_not(None), col(Participant.id) > last)
                .order_by(col(Participant.id))
                .limit(batch)
            )
        )
        .scalars()
        .all()
    ):
        for participant in participants:
            _publish_contact(session, participant)
        await session.commit()
        published, last = published + len(participants), participants[-1].id
    last = UUID(int=0)
    while staff := list(
        (
            await session.execute(
                select(StaffMember)
                .where(col(StaffMember.email).is_not(None), col(StaffMember.id) > last)
                .order_by(col(StaffMember.id))
                .limit(batch)
            )
        )
        .scalars()
        .all()
    ):
        for member in staff:
            details = ContactDetailsSet(person_id=member.id, kind="staff", name=member.name or "", email=member.email)
            add_to_outbox(session, Envelope.wrap(details, org_id=member.org_id))
        await session.commit()
        published, last = published + len(staff), staff[-1].id
    return published


# --- CSV import ---------------------------------------------------------------------------------------

ImportMode = Literal["valid_rows", "all_or_nothing"]
Progress = Callable[[int], None]


async def import_context(*, session: AsyncSession, organisation: Organisation, now: datetime) -> domain.ImportContext:
    """What the row rules need; refuses the whole import when the licence does not run."""
    return domain.ImportContext(
        now=now,
        variants=tuple(organisation.variants),
        coaches=await storage.coach_lookup(session=session, org_id=organisation.id),
        active_per_coach=await storage.active_participants_per_coach(session=session, org_id=organisation.id),
        running_emails=await storage.running_emails(session=session, org_id=organisation.id),
        capacity=await _capacity(session=session, organisation=organisation, now=now),
    )


async def write_import(
    *,
    session: AsyncSession,
    organisation: Organisation,
    accepted: Iterable[domain.AcceptedRow],
    now: datetime,
    progress: Progress | None = None,
    chunk: int = 1000,
) -> list[ImportedRowPublic]:
    """Insert the accepted rows with one participant.enrolled each, in the caller's transaction."""
    imported: list[ImportedRowPublic] = []
    batch: list[dict[str, object]] = []

    async def flush() -> None:
        await storage.insert_participants(session=session, rows=batch)
        if progress is not None:
            progress(len(batch))
        batch.clear()

    # Plain rows and payloads, not ORM objects: ten thousand of those cost seconds.
    for row in accepted:
        participant_id, fields = uuid4(), row.fields
        batch.append(
            {
                "id": participant_id,
                "org_id": organisation.id,
                "coach_id": row.coach_id,
                "first_name": fields.first_name,
                "email": fields.email,
                "phone": fields.phone,
                "start_date": row.start_date,
                "send_time": fields.send_time,
                "timezone": fields.timezone,
                "variant": row.variant,
                "status": "enrolled",
                "source": "csv",
                "created_at": now,
                "updated_at": now,
            }
        )
        contact = _contact_event(participant_id, fields.first_name, fields.email, fields.phone)
        add_to_outbox(
            session, Envelope.wrap(contact, org_id=organisation.id, participant_id=participant_id, occurred_at=now)
        )
        enrolled = ParticipantEnrolled(
            coach_id=row.coach_id,
            start_date=row.start_date,
            send_time=fields.send_time,
            timezone=fields.timezone,
            variant=row.variant,
        )
        add_to_outbox(
            session, Envelope.wrap(enrolled, org_id=organisation.id, participant_id=participant_id, occurred_at=now)
        )
        imported.append(ImportedRowPublic(row=row.row, participant_id=participant_id))
        if len(batch) >= chunk:
            await flush()
    if batch:
        await flush()
    return imported


def import_report(
    *,
    table: domain.CsvTable,
    plan: domain.ImportPlan,
    imported: list[ImportedRowPublic],
    mode: ImportMode,
    dry_run: bool,
) -> ImportReport:
    """The report of an import: imported rows, rejected rows with reasons."""
    rejected = sorted([*table.bad_rows, *plan.rejected], key=lambda rejection: rejection.row)
    return ImportReport(
        mode=mode,
        dry_run=dry_run,
        rows=len(table.rows) + len(table.bad_rows),
        imported=imported,
        rejected=[
            RejectedRowPublic(
                row=rejection.row, problems=[RowProblem(field=p.field, reason=p.reason) for p in rejection.problems]
            )
            for rejection in rejected
        ],
        ignored_columns=list(table.ignored_columns),
        would_import=len(plan.accepted),
    )


def should_write(table: domain.CsvTable, plan: domain.ImportPlan, mode: ImportMode, dry_run: bool) -> bool:
    """valid_rows: every valid row goes in; all_or_nothing: only when no row was rejected."""
    if dry_run:
        return False
    return mode == "valid_rows" or not (plan.rejected or table.bad_rows)


async def import_csv(
    *,
    session: AsyncSession,
    organisation: Organisation,
    data: bytes,
    mode: ImportMode,
    dry_run: bool,
    now: datetime,
) -> ImportReport:
    """Read, check every row, then insert the rows that may go in, in one transaction.

    Refuses (invalid, on `file`) a file that cannot be read at all, and (conflict) an
    import when the licence does not run; then nothing is written.
    """
    try:
        table = domain.read_csv(data)
    except domain.CsvFileError as error:
        raise Refusal("invalid", str(error), field="file") from None
    context = await import_context(session=session, organisation=organisation, now=now)
    plan = domain.plan_import(table.rows, context)
    imported: list[ImportedRowPublic] = []
    if should_write(table, plan, mode, dry_run):
        imported = await write_import(session=session, organisation=organisation, accepted=plan.accepted, now=now)
    return import_report(table=table, plan=plan, imported=imported, mode=mode, dry_run=dry_run)
