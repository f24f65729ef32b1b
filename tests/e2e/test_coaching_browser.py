"""The coach's dashboard in headless Chromium (Debian's), on the real stack: log in through
the login page (which asks enrolment), see the participant, log a call, and see an open
appear on the open dashboard, without a reload, once the mail's pixel is fetched."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Route, async_playwright, expect

from tests.e2e.conftest import (
    COACHING,
    ENROLMENT,
    LICENSOR,
    MAIL_CLIENT,
    STAFF_PASSWORD,
    client_address,
    create_organisation,
    eventually,
    mails_to,
    raw_mail,
    staff_login,
    tracking_links,
    unique_email,
)
from tests.support.browser import log_in_through_page, shot

pytestmark = pytest.mark.stack


@dataclass
class Fetches:
    """The dashboard's fetches of one row, each held for a second before it goes out."""

    now: int = 0
    most_at_once: int = 0
    total: int = 0
    last_done: float = 0.0

    async def slowly(self, route: Route) -> None:
        self.now += 1
        self.total += 1
        self.most_at_once = max(self.most_at_once, self.now)
        try:
            await asyncio.sleep(1.0)
            await route.continue_()
        finally:
            self.now -= 1
            self.last_done = time.monotonic()

    async def settled(self) -> bool:
        """Some fetch went out, and none for two seconds since the last one ended."""
        return self.total > 0 and self.now == 0 and time.monotonic() - self.last_done > 2.0


async def test_a_coach_logs_in_logs_a_call_and_sees_an_open_arrive_live(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    organisation = await create_organisation(http, display_name="Welzijn Aan Zee")
    coach = await staff_login(http, organisation["id"], role="coach", name="Karin Jansen")
    email = unique_email()
    response = await http.post(
        f"{ENROLMENT}/api/organisations/{organisation['id']}/participants",
        json={
            "first_name": "Gerrit",
            "email": email,
            "phone": "0612345678",
            "coach_id": coach["id"],
            "start_date": str(date.today()),
            "send_time": "00:00",
            "timezone": "UTC",
        },
        headers=LICENSOR,
    )
    assert response.status_code == 201, response.text
    participant_id = response.json()["id"]
    mails = await eventually(lambda: mails_to(http, email), what="the day-1 mail at the SMTP catcher")
    pixel = tracking_links(await raw_mail(http, mails[0]["id"]))["o"]

    async with async_playwright() as playwright:
        # A client address of its own: failed logins elsewhere in the suite do not count for it.
        # Log in through the login page; coaching asks enrolment and sets the cookie.
        browser, page, blocked = await log_in_through_page(
            playwright,
            tmp_path / "profile",
            url=f"{COACHING}/overzicht",
            email=coach["email"],
            password=STAFF_PASSWORD,
            viewport={"width": 1366, "height": 900},
            extra_http_headers=client_address(),
        )
        try:
            row = page.locator(f"#p-{participant_id}")
            await expect(row.get_by_role("link", name="Gerrit")).to_be_visible()
            cookie = next(c for c in await browser.cookies() if c["name"] == "meer_coaching_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
            # The browser is remembered, so others' failed logins cannot lock it out later.
            device = next(c for c in await browser.cookies() if c["name"] == "meer_coaching_device")
            assert device["httpOnly"] and device["sameSite"] == "Strict" and device["path"] == "/inloggen"

            # Log a call on the participant page, beside the call guide.
            await row.get_by_role("link", name="Gerrit").click()
            await expect(page.get_by_role("heading", name="Gerrit", level=1)).to_be_visible()
            await expect(page.get_by_role("complementary")).to_contain_text("Kennismaken")
            await page.get_by_label("Ja, we hebben gesproken").check()
            await page.get_by_label("Duur in minuten").fill("15")
            await page.get_by_label("Aantekeningen").fill("Fijn eerste gesprek; Gerrit wandelt graag.")
            await page.get_by_label("Volgende afspraak").fill("Over twee weken weer bellen.")
            await page.get_by_role("button", name="Gesprek opslaan").click()
            await expect(page.get_by_role("status").first).to_contain_text("Het gesprek is vastgelegd.")
            await expect(page.locator(".call-log")).to_contain_text("Fijn eerste gesprek")
            await expect(page.locator("#kerncijfers")).to_contain_text("1 van 4")
            await shot(page, "participant")

            # Back on the dashboard: the mail is sent, not yet opened; the live stream is connected.
            await page.goto(f"{COACHING}/overzicht")
            opened = page.locator(f"#p-{participant_id} [data-field=opened] .num")
            await expect(opened).to_have_text("0")
            await expect(page.locator("#live-status[data-live=on]")).to_be_attached()
            await page.evaluate("window.notReloaded = true")

            # The participant opens the mail: their mail client fetches the pixel.
            gif = await http.get(pixel, headers=MAIL_CLIENT)
            assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
            await expect(opened).to_have_text("1")
            await expect(page.locator("#live-status")).to_contain_text("Gerrit heeft zojuist een mail geopend.")
            assert await page.evaluate("window.notReloaded === true"), "the open arrived without a reload"
            await shot(page, "dashboard")

            # More opens while the row is being fetched (a slow network, a morning's burst): they
            # ask for one more fetch after it, never a second one at the same time, whose older
            # answer could land last and show the row as it was.
            fetches = Fetches()
            await page.route(f"**/overzicht/rij/{participant_id}", fetches.slowly)
            for _ in range(4):
                assert (await http.get(pixel, headers=MAIL_CLIENT)).status_code == 200
                await asyncio.sleep(0.3)
            await eventually(fetches.settled, what="the row's fetches to settle")
            assert fetches.total >= 2, "the opens during the first fetch got a fetch after it"
            assert fetches.most_at_once == 1, fetches
            await expect(opened).to_have_text("1")
            assert not blocked, blocked
        finally:
            await browser.close()
