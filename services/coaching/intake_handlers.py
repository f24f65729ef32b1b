"""The copies the intake keeps from other services' events: an organisation's local offers
(organisation.local_offers_changed carries the whole list) and a staff member's role and
partner organisation. Not part of the dashboard projection: a rebuild leaves them alone."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.coaching.intake_tables import LocalOffersCopy, StaffCopy
from shared.events import Envelope, OrganisationLocalOffersChanged, StaffAccessChanged, StaffInvited, StaffInvitedV1


async def on_local_offers_changed(session: AsyncSession, envelope: Envelope, _: object = None) -> None:
    """Keep the newest list of the organisation's offers (an older one, arriving late, changes nothing)."""
    payload = envelope.parsed()
    if not isinstance(payload, OrganisationLocalOffersChanged):
        raise TypeError(f"expected {OrganisationLocalOffersChanged.TYPE}, got {envelope.type}")
    values = {"offers": [offer.model_dump(mode="json") for offer in payload.offers], "as_of": envelope.occurred_at}
    statement = insert(LocalOffersCopy).values(org_id=envelope.org_id, **values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["org_id"], set_=values, where=col(LocalOffersCopy.as_of) <= statement.excluded.as_of
        )
    )


async def record_staff_copy(session: AsyncSession, envelope: Envelope, _: object = None) -> None:
    """staff.invited and staff.access_changed: the member's role and, for a partner, their own
    organisation (whichever event comes last says it; both carry the same)."""
    payload = envelope.parsed()
    if not isinstance(payload, StaffInvited | StaffInvitedV1 | StaffAccessChanged):
        raise TypeError(f"expected a staff event, got {envelope.type}")
    values = {
        "org_id": envelope.org_id,
        "role": payload.role,
        # staff.invited version 1 is from before partners: it names no partner organisation.
        "partner_organisation": None if isinstance(payload, StaffInvitedV1) else payload.partner_organisation,
        "updated_at": envelope.occurred_at,
    }
    statement = insert(StaffCopy).values(staff_id=payload.staff_id, **values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["staff_id"], set_=values, where=col(StaffCopy.updated_at) <= statement.excluded.updated_at
        )
    )
