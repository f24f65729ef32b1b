"""The organisation admin manages the local offers in headless Chromium (Debian's), on the
real stack: from the organisation page to the offers page, add an offer, see a malformed
phone number and web address explained in Dutch next to their fields (nothing is written),
change the offer and remove it; enrolment holds exactly what the pages show, a form post
without the form token is refused, and axe-core finds no violation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import async_playwright, expect

from tests.e2e.conftest import COACHING, ENROLMENT, STAFF_PASSWORD, client_address, create_organisation, staff_login
from tests.support.browser import log_in_through_page, no_axe_violations, shot

pytestmark = pytest.mark.stack


async def test_an_admin_adds_changes_and_removes_a_local_offer(http: httpx.AsyncClient, tmp_path: Path) -> None:
    organisation = await create_organisation(http, display_name="Welzijn Aan Zee")
    org_id = organisation["id"]
    admin = await staff_login(http, org_id, name="Mirjam Bakker")

    async def offers() -> list[dict[str, Any]]:
        answer = await http.get(f"{ENROLMENT}/api/organisations/{org_id}/local-offers", headers=admin["headers"])
        assert answer.status_code == 200, answer.text
        return list(answer.json())

    async with async_playwright() as playwright:
        browser, page, blocked = await log_in_through_page(
            playwright,
            tmp_path / "profile",
            url=f"{COACHING}/organisatie",
            email=admin["email"],
            password=STAFF_PASSWORD,
            viewport={"width": 1366, "height": 900},
            extra_http_headers=client_address(),
        )
        try:
            await shot(page, "offers-organisation")
            await page.get_by_role("link", name="Lokaal aanbod beheren").click()
            await expect(page).to_have_url(f"{COACHING}/organisatie/aanbod")
            await expect(page.get_by_role("heading", name="Lokaal aanbod", level=1)).to_be_visible()
            await expect(page.get_by_text("Er staat nog geen aanbod op de lijst.")).to_be_visible()
            await no_axe_violations(page)
            await shot(page, "offers-empty")

            # Add one.
            await page.get_by_label("Soort aanbod").select_option(label="Bibliotheek")
            await page.get_by_label("Naam").fill("Bibliotheek Zandvoort")
            await page.get_by_label("Wat is het?").fill("Boeken lenen, de krant lezen en koffie drinken.")
            await page.get_by_label("Waar?").fill("Prinsesseweg 34")
            await page.get_by_label("Wanneer?").fill("ma t/m za 10:00-17:00")
            await page.get_by_label("Telefoonnummer").fill("023 571 4000")
            await page.get_by_label("Website").fill("https://www.bibliotheek.nl")
            await page.get_by_role("button", name="Aanbod toevoegen").click()
            await expect(page.get_by_role("status")).to_contain_text("Het aanbod is toegevoegd.")
            await expect(page.get_by_role("row", name="Bibliotheek Zandvoort")).to_contain_text("Bibliotheek")
            (stored,) = await offers()
            assert (stored["kind"], stored["name"], stored["phone"], stored["website"]) == (
                "library",
                "Bibliotheek Zandvoort",
                "023 571 4000",
                "https://www.bibliotheek.nl",
            )
            await shot(page, "offers-added")

            # A malformed phone number and web address: said in Dutch beside the field, nothing written.
            await page.get_by_label("Soort aanbod").select_option(label="Wandelgroep")
            await page.get_by_label("Naam").fill("Wandelclub De Duinen")
            await page.get_by_label("Telefoonnummer").fill("bel maar even")
            await page.get_by_label("Website").fill("www.wandelclub")
            await page.get_by_role("button", name="Aanbod toevoegen").click()
            await expect(page.get_by_role("alert")).to_contain_text("Kijk de velden met een melding na")
            for label, says in (
                ("Telefoonnummer", "Dit telefoonnummer klopt niet"),
                ("Website", "begint met https://"),
            ):
                field = page.get_by_label(label)
                await expect(field).to_have_attribute("aria-invalid", "true")
                # The field itself shows it too: the red border of the style sheet's --bad colour.
                await expect(field).to_have_css("border-top-color", "rgb(163, 25, 27)")
                described = (await field.get_attribute("aria-describedby") or "").split()
                assert described, label
                await expect(page.locator(f"#{described[0]}")).to_contain_text(says)
            await expect(page.get_by_label("Naam")).to_have_value("Wandelclub De Duinen")
            assert [o["name"] for o in await offers()] == ["Bibliotheek Zandvoort"]
            await no_axe_violations(page)
            await shot(page, "offers-errors")

            # Without the form's token a post is refused and writes nothing.
            forged = await page.request.post(
                f"{COACHING}/organisatie/aanbod", form={"kind": "meal", "name": "Nagemaakt"}
            )
            assert forged.status == 403
            assert [o["name"] for o in await offers()] == ["Bibliotheek Zandvoort"]

            # Change it.
            await page.goto(f"{COACHING}/organisatie/aanbod")
            await page.get_by_role("link", name="Wijzigen Bibliotheek Zandvoort").click()
            await expect(page.get_by_role("heading", name="Bibliotheek Zandvoort wijzigen")).to_be_visible()
            await expect(page.get_by_label("Telefoonnummer")).to_have_value("023 571 4000")
            await page.get_by_label("Wanneer?").fill("elke werkdag van 10 tot 17 uur")
            await no_axe_violations(page)
            await shot(page, "offers-edit")
            await page.get_by_role("button", name="Wijziging bewaren").click()
            await expect(page.get_by_role("status")).to_contain_text("De wijziging is bewaard.")
            (changed,) = await offers()
            assert (changed["id"], changed["schedule"]) == (stored["id"], "elke werkdag van 10 tot 17 uur")

            # Remove it.
            await page.get_by_role("link", name="Wijzigen Bibliotheek Zandvoort").click()
            await page.get_by_role("button", name="Bibliotheek Zandvoort verwijderen").click()
            await expect(page.get_by_role("status")).to_contain_text("Het aanbod is verwijderd.")
            await expect(page.get_by_text("Er staat nog geen aanbod op de lijst.")).to_be_visible()
            assert await offers() == []
            assert blocked == [], blocked
        finally:
            await browser.close()


async def test_a_coach_cannot_open_the_offer_pages(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http)
    coach = await staff_login(http, organisation["id"], role="coach")
    page = await http.get(
        f"{COACHING}/organisatie/aanbod", headers={"Cookie": f"meer_coaching_session={coach['token']}"}
    )
    assert page.status_code == 403 and "beheerder" in page.text
