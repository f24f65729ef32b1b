"""The demo `./meer up` makes: the organisation's logo in the day-1 mail, on the sign-up page,
on the dashboard and in the recruitment kit, and a mixed cohort on coach Sanne's dashboard;
a second run adds nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.local.demo import DEMO_FILE, DEMO_PASSWORD
from services.coaching.auth import SESSION_COOKIE
from tests.e2e.conftest import COACHING, ENROLMENT, MAILCATCHER, eventually, raw_mail

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]


def run_demo() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.local.demo"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


async def test_the_demo_shows_the_logo_and_a_coachs_morning(http: httpx.AsyncClient) -> None:
    first = run_demo()
    assert first.returncode == 0, first.stdout + first.stderr
    demo = json.loads(DEMO_FILE.read_text())
    login = await http.post(
        f"{ENROLMENT}/api/auth/login", json={"email": demo["coach_email"], "password": DEMO_PASSWORD}
    )
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}

    async def the_cohort() -> list[dict[str, Any]] | None:
        rows: list[dict[str, Any]] = (await http.get(f"{COACHING}/api/participants", headers=headers)).json()
        by_name = {row["first_name"]: row for row in rows}
        # Joop's day-1 mail goes out on its own, after Ans's: wait for every day, not only Ans's and Greet's.
        days = sorted(row["lesson_day"] for row in rows)
        settled = len(rows) == 5 and by_name["Ans"]["latest_reports"] and days == [1, 1, 3, 5, 9]
        return rows if settled else None

    cohort = "the demo cohort on Sanne's dashboard: five people on days 1, 1, 3, 5 and 9, and Ans's report"
    rows = await eventually(the_cohort, what=cohort)
    by_name = {row["first_name"]: row for row in rows}
    assert by_name["Ans"]["mails_opened"] == 1 and by_name["Ans"]["latest_reports"][0]["score"] == 4
    assert by_name["Fatima"]["open_rate"] == 1.0
    assert [alert["code"] for alert in by_name["Henk"]["alerts"]] == ["no_open_3_days"]
    assert [row["first_name"] for row in rows if row["next_call"]["status"] == "due"] == ["Joop"]
    now = datetime.now(UTC)
    opens = [datetime.fromisoformat(row["last_open_at"]) for row in rows if row["last_open_at"]]
    assert len(opens) == 4 and max(opens) <= now, "the replayed opens lie in the past"

    # The logo: through the branding API, in the day-1 mail, on the sign-up page and the dashboard.
    logo = await http.get(demo["logo_url"])
    assert logo.status_code == 200 and logo.headers["content-type"] == "image/png"
    mails = (await http.get(f"{MAILCATCHER}/api/messages", params={"to": "ans@example.org"})).json()
    day_one = max((mail for mail in mails if mail["subject"].startswith("Dag 1 ")), key=lambda mail: int(mail["id"]))
    html = (await raw_mail(http, day_one["id"])).get_body(preferencelist=("html",))
    assert html is not None and demo["logo_url"] in html.get_content()
    signup = await http.get(f"{ENROLMENT}/aanmelden/{demo['org_id']}")
    assert signup.status_code == 200 and demo["logo_url"] in signup.text
    async with httpx.AsyncClient(cookies={SESSION_COOKIE: login.json()["access_token"]}) as browser:
        dashboard = await browser.get(f"{COACHING}/overzicht", follow_redirects=False)
    assert dashboard.status_code == 200 and demo["logo_url"] in dashboard.text

    admin = await http.post(
        f"{ENROLMENT}/api/auth/login", json={"email": demo["admin_email"], "password": DEMO_PASSWORD}
    )
    assert admin.status_code == 200, admin.text
    flyer = await http.get(
        f"{COACHING}/api/organisation/recruitment-kit/flyer.pdf",
        headers={"Authorization": f"Bearer {admin.json()['access_token']}"},
        timeout=30,
    )
    assert flyer.status_code == 200 and flyer.content.count(b"/Subtype /Image") == 2, "the QR code and the logo"

    second = run_demo()
    assert second.returncode == 0, second.stdout + second.stderr
    assert json.loads(DEMO_FILE.read_text()) == demo, "a second run does nothing new"
    rows = (await http.get(f"{COACHING}/api/participants", headers=headers)).json()
    assert len(rows) == 5
    enrolled = await http.get(
        f"{ENROLMENT}/api/organisations/{demo['org_id']}/participants",
        headers={"Authorization": "Bearer dev-only-licensor-secret"},
    )
    assert enrolled.status_code == 200 and len(enrolled.json()["items"]) == 5
