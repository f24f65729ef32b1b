"""The walking skeleton, end to end on the real stack:

enrol → participant.enrolled → mailer sends day 1 over SMTP → the pixel is fetched →
tracking publishes mail.opened → coaching's dashboard shows 1 sent, 1 opened.
"""

from __future__ import annotations

import re
from uuid import UUID

import asyncpg
import httpx
import pytest

from shared.events import Envelope, MailOpened, Topic
from tests.e2e.conftest import (
    COACHING,
    MAIL_CLIENT,
    add_coach,
    create_organisation,
    db_fetch,
    enrol_starting_now,
    eventually,
    mails_to,
    mint_staff_token,
    raw_mail,
    read_topic,
)

pytestmark = pytest.mark.stack

PIXEL = re.compile(r'src="(http://[^"]+/o/[^"]+\.gif)"')


async def read_events_back(event_type: str, participant_id: UUID, topic: str) -> list[tuple[Envelope, int, int]]:
    """The participant's events of one type on a topic, with partition and offset."""
    found = []
    for record in await read_topic(topic):
        envelope = Envelope.model_validate_json(record.value)
        if envelope.type == event_type and envelope.participant_id == participant_id:
            found.append((envelope, record.partition, record.offset))
    return found


async def test_enrolled_participant_gets_day_one_and_the_open_reaches_the_coach(http: httpx.AsyncClient) -> None:
    organisation = await create_organisation(http, display_name="Welzijn & Zo <Noord>")
    coach = await add_coach(http, organisation["id"], name="Karin Jansen")
    participant_id, email = await enrol_starting_now(http, organisation["id"], first_name="Gerrit")

    # The day-1 mail arrives at the SMTP catcher, branded and with a signed pixel.
    mails = await eventually(lambda: mails_to(http, email), what="the day-1 mail at the SMTP catcher")
    assert len(mails) == 1
    message = await raw_mail(http, mails[0]["id"])
    assert message["Subject"].startswith("Dag 1 van 60")
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "Welzijn & Zo <Noord>" in text and "020 123 4567" in text and "Karin Jansen" in text
    assert "Welzijn &amp; Zo &lt;Noord&gt;" in html, "organisation name must be escaped in HTML"
    assert "Gerrit" in text
    pixel = PIXEL.search(html)
    assert pixel is not None
    assert email not in pixel.group(1) and "Gerrit" not in pixel.group(1), "tokens carry no personal data"

    # The delivery is recorded in the mailer's own PostgreSQL database, with its Message-ID (the
    # record follows the SMTP server's answer, so the catcher may show the mail a moment before).
    async def recorded_sent() -> list[asyncpg.Record] | None:
        rows = await db_fetch(
            "mailer", "SELECT day, status, message_id FROM delivery WHERE participant_id = $1", participant_id
        )
        return rows if [(d["day"], d["status"]) for d in rows] == [(1, "sent")] else None

    deliveries = await eventually(recorded_sent, what="the day-1 mail recorded as sent")
    assert deliveries[0]["message_id"] == message["Message-ID"]

    # Before the open: coaching shows the mail as sent, not opened.
    # The coach's own view: a staff token as enrolment issues it after the coach logs in.
    coach_token = mint_staff_token("coach", UUID(organisation["id"]), UUID(coach["id"]))

    async def dashboard_row() -> dict[str, object] | None:
        rows = (
            await http.get(
                f"{COACHING}/api/coaches/{coach['id']}/participants", headers={"Authorization": f"Bearer {coach_token}"}
            )
        ).json()
        return next((r for r in rows if r["participant_id"] == str(participant_id)), None)

    row = await eventually(dashboard_row, what="the participant on the coach's dashboard")
    assert row["first_name"] == "Gerrit"

    # Fetching the pixel (as a mail client does) records the open.
    gif = await http.get(pixel.group(1), headers=MAIL_CLIENT)
    assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
    assert "no-store" in gif.headers["cache-control"]

    async def opened_row() -> dict[str, object] | None:
        current = await dashboard_row()
        return current if current and current["mails_opened"] == 1 else None

    row = await eventually(opened_row, what="1 opened mail on the coach's dashboard")
    assert row["mails_sent"] == 1 and row["mails_opened"] == 1 and row["lesson_day"] == 1

    # The open really went through Kafka: read mail.opened back from its topic.
    events = await read_events_back(MailOpened.TYPE, participant_id, Topic.ENGAGEMENT)
    assert len(events) == 1
    envelope, partition, offset = events[0]
    opened = envelope.parsed()
    assert isinstance(opened, MailOpened) and opened.first_open and opened.day == 1
    assert offset >= 0 and partition >= 0
    assert await db_fetch("coaching", "SELECT 1 FROM processed_events WHERE event_id = $1", envelope.event_id)

    # A second fetch of the pixel is recorded as a repeat open, and is not a second opened mail.
    await http.get(pixel.group(1), headers=MAIL_CLIENT)

    async def second_open() -> list[tuple[Envelope, int, int]] | None:
        found = await read_events_back(MailOpened.TYPE, participant_id, Topic.ENGAGEMENT)
        return found if len(found) == 2 else None

    repeat = (await eventually(second_open, what="the second mail.opened on Kafka"))[1][0]
    assert isinstance(repeat.parsed(), MailOpened) and not repeat.parsed().first_open  # type: ignore[attr-defined]
    await eventually(
        lambda: db_fetch("coaching", "SELECT 1 FROM processed_events WHERE event_id = $1", repeat.event_id),
        what="coaching to handle the repeat open",
    )
    row = await dashboard_row()
    assert row is not None and row["mails_opened"] == 1
