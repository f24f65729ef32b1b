"""Enrolment's HTTP routes: thin — validate, apply the rules, persist with the outbox."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from services.enrolment import domain, storage
from services.enrolment.settings import EnrolmentSettings
from services.enrolment.tables import (
    Coach,
    CoachCreate,
    CoachPublic,
    Organisation,
    OrganisationCreate,
    OrganisationPublic,
    Participant,
    ParticipantCreate,
    ParticipantPublic,
)
from shared.events import Branding, CoachAdded, Envelope, OrganisationLicensed, ParticipantEnrolled
from shared.outbox import add_to_outbox
from shared.runtime import Runtime, api_error

router = APIRouter(prefix="/api")
bearer = HTTPBearer(auto_error=False)


def runtime(request: Request) -> Runtime:
    found: Runtime = request.app.state.runtime
    return found


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with runtime(request).database.session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def require_licensor(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    """Only the licensor (platform admin) may call these routes for now."""
    settings = runtime(request).settings
    assert isinstance(settings, EnrolmentSettings)
    if credentials is None or not hmac.compare_digest(credentials.credentials, settings.licensor_secret):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "A valid licensor token is required.", headers={"WWW-Authenticate": "Bearer"}
        )


Licensor = Depends(require_licensor)


async def organisation_or_404(session: AsyncSession, org_id: UUID) -> Organisation:
    organisation = await storage.get_organisation(session=session, org_id=org_id)
    if organisation is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Organisation {org_id} does not exist.")
    return organisation


@router.post("/organisations", status_code=201, dependencies=[Licensor], tags=["organisations"])
async def license_organisation(body: OrganisationCreate, session: SessionDep) -> OrganisationPublic:
    """License an organisation; it can then add coaches and enrol participants."""
    if body.licence_valid_until < body.licence_valid_from:
        raise api_error(422, "The licence ends before it starts.", "licence_valid_until")
    organisation = Organisation.model_validate(body)
    session.add(organisation)
    branding = Branding(
        display_name=organisation.display_name,
        contact_phone=organisation.contact_phone,
        contact_email=organisation.contact_email,
        website=organisation.website,
        address=organisation.address,
        brand_colour=organisation.brand_colour,
    )
    add_to_outbox(
        session,
        Envelope.wrap(
            OrganisationLicensed(
                name=organisation.name,
                branding=branding,
                licence_valid_from=organisation.licence_valid_from,
                licence_valid_until=organisation.licence_valid_until,
                max_active_participants=organisation.max_active_participants,
                variants=tuple(organisation.variants),
            ),
            org_id=organisation.id,
        ),
    )
    await session.commit()
    return OrganisationPublic.model_validate(organisation)


@router.post("/organisations/{org_id}/coaches", status_code=201, dependencies=[Licensor], tags=["coaches"])
async def add_coach(org_id: UUID, body: CoachCreate, session: SessionDep) -> CoachPublic:
    """Add a coach to an organisation."""
    await organisation_or_404(session, org_id)
    coach = Coach(org_id=org_id, name=body.name, email=body.email.lower())
    session.add(coach)
    add_to_outbox(session, Envelope.wrap(CoachAdded(coach_id=coach.id, name=coach.name), org_id=org_id))
    try:
        await session.commit()
    except IntegrityError:
        raise HTTPException(409, "A coach with this e-mail address already exists.") from None
    return CoachPublic.model_validate(coach)


@router.post("/organisations/{org_id}/participants", status_code=201, dependencies=[Licensor], tags=["participants"])
async def enrol_participant(org_id: UUID, body: ParticipantCreate, session: SessionDep) -> ParticipantPublic:
    """Enrol a participant; their programme starts on start_date (default: tomorrow)."""
    organisation = await organisation_or_404(session, org_id)
    email = body.email.lower()
    try:
        variant = domain.check_variant(body.variant, tuple(organisation.variants))
        coach_id = domain.choose_coach(
            body.coach_id, await storage.active_participants_per_coach(session=session, org_id=org_id)
        )
        if await storage.has_running_enrolment(session=session, org_id=org_id, email=email):
            raise domain.EnrolmentRefused(409, "This e-mail address is already enrolled here.", "email")
    except domain.EnrolmentRefused as refused:
        raise api_error(refused.status, refused.message, refused.field) from None
    participant = Participant(
        org_id=org_id,
        coach_id=coach_id,
        first_name=body.first_name,
        email=email,
        phone=body.phone,
        start_date=body.start_date or domain.default_start_date(datetime.now(UTC), body.timezone),
        send_time=body.send_time,
        timezone=body.timezone,
        variant=variant,
    )
    session.add(participant)
    add_to_outbox(
        session,
        Envelope.wrap(
            ParticipantEnrolled(
                first_name=participant.first_name,
                email=participant.email,
                phone=participant.phone,
                coach_id=participant.coach_id,
                start_date=participant.start_date,
                send_time=participant.send_time,
                timezone=participant.timezone,
                variant=participant.variant,
            ),
            org_id=org_id,
            participant_id=participant.id,
        ),
    )
    try:
        await session.commit()
    except IntegrityError:
        # Two enrolments of the same address raced; the unique index let one through.
        raise api_error(409, "This e-mail address is already enrolled here.", "email") from None
    return ParticipantPublic.model_validate(participant)


@router.get("/organisations/{org_id}/participants/{participant_id}", dependencies=[Licensor], tags=["participants"])
async def get_participant(org_id: UUID, participant_id: UUID, session: SessionDep) -> ParticipantPublic:
    participant = await session.get(Participant, participant_id)
    if participant is None or participant.org_id != org_id:
        raise HTTPException(404, f"Participant {participant_id} does not exist in this organisation.")
    return ParticipantPublic.model_validate(participant)
