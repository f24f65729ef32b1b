"""The recruitment kit's adapter: fetch an organisation's logo (time- and size-limited)
and make the flyer and poster for it."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit
from uuid import UUID

import httpx

from services.coaching import documents
from services.coaching.tables import OrganisationView
from shared.logging import get_logger

log = get_logger(__name__)

CACHE_SECONDS = 600.0


class LogoFetcher:
    """Fetches logos over http(s) with a deadline and a size cap, and remembers them a while.
    It follows no redirect: the URLs it gets are enrolment's own logo addresses."""

    def __init__(self, *, timeout_s: float, max_bytes: int) -> None:
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self._cache: dict[str, tuple[float, bytes | None]] = {}

    async def fetch(self, url: str | None) -> bytes | None:
        """The logo's bytes, or None when there is none, it is too big or slow, or not an image."""
        if not url or urlsplit(url).scheme not in ("http", "https"):
            return None
        cached = self._cache.get(url)
        if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        logo = await self._download(url)
        self._cache[url] = (time.monotonic(), logo)
        return logo

    async def _download(self, url: str) -> bytes | None:
        try:
            async with (
                httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as client,
                client.stream("GET", url, headers={"Accept": "image/png,image/jpeg,image/gif"}) as response,
            ):
                if response.status_code != 200 or not response.headers.get("content-type", "").startswith("image/"):
                    log.info("logo not used", status=response.status_code)
                    return None
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        log.info("logo not used: too large", max_bytes=self.max_bytes)
                        return None
                    chunks.append(chunk)
                data = b"".join(chunks)
        except httpx.HTTPError as error:
            log.info("logo not fetched", error=type(error).__name__)
            return None
        return data if documents.load_logo(data) is not None else None


_LOGO_PATH = re.compile(r"/logos/(?P<org>[0-9a-f-]{36})/(?P<name>[0-9a-f]{64}\.(?:png|jpg))$")


def enrolment_logo_url(logo_url: str | None, *, org_id: UUID, enrolment_base_url: str) -> str | None:
    """Where to fetch an organisation's logo: only from enrolment, only that organisation's.

    A logo URL comes from an event; whatever host it names, the logo is fetched from the
    configured enrolment address (inside a container network that is another address than
    the public one in the URL), and only when its path is enrolment's logo path of this
    organisation. Anything else is not fetched, so an event cannot make coaching call out.
    """
    if not logo_url:
        return None
    parts = urlsplit(logo_url)
    if parts.scheme not in ("http", "https") or parts.query or parts.fragment:
        return None
    match = _LOGO_PATH.search(parts.path)
    if match is None or match["org"] != str(org_id):
        return None
    return f"{enrolment_base_url.rstrip('/')}/logos/{org_id}/{match['name']}"


def signup_url(enrolment_base_url: str, org_id: UUID, slug: str | None = None) -> str:
    """Enrolment's public sign-up page of the organisation: its short address once it chose one."""
    return f"{enrolment_base_url.rstrip('/')}/aanmelden/{slug or org_id}"


async def kit_organisation(
    organisation: OrganisationView | None, *, org_id: UUID, enrolment_base_url: str, logos: LogoFetcher
) -> documents.KitOrganisation:
    """What the flyer and poster show of the organisation (a logo when it can be had)."""
    organisation = organisation or OrganisationView(org_id=org_id)
    return documents.KitOrganisation(
        display_name=organisation.display_name or organisation.name or "Meer contact",
        signup_url=signup_url(enrolment_base_url, org_id, organisation.slug),
        brand_colour=organisation.brand_colour,
        contact_phone=organisation.contact_phone,
        contact_email=organisation.contact_email,
        website=organisation.website,
        logo=await logos.fetch(
            enrolment_logo_url(organisation.logo_url, org_id=org_id, enrolment_base_url=enrolment_base_url)
        ),
    )
