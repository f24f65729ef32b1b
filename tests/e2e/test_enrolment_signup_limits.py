"""The public sign-up form is no mail cannon and no phishing relay, on the real stack:
per-source and per-mailbox limits across organisations, and no typed-in text in the mail."""

from __future__ import annotations

import asyncio
import uuid
from email.message import EmailMessage

import httpx
import pytest

from services.enrolment.signup_limits import counter_key
from tests.e2e.conftest import (
    ENROLMENT,
    add_coach,
    create_organisation,
    db_count,
    db_fetch,
    events_on,
    eventually,
    mailed_link,
    mails_to,
    people_with_address,
    raw_mail,
    unique_source,
)

pytestmark = pytest.mark.stack
PER_SOURCE = 10  # MEER_SIGNUPS_PER_SOURCE_PER_HOUR's default
PER_MAILBOX = 3  # MEER_SIGNUPS_PER_MAILBOX_PER_DAY's default


async def sign_up(
    http: httpx.AsyncClient, org_id: str, email: str, source: dict[str, str], first_name: str = "Ans"
) -> httpx.Response:
    form = {"first_name": first_name, "email": email, "send_time": "09:00", "consent": "ja"}
    return await http.post(f"{ENROLMENT}/aanmelden/{org_id}", data=form, headers=source)


async def new_organisation(http: httpx.AsyncClient) -> str:
    organisation = await create_organisation(http, display_name="Welzijn Grensdorp")
    await add_coach(http, organisation["id"])
    return str(organisation["id"])


async def requested(emails: set[str]) -> list[dict[str, object]]:
    events = await events_on("meer.participant", event_type="participant.confirmation_requested")
    people = await people_with_address(emails)
    return [event for event in events if event["participant_id"] in people]


async def requested_at_least(emails: set[str], count: int) -> list[dict[str, object]] | None:
    found = await requested(emails)
    return found if len(found) >= count else None


def body_of(message: EmailMessage, kind: str) -> str:
    part = message.get_body(preferencelist=(kind,))
    assert part is not None
    return str(part.get_content())


async def test_one_client_cannot_fire_sign_ups_at_many_addresses(http: httpx.AsyncClient) -> None:
    org_id = await new_organisation(http)
    attacker = unique_source()
    emails = [f"doelwit-{n}-{uuid.uuid4().hex[:8]}@example.org" for n in range(30)]

    answers = await asyncio.gather(*(sign_up(http, org_id, email, attacker) for email in emails))

    assert sorted(answer.status_code for answer in answers) == [303] * PER_SOURCE + [429] * (30 - PER_SOURCE)
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert "Even geduld" in refused.text and "internetverbinding" in refused.text
    assert "Er is nu geen e-mail verstuurd" in refused.text and int(refused.headers["Retry-After"]) > 0
    stored = await db_count("enrolment", "SELECT count(*) FROM participant WHERE org_id = $1", uuid.UUID(org_id))
    assert stored == PER_SOURCE
    allowed = await eventually(
        lambda: requested_at_least(set(emails), PER_SOURCE), what="the allowed confirmation requests"
    )
    assert len(allowed) == PER_SOURCE, "a refused sign-up requests no mail"

    # Someone else, from another connection, still signs up at once.
    someone = f"buurvrouw-{uuid.uuid4().hex[:8]}@example.org"
    assert (await sign_up(http, org_id, someone, unique_source())).status_code == 303


async def test_one_mailbox_gets_few_confirmation_mails_whatever_the_tag_or_organisation(
    http: httpx.AsyncClient,
) -> None:
    first_org, second_org = await new_organisation(http), await new_organisation(http)
    local = f"ans-{uuid.uuid4().hex[:8]}"
    tagged = [f"{local}+a@example.org", f"{local.upper()}+b@Example.org", f"{local}+c@example.org"]
    for org_id, email in zip((first_org, second_org, first_org), tagged, strict=True):
        assert (await sign_up(http, org_id, email, unique_source())).status_code == 303

    over = await sign_up(http, second_org, f"{local}@example.org", unique_source())
    assert over.status_code == 429 and "Voor dit e-mailadres" in over.text
    assert await db_count("enrolment", "SELECT count(*) FROM participant WHERE email LIKE $1", f"{local}%") == 3

    # A later sign-up works again once a whole day lies between it and the earlier ones (the
    # sliding window also weighs in the day before the current one, so the counts move two days).
    key = counter_key("mailbox", f"{local}@example.org")
    await db_fetch(
        "enrolment", "UPDATE signup_counter SET window_start = window_start - interval '2 days' WHERE key = $1", key
    )
    later = await sign_up(http, second_org, f"{local}@example.org", unique_source())
    assert later.status_code == 303
    assert await db_count("enrolment", "SELECT count(*) FROM participant WHERE email LIKE $1", f"{local}%") == 4


async def test_the_confirmation_mail_and_page_leave_out_the_typed_first_name(http: httpx.AsyncClient) -> None:
    org_id = await new_organisation(http)
    email = f"slachtoffer-{uuid.uuid4().hex[:8]}@example.org"
    lure = "Uw account is geblokkeerd bel 0900"
    assert (await sign_up(http, org_id, email, unique_source(), first_name=lure)).status_code == 303

    mails = await eventually(lambda: mails_to(http, email), what="the confirmation mail")
    message = await raw_mail(http, mails[0]["id"])
    for kind in ("plain", "html"):
        body = body_of(message, kind)
        assert "/bevestigen/" in body and "geblokkeerd" not in body and "bel 0900" not in body
    page = await http.get(await mailed_link(http, email, "/bevestigen/"))
    assert page.status_code == 200 and "Ja, ik doe mee" in page.text and "geblokkeerd" not in page.text
