"""What every enrolment route shares: the request's session and settings, who is asking
(licensor secret, staff token or organisation API key) and what they may do, lookups that
answer 404, the documented error statuses, and the public shapes of branding and staff."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from services.enrolment import security, storage
from services.enrolment.schemas import BrandingPublic, StaffPublic
from services.enrolment.settings import EnrolmentSettings
from services.enrolment.tables import Organisation, Participant, StaffMember
from services.enrolment.use_cases import organisations
from shared.branding import readable_text_colour
from shared.errors import Refusal
from shared.runtime import Runtime, api_error, error_responses
from shared.staff_tokens import InvalidStaffTokenError, StaffAccess, token_allowed

bearer = HTTPBearer(auto_error=False, description="The licensor secret or a staff access token.")
api_key_header = APIKeyHeader(name="X-Api-Key", auto_error=False, description="An organisation API key.")


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses (and 422, which every route may answer)."""
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

Kind = Literal["licensor", "org_admin", "coach", "partner", "api_key"]


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    kind: Kind
    org_id: UUID | None = None
    staff_id: UUID | None = None


def unauthorised(message: str) -> Exception:
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
            raise unauthorised("The API key is not valid (it may have been rotated).")
        return Principal(kind="api_key", org_id=org_id)
    if credentials is None:
        raise unauthorised("Credentials are required: a bearer token or an X-Api-Key header.")
    if security.secrets_equal(credentials.credentials, settings.licensor_secret):
        return Principal(kind="licensor")
    try:
        claims = request.app.state.token_keys.verify(credentials.credentials)
    except InvalidStaffTokenError:
        raise unauthorised("The access token is not valid or has expired; log in again.") from None
    except security.KeysMissingError:
        raise unauthorised("Staff tokens cannot be checked: the public key is not configured.") from None
    # One primary-key lookup: a signature alone does not survive logout, reset or offboarding.
    staff = await storage.get_staff(session=session, staff_id=claims.staff_id)
    access = None if staff is None else StaffAccess(token_version=staff.token_version, active=staff.active)
    if staff is None or staff.org_id != claims.org_id or not token_allowed(claims, access):
        raise unauthorised("This session has ended (logged out, password reset or account deactivated); log in again.")
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


def branding_public(organisation: Organisation, base_url: str) -> BrandingPublic:
    return BrandingPublic(
        **organisations.branding_of(organisation, base_url).model_dump(),
        text_colour=readable_text_colour(organisation.brand_colour),
    )


def staff_public(staff: StaffMember) -> StaffPublic:
    return StaffPublic.model_validate(
        {**staff.model_dump(), "has_password": staff.password_hash is not None, "active": staff.active}
    )
