"""An organisation's local offers (library, walking group, coffee morning, …) that its lessons name:
the organisation admin (or the licensor) keeps them; its coaches may read them."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response

from services.enrolment.api.common import Caller, SessionDep, allow, errors, organisation_or_404
from services.enrolment.schemas import LocalOfferFields, LocalOfferPublic
from services.enrolment.use_cases import local_offers
from shared.db import utcnow

router = APIRouter(prefix="/api")


@router.get("/organisations/{org_id}/local-offers", tags=["local offers"], responses=errors(401, 403, 404))
async def list_local_offers(org_id: UUID, caller: Caller, session: SessionDep) -> list[LocalOfferPublic]:
    """Every local offer of the organisation, by kind and name (at most MAX_LOCAL_OFFERS)."""
    allow(caller, org_id, "org_admin", "coach")
    await organisation_or_404(session, org_id)
    return [local_offers.offer_public(o) for o in await local_offers.list_offers(session=session, org_id=org_id)]


@router.post(
    "/organisations/{org_id}/local-offers",
    status_code=201,
    tags=["local offers"],
    responses=errors(401, 403, 404, 409, 422),
)
async def add_local_offer(
    org_id: UUID, body: LocalOfferFields, caller: Caller, session: SessionDep
) -> LocalOfferPublic:
    """Add a local offer; lessons that name its kind show it from the next mail on (409 when the list is full)."""
    allow(caller, org_id, "org_admin")
    organisation = await organisation_or_404(session, org_id, for_update=True)
    offer = await local_offers.add_offer(session=session, organisation=organisation, body=body, now=utcnow())
    await session.commit()
    return local_offers.offer_public(offer)


@router.put(
    "/organisations/{org_id}/local-offers/{offer_id}", tags=["local offers"], responses=errors(401, 403, 404, 422)
)
async def replace_local_offer(
    org_id: UUID, offer_id: UUID, body: LocalOfferFields, caller: Caller, session: SessionDep
) -> LocalOfferPublic:
    """Replace every field of a local offer (send the whole offer)."""
    allow(caller, org_id, "org_admin")
    organisation = await organisation_or_404(session, org_id, for_update=True)
    offer = await local_offers.offer_or_404(session=session, org_id=org_id, offer_id=offer_id)
    await local_offers.replace_offer(session=session, organisation=organisation, offer=offer, body=body, now=utcnow())
    await session.commit()
    return local_offers.offer_public(offer)


@router.delete(
    "/organisations/{org_id}/local-offers/{offer_id}",
    status_code=204,
    tags=["local offers"],
    responses=errors(401, 403, 404),
)
async def remove_local_offer(org_id: UUID, offer_id: UUID, caller: Caller, session: SessionDep) -> Response:
    """Remove a local offer; lessons stop showing it from the next mail on."""
    allow(caller, org_id, "org_admin")
    organisation = await organisation_or_404(session, org_id, for_update=True)
    offer = await local_offers.offer_or_404(session=session, org_id=org_id, offer_id=offer_id)
    await local_offers.remove_offer(session=session, organisation=organisation, offer=offer)
    await session.commit()
    return Response(status_code=204)
