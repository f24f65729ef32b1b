"""Creates the demo organisation, coach and participant through the enrolment API, waits
for the day-1 mail in the mail catcher and prints where to look. Runs once: the ids are
kept in var/demo.json, and a second run only prints them again."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from datetime import date, timedelta
from email import message_from_bytes, policy

import httpx

from deploy.local.stack import VAR, Urls

DEMO_FILE = VAR / "demo.json"
ENROLMENT = Urls.service("enrolment")
COACHING = Urls.service("coaching")
MAILCATCHER = Urls.mailcatcher
LICENSOR_SECRET = os.environ.get("MEER_LICENSOR_SECRET", "dev-only-licensor-secret")
PIXEL = re.compile(r'src="([^"]+/o/[^"]+\.gif)"')
SET_PASSWORD = re.compile(r"/set-password/([A-Za-z0-9_\-]+)")
# A development-only password for the demo coach; the demo runs only on the local stack.
DEMO_PASSWORD = "demo-wachtwoord-2026"  # noqa: S105


def create_demo(client: httpx.Client) -> dict[str, str]:
    today = date.today()
    organisation = (
        client.post(
            "/api/organisations",
            json={
                "name": "Welzijn Aan Zee",
                "display_name": "Welzijn Aan Zee",
                "contact_person": "Sanne de Vries",
                "contact_phone": "0223 123 456",
                "contact_email": "meercontact@welzijnaanzee.example",
                "website": "https://welzijnaanzee.example",
                "address": "Dorpsstraat 1, 1781 AA Den Helder",
                "brand_colour": "#0b6e4f",
                "licence_valid_from": str(today - timedelta(days=1)),
                "licence_valid_until": str(today + timedelta(days=365)),
                "max_active_participants": 200,
            },
        )
        .raise_for_status()
        .json()
    )
    coach_email = f"sanne+{organisation['id'][:8]}@welzijnaanzee.example"
    coach = (
        client.post(
            f"/api/organisations/{organisation['id']}/coaches", json={"name": "Sanne de Vries", "email": coach_email}
        )
        .raise_for_status()
        .json()
    )
    # The coach is invited by mail; the demo follows the link's token so Sanne can log in at once.
    token = wait_for_set_password_token(client, coach_email)
    if token:
        client.post("/api/auth/set-password", json={"token": token, "password": DEMO_PASSWORD}).raise_for_status()
    participant = (
        client.post(
            f"/api/organisations/{organisation['id']}/participants",
            # Start today at midnight, so the day-1 mail goes out now instead of tomorrow at 08:00.
            json={"first_name": "Ans", "email": "ans@example.org", "start_date": str(today), "send_time": "00:00"},
        )
        .raise_for_status()
        .json()
    )
    return {
        "org_id": organisation["id"],
        "coach_id": coach["id"],
        "coach_email": coach_email,
        "participant_id": participant["id"],
    }


def wait_for_set_password_token(client: httpx.Client, address: str, timeout: float = 60) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for summary in client.get(f"{MAILCATCHER}/api/messages", params={"to": address}).json():
            raw = client.get(f"{MAILCATCHER}/api/messages/{summary['id']}/raw").content
            text = message_from_bytes(raw, policy=policy.default).get_body(preferencelist=("plain",))
            match = SET_PASSWORD.search(text.get_content() if text else "")
            if match:
                return match.group(1)
        time.sleep(0.5)
    return None


def wait_for_day_one_mail(client: httpx.Client, timeout: float = 60) -> tuple[int, str] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for summary in client.get(f"{MAILCATCHER}/api/messages", params={"to": "ans@example.org"}).json():
            if summary["subject"].startswith("Dag 1 "):
                raw = client.get(f"{MAILCATCHER}/api/messages/{summary['id']}/raw").content
                html = message_from_bytes(raw, policy=policy.default).get_body(preferencelist=("html",))
                match = PIXEL.search(html.get_content() if html else "")
                return summary["id"], match.group(1) if match else ""
        time.sleep(0.5)
    return None


def main() -> int:
    headers = {"Authorization": f"Bearer {LICENSOR_SECRET}"}
    with httpx.Client(base_url=ENROLMENT, headers=headers, timeout=10) as client:
        if DEMO_FILE.exists():
            demo = json.loads(DEMO_FILE.read_text())
        else:
            demo = create_demo(client)
            DEMO_FILE.parent.mkdir(parents=True, exist_ok=True)
            DEMO_FILE.write_text(json.dumps(demo, indent=2))
        found = wait_for_day_one_mail(client)
    print("\nDemo: organisation 'Welzijn Aan Zee', coach Sanne de Vries, participant Ans (ans@example.org)")
    if found is None:
        print("  the day-1 mail has not arrived yet; look in the mail catcher in a moment")
        return 0
    mail_id, pixel = found
    print(f"  day-1 mail, as Ans sees it:     {MAILCATCHER}/messages/{mail_id}")
    print(f"  open it (fetch the pixel):      {pixel}")
    print(f"  the coach's dashboard:          {COACHING}/inloggen")
    print(f"    log in as {demo.get('coach_email', '(see the invitation mail)')} with password {DEMO_PASSWORD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
