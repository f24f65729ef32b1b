"""Organisations: licensing, the licence and its use, branding, the sign-up slug, the logo and API keys."""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from services.enrolment import domain, security, storage
from services.enrolment.schemas import (
    BrandingUpdate,
    LicencePublic,
    LicenceUpdate,
    OrganisationCreate,
    OrganisationPublic,
)
from services.enrolment.settings import EnrolmentSettings
from services.enrolment.tables import ApiKey, Logo, Organisation
from shared.errors import Refusal
from shared.events import (
    Branding,
    Envelope,
    OrganisationBrandingChanged,
    OrganisationLicenceChanged,
    OrganisationLicensed,
    OrganisationSlugChanged,
    Payload,
)
from shared.outbox import add_to_outbox


def logo_url(organisation: Organisation, base_url: str) -> str | None:
    """The logo's public address; it names the image's hash, so it never shows another image."""
    if organisation.logo_sha256 is None or organisation.logo_format is None:
        return None
    extension = "png" if organisation.logo_format == "png" else "jpg"
    return f"{base_url.rstrip('/')}/logos/{organisation.id}/{organisation.logo_sha256}.{extension}"


def branding_of(organisation: Organisation, base_url: str) -> Branding:
    """The organisation's branding as every mail carries it."""
    return Branding(
        display_name=organisation.display_name,
        contact_person=organisation.contact_person,
        contact_phone=organisation.contact_phone,
        contact_email=organisation.contact_email,
        website=organisation.website,
        address=organisation.address,
        brand_colour=organisation.brand_colour,
        logo_url=logo_url(organisation, base_url),
        sender_name=organisation.sender_name,
        reply_to=organisation.reply_to,
    )


def signup_url(organisation: Organisation, base_url: str) -> str:
    """The public sign-up page: the short address when the organisation chose one (the id link keeps working)."""
    return f"{base_url.rstrip('/')}/aanmelden/{organisation.slug or organisation.id}"


def organisation_public(organisation: Organisation, base_url: str) -> OrganisationPublic:
    """The organisation as the API shows it."""
    return OrganisationPublic.model_validate(
        {
            **organisation.model_dump(),
            "logo_url": logo_url(organisation, base_url),
            "signup_url": signup_url(organisation, base_url),
        }
    )


def publish_org(session: AsyncSession, organisation: Organisation, payload: Payload) -> None:
    """Stage one of the organisation's events in the outbox of the caller's transaction."""
    add_to_outbox(session, Envelope.wrap(payload, org_id=organisation.id))


def license_organisation(*, session: AsyncSession, body: OrganisationCreate, base_url: str) -> Organisation:
    """A new licensed organisation (organisation.licensed)."""
    domain.check_licence_period(body.licence_valid_from, body.licence_valid_until)
    organisation = Organisation.model_validate(body.model_dump())
    session.add(organisation)
    publish_org(
        session,
        organisation,
        OrganisationLicensed(
            name=organisation.name,
            branding=branding_of(organisation, base_url),
            licence_valid_from=organisation.licence_valid_from,
            licence_valid_until=organisation.licence_valid_until,
            max_active_participants=organisation.max_active_participants,
            variants=tuple(organisation.variants),
        ),
    )
    return organisation


def change_licence(*, session: AsyncSession, organisation: Organisation, update: LicenceUpdate, now: datetime) -> bool:
    """Change period, size or variants (organisation.licence_changed); False if nothing changed.

    Running participants are not touched: a smaller or ended licence only refuses new ones.
    """
    changed = False
    for name in update.model_fields_set:
        value = getattr(update, name)
        if value is None:
            raise Refusal("invalid", "This licence field cannot be cleared.", field=name)
        if getattr(organisation, name) != value:
            setattr(organisation, name, value)
            changed = True
    domain.check_licence_period(organisation.licence_valid_from, organisation.licence_valid_until)
    if changed:
        organisation.updated_at = now
        session.add(organisation)
        publish_org(
            session,
            organisation,
            OrganisationLicenceChanged(
                licence_valid_from=organisation.licence_valid_from,
                licence_valid_until=organisation.licence_valid_until,
                max_active_participants=organisation.max_active_participants,
                variants=tuple(organisation.variants),
            ),
        )
    return changed


async def licence_use(*, session: AsyncSession, organisation: Organisation, now: datetime) -> LicencePublic:
    """The licence with its use now: active out of maximum, and what is still free."""
    counts = await storage.participants_per_status(session=session, org_id=organisation.id)
    running = sum(counts.get(status, 0) for status in domain.ACTIVE_STATUSES)
    try:
        available = domain.remaining_capacity(
            valid_from=organisation.licence_valid_from,
            valid_until=organisation.licence_valid_until,
            maximum=organisation.max_active_participants,
            running=running,
            today=domain.licence_today(now),
        )
    except Refusal:
        available = 0
    return LicencePublic(
        org_id=organisation.id,
        licence_valid_from=organisation.licence_valid_from,
        licence_valid_until=organisation.licence_valid_until,
        state=domain.licence_state(
            organisation.licence_valid_from, organisation.licence_valid_until, domain.licence_today(now)
        ),
        active_participants=running,
        max_active_participants=organisation.max_active_participants,
        available=available,
        awaiting_confirmation=counts.get("pending", 0),
        variants=list(organisation.variants),
    )


def _branding_changed(session: AsyncSession, organisation: Organisation, base_url: str, now: datetime) -> None:
    organisation.updated_at = now
    session.add(organisation)
    publish_org(session, organisation, OrganisationBrandingChanged(branding=branding_of(organisation, base_url)))


def update_branding(
    *, session: AsyncSession, organisation: Organisation, update: BrandingUpdate, base_url: str, now: datetime
) -> bool:
    """Apply the fields sent (organisation.branding_changed); False if nothing changed."""
    changed = False
    for name in sorted(update.model_fields_set):
        value = getattr(update, name)
        if value is None and name in ("display_name", "brand_colour"):
            raise Refusal("invalid", f"{name} cannot be cleared.", field=name)
        if getattr(organisation, name) != value:
            setattr(organisation, name, value)
            changed = True
    if changed:
        _branding_changed(session, organisation, base_url, now)
    return changed


async def set_slug(*, session: AsyncSession, organisation: Organisation, slug: str) -> bool:
    """Give the organisation its short sign-up address (organisation.slug_changed); False if unchanged.
    A slug another organisation has is refused with 409 (the unique index catches a race)."""
    slug = domain.check_slug(slug.strip())
    if organisation.slug == slug:
        return False
    holder = await storage.organisation_by_slug(session=session, slug=slug)
    if holder is not None and holder.id != organisation.id:
        raise Refusal("conflict", f"The slug '{slug}' is taken by another organisation.", field="slug")
    organisation.slug = slug
    publish_org(session, organisation, OrganisationSlugChanged(slug=slug))
    return True


async def set_logo(
    *, session: AsyncSession, organisation: Organisation, data: bytes, settings: EnrolmentSettings, now: datetime
) -> bool:
    """Check and store an uploaded logo and make it the organisation's logo."""
    checked = domain.check_logo(data, max_bytes=settings.logo_max_bytes, max_side=settings.logo_max_side_px)
    await storage.add_logo(
        session=session,
        logo=Logo(
            org_id=organisation.id,
            sha256=checked.sha256,
            format=checked.format,
            width=checked.width,
            height=checked.height,
            data=data,
            created_at=now,
        ),
    )
    if organisation.logo_sha256 == checked.sha256:
        return False
    organisation.logo_sha256, organisation.logo_format = checked.sha256, checked.format
    _branding_changed(session, organisation, settings.enrolment_base_url, now)
    return True


def remove_logo(*, session: AsyncSession, organisation: Organisation, base_url: str, now: datetime) -> bool:
    """Mails go on without a logo (organisation.branding_changed)."""
    if organisation.logo_sha256 is None:
        return False
    organisation.logo_sha256 = organisation.logo_format = None
    _branding_changed(session, organisation, base_url, now)
    return True


async def rotate_api_key(*, session: AsyncSession, organisation: Organisation, now: datetime) -> tuple[str, ApiKey]:
    """A new API key; the previous one stops working at once."""
    await storage.revoke_api_keys(session=session, org_id=organisation.id, now=now)
    key, prefix = security.new_api_key()
    row = ApiKey(org_id=organisation.id, prefix=prefix, key_hash=security.digest(key), created_at=now)
    session.add(row)
    return key, row
