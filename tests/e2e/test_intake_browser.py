"""The intake's pages in headless Chromium on the real stack: a partner logs in through the
login page and gives a signal (a refused one first, in Dutch), the coordinator hands it to a
coach, the coach goes through the steps and enrols the person with one click, and the partner
sees only how far it is. No Content-Security-Policy complaint; axe-core finds no violation."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, Playwright, async_playwright, expect

from tests.e2e.conftest import COACHING, STAFF_PASSWORD, client_address, db_fetch, unique_email
from tests.e2e.test_intake_signals import organisation_with_people
from tests.support.browser import log_in_through_page, no_axe_violations, shot

pytestmark = pytest.mark.stack


async def logged_in(
    playwright: Playwright, profile: Path, person: dict[str, Any], start: str
) -> tuple[BrowserContext, Page, list[str]]:
    """A browser of one person, logged in through coaching's login page, on `start`."""
    return await log_in_through_page(
        playwright,
        profile,
        url=f"{COACHING}{start}",
        email=person["email"],
        password=STAFF_PASSWORD,
        viewport={"width": 1280, "height": 900},
        extra_http_headers=client_address(),
    )


async def test_a_signal_from_partner_to_participant_in_the_browser(http: httpx.AsyncClient, tmp_path: Path) -> None:
    world = await organisation_with_people(http, "Welzijn Aan Zee")
    email = unique_email("riek")
    async with async_playwright() as playwright:
        partner, page, blocked = await logged_in(playwright, tmp_path / "partner", world["partner"], "/signalen/nieuw")
        try:
            await expect(page.get_by_role("heading", level=1)).to_have_text("Signaal doorgeven")
            await no_axe_violations(page)
            await shot(page, "intake-form")
            # Without consent a name is refused, in Dutch, and what was typed stays.
            await page.get_by_label("Trekt zich terug").check()
            await page.get_by_label("Verlies van een naaste").check()
            await page.get_by_label("Nee, of ik heb het niet gevraagd").check()
            await page.get_by_label("Voornaam").fill("Riek")
            await page.get_by_role("button", name="Signaal doorgeven").click()
            await expect(page.get_by_role("alert")).to_contain_text("Kijk de velden met een melding na")
            await expect(page.locator("#consent-error")).to_contain_text("Zonder toestemming mag u geen naam")
            await expect(page.get_by_label("Voornaam")).to_have_value("Riek")
            await no_axe_violations(page)
            await shot(page, "intake-form-refused")
            await page.get_by_label("Ja, de persoon vindt dat goed").check()
            await page.get_by_label("Telefoonnummer").fill("06 1234 5678")
            await page.get_by_label("Toelichting").fill("Haar man is overleden.\nZe komt niet meer buiten.")
            await page.get_by_role("button", name="Signaal doorgeven").click()
            await expect(page).to_have_url(f"{COACHING}/signalen?bericht=ontvangen")
            await expect(page.get_by_role("status")).to_contain_text("Het signaal is doorgegeven")
            await expect(page.locator(".my-signals")).to_contain_text("Ontvangen")
            await expect(page.get_by_role("link", name="Overzicht")).to_have_count(0)  # no staff menu
            await no_axe_violations(page)
            await shot(page, "intake-partner-list")
            # The dashboard is not for a partner: a Dutch page says so.
            await page.goto(f"{COACHING}/overzicht")
            await expect(page.get_by_role("main")).to_contain_text("Deze pagina is voor coaches")
            assert not blocked, blocked
        finally:
            await partner.close()

        admin, page, blocked = await logged_in(playwright, tmp_path / "admin", world["admin"], "/signalen")
        try:
            await expect(page.locator(".signal-counts")).to_contain_text("Woonstichting De Kust")
            await no_axe_violations(page)
            await shot(page, "intake-coordinator-list")
            await page.get_by_role("link", name="Riek").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text("Signaal: Riek")
            await page.get_by_label("Coach", exact=True).select_option(label="Coach Siem")
            await page.get_by_role("button", name="Toewijzen").click()
            await expect(page.get_by_role("status")).to_contain_text("Het signaal is toegewezen.")
            await expect(page.locator(".timeline")).to_contain_text("Toegewezen aan een coach: Coach Siem")
            await no_axe_violations(page)
            await shot(page, "intake-coordinator-signal")
            signal_url = page.url.split("?")[0]
            assert not blocked, blocked
        finally:
            await admin.close()

        path = signal_url.removeprefix(COACHING)
        coach, page, blocked = await logged_in(playwright, tmp_path / "coach", world["coach"], path)
        try:
            await page.get_by_label("Ja", exact=True).check()
            await page.get_by_role("button", name="Eerste contact vastleggen").click()
            await expect(page.get_by_role("status")).to_contain_text("Het eerste contact is vastgelegd.")
            await page.get_by_label("De eigen vraag, in de woorden van de persoon").fill(
                "Weer eens samen koffie drinken."
            )
            await page.get_by_label("Verlies van een partner of dierbare").check()
            await page.get_by_role("button", name="Vraag en oorzaken bewaren").click()
            await expect(page.get_by_role("status")).to_contain_text("De eigen vraag en de oorzaken zijn bewaard.")
            await no_axe_violations(page)
            await shot(page, "intake-coach-steps")
            # A start date in the past is refused by enrolment, said in Dutch beside the field.
            await page.get_by_label("E-mailadres voor de lessen").fill(email)
            await page.get_by_label("Startdatum").fill("2020-01-06")
            await page.get_by_role("button", name="Aanmelden").click()
            await expect(page.locator("#start_date-error")).to_contain_text("Kies een startdatum vanaf vandaag")
            await expect(page.get_by_label("Startdatum")).to_have_attribute("aria-invalid", "true")
            await expect(page.get_by_label("E-mailadres voor de lessen")).to_have_value(email)
            await no_axe_violations(page)
            await shot(page, "intake-coach-start-date-refused")
            start = datetime.now(ZoneInfo("Europe/Amsterdam")).date() + timedelta(days=7)
            await page.get_by_label("Startdatum").fill(start.isoformat())
            await page.get_by_role("button", name="Aanmelden").click()
            await expect(page.get_by_role("status")).to_contain_text("aangemeld voor Meer contact")
            enrolled = await db_fetch(
                "enrolment", "SELECT start_date FROM participant WHERE org_id = $1", UUID(world["org_id"])
            )
            assert [row["start_date"] for row in enrolled] == [start]
            await expect(page.locator(".timeline")).to_contain_text("Aangemeld voor Meer contact")
            await no_axe_violations(page)
            await shot(page, "intake-coach-enrolled")
            assert not blocked, blocked
        finally:
            await coach.close()
