"""How the browser tests start Debian's Chromium: one place for the binary, the flags and where
screenshots go.

The flags keep a headless Chromium quiet on a machine without internet (no background
networking, no component updates, no first-run work); Playwright gives each launch a fresh
profile of its own."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from axe_playwright_python.async_playwright import Axe
from playwright.async_api import BrowserContext, Page, Playwright, expect

from deploy.local.stack import VAR

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = Path(os.environ.get("MEER_SCREENSHOTS", VAR / "screenshots"))
"""Where screenshots are kept to be looked at (MEER_SCREENSHOTS, else the stack's var folder)."""
WAIT_MS = 30_000
"""How long one browser step may take before the test fails."""


async def open_browser(playwright: Playwright, profile: Path, **options: Any) -> tuple[BrowserContext, Page, list[str]]:
    """Chromium on a fresh profile (Dutch, the flags above, `options` for the context: viewport,
    headers, a phone's touch screen); its first page, and the list that collects what the page's
    Content-Security-Policy blocked, as the browser reports it in the console."""
    browser = await playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, args=FLAGS, headless=True, locale="nl-NL", **options
    )
    expect.set_options(timeout=WAIT_MS)
    page = browser.pages[0] if browser.pages else await browser.new_page()
    blocked: list[str] = []
    page.on(
        "console", lambda message: blocked.append(message.text) if "Content Security Policy" in message.text else None
    )
    return browser, page, blocked


async def shot(page: Page, name: str) -> None:
    """A screenshot of the whole page, kept in SHOTS to be looked at."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def no_axe_violations(page: Page) -> None:
    """axe-core finds nothing on the page (each violation with its impact and first elements)."""
    results = await Axe().run(page)
    violations = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in results.response["violations"]]
    assert violations == [], violations


async def log_in_through_page(
    playwright: Playwright, profile: Path, *, url: str, email: str, password: str, **options: Any
) -> tuple[BrowserContext, Page, list[str]]:
    """A browser of one staff member (open_browser's, with `options`), logged in through
    coaching's login page: `url` asks for the login first and opens once it is given."""
    browser, page, blocked = await open_browser(playwright, profile, **options)
    await page.goto(url)
    await expect(page).to_have_url(re.compile(r"/inloggen\?next="))
    await page.get_by_label("E-mailadres").fill(email)
    await page.get_by_label("Wachtwoord").fill(password)
    await page.get_by_role("button", name="Inloggen").click()
    await expect(page).to_have_url(url)
    return browser, page, blocked
