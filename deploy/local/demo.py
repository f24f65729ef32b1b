"""The demo: organisation "Welzijn Aan Zee" with its logo, coach Sanne and a small cohort that
shows a coach's morning at a glance, made through the platform's own APIs and events.

- Ans and Joop start today (enrolment API); their day-1 mails go out for real. Ans opens
  hers (the tracking pixel, fetched as a mail client does) and says how the assignment went
  (the report page behind the link in her mail); Sanne has had her first call with Ans
  (coaching API). Joop's first call is due.
- Fatima (day 3), Henk (day 5) and Greet (day 9) are further along. The platform sends one
  lesson per real day and enrolment takes no start date in the past, so their earlier days
  are replayed as the events the mailer and tracking would have published then (mail.sent,
  mail.opened, assignment.reported, with their original times); their enrolment itself goes
  through the API, with a start date far ahead so the real mailer sends them nothing.
  Henk has not opened a mail for four days, which the dashboard flags.

Every step is recorded in var/demo.json when it is done, so a second run does nothing new
(event ids are derived from the participant and day, so a replay is harmless too)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, TypeVar

import httpx
from PIL import Image, ImageDraw, ImageFont

from deploy.local.stack import VAR, Urls
from shared.events import AssignmentReported, Envelope, MailOpened, MailSent, Payload

DEMO_FILE = VAR / "demo.json"
ENROLMENT = Urls.service("enrolment")
COACHING = Urls.service("coaching")
MAILCATCHER = Urls.mailcatcher
LICENSOR_SECRET = os.environ.get("MEER_LICENSOR_SECRET", "dev-only-licensor-secret")
LINK = re.compile(r'"(https?://[^"\s<>]+/([ocru])/[A-Za-z0-9_.\-]+)"')
SET_PASSWORD = re.compile(r"/set-password/([A-Za-z0-9_\-]+)")
# A development-only password for the demo coach; the demo runs only on the local stack.
DEMO_PASSWORD = "demo-wachtwoord-2026"  # noqa: S105
BRAND_COLOUR = "#0b6e4f"
MAIL_CLIENT = {"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.0"}
NAMESPACE = uuid.UUID("6d1c7a53-3f0e-4d8e-9a43-5f3f0c1e2b7a")
T = TypeVar("T")


class DemoError(RuntimeError):
    """A demo step failed; the message says which."""


@dataclass(frozen=True)
class Person:
    """One participant of the demo cohort."""

    first_name: str
    email: str
    day: int
    """The programme day they are on today (1: started today)."""
    opened_days: tuple[int, ...] = ()
    reports: tuple[tuple[int, int, str | None], ...] = ()
    """(day, score, note) of earlier assignment reports."""
    first_call_days_ago: int | None = None
    """When the coach had the first planned call with them; None: still due."""


COHORT = (
    Person("Ans", "ans@example.org", 1, first_call_days_ago=0),
    Person("Joop", "joop@example.org", 1),
    Person(
        "Fatima",
        "fatima@example.org",
        3,
        opened_days=(1, 2, 3),
        reports=((2, 3, "Even gezwaaid naar de buurman."),),
        first_call_days_ago=1,
    ),
    Person("Henk", "henk@example.org", 5, opened_days=(1,), first_call_days_ago=3),
    Person(
        "Greet",
        "greet@example.org",
        9,
        opened_days=(1, 2, 3, 4, 5, 7, 8, 9),
        reports=((2, 2, "Vond het lastig."), (5, 3, None), (8, 4, "Koffie gedronken bij de buurvrouw!")),
        first_call_days_ago=7,
    ),
)
ANS_REPORT = {"score": "4", "note": "Ik heb de buurvrouw gegroet. Dat voelde goed."}


def eventually(what: str, check: Callable[[], T | None], timeout: float = 90) -> T:
    """Poll check() until it returns something; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def demo_logo() -> bytes:
    """The demo organisation's logo: a sun over the sea and the name, as a small PNG."""
    image = Image.new("RGB", (300, 120), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((22, 14, 82, 74), fill="#f2b134")
    for row, colour in enumerate((BRAND_COLOUR, "#3a9e7f", "#7cc3ab")):
        top = 70 + row * 14
        for x in range(6, 100, 24):
            draw.arc((x, top, x + 24, top + 16), 180, 360, fill=colour, width=5)
    font = ImageFont.load_default(size=40)
    draw.text((118, 18), "Welzijn", fill=BRAND_COLOUR, font=font)
    draw.text((118, 62), "Aan Zee", fill="#2c3e50", font=font)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


# --- the organisation, its logo and the coach ----------------------------------------


def create_organisation(client: httpx.Client) -> str:
    today = date.today()
    organisation = client.post(
        "/api/organisations",
        json={
            "name": "Welzijn Aan Zee",
            "display_name": "Welzijn Aan Zee",
            "contact_person": "Sanne de Vries",
            "contact_phone": "0223 123 456",
            "contact_email": "meercontact@welzijnaanzee.example",
            "website": "https://welzijnaanzee.example",
            "address": "Dorpsstraat 1, 1781 AA Den Helder",
            "brand_colour": BRAND_COLOUR,
            "licence_valid_from": str(today - timedelta(days=30)),
            "licence_valid_until": str(today + timedelta(days=365)),
            "max_active_participants": 200,
        },
    )
    return str(checked(organisation, "creating the organisation")["id"])


def upload_logo(client: httpx.Client, org_id: str) -> str:
    """Upload the logo through the branding API, as an organisation's administrator would."""
    response = client.put(
        f"/api/organisations/{org_id}/logo", files={"file": ("welzijn-aan-zee.png", demo_logo(), "image/png")}
    )
    return str(checked(response, "uploading the logo")["logo_url"])


def invite_staff(client: httpx.Client, org_id: str, name: str, email: str, role: str) -> str:
    """Invite a staff member; the demo follows the invitation mail's link so they can log in at once."""
    staff = client.post(f"/api/organisations/{org_id}/staff", json={"name": name, "email": email, "role": role})
    staff_id = str(checked(staff, f"inviting {name}")["id"])
    token = eventually(f"{name}'s invitation mail", lambda: set_password_token(client, email))
    checked(
        client.post("/api/auth/set-password", json={"token": token, "password": DEMO_PASSWORD}),
        f"setting {name}'s password",
    )
    return staff_id


def create_coach(client: httpx.Client, org_id: str) -> dict[str, str]:
    coach_email = f"sanne+{org_id[:8]}@welzijnaanzee.example"
    # A coach's staff id is their coach id.
    coach_id = invite_staff(client, org_id, "Sanne de Vries", coach_email, "coach")
    return {"coach_id": coach_id, "coach_email": coach_email}


def set_password_token(client: httpx.Client, address: str) -> str | None:
    for summary in mails_to(client, address):
        text = read_mail(client, summary["id"]).get_body(preferencelist=("plain",))
        match = SET_PASSWORD.search(text.get_content() if text else "")
        if match:
            return match.group(1)
    return None


# --- the cohort ------------------------------------------------------------------------


def enrol(client: httpx.Client, org_id: str, coach_id: str, person: Person) -> str:
    today = date.today()
    # Today at midnight: the day-1 mail goes out now. Further along: far ahead, so the real
    # mailer sends them nothing while their earlier days are replayed as events.
    start = today if person.day == 1 else today + timedelta(days=300)
    response = client.post(
        f"/api/organisations/{org_id}/participants",
        json={
            "first_name": person.first_name,
            "email": person.email,
            "coach_id": coach_id,
            "start_date": str(start),
            "send_time": "00:00",
        },
    )
    return str(checked(response, f"enrolling {person.first_name}")["id"])


def earlier_days(person: Person, org_id: uuid.UUID, participant_id: uuid.UUID, now: datetime) -> list[Envelope]:
    """The events the mailer and tracking would have published on this person's earlier days."""
    from services.mailer.programme import load_pack

    pack = load_pack()
    variant = pack.variants[0]
    events: list[Envelope] = []

    def add(payload: Payload, at: datetime, what: str) -> None:
        envelope = Envelope.wrap(payload, org_id=org_id, participant_id=participant_id, occurred_at=at)
        stable_id = uuid.uuid5(NAMESPACE, f"{participant_id}/{what}")
        events.append(envelope.model_copy(update={"event_id": stable_id}))

    for day in range(1, person.day + 1):
        sent_at = now - timedelta(days=person.day - day, hours=1)
        delivery_id = uuid.uuid5(NAMESPACE, f"{participant_id}/delivery/{day}")
        sent = MailSent(
            delivery_id=delivery_id,
            day=day,
            lesson_title=pack.lesson(variant, day).title,
            pack=pack.name,
            pack_version=pack.version,
            message_id=f"<demo-{delivery_id}@meercontact.local>",
            sent_at=sent_at,
        )
        add(sent, sent_at, f"sent/{day}")
        if day in person.opened_days:
            opened_at = min(sent_at + timedelta(hours=2, minutes=day * 7), now - timedelta(minutes=40 - day))
            opened = MailOpened(
                delivery_id=delivery_id, day=day, opened_at=opened_at, first_open=True, likely_automated=False
            )
            add(opened, opened_at, f"opened/{day}")
        for report_day, score, note in person.reports:
            if report_day == day:
                reported_at = min(sent_at + timedelta(hours=9), now - timedelta(minutes=20))
                report = AssignmentReported(
                    delivery_id=delivery_id, day=day, score=score, note=note, reported_at=reported_at
                )
                add(report, reported_at, f"reported/{day}")
    return events


def publish(envelopes: list[Envelope]) -> None:
    async def send() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=Urls.kafka, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for envelope in envelopes:
                await producer.send_and_wait(envelope.topic, envelope.model_dump_json().encode(), key=envelope.key)
        finally:
            await producer.stop()

    asyncio.run(send())


def coach_token(client: httpx.Client, coach_email: str) -> dict[str, str]:
    response = client.post("/api/auth/login", json={"email": coach_email, "password": DEMO_PASSWORD})
    return {"Authorization": f"Bearer {checked(response, 'logging in as Sanne')['access_token']}"}


def log_first_call(client: httpx.Client, headers: dict[str, str], participant_id: str, person: Person) -> None:
    assert person.first_call_days_ago is not None
    called_at = datetime.now(UTC) - timedelta(days=person.first_call_days_ago, minutes=5)
    body = {
        "called_at": called_at.isoformat(),
        "reached": True,
        "duration_minutes": 25,
        "planned_call": 1,
        "lessons_discussed": [1],
        "notes": "Kennismaking. Wil graag weer eens naar de markt.",
        "next_agreement": "Over twee weken bellen we weer.",
    }
    response = client.post(f"{COACHING}/api/participants/{participant_id}/calls", json=body, headers=headers)
    checked(response, f"logging Sanne's first call with {person.first_name}")


# --- the mail catcher ------------------------------------------------------------------


def mails_to(client: httpx.Client, address: str) -> list[dict[str, Any]]:
    return list(client.get(f"{MAILCATCHER}/api/messages", params={"to": address}).json())


def read_mail(client: httpx.Client, mail_id: int) -> EmailMessage:
    raw = client.get(f"{MAILCATCHER}/api/messages/{mail_id}/raw").content
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def day_one_mail(client: httpx.Client, address: str) -> tuple[int, dict[str, str], str] | None:
    """The day-1 mail to an address: its id, its signed links by kind, and its HTML."""
    for summary in sorted(mails_to(client, address), key=lambda mail: -int(mail["id"])):
        if summary["subject"].startswith("Dag 1 "):
            body = read_mail(client, summary["id"]).get_body(preferencelist=("html",))
            html = body.get_content() if body else ""
            links: dict[str, str] = {}
            for url, kind in LINK.findall(html):
                links.setdefault(kind, url)
            return summary["id"], links, html
    return None


def checked(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code >= 400:
        raise DemoError(f"{what} failed: HTTP {response.status_code} {response.text[:200]}")
    return dict(response.json()) if response.content else {}


# --- the steps -------------------------------------------------------------------------


def make_demo(client: httpx.Client, demo: dict[str, Any], save: Callable[[], None]) -> None:
    """Do every step that var/demo.json does not record as done yet."""
    if "org_id" not in demo:
        demo["org_id"] = create_organisation(client)
        save()
    if "logo_url" not in demo:
        demo["logo_url"] = upload_logo(client, demo["org_id"])
        save()
    if "coach_id" not in demo:
        demo.update(create_coach(client, demo["org_id"]))
        save()
    if "admin_email" not in demo:
        # The organisation's administrator, who downloads the recruitment kit (flyer and poster).
        admin_email = f"beheer+{demo['org_id'][:8]}@welzijnaanzee.example"
        invite_staff(client, demo["org_id"], "Mirjam Bakker", admin_email, "org_admin")
        demo["admin_email"] = admin_email
        save()
    people = demo.setdefault("participants", {})
    if "participant_id" in demo:  # a demo made before the cohort: Ans is already there
        people.setdefault("Ans", demo.pop("participant_id"))
    for person in COHORT:
        if person.first_name not in people:
            people[person.first_name] = enrol(client, demo["org_id"], demo["coach_id"], person)
            save()
    if not demo.get("history_published"):
        now = datetime.now(UTC)
        publish(
            [
                envelope
                for person in COHORT
                if person.day > 1
                for envelope in earlier_days(
                    person, uuid.UUID(demo["org_id"]), uuid.UUID(people[person.first_name]), now
                )
            ]
        )
        demo["history_published"] = True
        save()
    if not demo.get("ans_opened_and_reported"):
        _, links, _ = eventually("Ans's day-1 mail", lambda: day_one_mail(client, "ans@example.org"))
        # Ans opens her mail (her mail client fetches the pixel) and follows the report link.
        for response, what in (
            (client.get(links["o"], headers=MAIL_CLIENT), "opening Ans's mail (the tracking pixel)"),
            (client.post(links["r"], data=ANS_REPORT, headers=MAIL_CLIENT), "Ans's assignment report"),
        ):
            if response.status_code >= 400:
                raise DemoError(f"{what} failed: HTTP {response.status_code}")
        demo["ans_opened_and_reported"] = True
        save()
    calls = demo.setdefault("calls_logged", [])
    to_call = [p for p in COHORT if p.first_call_days_ago is not None and p.first_name not in calls]
    if to_call:
        headers = coach_token(client, demo["coach_email"])

        def on_dashboard() -> bool:
            rows = client.get(f"{COACHING}/api/participants", headers=headers).json()
            return {row["participant_id"] for row in rows} >= set(people.values())

        eventually("the cohort on Sanne's dashboard", on_dashboard)
        for person in to_call:
            log_first_call(client, headers, people[person.first_name], person)
            calls.append(person.first_name)
            save()


def main() -> int:
    demo: dict[str, Any] = json.loads(DEMO_FILE.read_text()) if DEMO_FILE.exists() else {}

    def save() -> None:
        DEMO_FILE.parent.mkdir(parents=True, exist_ok=True)
        DEMO_FILE.write_text(json.dumps(demo, indent=2))

    headers = {"Authorization": f"Bearer {LICENSOR_SECRET}"}
    with httpx.Client(base_url=ENROLMENT, headers=headers, timeout=15) as client:
        try:
            make_demo(client, demo, save)
            found = eventually("Ans's day-1 mail", lambda: day_one_mail(client, "ans@example.org"), timeout=30)
        except Exception as error:  # noqa: BLE001 - one line for a newcomer, never a traceback
            reason = str(error) if isinstance(error, DemoError) else f"{type(error).__name__}: {error}"
            print(f"[meer] error: the demo stopped ({reason}); run './meer up' again to go on", file=sys.stderr)
            return 1
    mail_id, _, html = found
    print("\nDemo: 'Welzijn Aan Zee', coach Sanne de Vries, and five participants:")
    print("  Ans (day 1: opened, reported, first call done), Joop (day 1: first call due),")
    print("  Fatima (day 3, opens every day), Henk (day 5: no mail opened for 3 days), Greet (day 9)")
    print(f"  Ans's day-1 mail, with the logo:  {MAILCATCHER}/messages/{mail_id}")
    if demo.get("logo_url") and demo["logo_url"] not in html:
        print("    (this mail went out before the logo was there; later mails carry it)")
    print(f"  the coach's dashboard:            {COACHING}/inloggen")
    print(f"    log in as {demo['coach_email']} with password {DEMO_PASSWORD}")
    print(f"    or as the administrator {demo['admin_email']} (same password) for the recruitment kit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
