"""Staff accounts: invitations, offboarding (deactivate, reactivate, remove), passwords and throttled login."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from sqlmodel.ext.asyncio.session import AsyncSession

from services.enrolment import domain, login_limits, security, storage
from services.enrolment.domain import StaffRole
from services.enrolment.settings import EnrolmentSettings
from services.enrolment.tables import Invitation, Organisation, StaffMember
from services.enrolment.use_cases.organisations import publish_org
from shared.errors import Refusal
from shared.events import CoachAdded, ContactDetailsSet, Envelope, StaffAccessChanged, StaffInvited, Topic
from shared.mailer_links import link_keys, seal_link
from shared.outbox import add_to_outbox, add_tombstone_to_outbox
from shared.staff_tokens import StaffClaims


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
                role=domain.staff_role(staff.role),
                partner_organisation=staff.partner_organisation,
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
    partner_organisation: str | None = None,
) -> tuple[StaffMember, datetime]:
    """A new org admin, coach or partner (coach.added for a coach) and their invitation (staff.invited)."""
    partner_organisation = domain.check_partner_organisation(role, partner_organisation)
    if await storage.get_staff_by_email(session=session, email=email) is not None:
        raise Refusal("conflict", "An account with this e-mail address already exists.", field="email")
    staff = StaffMember(
        org_id=organisation.id,
        role=role,
        partner_organisation=partner_organisation,
        name=name,
        email=email,
        created_at=now,
    )
    session.add(staff)
    await session.flush()
    add_to_outbox(
        session,
        Envelope.wrap(
            ContactDetailsSet(person_id=staff.id, kind="staff", name=name, email=email), org_id=organisation.id
        ),
    )
    if role == "coach":
        publish_org(session, organisation, CoachAdded(coach_id=staff.id))
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
                role=domain.staff_role(staff.role),
                token_version=staff.token_version,
                active=staff.active,
                removed=removed,
                partner_organisation=staff.partner_organisation,
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
    policy: login_limits.LoginPolicy,
) -> LoginOutcome:
    """Check a login against the limits of its source, subnet, account+source and account
    (or, for a browser that logged in to this account before, its own device limit), and
    count it; the caller commits either way, so failures are counted."""
    email_key = security.email_digest(email)
    device_id = keys.device_id(device_token, email_key)
    scopes = login_limits.login_limit_keys(email_key=email_key, source=source, device_id=device_id)
    keyed = {scope: security.digest(key) for scope, key in scopes.items()}
    rows = await storage.login_limits(session=session, keys=keyed.values())
    states = {
        scope: login_limits.LimitState(
            window_started_at=rows[key].window_started_at,
            failures=rows[key].failures,
            blocked_until=rows[key].blocked_until,
        )
        for scope, key in keyed.items()
    }
    until = login_limits.login_blocked(states.values(), now)
    if until is not None:
        when = until.isoformat(timespec="seconds")
        return LoginOutcome(status=429, message=f"Too many failed logins; try again after {when}.", retry_at=until)
    staff = await storage.get_staff_by_email(session=session, email=email.strip().lower())
    password_hash = staff.password_hash if staff else None
    # argon2 takes tens of milliseconds of CPU on purpose: keep the event loop free meanwhile.
    ok = await asyncio.to_thread(security.check_password, password_hash, password)
    if ok and staff is not None and password_hash is not None and staff.active:
        states = {scope: login_limits.after_login_success(state, scope) for scope, state in states.items()}
        if security.needs_rehash(password_hash):
            staff.password_hash = await asyncio.to_thread(security.hash_password, password)
            session.add(staff)
        outcome = LoginOutcome(
            claims=StaffClaims(
                staff_id=staff.id,
                role=domain.staff_role(staff.role),
                org_id=staff.org_id,
                coach_id=staff.id if staff.role == "coach" else None,
                token_version=staff.token_version,
            ),
            email_key=email_key,
        )
    else:
        states = {scope: login_limits.after_login_failure(state, now, scope, policy) for scope, state in states.items()}
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
