"""Production defaults on the real stack: security headers on the pages of every service,
and coaching's recruitment kit fetching logos only from enrolment."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from shared.events import Branding, Envelope, OrganisationBrandingChanged
from tests.e2e.conftest import (
    COACHING,
    ENROLMENT,
    MAILER,
    TRACKING,
    create_organisation,
    db_fetch,
    eventually,
    publish,
    staff_login,
)

pytestmark = pytest.mark.stack


def assert_hardened(response: httpx.Response) -> None:
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, (str(response.url), csp)
    assert "'unsafe-inline'" not in csp, str(response.url)
    assert response.headers.get("x-frame-options") == "DENY", str(response.url)
    assert response.headers.get("x-content-type-options") == "nosniff", str(response.url)
    # Tracking's pages carry a token in their address and keep their stricter no-referrer.
    assert response.headers.get("referrer-policy") in ("same-origin", "no-referrer"), str(response.url)


async def test_every_service_answers_with_the_security_headers(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    pages = [
        f"{ENROLMENT}/aanmelden/{organisation['id']}",
        f"{ENROLMENT}/bevestigen/verzonnen-link",
        f"{ENROLMENT}/api/organisations",
        f"{MAILER}/healthz",
        f"{TRACKING}/r/verzonnen-token",
        f"{TRACKING}/healthz",
        f"{COACHING}/inloggen",
        f"{COACHING}/static/coaching.js",
    ]
    for url in pages:
        assert_hardened(await http.get(url))

    # The branded inline <style> carries this answer's nonce, and only that one is allowed.
    signup = await http.get(pages[0])
    nonce = re.search(r"'nonce-([^']+)'", signup.headers["content-security-policy"])
    assert nonce is not None and f'<style nonce="{nonce[1]}">' in signup.text
    assert "<script" not in signup.text and " style=" not in signup.text
    tracking_page = await http.get(pages[4])
    assert '<style nonce="' in tracking_page.text and " style=" not in tracking_page.text


class CountingServer:
    """A plain HTTP server on the loopback address that counts the requests it gets."""

    def __init__(self) -> None:
        self.requests = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests += 1
        await reader.readline()
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()


@pytest.fixture
async def outside_server() -> AsyncIterator[CountingServer]:
    counting = CountingServer()
    server = await asyncio.start_server(counting.handle, "127.0.0.1", 0)
    counting.port = server.sockets[0].getsockname()[1]
    async with server:
        yield counting


async def test_the_recruitment_kit_fetches_no_logo_url_that_is_not_enrolments(
    http: httpx.AsyncClient, outside_server: CountingServer
) -> None:
    organisation = await create_organisation(http)
    org_id = uuid.UUID(organisation["id"])
    admin = await staff_login(http, str(org_id))
    sha = "ab" * 32
    # Someone who can write to the topic names a logo on another host (here a server that
    # counts what reaches it), even one with enrolment's logo path.
    for logo_url in (
        f"http://127.0.0.1:{outside_server.port}/latest/meta-data",
        f"http://127.0.0.1:{outside_server.port}/logos/{org_id}/{sha}.png?",
    ):
        branding = Branding(display_name="Welzijn Elders", logo_url=logo_url)
        await publish([Envelope.wrap(OrganisationBrandingChanged(branding=branding), org_id=org_id)])

        async def seen(url: str = logo_url) -> bool:
            rows = await db_fetch("coaching", "SELECT logo_url FROM organisation_view WHERE org_id = $1", org_id)
            return bool(rows) and rows[0]["logo_url"] == url

        await eventually(seen, what="coaching's copy of the changed branding")
        flyer = await http.get(f"{COACHING}/api/organisation/recruitment-kit/flyer.pdf", headers=admin["headers"])
        assert flyer.status_code == 200 and flyer.content.startswith(b"%PDF")
    assert outside_server.requests == 0, "coaching fetched a logo from a host that is not enrolment"


async def test_behind_a_trusted_tls_proxy_coaching_sees_https_and_sets_secure_cookies(http: httpx.AsyncClient) -> None:
    # The local stack trusts its loopback proxy (MEER_FORWARDED_ALLOW_IPS' default).
    direct = await http.get(f"{COACHING}/inloggen")
    assert "secure" not in direct.headers["set-cookie"].lower()
    proxied = await http.get(f"{COACHING}/inloggen", headers={"X-Forwarded-Proto": "https"})
    assert "secure" in proxied.headers["set-cookie"].lower()
