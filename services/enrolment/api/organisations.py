"""Organisations and their licence (licensor), branding, the sign-up slug, the logo (also its
public address) and the organisation's API key."""

from __future__ import annotations

import re
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, File, Request, Response, UploadFile

from services.enrolment import storage
from services.enrolment.api.common import (
    Caller,
    SessionDep,
    SettingsDep,
    allow,
    branding_public,
    commit_or_conflict,
    errors,
    known_api_keys,
    organisation_or_404,
)
from services.enrolment.schemas import (
    ApiKeyCreated,
    ApiKeyPublic,
    BrandingPublic,
    BrandingUpdate,
    LicencePublic,
    LicenceUpdate,
    OrganisationCreate,
    OrganisationPublic,
    Page,
    SlugUpdate,
)
from services.enrolment.use_cases import organisations
from shared.db import utcnow
from shared.errors import Refusal
from shared.http import Limit, Offset

router = APIRouter(prefix="/api")
public_router = APIRouter()
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


@router.post("/organisations", status_code=201, tags=["organisations"], responses=errors(401, 403, 422))
async def license_organisation(
    body: OrganisationCreate, caller: Caller, session: SessionDep, settings: SettingsDep
) -> OrganisationPublic:
    """License an organisation (licensor only); it can then invite staff and enrol participants."""
    allow(caller, None)
    organisation = organisations.license_organisation(session=session, body=body, base_url=settings.enrolment_base_url)
    await session.commit()
    return organisations.organisation_public(organisation, settings.enrolment_base_url)


@router.get("/organisations", tags=["organisations"], responses=errors(401, 403, 422))
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


@router.get("/organisations/{org_id}", tags=["organisations"], responses=errors(401, 403, 404))
async def get_organisation(
    org_id: UUID, caller: Caller, session: SessionDep, settings: SettingsDep
) -> OrganisationPublic:
    """The organisation's name, branding and licence."""
    allow(caller, org_id, "org_admin", "coach", "api_key")
    return organisations.organisation_public(await organisation_or_404(session, org_id), settings.enrolment_base_url)


@router.get("/organisations/{org_id}/licence", tags=["organisations"], responses=errors(401, 403, 404))
async def licence_use(org_id: UUID, caller: Caller, session: SessionDep) -> LicencePublic:
    """The licence period and its use: active participants out of the maximum."""
    allow(caller, org_id, "org_admin", "api_key")
    organisation = await organisation_or_404(session, org_id)
    return await organisations.licence_use(session=session, organisation=organisation, now=utcnow())


@router.patch("/organisations/{org_id}/licence", tags=["organisations"], responses=errors(401, 403, 404, 422))
async def change_licence(org_id: UUID, body: LicenceUpdate, caller: Caller, session: SessionDep) -> LicencePublic:
    """Change the licence period, size or variants (licensor only). Running participants finish."""
    allow(caller, org_id)
    organisation = await organisation_or_404(session, org_id, for_update=True)
    now = utcnow()
    organisations.change_licence(session=session, organisation=organisation, update=body, now=now)
    await session.commit()
    return await organisations.licence_use(session=session, organisation=organisation, now=now)


@router.get("/organisations/{org_id}/branding", tags=["branding"], responses=errors(401, 403, 404))
async def get_branding(org_id: UUID, caller: Caller, session: SessionDep, settings: SettingsDep) -> BrandingPublic:
    """What the organisation's mails and pages show."""
    allow(caller, org_id, "org_admin", "coach")
    return branding_public(await organisation_or_404(session, org_id), settings.enrolment_base_url)


@router.patch("/organisations/{org_id}/branding", tags=["branding"], responses=errors(401, 403, 404, 422))
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
    return branding_public(organisation, settings.enrolment_base_url)


@router.put("/organisations/{org_id}/slug", tags=["branding"], responses=errors(401, 403, 404, 409, 422))
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


@router.put("/organisations/{org_id}/logo", tags=["branding"], responses=errors(401, 403, 404, 413, 415, 422))
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
    return branding_public(organisation, settings.enrolment_base_url)


@router.delete("/organisations/{org_id}/logo", tags=["branding"], responses=errors(401, 403, 404))
async def remove_logo(org_id: UUID, caller: Caller, session: SessionDep, settings: SettingsDep) -> BrandingPublic:
    """Mails go on without a logo. Earlier logo URLs keep working for mails already sent."""
    allow(caller, org_id, "org_admin")
    organisation = await organisation_or_404(session, org_id, for_update=True)
    organisations.remove_logo(
        session=session, organisation=organisation, base_url=settings.enrolment_base_url, now=utcnow()
    )
    await session.commit()
    return branding_public(organisation, settings.enrolment_base_url)


@public_router.get(
    "/logos/{org_id}/{filename}",
    tags=["branding"],
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}, **errors(404)},
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


@router.get("/organisations/{org_id}/api-key", tags=["api keys"], responses=errors(401, 403, 404))
async def get_api_key(org_id: UUID, caller: Caller, session: SessionDep) -> ApiKeyPublic:
    """Which key is current (its prefix), never the key itself."""
    allow(caller, org_id, "org_admin")
    await organisation_or_404(session, org_id)
    current = await storage.current_api_key(session=session, org_id=org_id)
    if current is None:
        raise Refusal("not_found", "This organisation has no API key.")
    return ApiKeyPublic(prefix=current.prefix, created_at=current.created_at)


@router.post("/organisations/{org_id}/api-key", status_code=201, tags=["api keys"], responses=errors(401, 403, 404))
async def rotate_api_key(org_id: UUID, caller: Caller, session: SessionDep, request: Request) -> ApiKeyCreated:
    """Create a new API key, shown only in this answer; the previous key stops working (on every
    replica of the service within 2 seconds)."""
    allow(caller, org_id, "org_admin")
    organisation = await organisation_or_404(session, org_id, for_update=True)
    key, row = await organisations.rotate_api_key(session=session, organisation=organisation, now=utcnow())
    await session.commit()
    known_api_keys(request).forget(org_id)
    return ApiKeyCreated(api_key=key, prefix=row.prefix, created_at=row.created_at)


@router.delete("/organisations/{org_id}/api-key", status_code=204, tags=["api keys"], responses=errors(401, 403, 404))
async def revoke_api_key(org_id: UUID, caller: Caller, session: SessionDep, request: Request) -> Response:
    """Revoke the API key; systems using it are refused from now on (on every replica of the
    service within 2 seconds)."""
    allow(caller, org_id, "org_admin")
    await organisation_or_404(session, org_id, for_update=True)
    await storage.revoke_api_keys(session=session, org_id=org_id, now=utcnow())
    await session.commit()
    known_api_keys(request).forget(org_id)
    return Response(status_code=204)
