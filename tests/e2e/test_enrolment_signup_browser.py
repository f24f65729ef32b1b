"""The public sign-up in headless Chromium (Debian's), as a participant uses it: every field
is found by its label, a forgotten consent is pointed out, the form is sent with the
keyboard, and the link from the confirmation mail confirms with one button."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.async_api import async_playwright, expect

from tests.e2e.conftest import (
    add_coach,
    create_organisation,
    db_fetch,
    mailed_link,
    unique_email,
    unique_source,
)
from tests.support.browser import open_browser, shot

pytestmark = pytest.mark.stack


async def test_a_participant_signs_up_and_confirms_in_a_browser(http: httpx.AsyncClient, tmp_path: Path) -> None:
    organisation = await create_organisation(http, display_name="Welzijn Aan Zee", brand_colour="#0b6e4f")
    await add_coach(http, organisation["id"])
    email = unique_email()

    async with async_playwright() as playwright:
        browser, page, blocked = await open_browser(
            playwright, tmp_path / "profile", extra_http_headers=unique_source()
        )
        try:
            await page.goto(organisation["signup_url"])
            await expect(page.get_by_role("heading", level=1)).to_have_text("Meld je aan voor Meer contact")
            await expect(page.locator("header")).to_contain_text("Welzijn Aan Zee")
            await page.get_by_label("Je voornaam").fill("Gerda")
            await page.get_by_label("Je e-mailadres").fill(email)
            await page.get_by_label("Je telefoonnummer").fill("06 12345678")
            await page.get_by_label("Hoe laat wil je de e-mail krijgen?").select_option("10:00")
            await page.get_by_role("button", name="Aanmelden").click()

            # Without consent: the page says what to do, and keeps what was typed.
            await expect(page.get_by_role("alert")).to_contain_text("Zet een vinkje")
            await expect(page.get_by_label("Je voornaam")).to_have_value("Gerda")
            await shot(page, "enrolment-signup-error")
            await page.get_by_label("Ja, ik geef toestemming.").check()
            # The keyboard alone gets there: from the checkbox, Tab reaches the button.
            await page.keyboard.press("Tab")
            await expect(page.get_by_role("button", name="Aanmelden")).to_be_focused()
            await page.keyboard.press("Enter")
            await expect(page.get_by_role("heading", level=1)).to_have_text("Kijk in je mail")

            url = await mailed_link(http, email, "/bevestigen/")
            await page.goto(url)
            await page.get_by_role("button", name="Ja, ik doe mee").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text("Welkom, Gerda!")
            await expect(page.locator("main")).to_contain_text("10:00 uur")
            await shot(page, "enrolment-signup-confirmed")
            assert not blocked, blocked
        finally:
            await browser.close()

    (row,) = await db_fetch(
        "enrolment", "SELECT status, phone, send_time::text AS t FROM participant WHERE email = $1", email
    )
    assert (row["status"], row["phone"], row["t"]) == ("enrolled", "+31612345678", "10:00:00")
