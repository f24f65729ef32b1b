"""Staff of an organisation: invitations, the list of staff and coaches, and offboarding."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter
from sqlmodel.ext.asyncio.session import AsyncSession

from services.enrolment import domain, storage
from services.enrolment.api.common import (
    Caller,
    SessionDep,
    SettingsDep,
    allow,
    commit_or_conflict,
    errors,
    organisation_or_404,
    staff_public,
)
from services.enrolment.schemas import CoachCreate, CoachPublic, InvitationSent, Page, StaffCreate, StaffPublic
from services.enrolment.tables import StaffMember
from services.enrolment.use_cases import staff_accounts
from shared.db import utcnow
from shared.errors import Refusal
from shared.http import Limit, Offset

router = APIRouter(prefix="/api")


@router.post(
    "/organisations/{org_id}/staff", status_code=201, tags=["staff"], responses=errors(401, 403, 404, 409, 422)
)
async def invite_staff(
    org_id: UUID, body: StaffCreate, caller: Caller, session: SessionDep, settings: SettingsDep
) -> StaffPublic:
    """Invite an organisation admin, a coach or a partner signaller (with partner_organisation);
    they get a mail with a one-time set-password link. A partner may only log in and submit
    signals in coaching: every other enrolment endpoint refuses a partner token."""
    allow(caller, org_id, "org_admin")
    organisation = await organisation_or_404(session, org_id)
    staff, _ = await staff_accounts.invite_staff(
        session=session,
        organisation=organisation,
        name=body.name,
        email=body.email,
        role=body.role,
        partner_organisation=body.partner_organisation,
        settings=settings,
        now=utcnow(),
    )
    await commit_or_conflict(session, "An account with this e-mail address already exists.", "email")
    return staff_public(staff)


@router.get("/organisations/{org_id}/staff", tags=["staff"], responses=errors(401, 403, 404, 422))
async def list_staff(
    org_id: UUID,
    caller: Caller,
    session: SessionDep,
    role: domain.StaffRole | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[StaffPublic]:
    """The organisation's admins, coaches and partners (filter with role)."""
    allow(caller, org_id, "org_admin")
    await organisation_or_404(session, org_id)
    items, total = await storage.list_staff(session=session, org_id=org_id, role=role, limit=limit, offset=offset)
    return Page(items=[staff_public(s) for s in items], total=total, limit=limit, offset=offset)


@router.post(
    "/organisations/{org_id}/staff/{staff_id}/invitation",
    status_code=201,
    tags=["staff"],
    responses=errors(401, 403, 404, 409),
)
async def resend_invitation(
    org_id: UUID, staff_id: UUID, caller: Caller, session: SessionDep, settings: SettingsDep
) -> InvitationSent:
    """Send a new set-password link (also to reset a forgotten password); older links stop working."""
    allow(caller, org_id, "org_admin")
    staff = await staff_or_404(session, org_id, staff_id)
    expires_at = await staff_accounts.resend_invitation(session=session, staff=staff, settings=settings, now=utcnow())
    await session.commit()
    return InvitationSent(staff_id=staff.id, expires_at=expires_at)


async def staff_or_404(session: AsyncSession, org_id: UUID, staff_id: UUID) -> StaffMember:
    """A staff member of this organisation, locked until commit, or a 404. The organisation
    is locked first, so two admins cannot deactivate each other at the same moment."""
    await organisation_or_404(session, org_id, for_update=True)
    staff = await storage.get_staff(session=session, staff_id=staff_id, for_update=True)
    if staff is None or staff.org_id != org_id:
        raise Refusal("not_found", f"Staff member {staff_id} does not exist in this organisation.")
    return staff


StaffPath = "/organisations/{org_id}/staff/{staff_id}"


@router.post(f"{StaffPath}/deactivate", tags=["staff"], responses=errors(401, 403, 404, 409))
async def deactivate_staff(org_id: UUID, staff_id: UUID, caller: Caller, session: SessionDep) -> StaffPublic:
    """Offboard a coach or admin: no login any more, and every token of theirs is refused
    from now on, here and in coaching and the mailer. A coach's running participants are
    listed under GET …/participants-to-reassign until each has another coach."""
    allow(caller, org_id, "org_admin")
    staff = await staff_or_404(session, org_id, staff_id)
    await staff_accounts.deactivate_staff(session=session, staff=staff, by_staff_id=caller.staff_id, now=utcnow())
    await session.commit()
    return staff_public(staff)


@router.post(f"{StaffPath}/reactivate", tags=["staff"], responses=errors(401, 403, 404, 409))
async def reactivate_staff(org_id: UUID, staff_id: UUID, caller: Caller, session: SessionDep) -> StaffPublic:
    """Undo a deactivation: the member logs in again with their own password."""
    allow(caller, org_id, "org_admin")
    staff = await staff_or_404(session, org_id, staff_id)
    await staff_accounts.reactivate_staff(session=session, staff=staff)
    await session.commit()
    return staff_public(staff)


@router.delete(StaffPath, tags=["staff"], responses=errors(401, 403, 404, 409))
async def remove_staff(org_id: UUID, staff_id: UUID, caller: Caller, session: SessionDep) -> StaffPublic:
    """Remove a member for good: deactivated, and name, address and password erased; the id
    stays, so calls and plans they logged keep their author."""
    allow(caller, org_id, "org_admin")
    staff = await staff_or_404(session, org_id, staff_id)
    await staff_accounts.remove_staff(session=session, staff=staff, by_staff_id=caller.staff_id, now=utcnow())
    await session.commit()
    return staff_public(staff)


@router.post(
    "/organisations/{org_id}/coaches", status_code=201, tags=["staff"], responses=errors(401, 403, 404, 409, 422)
)
async def add_coach(
    org_id: UUID, body: CoachCreate, caller: Caller, session: SessionDep, settings: SettingsDep
) -> CoachPublic:
    """Add a coach (the same as inviting staff with role coach)."""
    allow(caller, org_id, "org_admin")
    organisation = await organisation_or_404(session, org_id)
    staff, _ = await staff_accounts.invite_staff(
        session=session,
        organisation=organisation,
        name=body.name,
        email=body.email,
        role="coach",
        settings=settings,
        now=utcnow(),
    )
    await commit_or_conflict(session, "A coach with this e-mail address already exists.", "email")
    return CoachPublic.model_validate(staff)


@router.get("/organisations/{org_id}/coaches", tags=["staff"], responses=errors(401, 403, 404, 422))
async def list_coaches(
    org_id: UUID, caller: Caller, session: SessionDep, limit: Limit = 50, offset: Offset = 0
) -> Page[CoachPublic]:
    """The organisation's active coaches, to choose one when enrolling."""
    allow(caller, org_id, "org_admin", "coach", "api_key")
    await organisation_or_404(session, org_id)
    items, total = await storage.list_staff(
        session=session, org_id=org_id, role="coach", limit=limit, offset=offset, active_only=True
    )
    return Page(items=[CoachPublic.model_validate(s) for s in items], total=total, limit=limit, offset=offset)
