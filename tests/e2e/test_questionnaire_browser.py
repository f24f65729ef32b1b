"""The questionnaire in headless Chromium on a phone-sized screen: one question per screen,
every answer found by its label, a question skipped, the keyboard alone gets through, no
Content-Security-Policy complaint, and axe-core finds no violation on the pages."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest
from playwright.async_api import async_playwright, expect

from shared.tracking_tokens import QuestionnaireToken, TokenSigner
from tests.e2e.conftest import DEV_TRACKING_KEY, TRACKING, create_organisation, db_fetch, eventually
from tests.support.browser import no_axe_violations, open_browser, shot

pytestmark = pytest.mark.stack
PHONE = {"width": 390, "height": 844}


async def test_a_participant_answers_on_a_phone(http: httpx.AsyncClient, tmp_path: Path) -> None:
    organisation = await create_organisation(http, display_name="Welzijn Aan Zee", brand_colour="#0b6e4f")
    org_id, participant_id = UUID(organisation["id"]), uuid4()
    token = TokenSigner([DEV_TRACKING_KEY]).sign_questionnaire(QuestionnaireToken(p=participant_id, o=org_id, m="end"))
    url = f"{TRACKING}/q/{token}"

    async def branded() -> bool | None:
        return True if "Welzijn Aan Zee" in (await http.get(url)).text else None

    await eventually(branded, what="tracking to know the organisation's branding")
    async with async_playwright() as playwright:
        browser, page, blocked = await open_browser(
            playwright, tmp_path / "profile", viewport=PHONE, is_mobile=True, has_touch=True
        )
        try:
            await page.goto(url)
            await expect(page.get_by_role("heading", level=1)).to_have_text("Hoe gaat het met je contacten?")
            await expect(page.locator(".content")).to_contain_text("minder dan twee minuten")
            await shot(page, "questionnaire-intro")
            await no_axe_violations(page)
            await page.get_by_role("button", name="Begin met de vragen").click()

            await expect(page.get_by_text("Vraag 1 van 6")).to_be_visible()
            question = page.get_by_role("group", name="Ik ervaar een leegte om me heen.")
            await expect(question).to_be_visible()
            # One question per screen: the question, its answers and the next button fit the phone.
            button = page.get_by_role("button", name="Volgende vraag")
            box = await button.bounding_box()
            assert box is not None and box["y"] + box["height"] <= PHONE["height"], box
            await shot(page, "questionnaire-question")
            await no_axe_violations(page)

            await question.get_by_label("Min of meer").check()
            await button.click()
            await expect(page.get_by_text("Vraag 2 van 6")).to_be_visible()
            await page.get_by_role("button", name="Sla over").click()
            await expect(page.get_by_text("Vraag 3 van 6")).to_be_visible()
            await page.get_by_role("button", name="Vorige vraag").click()
            await expect(page.get_by_text("Vraag 2 van 6")).to_be_visible()
            await page.get_by_label("Nee").check()
            await page.get_by_role("button", name="Volgende vraag").click()
            # the keyboard alone: arrow keys choose within the group, Enter sends
            for number in (3, 4, 5):
                await expect(page.get_by_text(f"Vraag {number} van 6")).to_be_visible()
                await page.get_by_label("Ja", exact=True).focus()
                await page.keyboard.press("Space")
                await page.keyboard.press("Enter")
            await expect(page.get_by_text("Vraag 6 van 6")).to_be_visible()
            await page.get_by_label("Nee").check()
            await page.get_by_role("button", name="Klaar, verstuur mijn antwoorden").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text("Dank je wel!")
            await shot(page, "questionnaire-thanks")
            await no_axe_violations(page)
        finally:
            await browser.close()
    assert blocked == []

    rows = await eventually(
        lambda: db_fetch(
            "tracking",
            "SELECT answers, emotional, social, total, category FROM questionnaire_answer WHERE participant_id = $1",
            participant_id,
        ),
        what="the stored answers",
    )
    (row,) = rows
    answers = json.loads(row["answers"]) if isinstance(row["answers"], str) else row["answers"]
    assert answers == {"e1": "min_of_meer", "e2": "nee", "e3": "ja", "s1": "ja", "s2": "ja", "s3": "nee"}
    # emotional 1 + 0 + 1, social 0 + 0 + 1
    assert (row["emotional"], row["social"], row["total"], row["category"]) == (2, 1, 3, "moderately_lonely")
