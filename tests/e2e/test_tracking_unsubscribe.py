"""Unsubscribe on the real stack: RFC 8058's one-click POST stops the participant (through
Kafka and enrolment), the page asks before it does, and a GET never unsubscribes anyone."""

from __future__ import annotations

import re
from email.message import EmailMessage
from uuid import UUID

import httpx
import pytest

from shared.events import Envelope, Topic, UnsubscribeRequested
from tests.e2e.conftest import (
    db_count,
    db_fetch,
    enrol_and_receive_day_one,
    eventually,
    read_topic,
)

pytestmark = pytest.mark.stack
SCANNER = {"User-Agent": "Mozilla/5.0 (compatible; Mimecast URL Protect)"}


def unsubscribe_url(message: EmailMessage) -> str:
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    match = re.fullmatch(r"<(https?://\S+/u/\S+)>", str(message["List-Unsubscribe"]).strip())
    assert match, message["List-Unsubscribe"]
    return match.group(1)


async def requests_of(participant_id: UUID) -> list[Envelope]:
    found = []
    for record in await read_topic(Topic.ENGAGEMENT):
        envelope = Envelope.model_validate_json(record.value)
        if envelope.type == UnsubscribeRequested.TYPE and envelope.participant_id == participant_id:
            found.append(envelope)
    return found


async def status_in_enrolment(participant_id: UUID) -> str:
    rows = await db_fetch("enrolment", "SELECT status FROM participant WHERE id = $1", participant_id)
    return str(rows[0]["status"])


async def nothing_left_to_publish() -> bool:
    return await db_count("tracking", "SELECT count(*) FROM outbox") == 0


async def test_unsubscribe_by_post_stops_mails_and_by_get_does_not(http: httpx.AsyncClient) -> None:
    participant_id, message = await enrol_and_receive_day_one(http)
    url = unsubscribe_url(message)

    # A link scanner and the participant's browser only see the question.
    for headers in (SCANNER, {}):
        page = await http.get(url, headers=headers)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "Wil je stoppen met de mails?" in page.text and 'method="post"' in page.text
    assert (await http.head(url, headers=SCANNER)).status_code == 200
    await eventually(nothing_left_to_publish, what="tracking's outbox to be published")
    assert await requests_of(participant_id) == [], "a GET publishes nothing"
    assert await status_in_enrolment(participant_id) != "stopped"

    # The mail client's one-click POST: no cookies, urlencoded, answered 200 without a redirect.
    one_click = await http.post(url, data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200 and "location" not in one_click.headers
    (request,) = await eventually(lambda: requests_of(participant_id), what="participant.unsubscribe_requested")
    payload = request.parsed()
    assert isinstance(payload, UnsubscribeRequested) and payload.via == "one_click"

    # A client that retries (multipart this time) asks again; it is still one request.
    again = await http.post(url, files={"List-Unsubscribe": (None, "One-Click")})
    assert again.status_code == 200
    await eventually(nothing_left_to_publish, what="tracking's outbox to be published")
    assert len(await requests_of(participant_id)) == 1

    # Enrolment stops the participant, so the mailer sends no more programme mails.
    async def stopped() -> bool:
        return await status_in_enrolment(participant_id) == "stopped"

    await eventually(stopped, what="enrolment to stop the participant")
    page = await http.get(url)
    assert "Je bent al afgemeld" in page.text


async def test_the_page_asks_first_and_its_button_unsubscribes(http: httpx.AsyncClient) -> None:
    participant_id, message = await enrol_and_receive_day_one(http)
    url = unsubscribe_url(message)

    async def branded_page() -> str | None:
        text = (await http.get(url)).text
        return text if "Welzijn Testdorp" in text else None

    page = await eventually(branded_page, what="the page in the organisation's own name")
    field = re.search(r'<input type="hidden" name="(\w+)" value="(\w+)">', page)
    assert field, page

    # A POST without the one-click body or the page's confirmation changes nothing.
    refused = await http.post(url, data={"iets": "anders"})
    assert refused.status_code == 400

    confirmed = await http.post(url, data={field.group(1): field.group(2)})
    assert confirmed.status_code == 200 and "Je bent afgemeld" in confirmed.text
    (request,) = await eventually(lambda: requests_of(participant_id), what="participant.unsubscribe_requested")
    assert request.payload["via"] == "page"
