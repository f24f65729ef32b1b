"""Mailer's HTTP routes: a preview of any day of any variant, exactly as participants get it."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.mailer.mail import MailContext, MailSettings, UnsafeHeaderError, render_programme_mail, to_wire
from services.mailer.programme import Lesson, PackError, ProgrammePack
from services.mailer.settings import MailerSettings
from services.mailer.tables import LocalOffersCopy, OrganisationCopy, StaffAccessCopy
from shared.runtime import Runtime, api_error, error_responses
from shared.staff_tokens import InvalidStaffTokenError, StaffAccess, token_allowed, verify_staff_token
from shared.tracking_tokens import TokenSigner

router = APIRouter(prefix="/api")
bearer = HTTPBearer(auto_error=False)


async def require_org_access(
    org_id: UUID, request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    """The licensor, or staff of this organisation (a staff token verified with the public key)."""
    settings: MailerSettings = request.app.state.runtime.settings
    if credentials is None:
        raise api_error(401, "A licensor or staff token is required.")
    if hmac.compare_digest(credentials.credentials, settings.licensor_secret):
        return
    if settings.staff_token_public_key_path is None:
        raise api_error(401, "Staff tokens are not accepted here: no public key is configured.")
    try:
        claims = verify_staff_token(credentials.credentials, settings.staff_token_public_key_path.read_bytes())
    except InvalidStaffTokenError:
        raise api_error(401, "The token is not valid or has expired.") from None
    runtime: Runtime = request.app.state.runtime
    async with runtime.database.session() as session:
        known = await session.get(StaffAccessCopy, claims.staff_id)
    access = None if known is None else StaffAccess(token_version=known.token_version, active=known.active)
    if not token_allowed(claims, access):
        raise api_error(401, "This session has ended (logged out, password reset or account deactivated).")
    if claims.org_id != org_id:
        raise api_error(403, "This token is for another organisation.")


@router.get(
    "/organisations/{org_id}/preview",
    dependencies=[Depends(require_org_access)],
    tags=["preview"],
    response_class=HTMLResponse,
    response_model=None,
    responses={
        200: {
            "description": "The html part (text/html) or the text part (text/plain).",
            "content": {"text/html": {"schema": {"type": "string"}}, "text/plain": {"schema": {"type": "string"}}},
        },
        **error_responses(
            {
                401: "No licensor secret or staff token, or it is not valid or has expired.",
                403: "The staff token is for another organisation.",
                404: "Unknown organisation, day or variant.",
                422: "The organisation's branding cannot be used in a mail.",
            }
        ),
    },
)
async def preview(
    org_id: UUID,
    request: Request,
    day: Annotated[int, Query(ge=1, le=366, description="Programme day")] = 1,
    variant: Annotated[str, Query(max_length=40)] = "standaard",
    part: Annotated[Literal["html", "text"], Query(description="html or text part")] = "html",
    local_offers: Annotated[
        Literal["own", "none"],
        Query(description="own: with the organisation's local offers; none: the general text without them"),
    ] = "own",
) -> Response:
    """Render one day of one variant for an organisation, with example names, as the participant sees it
    (with the organisation's local offers, or as an organisation without offers gets it)."""
    runtime: Runtime = request.app.state.runtime
    pack: ProgrammePack = request.app.state.pack
    async with runtime.database.session() as session:
        organisation = await session.get(OrganisationCopy, org_id)
        offers = await session.get(LocalOffersCopy, org_id) if local_offers == "own" else None
    if organisation is None:
        raise api_error(404, f"The mailer does not know organisation {org_id} (yet).")
    try:
        lesson = pack.lesson(variant, day)
    except PackError as error:
        raise api_error(404, str(error), "day" if variant in pack.variants else "variant") from None
    mail_settings: MailSettings = request.app.state.mail_settings
    signer: TokenSigner = request.app.state.signer
    try:
        parsed = _rendered(pack, lesson, organisation, day, mail_settings, signer, offers.offers if offers else [])
    except UnsafeHeaderError as error:
        raise api_error(422, f"The organisation's branding cannot be used in a mail: {error}.", "branding") from None
    # The e-mail package names the parts by subtype: "html" and "plain".
    body = parsed.get_body(preferencelist=("html" if part == "html" else "plain",))
    assert body is not None
    content = str(body.get_content())
    return HTMLResponse(content) if part == "html" else PlainTextResponse(content)


def _rendered(
    pack: ProgrammePack,
    lesson: Lesson,
    organisation: OrganisationCopy,
    day: int,
    mail_settings: MailSettings,
    signer: TokenSigner,
    local_offers: list[dict[str, Any]],
) -> EmailMessage:
    message = render_programme_mail(
        MailContext(
            delivery_id=uuid4(),
            participant_id=uuid4(),
            org_id=organisation.org_id,
            to_address="voorbeeld@example.org",
            first_name="Voorbeeld",
            coach_name="je coach",
            organisation_name=organisation.name,
            branding=organisation.branding,
            lesson=lesson,
            day=day,
            programme_days=pack.days,
            sent_at=datetime.now(UTC),
            local_offers=local_offers,
        ),
        mail_settings,
        signer,
    )
    parsed = message_from_bytes(to_wire(message, mail_settings), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed
