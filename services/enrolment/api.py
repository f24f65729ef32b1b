"""Enrolment's JSON API: thin routes — who is asking, validate, apply a use case, commit.

Who may do what: the licensor (bearer secret) everything; an organisation admin (staff
token) everything of their own organisation except the licence; a coach reads their
organisation and their own participants and may pause, resume or stop them; an
organisation API key (X-Api-Key) enrols and reads participants of its organisation.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from services.enrolment import domain, exports, security, storage
from services.enrolment.domain import ParticipantFields
from services.enrolment.schemas import (
    ApiKeyCreated,
    ApiKeyPublic,
    BrandingPublic,
    BrandingUpdate,
    CoachChange,
    CoachCreate,
    CoachPublic,
    ImportReport,
    InvitationSent,
    LicencePublic,
    LicenceUpdate,
    LoginRequest,
    Me,
    OrganisationCreate,
    OrganisationPublic,
    Page,
    ParticipantCreate,
    ParticipantPublic,
    ParticipantUpdate,
    PauseRequest,
    SetPasswordRequest,
    SlugUpdate,
    StaffCreate,
    StaffPublic,
    StopRequest,
    TokenResponse,
)
from services.enrolment.settings import EnrolmentSettings
from services.enrolment.tables import Organisation, Participant, StaffMember
from services.enrolment.use_cases import csv_import, organisations, participants, staff_accounts
from shared.db import utcnow
from shared.errors import Refusal
from shared.http import Limit, Offset
from shared.runtime import Runtime, api_error, error_responses
from shared.staff_tokens import InvalidStaffTokenError, StaffAccess, token_allowed

router = APIRouter(prefix="/api")
public_router = APIRouter()
bearer = HTTPBearer(auto_error=False, description="The licensor secret or a staff access token.")
api_key_header = APIKeyHeader(name="X-Api-Key", auto_error=False, description="An organisation API key.")

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {
        401: "No valid credentials.",
        403: "Valid credentials, but not for this organisation or action.",
        404: "Not found (or not in this organisation).",
        409: "Refused by the current state: licence full or expired, duplicate, wrong status.",
        410: "The link was already used or has expired.",
        413: "The upload is too large.",
        415: "The upload is not a PNG or JPEG image.",
        422: "Invalid input; `fields` names each field at fault.",
        429: "Too many login attempts, or the account is locked; Retry-After says for how long.",
        503: "Staff login is not configured on this server.",
    }
    # Every route validates its input, so 422 (in our error shape, not FastAPI's) is always possible.
    return error_responses({status: described[status] for status in sorted({*statuses, 422})})


def runtime(request: Request) -> Runtime:
    """The service's shared adapters."""
    found: Runtime = request.app.state.runtime
    return found


def settings_of(request: Request) -> EnrolmentSettings:
    """The enrolment settings of this process."""
    settings = runtime(request).settings
    assert isinstance(settings, EnrolmentSettings)
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One database session per request; leaving without commit rolls back."""
    async with runtime(request).database.session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
SettingsDep = Annotated[EnrolmentSettings, Depends(settings_of)]

# --- who is asking ----------------------------------------------------------------------------------

Kind = Literal["licensor", "org_admin", "coach", "api_key"]


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    kind: Kind
    org_id: UUID | None = None
    staff_id: UUID | None = None


def _unauthorised(message: str) -> Exception:
    error = api_error(401, message)
    error.headers = {"WWW-Authenticate": "Bearer"}
    return error


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    session: SessionDep,
    x_api_key: Annotated[str | None, Depends(api_key_header)],
) -> Principal:
    """The caller, from a licensor secret, a staff token or an organisation API key.
    (The request's own session: FastAPI hands the route the same one.)"""
    settings = settings_of(request)
    if x_api_key is not None:
        # In the request's own session: no second pool checkout, ping and transaction per call.
        org_id = await storage.org_of_api_key(session=session, key_hash=security.digest(x_api_key))
        if org_id is None:
            raise _unauthorised("The API key is not valid (it may have been rotated).")
        return Principal(kind="api_key", org_id=org_id)
    if credentials is None:
        raise _unauthorised("Credentials are required: a bearer token or an X-Api-Key header.")
    if security.secrets_equal(credentials.credentials, settings.licensor_secret):
        return Principal(kind="licensor")
    try:
        claims = request.app.state.token_keys.verify(credentials.credentials)
    except InvalidStaffTokenError:
        raise _unauthorised("The access token is not valid or has expired; log in again.") from None
    except security.KeysMissingError:
        raise _unauthorised("Staff tokens cannot be checked: the public key is not configured.") from None
    # One primary-key lookup: a signature alone does not survive logout, reset or offboarding.
    staff = await storage.get_staff(session=session, staff_id=claims.staff_id)
    access = None if staff is None else StaffAccess(token_version=staff.token_version, active=staff.active)
    if staff is None or staff.org_id != claims.org_id or not token_allowed(claims, access):
        raise _unauthorised("This session has ended (logged out, password reset or account deactivated); log in again.")
    return Principal(kind=claims.role, org_id=claims.org_id, staff_id=claims.staff_id)


Caller = Annotated[Principal, Depends(principal)]


def allow(caller: Principal, org_id: UUID | None, *kinds: Kind) -> None:
    """The licensor may do everything; others only the listed kinds, in their own organisation."""
    if caller.kind == "licensor":
        return
    if caller.kind not in kinds:
        raise Refusal("forbidden", f"This is not allowed with {caller.kind.replace('_', ' ')} credentials.")
    if org_id is None or caller.org_id != org_id:
        raise Refusal("forbidden", "You have no access to this organisation.")


async def organisation_or_404(
    session: AsyncSession, org_id: UUID, *, for_update: bool = False, key_share: bool = False
) -> Organisation:
    """The organisation, or a 404 in the error shape."""
    organisation = await storage.get_organisation(
        session=session, org_id=org_id, for_update=for_update, key_share=key_share
    )
    if organisation is None:
        raise Refusal("not_found", f"Organisation {org_id} does not exist.")
    return organisation


async def participant_or_404(
    session: AsyncSession, caller: Principal, org_id: UUID, participant_id: UUID, *, for_update: bool = False
) -> Participant:
    """The participant of this organisation (and, for a coach, of this coach), or 404/403."""
    participant = await storage.get_participant(session=session, participant_id=participant_id, for_update=for_update)
    if participant is None or participant.org_id != org_id:
        raise Refusal("not_found", f"Participant {participant_id} does not exist in this organisation.")
    if caller.kind == "coach" and participant.coach_id != caller.staff_id:
        raise Refusal("forbidden", "This participant is not one of yours.")
    return participant


async def commit_or_conflict(session: AsyncSession, message: str, field: str) -> None:
    """Commit; a unique index that a parallel request won becomes a 409 on `field`."""
    try:
        await session.commit()
    except IntegrityError:
        # A parallel request took the same unique value first; nothing of this one is kept.
        await session.rollback()
        raise Refusal("conflict", message, field=field) from None


def _branding_public(organisation: Organisation, base_url: str) -> BrandingPublic:
    return BrandingPublic(
        **organisations.branding_of(organisation, base_url).model_dump(),
        text_colour=domain.readable_text_colour(organisation.brand_colour),
    )


def _staff_public(staff: StaffMember) -> StaffPublic:
    return StaffPublic.model_validate(
        {**staff.model_dump(), "has_password": staff.password_hash is not None, "active": staff.active}
    )


# --- login and staff accounts -------------------------------------------------------------------------


DEVICE_COOKIE = "meer_device"


def login_policy(settings: EnrolmentSettings) -> domain.LoginPolicy:
    """The login limits of the settings."""
    return domain.LoginPolicy(
        failures_per_source=settings.login_failures_per_source,
        failures_per_subnet=settings.login_failures_per_subnet,
        failures_per_account_source=settings.login_failures_before_lock,
        failures_per_account=settings.login_failures_per_account,
        failures_per_device=settings.login_failures_before_lock,
        longest_delay=timedelta(minutes=settings.login_lock_minutes),
    )


def client_address(request: Request) -> str:
    """The client's address as uvicorn determined it: X-Forwarded-For counts only from the
    trusted proxies (uvicorn's forwarded_allow_ips; coaching's login form forwards its client's)."""
    return request.client.host if request.client else "unknown"


@router.post("/auth/login", tags=["auth"], responses=_errors(401, 429, 503))
async def login(
    body: LoginRequest, request: Request, response: Response, session: SessionDep, settings: SettingsDep
) -> TokenResponse:
    """Log in with e-mail address and password; returns a short-lived staff access token.

    Failed logins are limited per client address, per network, per account and address,
    and per account; a browser that logged in before (device token or cookie) is held only
    to its own limit, so others' failures cannot lock it out."""
    now = utcnow()
    keys: security.TokenKeys = request.app.state.token_keys
    outcome = await staff_accounts.login(
        session=session,
        email=body.email,
        password=body.password,
        source=client_address(request),
        device_token=body.device_token or request.cookies.get(DEVICE_COOKIE),
        keys=keys,
        now=now,
        policy=login_policy(settings),
    )
    await session.commit()
    if outcome.claims is None:
        error = api_error(outcome.status, outcome.message)
        if outcome.retry_at is not None:
            error.headers = {"Retry-After": str(max(1, int((outcome.retry_at - now).total_seconds()) + 1))}
        raise error
    try:
        token = keys.issue(outcome.claims, timedelta(seconds=settings.staff_token_ttl_s))
        device_ttl = timedelta(days=settings.device_cookie_days)
        device_token = keys.issue_device(outcome.email_key, device_ttl)
    except security.KeysMissingError:
        raise api_error(503, "Staff login is not configured: the signing key is missing.") from None
    response.set_cookie(
        DEVICE_COOKIE,
        device_token,
        max_age=int(device_ttl.total_seconds()),
        path="/api/auth",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return TokenResponse(access_token=token, expires_in=settings.staff_token_ttl_s, device_token=device_token)


@router.post("/auth/logout", status_code=204, tags=["auth"], responses=_errors(401, 403))
async def logout(caller: Caller, session: SessionDep) -> Response:
    """End every session of the logged-in staff member: their tokens stop working here and,
    through staff.access_changed, in coaching and the mailer."""
    if caller.staff_id is None:
        raise Refusal("forbidden", "Only a staff token can be logged out.")
    staff = await storage.get_staff(session=session, staff_id=caller.staff_id, for_update=True)
    if staff is None:
        raise _unauthorised("This account no longer exists.")
    staff_accounts.revoke_sessions(session=session, staff=staff)
    await session.commit()
    return Response(status_code=204)


@router.post("/auth/set-password", status_code=204, tags=["auth"], responses=_errors(404, 410, 422))
async def set_password(body: SetPasswordRequest, session: SessionDep) -> Response:
    """Set the password with the one-time token from an invitation link."""
    await staff_accounts.set_password(session=session, token=body.token, password=body.password, now=utcnow())
    await session.commit()
    return Response(status_code=204)


@router.get("/auth/me", tags=["auth"], responses=_errors(401, 403))
async def me(caller: Caller, session: SessionDep) -> Me:
    """The logged-in staff member."""
    if caller.staff_id is None:
        raise Refusal("forbidden", "Only a staff token belongs to a person.")
    staff = await storage.get_staff(session=session, staff_id=caller.staff_id)
    if staff is None:
        raise api_error(401, "This account no longer exists.")
    return Me(
        staff_id=staff.id,
        org_id=staff.org_id,
        role="coach" if staff.role == "coach" else "org_admin",
        coach_id=staff.id if staff.role == "coach" else None,
        name=staff.name or "",
        email=staff.email or "",
    )


# --- organisations and licences -----------------------------------------------------------------------


@router.post("/organisations", status_code=201, tags=["organisations"], responses=_errors(401, 403, 422))
async def license_organisation(
    body: OrganisationCreate, caller: Caller, session: SessionDep, settings: SettingsDep
) -> OrganisationPublic:
    """License an organisation (licensor only); it can then invite staff and enrol participants."""
    allow(caller, None)
    organisation = organisations.license_organisation(session=session, body=body, base_url=settings.enrolment_base_url)
    await session.commit()
    return organisations.organisation_public(organisation, settings.enrolment_base_url)


@router.get("/organisations", tags=["organisations"], responses=_errors(401, 403, 422))
async def list_organisations(
    caller: Caller, session: SessionDep, settings: SettingsDep, limit: Limit = 50, offset: Offset = 0
) -> Page[OrganisationPublic]:
    """Every licensed organisation (licensor only)."""
    allow(caller, None)
    items, total = await storage.list_organisations(session=session, limit=limit, offset=offset)
    return Page(
        items=[organisations.organisation_public(o, settings.enrolment_base_url) for o in items],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/organisations/{org_id}", tags=["organisations"], responses=_errors(401, 403, 404))
async def get_organisation(
    org_id: UUID, caller: Caller, session: SessionDep, settings: SettingsDep
) -> OrganisationPublic:
    """The organisation's name, branding and licence."""
    allow(caller, org_id, "org_admin", "coach", "api_key")
    return organisations.organisation_public(await organisation_or_404(session, org_id), settings.enrolment_base_url)


@router.get("/organisations/{org_id}/licence", tags=["organisations"], responses=_errors(401, 403, 404))
async def licence_use(org_id: UUID, caller: Caller, session: SessionDep) -> LicencePublic:
    """The licence period and its use: active participants out of the maximum."""
    allow(caller, org_id, "org_admin", "api_key")
    organisation = await organisation_or_404(session, org_id)
    return await organisations.licence_use(session=session, organisation=organisation, now=utcnow())


@router.patch("/organisations/{org_id}/licence", tags=["organisations"], responses=_errors(401, 403, 404, 422))
async def change_licence(org_id: UUID, body: LicenceUpdate, caller: Caller, session: SessionDep) -> LicencePublic:
    """Change the licence period, size or variants (licensor only). Running participants finish."""
    allow(caller, org_id)
    organisation = await organisation_or_404(session, org_id, for_update=True)
    now = utcnow()
    organisations.change_licence(session=session, organisation=organisation, update=body, now=now)
    await session.commit()
    return await organisations.licence_use(session=session, organisation=organisation, now=now)


@router.get("/organisations/{org_id}/branding", tags=["branding"], responses=_errors(401, 403, 404))
async def get_branding(org_id: UUID, caller: Caller, session: SessionDep, settings: SettingsDep) -> BrandingPublic:
    """What the organisation's mails and pages show."""
    allow(caller, org_id, "org_admin", "coach")
    return _branding_public(await organisation_or_404(session, org_id), settings.enrolment_base_url)


@router.patch("/organisations/{org_id}/branding", tags=["branding"], responses=_errors(401, 403, 404, 422))
async def update_branding(
    org_id: UUID, body: BrandingUpdate, caller: Caller, session: SessionDep, settings: SettingsDep
) -> BrandingPublic:
    """Change what the organisation's mails and pages show; the next mail carries it."""
    allow(caller, org_id, "org_admin")
    organisation = await organisation_or_404(session, org_id, for_update=True)
    organisations.update_branding(
        session=session, organisation=organisation, update=body, base_url=settings.enrolment_base_url, now=utcnow()
    )
    await session.commit()
    return _branding_public(organisation, settings.enrolment_base_url)


@router.put("/organisations/{org_id}/slug", tags=["branding"], responses=_errors(401, 403, 404, 409, 422))
async def set_slug(
    org_id: UUID, body: SlugUpdate, caller: Caller, session: SessionDep, settings: SettingsDep
) -> OrganisationPublic:
    """Choose the short word of the sign-up address (…/aanmelden/<slug>) used on the flyer, poster and
    QR code; the old address with the organisation's id keeps working."""
    allow(caller, org_id, "org_admin")
    organisation = await organisation_or_404(session, org_id, for_update=True)
    await organisations.set_slug(session=session, organisation=organisation, slug=body.slug)
    await commit_or_conflict(session, f"The slug '{body.slug}' is taken by another organisation.", "slug")
    return organisations.organisation_public(organisation, settings.enrolment_base_url)


@router.put("/organisations/{org_id}/logo", tags=["branding"], responses=_errors(401, 403, 404, 413, 415, 422))
async def upload_logo(
    org_id: UUID,
    caller: Caller,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="A PNG or JPEG image.")],
) -> BrandingPublic:
    """Upload the logo (PNG or JPEG; size and dimensions are checked; no SVG)."""
    allow(caller, org_id, "org_admin")
    data = await file.read(settings.logo_max_bytes + 1)
    organisation = await organisation_or_404(session, org_id, for_update=True)
    await organisations.set_logo(session=session, organisation=organisation, data=data, settings=settings, now=utcnow())
    await session.commit()
    return _branding_public(organisation, settings.enrolment_base_url)


@router.delete("/organisations/{org_id}/logo", tags=["branding"], responses=_errors(401, 403, 404))
async def remove_logo(org_id: UUID, caller: Caller, session: SessionDep, settings: SettingsDep) -> BrandingPublic:
    """Mails go on without a logo. Earlier logo URLs keep working for mails already sent."""
    allow(caller, org_id, "org_admin")
    organisation = await organisation_or_404(session, org_id, for_update=True)
    organisations.remove_logo(
        session=session, organisation=organisation, base_url=settings.enrolment_base_url, now=utcnow()
    )
    await session.commit()
    return _branding_public(organisation, settings.enrolment_base_url)


@public_router.get(
    "/logos/{org_id}/{filename}",
    tags=["branding"],
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}, **_errors(404)},
)
async def logo(org_id: UUID, filename: str, session: SessionDep) -> Response:
    """An organisation's logo, public (mails show it). The name is the image's SHA-256."""
    sha256, _, extension = filename.partition(".")
    if not _SHA256.fullmatch(sha256) or extension not in ("png", "jpg", "jpeg"):
        raise Refusal("not_found", "There is no such logo.")
    found = await storage.get_logo(session=session, org_id=org_id, sha256=sha256.lower())
    if found is None:
        raise Refusal("not_found", "There is no such logo.")
    return Response(
        found.data,
        media_type=f"image/{found.format}",
        headers={"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/organisations/{org_id}/api-key", tags=["api keys"], responses=_errors(401, 403, 404))
async def get_api_key(org_id: UUID, caller: Caller, session: SessionDep) -> ApiKeyPublic:
    """Which key is current (its prefix), never the key itself."""
    allow(caller, org_id, "org_admin")
    await organisation_or_404(session, org_id)
    current = await storage.current_api_key(session=session, org_id=org_id)
    if current is None:
        raise Refusal("not_found", "This organisation has no API key.")
    return ApiKeyPublic(prefix=current.prefix, created_at=current.created_at)


@router.post("/organisations/{org_id}/api-key", status_code=201, tags=["api keys"], responses=_errors(401, 403, 404))
async def rotate_api_key(org_id: UUID, caller: Caller, session: SessionDep) -> ApiKeyCreated:
    """Create a new API key, shown only in this answer; the previous key stops working."""
    allow(caller, org_id, "org_admin")
    organisation = await organisation_or_404(session, org_id, for_update=True)
    key, row = await organisations.rotate_api_key(session=session, organisation=organisation, now=utcnow())
    await session.commit()
    return ApiKeyCreated(api_key=key, prefix=row.prefix, created_at=row.created_at)


@router.delete("/organisations/{org_id}/api-key", status_code=204, tags=["api keys"], responses=_errors(401, 403, 404))
async def revoke_api_key(org_id: UUID, caller: Caller, session: SessionDep) -> Response:
    """Revoke the API key; systems using it are refused from now on."""
    allow(caller, org_id, "org_admin")
    await organisation_or_404(session, org_id, for_update=True)
    await storage.revoke_api_keys(session=session, org_id=org_id, now=utcnow())
    await session.commit()
    return Response(status_code=204)


# --- staff -------------------------------------------------------------------------------------------------


@router.post(
    "/organisations/{org_id}/staff", status_code=201, tags=["staff"], responses=_errors(401, 403, 404, 409, 422)
)
async def invite_staff(
    org_id: UUID, body: StaffCreate, caller: Caller, session: SessionDep, settings: SettingsDep
) -> StaffPublic:
    """Invite an organisation admin or a coach; they get a mail with a one-time set-password link."""
    allow(caller, org_id, "org_admin")
    organisation = await organisation_or_404(session, org_id)
    staff, _ = await staff_accounts.invite_staff(
        session=session,
        organisation=organisation,
        name=body.name,
        email=body.email,
        role=body.role,
        settings=settings,
        now=utcnow(),
    )
    await commit_or_conflict(session, "An account with this e-mail address already exists.", "email")
    return _staff_public(staff)


@router.get("/organisations/{org_id}/staff", tags=["staff"], responses=_errors(401, 403, 404, 422))
async def list_staff(
    org_id: UUID,
    caller: Caller,
    session: SessionDep,
    role: domain.StaffRole | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[StaffPublic]:
    """The organisation's admins and coaches (filter with role)."""
    allow(caller, org_id, "org_admin")
    await organisation_or_404(session, org_id)
    items, total = await storage.list_staff(session=session, org_id=org_id, role=role, limit=limit, offset=offset)
    return Page(items=[_staff_public(s) for s in items], total=total, limit=limit, offset=offset)


@router.post(
    "/organisations/{org_id}/staff/{staff_id}/invitation",
    status_code=201,
    tags=["staff"],
    responses=_errors(401, 403, 404, 409),
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


@router.post(f"{StaffPath}/deactivate", tags=["staff"], responses=_errors(401, 403, 404, 409))
async def deactivate_staff(org_id: UUID, staff_id: UUID, caller: Caller, session: SessionDep) -> StaffPublic:
    """Offboard a coach or admin: no login any more, and every token of theirs is refused
    from now on, here and in coaching and the mailer. A coach's running participants are
    listed under GET …/participants-to-reassign until each has another coach."""
    allow(caller, org_id, "org_admin")
    staff = await staff_or_404(session, org_id, staff_id)
    await staff_accounts.deactivate_staff(session=session, staff=staff, by_staff_id=caller.staff_id, now=utcnow())
    await session.commit()
    return _staff_public(staff)


@router.post(f"{StaffPath}/reactivate", tags=["staff"], responses=_errors(401, 403, 404, 409))
async def reactivate_staff(org_id: UUID, staff_id: UUID, caller: Caller, session: SessionDep) -> StaffPublic:
    """Undo a deactivation: the member logs in again with their own password."""
    allow(caller, org_id, "org_admin")
    staff = await staff_or_404(session, org_id, staff_id)
    await staff_accounts.reactivate_staff(session=session, staff=staff)
    await session.commit()
    return _staff_public(staff)


@router.delete(StaffPath, tags=["staff"], responses=_errors(401, 403, 404, 409))
async def remove_staff(org_id: UUID, staff_id: UUID, caller: Caller, session: SessionDep) -> StaffPublic:
    """Remove a member for good: deactivated, and name, address and password erased; the id
    stays, so calls and plans they logged keep their author."""
    allow(caller, org_id, "org_admin")
    staff = await staff_or_404(session, org_id, staff_id)
    await staff_accounts.remove_staff(session=session, staff=staff, by_staff_id=caller.staff_id, now=utcnow())
    await session.commit()
    return _staff_public(staff)


@router.post(
    "/organisations/{org_id}/coaches", status_code=201, tags=["staff"], responses=_errors(401, 403, 404, 409, 422)
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


@router.get("/organisations/{org_id}/coaches", tags=["staff"], responses=_errors(401, 403, 404, 422))
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


# --- participants ---------------------------------------------------------------------------------------------


@router.post(
    "/organisations/{org_id}/participants",
    status_code=201,
    tags=["participants"],
    responses=_errors(401, 403, 404, 409, 422),
)
async def enrol_participant(
    org_id: UUID, body: ParticipantCreate, caller: Caller, session: SessionDep
) -> ParticipantPublic:
    """Enrol a participant; their programme starts on start_date (default: tomorrow)."""
    allow(caller, org_id, "org_admin", "api_key")
    fields = ParticipantFields.model_validate(body.model_dump(exclude={"coach_id"}))
    now = utcnow()

    async def enrol(*, in_turn: bool) -> Participant:
        # Side by side, enrolments into one organisation do not queue behind each other's commit.
        organisation = await organisation_or_404(session, org_id, for_update=in_turn, key_share=not in_turn)
        return await participants.enrol_participant(
            session=session,
            organisation=organisation,
            fields=fields,
            coach_id=body.coach_id,
            source="api" if caller.kind == "api_key" else "admin",
            now=now,
            in_turn=in_turn,
        )

    try:
        participant = await enrol(in_turn=False)
    except participants.EnrolInTurn:
        await session.rollback()
        participant = await enrol(in_turn=True)
    await commit_or_conflict(session, "This e-mail address is already enrolled here.", "email")
    return ParticipantPublic.model_validate(participant)


@router.post(
    "/organisations/{org_id}/participants/import",
    tags=["participants"],
    responses=_errors(401, 403, 404, 409, 413, 422),
)
async def import_participants(
    org_id: UUID,
    caller: Caller,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="CSV: ';' or ',' separated, UTF-8 with or without BOM.")],
    mode: Annotated[
        csv_import.ImportMode,
        Query(description="valid_rows: import every valid row; all_or_nothing: import only if no row is rejected."),
    ] = "valid_rows",
    dry_run: Annotated[bool, Query(description="Check every row, import nothing.")] = False,
) -> ImportReport:
    """Import participants from a spreadsheet export, with a report per row.

    Every row is checked first; then the rows that may go in are inserted, each with its
    participant.enrolled event, in one transaction: a row is fully imported or not at all.
    """
    allow(caller, org_id, "org_admin", "api_key")
    data = await file.read(settings.import_max_bytes + 1)
    if len(data) > settings.import_max_bytes:
        raise Refusal("too_large", f"The file is larger than {settings.import_max_bytes} bytes.", field="file")
    organisation = await organisation_or_404(session, org_id, for_update=True)
    report = await csv_import.import_csv(
        session=session, organisation=organisation, data=data, mode=mode, dry_run=dry_run, now=utcnow()
    )
    await commit_or_conflict(
        session, "Another enrolment of one of these addresses came first; import again.", field="file"
    )
    return report


@router.get("/organisations/{org_id}/participants", tags=["participants"], responses=_errors(401, 403, 404, 422))
async def list_participants(
    org_id: UUID,
    caller: Caller,
    session: SessionDep,
    status: domain.Status | None = None,
    coach_id: UUID | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[ParticipantPublic]:
    """The organisation's participants (a coach sees only their own), oldest first."""
    allow(caller, org_id, "org_admin", "coach", "api_key")
    await organisation_or_404(session, org_id)
    if caller.kind == "coach":
        coach_id = caller.staff_id
    items, total = await storage.list_participants(
        session=session, org_id=org_id, status=status, coach_id=coach_id, limit=limit, offset=offset
    )
    return Page(items=[ParticipantPublic.model_validate(p) for p in items], total=total, limit=limit, offset=offset)


@router.get(
    "/organisations/{org_id}/participants-to-reassign", tags=["participants"], responses=_errors(401, 403, 404, 422)
)
async def participants_to_reassign(
    org_id: UUID, caller: Caller, session: SessionDep, limit: Limit = 50, offset: Offset = 0
) -> Page[ParticipantPublic]:
    """Running participants whose coach was deactivated or removed: give each another coach
    with PUT …/participants/{participant_id}/coach."""
    allow(caller, org_id, "org_admin")
    await organisation_or_404(session, org_id)
    items, total = await storage.participants_to_reassign(session=session, org_id=org_id, limit=limit, offset=offset)
    return Page(items=[ParticipantPublic.model_validate(p) for p in items], total=total, limit=limit, offset=offset)


# A UUID by its convertor, so that ".../participants/import" never reaches these routes (PATCH on it is a 405).
ParticipantPath = "/organisations/{org_id}/participants/{participant_id:uuid}"


@router.get(ParticipantPath, tags=["participants"], responses=_errors(401, 403, 404))
async def get_participant(org_id: UUID, participant_id: UUID, caller: Caller, session: SessionDep) -> ParticipantPublic:
    """One participant (a coach: only their own)."""
    allow(caller, org_id, "org_admin", "coach", "api_key")
    return ParticipantPublic.model_validate(await participant_or_404(session, caller, org_id, participant_id))


@router.patch(ParticipantPath, tags=["participants"], responses=_errors(401, 403, 404, 409, 422))
async def change_participant(
    org_id: UUID, participant_id: UUID, body: ParticipantUpdate, caller: Caller, session: SessionDep
) -> ParticipantPublic:
    """Change contact details or mail preferences; only the fields sent change."""
    allow(caller, org_id, "org_admin", "api_key")
    participant = await participant_or_404(session, caller, org_id, participant_id, for_update=True)
    await participants.change_details(session=session, participant=participant, update=body, now=utcnow())
    await commit_or_conflict(session, "This e-mail address is already enrolled here.", "email")
    return ParticipantPublic.model_validate(participant)


@router.post(f"{ParticipantPath}/pause", tags=["lifecycle"], responses=_errors(401, 403, 404, 409, 422))
async def pause_participant(
    org_id: UUID, participant_id: UUID, caller: Caller, session: SessionDep, body: PauseRequest | None = None
) -> ParticipantPublic:
    """Stop the daily mails for now; resuming continues with the next lesson."""
    allow(caller, org_id, "org_admin", "coach")
    participant = await participant_or_404(session, caller, org_id, participant_id, for_update=True)
    reason = body.reason if body else None
    participants.pause(session=session, participant=participant, reason=reason, now=utcnow())
    await session.commit()
    return ParticipantPublic.model_validate(participant)


@router.post(f"{ParticipantPath}/resume", tags=["lifecycle"], responses=_errors(401, 403, 404, 409))
async def resume_participant(
    org_id: UUID, participant_id: UUID, caller: Caller, session: SessionDep
) -> ParticipantPublic:
    """Daily mails continue with the next lesson."""
    allow(caller, org_id, "org_admin", "coach")
    participant = await participant_or_404(session, caller, org_id, participant_id, for_update=True)
    participants.resume(session=session, participant=participant, now=utcnow())
    await session.commit()
    return ParticipantPublic.model_validate(participant)


@router.post(f"{ParticipantPath}/stop", tags=["lifecycle"], responses=_errors(401, 403, 404, 409, 422))
async def stop_participant(
    org_id: UUID, participant_id: UUID, caller: Caller, session: SessionDep, body: StopRequest | None = None
) -> ParticipantPublic:
    """End the programme early. A coach gives a reason; it stays with enrolment and coaching."""
    allow(caller, org_id, "org_admin", "coach")
    participant = await participant_or_404(session, caller, org_id, participant_id, for_update=True)
    by: domain.StoppedBy = "coach" if caller.kind == "coach" else "organisation"
    reason = body.reason if body else None
    if participant.status == "stopped":
        raise Refusal("conflict", "This participant has already stopped.", field="status")
    participants.stop(session=session, participant=participant, by=by, reason=reason, now=utcnow())
    await session.commit()
    return ParticipantPublic.model_validate(participant)


@router.put(f"{ParticipantPath}/coach", tags=["lifecycle"], responses=_errors(401, 403, 404, 409, 422))
async def change_coach(
    org_id: UUID, participant_id: UUID, body: CoachChange, caller: Caller, session: SessionDep
) -> ParticipantPublic:
    """Give the participant another coach of the organisation."""
    allow(caller, org_id, "org_admin")
    participant = await participant_or_404(session, caller, org_id, participant_id, for_update=True)
    await participants.change_coach(session=session, participant=participant, coach_id=body.coach_id, now=utcnow())
    await session.commit()
    return ParticipantPublic.model_validate(participant)


async def _erase(org_id: UUID, participant_id: UUID, caller: Caller, session: AsyncSession) -> ParticipantPublic:
    allow(caller, org_id, "org_admin")
    participant = await participant_or_404(session, caller, org_id, participant_id, for_update=True)
    participants.erase(session=session, participant=participant, now=utcnow())
    await exports.forget_participant_exports(session=session, participant_id=participant.id)
    await session.commit()
    return ParticipantPublic.model_validate(participant)


@router.post(f"{ParticipantPath}/erase", tags=["lifecycle"], responses=_errors(401, 403, 404, 409))
async def erase_participant(
    org_id: UUID, participant_id: UUID, caller: Caller, session: SessionDep
) -> ParticipantPublic:
    """The right to be forgotten: personal data is removed here and, through participant.erased, everywhere."""
    return await _erase(org_id, participant_id, caller, session)


@router.delete(ParticipantPath, tags=["lifecycle"], responses=_errors(401, 403, 404, 409))
async def delete_participant(
    org_id: UUID, participant_id: UUID, caller: Caller, session: SessionDep
) -> ParticipantPublic:
    """The same as POST …/erase."""
    return await _erase(org_id, participant_id, caller, session)
