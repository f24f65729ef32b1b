"""An organisation's local offers: add, change and remove them; every change publishes the whole list
(organisation.local_offers_changed), so the mailer's copy is always one complete list."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.enrolment.schemas import LocalOfferFields, LocalOfferPublic
from services.enrolment.tables import Organisation, OrganisationLocalOffer
from services.enrolment.use_cases.organisations import publish_org
from shared.errors import Refusal
from shared.events import LOCAL_OFFER_KINDS, LocalOffer, OrganisationLocalOffersChanged

MAX_LOCAL_OFFERS = 50
"""A lesson shows every offer of its kind: a short list is what a participant can take in."""


def offer_public(offer: OrganisationLocalOffer) -> LocalOfferPublic:
    """The offer as the API shows it, with the kind's Dutch label."""
    return LocalOfferPublic.model_validate({**offer.model_dump(), "kind_label": LOCAL_OFFER_KINDS[offer.kind][1]})


async def list_offers(*, session: AsyncSession, org_id: UUID) -> Sequence[OrganisationLocalOffer]:
    """The organisation's offers, by kind and name (the order a lesson shows them in)."""
    result = await session.execute(
        select(OrganisationLocalOffer)
        .where(col(OrganisationLocalOffer.org_id) == org_id)
        .order_by(col(OrganisationLocalOffer.kind), col(OrganisationLocalOffer.name), col(OrganisationLocalOffer.id))
    )
    return result.scalars().all()


async def offer_or_404(*, session: AsyncSession, org_id: UUID, offer_id: UUID) -> OrganisationLocalOffer:
    """The offer of this organisation, or not_found (another organisation's offer is not found either)."""
    offer = await session.get(OrganisationLocalOffer, offer_id, with_for_update=True)
    if offer is None or offer.org_id != org_id:
        raise Refusal("not_found", "This organisation has no such local offer.")
    return offer


async def _publish_list(session: AsyncSession, organisation: Organisation) -> None:
    await session.flush()
    offers = await list_offers(session=session, org_id=organisation.id)
    publish_org(
        session,
        organisation,
        OrganisationLocalOffersChanged(
            offers=tuple(
                LocalOffer(
                    offer_id=offer.id,
                    kind=offer.kind,
                    name=offer.name,
                    description=offer.description,
                    location=offer.location,
                    schedule=offer.schedule,
                    phone=offer.phone,
                    website=offer.website,
                )
                for offer in offers
            )
        ),
    )


async def add_offer(
    *, session: AsyncSession, organisation: Organisation, body: LocalOfferFields, now: datetime
) -> OrganisationLocalOffer:
    """A new offer; refused (conflict) once the organisation has MAX_LOCAL_OFFERS.
    The caller holds the organisation's row lock, so two additions cannot both pass the cap."""
    count = (
        await session.execute(
            select(func.count())
            .select_from(OrganisationLocalOffer)
            .where(col(OrganisationLocalOffer.org_id) == organisation.id)
        )
    ).scalar_one()
    if count >= MAX_LOCAL_OFFERS:
        raise Refusal("conflict", f"An organisation can keep at most {MAX_LOCAL_OFFERS} local offers.")
    offer = OrganisationLocalOffer(org_id=organisation.id, **body.model_dump(), created_at=now, updated_at=now)
    session.add(offer)
    await _publish_list(session, organisation)
    return offer


async def replace_offer(
    *,
    session: AsyncSession,
    organisation: Organisation,
    offer: OrganisationLocalOffer,
    body: LocalOfferFields,
    now: datetime,
) -> bool:
    """Replace every field of the offer with the body's; False (and no event) when nothing changed."""
    changed = False
    for name, value in body.model_dump().items():
        if getattr(offer, name) != value:
            setattr(offer, name, value)
            changed = True
    if changed:
        offer.updated_at = now
        session.add(offer)
        await _publish_list(session, organisation)
    return changed


async def remove_offer(*, session: AsyncSession, organisation: Organisation, offer: OrganisationLocalOffer) -> None:
    """Lessons stop showing the offer from the next mail on."""
    await session.delete(offer)
    await _publish_list(session, organisation)
